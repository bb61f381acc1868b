//! The CGI invoker: one process per request (CONTRACT §3, RFC 3875).
//!
//! [`run`] spawns the function and hands the process to a driver task, which owns it
//! to the end: it reads stdout and stderr, parses
//! the header block, streams the body to the client with backpressure, and enforces
//! the deadline and client disconnects with the TERM → grace → KILL ladder. The
//! request future only waits for the response head, so the body streams while the
//! driver keeps going; nothing the client does can leave the process behind.

pub mod conditional;
pub mod environment;
pub mod interpreter;
pub mod pipe_chunks;
pub mod spawn;
pub mod stdin;

use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Response, StatusCode, header};
use bytes::Bytes;
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use self::pipe_chunks::PipeChunks;
use super::body_fault::BodyWatch;
use super::envelope::EnvelopeReader;
use super::output_log::OutputLog;
use super::{Invocation, InvokeError, InvokeFuture, Invoker, Reply, RequestBody};
use crate::config::file::OutputMode;
use crate::limits::Limiter;
use crate::observability::InvocationRecord;
use crate::process::{ExitWatch, ProcessGroup, reaper};
use crate::routes::Function;

/// After the leader exits, how long stdout may stay silent before the response is
/// ended anyway: a background child that inherited stdout must not hold the request.
const LINGER_AFTER_EXIT: Duration = Duration::from_millis(100);

/// How long the body of a function with a killing limit (`cpu_time`,
/// `memory`) waits at stdout EOF for the function's exit before it is called
/// whole. A function a limit kills in the middle of its body closes stdout as
/// it dies, and only its exit status tells that the body is cut short: the
/// exit almost always follows within microseconds. One that closes stdout and
/// runs on (RFC 3875 lets its body end there) has its response end this much
/// later. Longer than the exit watch's poll where no pidfd can be had.
/// Functions without such limits (the fast path) end their body at EOF
/// at once: waiting for every function's exit cost about 2% of the static C
/// benchmark's requests/s (10 alternating pairs, 9 of them slower), and a
/// crash mid-body ends it as Apache's and lighttpd's CGI do.
const EXIT_AFTER_EOF: Duration = Duration::from_millis(25);

/// How long a leader runs before watchdog starts watching for its exit on its
/// own (through a pidfd) rather than learning of it when its output closes.
/// Most functions are done long before: they never get a pidfd (see
/// [`ExitWatch`]). One whose background child holds stdout after it exited is
/// found out this late: its response ends up to this plus [`LINGER_AFTER_EXIT`]
/// after the exit. Not shorter than the connection threads' pending timer
/// (`server::connection_threads`), or arming it would make tokio write its
/// eventfd on every request.
const WATCH_LEADER_AFTER: Duration = Duration::from_secs(1);

/// How long to wait for killed group members to die before giving up on reaping.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// Bytes asked for per stdout read.
const STDOUT_READ_SIZE: usize = 64 * 1024;
/// Once a read comes back full (the function writes a lot: a download, an
/// echo), its stdout pipe grows from the kernel's 64 KiB to this, and is read
/// this much at a time: each round of "the function fills the pipe, sleeps,
/// watchdog drains it and wakes it" then moves four times the bytes. 1 MiB echo
/// at 1 connection: ~470 -> ~615 req/s; a 1 MiB pipe gained little more
/// (~635). Small outputs never pay for it, and growth has a global budget
/// ([`crate::process::pipe::MAX_GROWN`]).
const LARGE_OUTPUT_READ_SIZE: usize = 256 * 1024;
/// How long the stderr pipe of a stopped group is read for what is left in
/// it: the group is gone, so this is only for a pipe a runaway holds open.
const STDERR_AFTER_STOP: Duration = Duration::from_millis(20);

/// Bytes asked for per stderr read: log lines, not bulk data.
const STDERR_READ_SIZE: usize = 16 * 1024;

/// Chunks of body buffered between the driver and the client: the backpressure window.
const BODY_CHANNEL_CHUNKS: usize = 4;

/// Runs functions as CGI programs.
#[derive(Debug, Clone)]
pub struct CgiInvoker {
    limiter: Arc<Limiter>,
}

impl CgiInvoker {
    pub fn new(limiter: Arc<Limiter>) -> Self {
        Self { limiter }
    }
}

impl Invoker for CgiInvoker {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        Box::pin(run(invocation, Arc::clone(&self.limiter)))
    }
}

type HeadSender = oneshot::Sender<Result<Reply, InvokeError>>;
type BodySender = mpsc::Sender<io::Result<Bytes>>;

