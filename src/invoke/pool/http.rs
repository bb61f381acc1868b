//! `protocol = "http"`: the worker serves HTTP on 127.0.0.1:$PORT (the convention
//! of Cloud Run, Knative and of-watchdog's http mode). It is ready once it accepts
//! connections; each request is proxied to it over a kept-alive connection, one per
//! connection thread (a fresh one when there is none; one shared by all threads
//! for a worker that serves one connection at a time), streaming both ways, and
//! the worker is lent to that one request until its response body has been sent.

use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, header};
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::deadline_guard::{Expire, Guarded};
use super::worker::HttpConnection;
use super::{Failed, Lease, Outcome, Waited, Worker, port};
use crate::invoke::body_fault::BodyWatch;
use crate::invoke::cgi::environment::HTTPOXY_HEADER;
use crate::invoke::{Invocation, InvokeError, Reply, RequestBody};
use crate::invoke::{forwarded, hop_by_hop};
use crate::limits::Limiter;
use crate::observability::InvocationRecord;
use crate::routes::Function;

/// What an HTTP worker's answer that cannot be sent on should have been.
const ANSWER_HINT: &str = "a warm worker's response must be valid HTTP/1.1, with a status \
     from 200 to 599; what the worker printed is in watchdog's log";

/// How often a starting worker's port is tried.
const READY_POLL: Duration = Duration::from_millis(5);

/// How long a worker may take to answer on a new connection while other threads'
/// connections to it are open, before watchdog takes it for a server that handles
/// one connection at a time (it would never accept the new one) and closes them.
/// A slow handler that runs past it only costs the worker its per-thread
/// connections.
const SECOND_CONNECTION_GRACE: Duration = Duration::from_millis(50);

