//! Built-in endpoints under the reserved `/_watchdog/` prefix (CONTRACT §7). No
//! request under that prefix ever reaches a function.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use super::App;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

pub async fn routes(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(app.routes.load().to_json())
}

/// Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    match &app.metrics {
        Some(handle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics are unavailable: the recorder could not be installed (see the log)\n"
                .to_owned(),
        ),
    }
}

/// Runs a cron job now and answers with the function's response, for a caller
/// that may (`cron::refusal`); others learn nothing, not even the job names.
pub async fn cron(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> axum::response::Response {
    let job = app.settings.cron.iter().find(|job| job.name == name);
    // A job's own secret; for a name that is no job, the functions' (so an
    // unknown name is refused as a known one would be, and tells nothing).
    let path = job.map_or("", |job| job.path.as_str());
    if let Some(refusal) = crate::cron::refusal(
        crate::cron::secret(&app, path).as_deref(),
        remote.ip().to_canonical(),
        &headers,
    ) {
        tracing::warn!(%remote, job = %name, reason = %refusal, "cron run refused");
        let status = match refusal {
            crate::cron::Refusal::NeedsSecret => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        let mut response = (status, format!("{}: {refusal}\n", status.as_u16())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        return response;
    }
    match job {
        Some(job) => crate::cron::run(&app, job).await.into_response(),
        None => {
            let names: Vec<&str> = app.settings.cron.iter().map(|j| j.name.as_str()).collect();
            let known = if names.is_empty() {
                "none are configured".to_owned()
            } else {
                names.join(", ")
            };
            (
                StatusCode::NOT_FOUND,
                format!("404: no cron job named `{name}` (known: {known})\n"),
            )
                .into_response()
        }
    }
}

pub async fn reserved() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "404: no such built-in endpoint; /_watchdog/ offers healthz, readyz, metrics and routes\n",
    )
}