async fn run(mut invocation: Invocation, limiter: Arc<Limiter>) -> Result<Reply, InvokeError> {
    let env = environment::Environment::of(&invocation);
    let body = std::mem::replace(&mut invocation.body, RequestBody::Empty);
    let has_body = !matches!(body, RequestBody::Empty);
    let file = invocation.route.function.file.relative.clone();
    let path = invocation.route.function.document_root.join(&file);
    let runner = &invocation.route.function.file.runner;
    let limits = &invocation.route.function.settings.limits;
    let plan = limiter.plan(limits).map_err(|err| InvokeError::Spawn {
        file: file.clone(),
        cause: format!("cannot set up its resource limits: {err}"),
        hint: "check that watchdog may write its cgroups under /sys/fs/cgroup".into(),
    })?;
    let started = super::file_busy::retry_while_busy(invocation.deadline, || {
        std::future::ready(spawn::spawn_cgi(
            &path, &file, runner, &env, has_body, &limiter, &plan,
        ))
    })
    .await?;
    let pid = started.pid;
    let raw_output = invocation.route.function.settings.output == OutputMode::Raw;
    // One stdout budget for both output modes: raw output is held in memory, so
    // it always has one.
    let output_limit = limits
        .max_output
        .or(raw_output.then_some(DEFAULT_RAW_LIMIT));
    let group = ProcessGroup::new(pid);
    let body_broken = started
        .stdin
        .map(|pipe| stdin::spawn(pipe, body, invocation.deadline));
    invocation.record.pid = Some(pid);
    let (head_tx, head_rx) = oneshot::channel();
    let driver = Driver {
        stderr: OutputLog::new(&invocation.route.function.pattern, &invocation.request_id),
        stdout: PipeChunks::new(started.stdout, STDOUT_READ_SIZE),
        stderr_pipe: PipeChunks::new(started.stderr, STDERR_READ_SIZE),
        group,
        exit_watch: started.exit,
        leader_reaped: false,
        group_registered: true,
        deadline: invocation.deadline,
        timeout: invocation.route.function.settings.timeout,
        cgroup: plan.cgroup,
        output_limit,
        killable_by_limit: limits.can_kill(),
        stdout_bytes: 0,
        raw: raw_output.then(|| RawOutput {
            content_type: invocation.route.function.settings.content_type.clone(),
            exit_status: invocation.route.function.settings.exit_status.clone(),
        }),
        grace: invocation.settings.kill_grace,
        is_head: invocation.method == Method::HEAD,
        conditions: conditional::Conditions::of(&invocation.method, &invocation.headers),
        file,
        spawned_wall: std::time::SystemTime::now(),
        exec_direct: runner.executable && !runner.node_module,
        function: Arc::clone(&invocation.route.function),
        path,
        remaining: None,
        wrote_past_length: false,
        record: invocation.record,
    };
    invocation
        .tasks
        .spawn(driver.drive(head_tx, invocation.stop, body_broken));
    head_rx.await.unwrap_or(Err(InvokeError::Internal))
}

/// `output = "raw"` holds stdout until exit; without `max_output`, this much.
const DEFAULT_RAW_LIMIT: u64 = 64 * 1024 * 1024;

/// How an `output = "raw"` function (OpenFaaS classic) is answered.
struct RawOutput {
    content_type: Option<String>,
    exit_status: std::collections::BTreeMap<i32, u16>,
}

/// Why the driver's main loop ended.
enum End {
    /// stdout and stderr closed and the leader exited and was reaped (`None`:
    /// its status could not be had).
    Exited(Option<ExitStatus>),
    /// The leader exited but a pipe stayed open past the linger (a background
    /// child holds it).
    LeaderGone,
    TimedOut,
    ClientGone,
    /// The request body broke off or stalled ([`BodyWatch::fault`] says which).
    BodyFault,
    /// The server gave up draining.
    Shutdown,
    /// The header block was invalid (or raw output too large); the error went to
    /// the client already.
    BadOutput,
}

/// What one turn of the driver loop saw.
enum Event {
    Continue,
    /// Time to watch for the leader's exit rather than wait for its pipes.
    WatchLeader,
    LeaderExited,
    Stdout(Bytes),
    StdoutClosed,
    StderrClosed,
    End(End),
}

