//! The pipes of a function's standard streams: made close-on-exec and blocking
//! (the child's ends stay so; programs expect it), watchdog's ends switched to
//! non-blocking for tokio, and grown for invocations that move a lot of data,
//! within a budget.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// At most this many pipes are grown at once (64 x 256 KiB = 16 MiB of pipe
/// buffers on top of the defaults). The kernel counts every pipe's whole
/// capacity against a per-user limit (`/proc/sys/fs/pipe-user-pages-soft`, 64
/// MiB for a user without CAP_SYS_RESOURCE, which containers usually drop), and
/// while a user is over it every *new* pipe of theirs gets two pages: growing
/// without a cap would shrink the pipes of every other function under load.
pub const MAX_GROWN: usize = 64;

/// Places for grown pipes.
#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    /// Room for `max` grown pipes at once.
    const fn new(max: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
        }
    }

    fn take(&'static self) -> Option<Grown> {
        if self.used.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.used.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Grown(self))
    }
}

/// watchdog's budget: [`MAX_GROWN`] pipes across all invocations.
static BUDGET: Budget = Budget::new(MAX_GROWN);

/// A pipe for one standard stream, both ends close-on-exec and blocking.
///
/// # Errors
/// When the process is out of file descriptors.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Sets O_NONBLOCK on watchdog's end of a pipe.
///
/// # Errors
/// When fcntl fails.
pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

/// A pipe's place in the growth budget; given back when dropped, so keep it as
/// long as the pipe is open.
#[derive(Debug)]
pub struct Grown(&'static Budget);

impl Drop for Grown {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Grows a pipe from the kernel's default 64 KiB to `bytes`, if the budget
/// ([`MAX_GROWN`]) and the kernel allow; `None` leaves it as it was, still
/// working.
pub fn grow(fd: BorrowedFd<'_>, bytes: usize) -> Option<Grown> {
    grow_within(&BUDGET, fd, bytes)
}

fn grow_within(budget: &'static Budget, fd: BorrowedFd<'_>, bytes: usize) -> Option<Grown> {
    let place = budget.take()?;
    let size = nix::libc::c_int::try_from(bytes).unwrap_or(nix::libc::c_int::MAX);
    match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size)) {
        Ok(_) => Some(place),
        Err(err) => {
            static REPORTED: AtomicBool = AtomicBool::new(false);
            if !REPORTED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    error = %err,
                    bytes,
                    "cannot grow a function's pipe, so large bodies move in 64 KiB rounds (slower, still correct); the per-user pipe limit is likely reached: raise /proc/sys/fs/pipe-user-pages-soft or give watchdog CAP_SYS_RESOURCE"
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn growth_stays_within_the_budget_and_places_come_back() {
        static SMALL: Budget = Budget::new(2);
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| pipe().unwrap()).collect();
        let first = grow_within(&SMALL, pipes[0].0.as_fd(), 256 * 1024).expect("room");
        let second = grow_within(&SMALL, pipes[1].0.as_fd(), 256 * 1024).expect("room");
        assert!(
            grow_within(&SMALL, pipes[2].0.as_fd(), 256 * 1024).is_none(),
            "budget spent"
        );
        let capacity =
            nix::fcntl::fcntl(pipes[0].0.as_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap();
        assert_eq!(capacity, 256 * 1024);
        drop(first);
        assert!(
            grow_within(&SMALL, pipes[2].0.as_fd(), 256 * 1024).is_some(),
            "a place came back"
        );
        drop(second);
    }
}
