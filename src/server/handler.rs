//! From an HTTP request to a function's response: route, receive the body, queue
//! for a slot, invoke, follow local redirects. Errors are rendered once, here.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, header};

use super::App;
use super::admission::{self, Held, QueueWait, Ticket};
use super::error::AppError;
use super::listener::Connection;
use super::request_id;
use crate::invoke::{Invocation, InvokeError, Reply, RequestBody};
use crate::observability::{InvocationRecord, Requested, metrics};
use crate::routes::{Function, Lookup};

/// The longest a request that found no function waits for a pending reload
/// ([`crate::routes::reload::Pending::catch_up`]); a 10,000-function tree is
/// walked in about 110 ms here.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(2);

/// Local redirects followed for one request before giving up (CONTRACT §3).
pub const MAX_LOCAL_REDIRECTS: usize = 10;

/// The axum fallback: every request outside `/_watchdog/`.
pub async fn function(
    State(app): State<Arc<App>>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    request: Request,
) -> Response<Body> {
    handle(&app, connection, request).await
}

/// Answers one request. Also used by `watchdog invoke` and cron, without a
/// socket ([`Connection::internal`]).
pub async fn handle(app: &App, connection: Connection, request: Request) -> Response<Body> {
    let request_id = request_id::of(request.extensions(), request.headers());
    // Kept for an error page: the Accept values, not a copy of every header.
    let accept = super::error::accept_of(request.headers());
    let method = request.method().clone();
    let uri = request.uri().clone();
    let http10 = request.version() == axum::http::Version::HTTP_10;
    let mut answered = Answered::Unmatched;
    let mut ends_connection = false;
    let mut response = match dispatch(app, connection, request, &request_id, &mut answered).await {
        Ok(response) => response,
        Err(error) => {
            ends_connection = error.ends_connection();
            tracing::warn!(
                request_id = %request_id,
                %method,
                path = %uri.path(),
                status = error.status().as_u16(),
                error = %error,
                "request failed"
            );
            error.into_response(&request_id, &accept)
        }
    };
    let status = response.status().as_u16();
    match &answered {
        Answered::Function(function) => function.metrics.request(status),
        Answered::Conflict(pattern) => metrics::request(pattern, status),
        Answered::Unmatched => metrics::request("unmatched", status),
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    if app.is_draining() || ends_connection || (http10 && ends_with_connection(&method, &response))
    {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
        // hyper adds `keep-alive` to the `Connection` of an HTTP/1.1 answer
        // to a keep-alive HTTP/1.0 client (`close, keep-alive`) and closes
        // all the same; an HTTP/1.0 answer without `keep-alive` it closes as
        // it says. The status line says HTTP/1.0 to such a client either way.
        if http10 {
            *response.version_mut() = axum::http::Version::HTTP_10;
        }
    }
    response
}

/// Whether an answer to an HTTP/1.0 request can only end with its
/// connection (1.0 has no chunking), so a keep-alive client must be told
/// `close`. Not when its length is known: a body of exact size, or a
/// function's own `Content-Length` (its body is a stream all the same); nor
/// for HEAD, whose answer has no body to end. During the drain delay every
/// answer says `close` anyway, so that a kept-alive client reconnects (and
/// reaches another instance) rather than find its connection closed under it
/// when watchdog stops accepting.
fn ends_with_connection(method: &Method, response: &Response<Body>) -> bool {
    method != Method::HEAD
        && !response.headers().contains_key(header::CONTENT_LENGTH)
        && http_body::Body::size_hint(response.body())
            .exact()
            .is_none()
}

/// The answer to `OPTIONS *`, which asks about the server, not a resource
/// (RFC 9110 §9.3.7): the common methods (a function is given any method
/// at all). It was a 404 "no function answers *".
fn server_options() -> Response<Body> {
    Response::builder()
        .header(
            header::ALLOW,
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        )
        .header(header::CONTENT_LENGTH, "0")
        .body(Body::empty())
        .unwrap_or_default()
}

/// Which route a request reached, for the request counter's `route` label.
enum Answered {
    Unmatched,
    Conflict(String),
    Function(Arc<Function>),
}

async fn dispatch(
    app: &App,
    connection: Connection,
    request: Request,
    request_id: &str,
    answered: &mut Answered,
) -> Result<Response<Body>, AppError> {
    let started = tokio::time::Instant::now();
    let started_wall = SystemTime::now();
    let (parts, body) = request.into_parts();
    let client = connection.remote;
    let from_socket = connection.local.is_some();
    let local = connection.local.unwrap_or(app.local);
    let head = super::listener::head_size(&parts);
    if head > super::listener::MAX_HEAD_BYTES {
        return Err(AppError::HeadTooLarge { bytes: head });
    }
    super::host::check(parts.version, &parts.headers)?;
    super::transfer_coding::check(&parts.headers)?;
    super::expect::check(&parts.headers)?;
    if parts.method == Method::OPTIONS && parts.uri == "*" {
        return Ok(server_options());
    }
    // A tunnel request: its target is a host and port (RFC 9112 section 3.2.3),
    // not a route, and a function given one answers what hyper then treats
    // as a tunnel. Node's server drops such a connection unanswered, which
    // counted as a crash: fifteen of them made a handler module answer 503
    // for a minute (a hostile-client probe).
    if parts.method == Method::CONNECT {
        return Err(AppError::Connect);
    }
    let (mut method, mut uri, mut headers) = (parts.method, parts.uri, parts.headers);
    // Believed from a trusted proxy's connection only; none for cron and
    // `watchdog invoke`, which have no connection.
    let forwarded = if from_socket {
        (app.settings.trusted_proxies).forwarded(client.ip(), &headers)
    } else {
        None
    };
    super::host::take_from_target(&uri, &mut headers)?;
    let mut content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    let mut hops = 0;
    // The client's own target, which a local redirect's function is told as
    // Apache tells it (`REDIRECT_URL`); cloned only when a redirect happens.
    let mut redirected_from: Option<Uri> = None;
    // The last local redirect followed, with the rest of its header block.
    let mut redirected: Option<(String, HeaderMap)> = None;
    // Whether this request has already waited for a pending reload.
    let mut caught_up = false;
    loop {
        // The table's guard is let go at once: the match below may wait.
        let found =
            app.routes
                .load()
                .lookup(uri.path())
                .map_err(|err| match redirected.take() {
                    // The client asked for a good path; the function named a bad one.
                    Some((location, _)) => AppError::BadRedirect { location },
                    None => err.into(),
                })?;
        let route = match found {
            Lookup::Found(route) => route,
            Lookup::NotFound => {
                // A local path that is no function (`/thanks.html`, `/`) is
                // likely served by whatever stands in front of watchdog: the
                // client is sent there, as lighttpd does, rather than given a
                // 404 for a URL it never asked for. Not a path with `\`, which
                // browsers read as `/` (`/\evil.example` is another site): a
                // script that checked for a leading `//` meant to stay here.
                if let Some((location, headers)) = redirected {
                    if location.contains('\\') {
                        return Err(AppError::BadRedirect { location });
                    }
                    tracing::info!(
                        request_id,
                        %location,
                        "the function's local redirect names no function; sending the client there (302)"
                    );
                    return Ok(redirect_to(&location, headers));
                }
                // A file just added may be what was asked for.
                if app.reload_pending.is_pending() && catch_up_once(app, &mut caught_up).await {
                    continue;
                }
                let table = app.routes.load();
                // Apache would answer 500 and log "Permission denied": the
                // operator hears why, the client only that nothing answers.
                // Any client can ask for such a path over and over: sparse.
                static SKIPPED_ASKED: crate::observability::sparse::Sparse =
                    crate::observability::sparse::Sparse::new(Duration::from_secs(10));
                if let Some(skipped) = table.skipped_at(uri.path())
                    && let Some(asked) = SKIPPED_ASKED.note()
                {
                    tracing::info!(
                        asked,
                        request_id = %request_id,
                        path = %uri.path(),
                        file = %skipped.relative,
                        why = %skipped.reason,
                        "no function answers this path, but the file it names is there and is not one (said at most every 10 s, `asked` counting since the last)"
                    );
                }
                return Err(AppError::NotFound {
                    path: uri.path().to_owned(),
                    outside_prefix: table.prefix_missed_by(uri.path()),
                });
            }
            Lookup::Conflict { pattern, files } => {
                // The change pending may be the one that resolves it.
                if app.reload_pending.is_pending() && catch_up_once(app, &mut caught_up).await {
                    continue;
                }
                *answered = Answered::Conflict(pattern.clone());
                return Err(AppError::Conflict { pattern, files });
            }
        };
        *answered = Answered::Function(Arc::clone(&route.function));
        if app.reload_pending.is_pending()
            && !crate::routes::reload::still_below_dir(
                &route.function.file.path,
                &route.function.document_root,
            )
        {
            // Renamed (`lang.sh` to `lang.py`) or replaced: the table walked
            // after the change may name its successor.
            if catch_up_once(app, &mut caught_up).await {
                continue;
            }
            let file = route.function.file.relative.clone();
            return Err(InvokeError::Removed { file }.into());
        }
        // A CGI program is read from disk at each exec, so an edit reaches the
        // next request by itself; a warm function's workers (a handler
        // module's included) run the code they started with until the walk
        // after the edit swaps in its new version. The request waits for that
        // walk (the quiet period cut short), so a save followed by a request
        // gets the new code (CONTRACT §2) rather than the old for up to
        // `SETTLE` and the walk. Only for a change that may touch its code: a
        // function that writes a log or a database under DIR as it runs
        // would otherwise wait for a walk after each of its writes.
        if app.reload_pending.is_pending()
            && route.function.settings.warm.is_some()
            && app.reload_pending.may_concern(|changed| {
                crate::routes::code_fingerprint::may_change_version(&route.function.file, changed)
            })
            && catch_up_once(app, &mut caught_up).await
        {
            continue;
        }
        let function = &route.function.settings;
        let deadline = started + function.timeout;
        let deadline_epoch_ms = (started_wall + function.timeout)
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        let receive = RequestBody::receive(
            std::mem::take(&mut body),
            content_length,
            function.max_body,
            app.settings.body_idle_timeout,
        );
        let request_body = tokio::time::timeout_at(deadline, receive)
            .await
            .map_err(|_| InvokeError::BodyTimeout {
                after: function.timeout,
            })??;
        let queued = tokio::time::Instant::now();
        let slots = acquire_slots(
            app,
            &route.function.file.relative,
            function.max_concurrency,
            deadline,
            function.timeout,
            app.invoker.admits_once_placed(&route.function),
        )
        .await;
        let mut record = InvocationRecord::start(
            request_id,
            Requested {
                method: method.clone(),
                uri: uri.clone(),
                client: from_socket.then_some(client),
                forwarded_client: forwarded.map(|forwarded| forwarded.client),
            },
            Arc::clone(&route.function),
        );
        record.queue_wait = queued.elapsed();
        // A request the queue turned away is an invocation that never ran: it
        // has its log line and metrics too (as a warm request's 503 does), as
        // the record is dropped with the error.
        let (slots, ticket) = match slots {
            Ok(held) => held,
            Err(refused) => {
                // Its wait is recorded with the record, as it is dropped.
                route.function.metrics.count_queue_rejected();
                return Err(record.failed(refused).into());
            }
        };
        record.bytes_in = request_body.content_length().unwrap_or(0);
        record.body = request_body.watch();
        record.slots = slots;
        let invocation = Invocation {
            request_id: request_id.to_owned(),
            route,
            method: method.clone(),
            uri: uri.clone(),
            version: parts.version,
            headers: headers.clone(),
            body: request_body,
            client,
            forwarded,
            redirected_from: redirected_from.clone(),
            local,
            deadline,
            deadline_epoch_ms,
            settings: Arc::clone(&app.settings),
            record,
            ticket,
            tasks: app.tasks.clone(),
            stop: app.stop_invocations.clone(),
        };
        match app.invoker.invoke(invocation).await? {
            Reply::Response(mut response) => {
                if let Some((_, carried)) = redirected {
                    carry_redirect_headers(response.headers_mut(), carried);
                }
                return Ok(response.map(super::cut_off::after_flush));
            }
            Reply::LocalRedirect {
                location,
                headers: redirect_headers,
            } => {
                hops += 1;
                if hops > MAX_LOCAL_REDIRECTS {
                    return Err(AppError::RedirectLoop { hops, location });
                }
                if redirected_from.is_none() {
                    redirected_from = Some(uri.clone());
                }
                uri = location
                    .parse::<Uri>()
                    .ok()
                    .filter(|u| u.scheme().is_none() && u.path().starts_with('/'))
                    .ok_or_else(|| AppError::BadRedirect {
                        location: location.clone(),
                    })?;
                // Headers of every hop so far travel on, as Apache carries a
                // script's headers through its internal redirects.
                // A later hop's own headers replace an earlier one's.
                let mut carried = without_body_headers(redirect_headers);
                if let Some((_, earlier)) = redirected {
                    carry_redirect_headers(&mut carried, earlier);
                }
                redirected = Some((location, carried));
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

/// Waits for the pending reload ([`crate::routes::reload::Pending::catch_up`])
/// the first time a request asks; true when it waited and should look again.
async fn catch_up_once(app: &App, caught_up: &mut bool) -> bool {
    if std::mem::replace(caught_up, true) {
        return false;
    }
    app.reload_pending.catch_up(CATCH_UP_LIMIT).await;
    true
}

/// Adds what a local redirect's header block said besides `Location:` to the
/// answer that ends it, as Apache carries a script's headers through its
/// internal redirect. A classic login script sets its session cookie and sends
/// the browser on with `Location: /api/home`; without the cookie the user is
/// never logged in. Every `Set-Cookie` is kept, the carried ones first (so the
/// answer's own cookie of the same name is the one a browser keeps); another
/// header only where the answer has none of that name (the answer describes
/// itself). `carried` has already lost what described the redirecting block's
/// own body ([`without_body_headers`]).
fn carry_redirect_headers(answer: &mut HeaderMap, mut carried: HeaderMap) {
    for name in answer.keys() {
        if name != header::SET_COOKIE {
            carried.remove(name);
        }
    }
    let own = std::mem::replace(answer, carried);
    let mut name = None;
    for (next, value) in own {
        // A repeated name comes once, before its first value.
        name = next.or(name);
        if let Some(name) = &name {
            answer.append(name.clone(), value);
        }
    }
}

/// `headers` without those that describe a body (`Content-*`, validators,
/// digests) and without `Location`: what a redirecting block can pass on.
fn without_body_headers(mut headers: HeaderMap) -> HeaderMap {
    crate::invoke::envelope::remove_headers(&mut headers, describes_a_body);
    headers
}

fn describes_a_body(name: &HeaderName) -> bool {
    name.as_str().starts_with("content-")
        || [
            header::ETAG,
            header::LAST_MODIFIED,
            header::LOCATION,
            HeaderName::from_static("digest"),
            HeaderName::from_static("repr-digest"),
        ]
        .contains(name)
}

/// A 302 to `location`, with the other headers of the block that named it.
fn redirect_to(location: &str, mut headers: HeaderMap) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    *response.headers_mut() = headers;
    response
}

/// The function's own slot (under `max_concurrency`), and the server-wide
/// one unless `defer` leaves it to the invoker ([`Ticket`]).
async fn acquire_slots(
    app: &App,
    file: &str,
    function_limit: Option<u32>,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
    defer: bool,
) -> Result<(Vec<Held>, Option<Ticket>), InvokeError> {
    let wait = QueueWait::starting_now(app.settings.queue_timeout, deadline, timeout);
    let mut slots = Vec::with_capacity(2);
    if let Some(limit) = function_limit {
        let semaphore = app.function_slots(file, limit);
        let permit = tokio::time::timeout_at(wait.give_up(), semaphore.acquire_owned()).await;
        let permit =
            (permit.ok().and_then(Result::ok)).ok_or_else(|| wait.refusal(file, Some(limit)))?;
        slots.push(Held::Function(permit));
    }
    if defer {
        return Ok((slots, Some(Ticket::new(&app.admission, file, wait))));
    }
    slots.push(admission::admit(&app.admission, file, wait).await?);
    Ok((slots, None))
}
