//! The accept loop, on hyper directly rather than `axum::serve`, for the
//! protections a server facing hostile clients needs and `axum::serve` does not
//! expose: a deadline for the request head (slowloris), a limit on how long a
//! client may leave an answer untaken, caps on header count and size,
//! TCP_NODELAY, graceful shutdown of every connection, and an accept loop that
//! survives running out of file descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::connection_threads::Accepted;
use super::request_id;
use super::send_stall::SendStall;
use super::stalled_head::{HeadStarted, NoteHeadStarted};
use super::taken::{LastTaken, Taken};
use super::unrun::Unrun;

/// A client must send its whole request head within this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most request headers accepted (hyper answers 431 beyond).
pub const MAX_HEADERS: usize = 100;
/// Largest request head, request line and headers together (431 beyond).
/// hyper's read buffer is held to it, but hyper checks that only while a head
/// is incomplete: a larger one that arrives in one read gets through (heads of
/// about 114 KiB did), so [`head_size`] is checked again once it is parsed.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The size of a parsed request head as it came on the wire, near enough:
/// the request line, and each header as `name: value` with its line end.
pub fn head_size(parts: &axum::http::request::Parts) -> usize {
    let line = parts.method.as_str().len()
        + parts.uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    let headers: usize = (parts.headers.iter())
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    line + headers + 2
}

/// Accepts connections and gives each to `hand` (one of the connection
/// threads, for the clients' address) until `stop_accepting` resolves, then
/// closes the listener (new connections are refused) and returns a handle that
/// finishes the open ones.
pub async fn accept_until(
    listener: TcpListener,
    hand: impl Fn(Accepted),
    stop_accepting: impl std::future::Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop_accepting);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut stop_accepting => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning; the
                    // connections already open keep being served.
                    tracing::warn!(error = %err, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY a response written in pieces (head, body chunks, the
        // final chunk) waits on the client's delayed ACK: 40 ms per request.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        match stream.into_std() {
            Ok(stream) => hand(Accepted {
                stream,
                remote,
                watcher: graceful.watcher(),
            }),
            Err(err) => tracing::debug!(error = %err, %remote, "cannot hand the connection over"),
        }
    }
    drop(listener);
    graceful
}

/// Both ends of a request's connection, one request extension
/// (`ConnectInfo<Connection>`) for both.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub remote: SocketAddr,
    /// The address the connection arrived on: under a wildcard listener
    /// (`0.0.0.0`, `[::]`) the interface's own, which a function gets as
    /// `SERVER_ADDR`. None for a request with no socket (`watchdog invoke`,
    /// cron), which then uses the listener's.
    pub local: Option<SocketAddr>,
}

impl Connection {
    /// A request watchdog makes itself (cron, `watchdog invoke`).
    pub fn internal() -> Self {
        Self {
            remote: SocketAddr::from(([127, 0, 0, 1], 0)),
            local: None,
        }
    }
}

/// Serves one connection on the thread it was handed to. A client that takes
/// none of its answer for `send_timeout` has the connection ended.
pub async fn serve_connection(accepted: Accepted, router: Router, send_timeout: Duration) {
    let Accepted {
        stream,
        remote,
        watcher,
    } = accepted;
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!(error = %err, %remote, "cannot serve the connection");
            return;
        }
    };
    let connection = Connection {
        remote,
        local: stream.local_addr().ok(),
    };
    let last_taken = LastTaken::default();
    let taking = last_taken.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let taken = Arc::new(Taken {
            id: request_id::from_headers(request.headers()),
            method: request.method().clone(),
            uri: request.uri().clone(),
        });
        request.extensions_mut().insert(Arc::clone(&taken));
        taking.set(Arc::clone(&taken));
        let unrun = Unrun::new(taken, remote);
        request.extensions_mut().insert(ConnectInfo(connection));
        let answer = router.clone().oneshot(request);
        async move {
            unrun.started();
            answer.await
        }
    });
    // The client must keep taking its answer (`super::send_stall`).
    let stream = SendStall::new(stream, send_timeout);
    let head_started = HeadStarted::default();
    let stream = NoteHeadStarted::new(stream, head_started.clone());
    let connection = http_builder().serve_connection(TokioIo::new(stream), service);
    if let Err(err) = watcher.watch(connection).await {
        let ended = Ended {
            remote,
            send_timeout,
            head_started: head_started.get(),
            last_taken: last_taken.get(),
        };
        report_connection_error(&err, &ended);
    }
}

