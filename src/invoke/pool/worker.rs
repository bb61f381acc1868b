//! One warm worker process: started with the function's environment (plus the
//! protocol's variables), its output logged, stopped by process group.
//!
//! A task owns the process's output stream (tokio-process-stream): it logs stdout
//! and stderr lines tagged with the route and the worker's pid, and publishes the
//! exit status when the process ends, which is how the pool learns of a crash.

use std::ffi::OsString;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio_process_stream::{Item, ProcessChunkStream};

use crate::invoke::InvokeError;
use crate::invoke::cgi::spawn;
use crate::invoke::output_log::{OutputLog, Stream};
use crate::limits::{InvocationCgroup, Limiter};
use crate::process::exit_watch::ExitWatch;
use crate::process::{ProcessGroup, reaper};
use crate::routes::Function;

/// The sending half of a kept-alive connection to an HTTP worker.
pub type HttpConnection = hyper::client::conn::http1::SendRequest<axum::body::Body>;

/// How many times [`Worker::limit_that_killed_now`] yields the thread for the
/// status of a worker reaped a moment ago to reach its watch: a few
/// microseconds of another thread's work, bounded in case that thread was
/// preempted.
const REAPED_STATUS_SPINS: usize = 200;

/// Where no pidfd can be opened, how often a worker whose output is still
/// open is asked whether its leader has exited: see [`Worker::spawn`]. Often
/// enough that a wrapper is known as one ([`Worker::is_wrapper`]) soon after it
/// starts its server.
const LEADER_ASKED_EVERY: Duration = Duration::from_millis(100);

/// How long after the leader exited its output may still close for the worker
/// to count as a plain server that exited, not a wrapper whose server ran on
/// ([`Worker::is_wrapper`]). The slack a 100 ms tick used to give on top of
/// its 100 ms (it noticed the exit up to a tick late) is kept.
const WRAPPER_MARGIN: Duration = Duration::from_millis(200);

/// How much longer than the grace a stop waits for the kernel to finish a KILL.
const REAP_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Worker {
    pub pid: u32,
    group: ProcessGroup,
    exit: watch::Receiver<Option<Option<ExitStatus>>>,
    /// Set when the leader was found exited while its output was still open: a
    /// wrapper (`start.sh`: `server & exit 0`) whose server runs on. The exit
    /// watch then gives the wrapper's status, which says nothing of how the
    /// server ended.
    leader_ended_first: Arc<AtomicBool>,
    cgroup: Option<InvocationCgroup>,
    /// The port it serves HTTP on (`protocol = "http"`).
    pub port: u16,
    /// Kept-alive HTTP/1.1 connections to it (`protocol = "http"`), reused by the
    /// next request: a connection per request costs a handshake, and many worker
    /// servers a thread, each time. One per thread that has sent it requests: a
    /// connection is driven by the thread that opened it, and a request from
    /// another thread would cross threads twice (two wakeups) on its way.
    connections: Vec<(ThreadId, HttpConnection)>,
    /// Set once the worker has shown that it serves one connection at a time (a
    /// single-threaded HTTP/1.1 server): from then on it gets one connection,
    /// shared by every thread.
    one_connection_at_a_time: bool,
    /// Its Runtime API endpoint (`protocol = "lambda"`); closed with the worker.
    pub runtime: Option<super::lambda::Runtime>,
    /// Requests served so far.
    pub served: u64,
    /// Connections it closed without answering, in a row, while it kept running
    /// (see [`super::Outcome::BrokeOff`]).
    pub broke_off_in_a_row: u32,
    pub started: Instant,
    pub last_used: Instant,
}

impl Drop for Worker {
    /// A worker dropped without [`Worker::stop`] (a runtime shutting down,
    /// with no task left to stop it in; a cold start whose request was
    /// cancelled) has its group killed here, and leaves the registry of
    /// groups: listed on, its members would stay zombies (the sweep skips
    /// registered groups), and the guardian would stop whatever process had
    /// its id next if watchdog were killed.
    fn drop(&mut self) {
        if self.group.is_armed() {
            // Killed before it leaves the registry: the orphan sweep may then
            // reap what is left of it, and never finds it still running.
            self.group.signal(Signal::SIGKILL);
            self.group.disarm();
            reaper::group_finished(self.pid);
        }
    }
}

