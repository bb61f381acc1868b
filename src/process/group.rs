//! A function's process group: signalled as a whole, killed on timeout, on client
//! disconnect and when dropped.
//!
//! Every function is spawned as the leader of its own group (`process_group(0)`), so
//! `killpg` reaches the children and grandchildren a shell script starts, which
//! `kill_on_drop` alone would miss (it signals only the leader).

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::ExitWatch;

/// Owns the right to signal one process group.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Pid,
    /// Cleared once the group has been reaped: after that the id may belong to
    /// someone else and must never be signalled again.
    armed: bool,
}

/// How a terminate ladder ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The leader exited within the grace period after SIGTERM.
    Terminated,
    /// SIGKILL was needed.
    Killed,
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

    /// Whether any process of the group is still there (zombies included).
    pub fn exists(&self) -> bool {
        self.armed && killpg(self.pgid, None).is_ok()
    }

    /// TERM to the group, up to `grace` for the leader to exit, then KILL to the group.
    /// The KILL is sent even when the leader exits in time, so children that ignored
    /// TERM do not outlive it. The leader is left unreaped for the caller.
    ///
    /// # Cancel safety
    /// Not cancel safe: cancelling after TERM skips the KILL.
    pub async fn terminate(&self, leader: &ExitWatch, grace: Duration) -> Termination {
        self.signal(Signal::SIGTERM);
        let outcome = tokio::select! {
            () = leader.exited() => Termination::Terminated,
            () = tokio::time::sleep(grace) => Termination::Killed,
        };
        self.signal(Signal::SIGKILL);
        outcome
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
