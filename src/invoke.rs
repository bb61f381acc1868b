//! The invocation seam: one request in, one response (or a local redirect) out.
//!
//! Routing, limits and the HTTP layer build an [`Invocation`] and hand it to an
//! [`Invoker`]; they never know how the function runs. The CGI spawner
//! ([`cgi::CgiInvoker`]) is the first implementation; a warm process pool and the Node
//! adapter plug in behind the same trait.

pub mod body_fault;
pub mod cgi;
pub mod dispatch;
pub mod envelope;
pub mod file_busy;
pub mod forwarded;
pub mod hop_by_hop;
pub mod node;
pub mod output_log;
pub mod pool;
pub mod request_body;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri, Version};

use crate::config::Settings;
use crate::observability::InvocationRecord;
use crate::routes::RouteMatch;
pub use envelope::EnvelopeError;
pub use request_body::RequestBody;

/// Everything a function needs to answer one request.
pub struct Invocation {
    pub request_id: String,
    pub route: RouteMatch,
    pub method: Method,
    /// The URI as the client sent it (path and query, raw).
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: RequestBody,
    /// The connection's other end: behind a balancer, the balancer.
    pub client: SocketAddr,
    /// What a trusted proxy said of the client (`--trusted-proxy`).
    pub forwarded: Option<crate::server::trusted_proxies::Forwarded>,
    /// The client's own target, when a local redirect (`Location: /path`
    /// without `Status:`) brought the request here.
    pub redirected_from: Option<Uri>,
    pub local: SocketAddr,
    /// When the invocation must be over; queue wait already counted.
    pub deadline: tokio::time::Instant,
    /// The same instant as Unix epoch milliseconds, for `WATCHDOG_DEADLINE_MS`.
    pub deadline_epoch_ms: u128,
    pub settings: Arc<Settings>,
    /// Lives until the function has fully finished (not just until the response
    /// head): its drop writes the invocation's log event and frees its slots.
    pub record: InvocationRecord,
    /// The server-wide slot still to take, when the invoker takes it once the
    /// invocation has a place to run ([`Invoker::admits_once_placed`]); the
    /// slot then joins the record's.
    pub ticket: Option<crate::server::admission::Ticket>,
    /// Background work that outlives the response head (a driver task) is spawned
    /// here, so shutdown can wait for it.
    pub tasks: tokio_util::task::TaskTracker,
    /// Cancelled when the server gives up draining: stop the function now.
    pub stop: tokio_util::sync::CancellationToken,
}

impl Invocation {
    /// The client's address: a trusted proxy's word for it, else the
    /// connection's other end.
    pub fn client_ip(&self) -> std::net::IpAddr {
        self.forwarded
            .map_or_else(|| self.client.ip(), |forwarded| forwarded.client)
    }

    /// Moves the deadline on by `by`, both ways it is given.
    pub fn extend_deadline(&mut self, by: std::time::Duration) {
        self.deadline += by;
        self.deadline_epoch_ms += by.as_millis();
    }

    /// Marks the invocation as stopped by watchdog's shutdown (at the end of the
    /// drain timeout, or when a second signal cut it short), and gives the error
    /// its client is answered with.
    pub fn stopped_by_shutdown(&mut self) -> InvokeError {
        self.record.shutdown = true;
        let file = self.route.function.file.relative.clone();
        self.record.failed(InvokeError::shutting_down(file))
    }
}

/// The body of a HEAD answer whose GET has a body of unknown length: empty, but
/// not sized, so hyper does not add `content-length: 0`, which the GET is not.
pub fn empty_of_unknown_length() -> Body {
    Body::from_stream(futures_util::stream::empty::<
        Result<bytes::Bytes, std::io::Error>,
    >())
}

/// Whether `code` is a status a function may answer with, whatever protocol
/// it speaks (a CGI `Status:`, an HTTP worker, a Lambda `statusCode`, an
/// `exit_status` mapping): a final status HTTP defines. A 1xx is no final
/// answer (a 101 would switch the client's connection to a protocol watchdog
/// does not forward), and hyper reads any three digits, 600 and up too.
pub fn is_answer_status(code: u16) -> bool {
    (200..=599).contains(&code)
}

