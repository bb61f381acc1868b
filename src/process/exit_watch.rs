//! Learns that a process has exited without reaping it, and reaps it when asked.
//!
//! A pidfd (Linux 5.3+) becomes readable when the process exits and leaves the
//! zombie alone, so the caller can still signal the group safely, then reap it
//! with `waitid(P_PIDFD)`, which can never take another process's status.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, pidfd_open, waitid};
use tokio::io::unix::AsyncFd;

/// A handle that resolves when one process exits.
#[derive(Debug)]
pub struct ExitWatch {
    fd: AsyncFd<OwnedFd>,
}

impl ExitWatch {
    /// Opens a pidfd for `pid`. Must be called before anything can reap `pid`.
    ///
    /// # Errors
    /// When the kernel has no pidfd support or `pid` is gone.
    pub fn new(pid: u32) -> io::Result<Self> {
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))?;
        Self::from_pidfd(pidfd_open(pid, PidfdFlags::NONBLOCK)?)
    }

    /// Watches through a pidfd the caller already has (from `clone`'s
    /// CLONE_PIDFD). `waitid` is only ever asked with WNOHANG, so the fd need not
    /// be non-blocking.
    ///
    /// # Errors
    /// When the fd cannot be registered with the runtime.
    pub fn from_pidfd(fd: OwnedFd) -> io::Result<Self> {
        #[allow(unsafe_code)]
        // SAFETY: `register` needs the fd to stay open and unreplaced while the AsyncFd
        // owns it; an `OwnedFd` moved in guarantees exactly that.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Resolves once the process has exited (it may still be an unreaped zombie).
    ///
    /// # Cancel safety
    /// Cancel safe: readiness is level-triggered for a pidfd, nothing is consumed.
    pub async fn exited(&self) {
        // An error here means the fd cannot be polled at all; treat it as exited so
        // the caller's reap path runs rather than waiting forever.
        let _ = self.fd.readable().await;
    }

    /// Reaps the process if it has exited. Only for a process watchdog spawned
    /// itself (never one tokio will wait for).
    ///
    /// # Errors
    /// ECHILD when it was reaped already.
    pub fn try_reap(&self) -> io::Result<Option<ExitStatus>> {
        // rustix rather than nix here: nix turns the status into its `Signal`
        // enum, which has no real-time signals, and would fail after the kernel
        // has already reaped the process, losing the status.
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        let Some(status) = waitid(WaitId::PidFd(self.fd.get_ref().as_fd()), options)? else {
            return Ok(None);
        };
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
            let mut ready = self.fd.readable().await?;
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            ready.clear_ready();
        }
    }

    /// SIGKILL through the pidfd: safe even if the pid has been reused.
    pub fn kill(&self) {
        let _ =
            rustix::process::pidfd_send_signal(self.fd.get_ref(), rustix::process::Signal::KILL);
    }
}
