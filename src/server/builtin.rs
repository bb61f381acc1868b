//! Built-in endpoints under the reserved `/_watchdog/` prefix (CONTRACT §7). No
//! request under that prefix ever reaches a function.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::AppError;
use super::listener::Connection;
use super::request_id;

/// What an error page for a built-in request needs, put in its extensions by
/// [`answer_as_watchdog`].
#[derive(Debug, Clone)]
pub struct BuiltinRequest {
    id: String,
    accept: HeaderMap,
}

impl BuiltinRequest {
    fn error(&self, error: AppError) -> Response {
        error.into_response(&self.id, &self.accept)
    }
}

/// Every built-in answer carries the request id, as a function's does, and
/// axum's own bare 405 (a GET on `cron/<name>`, a POST on healthz) becomes an
/// error page like watchdog's others: text or JSON by `Accept`, with the id.
pub async fn answer_as_watchdog(mut request: Request, next: Next) -> Response {
    let builtin = BuiltinRequest {
        id: request_id::of(request.extensions(), request.headers()),
        accept: super::error::accept_of(request.headers()),
    };
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    request.extensions_mut().insert(builtin.clone());
    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        // axum adds its Allow header after this layer has run: the methods
        // are known here by path.
        let allow = if path.starts_with("/_watchdog/cron/") {
            "POST"
        } else {
            "GET, HEAD"
        }
        .to_owned();
        response = builtin.error(AppError::MethodNotAllowed {
            method,
            path,
            allow,
        });
    }
    // A cron run's answer has its own invocation's id already.
    if !response.headers().contains_key(request_id::HEADER)
        && let Ok(value) = HeaderValue::from_str(&builtin.id)
    {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    response
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if app.reload_pending.dir_is_gone() {
        // CONTRACT §7: ready means routes loaded; DIR's are not there to load.
        (StatusCode::SERVICE_UNAVAILABLE, "DIR is gone\n")
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
    ConnectInfo(Connection { remote, .. }): ConnectInfo<Connection>,
    Extension(builtin): Extension<BuiltinRequest>,
    headers: HeaderMap,
) -> Response {
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
        return builtin.error(AppError::CronRefused(refusal));
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
            builtin.error(AppError::NoCronJob { name, known })
        }
    }
}

pub async fn reserved(
    Extension(builtin): Extension<BuiltinRequest>,
    uri: axum::http::Uri,
) -> Response {
    builtin.error(AppError::NoBuiltin {
        path: uri.path().to_owned(),
    })
}

/// On the clients' address when `--admin-listen` is set: where the endpoint
/// is served instead.
pub async fn on_admin_address(
    Extension(builtin): Extension<BuiltinRequest>,
    uri: axum::http::Uri,
) -> Response {
    builtin.error(AppError::OnAdminAddress {
        path: uri.path().to_owned(),
    })
}

/// On `--admin-listen`'s address, anything outside `/_watchdog/`: functions
/// answer on the clients' address only.
pub async fn admin_address_only(
    State(app): State<Arc<App>>,
    Extension(builtin): Extension<BuiltinRequest>,
    uri: axum::http::Uri,
) -> Response {
    builtin.error(AppError::NotOnAdminAddress {
        path: uri.path().to_owned(),
        listen: app.local,
    })
}