/// What a function answered.
pub enum Reply {
    Response(Response<Body>),
    /// `Location: /local/path` with no status: the server answers from that URL
    /// (RFC 3875 §6.2.2). `headers` are the other lines of the header block,
    /// which travel on with the answer (`Set-Cookie` above all), or with the
    /// 302 when the path names no function.
    LocalRedirect {
        location: String,
        headers: axum::http::HeaderMap,
    },
}

/// What a request that timed out waiting for a warm worker waited on: the
/// hint differs (more workers, or a worker that never became ready).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerWait {
    /// Every one of the `max` places was taken, by a busy worker or a start.
    AllBusy,
    /// A new worker was still starting.
    Starting,
}

impl std::fmt::Display for WorkerWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerWait::AllBusy => "all `max` were busy or starting",
            WorkerWait::Starting => "the new one was still starting",
        })
    }
}

/// A wait in the whole seconds `Retry-After` takes: rounded up, and never 0
/// (which would say "at once").
pub fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero())
}

fn queue_full_message(waited: std::time::Duration, function_limit: Option<u32>) -> String {
    let waited = humantime::format_duration(waited);
    match function_limit {
        Some(limit) => format!(
            "this function already runs {limit} invocation(s) at once, its `max_concurrency`, and the queue wait passed {waited}"
        ),
        None => format!("too many invocations are running and the queue wait passed {waited}"),
    }
}

