//! `protocol = "lambda"`: the AWS Lambda Runtime API, so binaries built with
//! `lambda_runtime`/`lambda_http` (and the other official runtime clients) run
//! unchanged.
//!
//! Each worker gets its own Runtime API endpoint on 127.0.0.1 (`AWS_LAMBDA_RUNTIME_API`).
//! The worker long-polls `/invocation/next`; watchdog hands it the request as a
//! Lambda Function URL event (API Gateway payload 2.0) and reads its answer from
//! `/response` (buffered, or streamed with `Lambda-Runtime-Function-Response-Mode:
//! streaming`) or `/error`, the way Function URLs read them. The worker is ready
//! when it first asks for an invocation.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use super::deadline_guard::{Expire, Guarded};
use super::{Failed, Lease, Outcome, Waited, Worker};
use crate::invoke::body_fault::BodyWatch;
use crate::invoke::forwarded;
use crate::invoke::{Invocation, InvokeError, Reply};
use crate::limits::Limiter;
use crate::observability::InvocationRecord;
use crate::routes::{Function, ParamValue};

const API: &str = "/2018-06-01/runtime";
/// Lambda's limit on a synchronous invocation's payload, each way: the
/// largest event a request may make, and the largest answer a buffered
/// `/response` may carry.
const MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// How much of a runtime's larger answer is still read (and dropped) so that
/// the runtime gets its 413, rather than a connection closed in the middle of
/// its upload. A client's request is drained up to `--max-body` instead (at
/// least this much), which already bounds it: a 413 for Lambda's limit must
/// not become a reset for an upload the server's own limit allows.
const MAX_DRAINED: usize = 64 * 1024 * 1024;
/// The JSON prelude of a streamed HTTP response ends with these bytes.
const PRELUDE_END: [u8; 8] = [0; 8];
/// What a Lambda answer that cannot be sent on should have been.
const ANSWER_HINT: &str = "answer with a Function URL response: `statusCode` (a number), `headers`, \
     `body` (a string), `isBase64Encoded`, `cookies`; or with any JSON, sent as a 200";

/// One event for the worker.
#[derive(Debug)]
struct Event {
    request_id: String,
    deadline_ms: u128,
    /// `Lambda-Runtime-Trace-Id` ([`super::trace`]).
    trace_id: String,
    payload: Bytes,
    /// Told when the worker's `/next` takes the event: until then the request
    /// has not started, and may still go to another worker.
    taken: oneshot::Sender<()>,
}

/// What the worker answered.
#[derive(Debug)]
enum Answer {
    Buffered(Bytes),
    Streamed {
        content_type: Option<HeaderValue>,
        body: Body,
    },
    /// The runtime's `/error`: the error type it named, and its body.
    Failed {
        kind: Option<String>,
        detail: String,
    },
    /// An answer that could not be read whole: why.
    Unreadable(String),
    /// A buffered answer past Lambda's limit: at least this many bytes.
    TooLarge(usize),
}

/// One worker's Runtime API endpoint.
#[derive(Debug)]
pub struct Runtime {
    pub addr: SocketAddr,
    events: mpsc::Sender<Event>,
    state: Arc<RuntimeState>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct RuntimeState {
    function_arn: String,
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    /// Becomes true at the worker's first `/next`.
    ready: watch::Sender<bool>,
    init_error: watch::Sender<Option<String>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Who the Runtime API serves ([`super::runtime_peer`]).
struct Peers {
    uid: u32,
    file: String,
}

impl Runtime {
    async fn start(function_name: &str, region: &str, peers: Peers) -> std::io::Result<Self> {
        let (events_tx, events_rx) = mpsc::channel(1);
        let state = Arc::new(RuntimeState {
            function_arn: format!("arn:aws:lambda:{region}:000000000000:function:{function_name}"),
            events: tokio::sync::Mutex::new(events_rx),
            waiting: Mutex::new(HashMap::new()),
            ready: watch::channel(false).0,
            init_error: watch::channel(None).0,
        });
        let router = Router::new()
            .route(&format!("{API}/invocation/next"), get(next))
            .route(&format!("{API}/invocation/{{id}}/response"), post(response))
            .route(&format!("{API}/invocation/{{id}}/error"), post(error))
            .route(&format!("{API}/init/error"), post(init_error))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let listener = super::runtime_peer::WorkerUserOnly::new(listener, peers.uid, peers.file)?;
        let server = tokio::spawn(serve_runtime_api(listener, router));
        Ok(Self {
            addr,
            events: events_tx,
            state,
            server,
        })
    }
}

/// Serves the Runtime API as AWS's does, header names in canonical case
/// (`Lambda-Runtime-Aws-Request-Id`): HTTP says case does not matter, but a
/// bootstrap that copies the headers into a plain map (Python's
/// `dict(response.headers)`) and looks the name up as the Lambda docs spell it
/// found nothing in hyper's lower case, and answered for request `None`.
/// (axum's `serve` has no way to ask for that.)
async fn serve_runtime_api(mut listener: super::runtime_peer::WorkerUserOnly, router: Router) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.title_case_headers(true);
    loop {
        let (stream, _) = axum::serve::Listener::accept(&mut listener).await;
        let router = router.clone();
        let service = hyper::service::service_fn(move |request| {
            tower::ServiceExt::oneshot(router.clone(), request)
        });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "Runtime API connection ended with an error");
            }
        });
    }
}

