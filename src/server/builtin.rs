//! Built-in endpoints under the reserved `/_watchdog/` prefix (CONTRACT §7). No
//! request under that prefix ever reaches a function.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
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

pub async fn reserved() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "404: no such built-in endpoint; /_watchdog/ offers healthz, readyz, metrics and routes\n",
    )
}