/// Why an invocation produced no response of its own. Each variant has one status.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("{file}: cannot start the function: {cause}")]
    Spawn {
        file: String,
        cause: String,
        hint: String,
    },
    /// Its file was removed, or replaced by one that leads outside DIR, after
    /// the route table last saw it; the table catches up within moments (live
    /// reload), and then the URL is a plain 404.
    #[error(
        "{file}: the function's file was removed or now leads outside DIR; no function answers here now"
    )]
    Removed { file: String },
    /// The kernel refuses to run a file that is open for writing (ETXTBSY):
    /// a save or copy in place is under way. Transient: a start is tried
    /// again for a moment before this is the answer ([`file_busy`]), and a
    /// warm worker's start that ends in it is no crash.
    #[error(
        "{file}: cannot start the function: its file is being written (a save or copy in progress)"
    )]
    FileBusy { file: String },
    /// A file run by an interpreter (or found not to be a program) that is
    /// empty: most often a save in place met between its truncation and its
    /// write, which the kernel does not guard as it does an exec (ETXTBSY).
    /// Tried again for the same moment as [`InvokeError::FileBusy`]; a file
    /// that stays empty is a function that cannot start.
    #[error("{file}: cannot start the function: its file is empty")]
    FileEmpty { file: String },
    #[error("{file}: invalid response: {error}")]
    BadOutput { file: String, error: EnvelopeError },
    #[error("{file}: exited with {exit} before writing a complete header block")]
    ExitedEarly { file: String, exit: String },
    /// A function that gave no answer or a bad one and whose file was saved
    /// in place as it started or while it ran, which its interpreter may have
    /// read half-done (the kernel guards a binary being run, ETXTBSY,
    /// not a script being read). Said so, rather than blaming the code.
    #[error(
        "{file}: {failure}; its file was saved in place as it started or while it ran, so it may have read it half-written"
    )]
    SavedWhileRunning { file: String, failure: String },
    /// Stopped by one of its resource limits (config §6) before it answered.
    #[error("{file}: was stopped by its `{limit}` limit ({exit}) before it answered")]
    LimitHit {
        file: String,
        limit: &'static str,
        exit: String,
    },
    #[error("{file}: wrote more than {limit} bytes {}; it was stopped", if *raw { "with `output = \"raw\"`, which is held whole" } else { "of output, its `max_output`" })]
    OutputTooLarge { file: String, limit: u64, raw: bool },
    #[error("{file}: timed out after {after:?}; its process group was killed")]
    Timeout {
        file: String,
        after: std::time::Duration,
    },
    #[error("{file}: timed out after {after:?} waiting for a warm worker ({why}); it never ran")]
    NoWorkerInTime {
        file: String,
        after: std::time::Duration,
        why: WorkerWait,
    },
    #[error("{file}: the function returned an error (its message is in watchdog's log)")]
    FunctionError { file: String },
    #[error("{file}: its warm worker failed: {cause}")]
    WorkerFailed { file: String, cause: String },
    /// A handler module's worker (the Node adapter) ended with the request in
    /// it: a `process.exit()` in the handler, or a crash.
    #[error("{file}: the handler module's process ended before it answered ({exit})")]
    HandlerExited { file: String, exit: String },
    /// A warm worker's answer that cannot be sent on as an HTTP response: the
    /// worker is fine, its answer is not. `hint` says what the protocol wants.
    #[error("{file}: its answer cannot be sent on: {cause}")]
    BadAnswer {
        file: String,
        cause: String,
        hint: &'static str,
    },
    #[error(
        "{file}: its warm workers crashed 5 times within a minute; it answers 503 for {seconds} s more, or until its file changes (the last crash: {last})"
    )]
    Crashed {
        file: String,
        seconds: u64,
        /// What the latest crash was: its cause is otherwise only in a log
        /// line from before.
        last: String,
    },
    #[error(
        "{file}: its last warm workers crashed; the next one starts in {seconds} s (restart backoff), later than this request could wait"
    )]
    RestartBackoff { file: String, seconds: u64 },
    #[error("no warm worker became free in time")]
    Overloaded { seconds: u64 },
    /// No concurrency slot came free within `--queue-timeout`.
    #[error("{}", queue_full_message(*waited, *function_limit))]
    QueueFull {
        /// `--queue-timeout`, which passed.
        waited: std::time::Duration,
        /// The function's own `max_concurrency`, when that is what was full.
        function_limit: Option<u32>,
    },
    /// The function's own timeout ran out while its request waited for a
    /// concurrency slot (a timeout shorter than `--queue-timeout`): a 504, as
    /// a request waiting for a warm worker gets, not the queue's 503.
    #[error(
        "{file}: timed out after {} waiting for a concurrency slot ({}); it never ran",
        humantime::format_duration(*after),
        if function_limit.is_some() { "its `max_concurrency` was reached" } else { "--max-concurrency was reached" }
    )]
    QueuedPastTimeout {
        file: String,
        after: std::time::Duration,
        function_limit: Option<u32>,
    },
    #[error(
        "{file}: watchdog is shutting down, and stopped the function {}, before it answered",
        if *cut_short { "when a second signal cut the drain short" } else { "at the end of its drain timeout" }
    )]
    ShuttingDown { file: String, cut_short: bool },
    #[error(
        "the request headers are too large to pass to a function (the kernel caps one variable at 128 KiB)"
    )]
    HeadersTooLarge,
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// Refused as Lambda refuses it, rather than passed to a function that
    /// would never get it in production.
    #[error(
        "{file}: the request makes a Lambda event of {size}, past Lambda's limit of {limit} bytes for a synchronous invocation"
    )]
    EventTooLarge {
        file: String,
        size: String,
        limit: usize,
    },
    #[error("reading the request body failed: {0}")]
    BodyRead(String),
    #[error("the request body stalled: no data for {after:?}")]
    BodyIdle { after: std::time::Duration },
    #[error("the request body was still arriving when the invocation's {after:?} timeout ran out")]
    BodyTimeout { after: std::time::Duration },
    #[error("the invocation ended unexpectedly (an internal error); see the log")]
    Internal,
}