/// Starts a worker on a free port and waits until it accepts connections.
///
/// # Errors
/// The function cannot start, exits before it is ready, or is not ready by
/// `deadline`.
pub async fn start(
    function: &Function,
    limiter: &Limiter,
    deadline: tokio::time::Instant,
) -> Result<Worker, InvokeError> {
    let file = function.file.relative.clone();
    let mut taken = 0;
    let (mut worker, mut port) = spawn_on_free_port(function, limiter)?;
    let mut spawned_at = tokio::time::Instant::now();
    let mut look_elsewhere_at = spawned_at + LOOK_ELSEWHERE_EVERY;
    // What the worker listens on instead of $PORT, as last looked at, and
    // whether that is more than a debugger's port.
    let mut elsewhere: Option<String> = None;
    let mut elsewhere_settled = false;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            // Another program that took the port first answers too.
            let listener = port::listener_on(port, worker.raw_pid());
            if listener != port::Listener::Other {
                if listener == (port::Listener::Worker { everywhere: true }) {
                    warn_listening_everywhere(function, port);
                }
                tracing::info!(route = %function.pattern, pid = worker.pid, port, "warm worker ready");
                return Ok(worker);
            }
            worker.stop(Duration::ZERO).await;
            taken += 1;
            if taken == PORT_ATTEMPTS {
                return Err(InvokeError::WorkerFailed {
                    file,
                    cause: format!(
                        "a process outside the worker and the processes it started listened on the port picked for it, {PORT_ATTEMPTS} times in a row; something on this machine keeps taking free ports (`ss -ltnp` shows what listens)"
                    ),
                });
            }
            tracing::warn!(route = %function.pattern, port, "another program took the worker's port before it could bind it; starting the worker again on another");
            (worker, port) = spawn_on_free_port(function, limiter)?;
            spawned_at = tokio::time::Instant::now();
            (elsewhere, elsewhere_settled) = (None, false);
            continue;
        }
        if worker.has_exited() {
            let status = worker.stop(Duration::ZERO).await;
            return Err(InvokeError::WorkerFailed {
                file,
                cause: format!(
                    "exited ({}) before listening on $PORT",
                    status.map_or_else(
                        || "unknown status".into(),
                        crate::invoke::cgi::describe_exit
                    )
                ),
            });
        }
        let now = tokio::time::Instant::now();
        // A worker that listens elsewhere (a port of its own, `::1`) is given
        // up on once it has had START_FLOOR: a request waiting on it should
        // not wait out its whole timeout (30 s by default) for a 504 "still
        // starting", when the log said why a second in. Not sooner: a server
        // may open another listener (a metrics port, a debugger) before a
        // slow boot binds $PORT. One that holds only a debugger's default
        // port is given the whole allowance.
        let giving_up = now >= deadline
            || (elsewhere_settled && now >= spawned_at + super::policy::START_FLOOR);
        // Looked at each second, and once more before giving up, for a server
        // slow to bind its own port.
        if giving_up || now >= look_elsewhere_at {
            look_elsewhere_at = now + LOOK_ELSEWHERE_EVERY;
            let pid = worker.raw_pid();
            let ports = tokio::task::spawn_blocking(move || port::ports_held_by(pid))
                .await
                .unwrap_or_default();
            // Listening on $PORT now, on 127.0.0.1 after all: it bound the
            // port between the connection tried above and this look (the
            // warning it gave then was false), and the next try finds it.
            if ports.contains(&port) && TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                continue;
            }
            let found = listening_elsewhere(&ports, port);
            if let Some(finding) = found
                .as_ref()
                .filter(|&finding| Some(finding) != elsewhere.as_ref())
            {
                // Said as soon as it is seen (and again if it changes), not
                // only when the start gives up.
                tracing::warn!(route = %function.pattern, pid = worker.pid, ports = ?ports, port, finding = %finding, "a starting warm worker does not listen where watchdog waits for it");
            }
            elsewhere_settled =
                found.is_some() && !ports.iter().all(|held| DEBUGGER_PORTS.contains(held));
            if found.is_some() {
                elsewhere = found;
            }
        }
        if giving_up {
            worker.stop(Duration::ZERO).await;
            return Err(InvokeError::WorkerFailed {
                file,
                cause: match elsewhere {
                    Some(found) => format!("did not start: it {found}"),
                    None => format!(
                        "did not listen on 127.0.0.1:{port} ($PORT) in the time a start is given ({})",
                        super::policy::start_allowance_rule()
                    ),
                },
            });
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Says once per function (not at each of its workers' starts) that a worker
/// listens on every interface: other machines then reach it directly, past
/// watchdog's timeouts, limits and logs, and set its `X-Real-IP` and
/// `X-Forwarded-*` headers as they please.
fn warn_listening_everywhere(function: &Function, port: u16) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let file = &function.file.relative;
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.contains(file) {
        return;
    }
    warned.push(file.clone());
    tracing::warn!(
        route = %function.pattern,
        file = %file,
        port,
        hint = "bind 127.0.0.1 (the host part of the address the server is given, e.g. HTTPServer((\"127.0.0.1\", port)), app.listen(port, \"127.0.0.1\"))",
        "a warm worker listens on every interface, not only 127.0.0.1: other machines can reach it directly, past watchdog, and set its X-Real-IP and X-Forwarded-For themselves"
    );
}

/// How often a starting worker that does not answer on 127.0.0.1:`$PORT` is
/// looked at for the ports it does listen on (most servers bind within a few
/// hundred milliseconds of starting).
const LOOK_ELSEWHERE_EVERY: Duration = Duration::from_secs(1);

/// What a worker that does not answer on 127.0.0.1:`port` is doing instead,
/// from the `ports` its processes listen on; `None` when it listens nowhere
/// (yet).
fn listening_elsewhere(ports: &[u16], port: u16) -> Option<String> {
    if ports.contains(&port) {
        // Bound to another address: `::1` for a server told `localhost`.
        return Some(format!(
            "listens on $PORT ({port}) but not on 127.0.0.1: bind 127.0.0.1"
        ));
    }
    let others: Vec<String> = ports.iter().map(u16::to_string).collect();
    (!others.is_empty()).then(|| {
        format!(
            "listens on port {} but not on the one in $PORT ({port}); a warm HTTP worker \
             must bind the port the PORT environment variable names",
            others.join(", ")
        )
    })
}

/// The default ports of Node's inspector and Python's debugpy, which open
/// before the server they debug binds its own: a worker holding only those
/// is waited for as long as any start.
const DEBUGGER_PORTS: [u16; 2] = [9229, 5678];

/// How many times a start may find its port taken by another program.
const PORT_ATTEMPTS: u32 = 3;

/// Starts the function with `PORT` set to a port nothing listens on.
fn spawn_on_free_port(
    function: &Function,
    limiter: &Limiter,
) -> Result<(Worker, u16), InvokeError> {
    let port = port::free().map_err(|err| InvokeError::Spawn {
        file: function.file.relative.clone(),
        cause: format!("no free port for the worker: {err}"),
        hint: "see watchdog's log".into(),
    })?;
    let env = vec![(OsString::from("PORT"), OsString::from(port.to_string()))];
    let mut worker = Worker::spawn(function, limiter, env)?;
    worker.port = port;
    Ok((worker, port))
}

/// Proxies one request to the lent worker.
///
/// # Errors
/// 504 when the worker does not answer by the deadline (it is then killed and
/// replaced), 502 when it breaks off; [`Failed::NotTaken`] when it had ended
/// before it took the request: refused or closed the connection before the
/// request went out, or, for a request that can be sent again (an idempotent
/// method without a body), retired itself (exit 0, having served) as the
/// request reached it, unread.
pub async fn forward(mut lease: Lease, mut invocation: Invocation) -> Result<Reply, Failed> {
    let worker = lease.worker();
    let (port, pid) = (worker.port, worker.pid);
    let file = invocation.route.function.file.relative.clone();
    invocation.record.pid = Some(pid);
    invocation.record.cold = Some(lease.cold);
    // What it takes to send the request to another worker, should this one
    // turn out to have ended before it took it.
    let resendable_once_sent =
        invocation.method.is_idempotent() && matches!(invocation.body, RequestBody::Empty);
    let length = invocation.body.content_length();
    let body = std::mem::replace(&mut invocation.body, RequestBody::Empty).into_body();
    let mut request = upstream_request(&invocation, port, body);
    // A chunked upload was received whole before the worker was taken: it
    // goes on with its length, as CGI gets it, not chunked again. Many plain
    // servers (Python's http.server, WSGI's reference) read a body by its
    // Content-Length alone, and took a chunked one for none.
    if let Some(length) = length
        && !request.headers().contains_key(header::CONTENT_LENGTH)
    {
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length.into());
    }
    let deadline = invocation.deadline;
    // A failed exchange, with what it says about the worker.
    let failed = |cause: String, outcome: Outcome| {
        let error = InvokeError::WorkerFailed {
            file: file.clone(),
            cause,
        };
        NoAnswer::Failed(error, outcome)
    };
    let answer_failed = |err: hyper::Error| {
        if err.is_parse() {
            // An answer that is not HTTP hyper can read (more than 100 headers, a
            // malformed head) is a bad answer, like a CGI function's bad header
            // block, not a crash: the worker is kept if it still runs.
            let error = InvokeError::BadAnswer {
                file: file.clone(),
                cause: format!("answered with a response that is not valid HTTP: {err}"),
                hint: ANSWER_HINT,
            };
            NoAnswer::Failed(error, Outcome::Abandoned)
        } else {
            failed(format!("broke off the request: {err}"), Outcome::BrokeOff)
        }
    };
    let kept = lease.worker_mut().take_connection();
    let others_open = lease.worker().has_idle_connections();
    let exchange = async {
        let reusable = match kept {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        if let Some(mut sender) = reusable {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut failed) => match failed.take_message() {
                    // The kept connection closed before the request went out (the
                    // worker's keep-alive ended): retry on a fresh one.
                    Some(returned) => request = returned,
                    None => return Err(answer_failed(failed.into_error())),
                },
            }
        }
        // Refused: the worker no longer listens (a server shutting down
        // closes its listener first).
        let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            return Err(NoAnswer::Unsent {
                request,
                refused: true,
            });
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(handshaken) => handshaken,
                Err(err) => {
                    return Err(failed(
                        format!("HTTP handshake failed: {err}"),
                        Outcome::Crashed,
                    ));
                }
            };
        tokio::spawn(connection);
        let response = sender.try_send_request(request);
        tokio::pin!(response);
        let response = if others_open {
            tokio::select! {
                answered = &mut response => answered,
                () = tokio::time::sleep(SECOND_CONNECTION_GRACE) => {
                    // A worker that serves one connection at a time may still be
                    // reading another thread's idle connection and never accept
                    // this one: close those, and share one connection from now on.
                    lease.worker_mut().serve_one_connection_at_a_time();
                    response.await
                }
            }
        } else {
            response.await
        };
        match response {
            Ok(response) => Ok((response, sender)),
            Err(mut failed) => Err(match failed.take_message() {
                // Accepted, then closed before the request went out.
                Some(returned) => NoAnswer::Unsent {
                    request: returned,
                    refused: false,
                },
                None => answer_failed(failed.into_error()),
            }),
        }
    };
    // A client that leaves before the answer drops this future: the lease
    // with it (it stops the worker), and the record, logged as a client gone.
    let (response, sender) = match super::await_answer(&mut invocation, exchange).await {
        Waited::Answered(Ok(exchanged)) => exchanged,
        Waited::Answered(Err(no_answer)) => {
            let (err, outcome) = match no_answer {
                // Never sent: another worker takes it, whatever became of this
                // one. Refused, it no longer listens: the pool judges it
                // apart. Accepted and closed at once, it ended (judged by its
                // status) or listens (a server at its connection limit: kept,
                // as one that closed a connection without answering).
                NoAnswer::Unsent { request, refused } => {
                    // The record holds the body's watch (the handler put it
                    // there): not cloned on every request for this rare path.
                    let watch = invocation.record.body.clone();
                    invocation.body = RequestBody::unsent(request.into_body(), length, watch);
                    if !refused {
                        // A worker exiting resets what waited in its backlog:
                        // its end and status show a moment later.
                        lease.ended_without_answering().await;
                    }
                    lease.finish(if refused {
                        Outcome::Refused
                    } else {
                        Outcome::NotTaken
                    });
                    return Err(Failed::NotTaken(Box::new(invocation)));
                }
                NoAnswer::Failed(error, outcome) => (error, outcome),
            };
            // The request broke off because the client's upload did: the worker
            // is not to blame.
            if let Some(fault) = invocation.record.body.as_ref().and_then(BodyWatch::fault) {
                lease.finish(Outcome::Abandoned);
                return Err(invocation.record.failed(InvokeError::from(fault)).into());
            }
            // Sent, unanswered, by a worker on its way out: resent when sending
            // it again cannot do anything twice.
            let leaving = match outcome {
                Outcome::BrokeOff => leaving(&lease, port).await,
                _ => None,
            };
            let Some(leaving) = leaving else {
                let err = lease.blame(&mut invocation.record, err).await;
                lease.finish(outcome);
                return Err(invocation.record.failed(err).into());
            };
            lease.finish(match leaving {
                Leaving::Retired => Outcome::BrokeOff,
                Leaving::ShuttingDown => Outcome::NotTaken,
            });
            if resendable_once_sent {
                return Err(Failed::NotTaken(Box::new(invocation)));
            }
            let err = InvokeError::WorkerFailed {
                file,
                cause: format!(
                    "{leaving} as this request reached it, unanswered; watchdog sends a request \
                     again only when that cannot do anything twice (an idempotent method, no body), \
                     so the client may retry this {} itself",
                    invocation.method
                ),
            };
            return Err(invocation.record.failed(err).into());
        }
        Waited::Stopped => {
            lease.finish(Outcome::Stuck);
            return Err(invocation.stopped_by_shutdown().into());
        }
        Waited::TimedOut => {
            invocation.record.timed_out = true;
            let timeout = invocation.route.function.settings.timeout;
            // The worker was waiting for the client's upload: cutting the body off
            // closes that connection, and the worker is kept. Otherwise it is
            // stuck, and replaced.
            if let Some(error) = (invocation.record.body.as_ref())
                .and_then(|watch| watch.cut_off_if_awaited(timeout))
            {
                lease.finish(Outcome::Abandoned);
                return Err(invocation.record.failed(error).into());
            }
            lease.finish(Outcome::Stuck);
            return Err(invocation
                .record
                .failed(InvokeError::Timeout {
                    file,
                    after: timeout,
                })
                .into());
        }
    };
    let (mut parts, incoming) = response.into_parts();
    if !crate::invoke::is_answer_status(parts.status.as_u16()) {
        drop((incoming, sender));
        lease.finish(Outcome::Abandoned);
        return Err(invocation
            .record
            .failed(InvokeError::BadAnswer {
                file,
                cause: format!(
                    "answered with status {}, not one from 200 to 599",
                    parts.status.as_u16()
                ),
                hint: ANSWER_HINT,
            })
            .into());
    }
    crate::invoke::hop_by_hop::strip(&mut parts.headers);
    // The version is the hop's, not the worker's (RFC 9110 §2.5): an HTTP/1.0
    // worker's answer goes out as HTTP/1.1, and the client's connection stays
    // open.
    parts.version = axum::http::Version::HTTP_11;
    invocation.record.status = Some(parts.status.as_u16());
    let length_unknown = invocation.method == axum::http::Method::HEAD
        && !parts.headers.contains_key(header::CONTENT_LENGTH);
    let body = LeasedBody {
        length_unknown,
        inner: Some(incoming),
        sender: Some(sender),
        lease: Some(lease),
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        record: Some(invocation.record),
        expired: false,
    };
    Ok(Reply::Response(Response::from_parts(
        parts,
        Body::new(Guarded::new(body, deadline)),
    )))
}