/// Owns one running function until it is gone.
struct Driver {
    /// The function's stdout. The response body ends at stdout EOF even while the
    /// process runs on (RFC 3875). Large reads keep the per-chunk overhead low for
    /// big bodies.
    ///
    /// The pipes are read directly rather than through tokio-process-stream (which
    /// the warm pool uses for its workers' output): a CGI leader comes from the
    /// lean spawner (`process::spawn`), which tokio does not know, and is reaped
    /// here ([`ExitWatch`]).
    stdout: PipeChunks<pipe::Receiver>,
    /// stderr, for the log.
    stderr_pipe: PipeChunks<pipe::Receiver>,
    group: ProcessGroup,
    /// The leader's exit, and reaping it.
    exit_watch: ExitWatch,
    leader_reaped: bool,
    /// Until `stop_group` is done, the orphan sweep leaves this group alone.
    group_registered: bool,
    stderr: OutputLog,
    deadline: Instant,
    timeout: Duration,
    grace: Duration,
    is_head: bool,
    /// The request's validators, when it is a conditional GET or HEAD.
    conditions: Option<conditional::Conditions>,
    file: String,
    /// The file's path on disk, looked at only when the function failed.
    path: std::path::PathBuf,
    /// When it was started, on the clock file times are kept by, to tell a
    /// file saved meanwhile ([`Driver::unless_saved_meanwhile`]).
    spawned_wall: std::time::SystemTime,
    /// It was exec'd itself (its `#!` line read by the kernel), not given to
    /// its extension's interpreter.
    exec_direct: bool,
    /// Its settings: the PATH it was given, looked at only when it failed.
    function: Arc<Function>,
    /// Body bytes still owed to the client when the function sent Content-Length.
    remaining: Option<u64>,
    /// It wrote past that length, and the log has said so.
    wrote_past_length: bool,
    raw: Option<RawOutput>,
    /// The invocation's own cgroup, when it has cgroup-held limits.
    cgroup: Option<crate::limits::InvocationCgroup>,
    /// `max_output`: stdout bytes allowed before the function is stopped.
    output_limit: Option<u64>,
    /// It has a limit the kernel enforces by killing it (`cpu_time`, `memory`):
    /// its body ends at its exit rather than at stdout EOF ([`EXIT_AFTER_EOF`]).
    killable_by_limit: bool,
    stdout_bytes: u64,
    record: InvocationRecord,
}

/// Where stdout goes once the header block is known.
enum Sink {
    /// Still reading the header block.
    Head(EnvelopeReader),
    /// `output = "raw"`: all of stdout, answered at exit.
    Raw(bytes::BytesMut),
    Client {
        tx: BodySender,
        complete: Arc<AtomicBool>,
    },
    /// No body may be sent (HEAD, 204, 304, Content-Length reached) or a local
    /// redirect: the function runs on, its output is dropped.
    Discard,
}