async fn next(State(state): State<Arc<RuntimeState>>) -> Response<Body> {
    state.ready.send_replace(true);
    let mut events = state.events.lock().await;
    let Some(event) = events.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let _ = event.taken.send(());
    let mut response = Response::new(Body::from(event.payload));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", event.request_id.clone());
    set("lambda-runtime-deadline-ms", event.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        state.function_arn.clone(),
    );
    set("lambda-runtime-trace-id", event.trace_id);
    response
}

/// Hands `answer` to the request waiting on event `id`, and says to the runtime
/// what Lambda would: 202, or 400 `InvalidRequestID` for an id that is not
/// awaiting an answer (unknown, or answered already), which runtime clients
/// report as such rather than as a missing endpoint.
///
/// The refusal is logged too, naming what does await an answer: a runtime that
/// read the id wrongly (a header looked up in the wrong case gave `None`) left
/// its client waiting until the timeout, with only a 504 to show for it.
fn deliver(state: &RuntimeState, id: &str, answer: Answer) -> Response<Body> {
    let (waiter, awaiting) = {
        let mut waiting = state
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let waiter = waiting.remove(id);
        let awaiting = waiter
            .is_none()
            .then(|| waiting.keys().cloned().collect::<Vec<_>>().join(", "));
        (waiter, awaiting)
    };
    if let Some(awaiting) = awaiting {
        let shown: String = id.chars().take(128).collect();
        tracing::warn!(
            function = %state.function_arn,
            answered_for = %shown,
            awaiting = %if awaiting.is_empty() { "none" } else { awaiting.as_str() },
            hint = "answer at /invocation/<id>/response with the Lambda-Runtime-Aws-Request-Id header of the event /invocation/next gave, once",
            "a Lambda runtime answered for a request id that awaits no answer (unknown, or answered already); refused with InvalidRequestID as Lambda does"
        );
    }
    match waiter {
        Some(waiter) => {
            let _ = waiter.send(answer);
            let json = [(header::CONTENT_TYPE, "application/json")];
            (StatusCode::ACCEPTED, json, r#"{"status":"OK"}"#).into_response()
        }
        None => {
            let invalid = serde_json::json!({
                "errorMessage": "Invalid request ID",
                "errorType": "InvalidRequestID",
            });
            (StatusCode::BAD_REQUEST, axum::Json(invalid)).into_response()
        }
    }
}

async fn response(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let streaming = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"streaming"));
    if streaming {
        // Hand the body over as it arrives, and answer the worker once it has
        // been read to the end (or the client went away).
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let request_id = id.clone();
        let frames = http_body_util::BodyStream::new(body).filter_map(move |frame| {
            let item = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => Some(Ok(data)),
                    Err(frame) => frame
                        .into_trailers()
                        .ok()
                        .and_then(|trailers| reported_error(&request_id, &trailers))
                        .map(Err),
                },
                Err(err) => Some(Err(err)),
            };
            std::future::ready(item)
        });
        let body = Body::from_stream(Notifying {
            inner: Box::pin(frames),
            _done: done_tx,
        });
        let content_type = headers.get(header::CONTENT_TYPE).cloned();
        let reply = deliver(&state, &id, Answer::Streamed { content_type, body });
        let _ = done_rx.await;
        return reply;
    }
    match read_payload(body, &mut 0, MAX_DRAINED).await {
        Payload::Whole(bytes) => deliver(&state, &id, Answer::Buffered(bytes)),
        Payload::Broken(_) => {
            let cause = "broke off its answer before the end".to_owned();
            deliver(&state, &id, Answer::Unreadable(cause))
        }
        Payload::TooLarge(size) => {
            deliver(&state, &id, Answer::TooLarge(size));
            // What Lambda tells a runtime whose answer is too large.
            let body = serde_json::json!({
                "errorMessage": format!("Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
                "errorType": "RequestEntityTooLarge",
            });
            (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
        }
    }
}

/// A payload (a buffered answer, a request's body) read within Lambda's limit.
enum Payload {
    Whole(Bytes),
    /// Past [`MAX_PAYLOAD`]: at least this many bytes. The rest was read and
    /// dropped up to the caller's bound, so that the sender gets its 413
    /// rather than a connection closed in the middle of its upload.
    TooLarge(usize),
    /// The upload broke off.
    Broken(axum::Error),
}

/// Reads `body`, counting in `size` what has arrived (so a caller that gives
/// up waiting knows whether it was too large already); past Lambda's limit it
/// reads on and drops up to `drain_up_to` bytes.
async fn read_payload(body: Body, size: &mut usize, drain_up_to: usize) -> Payload {
    let mut chunks = body.into_data_stream();
    let mut whole = bytes::BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(_) if *size > MAX_PAYLOAD => break,
            Err(err) => return Payload::Broken(err),
        };
        *size += chunk.len();
        if *size <= MAX_PAYLOAD {
            whole.extend_from_slice(&chunk);
        } else if *size > drain_up_to {
            break;
        }
    }
    if *size > MAX_PAYLOAD {
        return Payload::TooLarge(*size);
    }
    Payload::Whole(whole.freeze())
}

