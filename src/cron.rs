//! Scheduled invocations (CONTRACT §6 `[[cron]]`, Vercel Cron).
//!
//! Each job requests its route with GET on a 5-field cron schedule (UTC), as
//! Vercel does, with `Authorization: Bearer $CRON_SECRET` when the functions'
//! environment defines `CRON_SECRET`. The request goes through the same handler as
//! any other, so routing, limits, logs and metrics apply. `POST
//! /_watchdog/cron/<name>` runs a job at once.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, header};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use futures_util::StreamExt;

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
    for job in app.settings.cron.clone() {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            tracing::info!(name = %job.name, path = %job.path, schedule = %job.schedule_text, "cron job scheduled");
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
                tracing::info!(name = %job.name, path = %job.path, status = status.as_u16(), "cron job ran");
            }
        });
    }
}

/// Runs `job` once and returns the function's response with its body read.
pub async fn run(app: &App, job: &CronJob) -> Response<Body> {
    let mut request = Request::get(&job.path)
        .header(header::HOST, "localhost")
        .header(
            header::USER_AGENT,
            concat!("watchdog-cron/", env!("CARGO_PKG_VERSION")),
        );
    let secret = app
        .settings
        .function_env
        .iter()
        .rev()
        .find(|(name, _)| name == "CRON_SECRET")
        .map(|(_, value)| value.to_string_lossy().into_owned());
    if let Some(secret) = secret {
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
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let response = handler::handle(app, local, request).await;
    let (parts, body) = response.into_parts();
    let mut collected = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        collected.extend_from_slice(&chunk);
    }
    Response::from_parts(parts, Body::from(collected))
}
