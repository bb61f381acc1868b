//! Learns that a function's leader has exited, and reaps it.
//!
//! Most functions have exited by the time watchdog sees their stdout and stderr
//! close: one `waitid(P_PID, WNOHANG)` then reaps the leader, and nothing else
//! is needed. A pidfd, which becomes readable when the process exits, is opened
//! only for a leader that has to be waited for: one still running when its
//! output closed, one that outlives [`crate::invoke::cgi`]'s watch delay (a
//! long function, or a background child holding the pipes), one being stopped.
//! Why lazily: a pidfd from every `clone` (CLONE_PIDFD), its epoll registration
//! and its close (which frees a pidfs dentry) cost about 15 µs per request at
//! 16 connections on the static C function (perf), for an exit that the pipes
//! report anyway.
//!
//! A plain pid is safe here: the leader is watchdog's own child, and only this
//! watch reaps it while its invoker runs (the orphan sweep skips registered
//! groups, and group members are reaped by group only once the invoker has
//! reaped the leader or given up on it). Until it is reaped, its zombie keeps
//! the pid from being reused, so `kill`, `pidfd_open` and `waitid` by pid reach
//! it and nothing else; once it is reaped, [`ExitWatch::kill`] does nothing.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, pidfd_open, waitid};
use tokio::io::unix::AsyncFd;

/// Where no pidfd can be opened (a kernel before 5.3, or a seccomp profile that
/// refuses `pidfd_open`), how often a waiting caller asks whether the leader
/// has exited.
const POLL_WITHOUT_PIDFD: Duration = Duration::from_millis(10);

/// A handle that resolves when one process exits, and reaps it.
#[derive(Debug)]
pub struct ExitWatch {
    pid: Pid,
    /// Opened on first need; `None` inside when it could not be.
    pidfd: OnceLock<Option<AsyncFd<OwnedFd>>>,
    /// Set once the leader has been reaped: from then on its pid may be
    /// someone else's.
    reaped: AtomicBool,
}

