//! Scheduled invocations (CONTRACT §6 `[[cron]]`, Vercel Cron).
//!
//! Each job requests its route with GET on a 5-field cron schedule (UTC), as
//! Vercel does, with `Authorization: Bearer $CRON_SECRET` when the functions'
//! environment defines `CRON_SECRET`. The request goes through the same handler as
//! any other, so routing, limits, logs and metrics apply. `POST
//! /_watchdog/cron/<name>` runs a job at once, for those who may ([`refusal`]).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, header};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use futures_util::StreamExt;

use crate::routes::{Function, Lookup};
use crate::server::listener::Connection;
use crate::server::{App, handler};

/// One scheduled job.
#[derive(Debug, Clone)]
pub struct CronJob {
    pub name: String,
    pub path: String,
    pub schedule: Cron,
    /// As written, for logs.
    pub schedule_text: String,
}

impl CronJob {
    /// # Errors
    /// A schedule croner cannot parse, or a path that is not absolute.
    pub fn new(name: &str, path: &str, schedule: &str) -> Result<Self, String> {
        if !path.starts_with('/') {
            return Err(format!("cron `{name}`: path `{path}` must start with `/`"));
        }
        // Five fields as Vercel and crontab write them; a sixth, leading seconds
        // field is accepted too (handy for local testing).
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let parsed: Cron = parser.parse(schedule).map_err(|err| {
            format!("cron `{name}`: schedule `{schedule}` is not a cron expression ({err})")
        })?;
        Ok(Self {
            name: name.to_owned(),
            path: path.to_owned(),
            schedule: parsed,
            schedule_text: schedule.to_owned(),
        })
    }
}

/// Starts one task per job; they stop once the server drains.
pub fn start(app: Arc<App>) {
    warn_of_a_secret_functions_do_not_get(&app);
    for job in app.settings.cron.clone() {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            tracing::info!(name = %job.name, path = %job.path, schedule = %job.schedule_text, "cron job scheduled");
            if function_at(&app, &job.path).is_none() {
                tracing::warn!(name = %job.name, path = %job.path, "no function answers this cron job's path now: its runs will fail until one does (check the path, with its prefix)");
            }
            loop {
                let now = chrono::Utc::now();
                let Ok(next) = job.schedule.find_next_occurrence(&now, false) else {
                    tracing::warn!(name = %job.name, "cron schedule has no next run; job stopped");
                    return;
                };
                let wait = (next - now).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                if app.is_draining() {
                    return;
                }
                let status = run(&app, &job).await.status();
                // A failed run is a warning, so a log kept at `warn` still shows it.
                if status.is_client_error() || status.is_server_error() {
                    tracing::warn!(name = %job.name, path = %job.path, status = status.as_u16(), "cron job failed");
                } else {
                    tracing::info!(name = %job.name, path = %job.path, status = status.as_u16(), "cron job ran");
                }
            }
        });
    }
}

/// Vercel's docs have `CRON_SECRET` in the environment, but watchdog's own is
/// not the functions': one set only there protects no job, and leaves their
/// manual trigger open to this machine. Said once, naming those jobs.
fn warn_of_a_secret_functions_do_not_get(app: &App) {
    if std::env::var_os("CRON_SECRET").is_none_or(|value| value.is_empty()) {
        return;
    }
    let unprotected: Vec<&str> = (app.settings.cron.iter())
        .filter(|job| secret(app, &job.path).is_none())
        .map(|job| job.name.as_str())
        .collect();
    if !unprotected.is_empty() {
        tracing::warn!(
            jobs = %unprotected.join(", "),
            hint = "put CRON_SECRET in the .env beside DIR, or pass it with --pass-env CRON_SECRET",
            "CRON_SECRET is set in watchdog's own environment, which functions do not get: these jobs run without it, and POST /_watchdog/cron/<name> runs them for any request from this machine"
        );
    }
}

/// `CRON_SECRET` as the function the job's path reaches sees it (its
/// section's `env` included: a job's secret is its function's), else as the
/// functions' environment defines it, if either does.
pub fn secret(app: &App, path: &str) -> Option<String> {
    function_at(app, path)
        .and_then(|function| find_secret(&function.settings.env))
        .or_else(|| find_secret(&app.settings.function_env))
}

/// The function a job's path (query string and all) reaches now, if any.
fn function_at(app: &App, path: &str) -> Option<Arc<Function>> {
    let route_path = path.split('?').next().unwrap_or(path);
    match app.routes.load().lookup(route_path) {
        Ok(Lookup::Found(found)) => Some(found.function),
        _ => None,
    }
}

fn find_secret(env: &[(std::ffi::OsString, std::ffi::OsString)]) -> Option<String> {
    env.iter()
        .rev()
        .find(|(name, _)| name == "CRON_SECRET")
        .map(|(_, value)| value.to_string_lossy().into_owned())
        // An empty secret is none: `Authorization: Bearer` alone would show it.
        .filter(|secret| !secret.is_empty())
}

/// Headers a reverse proxy or a CDN adds: a request that carries one came
/// from wherever the proxy's client is, though it reached watchdog over
/// loopback. (A proxy that adds none, such as nginx's bare `proxy_pass`, cannot
/// be told from a local client: CRON_SECRET is the protection there.)
const FORWARDING_HEADERS: [&str; 8] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "via",
    "cf-connecting-ip",
    "true-client-ip",
    "x-client-ip",
    "fastly-client-ip",
];