impl http_body::Body for Guarded<LeasedBody> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let (polled, more_to_come) = {
            let mut body = self.lock();
            let polled = Pin::new(&mut *body).poll_frame(cx);
            (polled, !body.answer_ended())
        };
        if more_to_come && matches!(polled, Poll::Ready(Some(Ok(_)))) {
            self.arm();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.lock().is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.lock().size_hint()
    }
}

impl Expire for LeasedBody {
    fn expire(&mut self) {
        self.expired = true;
        // The worker's connection goes with the worker, which is stopped.
        self.inner = None;
        self.finish(Outcome::Stuck);
    }
}

fn upstream_request(invocation: &Invocation, port: u16, body: Body) -> Request<Body> {
    let path = invocation.uri.path_and_query().map_or_else(
        || invocation.uri.path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    // What the client's `Connection` names is for the hop to watchdog; but
    // Host stays: dropped, the worker would be told 127.0.0.1 instead (below),
    // which a "local requests only" check trusts.
    let mut hop_only = hop_by_hop::connection_named(&invocation.headers);
    hop_only.retain(|name| name != header::HOST);
    let mut request = Request::new(body);
    *request.method_mut() = invocation.method.clone();
    *request.uri_mut() = path.parse().unwrap_or_default();
    let headers = request.headers_mut();
    for (name, value) in &invocation.headers {
        // `x-watchdog-*` is watchdog's to set; a client cannot pose as it. Nor
        // through a name with `_`, which CGI-style servers (WSGI, Rack) fold into
        // the same variable as `-` (`X_Request_Id` as `X-Request-Id`): dropped, as
        // for CGI functions and as nginx does by default.
        let reserved = name.as_str().starts_with("x-watchdog-") || name.as_str().contains('_');
        // A framework that makes the request's headers into HTTP_* variables
        // would give the client HTTP_PROXY.
        let httpoxy = name.as_str() == HTTPOXY_HEADER;
        if !reserved && !httpoxy && !hop_by_hop::is_hop_by_hop(name) && !hop_only.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if !headers.contains_key(header::HOST)
        && let Ok(host) = format!("127.0.0.1:{port}").parse()
    {
        headers.insert(header::HOST, host);
    }
    // Replaces the client's fields: the chain holds them.
    headers.insert(
        forwarded::FOR,
        forwarded::chain(&invocation.headers, invocation.client.ip()),
    );
    headers.insert(forwarded::PROTO, forwarded::proto(&invocation.headers));
    if let Some(host) = forwarded::host(&invocation.headers) {
        headers.insert(forwarded::HOST, host);
    }
    headers.insert(
        forwarded::REAL_IP,
        forwarded::real_ip(invocation.client_ip()),
    );
    if let Ok(value) = invocation.request_id.parse() {
        headers.insert("x-request-id", value);
    }
    if let Ok(value) = invocation.deadline_epoch_ms.to_string().parse() {
        headers.insert("x-watchdog-deadline-ms", value);
    }
    // The route's parameters, for the Node adapter; a route without any sends no
    // header (the adapter reads its absence as none), which spares every worker
    // parsing one more header per request.
    if !invocation.route.params.is_empty()
        && let Ok(value) = ascii_json(&invocation.route.params_json()).parse()
    {
        headers.insert("x-watchdog-params", value);
    }
    request
}

/// JSON with every non-ASCII character escaped (`\u00e9`), so it fits in a header
/// value whatever the route parameters hold.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Why a worker that had served dropped a request without answering it.
#[derive(Debug, Clone, Copy)]
enum Leaving {
    /// It ended with exit 0: a server that retires itself after N requests.
    Retired,
    /// It runs, but no longer accepts connections: a server shutting down
    /// closes its listener first, and resets what waited to be accepted.
    ShuttingDown,
}

impl std::fmt::Display for Leaving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Leaving::Retired => "the worker retired itself (exit 0, having served)",
            Leaving::ShuttingDown => {
                "the worker stopped accepting connections (shutting down, having served)"
            }
        })
    }
}

