//! Learns that a process has exited without reaping it.
//!
//! tokio's `Child::wait` reaps, after which the pid and the group id may be reused.
//! A pidfd (Linux 5.3+) becomes readable when the process exits and leaves the zombie
//! alone, so the caller can still signal the group safely, then reap.

use std::io;
use std::os::fd::OwnedFd;

use rustix::process::{Pid, PidfdFlags, pidfd_open};
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
        let fd = pidfd_open(pid, PidfdFlags::NONBLOCK)?;
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
}