/// An invocation's error, with the type the runtime names in
/// `Lambda-Runtime-Function-Error-Type` (as the official clients send it)
/// beside its body in the log: the mid-stream error's line had it, this one
/// did not.
async fn error(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let kind = headers
        .get("lambda-runtime-function-error-type")
        .map(|kind| String::from_utf8_lossy(kind.as_bytes()).into_owned());
    let detail = String::from_utf8_lossy(&body).into_owned();
    deliver(&state, &id, Answer::Failed { kind, detail })
}

async fn init_error(State(state): State<Arc<RuntimeState>>, body: Bytes) -> StatusCode {
    state
        .init_error
        .send_replace(Some(String::from_utf8_lossy(&body).into_owned()));
    StatusCode::ACCEPTED
}

/// An error a runtime reports after its stream has begun, in the trailers
/// `lambda_runtime` and the other official clients send
/// (`Lambda-Runtime-Function-Error-Type`, `-Body`): logged, and the client's
/// response is cut off, as a CGI function's is when it fails mid-body, instead
/// of ending as if it were whole.
fn reported_error(request_id: &str, trailers: &HeaderMap) -> Option<axum::Error> {
    let kind = trailers.get("lambda-runtime-function-error-type")?;
    let kind = String::from_utf8_lossy(kind.as_bytes()).into_owned();
    let detail = trailers
        .get("lambda-runtime-function-error-body")
        .map(|body| {
            // Base64 of a JSON error object, as the clients send it; shown as
            // it came when it is not.
            BASE64.decode(body.as_bytes()).map_or_else(
                |_| String::from_utf8_lossy(body.as_bytes()).into_owned(),
                |decoded| String::from_utf8_lossy(&decoded).into_owned(),
            )
        })
        .unwrap_or_default();
    tracing::warn!(%request_id, error_type = %kind, error = %detail, "the function reported an error mid-stream; the response is cut off");
    Some(axum::Error::new(format!(
        "the function reported {kind} mid-stream"
    )))
}

/// A body stream that drops a oneshot sender when it ends or is dropped.
struct Notifying<S> {
    inner: S,
    _done: oneshot::Sender<()>,
}

impl<S: futures_util::Stream + Unpin> futures_util::Stream for Notifying<S> {
    type Item = S::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// Starts a worker with its own Runtime API and waits for its first `/next`.
///
/// # Errors
/// The function cannot start, reports an init error, exits before it is ready, or
/// is not ready by `deadline`.
pub async fn start(
    function: &Function,
    limiter: &Limiter,
    deadline: tokio::time::Instant,
) -> Result<Worker, InvokeError> {
    let file = function.file.relative.clone();
    let name = super::function_name::of_route(&function.pattern);
    // The user's own values (watchdog.toml `env`, `--env`, `.env`,
    // `--pass-env`) win over these stand-ins, as `-e` does with AWS's runtime
    // interface emulator: a function that calls real AWS services needs its
    // real region, and a Node runtime client its `_HANDLER`.
    let own = |name: &str| {
        function
            .settings
            .env
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.to_string_lossy().into_owned())
    };
    // (Later entries win in the function's environment, so the last is its.)
    // A region set either way is the region: AWS's SDKs and CLI read both.
    let region = own("AWS_REGION")
        .or_else(|| own("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let peers = Peers {
        uid: limiter
            .run_as
            .as_ref()
            .map_or_else(|| nix::unistd::geteuid().as_raw(), |user| user.uid),
        file: file.clone(),
    };
    let runtime =
        Runtime::start(&name, &region, peers)
            .await
            .map_err(|err| InvokeError::Spawn {
                file: file.clone(),
                cause: format!("cannot open its Runtime API endpoint: {err}"),
                hint: "see watchdog's log".into(),
            })?;
    let memory_mb = function
        .settings
        .limits
        .memory
        .map_or(128, |bytes| (bytes / (1024 * 1024)).max(1));
    let folder = function
        .document_root
        .join(&file)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let defaults = [
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "watchdog".to_owned()),
        ("AWS_REGION", region.clone()),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_EXECUTION_ENV", "watchdog".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("_HANDLER", file.clone()),
    ];
    let fixed = [
        ("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string()),
        ("LAMBDA_TASK_ROOT", folder),
    ];
    let env = defaults
        .into_iter()
        .filter(|(key, _)| own(key).is_none())
        .chain(fixed)
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    let mut worker = Worker::spawn(function, limiter, env)?;
    let mut ready = runtime.state.ready.subscribe();
    let mut init_error = runtime.state.init_error.subscribe();
    worker.runtime = Some(runtime);
    let outcome = tokio::select! {
        _ = ready.wait_for(|ready| *ready) => Ok(()),
        error = init_error.wait_for(Option::is_some) => {
            // The function's own words go to the log, never to the client
            // (CONTRACT §3), as with an error it reports for a request.
            let detail = error.ok().and_then(|e| e.clone()).unwrap_or_default();
            tracing::warn!(route = %function.pattern, pid = worker.pid, error = %detail, "the function reported an init error");
            Err("reported an init error (its text is in watchdog's log)".to_owned())
        }
        status = worker.exited() => Err(format!(
            "exited ({}) before asking for an invocation",
            status.map_or_else(|| "unknown status".into(), crate::invoke::cgi::describe_exit)
        )),
        () = tokio::time::sleep_until(deadline) => Err(format!(
            "did not ask for an invocation in the time a start is given ({})",
            super::policy::start_allowance_rule()
        )),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(route = %function.pattern, pid = worker.pid, "lambda worker ready");
            Ok(worker)
        }
        Err(cause) => {
            worker.stop(Duration::ZERO).await;
            Err(InvokeError::WorkerFailed { file, cause })
        }
    }
}

