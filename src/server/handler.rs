//! From an HTTP request to a function's response: route, queue for a slot, receive
//! the body, invoke, follow local redirects. Errors are rendered once, here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, Response, Uri, header};

use super::App;
use super::error::AppError;
use super::request_id;
use crate::invoke::{Invocation, Reply, RequestBody};
use crate::observability::InvocationRecord;
use crate::routes::Lookup;

/// Local redirects followed for one request before giving up (CONTRACT §3).
pub const MAX_LOCAL_REDIRECTS: usize = 10;

/// The axum fallback: every request outside `/_watchdog/`.
pub async fn function(
    State(app): State<Arc<App>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response<Body> {
    handle(&app, client, request).await
}

/// Answers one request. Also used by `watchdog invoke`, without a socket.
pub async fn handle(app: &App, client: SocketAddr, request: Request) -> Response<Body> {
    let request_id = request_id::from_headers(request.headers());
    let accept = request.headers().clone();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = match dispatch(app, client, request, &request_id).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(
                request_id = %request_id,
                %method,
                %path,
                status = error.status().as_u16(),
                error = %error,
                detail = ?error,
                "request failed"
            );
            error.into_response(&request_id, &accept)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    response
}

async fn dispatch(
    app: &App,
    client: SocketAddr,
    request: Request,
    request_id: &str,
) -> Result<Response<Body>, AppError> {
    let settings = &app.settings;
    let deadline = tokio::time::Instant::now() + settings.timeout;
    let deadline_epoch_ms = (SystemTime::now() + settings.timeout)
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let (parts, body) = request.into_parts();
    let (mut method, mut uri, mut headers) = (parts.method, parts.uri, parts.headers);
    let mut content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    let mut hops = 0;
    loop {
        let route = match app.routes.lookup(uri.path())? {
            Lookup::Found(route) => route,
            Lookup::NotFound => {
                return Err(AppError::NotFound {
                    path: uri.path().to_owned(),
                });
            }
            Lookup::Conflict { pattern, files } => {
                return Err(AppError::Conflict { pattern, files });
            }
        };
        let request_body =
            RequestBody::receive(std::mem::take(&mut body), content_length, settings.max_body)
                .await?;
        let queued = tokio::time::Instant::now();
        let wait_limit = settings
            .queue_timeout
            .min(deadline.saturating_duration_since(queued));
        let slot = tokio::time::timeout(wait_limit, Arc::clone(&app.slots).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(AppError::Overloaded {
                seconds: settings.queue_timeout.as_secs().max(1),
            })?;
        let mut record = InvocationRecord::new(request_id, method.as_str());
        record.route.clone_from(&route.function.pattern);
        record.file.clone_from(&route.function.file.relative);
        record.queue_wait_ms = queued.elapsed().as_millis() as u64;
        record.bytes_in = request_body.content_length().unwrap_or(0);
        record.slot = Some(slot);
        let invocation = Invocation {
            request_id: request_id.to_owned(),
            route,
            method: method.clone(),
            uri: uri.clone(),
            version: parts.version,
            headers: headers.clone(),
            body: request_body,
            client,
            local: app.local,
            deadline,
            deadline_epoch_ms,
            settings: Arc::clone(settings),
            record,
        };
        match app.invoker.invoke(invocation).await? {
            Reply::Response(response) => return Ok(response),
            Reply::LocalRedirect(location) => {
                hops += 1;
                if hops > MAX_LOCAL_REDIRECTS {
                    return Err(AppError::RedirectLoop { hops, location });
                }
                uri = location
                    .parse::<Uri>()
                    .ok()
                    .filter(|u| u.scheme().is_none() && u.path().starts_with('/'))
                    .ok_or(AppError::BadRedirect { location })?;
                // RFC 3875 §6.2.2: the redirected request is a GET without a body.
                method = Method::GET;
                headers.remove(header::CONTENT_TYPE);
                headers.remove(header::CONTENT_LENGTH);
                content_length = None;
                body = Body::empty();
            }
        }
    }
}