impl InvokeError {
    /// The answer of a request stopped by watchdog's shutdown, saying whether
    /// the drain ran out or a second signal cut it short.
    pub fn shutting_down(file: String) -> Self {
        Self::ShuttingDown {
            file,
            cut_short: crate::shutdown::drain_cut_short(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            InvokeError::Spawn { .. } | InvokeError::FileEmpty { .. } | InvokeError::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            InvokeError::Removed { .. } => StatusCode::NOT_FOUND,
            InvokeError::BadOutput { .. }
            | InvokeError::ExitedEarly { .. }
            | InvokeError::SavedWhileRunning { .. }
            | InvokeError::LimitHit { .. }
            | InvokeError::OutputTooLarge { .. } => StatusCode::BAD_GATEWAY,
            InvokeError::Timeout { .. }
            | InvokeError::NoWorkerInTime { .. }
            | InvokeError::QueuedPastTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            InvokeError::BodyTooLarge { .. } | InvokeError::EventTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            InvokeError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            InvokeError::BodyRead(_) => StatusCode::BAD_REQUEST,
            InvokeError::WorkerFailed { .. }
            | InvokeError::HandlerExited { .. }
            | InvokeError::BadAnswer { .. }
            | InvokeError::FunctionError { .. } => StatusCode::BAD_GATEWAY,
            InvokeError::Crashed { .. }
            | InvokeError::RestartBackoff { .. }
            | InvokeError::Overloaded { .. }
            | InvokeError::QueueFull { .. }
            | InvokeError::FileBusy { .. }
            | InvokeError::ShuttingDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            InvokeError::BodyIdle { .. } | InvokeError::BodyTimeout { .. } => {
                StatusCode::REQUEST_TIMEOUT
            }
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            InvokeError::Spawn { hint, .. } => Some(hint.clone()),
            InvokeError::BadOutput { .. } | InvokeError::ExitedEarly { .. } => Some(format!(
                "{}; the function's stderr is in watchdog's log",
                EnvelopeError::HINT
            )),
            InvokeError::SavedWhileRunning { .. } => Some(
                "the next request runs the file as saved; to keep requests from meeting a file half-written, save by writing a new file and renaming it over the old one (most editors do; `>` and `cat >` write in place); the function's stderr is in watchdog's log"
                    .into(),
            ),
            InvokeError::LimitHit { limit, .. } => Some(format!(
                "raise `{limit}` in the function's watchdog.toml section, or make it use less"
            )),
            InvokeError::Timeout { .. } => Some(
                "raise the timeout (--timeout, `timeout` in the function's watchdog.toml section, \
                 or its `maxDuration` in vercel.json), \
                 or make the function finish sooner"
                    .into(),
            ),
            InvokeError::NoWorkerInTime {
                why: WorkerWait::Starting,
                ..
            } => Some(
                "a warm worker is ready once it listens on $PORT (protocol = \"http\") or asks \
                 the Runtime API for an invocation (protocol = \"lambda\"); watchdog's log says \
                 if it did neither. One that is only slow to start goes on and serves the next \
                 request; raise the timeout if every start takes this long"
                    .into(),
            ),
            InvokeError::NoWorkerInTime {
                why: WorkerWait::AllBusy,
                ..
            } => Some(
                "raise `max` in its `warm` settings (more workers at once), or the timeout; \
                 a worker still starting goes on and serves the next request"
                    .into(),
            ),
            InvokeError::OutputTooLarge { raw: true, .. } => Some(
                "raise `max_output` in the function's watchdog.toml section, or use CGI output, which streams".into(),
            ),
            InvokeError::OutputTooLarge { raw: false, .. } => Some(
                "raise `max_output` in the function's watchdog.toml section, or make it write less".into(),
            ),
            InvokeError::BodyTooLarge { .. } => Some(
                "send a smaller body, or raise the limit (--max-body, or `max_body` in the function's watchdog.toml section)".into(),
            ),
            InvokeError::EventTooLarge { .. } => Some(
                "send less (a body that is not UTF-8 text goes base64-encoded, a third larger), \
                 or, as on Lambda, put large payloads elsewhere (S3) and send a reference"
                    .into(),
            ),
            InvokeError::BodyRead(_) | InvokeError::Internal | InvokeError::Removed { .. } => None,
            InvokeError::WorkerFailed { .. } => Some(
                "the worker's output is in watchdog's log; a warm worker serves HTTP on $PORT \
                 (protocol = \"http\") or polls the Runtime API at $AWS_LAMBDA_RUNTIME_API \
                 (protocol = \"lambda\")"
                    .into(),
            ),
            InvokeError::HandlerExited { .. } => Some(
                "a handler must answer, not end its process (`process.exit()`): the next request \
                 starts a new worker, so module state is lost; what it printed is in watchdog's log"
                    .into(),
            ),
            InvokeError::FunctionError { .. } => {
                Some("the handler returned an error or panicked; fix the function".into())
            }
            InvokeError::BadAnswer { hint, .. } => Some((*hint).into()),
            InvokeError::Crashed { .. } => Some("fix the function and save its file: that restarts its pool".into()),
            InvokeError::RestartBackoff { .. } => Some(
                "why its workers crashed is in watchdog's log; fix the function and save its file: that restarts its pool at once"
                    .into(),
            ),
            InvokeError::Overloaded { .. } => Some("retry later, or raise `max` in its `warm` settings".into()),
            InvokeError::QueueFull {
                function_limit: Some(_),
                ..
            } => Some("retry later, or raise `max_concurrency` in the function's watchdog.toml section".into()),
            InvokeError::QueueFull { .. } => Some("retry later, or raise --max-concurrency".into()),
            InvokeError::QueuedPastTimeout {
                function_limit: Some(_),
                ..
            } => Some(
                "raise `max_concurrency` in the function's watchdog.toml section, or its timeout".into(),
            ),
            InvokeError::QueuedPastTimeout { .. } => {
                Some("raise --max-concurrency, or the function's timeout".into())
            }
            InvokeError::FileBusy { .. } => Some(
                "retry in a moment; to serve the old file until the new one is whole, write the \
                 new one beside it and rename it over (as most editors and `install` do)"
                    .into(),
            ),
            InvokeError::FileEmpty { file } => Some(format!(
                "write the function's code into {file}; to serve the old code until the new is \
                 whole, write the new file beside it and rename it over (as most editors and \
                 `install` do)"
            )),
            InvokeError::ShuttingDown { cut_short, .. } => Some(
                if *cut_short {
                    "send it again (to another instance behind a load balancer); a single signal lets such requests finish within --drain-timeout"
                } else {
                    "send it again (to another instance behind a load balancer); a longer --drain-timeout lets such requests finish"
                }
                .into(),
            ),
            InvokeError::BodyIdle { .. } => Some(
                "send the body without pauses longer than --body-idle-timeout, or raise it".into(),
            ),
            InvokeError::BodyTimeout { .. } => Some(
                "send the body faster, or raise the timeout (--timeout, or `timeout` in the function's watchdog.toml section)"
                    .into(),
            ),
            InvokeError::HeadersTooLarge => {
                Some("send smaller headers (cookies especially)".into())
            }
        }
    }
}

pub type InvokeFuture = Pin<Box<dyn Future<Output = Result<Reply, InvokeError>> + Send>>;

/// A way of running functions.
pub trait Invoker: Send + Sync {
    /// Runs `invocation` until its response head is known. The body may keep
    /// streaming (and the process keep running) after this resolves; the
    /// implementation owns the process until then and must enforce the deadline,
    /// kill on client disconnect and leave nothing behind.
    fn invoke(&self, invocation: Invocation) -> InvokeFuture;

    /// Whether this function's invocations wait for a place of their own (a
    /// warm worker) before they run: they then take the server-wide slot
    /// once placed, from [`Invocation::ticket`], not while they wait.
    fn admits_once_placed(&self, _function: &crate::routes::Function) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        let seconds = |ms| super::retry_after_seconds(Duration::from_millis(ms));
        assert_eq!(
            [
                seconds(0),
                seconds(100),
                seconds(1000),
                seconds(1500),
                seconds(10_000)
            ],
            [1, 1, 1, 2, 10]
        );
    }
}