/// What is known of a connection that ended with an error.
struct Ended {
    remote: SocketAddr,
    send_timeout: Duration,
    /// Part of a request head had come in since the last answer went out.
    head_started: bool,
    /// The request being answered, or the last one.
    last_taken: Option<Arc<Taken>>,
}

/// A request hyper could not parse was answered by hyper itself, before
/// routing: no access log line and no request id. It is logged here, so an
/// operator looking for a client's 431 (a browser's cookies past 64 KiB of head)
/// finds it. A connection that closed or timed out early answered nothing and
/// is only a debug line, unless the client stopped partway through a request
/// head (`head_started`). A client let go for taking none of its answer is
/// told of, with the setting that let it go.
fn report_connection_error(err: &hyper::Error, ended: &Ended) {
    let remote = ended.remote;
    if err.is_timeout() && ended.head_started {
        crate::observability::metrics::head_timeout();
        tracing::info!(
            %remote,
            head_deadline = %humantime::format_duration(HEADER_READ_TIMEOUT),
            hint = "a client on a failing link, or one holding connections open on purpose (slowloris); the deadline is fixed",
            "closed a connection whose client sent part of a request head and then not the rest within the head deadline; nothing was answered"
        );
    } else if write_timed_out(err) {
        crate::observability::metrics::send_timeout();
        let taken = ended.last_taken.as_deref();
        tracing::warn!(
            %remote,
            request_id = taken.map(|t| display(&t.id)),
            method = taken.map(|t| display(&t.method)),
            path = taken.map(|t| display(t.uri.path())),
            send_timeout = %humantime::format_duration(ended.send_timeout),
            hint = "the client stopped reading, or its network stopped carrying data; if clients on slow links are cut off, raise --send-timeout",
            "closed a connection whose client took none of its answer for the send timeout; the answer was cut off"
        );
    } else if err.is_parse_too_large() {
        tracing::info!(
            error = %err,
            %remote,
            limits = %format!("{MAX_HEADERS} headers, {} KiB of request line and headers", MAX_HEAD_BYTES / 1024),
            hint = "the client sends too many or too large headers (often cookies) or too long a URL; it must send less, as these limits are fixed",
            "request refused by the HTTP layer before routing (answered 431 or 414)"
        );
    } else if err.is_parse() {
        tracing::info!(
            error = %err,
            %remote,
            hint = "the client's request line or headers are not HTTP/1.1; fix the client",
            "request refused by the HTTP layer before routing (answered 400)"
        );
    } else {
        tracing::debug!(error = %err, %remote, "connection ended with an error");
    }
}

/// Whether hyper gave up on the connection because a write to the client timed
/// out ([`SendStall`]'s error; the kernel's own `ETIMEDOUT` on a write, after
/// minutes of retransmissions, says the same of the client).
fn write_timed_out(err: &hyper::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// HTTP/1 only, on hyper's own HTTP/1 server: the contract needs no h2c, and
/// upgrades are not forwarded (`Upgrade` is a hop-by-hop header to functions).
///
/// Not hyper-util's protocol-detecting builder: its `http1_only` is ignored by
/// `serve_connection_with_upgrades`, which first reads up to 24 bytes looking for
/// the HTTP/2 preface, before hyper's head deadline starts. A client that
/// connected and sent nothing, or only the start of that preface, held its
/// connection (and its descriptor) forever, and every connection paid one more
/// read.
fn http_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
}
