//! One log event per invocation, written when the invocation is over.
//!
//! The record travels with the invocation, through whichever invoker runs it, and is
//! filled in as facts become known (pid, status, exit). Its `Drop` counts the
//! metrics and writes the log event, so every path, including errors and client
//! disconnects, reports exactly once. It also carries the invocation's concurrency slots,
//! released at the same moment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, Uri};

use super::metrics::{self, Exit};
use crate::invoke::body_fault::BodyWatch;
use crate::routes::Function;

#[derive(Debug)]
pub struct InvocationRecord {
    pub request_id: String,
    pub method: Method,
    /// The request's target as the function got it: the line gives its path
    /// (the route alone does not say which `[id]`), not its query, which may
    /// carry tokens.
    pub uri: Uri,
    /// Who sent it, as the socket says (behind a balancer, the balancer); none
    /// for a request watchdog makes itself (cron, `watchdog invoke`).
    pub client: Option<std::net::SocketAddr>,
    /// The client a trusted proxy named (`--trusted-proxy`): the line's
    /// `client`, with the socket's address as `via`.
    pub forwarded_client: Option<std::net::IpAddr>,
    /// Its route, file and metric handles.
    pub function: Arc<Function>,
    pub pid: Option<u32>,
    pub status: Option<u16>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub client_gone: bool,
    /// The client left, and its warm worker was kept, not stopped: a Lambda
    /// worker that had answered, the Node adapter, which stops the work
    /// itself. No kill to count.
    pub worker_kept: bool,
    pub shutdown: bool,
    /// The answer began, then broke off before its end on the function's side
    /// (a warm worker that died or closed its connection mid-answer, a Lambda
    /// stream that failed): the client got a status and part of a body. The
    /// status alone would make it look served.
    pub cut_off: bool,
    /// For warm functions: whether this request started a worker.
    pub cold: Option<bool>,
    /// The resource limit the function ran into, if any.
    pub limit_hit: Option<&'static str>,
    /// A CGI local redirect (`Location: /path` without `Status:`): the path
    /// watchdog served instead, whose own invocation has the status.
    pub redirected_to: Option<String>,
    pub queue_wait: Duration,
    /// The request body's declared length; the log gives what arrived instead
    /// when the body streamed in (`body`).
    pub bytes_in: u64,
    /// The request body while it streams in: the bytes that really arrived, and
    /// whether the client broke it off, come from it.
    pub body: Option<BodyWatch>,
    pub bytes_out: u64,
    pub started: Instant,
    /// The server-wide and per-function slots this invocation holds.
    pub slots: Vec<crate::server::admission::Held>,
}

/// What the record takes from the request itself.
pub struct Requested {
    pub method: Method,
    pub uri: Uri,
    pub client: Option<std::net::SocketAddr>,
    pub forwarded_client: Option<std::net::IpAddr>,
}

impl InvocationRecord {
    /// Notes the status the client gets for `error`, which watchdog answers for
    /// the function, and hands the error on: every failed invocation's line has
    /// its `status`.
    /// Awaits a worker's answer with the invocation counted as abandoned by its
    /// client until the answer comes: if the future that holds this record is
    /// dropped meanwhile (the client left, and the handler with it), the log
    /// line it writes says so.
    /// `kept_if_left`: the worker is kept if that happens (the Node adapter's,
    /// which stops the abandoned work itself), and no kill is counted.
    pub async fn awaiting_answer<F: std::future::Future>(
        &mut self,
        answer: F,
        kept_if_left: bool,
    ) -> F::Output {
        let before = (self.client_gone, self.worker_kept);
        self.client_gone = true;
        self.worker_kept |= kept_if_left;
        let answered = answer.await;
        (self.client_gone, self.worker_kept) = before;
        answered
    }

    pub fn failed(&mut self, error: crate::invoke::InvokeError) -> crate::invoke::InvokeError {
        self.status = Some(error.status().as_u16());
        // A timeout spent waiting for a warm worker (or, once placed, for a
        // slot) is a timeout in the log line and `watchdog_timeouts_total`, as
        // one spent running; not a kill.
        self.timed_out |= matches!(
            error,
            crate::invoke::InvokeError::NoWorkerInTime { .. }
                | crate::invoke::InvokeError::QueuedPastTimeout { .. }
        );
        error
    }

    /// Starts the record of an invocation of `function`.
    pub fn start(request_id: &str, request: Requested, function: Arc<Function>) -> Self {
        function.metrics.invocation_started();
        let Requested {
            method,
            uri,
            client,
            forwarded_client,
        } = request;
        Self {
            request_id: request_id.to_owned(),
            method,
            uri,
            client,
            forwarded_client,
            function,
            pid: None,
            status: None,
            exit_code: None,
            signal: None,
            timed_out: false,
            client_gone: false,
            worker_kept: false,
            shutdown: false,
            cut_off: false,
            cold: None,
            limit_hit: None,
            redirected_to: None,
            queue_wait: Duration::ZERO,
            bytes_in: 0,
            body: None,
            bytes_out: 0,
            started: Instant::now(),
            slots: Vec::new(),
        }
    }

    /// Records how the process ended.
    pub fn set_exit(&mut self, status: std::process::ExitStatus) {
        use std::os::unix::process::ExitStatusExt;
        self.exit_code = status.code();
        self.signal = status.signal();
    }

    /// Why its process was stopped, if it had one: a request that never
    /// reached a process (it timed out waiting for a warm worker) killed
    /// nothing.
    fn kill_reason(&self) -> Option<&'static str> {
        if self.pid.is_none() {
            None
        } else if self.timed_out {
            Some(metrics::KILL_TIMEOUT)
        } else if self.worker_kept {
            None
        } else if self.client_gone {
            Some(metrics::KILL_CLIENT_GONE)
        } else if self.shutdown {
            Some(metrics::KILL_SHUTDOWN)
        } else {
            None
        }
    }
}