/// Receives the request's body whole and makes the Function URL event of the
/// request, once: a request that goes on to another worker sends the same
/// one. It runs before a worker is taken, so a slow, stalled or broken-off
/// upload holds no worker.
///
/// # Errors
/// 413 when the event is past Lambda's limit ([`MAX_PAYLOAD`]), as Lambda
/// refuses it; 408 or 400 when the body stalls, breaks off or is still
/// arriving at the deadline.
pub async fn receive_event(invocation: &mut Invocation) -> Result<Bytes, InvokeError> {
    let body =
        std::mem::replace(&mut invocation.body, crate::invoke::RequestBody::Empty).into_body();
    let mut size = 0;
    let max_body = invocation.route.function.settings.max_body;
    let drain_up_to = usize::try_from(max_body).map_or(usize::MAX, |max| max.max(MAX_DRAINED));
    let received = tokio::time::timeout_at(
        invocation.deadline,
        read_payload(body, &mut size, drain_up_to),
    )
    .await;
    let error = match received {
        Ok(Payload::Whole(body)) => {
            let event = Bytes::from(event(invocation, &body).to_string());
            if event.len() <= MAX_PAYLOAD {
                return Ok(event);
            }
            event_too_large(invocation, Some(event.len()))
        }
        // A body past the limit can never make an event within it.
        Ok(Payload::TooLarge(_)) => event_too_large(invocation, None),
        Ok(Payload::Broken(err)) => invocation
            .record
            .body
            .as_ref()
            .and_then(BodyWatch::fault)
            .map_or_else(|| InvokeError::BodyRead(err.to_string()), InvokeError::from),
        // Too large already: that is the answer, not the deadline.
        Err(_) if size > MAX_PAYLOAD => event_too_large(invocation, None),
        Err(_) => {
            invocation.record.timed_out = true;
            InvokeError::BodyTimeout {
                after: invocation.route.function.settings.timeout,
            }
        }
    };
    Err(invocation.record.failed(error))
}

/// The 413 Lambda would give: `size` is the event's, `None` when the body
/// alone was past the limit.
fn event_too_large(invocation: &Invocation, size: Option<usize>) -> InvokeError {
    InvokeError::EventTooLarge {
        file: invocation.route.function.file.relative.clone(),
        size: size.map_or_else(
            || format!("more than {MAX_PAYLOAD} bytes"),
            |size| format!("{size} bytes"),
        ),
        limit: MAX_PAYLOAD,
    }
}