impl Driver {
    async fn drive(
        mut self,
        head_tx: HeadSender,
        stop: tokio_util::sync::CancellationToken,
        mut body_broken: Option<stdin::BodyBroken>,
    ) {
        let mut head_tx = Some(head_tx);
        // The function's stdin from a body that broke off, kept open until the
        // function has been stopped.
        let mut _held_stdin = None;
        let mut sink = if self.raw.is_some() {
            Sink::Raw(bytes::BytesMut::new())
        } else {
            Sink::Head(EnvelopeReader::new())
        };
        let mut pending: Option<Bytes> = None;
        let mut stdout_open = true;
        let mut stderr_open = true;
        let mut leader_exited = false;
        // Timers are made once, not on every turn of the loop. The linger is
        // replaced (not reset) when the leader exits: `reset` registers a timer at
        // once, and a timer that becomes the runtime's earliest costs a wakeup of
        // its driver (an eventfd write, and an event to read back) even on its own
        // thread. A fresh `Sleep` registers only when first polled, and in the
        // usual exit (stdout and stderr close in the same wakeup as the exit) it
        // never is.
        let deadline = tokio::time::sleep_until(self.deadline);
        tokio::pin!(deadline);
        // A placeholder: the branch that polls it is off until the leader has
        // exited, when it is replaced.
        let linger = tokio::time::sleep(LINGER_AFTER_EXIT);
        tokio::pin!(linger);
        // Whether the leader's exit is being watched for (a pidfd); until then
        // it is learnt when the pipes close.
        let mut watching = false;
        let watch_leader = tokio::time::sleep(WATCH_LEADER_AFTER);
        tokio::pin!(watch_leader);
        let end = loop {
            let event = tokio::select! {
                biased;
                () = &mut deadline => Event::End(End::TimedOut),
                () = stop.cancelled() => Event::End(End::Shutdown),
                () = head_closed(&mut head_tx) => Event::End(End::ClientGone),
                broken = body_broke(&mut body_broken) => match broken {
                    Ok(stdin) => {
                        _held_stdin = Some(stdin);
                        Event::End(End::BodyFault)
                    }
                    Err(_) => {
                        body_broken = None;
                        Event::Continue
                    }
                },
                () = body_closed(&sink), if pending.is_none() => Event::End(End::ClientGone),
                permit = reserve(&sink), if pending.is_some() => match permit {
                    Some(permit) => {
                        let mut chunk = pending.take().unwrap_or_default();
                        if let Some(remaining) = &mut self.remaining {
                            let past = (chunk.len() as u64).saturating_sub(*remaining);
                            chunk.truncate(usize::try_from(*remaining).unwrap_or(usize::MAX));
                            *remaining -= chunk.len() as u64;
                            self.past_its_length(past);
                        }
                        self.record.bytes_out += chunk.len() as u64;
                        permit.send(Ok(chunk));
                        Event::Continue
                    }
                    None => Event::End(End::ClientGone),
                },
                () = &mut watch_leader, if !watching && !leader_exited => Event::WatchLeader,
                () = self.exit_watch.exited(), if watching && !leader_exited => Event::LeaderExited,
                chunk = self.stdout.next(), if stdout_open && pending.is_none() => match chunk {
                    Some(Ok(chunk)) => Event::Stdout(chunk),
                    Some(Err(_)) | None => Event::StdoutClosed,
                },
                chunk = self.stderr_pipe.next(), if stderr_open => match chunk {
                    Some(Ok(chunk)) => {
                        self.stderr.push(&chunk);
                        Event::Continue
                    }
                    Some(Err(_)) | None => Event::StderrClosed,
                },
                () = &mut linger, if leader_exited && pending.is_none() => {
                    Event::End(End::LeaderGone)
                }
            };
            match event {
                Event::Continue => {}
                Event::End(end) => break end,
                Event::WatchLeader => watching = true,
                Event::LeaderExited => {
                    leader_exited = true;
                    linger.set(tokio::time::sleep(LINGER_AFTER_EXIT));
                }
                Event::StderrClosed => stderr_open = false,
                Event::StdoutClosed => {
                    stdout_open = false;
                    if matches!(sink, Sink::Client { .. }) {
                        // Whole or cut off: for a function a limit can kill,
                        // its exit tells ([`EXIT_AFTER_EOF`]).
                        let exited = self.killable_by_limit
                            && tokio::time::timeout(EXIT_AFTER_EOF, self.exit_watch.exited())
                                .await
                                .is_ok();
                        if exited {
                            leader_exited = true;
                            linger.set(tokio::time::sleep(LINGER_AFTER_EXIT));
                        }
                        if exited && self.killed_mid_body(None) {
                            // Dropped unfinished: the client's body is cut off.
                            sink = Sink::Discard;
                        } else if let Some(missing) = self.remaining.filter(|&n| n > 0) {
                            // Short of its own Content-Length: the client gets
                            // what was written, then the cut (hyper, left to find
                            // the body short itself, dropped the connection with
                            // the head often unsent), and the log says why.
                            tracing::warn!(
                                request_id = %self.record.request_id,
                                file = %self.file,
                                missing,
                                "the function's output ended {missing} bytes short of the Content-Length it declared; the response is cut off there (a function must write as many bytes as its Content-Length says, or leave the header out and let the body end where its output does)"
                            );
                            sink = Sink::Discard;
                        } else {
                            end_body_at_eof(&mut sink).await;
                        }
                    }
                }
                Event::Stdout(chunk) => {
                    if self.remaining == Some(0) {
                        self.past_its_length(chunk.len() as u64);
                    }
                    if chunk.len() == STDOUT_READ_SIZE {
                        self.stdout.grow(LARGE_OUTPUT_READ_SIZE);
                    }
                    if leader_exited {
                        linger.set(tokio::time::sleep(LINGER_AFTER_EXIT));
                    }
                    self.stdout_bytes += chunk.len() as u64;
                    if let Some(limit) = self.output_limit
                        && self.stdout_bytes > limit
                    {
                        self.record.limit_hit = Some("max_output");
                        // Past its head, the client keeps the status it got
                        // (its body is cut off); before, it gets the 502.
                        if head_tx.is_some() {
                            self.record.status = Some(502);
                        }
                        let file = self.file.clone();
                        send_head(
                            &mut head_tx,
                            Err(InvokeError::OutputTooLarge {
                                file,
                                limit,
                                raw: self.raw.is_some(),
                            }),
                        );
                        break End::BadOutput;
                    }
                    match self.on_stdout(&mut sink, &mut head_tx, chunk) {
                        Ok(body) => pending = body,
                        Err(()) => {
                            self.record.status = Some(502);
                            break End::BadOutput;
                        }
                    }
                }
            }
            if !stdout_open && !stderr_open && (leader_exited || !watching) {
                // Both pipes closed: the leader has almost always exited, and
                // this reaps it without waiting.
                match self.exit_watch.try_reap() {
                    // It runs on without its output (or its exit is a moment
                    // behind the pipes' close): watch for it.
                    Ok(None) => watching = true,
                    reaped => {
                        self.leader_reaped = true;
                        break End::Exited(reaped.ok().flatten());
                    }
                }
            }
            if self.remaining == Some(0) && pending.is_none() && !matches!(sink, Sink::Discard) {
                // Everything the function declared has been sent: the response is whole.
                mark_complete(&sink);
                sink = Sink::Discard;
                let_the_response_end().await;
            }
        };
        self.finish(end, head_tx, sink).await;
    }