impl Worker {
    /// Starts the function as a worker with `extra_env` on top of its own.
    ///
    /// # Errors
    /// The function cannot be started (see [`InvokeError::Spawn`]).
    pub fn spawn(
        function: &Function,
        limiter: &Limiter,
        extra_env: Vec<(OsString, OsString)>,
    ) -> Result<Self, InvokeError> {
        let file = &function.file.relative;
        let path = function.document_root.join(file);
        let mut env = function.settings.env.clone();
        env.extend(extra_env);
        let mut plan =
            limiter
                .plan(&function.settings.limits)
                .map_err(|err| InvokeError::Spawn {
                    file: file.clone(),
                    cause: format!("cannot set up its resource limits: {err}"),
                    hint: "check that watchdog may write its cgroups under /sys/fs/cgroup".into(),
                })?;
        plan.per_request_cpu();
        let run_as = limiter.run_as.as_ref().map(|user| user.name.as_str());
        let (child, pid) = spawn::spawn(
            &path,
            file,
            &function.file.runner,
            &env,
            false,
            |command| limiter.apply(&plan, command),
            run_as,
        )?;
        let (exit_tx, exit_rx) = watch::channel(None);
        let mut output = ProcessChunkStream::from(child);
        let worker = format!("worker-{pid}");
        let tagged = function.file.runner.node_module;
        let log = |stream| OutputLog::of_worker(&function.pattern, &worker, stream, tagged);
        let (mut stdout_log, mut stderr_log) = (log(Stream::Stdout), log(Stream::Stderr));
        let leader_ended_first = Arc::new(AtomicBool::new(false));
        let found_ended = Arc::clone(&leader_ended_first);
        tokio::spawn(async move {
            let mut status = None;
            // When the leader was reaped on its exit. A plain server's output
            // closes as it exits, so this can only beat the stream to that end
            // by a moment; a wrapper's leader is reaped long before.
            let mut reaped_early: Option<Instant> = None;
            // The stream waits for the process only once its output is
            // closed. A wrapper that starts its server in the background and
            // exits (`start.sh`) would stay a zombie for as long as the server
            // runs: it is reaped as soon as it exits instead (its status kept
            // by tokio for the stream's own wait). Told by its pidfd, not by a
            // tick: a tick every 100 ms per worker woke an idle server 40
            // times a second with a pool of four.
            let leader = ExitWatch::new(pid).ok();
            let leader_exited = async {
                match &leader {
                    Some(leader) => leader.exited_asking_every(LEADER_ASKED_EVERY).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(leader_exited);
            let mut leader_seen = false;
            loop {
                let item = tokio::select! {
                    item = output.next() => item,
                    () = &mut leader_exited, if !leader_seen => {
                        // Polled no more: once reaped, the pid may be another's.
                        leader_seen = true;
                        if let Some(child) = output.child_mut()
                            && let Ok(Some(_)) = child.try_wait()
                        {
                            reaped_early.get_or_insert_with(Instant::now);
                        }
                        continue;
                    }
                };
                match item {
                    Some(Item::Stdout(chunk)) => stdout_log.push(&chunk),
                    Some(Item::Stderr(chunk)) => stderr_log.push(&chunk),
                    Some(Item::Done(result)) => {
                        status = result.ok();
                        break;
                    }
                    None => break,
                }
            }
            stdout_log.flush();
            stderr_log.flush();
            if reaped_early.is_some_and(|at| at.elapsed() >= WRAPPER_MARGIN) {
                found_ended.store(true, Ordering::Relaxed);
            }
            let _ = exit_tx.send(Some(status));
        });
        let now = Instant::now();
        Ok(Self {
            pid,
            group: ProcessGroup::new(pid),
            exit: exit_rx,
            leader_ended_first,
            cgroup: plan.cgroup,
            port: 0,
            connections: Vec::new(),
            one_connection_at_a_time: false,
            runtime: None,
            served: 0,
            broke_off_in_a_row: 0,
            started: now,
            last_used: now,
        })
    }

    /// This thread's kept connection to the worker, if it has one; any thread's
    /// if the worker serves one connection at a time.
    pub fn take_connection(&mut self) -> Option<HttpConnection> {
        let here = std::thread::current().id();
        let at = self
            .connections
            .iter()
            .position(|(thread, _)| *thread == here)
            .or_else(|| {
                (self.one_connection_at_a_time && !self.connections.is_empty()).then_some(0)
            })?;
        Some(self.connections.swap_remove(at).1)
    }

    /// Whether other threads hold idle connections to the worker.
    pub fn has_idle_connections(&self) -> bool {
        !self.connections.is_empty()
    }

    /// Closes the other threads' idle connections, for a worker that has not
    /// answered on a new one while they were open, and keeps it to one connection
    /// from now on.
    pub fn serve_one_connection_at_a_time(&mut self) {
        self.connections.clear();
        self.one_connection_at_a_time = true;
    }

    /// Keeps `connection` for this thread's next request to the worker.
    pub fn keep_connection(&mut self, connection: HttpConnection) {
        let here = std::thread::current().id();
        self.connections
            .retain(|(thread, kept)| *thread != here && !kept.is_closed());
        self.connections.push((here, connection));
    }

    /// Its pid as the kernel's type (also its process group's id: it leads one).
    pub fn raw_pid(&self) -> i32 {
        i32::try_from(self.pid).unwrap_or(i32::MAX)
    }

    /// Whether the process has ended (and been reaped).
    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Whether the worker is over with exit status 0, its output closed (no
    /// process it started holds it): a worker that retired itself, as servers
    /// do after a number of requests (`uvicorn --limit-max-requests`, a leak
    /// guard). Judged from the exit watch: a leader that exits 0 while the
    /// server it started runs on (a wrapper script) has not retired, and when
    /// that server ends later, however it ends, the status is still the
    /// wrapper's 0: never a retirement.
    pub fn exited_cleanly(&self) -> bool {
        !self.is_wrapper() && matches!(*self.exit.borrow(), Some(Some(status)) if status.success())
    }

    /// Whether it retired itself: it served, then ended with exit 0
    /// ([`Worker::exited_cleanly`]). One that exits 0 before serving anything
    /// is a crash (else it would be restarted forever, never backing off).
    pub fn retired(&self) -> bool {
        self.served > 0 && self.exited_cleanly()
    }

    /// Whether its leader was found exited while what it started held its
    /// output for longer ([`WRAPPER_MARGIN`]): a wrapper script. Known once
    /// the worker is over.
    pub fn is_wrapper(&self) -> bool {
        self.leader_ended_first.load(Ordering::Relaxed)
    }

    /// Whether the exit watch has seen the process end (its status, or that
    /// it has none).
    pub fn end_known(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// How the process ended, for the log ("exit 3", "signal 9 (SIGKILL)");
    /// "still running" before the exit watch has seen its end.
    pub fn describe_end(&self) -> String {
        match *self.exit.borrow() {
            Some(Some(status)) => crate::invoke::cgi::describe_exit(status),
            Some(None) => "unknown exit".into(),
            None => "still running".into(),
        }
    }

    /// Whether the process has ended, asked of the kernel now. The exit watch
    /// learns of an exit only once the output pipes are closed and the process
    /// reaped, later than a connection the dying process closed: judged by it
    /// alone, a worker that broke off an answer as it died would be kept.
    ///
    /// A leader reaped while the exit watch has no status yet is a
    /// wrapper's (`server & exit 0`: reaped on its exit while its server holds
    /// the output), or, for a moment, a server's the output task has just
    /// reaped: the worker is then its group, and has ended when no process of
    /// it runs. Taken for ended at once, a wrapper's server that cut an
    /// answer short on purpose was stopped as crashed.
    pub fn has_ended_now(&self) -> bool {
        if self.has_exited() {
            return true;
        }
        match self.peek_exit() {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => false,
            // ECHILD: reaped, as above.
            Err(_) => !reaper::group_running(self.raw_pid()),
            // Exited, not reaped yet.
            Ok(_) => true,
        }
    }

    /// How the process stands, asked of the kernel without reaping it
    /// (WNOWAIT: the status is left for the task that reaps the worker).
    fn peek_exit(&self) -> nix::Result<nix::sys::wait::WaitStatus> {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        waitid(Id::Pid(nix::unistd::Pid::from_raw(self.raw_pid())), flags)
    }

    /// The resource limit that killed the worker, and the signal it sent, if
    /// one did ([`crate::limits::limit_that_killed`]), asked of the kernel now.
    pub fn limit_that_killed_now(&self) -> Option<(&'static str, i32)> {
        use nix::sys::wait::WaitStatus;
        use std::os::unix::process::ExitStatusExt;
        let reaped =
            || (*self.exit.borrow()).map(|status| status.and_then(|status| status.signal()));
        let signal = match reaped() {
            Some(signal) => signal,
            None => match self.peek_exit() {
                Ok(WaitStatus::Signaled(_, signal, _)) => Some(signal as i32),
                Ok(_) => None,
                // Reaped: the output task that reaped it publishes the status in
                // the same turn, which may be running on another thread now.
                Err(_) => (0..REAPED_STATUS_SPINS)
                    .find_map(|_| {
                        reaped().or_else(|| {
                            std::thread::yield_now();
                            None
                        })
                    })
                    .flatten(),
            },
        }?;
        crate::limits::limit_that_killed(signal, self.cgroup.as_ref()).map(|limit| (limit, signal))
    }

    /// Resolves with the exit status once the process has ended.
    pub async fn exited(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(status) => status.flatten(),
            Err(_) => None,
        }
    }

    /// Stops the worker: SIGTERM to its group, `grace` to exit, SIGKILL, reap.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        let status = if self.has_exited() {
            self.exited().await
        } else {
            self.group.signal(Signal::SIGTERM);
            match tokio::time::timeout(grace, self.exited()).await {
                Ok(status) => status,
                Err(_) => {
                    self.group.signal(Signal::SIGKILL);
                    tokio::time::timeout(REAP_LIMIT, self.exited())
                        .await
                        .ok()
                        .flatten()
                }
            }
        };
        if self.group.exists() {
            self.group.signal(Signal::SIGKILL);
        }
        reaper::reap_group(self.group.pgid(), REAP_LIMIT).await;
        self.group.disarm();
        reaper::group_finished(self.pid);
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.finish().await;
        }
        status
    }
}
