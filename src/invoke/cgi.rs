//! The CGI invoker: one process per request (CONTRACT §3, RFC 3875).
//!
//! [`run`] spawns the function and hands the process to a driver task, which owns it
//! to the end: it reads stdout and stderr as a stream (tokio-process-stream), parses
//! the header block, streams the body to the client with backpressure, and enforces
//! the deadline and client disconnects with the TERM → grace → KILL ladder. The
//! request future only waits for the response head, so the body streams while the
//! driver keeps going; nothing the client does can leave the process behind.

pub mod environment;
pub mod stdin;

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_process_stream::{Item, ProcessChunkStream};

use super::envelope::EnvelopeReader;
use super::stderr::StderrLog;
use super::{Invocation, InvokeError, InvokeFuture, Invoker, Reply, RequestBody};
use crate::observability::InvocationRecord;
use crate::process::{ExitWatch, ProcessGroup, reaper};

/// After the leader exits, how long stdout may stay silent before the response is
/// ended anyway: a background child that inherited stdout must not hold the request.
const LINGER_AFTER_EXIT: Duration = Duration::from_millis(100);

/// How long to wait for killed group members to die before giving up on reaping.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// Chunks of body buffered between the driver and the client: the backpressure window.
const BODY_CHANNEL_CHUNKS: usize = 4;

/// Runs functions as CGI programs.
#[derive(Debug, Default, Clone, Copy)]
pub struct CgiInvoker;

impl Invoker for CgiInvoker {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        Box::pin(run(invocation))
    }
}

type HeadSender = oneshot::Sender<Result<Reply, InvokeError>>;
type BodySender = mpsc::Sender<io::Result<Bytes>>;

async fn run(mut invocation: Invocation) -> Result<Reply, InvokeError> {
    let env = environment::build(&invocation);
    let body = std::mem::replace(&mut invocation.body, RequestBody::Empty);
    let has_body = !matches!(body, RequestBody::Empty);
    let file = invocation.route.function.file.relative.clone();
    let path = invocation.settings.document_root.join(&file);
    let (mut child, pid) =
        spawn(&path, &invocation, env, has_body).map_err(|(cause, hint)| InvokeError::Spawn {
            file: file.clone(),
            cause,
            hint,
        })?;
    let group = ProcessGroup::new(pid);
    let exit_watch = ExitWatch::new(pid).map_err(|err| InvokeError::Spawn {
        file: file.clone(),
        cause: format!("cannot watch the process (pidfd_open: {err})"),
        hint: "watchdog needs Linux 5.3 or newer".into(),
    })?;
    if let Some(pipe) = child.stdin.take() {
        stdin::spawn(pipe, body);
    }
    invocation.record.pid = Some(pid);
    let (head_tx, head_rx) = oneshot::channel();
    let driver = Driver {
        stderr: StderrLog::new(&invocation.route.function.pattern, &invocation.request_id),
        stream: ProcessChunkStream::from(child),
        group,
        exit_watch,
        deadline: invocation.deadline,
        timeout: invocation.settings.timeout,
        grace: invocation.settings.kill_grace,
        is_head: invocation.method == Method::HEAD,
        file,
        record: invocation.record,
    };
    tokio::spawn(driver.drive(head_tx));
    head_rx.await.unwrap_or(Err(InvokeError::Internal))
}

