//! Reaping the processes a function leaves behind.
//!
//! watchdog makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): when a
//! function's leader exits, its orphaned children become watchdog's children instead
//! of init's. That makes them visible (and reapable) per group with
//! `waitpid(-pgid)`, which never touches tokio's own children: a blanket
//! `waitpid(-1)` would steal the exit statuses tokio is waiting for.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Becomes a subreaper for the processes this server spawns.
///
/// # Errors
/// When the kernel refuses (not Linux, or a sandbox that forbids prctl).
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Reaps every process of group `pgid` that has become our child, waiting for the
/// ones still dying, for up to `limit`. Call only after the leader has been reaped
/// (the leader is tokio's to reap) and after the group was sent SIGKILL.
///
/// Returns how many processes were reaped.
pub async fn reap_group(pgid: i32, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    let mut reaped = 0;
    let mut pause = Duration::from_millis(1);
    loop {
        match waitpid(Pid::from_raw(-pgid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(pgid, "processes of a finished function are still alive after SIGKILL");
                    return reaped;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Ok(_) => reaped += 1,
            Err(Errno::EINTR) => {}
            // ECHILD: no child of ours is left in that group.
            Err(_) => return reaped,
        }
    }
}