/// Runs one request, its event made ([`receive_event`]), on the lent worker.
///
/// # Errors
/// 504 on timeout (the worker is killed and replaced), 502 when the worker fails
/// or reports an error; [`Failed::NotTaken`] when the worker exited before it
/// took the event.
pub async fn invoke(
    lease: Lease,
    mut invocation: Invocation,
    payload: Bytes,
) -> Result<Reply, Failed> {
    let file = invocation.route.function.file.relative.clone();
    invocation.record.pid = Some(lease.worker().pid);
    invocation.record.cold = Some(lease.cold);
    let request_id = runtime_request_id(&invocation.request_id);
    let Some(runtime) = lease.worker().runtime.as_ref() else {
        return Err(InvokeError::Internal.into());
    };
    let (answer_tx, answer_rx) = oneshot::channel();
    let (taken_tx, mut taken_rx) = oneshot::channel();
    runtime
        .state
        .waiting
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(request_id.clone(), answer_tx);
    let incoming_trace =
        (invocation.headers.get("x-amzn-trace-id")).and_then(|value| value.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let trace_id = super::trace::header(incoming_trace, &invocation.request_id, now);
    let sent = runtime.events.send(Event {
        request_id,
        trace_id,
        deadline_ms: invocation.deadline_epoch_ms,
        payload,
        taken: taken_tx,
    });
    // One deadline for the answer, and for a streamed answer's head as well.
    let exchange = async {
        let crashed = |cause: String| NoAnswer::Broke(cause, Outcome::Crashed);
        sent.await
            .map_err(|_| crashed("stopped taking invocations".to_owned()))?;
        let answer = tokio::select! {
            answer = answer_rx => answer.map_err(|_| crashed("dropped the invocation".to_owned()))?,
            status = lease.worker().exited() => {
                if taken_rx.try_recv().is_err() {
                    return Err(NoAnswer::NotTaken);
                }
                return Err(crashed(format!(
                    "exited ({}) during the invocation",
                    status.map_or_else(|| "unknown status".into(), crate::invoke::cgi::describe_exit)
                )));
            }
        };
        Ok(match answer {
            Answer::Buffered(bytes) => Ready::Buffered(bytes),
            Answer::Failed { kind, detail } => Ready::Failed { kind, detail },
            Answer::Unreadable(cause) => Ready::Unreadable(cause),
            Answer::TooLarge(size) => Ready::TooLarge(size),
            // A malformed prelude is a bad answer, as a malformed buffered one
            // is: the worker serves on.
            Answer::Streamed { content_type, body } => {
                let (response, stream) = streamed_response(content_type, body)
                    .await
                    .map_err(NoAnswer::Bad)?;
                Ready::Streamed(response, stream)
            }
        })
    };
    // A client that leaves before the answer drops this future: the lease
    // with it (it stops the worker), and the record, logged as a client gone.
    let ready = match super::await_answer(&mut invocation, exchange).await {
        Waited::Answered(Ok(ready)) => ready,
        Waited::Answered(Err(NoAnswer::NotTaken)) => {
            lease.finish(Outcome::NotTaken);
            return Err(Failed::NotTaken(Box::new(invocation)));
        }
        Waited::Answered(Err(NoAnswer::Broke(cause, outcome))) => {
            let error = InvokeError::WorkerFailed { file, cause };
            return Err(failed(lease, &mut invocation.record, error, outcome)
                .await
                .into());
        }
        Waited::Answered(Err(NoAnswer::Bad(cause))) => {
            let error = InvokeError::BadAnswer {
                file,
                cause,
                hint: ANSWER_HINT,
            };
            return Err(
                failed(lease, &mut invocation.record, error, Outcome::Served)
                    .await
                    .into(),
            );
        }
        Waited::Stopped => {
            lease.finish(Outcome::Stuck);
            return Err(invocation.stopped_by_shutdown().into());
        }
        Waited::TimedOut => {
            invocation.record.timed_out = true;
            lease.finish(Outcome::Stuck);
            let after = invocation.route.function.settings.timeout;
            return Err(invocation
                .record
                .failed(InvokeError::Timeout { file, after })
                .into());
        }
    };
    let response = match ready {
        Ready::Buffered(bytes) => {
            lease.finish(Outcome::Served);
            buffered_response(&bytes)
        }
        Ready::Streamed(mut response, stream) if invocation.method == axum::http::Method::HEAD => {
            // A HEAD answer's body is never read: the invocation is over with
            // the head. Its length stays unknown, as the GET's is.
            invocation.record.status = Some(response.status().as_u16());
            drop(stream);
            lease.finish(Outcome::Served);
            *response.body_mut() = crate::invoke::empty_of_unknown_length();
            return Ok(Reply::Response(response));
        }
        Ready::Streamed(mut response, stream) => {
            invocation.record.status = Some(response.status().as_u16());
            // The worker stays lent, and the invocation open, until the streamed
            // body has been read through.
            let leased = Leased {
                inner: stream,
                lease: Some(lease),
                deadline: Box::pin(tokio::time::sleep_until(invocation.deadline)),
                record: Some(invocation.record),
                expired: false,
            };
            *response.body_mut() = Body::from_stream(Guarded::new(leased, invocation.deadline));
            return Ok(Reply::Response(response));
        }
        Ready::Unreadable(cause) => {
            lease.finish(Outcome::Served);
            return Err(Failed::Error(
                (invocation.record).failed(InvokeError::WorkerFailed { file, cause }),
            ));
        }
        // The worker is fine; its answer is too large to pass on.
        Ready::TooLarge(size) => {
            lease.finish(Outcome::Served);
            let cause = format!(
                "it is at least {size} bytes, past Lambda's limit of {MAX_PAYLOAD} for a buffered answer"
            );
            return Err(Failed::Error((invocation.record).failed(
                InvokeError::BadAnswer {
                    file,
                    cause,
                    hint: "stream it (the Lambda-Runtime-Function-Response-Mode: streaming header on /response), or send less",
                },
            )));
        }
        Ready::Failed { kind, detail } => {
            lease.finish(Outcome::Served);
            tracing::warn!(
                request_id = %invocation.request_id,
                file = %file,
                error_type = kind.as_deref().map(display),
                error = %detail,
                "the function returned an error"
            );
            return Err(invocation
                .record
                .failed(InvokeError::FunctionError { file })
                .into());
        }
    };
    let response = response.map_err(|cause| {
        Failed::Error((invocation.record).failed(InvokeError::BadAnswer {
            file,
            cause,
            hint: ANSWER_HINT,
        }))
    })?;
    invocation.record.status = Some(response.status().as_u16());
    invocation.record.bytes_out = http_body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    Ok(Reply::Response(response))
}

/// The id the worker sees as `Lambda-Runtime-Aws-Request-Id`: the request's
/// own when it can stand in a URL path as it is, since runtime clients build
/// `/invocation/<id>/response` by concatenation; else a fresh one. A client's
/// `X-Request-Id: a/b` used to send the worker's answer to a path that does not
/// exist, holding a worker for the whole timeout. (The event's
/// `requestContext.requestId` keeps the request's id.)
fn runtime_request_id(request_id: &str) -> String {
    // `.` and `..` would be taken for path steps.
    let path_safe = request_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        && request_id.bytes().any(|b| b != b'.');
    if path_safe {
        request_id.to_owned()
    } else {
        crate::server::request_id::generate()
    }
}

/// The Lambda Function URL event (API Gateway payload format 2.0).
fn event(invocation: &Invocation, body: &[u8]) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    let mut cookies = Vec::new();
    // As a Function URL's event has them (a handler reads the client's address
    // from `x-forwarded-for`).
    let client = invocation.client.ip();
    for (name, value) in [
        (
            forwarded::FOR,
            forwarded::chain(&invocation.headers, client),
        ),
        (forwarded::PROTO, forwarded::proto(&invocation.headers)),
    ] {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.insert(name.to_owned(), serde_json::Value::String(value));
    }
    for (name, value) in &invocation.headers {
        if name == forwarded::FOR || name == forwarded::PROTO {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == header::COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), serde_json::Value::String(value));
            }
        }
    }
    let raw_query = invocation.uri.query().unwrap_or("").to_owned();
    let mut query: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    for (key, value) in url_pairs(&raw_query) {
        match query.get_mut(&key) {
            Some(serde_json::Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                query.insert(key, serde_json::Value::String(value));
            }
        }
    }
    let mut path_parameters = serde_json::Map::new();
    for (name, value) in &invocation.route.params {
        let text = match value {
            ParamValue::One(one) => one.clone(),
            ParamValue::Many(many) => many.join("/"),
        };
        path_parameters.insert(name.clone(), serde_json::Value::String(text));
    }
    let content_type = invocation
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let textual = content_type.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded"]
            .iter()
            .any(|kind| content_type.contains(kind));
    let (body_text, base64) = match std::str::from_utf8(body) {
        Ok(text) if textual || content_type.is_empty() => (text.to_owned(), false),
        _ => (BASE64.encode(body), true),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = invocation
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let user_agent = invocation
        .headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": invocation.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "watchdog",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or("localhost"),
            "http": {
                "method": invocation.method.as_str(),
                "path": invocation.uri.path(),
                "protocol": format!("{:?}", invocation.version),
                "sourceIp": invocation.client_ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": invocation.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.as_millis() as u64,
        },
        "isBase64Encoded": base64,
    });
    if !body.is_empty() {
        event["body"] = serde_json::Value::String(body_text);
    }
    if !cookies.is_empty() {
        event["cookies"] = serde_json::json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = serde_json::Value::Object(query);
    }
    if !path_parameters.is_empty() {
        event["pathParameters"] = serde_json::Value::Object(path_parameters);
    }
    event
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(key), decode(value))
        })
        .collect()
}