    /// Feeds one stdout chunk; returns body bytes to forward to the client.
    fn on_stdout(
        &mut self,
        sink: &mut Sink,
        head_tx: &mut Option<HeadSender>,
        chunk: Bytes,
    ) -> Result<Option<Bytes>, ()> {
        let reader = match sink {
            Sink::Head(reader) => reader,
            Sink::Client { .. } => return Ok(Some(chunk)),
            Sink::Discard => return Ok(None),
            Sink::Raw(buffer) => {
                buffer.extend_from_slice(&chunk);
                return Ok(None);
            }
        };
        let (envelope, rest) = match reader.push(&chunk) {
            Ok(None) => return Ok(None),
            Ok(Some(done)) => done,
            Err(error) => {
                let file = self.file.clone();
                let error = self.unless_saved_meanwhile(InvokeError::BadOutput { file, error });
                send_head(head_tx, Err(error));
                return Err(());
            }
        };
        if let Some(location) = envelope.local_redirect {
            *sink = Sink::Discard;
            // The redirect target runs as a new invocation; this one no longer
            // counts against the concurrency limits while it finishes.
            self.record.slots.clear();
            // The path only: a query may carry a token, and the log is no
            // place for it.
            self.record.redirected_to = location.split('?').next().map(str::to_owned);
            let headers = envelope.headers;
            send_head(head_tx, Ok(Reply::LocalRedirect { location, headers }));
            return Ok(None);
        }
        let mut headers = envelope.headers;
        let mut status = envelope.status;
        self.remaining = envelope.content_length;
        let verdict = (status == StatusCode::OK)
            .then(|| self.conditions.as_ref()?.verdict(&headers))
            .flatten();
        if let Some(verdict) = verdict {
            status = verdict;
            self.remaining = None;
            conditional::fit_headers(verdict, &mut headers);
        }
        self.record.status = Some(status.as_u16());
        let bodiless = self.is_head
            || verdict.is_some()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || self.remaining == Some(0);
        let body = if bodiless {
            *sink = Sink::Discard;
            if self.is_head && self.remaining.is_none() {
                super::empty_of_unknown_length()
            } else {
                Body::empty()
            }
        } else {
            let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
            let complete = Arc::new(AtomicBool::new(false));
            *sink = Sink::Client {
                tx,
                complete: Arc::clone(&complete),
            };
            body_from_channel(rx, complete)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        if let Some(reason) = envelope.reason.filter(|_| verdict.is_none()) {
            response.extensions_mut().insert(reason);
        }
        send_head(head_tx, Ok(Reply::Response(response)));
        Ok((!rest.is_empty() && !bodiless).then_some(rest))
    }

    /// Answers or ends the response, then stops whatever is still running and
    /// reaps it all. The client is answered first (a 504, 408 or 503 without
    /// waiting for a function that ignores SIGTERM to use up its kill grace),
    /// except when the leader is gone but its pipes are held: the body's end
    /// waits for the group.
    async fn finish(mut self, end: End, mut head_tx: Option<HeadSender>, sink: Sink) {
        let exit = match end {
            End::Exited(status) => {
                self.settle(&mut head_tx, &sink, status);
                self.stop_group(status).await
            }
            End::LeaderGone => {
                let status = self.stop_group(None).await;
                self.settle(&mut head_tx, &sink, status);
                status
            }
            End::TimedOut => {
                self.record.timed_out = true;
                // Waiting on the client's upload, not on the function: a 408.
                let late_body = self
                    .record
                    .body
                    .as_ref()
                    .and_then(|watch| watch.cut_off_if_awaited(self.timeout));
                let error = late_body.unwrap_or_else(|| InvokeError::Timeout {
                    file: self.file.clone(),
                    after: self.timeout,
                });
                // At the deadline, as Lambda answers and a warm worker's
                // request is answered: not after a function that ignores
                // SIGTERM has had its kill grace too, which a load balancer
                // sized to the timeout would not wait for. Unless the function
                // had answered: its body is then cut off (`complete` stays
                // false) once the group is gone.
                self.answer_error(&mut head_tx, error);
                self.stop_group(None).await
            }
            End::ClientGone => {
                self.record.client_gone = true;
                self.stop_group(None).await
            }
            End::BodyFault => {
                let fault = self.record.body.as_ref().and_then(BodyWatch::fault);
                let error = fault.map_or_else(
                    || InvokeError::BodyRead("it ended early".into()),
                    InvokeError::from,
                );
                // A client that stalled hears why, unless the function had answered
                // already (its body is then cut off); for one that broke off, the
                // reason is logged.
                self.answer_error(&mut head_tx, error);
                self.stop_group(None).await
            }
            End::Shutdown => {
                self.record.shutdown = true;
                // A 503 the client (or its load balancer) can act on, not the
                // 500 of a driver that went away; a body already begun is cut off.
                let error = InvokeError::shutting_down(self.file.clone());
                self.answer_error(&mut head_tx, error);
                self.stop_group(None).await
            }
            End::BadOutput => self.stop_group(None).await,
        };
        // After the client's answer is settled, so a pipe held open past the
        // group costs the response nothing.
        self.log_rest_of_stderr().await;
        self.stderr.flush();
        if let Some(status) = exit {
            self.record.set_exit(status);
        }
        if let Some(cgroup) = self.cgroup.take() {
            let hits = cgroup.finish().await;
            if hits.memory {
                self.record.limit_hit = Some("memory");
            } else if hits.processes {
                self.record.limit_hit = Some("max_processes");
            }
        }
        if self.record.signal == Some(Signal::SIGXCPU as i32) {
            self.record.limit_hit = Some("cpu_time");
        }
        drop(sink);
    }

    /// Answers the client with `error` if no response head has gone out yet, and
    /// logs its status then.
    fn answer_error(&mut self, head_tx: &mut Option<HeadSender>, error: InvokeError) {
        if head_tx.is_some() {
            send_head(head_tx, Err(self.record.failed(error)));
        }
    }

    /// Says once that the function wrote `past` bytes beyond the
    /// Content-Length it declared, which the client never gets: silent, it
    /// looked like a client that read too little.
    fn past_its_length(&mut self, past: u64) {
        if past == 0 || self.wrote_past_length {
            return;
        }
        self.wrote_past_length = true;
        tracing::warn!(
            request_id = %self.record.request_id,
            file = %self.file,
            "the function wrote more than the Content-Length it declared; what came after it was not sent (a function must write as many bytes as its Content-Length says, or leave the header out)"
        );
    }

    /// `failed`, or, when the function's file was saved in place as it
    /// started or while it ran, [`InvokeError::SavedWhileRunning`] with its
    /// words. In place: the file was there before, and written since. A file
    /// saved by renaming a new one over it (most editors, deploy tools) is a
    /// new file, which the function never saw: it read the old one whole, and
    /// its failure is its own. One `stat`, on this failure path only.
    fn unless_saved_meanwhile(&self, failed: InvokeError) -> InvokeError {
        // A file's times come from the kernel's coarse clock, up to a tick
        // (4-10 ms) behind the clock the start was read from.
        const COARSE_CLOCK: Duration = Duration::from_millis(10);
        let Some(started) = self.spawned_wall.checked_sub(COARSE_CLOCK) else {
            return failed;
        };
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return failed;
        };
        let written_since = meta.modified().is_ok_and(|at| at >= started);
        // No birth time (a file system that keeps none): no claim.
        let there_before = meta.created().is_ok_and(|at| at < started);
        if !(written_since && there_before) {
            return failed;
        }
        let text = failed.to_string();
        let prefix = format!("{}: ", self.file);
        InvokeError::SavedWhileRunning {
            failure: text.strip_prefix(&prefix).unwrap_or(&text).to_owned(),
            file: self.file.clone(),
        }
    }

