//! Errors watchdog itself answers with, rendered as text or JSON by `Accept`.
//!
//! Every status has one place ([`AppError::status`]). The client gets a message
//! that says what happened and what to do, plus the request id; never any bytes the
//! function wrote.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::invoke::InvokeError;
use crate::routes::PathError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("bad request path: {0}")]
    BadPath(#[from] PathError),
    #[error("{0}")]
    BadHost(#[from] super::host::HostError),
    #[error("{0}")]
    TransferCoding(#[from] super::transfer_coding::TransferCodingError),
    #[error("{0}")]
    Expectation(#[from] super::expect::UnmetExpectation),
    #[error("the request head is about {bytes} bytes, over the {} KiB watchdog reads", super::listener::MAX_HEAD_BYTES / 1024)]
    HeadTooLarge { bytes: usize },
    #[error("no function answers {path}")]
    NotFound {
        path: String,
        /// The prefix, when the path lies outside it.
        outside_prefix: Option<crate::routes::PrefixMiss>,
    },
    #[error("{pattern} is claimed by more than one file: {}", files.join(", "))]
    Conflict { pattern: String, files: Vec<String> },
    /// Named by the path it last went to, without the query (which may carry
    /// a token): the loop is usually a function sending the request to itself.
    #[error(
        "the function's local redirects went {hops} deep without an answer, the last to {}",
        location.split(['?', '#']).next().unwrap_or_default()
    )]
    RedirectLoop { hops: usize, location: String },
    #[error("the function's local redirect (`Location:` without `Status:`) is not a valid path")]
    BadRedirect { location: String },
    #[error("{0}")]
    Invoke(#[from] InvokeError),
    #[error("{0}")]
    CronRefused(crate::cron::Refusal),
    #[error("no cron job named `{name}` (known: {known})")]
    NoCronJob { name: String, known: String },
    #[error("no such built-in endpoint: {path}")]
    NoBuiltin { path: String },
    #[error("{path} is served on the admin address only (--admin-listen), not on this one")]
    OnAdminAddress { path: String },
    #[error(
        "{path}: this is the admin address, which serves /_watchdog/ only; functions answer on {listen}"
    )]
    NotOnAdminAddress {
        path: String,
        listen: std::net::SocketAddr,
    },
    #[error("CONNECT asks a proxy for a tunnel, and watchdog is no proxy: no function runs for it")]
    Connect,
    #[error("{path} does not answer {method}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: String,
    },
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadPath(_) | AppError::BadHost(_) | AppError::Connect => {
                StatusCode::BAD_REQUEST
            }
            AppError::TransferCoding(super::transfer_coding::TransferCodingError::ChunkedTwice) => {
                StatusCode::BAD_REQUEST
            }
            AppError::TransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            AppError::Expectation(_) => StatusCode::EXPECTATION_FAILED,
            AppError::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            AppError::NotFound { .. } => StatusCode::NOT_FOUND,
            AppError::Conflict { .. }
            | AppError::RedirectLoop { .. }
            | AppError::BadRedirect { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Invoke(err) => err.status(),
            AppError::CronRefused(crate::cron::Refusal::NeedsSecret) => StatusCode::UNAUTHORIZED,
            AppError::CronRefused(_) => StatusCode::FORBIDDEN,
            AppError::NoCronJob { .. }
            | AppError::NoBuiltin { .. }
            | AppError::OnAdminAddress { .. }
            | AppError::NotOnAdminAddress { .. } => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Whether the answer should close the connection: after a body whose
    /// framing watchdog refused (the next request's start is then a guess,
    /// as nginx also judges), or a CONNECT, whose client may go on to send
    /// its tunnel's bytes.
    pub fn ends_connection(&self) -> bool {
        match self {
            AppError::TransferCoding(_) | AppError::Connect => true,
            // An upload that stalled or ran out of time was not read to its
            // end: the connection cannot carry another request, and the 408
            // says so (hyper added it only when the body had a length).
            AppError::Invoke(err) => err.status() == StatusCode::REQUEST_TIMEOUT,
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            AppError::BadPath(crate::routes::path::PathError::NotUtf8) => Some(
                "percent-encode the path's text as UTF-8 (`é` is %C3%A9, not the Latin-1 %E9)".into(),
            ),
            AppError::BadPath(_) => Some("paths may not hold `..`, NUL bytes or encoded slashes".into()),
            AppError::BadHost(super::host::HostError::UserInfo) => Some("send the target without user info: credentials go in an Authorization header".into()),
            AppError::BadHost(_) => Some("send one Host header naming the host (and port) the request is for".into()),
            AppError::TransferCoding(_) => Some("send the body as is with Content-Length, or chunked once, with no other transfer coding".into()),
            AppError::Expectation(_) => Some("send the request without that `Expect` header".into()),
            AppError::HeadTooLarge { .. } => Some("send fewer or smaller headers (large cookies are the usual cause)".into()),
            AppError::NotFound { outside_prefix: Some(miss), .. } => Some(match &miss.meant {
                Some(meant) => format!(
                    "every route here starts with {} (`--prefix`, by default the served folder's name): try {meant}",
                    miss.prefix
                ),
                None => format!(
                    "every route here starts with {} (`--prefix`, by default the served folder's name); `watchdog routes DIR` lists them",
                    miss.prefix
                ),
            }),
            AppError::NotFound { .. } => Some("`watchdog routes DIR` lists every route and the files that are not routes".into()),
            AppError::Conflict { .. } => Some("rename or remove all but one of these files".into()),
            AppError::RedirectLoop { .. } | AppError::BadRedirect { .. } => {
                Some("a `Location: /path` header without `Status:` makes watchdog serve that path instead".into())
            }
            AppError::Invoke(err) => err.hint(),
            // The refusal says what to do itself.
            AppError::CronRefused(_) => None,
            AppError::NoCronJob { .. } => Some("`[[cron]]` in watchdog.toml and `crons` in vercel.json name the jobs; `watchdog serve` logs each one it schedules".into()),
            AppError::NoBuiltin { .. } => Some("/_watchdog/ offers healthz, readyz, metrics, routes, and POST cron/<name>".into()),
            // The address itself is not told to whoever reached this one: it
            // was set apart to be out of their reach.
            AppError::OnAdminAddress { .. } => Some("ask the admin address watchdog logged at start (\"admin endpoints on ...\"); healthz and readyz answer here too".into()),
            AppError::NotOnAdminAddress { .. } => Some("send function requests to the address given by --listen".into()),
            AppError::MethodNotAllowed { allow, .. } => Some(format!("send {allow}")),
            AppError::Connect => Some("send the request itself (GET, POST, ...) to watchdog's address".into()),
        }
    }

    /// The error page, JSON when the client prefers it.
    pub fn into_response(self, request_id: &str, request_headers: &HeaderMap) -> Response<Body> {
        let status = self.status();
        let message = self.to_string();
        let hint = self.hint();
        let (content_type, body) = if prefers_json(request_headers) {
            let json = serde_json::json!({
                "error": {
                    "status": status.as_u16(),
                    "message": message,
                    "hint": hint,
                    "request_id": request_id,
                }
            });
            ("application/json", format!("{json}\n"))
        } else {
            let mut text = format!(
                "{} {}: {message}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            if let Some(hint) = hint {
                text.push_str(&format!("hint: {hint}\n"));
            }
            text.push_str(&format!("request id: {request_id}\n"));
            ("text/plain; charset=utf-8", text)
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        let retry_after = match &self {
            AppError::Invoke(
                InvokeError::Overloaded { seconds }
                | InvokeError::Crashed { seconds, .. }
                | InvokeError::RestartBackoff { seconds, .. },
            ) => Some(*seconds),
            AppError::Invoke(InvokeError::QueueFull { waited, .. }) => {
                Some(crate::invoke::retry_after_seconds(*waited))
            }
            // A save in place ends in moments.
            AppError::Invoke(InvokeError::FileBusy { .. }) => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        match &self {
            AppError::CronRefused(crate::cron::Refusal::NeedsSecret) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::MethodNotAllowed { allow, .. } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// The request's `Accept` values, all an error page needs of its headers.
pub fn accept_of(headers: &HeaderMap) -> HeaderMap {
    let mut accept = HeaderMap::new();
    for value in headers.get_all(header::ACCEPT) {
        accept.append(header::ACCEPT, value.clone());
    }
    accept
}

/// Whether `Accept` ranks JSON above plain text and HTML.
pub fn prefers_json(headers: &HeaderMap) -> bool {
    let mut best_json = 0.0_f32;
    let mut best_other = 0.0_f32;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media == "application/json" || media.ends_with("+json") {
                best_json = best_json.max(quality);
            } else if media.starts_with("text/") || media == "*/*" {
                // `*/*` alone must not win over an explicit JSON preference.
                let weight = if media == "*/*" {
                    quality * 0.99
                } else {
                    quality
                };
                best_other = best_other.max(weight);
            }
        }
    }
    best_json > 0.0 && best_json >= best_other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn accept_negotiation() {
        assert!(prefers_json(&accept("application/json")));
        assert!(prefers_json(&accept("application/json, */*")));
        assert!(prefers_json(&accept("application/problem+json")));
        assert!(!prefers_json(&accept("text/html,application/json;q=0.9")));
        assert!(!prefers_json(&accept("*/*")));
        assert!(!prefers_json(&HeaderMap::new()));
    }
}