/// Reads a buffered answer the way Function URLs do: an object with `statusCode`
/// is an HTTP response; any other JSON is a 200 `application/json` body.
fn buffered_response(bytes: &[u8]) -> Result<Response<Body>, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null);
    let Some(status) = status_code(&value)? else {
        let mut response = Response::new(Body::from(Bytes::copy_from_slice(bytes)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    };
    let mut response = http_head(&value, status)?;
    let body = match value.get("body") {
        None | Some(serde_json::Value::Null) => "",
        Some(serde_json::Value::String(text)) => text,
        Some(other) => {
            return Err(format!(
                "answered with a `body` that is {}, not a string: a Function URL response's body is text (JSON.stringify an object, or base64-encode bytes with `isBase64Encoded`)",
                json_kind(other)
            ));
        }
    };
    let base64 = value
        .get("isBase64Encoded")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let body = if base64 {
        BASE64
            .decode(body)
            .map_err(|err| format!("`body` is not valid base64: {err}"))?
    } else {
        body.as_bytes().to_vec()
    };
    // The length is the body's, as Function URLs send it: a `content-length`
    // the function computed wrongly (JavaScript's `body.length` counts UTF-16
    // units) would cut the body off, or leave the client waiting.
    response.headers_mut().remove(header::CONTENT_LENGTH);
    // A 204 or 304 has no body (RFC 9110 §6.4.1): one the function gave is
    // dropped, as for CGI, or hyper would announce its length on a 204.
    if !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        *response.body_mut() = Body::from(body);
    }
    Ok(response)
}