    /// The PATH the function was given.
    fn function_path(&self) -> Option<&std::ffi::OsStr> {
        (self.function.settings.env.iter().rev())
            .find(|(name, _)| name == "PATH")
            .map(|(_, value)| value.as_os_str())
    }

    /// The function has exited: complete the body, or answer the error if the
    /// header block never finished.
    fn settle(&mut self, head_tx: &mut Option<HeadSender>, sink: &Sink, exit: Option<ExitStatus>) {
        match sink {
            Sink::Head(reader) => {
                let error = match exit {
                    Some(status) if !status.success() => match self.limit_that_stopped(status) {
                        Some(limit) => InvokeError::LimitHit {
                            file: self.file.clone(),
                            limit,
                            exit: describe_exit(status),
                        },
                        // `#!/usr/bin/env python3\r\n`: env runs, finds no
                        // `python3\r` and exits 127.
                        None if status.code() == Some(127)
                            && self.exec_direct
                            && spawn::shebang_ends_in_cr(&self.path) =>
                        {
                            spawn::windows_line_endings(&self.file)
                        }
                        // `#!/usr/bin/env ruby` with no ruby: env exits 127.
                        None if status.code() == Some(127)
                            && self.exec_direct
                            && let Some(error) = spawn::env_line_failure(
                                &self.path,
                                &self.file,
                                self.function_path(),
                            ) =>
                        {
                            error
                        }
                        None => self.unless_saved_meanwhile(InvokeError::ExitedEarly {
                            file: self.file.clone(),
                            exit: describe_exit(status),
                        }),
                    },
                    _ => self.unless_saved_meanwhile(InvokeError::BadOutput {
                        file: self.file.clone(),
                        error: reader.finish(),
                    }),
                };
                send_head(head_tx, Err(self.record.failed(error)));
            }
            Sink::Raw(buffer) => {
                let response = self.raw_response(buffer.clone().freeze(), exit);
                self.record.status = Some(response.status().as_u16());
                self.record.bytes_out = buffer.len() as u64;
                send_head(head_tx, Ok(Reply::Response(response)));
            }
            // stdout still open at the end (a background child holds it): the
            // same judgement as at stdout EOF ([`EXIT_AFTER_EOF`]), for the
            // same functions.
            Sink::Client { .. } if self.killable_by_limit && self.killed_mid_body(exit) => {}
            Sink::Client { .. } => mark_complete(sink),
            Sink::Discard => {}
        }
    }