/// Whether the lent worker, which dropped a request without answering it, is
/// on its way out ([`Leaving`]); `None` when it runs and listens (the request
/// is its to answer for), crashed, or never served (a worker that ends or
/// stops listening on its first request is not retiring). Waits for a dying
/// worker's end to show ([`Lease::ended_without_answering`]) whatever it
/// finds, so that the pool judges a crash as one.
async fn leaving(lease: &Lease, port: u16) -> Option<Leaving> {
    let ended = lease.ended_without_answering().await;
    let worker = lease.worker();
    if ended {
        return worker.retired().then_some(Leaving::Retired);
    }
    // Ended, but its status not in yet (a wrapper's server, whose end the
    // wrapper's exit 0 says nothing of): not a retirement that shows.
    if worker.served == 0 || worker.has_ended_now() {
        return None;
    }
    // Bounded: a listener whose backlog is full drops the handshake instead.
    let probe = tokio::time::timeout(PROBE_LIMIT, TcpStream::connect(("127.0.0.1", port))).await;
    matches!(probe, Ok(Err(_))).then_some(Leaving::ShuttingDown)
}

/// How long [`leaving`] waits to learn whether the worker still accepts
/// connections.
const PROBE_LIMIT: Duration = Duration::from_millis(100);

/// Why a lent worker gave no answer.
enum NoAnswer {
    /// The connection was refused, or accepted and closed before the request
    /// went out: the request is still whole.
    Unsent {
        request: Request<Body>,
        refused: bool,
    },
    /// Failed, with what it says about the worker.
    Failed(InvokeError, Outcome),
}