/// Why a request may not run a job now, if it may not: it runs the function
/// with the secret and hands back its answer, so it needs what the platform
/// has. With `CRON_SECRET` set, that is the same bearer token (compared in
/// constant time). Without one there is no secret to show, but a job still
/// runs: only from this machine, and never for a browser page (browsers send
/// `Origin` with every POST, so a page cannot trigger jobs of a dev server).
pub fn refusal(
    secret: Option<&str>,
    remote: std::net::IpAddr,
    headers: &HeaderMap,
) -> Option<Refusal> {
    use subtle::ConstantTimeEq;
    match secret {
        Some(secret) => {
            // The scheme is case-insensitive (RFC 9110 §11.1), and may be
            // followed by more than one space; the token is compared as it is.
            let token = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.as_bytes().split_at_checked(6))
                .filter(|(scheme, rest)| {
                    scheme.eq_ignore_ascii_case(b"bearer") && rest.first() == Some(&b' ')
                })
                .map(|(_, rest)| rest.trim_ascii_start());
            let shown = token.is_some_and(|token| bool::from(token.ct_eq(secret.as_bytes())));
            (!shown).then_some(Refusal::NeedsSecret)
        }
        None if !remote.is_loopback() => Some(Refusal::NotLocal),
        None if FORWARDING_HEADERS
            .iter()
            .any(|name| headers.contains_key(*name)) =>
        {
            Some(Refusal::Proxied)
        }
        None if headers.contains_key(header::ORIGIN) => Some(Refusal::FromBrowser),
        None => None,
    }
}

/// Why `POST /_watchdog/cron/<name>` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "running a cron job needs `Authorization: Bearer $CRON_SECRET`, as the schedule sends it"
    )]
    NeedsSecret,
    #[error(
        "CRON_SECRET is not set, so cron jobs run on request only from this machine; set CRON_SECRET in the functions' environment and send it as `Authorization: Bearer ...`"
    )]
    NotLocal,
    #[error(
        "CRON_SECRET is not set, so cron jobs run on request only from this machine, and this request came through a proxy (it carries Forwarded, X-Forwarded-For, X-Real-IP, Via or a CDN's client address header); set CRON_SECRET in the functions' environment and send it as `Authorization: Bearer ...`"
    )]
    Proxied,
    #[error(
        "a browser page cannot run cron jobs (the request carries `Origin`); run it with curl or a script from this machine, or set CRON_SECRET and send it"
    )]
    FromBrowser,
}

/// Runs `job` once and returns the function's response with its body read.
pub async fn run(app: &App, job: &CronJob) -> Response<Body> {
    let mut request = Request::get(&job.path)
        .header(header::HOST, "localhost")
        .header(
            header::USER_AGENT,
            concat!("watchdog-cron/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(secret) = secret(app, &job.path) {
        request = request.header(header::AUTHORIZATION, format!("Bearer {secret}"));
    }
    let request = match request.body(Body::empty()) {
        Ok(request) => request,
        Err(err) => {
            tracing::error!(name = %job.name, error = %err, "cron job path is not a valid URI");
            let mut response = Response::new(Body::from(format!(
                "cron job `{}`: invalid path\n",
                job.name
            )));
            *response.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            return response;
        }
    };
    let response = handler::handle(app, Connection::internal(), request).await;
    let (parts, body) = response.into_parts();
    let mut collected = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        collected.extend_from_slice(&chunk);
    }
    Response::from_parts(parts, Body::from(collected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn who_may_run_a_job_now() {
        let local = std::net::IpAddr::from([127, 0, 0, 1]);
        let remote = std::net::IpAddr::from([10, 0, 0, 7]);
        let bearer = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        let wrong = headers(&[(header::AUTHORIZATION, "Bearer s3cre")]);
        let browser = headers(&[(header::ORIGIN, "https://evil.example")]);
        let none = HeaderMap::new();
        let secret = Some("s3cret");
        assert_eq!(refusal(secret, remote, &bearer), None);
        for written in ["bearer s3cret", "BEARER  s3cret"] {
            let bearer = headers(&[(header::AUTHORIZATION, written)]);
            assert_eq!(refusal(secret, remote, &bearer), None, "{written}");
        }
        let env = |value: &str| vec![("CRON_SECRET".into(), value.into())];
        assert_eq!(find_secret(&env("s3cret")).as_deref(), Some("s3cret"));
        assert_eq!(find_secret(&env("")), None, "an empty secret is none");
        for wrong in ["Bearers3cret", "Basic s3cret", "Bearer ", "Bearer", ""] {
            let wrong = headers(&[(header::AUTHORIZATION, wrong)]);
            assert_eq!(refusal(secret, remote, &wrong), Some(Refusal::NeedsSecret));
        }
        assert_eq!(refusal(secret, local, &none), Some(Refusal::NeedsSecret));
        assert_eq!(refusal(secret, local, &wrong), Some(Refusal::NeedsSecret));
        assert_eq!(refusal(None, local, &none), None);
        assert_eq!(refusal(None, remote, &none), Some(Refusal::NotLocal));
        assert_eq!(refusal(None, local, &browser), Some(Refusal::FromBrowser));
        // Through a reverse proxy on this machine: the client is elsewhere.
        for name in FORWARDING_HEADERS {
            let proxied = headers(&[(header::HeaderName::from_static(name), "8.8.8.8")]);
            assert_eq!(
                refusal(None, local, &proxied),
                Some(Refusal::Proxied),
                "{name}"
            );
            assert_eq!(refusal(secret, local, &proxied), Some(Refusal::NeedsSecret));
        }
    }
}
