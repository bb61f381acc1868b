//! A function's process group: signalled as a whole, and killed when its owner
//! goes away without finishing (the ladder itself lives in the CGI driver).
//!
//! Every function is spawned as the leader of its own group (`process_group(0)`), so
//! `killpg` reaches the children and grandchildren a shell script starts, which
//! `kill_on_drop` alone would miss (it signals only the leader).

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Owns the right to signal one process group.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Pid,
    /// Cleared once the group has been reaped: after that the id may belong to
    /// someone else and must never be signalled again.
    armed: bool,
}

impl ProcessGroup {
    /// `leader` must have been spawned with `process_group(0)`, so its pid is the
    /// group id.
    pub fn new(leader: u32) -> Self {
        Self {
            pgid: Pid::from_raw(leader as i32),
            armed: true,
        }
    }

    pub fn pgid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// Sends `signal` to every process in the group. A group that is already empty is
    /// not an error.
    pub fn signal(&self, signal: Signal) {
        if self.armed {
            let _ = killpg(self.pgid, signal);
        }
    }

    /// Whether any process of the group is still there (zombies included). Only
    /// ESRCH means none: EPERM is a member that changed its user (a setuid
    /// program), still there.
    pub fn exists(&self) -> bool {
        self.armed && !matches!(killpg(self.pgid, None), Err(nix::errno::Errno::ESRCH))
    }

    /// Whether it may still be signalled: not yet marked reaped.
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Marks the group as reaped: from now on it is never signalled.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    /// The backstop: a group whose owner went away (a panic, a cancelled task) is
    /// killed rather than leaked.
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}
