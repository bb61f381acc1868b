//! Stopping warm workers when watchdog itself is killed.
//!
//! watchdog stops every worker as it shuts down, but it cannot when it is
//! killed outright (`kill -9`, the OOM killer, a supervisor that gave up
//! waiting) or aborts: each warm worker leads its own process group, so its
//! server and that server's children ran on, reparented to init, holding
//! their memory and ports until someone found them by hand.
//!
//! So `serve` starts a guardian first, while it has only one thread: a
//! forked copy of watchdog in a session of its own (a signal to watchdog's
//! group or terminal does not reach it) that reads the warm workers' group
//! ids from a pipe, `+PGID` when one starts and `-PGID` once it has been
//! stopped and reaped. When watchdog is gone, however it went, the kernel
//! closes the pipe's write end, and the guardian stops the groups still
//! listed as CONTRACT §3 stops a function (SIGTERM, SIGKILL after
//! `--kill-grace`) and exits. After a clean shutdown the list is empty and it
//! exits at once.
//!
//! Why not `PR_SET_PDEATHSIG` on each worker: it reaches the leader alone,
//! not the server a wrapper script started, and it fires when the *thread*
//! that spawned the worker ends, which for a runtime's worker thread is not
//! watchdog ending. CGI invocations are not listed: a write per request on
//! the hot path, for processes that end with their request's timeout anyway.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{ForkResult, Pid, fork};

/// The write end of the pipe to the guardian, once it runs.
static PIPE: OnceLock<std::fs::File> = OnceLock::new();

/// Set once a record could not be written (the guardian gone, or the pipe
/// full), so that is said once, not per worker.
static WRITE_FAILED: AtomicBool = AtomicBool::new(false);

/// How often the guardian looks whether the groups it stopped are gone.
const GONE_POLL: Duration = Duration::from_millis(20);

/// Starts the guardian. Call from `main` before any thread is started: the
/// guardian is forked, and a fork of a process with other threads may copy a
/// lock one of them held.
///
/// Skipped as PID 1 (a container's init): when it dies, the kernel kills
/// every process in its namespace.
///
/// # Errors
/// The pipe or a fork failed; watchdog serves on without a guardian.
#[allow(unsafe_code)]
pub fn start(kill_grace: Duration) -> nix::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: the caller guarantees one thread; both children run only plain
    // code before they exit or become the guardian.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(write);
            // Forked again so that the guardian is not watchdog's child: its
            // exit leaves no zombie in watchdog, and watchdog's sweep of
            // unknown children (it is a subreaper) never finds it.
            // SAFETY: as above; this process has one thread.
            let forked = unsafe { fork() };
            if let Ok(ForkResult::Child) = forked {
                guard(read, kill_grace);
            }
            // SAFETY: ends the intermediate child without running watchdog's
            // exit handlers or flushing its buffers twice. Its status is the
            // second fork's errno, or 0.
            unsafe { nix::libc::_exit(forked.err().map_or(0, |errno| errno as i32)) }
        }
        ForkResult::Parent { child } => {
            drop(read);
            // Only a status that says the second fork failed is a failure:
            // with SIGCHLD ignored (inherited), there is no status to wait
            // for, and the guardian runs all the same.
            if let Ok(nix::sys::wait::WaitStatus::Exited(_, errno)) =
                nix::sys::wait::waitpid(child, None)
                && errno != 0
            {
                return Err(nix::errno::Errno::from_raw(errno));
            }
            // A guardian that stopped reading must never hold up a request.
            fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            let _ = PIPE.set(std::fs::File::from(write));
            Ok(())
        }
    }
}

/// A warm worker's process group, listed with the guardian while this lives.
/// Drop it only once the group has been stopped and its leader reaped (after
/// that its id may be another process's).
#[derive(Debug)]
pub struct Guarded(i32);

impl Guarded {
    pub fn new(pgid: i32) -> Self {
        send(b'+', pgid);
        Self(pgid)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        send(b'-', self.0);
    }
}

fn send(op: u8, pgid: i32) {
    let Some(mut pipe) = PIPE.get() else {
        return;
    };
    let record = format!("{}{pgid}\n", op as char);
    // One write of a few bytes: atomic on a pipe, whole or not at all.
    if let Err(err) = pipe.write_all(record.as_bytes())
        && !WRITE_FAILED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(error = %err, "cannot tell the guardian about a warm worker: if watchdog is killed, some warm workers may outlive it; stop watchdog with SIGTERM rather than SIGKILL (its own shutdown stops them all)");
    }
}

/// The guardian's life: list groups until the pipe closes, then stop them.
#[allow(unsafe_code)]
fn guard(pipe: OwnedFd, kill_grace: Duration) -> ! {
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"watchdog-guard");
    // Nothing to read or print; stderr stays, for the one line it may log.
    if let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
    close_inherited(pipe.as_raw_fd());
    let mut groups = HashSet::new();
    for line in BufReader::new(std::fs::File::from(pipe)).lines() {
        let Ok(line) = line else { break };
        let (op, pgid) = line.split_at(1.min(line.len()));
        match (op, pgid.parse::<i32>()) {
            ("+", Ok(pgid)) if pgid > 1 => {
                groups.insert(pgid);
            }
            ("-", Ok(pgid)) => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    stop_groups(&groups, kill_grace);
    // SAFETY: nothing of watchdog's to flush or run in this copy.
    unsafe { nix::libc::_exit(0) }
}

/// Closes every descriptor above stderr but `keep`: what watchdog inherited
/// (a supervisor's pipe, say) must not stay open for as long as the guardian
/// lives.
#[allow(unsafe_code)]
fn close_inherited(keep: RawFd) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<RawFd> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && fd != keep)
        .collect();
    for fd in open {
        // SAFETY: the guardian is single-threaded and holds nothing by these
        // numbers (its pipe and the standard streams are skipped); the one
        // that was the listing's own directory is closed already: EBADF,
        // ignored.
        unsafe { nix::libc::close(fd) };
    }
}

/// SIGTERM to every group, SIGKILL to those still there after `grace`; then
/// says so. The line comes last, and within [`LOG_LIMIT`]: a log reader that
/// stalled (perhaps why watchdog was killed) must not keep a worker alive.
fn stop_groups(groups: &HashSet<i32>, grace: Duration) {
    let alive = |pgid: &&i32| killpg(Pid::from_raw(**pgid), None).is_ok();
    let left: Vec<i32> = groups.iter().filter(alive).copied().collect();
    if left.is_empty() {
        return;
    }
    for pgid in &left {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && left.iter().any(|pgid| alive(&pgid)) {
        std::thread::sleep(GONE_POLL);
    }
    let mut killed = 0;
    for pgid in left.iter().filter(alive) {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
        killed += 1;
    }
    // SIGALRM's default action ends the guardian if the write blocks.
    nix::unistd::alarm::set(LOG_LIMIT);
    tracing::warn!(
        workers = left.len(),
        killed,
        "watchdog ended without stopping its warm workers (killed, or it crashed); the guardian stopped them"
    );
}

/// Seconds the guardian's one log line may take to write.
const LOG_LIMIT: u32 = 5;