/// A Function URL response object's `statusCode`, if it has one. A number
/// written as a string (`"404"`, as some handlers built for API Gateway send it)
/// is taken as that number; anything else is an error, not a 200 whose body is
/// the whole object.
///
/// # Errors
/// A `statusCode` that is not a number, or not an HTTP status.
fn status_code(value: &serde_json::Value) -> Result<Option<StatusCode>, String> {
    let number = match value.get("statusCode") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(number)) => number.as_u64(),
        Some(serde_json::Value::String(text)) => text.trim().parse().ok(),
        Some(_) => None,
    };
    let status = number
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| crate::invoke::is_answer_status(*n))
        .and_then(|n| StatusCode::from_u16(n).ok());
    match status {
        Some(status) => Ok(Some(status)),
        None => Err(format!(
            "answered with `statusCode` {}, which is not an HTTP status from 200 to 599",
            value["statusCode"]
        )),
    }
}

/// What kind of JSON value `value` is, for a message.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Status, headers and cookies of a Function URL response object.
fn http_head(value: &serde_json::Value, status: StatusCode) -> Result<Response<Body>, String> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut add = |name: &str, value: &str| -> Result<(), String> {
        let name = axum::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name `{name}` is invalid"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header `{name}` is invalid"))?;
        headers.append(name, value);
        Ok(())
    };
    if let Some(map) = value.get("headers").and_then(serde_json::Value::as_object) {
        for (name, value) in map {
            if let Some(text) = header_text(name, value)? {
                add(name, &text)?;
            }
        }
    }
    if let Some(map) = value
        .get("multiValueHeaders")
        .and_then(serde_json::Value::as_object)
    {
        for (name, values) in map {
            for value in values.as_array().into_iter().flatten() {
                if let Some(text) = header_text(name, value)? {
                    add(name, &text)?;
                }
            }
        }
    }
    for cookie in value
        .get("cookies")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
    {
        add("set-cookie", cookie)?;
    }
    crate::invoke::hop_by_hop::strip(response.headers_mut());
    Ok(response)
}

/// A header's value as API Gateway and Function URLs take it: a number or a
/// boolean is sent as its JSON text (`"Access-Control-Allow-Credentials": true`
/// is common in handlers written for them), `null` as no header at all.
///
/// # Errors
/// An object or an array, which no HTTP header can carry.
fn header_text<'a>(
    name: &str,
    value: &'a serde_json::Value,
) -> Result<Option<std::borrow::Cow<'a, str>>, String> {
    use serde_json::Value;
    match value {
        Value::String(text) => Ok(Some(text.as_str().into())),
        Value::Number(_) | Value::Bool(_) => Ok(Some(value.to_string().into())),
        Value::Null => Ok(None),
        Value::Array(_) | Value::Object(_) => Err(format!(
            "the value of header `{name}` is a JSON {}; give a string, a number or a boolean",
            if value.is_array() { "array" } else { "object" }
        )),
    }
}

/// The error a request its worker gave no answer ends with (the limit that
/// killed the worker, if one did: [`Lease::blame`]), the worker given back.
async fn failed(
    lease: Lease,
    record: &mut InvocationRecord,
    error: InvokeError,
    outcome: Outcome,
) -> InvokeError {
    let error = lease.blame(record, error).await;
    lease.finish(outcome);
    record.failed(error)
}

/// Why a lent worker gave no answer.
enum NoAnswer {
    /// It exited before it took the event: the request never started.
    NotTaken,
    /// Why it broke off, and what that says about the worker.
    Broke(String, Outcome),
    /// Its answer cannot be sent on (a malformed streamed prelude), as a
    /// malformed buffered one cannot: the worker serves on.
    Bad(String),
}