impl ExitWatch {
    /// Watches `pid`, which must be a child of watchdog that nothing else reaps.
    /// Opens nothing yet.
    ///
    /// # Errors
    /// `InvalidInput` for pid 0 or one out of range.
    pub fn new(pid: u32) -> io::Result<Self> {
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))?;
        Ok(Self {
            pid,
            pidfd: OnceLock::new(),
            reaped: AtomicBool::new(false),
        })
    }

    /// The pidfd, opened now if it was not yet.
    fn pidfd(&self) -> Option<&AsyncFd<OwnedFd>> {
        self.pidfd
            .get_or_init(|| {
                if self.reaped.load(Ordering::Relaxed) {
                    return None;
                }
                match pidfd_open(self.pid, PidfdFlags::NONBLOCK)
                    .map_err(io::Error::from)
                    .and_then(|fd| {
                        #[allow(unsafe_code)]
                        // SAFETY: `register` needs the fd to stay open and unreplaced while
                        // the AsyncFd owns it; an `OwnedFd` moved in guarantees exactly that.
                        unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
                    }) {
                    Ok(fd) => Some(fd),
                    Err(err) => {
                        warn_once_without_pidfd(&err);
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Resolves once the process has exited (it may still be an unreaped zombie).
    /// Opens the pidfd on first use.
    ///
    /// # Cancel safety
    /// Cancel safe: readiness is level-triggered for a pidfd, nothing is consumed.
    pub async fn exited(&self) {
        self.exited_asking_every(POLL_WITHOUT_PIDFD).await;
    }

    /// As [`Self::exited`], for a process that may run for hours (a warm
    /// worker): where no pidfd can be opened, it is asked every `poll` rather
    /// than every 10 ms.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Self::exited`].
    pub async fn exited_asking_every(&self, poll: Duration) {
        if self.reaped.load(Ordering::Relaxed) {
            return;
        }
        if let Some(fd) = self.pidfd() {
            // An error here means the fd cannot be polled at all; treat it as
            // exited so the caller's reap path runs rather than waiting forever.
            let _ = fd.readable().await;
            return;
        }
        while !self.has_exited() {
            tokio::time::sleep(poll).await;
        }
    }

    /// Whether the process has exited, leaving its zombie in place. An error
    /// (it was reaped already) counts as exited, so the caller's reap path runs.
    fn has_exited(&self) -> bool {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        !matches!(waitid(WaitId::Pid(self.pid), options), Ok(None))
    }

    /// The signal that ended the process, if it has exited by one, asked of
    /// the kernel without reaping it (the reap path does that).
    pub fn ending_signal(&self) -> Option<i32> {
        if self.reaped.load(Ordering::Relaxed) {
            return None;
        }
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        match waitid(WaitId::Pid(self.pid), options) {
            Ok(Some(status)) => status.terminating_signal(),
            _ => None,
        }
    }

    /// Reaps the process if it has exited: one system call, and no pidfd
    /// needed. Only for a process watchdog spawned itself (never one tokio will
    /// wait for).
    ///
    /// # Errors
    /// ECHILD when it was reaped already.
    pub fn try_reap(&self) -> io::Result<Option<ExitStatus>> {
        if self.reaped.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(nix::libc::ECHILD));
        }
        // rustix rather than nix here: nix turns the status into its `Signal`
        // enum, which has no real-time signals, and would fail after the kernel
        // has already reaped the process, losing the status. By pid even when
        // a pidfd is open: `waitid(P_PIDFD)` needs Linux 5.4, one more than
        // `pidfd_open`, and the pid is as safe (see the module docs).
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        let status = match waitid(WaitId::Pid(self.pid), options) {
            Ok(Some(status)) => status,
            Ok(None) => return Ok(None),
            Err(err) => {
                if err == rustix::io::Errno::CHILD {
                    // No longer our child to wait for: never signal it again.
                    self.reaped.store(true, Ordering::Relaxed);
                }
                return Err(err.into());
            }
        };
        self.reaped.store(true, Ordering::Relaxed);
        if let Some(code) = status.exit_status() {
            return Ok(Some(ExitStatus::from_raw((code & 0xff) << 8)));
        }
        Ok(status
            .terminating_signal()
            .map(|signal| ExitStatus::from_raw(signal | if status.dumped() { 0x80 } else { 0 })))
    }

    /// Waits for the process to exit and reaps it.
    ///
    /// # Errors
    /// As [`ExitWatch::try_reap`].
    pub async fn reap(&self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            match self.pidfd() {
                Some(fd) => {
                    let mut ready = fd.readable().await?;
                    if let Some(status) = self.try_reap()? {
                        return Ok(status);
                    }
                    ready.clear_ready();
                }
                None => tokio::time::sleep(POLL_WITHOUT_PIDFD).await,
            }
        }
    }

    /// SIGKILL to the process, unless it has been reaped (its pid may be
    /// someone else's by then).
    pub fn kill(&self) {
        if self.reaped.load(Ordering::Relaxed) {
            return;
        }
        match self.pidfd.get() {
            Some(Some(fd)) => {
                let _ =
                    rustix::process::pidfd_send_signal(fd.get_ref(), rustix::process::Signal::KILL);
            }
            _ => {
                let _ = rustix::process::kill_process(self.pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Says, once per run, that exits are polled for: a function waited for that way
/// costs a wakeup every [`POLL_WITHOUT_PIDFD`].
fn warn_once_without_pidfd(err: &io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %err,
            poll_ms = POLL_WITHOUT_PIDFD.as_millis(),
            "cannot open a pidfd, so a function that has to be waited for is polled for its \
             exit instead (now and whenever this fails again); pidfds need Linux 5.3+ and a \
             seccomp profile that allows pidfd_open: if descriptors ran out, raise the \
             open-file limit (ulimit -n)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(script: &str) -> (std::process::Child, ExitWatch) {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .spawn()
            .unwrap();
        let watch = ExitWatch::new(child.id()).unwrap();
        (child, watch)
    }

    #[tokio::test]
    async fn reaps_a_finished_process_without_a_pidfd() {
        let (_child, watch) = spawn("exit 3");
        let status = loop {
            if let Some(status) = watch.try_reap().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(status.code(), Some(3));
        assert!(watch.pidfd.get().is_none(), "no pidfd was opened");
        assert!(watch.try_reap().is_err(), "a second reap finds nothing");
        // A no-op now: the pid may belong to another process.
        watch.kill();
    }

    #[tokio::test]
    async fn waits_through_a_pidfd_for_a_running_process_and_kills_it() {
        let (_child, watch) = spawn("sleep 30");
        assert!(watch.try_reap().unwrap().is_none(), "still running");
        let waiting = tokio::time::timeout(Duration::from_millis(100), watch.exited()).await;
        assert!(waiting.is_err(), "a sleeping process has not exited");
        assert!(matches!(watch.pidfd.get(), Some(Some(_))), "pidfd opened");
        watch.kill();
        let status = tokio::time::timeout(Duration::from_secs(5), watch.reap())
            .await
            .expect("reaped after SIGKILL")
            .unwrap();
        assert_eq!(status.signal(), Some(9));
    }

    #[tokio::test]
    async fn without_a_pidfd_it_polls_for_the_exit_and_kills_by_pid() {
        let (_child, watch) = spawn("sleep 30");
        // As when pidfd_open is refused.
        watch.pidfd.set(None).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), watch.exited()).await;
        assert!(waiting.is_err(), "a sleeping process has not exited");
        watch.kill();
        tokio::time::timeout(Duration::from_secs(5), watch.exited())
            .await
            .expect("the exit is seen by polling");
        let status = tokio::time::timeout(Duration::from_secs(5), watch.reap())
            .await
            .expect("reaped after SIGKILL")
            .unwrap();
        assert_eq!(status.signal(), Some(9));
        assert!(watch.try_reap().is_err(), "a second reap finds nothing");
    }
}