impl Drop for InvocationRecord {
    fn drop(&mut self) {
        if let Some(body) = &self.body {
            self.bytes_in = body.received();
            self.client_gone |= body.broke_off();
        }
        let elapsed = self.started.elapsed();
        let exit_label = match (self.exit_code, self.signal) {
            (Some(code), _) => Some(Exit::Code(code)),
            (None, Some(signal)) => Some(Exit::Signal(signal)),
            (None, None) => None,
        };
        let metrics = &self.function.metrics;
        metrics.invocation_finished(
            self.pid.is_some(),
            elapsed,
            self.queue_wait,
            exit_label,
            self.kill_reason(),
            self.timed_out,
        );
        if let Some(limit) = self.limit_hit {
            metrics.limit_hit(limit);
        }
        if tracing::enabled!(target: "watchdog::invocation", tracing::Level::INFO) {
            defer(LogLine {
                request_id: std::mem::take(&mut self.request_id),
                method: self.method.clone(),
                uri: std::mem::take(&mut self.uri),
                client: self.client,
                forwarded_client: self.forwarded_client,
                function: Arc::clone(&self.function),
                pid: self.pid,
                status: self.status,
                exit_code: self.exit_code,
                signal: self.signal,
                timed_out: self.timed_out,
                client_gone: self.client_gone,
                cut_off: self.cut_off,
                limit_hit: self.limit_hit,
                redirected_to: self.redirected_to.take(),
                cold: self.cold,
                queue_wait: self.queue_wait,
                elapsed,
                bytes_in: self.bytes_in,
                bytes_out: self.bytes_out,
            });
        }
    }
}

/// Writes the log event once the current task has given the thread back.
///
/// A record often ends inside the poll that hands the response's last bytes to
/// hyper, before hyper writes them to the client (a warm worker's body with a
/// Content-Length). Formatting and writing the line there (~5 µs) would delay every
/// response by that much; as a task of its own it runs right after the response has
/// been written. Without a runtime, or if the runtime is shutting down and drops the
/// task unrun, the line is written at once by its `Drop`. Only a runtime whose
/// shutdown gives up waiting (at watchdog's exit) can leave a line unwritten.
fn defer(line: LogLine) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(async move { drop(line) })),
        Err(_) => drop(line),
    }
}

/// What the log event of an invocation says, owned so that it can be written later.
struct LogLine {
    request_id: String,
    method: Method,
    uri: Uri,
    client: Option<std::net::SocketAddr>,
    forwarded_client: Option<std::net::IpAddr>,
    function: Arc<Function>,
    pid: Option<u32>,
    status: Option<u16>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    client_gone: bool,
    cut_off: bool,
    limit_hit: Option<&'static str>,
    redirected_to: Option<String>,
    cold: Option<bool>,
    queue_wait: Duration,
    elapsed: Duration,
    bytes_in: u64,
    bytes_out: u64,
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let exit = describe_exit(self.exit_code, self.signal);
        tracing::info!(
            target: "watchdog::invocation",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.uri.path(),
            client = LoggedClient::of(self.forwarded_client, self.client).map(tracing::field::display),
            via = self
                .forwarded_client
                .and(self.client)
                .map(tracing::field::display),
            route = %self.function.pattern,
            file = %self.function.file.relative,
            pid = self.pid,
            status = self.status,
            exit = exit.as_deref(),
            exit_code = self.exit_code,
            signal = self.signal,
            timed_out = self.timed_out,
            client_gone = self.client_gone,
            // Only when it happened: most answers end whole.
            cut_off = self.cut_off.then_some(true),
            limit_hit = self.limit_hit,
            redirected_to = self.redirected_to.as_deref(),
            start = self.cold.map(|cold| if cold { "cold" } else { "warm" }),
            queue_wait_ms = milliseconds(self.queue_wait),
            duration_ms = milliseconds(self.elapsed),
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            "invocation"
        );
    }
}

/// The line's `client`: the address a trusted proxy named, else the
/// socket's with its port. Written as it is, with no string made for it.
enum LoggedClient {
    Named(std::net::IpAddr),
    Socket(std::net::SocketAddr),
}

impl LoggedClient {
    fn of(named: Option<std::net::IpAddr>, socket: Option<std::net::SocketAddr>) -> Option<Self> {
        named.map(Self::Named).or(socket.map(Self::Socket))
    }
}

impl std::fmt::Display for LoggedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(address) => address.fmt(f),
            Self::Socket(socket) => socket.fmt(f),
        }
    }
}

/// `duration` in milliseconds to the microsecond (truncated): `0.365`, not the
/// `0.36577400000000004` that `as_secs_f64() * 1000.0` gives.
#[allow(clippy::cast_precision_loss)]
fn milliseconds(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// `exit 3`, `signal 9 (SIGKILL)`: the one wording of an exit, for logs and for
/// error messages alike.
pub fn describe_exit(code: Option<i32>, signal: Option<i32>) -> Option<String> {
    match (code, signal) {
        (Some(code), _) => Some(format!("exit {code}")),
        (None, Some(signal)) => Some(match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!("signal {signal} ({name})"),
            Err(_) => format!("signal {signal}"),
        }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_logged_in_milliseconds_to_the_microsecond() {
        assert_eq!(milliseconds(Duration::from_nanos(365_774)), 0.365);
        assert_eq!(milliseconds(Duration::from_micros(1_234_567)), 1234.567);
        assert_eq!(milliseconds(Duration::ZERO), 0.0);
    }
}