/// The worker's response body on its way to the client. It holds the worker until
/// the body ends (one request per worker at a time), enforces the deadline on the
/// body too, and carries the invocation record so the log event is written when
/// the response is really over.
struct LeasedBody {
    /// The worker's answer; taken when the client leaves, to be drained.
    inner: Option<Incoming>,
    /// A HEAD answer that gave no length: its (empty) body must not say 0, or
    /// hyper sends `content-length: 0` where the GET's length is unknown.
    length_unknown: bool,
    /// The connection, given back with the worker when the body ends cleanly.
    sender: Option<HttpConnection>,
    lease: Option<Lease>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    record: Option<InvocationRecord>,
    /// Ended at its deadline by its [`Guarded`] timer, while hyper was not
    /// polling it.
    expired: bool,
}

impl LeasedBody {
    /// Whether the worker's answer has been read to its end (or handed on to
    /// be drained).
    fn answer_ended(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn finish(&mut self, outcome: Outcome) {
        // Cut short by a worker that may have been killed by its limit: which
        // is known only once the kernel shows it ended, a moment after its
        // connection broke. The record and the pool wait for that, off the
        // client's response (which is already cut off). Other workers are
        // judged at once: most that cut an answer short run on (a handler that
        // failed midway), and the next request should find them idle.
        if outcome == Outcome::CutShort
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && let Some(lease) = self.lease.take_if(|lease| lease.killable_by_limit())
        {
            let mut record = self.record.take();
            runtime.spawn(async move {
                if let (Some((limit, _)), Some(record)) =
                    (lease.limit_that_killed().await, record.as_mut())
                {
                    record.limit_hit = Some(limit);
                }
                lease.finish(outcome);
                drop(record);
            });
            return;
        }
        if let Some(lease) = self.lease.take() {
            give_back(lease, outcome, self.sender.take());
        }
        if let Some(mut record) = self.record.take() {
            record.timed_out |= outcome == Outcome::Stuck;
            drop(record);
        }
    }
}

impl Drop for LeasedBody {
    /// Dropped before its end: the client left (or read only the head), and
    /// the connection is mid-response. What the worker has still to send is
    /// drained for a moment ([`drain_then_release`]) to learn whether it is
    /// done with the request. The Node adapter stops the work itself once the
    /// connection closes (a handler's `close`, a Web stream's cancel), so it
    /// serves the next request at once.
    fn drop(&mut self) {
        if self.answer_ended() {
            self.finish(Outcome::Served);
            return;
        }
        // Still held only when no error or deadline ended the answer.
        if let Some(record) = self.record.as_mut() {
            record.client_gone = true;
        }
        let Some(lease) = self.lease.take() else {
            return;
        };
        if lease.stops_work_on_close() {
            if let Some(record) = self.record.as_mut() {
                record.worker_kept = true;
            }
            lease.finish(Outcome::Served);
            return;
        }
        match (tokio::runtime::Handle::try_current(), self.inner.take()) {
            // Tracked with the pool's stops, so shutdown waits for it and the
            // worker it may stop gets its kill grace.
            (Ok(runtime), Some(rest)) => {
                let tracker = lease.tracker();
                let drain = drain_then_release(rest, lease, self.sender.take(), self.record.take());
                drop(tracker.spawn_on(drain, &runtime));
            }
            // Dropping the lease stops the worker.
            _ => drop(lease),
        }
    }
}

/// How long, and how much of, the rest of an answer whose client left is read
/// and dropped before the worker is judged still busy with it.
const DRAIN_FOR: Duration = Duration::from_millis(50);
const DRAIN_AT_MOST: usize = 1 << 20;

/// Reads and drops the rest of an answer whose client left. A worker that had
/// written it all (to a client that read only the status, say) is done with
/// the request: it is kept, and its connection with it. One still writing (a
/// stream, a handler that pauses) would go on beside the next request it was
/// lent, which "one request per worker" forbids: it is stopped, as CONTRACT §3
/// stops a CGI function's group whose client disconnects ([`Lease`]'s drop).
/// The request's record is written once that is known (within [`DRAIN_FOR`]):
/// a kept worker was not killed.
async fn drain_then_release(
    mut rest: Incoming,
    lease: Lease,
    sender: Option<HttpConnection>,
    mut record: Option<InvocationRecord>,
) {
    use http_body_util::BodyExt;
    let drained = tokio::time::timeout(DRAIN_FOR, async {
        let mut read = 0;
        while let Some(frame) = rest.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_AT_MOST {
                return false;
            }
        }
        true
    })
    .await;
    if drained != Ok(true) {
        drop(lease);
        return drop(record);
    }
    if let Some(record) = record.as_mut() {
        record.worker_kept = true;
    }
    give_back(lease, Outcome::Served, sender);
    drop(record);
}