/// A worker's answer, read as far as the response head.
enum Ready {
    Buffered(Bytes),
    /// A streamed answer: an HTTP-integration prelude (JSON, then eight NUL
    /// bytes) followed by the body, or, without that content type, the body alone.
    Streamed(Response<Body>, BodyStream),
    Failed {
        kind: Option<String>,
        detail: String,
    },
    Unreadable(String),
    TooLarge(usize),
}

/// The head of a streamed answer (its prelude, for an HTTP integration response),
/// and the rest of the body.
async fn streamed_response(
    content_type: Option<HeaderValue>,
    body: Body,
) -> Result<(Response<Body>, BodyStream), String> {
    let integration = content_type.as_ref().is_some_and(|c| {
        c.as_bytes()
            .starts_with(b"application/vnd.awslambda.http-integration-response")
    });
    let mut stream = body.into_data_stream();
    let (mut response, rest): (Response<Body>, BodyStream) = if integration {
        let mut prelude = Vec::new();
        let rest = loop {
            let Some(Ok(chunk)) = stream.next().await else {
                return Err("the streamed response ended inside its prelude".into());
            };
            prelude.extend_from_slice(&chunk);
            if let Some(at) = prelude
                .windows(PRELUDE_END.len())
                .position(|w| w == PRELUDE_END)
            {
                let rest = prelude.split_off(at + PRELUDE_END.len());
                prelude.truncate(at);
                break rest;
            }
            if prelude.len() > 64 * 1024 {
                return Err("the streamed response's prelude is larger than 64 KiB".into());
            }
        };
        let value: serde_json::Value = serde_json::from_slice(&prelude)
            .map_err(|err| format!("the streamed prelude is not JSON: {err}"))?;
        let status = status_code(&value)?.unwrap_or(StatusCode::OK);
        let response = http_head(&value, status)?;
        let first = Bytes::from(rest);
        let stream = futures_util::stream::iter([Ok::<Bytes, axum::Error>(first)]).chain(stream);
        (response, Box::pin(stream))
    } else {
        let mut response = Response::new(Body::empty());
        if let Some(content_type) = content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        (response, Box::pin(stream))
    };
    response.headers_mut().remove(header::CONTENT_LENGTH);
    Ok((response, rest))
}

type BodyStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, axum::Error>> + Send>>;

/// A streamed body that gives its worker back when it ends, and cuts the
/// response off (the worker is stopped as stuck) at the invocation's deadline.
/// It holds the invocation's record, so the log event comes at the end.
struct Leased {
    inner: BodyStream,
    lease: Option<Lease>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    record: Option<InvocationRecord>,
    /// Ended at its deadline, by its own check or by its [`Guarded`] timer
    /// while hyper was not polling it (a client that stopped reading).
    expired: bool,
}

impl Leased {
    /// Gives the worker back with `outcome`, then writes the log line with
    /// what `note` adds to it; both happen once, whichever way the body ends.
    fn end(&mut self, outcome: Outcome, note: fn(&mut InvocationRecord)) {
        if let Some(lease) = self.lease.take() {
            lease.finish(outcome);
        }
        if let Some(mut record) = self.record.take() {
            note(&mut record);
        }
    }
}

impl Expire for Leased {
    fn expire(&mut self) {
        self.expired = true;
        self.end(Outcome::Stuck, |record| record.timed_out = true);
    }
}

impl futures_util::Stream for Guarded<Leased> {
    type Item = Result<Bytes, axum::Error>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut *this.lock()).poll_next(cx);
        if matches!(polled, std::task::Poll::Ready(Some(Ok(_)))) {
            this.arm();
        }
        polled
    }
}

impl futures_util::Stream for Leased {
    type Item = Result<Bytes, axum::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        if self.expired || (self.lease.is_some() && self.deadline.as_mut().poll(cx).is_ready()) {
            self.expire();
            return Poll::Ready(Some(Err(axum::Error::new(
                "the function timed out mid-response",
            ))));
        }
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(record) = self.record.as_mut() {
                    record.bytes_out += chunk.len() as u64;
                }
            }
            Poll::Ready(None) => self.end(Outcome::Served, |_| {}),
            // The worker's stream broke, or it reported an error: logged now,
            // so that the drop that follows is not taken for a client that
            // left, and the worker given back (found dead if it died).
            Poll::Ready(Some(Err(_))) => self.end(Outcome::Served, |record| record.cut_off = true),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Leased {
    /// Dropped with the record still held: the client left before the end (or
    /// it was a HEAD, whose body is never read). The worker has answered and is
    /// given back, as an HTTP worker is when its client leaves mid-body: it asks
    /// for its next event once it has sent the rest into the void.
    fn drop(&mut self) {
        self.end(Outcome::Served, |record| {
            record.client_gone = true;
            record.worker_kept = true;
        });
    }
}