/// Spawns the function as the leader of a new process group with a clean
/// environment. A file without an execute bit, or whose exec fails with ENOEXEC (a
/// script without `#!`), runs through the interpreter its extension names.
fn spawn(
    path: &Path,
    invocation: &Invocation,
    env: Vec<(OsString, OsString)>,
    has_body: bool,
) -> Result<(tokio::process::Child, u32), (String, String)> {
    let runner = &invocation.route.function.file.runner;
    let attempt = |interpreter: Option<&str>| {
        let mut command = match interpreter {
            Some(program) => {
                let mut command = tokio::process::Command::new(program);
                command.arg(path);
                command
            }
            None => tokio::process::Command::new(path),
        };
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(path.parent().unwrap_or(Path::new("/")))
            .process_group(0)
            .stdin(if has_body {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        reaper::spawn_leader(|| {
            let child = command.spawn()?;
            // A child that was just spawned and not yet waited on always has a pid.
            let pid = child
                .id()
                .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
            Ok((child, pid))
        })
    };
    let direct = if runner.executable {
        attempt(None)
    } else {
        Err(io::Error::from_raw_os_error(ENOEXEC))
    };
    match direct {
        Err(err) if err.raw_os_error() == Some(ENOEXEC) && runner.interpreter.is_some() => {
            attempt(runner.interpreter)
                .map_err(|err| describe_spawn_error(&err, path, runner.interpreter))
        }
        other => other.map_err(|err| describe_spawn_error(&err, path, None)),
    }
}

const ENOEXEC: i32 = nix::errno::Errno::ENOEXEC as i32;

/// Says why a spawn failed and what to do about it.
fn describe_spawn_error(
    err: &io::Error,
    path: &Path,
    interpreter: Option<&str>,
) -> (String, String) {
    if let Some(program) = interpreter
        && err.kind() == io::ErrorKind::NotFound
    {
        return (
            format!("interpreter `{program}` was not found on PATH"),
            format!("install {program}, or make the file executable with a `#!` line"),
        );
    }
    match err.kind() {
        io::ErrorKind::NotFound => (
            "the file or the interpreter named on its `#!` line was not found".into(),
            format!("check the first line of {}", path.display()),
        ),
        io::ErrorKind::PermissionDenied => (
            "permission denied".into(),
            format!("`chmod +x {}`", path.display()),
        ),
        _ if err.raw_os_error() == Some(ENOEXEC) => (
            "not a program the system can run (a script without a `#!` line?)".into(),
            "add a `#!` line such as `#!/bin/sh`, or use a known extension (.sh .py .pl .rb .php)"
                .into(),
        ),
        _ => (err.to_string(), "see watchdog's log".into()),
    }
}

/// Why the driver's main loop ended.
enum End {
    /// stdout and stderr closed and the leader was reaped.
    Exited(io::Result<ExitStatus>),
    /// The leader exited but its pipes stayed open past the linger (a background
    /// child holds them). The leader is not reaped yet.
    LeaderGone,
    TimedOut,
    ClientGone,
    /// The header block was invalid; the error went to the client already.
    BadOutput,
}

/// What one turn of the driver loop saw.
enum Event {
    Continue,
    LeaderExited,
    Stdout(Bytes),
    End(End),
}

/// Owns one running function until it is gone.
struct Driver {
    stream: ProcessChunkStream,
    group: ProcessGroup,
    exit_watch: ExitWatch,
    stderr: StderrLog,
    deadline: Instant,
    timeout: Duration,
    grace: Duration,
    is_head: bool,
    file: String,
    record: InvocationRecord,
}

/// Where stdout goes once the header block is known.
enum Sink {
    /// Still reading the header block.
    Head(EnvelopeReader),
    Client {
        tx: BodySender,
        complete: Arc<AtomicBool>,
    },
    /// HEAD request or local redirect: the function runs on, its body is dropped.
    Discard,
}

impl Driver {
    async fn drive(mut self, head_tx: HeadSender) {
        let mut head_tx = Some(head_tx);
        let mut sink = Sink::Head(EnvelopeReader::new());
        let mut pending: Option<Bytes> = None;
        let mut leader_exited = false;
        let mut linger = Instant::now() + Duration::from_secs(86_400 * 365);
        let end = loop {
            let event = tokio::select! {
                biased;
                () = tokio::time::sleep_until(self.deadline) => Event::End(End::TimedOut),
                () = head_closed(&mut head_tx) => Event::End(End::ClientGone),
                () = body_closed(&sink), if pending.is_none() => Event::End(End::ClientGone),
                permit = reserve(&sink), if pending.is_some() => match permit {
                    Some(permit) => {
                        let chunk = pending.take().unwrap_or_default();
                        self.record.bytes_out += chunk.len() as u64;
                        permit.send(Ok(chunk));
                        Event::Continue
                    }
                    None => Event::End(End::ClientGone),
                },
                () = self.exit_watch.exited(), if !leader_exited => Event::LeaderExited,
                item = self.stream.next(), if pending.is_none() => match item {
                    Some(Item::Stdout(chunk)) => Event::Stdout(chunk),
                    Some(Item::Stderr(chunk)) => {
                        self.stderr.push(&chunk);
                        Event::Continue
                    }
                    Some(Item::Done(status)) => Event::End(End::Exited(status)),
                    None => Event::End(End::LeaderGone),
                },
                () = tokio::time::sleep_until(linger), if leader_exited && pending.is_none() => {
                    Event::End(End::LeaderGone)
                }
            };
            match event {
                Event::Continue => {}
                Event::End(end) => break end,
                Event::LeaderExited => {
                    leader_exited = true;
                    linger = Instant::now() + LINGER_AFTER_EXIT;
                }
                Event::Stdout(chunk) => {
                    if leader_exited {
                        linger = Instant::now() + LINGER_AFTER_EXIT;
                    }
                    match self.on_stdout(&mut sink, &mut head_tx, chunk) {
                        Ok(body) => pending = body,
                        Err(()) => break End::BadOutput,
                    }
                }
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
        };
        let (envelope, rest) = match reader.push(&chunk) {
            Ok(None) => return Ok(None),
            Ok(Some(done)) => done,
            Err(error) => {
                let file = self.file.clone();
                send_head(head_tx, Err(InvokeError::BadOutput { file, error }));
                return Err(());
            }
        };
        if let Some(location) = envelope.local_redirect {
            *sink = Sink::Discard;
            send_head(head_tx, Ok(Reply::LocalRedirect(location)));
            return Ok(None);
        }
        self.record.status = Some(envelope.status.as_u16());
        let body = if self.is_head {
            *sink = Sink::Discard;
            Body::empty()
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
        *response.status_mut() = envelope.status;
        *response.headers_mut() = envelope.headers;
        send_head(head_tx, Ok(Reply::Response(response)));
        Ok((!rest.is_empty() && !self.is_head).then_some(rest))
    }

    /// Stops what is still running, reaps everything, and answers or ends the body.
    async fn finish(mut self, mut end: End, mut head_tx: Option<HeadSender>, sink: Sink) {
        let exit = match &mut end {
            End::Exited(status) => {
                // The leader is reaped; kill what it left in its group (pinned by
                // those members while any exist, so the id is still ours).
                if self.group.exists() {
                    self.group.signal(nix::sys::signal::Signal::SIGKILL);
                }
                status.as_ref().ok().copied()
            }
            End::LeaderGone => {
                self.group.signal(nix::sys::signal::Signal::SIGKILL);
                self.reap_leader().await
            }
            End::TimedOut | End::ClientGone | End::BadOutput => {
                self.record.timed_out = matches!(end, End::TimedOut);
                self.record.client_gone = matches!(end, End::ClientGone);
                self.group.terminate(&self.exit_watch, self.grace).await;
                self.reap_leader().await
            }
        };
        if let Some(pid) = self.record.pid {
            reaper::leader_reaped(pid);
        }
        reaper::reap_group(self.group.pgid(), REAP_LIMIT).await;
        self.group.disarm();
        self.stderr.flush();
        let exit_text = exit.map(describe_exit);
        self.record.exit.clone_from(&exit_text);

        match end {
            End::TimedOut => {
                let error = InvokeError::Timeout {
                    file: self.file.clone(),
                    after: self.timeout,
                };
                if head_tx.is_some() {
                    self.record.status = Some(error.status().as_u16());
                    send_head(&mut head_tx, Err(error));
                }
                // Otherwise the body is cut off: `complete` stays false.
            }
            End::Exited(_) | End::LeaderGone => {
                if let Sink::Head(reader) = &sink {
                    let error = match exit {
                        Some(status) if !status.success() => InvokeError::ExitedEarly {
                            file: self.file.clone(),
                            exit: exit_text.unwrap_or_default(),
                        },
                        _ => InvokeError::BadOutput {
                            file: self.file.clone(),
                            error: reader.finish(),
                        },
                    };
                    self.record.status = Some(error.status().as_u16());
                    send_head(&mut head_tx, Err(error));
                } else if let Sink::Client { complete, .. } = &sink {
                    complete.store(true, Ordering::Release);
                }
            }
            End::BadOutput => self.record.status = Some(502),
            End::ClientGone => {}
        }
        drop(sink);
    }

    /// Waits for the leader (already exited or killed) and reaps it.
    async fn reap_leader(&mut self) -> Option<ExitStatus> {
        let child = self.stream.child_mut()?;
        child.wait().await.ok()
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
        // Nothing to send to: the pending chunk is dropped by the caller's next turn.
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
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!("signal {signal} ({name})"),
            Err(_) => format!("signal {signal}"),
        },
        (None, None) => "unknown exit".into(),
    }
}