/// Gives the worker back with `outcome`, and its connection with it when it
/// served: a connection mid-answer, or one a failure ended, is closed.
fn give_back(mut lease: Lease, outcome: Outcome, connection: Option<HttpConnection>) {
    if outcome == Outcome::Served
        && let Some(connection) = connection
    {
        lease.worker_mut().keep_connection(connection);
    }
    lease.finish(outcome);
}

impl http_body::Body for LeasedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.expired || self.deadline.as_mut().poll(cx).is_ready() {
            self.finish(Outcome::Stuck);
            return Poll::Ready(Some(Err(std::io::Error::other(
                "the function timed out mid-response",
            ))));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), self.record.as_mut()) {
                    record.bytes_out += data.len() as u64;
                }
                // With a Content-Length, hyper stops polling once it has that many
                // bytes: give the worker (and its connection) back now.
                if self.answer_ended() {
                    self.finish(Outcome::Served);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                // hyper reports a request body that broke off mid-answer as a
                // broken connection: the client's doing, not the worker's.
                // (The request body may still stream to a worker that answers
                // early: an echo, a refusal.)
                let client_fault = (self.record.as_ref())
                    .and_then(|record| record.body.as_ref())
                    .is_some_and(|watch| watch.fault().is_some());
                if let Some(record) = self.record.as_mut() {
                    record.cut_off = !client_fault;
                }
                self.finish(if client_fault {
                    Outcome::Abandoned
                } else {
                    Outcome::CutShort
                });
                Poll::Ready(Some(Err(std::io::Error::other(err))))
            }
            Poll::Ready(None) => {
                self.finish(Outcome::Served);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.length_unknown && self.answer_ended()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.length_unknown {
            http_body::SizeHint::default()
        } else {
            self.inner
                .as_ref()
                .map_or_else(http_body::SizeHint::default, http_body::Body::size_hint)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_json_fits_a_header() {
        let value = serde_json::json!({ "id": "café", "rest": ["a", "😀"] });
        let text = ascii_json(&value.to_string());
        assert!(text.is_ascii());
        assert!(axum::http::HeaderValue::from_str(&text).is_ok());
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn a_worker_listening_elsewhere_is_told_what_to_bind() {
        assert_eq!(listening_elsewhere(&[], 4000), None);
        let fixed = listening_elsewhere(&[5000, 9229], 4000).unwrap();
        assert!(
            fixed.contains("port 5000, 9229 but not on the one in $PORT (4000)"),
            "{fixed}"
        );
        let local = listening_elsewhere(&[4000], 4000).unwrap();
        assert!(
            local.contains("but not on 127.0.0.1: bind 127.0.0.1"),
            "{local}"
        );
        assert!(!local.contains("0.0.0.0"), "{local}");
    }
}