    /// Whether the function that has exited was killed, which leaves its body
    /// unfinished: the leader by a signal (from `status` once reaped, else
    /// asked of the kernel), or anything in its group by the memory cgroup (a
    /// wrapper script whose child the OOM killer took exits with a code).
    fn killed_mid_body(&self, status: Option<ExitStatus>) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let signal = match status {
            Some(status) => status.signal(),
            None => self.exit_watch.ending_signal(),
        };
        signal.is_some() || (self.cgroup.as_ref()).is_some_and(|cgroup| cgroup.hits().memory)
    }

    /// The resource limit that ended the function, when one did: the client
    /// is told to raise it, not that the function "exited with signal 9".
    fn limit_that_stopped(&self, status: ExitStatus) -> Option<&'static str> {
        use std::os::unix::process::ExitStatusExt;
        let signal = status.signal()?;
        crate::limits::limit_that_killed(signal, self.cgroup.as_ref())
    }

    /// The OpenFaaS classic answer: stdout as the body; exit 0 → 200, a mapped exit
    /// code → its status, anything else → 500.
    fn raw_response(&self, body: Bytes, exit: Option<ExitStatus>) -> Response<Body> {
        let raw = self.raw.as_ref();
        let code = exit.and_then(|e| e.code());
        let status = match code {
            Some(0) => StatusCode::OK,
            Some(code) => raw
                .and_then(|r| r.exit_status.get(&code))
                .and_then(|s| StatusCode::from_u16(*s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            None => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let content_type = raw
            .and_then(|r| r.content_type.as_deref())
            .and_then(|c| axum::http::HeaderValue::from_str(c).ok())
            .unwrap_or(axum::http::HeaderValue::from_static(
                "text/plain; charset=utf-8",
            ));
        let length = body.len();
        let body = if self.is_head {
            Body::empty()
        } else {
            Body::from(body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, content_type);
        // A HEAD answer's length is the GET's (RFC 9110 §9.3.2), not its own 0.
        if self.is_head {
            headers.insert(header::CONTENT_LENGTH, length.into());
        }
        response
    }

    /// Stops the group: SIGTERM, up to `--kill-grace` for everything in it to exit,
    /// SIGKILL to what is left; reaps the leader and every member. Returns the
    /// leader's exit status (`status` when it was reaped already).
    ///
    /// The leader is reaped only after the group has been signalled, while its
    /// zombie still pins the group id. When it was reaped already (a normal exit,
    /// answered before this runs), the id is pinned by any member still there, and
    /// when there is none, `killpg` finds nothing.
    async fn stop_group(&mut self, status: Option<ExitStatus>) -> Option<ExitStatus> {
        let grace_end = Instant::now() + self.grace;
        let mut status = status;
        if !self.leader_reaped {
            self.group.signal(Signal::SIGTERM);
            // What a SIGTERM handler says as it cleans up goes to the log too:
            // stderr is read on while the function exits.
            let mut stderr_open = true;
            let exited = loop {
                tokio::select! {
                    () = self.exit_watch.exited() => break true,
                    () = tokio::time::sleep_until(grace_end) => break false,
                    chunk = self.stderr_pipe.next(), if stderr_open => match chunk {
                        Some(Ok(chunk)) => self.stderr.push(&chunk),
                        Some(Err(_)) | None => stderr_open = false,
                    },
                }
            };
            if !exited {
                self.group.signal(Signal::SIGKILL);
            }
            // Bounded: if the exit watch failed rather than saw an exit, the
            // leader may still be alive; KILL it rather than wait forever.
            let limit = self.grace + Duration::from_secs(1);
            status = match tokio::time::timeout(limit, self.exit_watch.reap()).await {
                Ok(result) => result.ok(),
                Err(_) => {
                    self.exit_watch.kill();
                    tokio::time::timeout(REAP_LIMIT, self.exit_watch.reap())
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
            };
            self.leader_reaped = true;
            self.reap_members(grace_end).await;
        } else if self.group.exists() {
            // Apache lets a script's `nohup job &` run on; here a function's
            // processes end with its request (CONTRACT §3), which a script
            // moved from a cgi-bin would not expect and would not see.
            if reaper::group_running(self.group.pgid()) {
                tracing::warn!(
                    route = %self.function.pattern,
                    file = %self.file,
                    request_id = %self.record.request_id,
                    hint = "a function's processes end with its request; hand long work to a queue or a service (systemd-run, a job runner) instead",
                    "the function exited with processes of its own still running (a background job, `cmd &`, `nohup`); they are being stopped"
                );
            }
            self.group.signal(Signal::SIGTERM);
            self.reap_members(grace_end).await;
        }
        // Otherwise the group is empty, zombies included: nothing to reap (the
        // usual end, one system call instead of two).
        self.group.disarm();
        if let Some(pid) = self.record.pid {
            reaper::group_finished(pid);
        }
        self.group_registered = false;
        status
    }

    /// Logs what is left in the stderr pipe once the group is gone: its last
    /// words before the signal took it. Bounded, as a process that left the
    /// group (`setsid`) may hold the pipe open; at once when the pipe had
    /// ended (the usual end: it is not read again).
    async fn log_rest_of_stderr(&mut self) {
        let rest = async {
            while let Some(Ok(chunk)) = self.stderr_pipe.next().await {
                self.stderr.push(&chunk);
            }
        };
        let _ = tokio::time::timeout(STDERR_AFTER_STOP, rest).await;
    }

    /// Reaps what is left of the group as it exits, up to `grace_end`, then
    /// KILLs and reaps the rest.
    async fn reap_members(&mut self, grace_end: Instant) {
        let pgid = self.group.pgid();
        if !reaper::wait_group_gone(pgid, grace_end).await {
            self.group.signal(Signal::SIGKILL);
            reaper::reap_group(pgid, REAP_LIMIT).await;
        }
    }
}

impl Drop for Driver {
    /// A driver dropped before it finished (a panic, or the runtime shutting
    /// down) must not leave its function running: KILL the group while the
    /// leader still pins its id, then the leader; the orphan sweep reaps what is
    /// left once the group is no longer registered. Once the leader counts as
    /// reaped (or given up on), its pid is never touched again: members are
    /// reaped by group from then on, the leader perhaps with them, and the pid
    /// may be someone else's.
    fn drop(&mut self) {
        if self.group_registered {
            self.group.signal(Signal::SIGKILL);
            // The sweep may reap the group once it is unregistered: from then
            // on nothing pins its id.
            self.group.disarm();
            if !self.leader_reaped {
                self.exit_watch.kill();
                let _ = self.exit_watch.try_reap();
            }
            if let Some(pid) = self.record.pid {
                reaper::group_finished(pid);
            }
        }
    }
}

/// Called once the body channel has closed on a whole response: the connection
/// task has been woken to write the body's end, and yielding lets it run before
/// this task goes on to reap, log and count. Without it, on an idle server the
/// last bytes of every response waited behind that cleanup (seen with strace: the
/// log line was written before the final chunk).
async fn let_the_response_end() {
    tokio::task::yield_now().await;
}

/// RFC 3875: the body ends at stdout EOF, even if the process runs on; it is
/// still bound by its deadline.
async fn end_body_at_eof(sink: &mut Sink) {
    mark_complete(sink);
    *sink = Sink::Discard;
    let_the_response_end().await;
}

fn mark_complete(sink: &Sink) {
    if let Sink::Client { complete, .. } = sink {
        complete.store(true, Ordering::Release);
    }
}

fn send_head(head_tx: &mut Option<HeadSender>, reply: Result<Reply, InvokeError>) {
    if let Some(tx) = head_tx.take() {
        let _ = tx.send(reply);
    }
}

/// Resolves when the request side stopped waiting for the head (client gone).
async fn head_closed(head_tx: &mut Option<HeadSender>) {
    match head_tx {
        Some(tx) => tx.closed().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the request body's pump has ended: `Ok` if the body broke off.
async fn body_broke(
    body_broken: &mut Option<stdin::BodyBroken>,
) -> Result<tokio::net::unix::pipe::Sender, oneshot::error::RecvError> {
    match body_broken {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

/// Resolves when the client stopped reading the body.
async fn body_closed(sink: &Sink) {
    match sink {
        Sink::Client { tx, .. } => tx.closed().await,
        _ => std::future::pending().await,
    }
}

async fn reserve(sink: &Sink) -> Option<mpsc::Permit<'_, io::Result<Bytes>>> {
    match sink {
        Sink::Client { tx, .. } => tx.reserve().await.ok(),
        // Unreachable in practice: body bytes are only pending for a client sink.
        _ => None,
    }
}

/// The response body: the driver's chunks, then an error if the driver stopped
/// without marking the output complete, so a cut-off response is never mistaken for
/// a whole one (hyper then aborts the connection instead of ending the chunked body).
fn body_from_channel(rx: mpsc::Receiver<io::Result<Bytes>>, complete: Arc<AtomicBool>) -> Body {
    let stream = futures_util::stream::unfold(Some(rx), move |rx| {
        let complete = Arc::clone(&complete);
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(item) => Some((item, Some(rx))),
                None if complete.load(Ordering::Acquire) => None,
                None => Some((
                    Err(io::Error::other("the function's output was cut off")),
                    None,
                )),
            }
        }
    });
    Body::from_stream(stream)
}

/// `exit 0`, `exit 3`, `signal 9 (SIGKILL)`.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    crate::observability::record::describe_exit(status.code(), status.signal())
        .unwrap_or_else(|| "unknown exit".into())
}
