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

use super::guardian;

/// Becomes a subreaper for the processes this server spawns.
///
/// # Errors
/// When the kernel refuses (not Linux, or a sandbox that forbids prctl).
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)?;
    SUBREAPER.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Set once watchdog is a subreaper: every process a function leaves without
/// a parent is then its child, which [`group_running`] relies on.
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reaps every process of group `pgid` that has become our child, waiting for the
/// ones still dying, for up to `limit`. Call only after the leader has been reaped
/// (the leader is its invoker's to reap) and after the group was sent SIGKILL.
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
                    tracing::warn!(
                        pgid,
                        "processes of a finished function are still alive after SIGKILL"
                    );
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

/// Reaps members of group `pgid` as they exit, until none is left (true) or
/// `until` passes with some still running (false). Call only after the leader has
/// been reaped.
pub async fn wait_group_gone(pgid: i32, until: tokio::time::Instant) -> bool {
    let mut pause = Duration::from_millis(1);
    loop {
        match waitpid(Pid::from_raw(-pgid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if tokio::time::Instant::now() >= until {
                    return false;
                }
                tokio::time::sleep(
                    pause.min(until.saturating_duration_since(tokio::time::Instant::now())),
                )
                .await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(_) | Err(Errno::EINTR) => {}
            // ECHILD: no process of ours is left in that group.
            Err(_) => return true,
        }
    }
}

/// Process groups of invocations still being run or cleaned up, by leader pid
/// (which is also the group id). The orphan sweep never touches these: the leader's
/// exit status belongs to the invoker, and members left behind are
/// the invoker's to stop, with their kill grace. Each is also listed with the
/// guardian, which stops them if watchdog is killed.
struct Groups {
    /// Spawners hold it shared across spawn + register; the sweep holds it
    /// exclusively, so it never sees a leader that exists but is not registered yet.
    spawning: std::sync::RwLock<()>,
    /// Counted, because a pid can be reused by a new leader before the invocation
    /// that had it first has finished its cleanup.
    pids: std::sync::Mutex<std::collections::HashMap<i32, Registered>>,
}

/// One group id's entry in [`Groups::pids`].
struct Registered {
    invocations: usize,
    /// Unlisted when the last invocation with this id is finished.
    _listed: Option<guardian::Listed>,
}

static GROUPS: std::sync::LazyLock<Groups> = std::sync::LazyLock::new(|| Groups {
    spawning: std::sync::RwLock::new(()),
    pids: std::sync::Mutex::new(std::collections::HashMap::new()),
});

/// Spawns with `spawn` and registers the new group before the orphan sweep can look
/// at our children again.
///
/// # Errors
/// Whatever `spawn` returns.
pub fn spawn_leader<T>(
    spawn: impl FnOnce() -> std::io::Result<(T, u32)>,
) -> std::io::Result<(T, u32)> {
    let _guard = GROUPS
        .spawning
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (child, pid) = spawn()?;
    lock_groups()
        .entry(pid as i32)
        .or_insert_with(|| Registered {
            invocations: 0,
            _listed: guardian::list(pid as i32),
        })
        .invocations += 1;
    Ok((child, pid))
}

/// [`spawn_leader`] for a spawner that returns only the leader's pid.
///
/// # Errors
/// Whatever `spawn` returns.
pub fn spawn_leader_pid(spawn: impl FnOnce() -> std::io::Result<u32>) -> std::io::Result<u32> {
    spawn_leader(|| spawn().map(|pid| ((), pid))).map(|((), pid)| pid)
}

/// Called once the invoker has reaped its leader and stopped its group.
pub fn group_finished(leader: u32) {
    let mut groups = lock_groups();
    if let Some(registered) = groups.get_mut(&(leader as i32)) {
        registered.invocations -= 1;
        if registered.invocations == 0 {
            groups.remove(&(leader as i32));
        }
    }
}

fn lock_groups() -> std::sync::MutexGuard<'static, std::collections::HashMap<i32, Registered>> {
    GROUPS
        .pids
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub reaped: usize,
    pub killed: usize,
}

/// Deals with our children that no invocation owns: processes that left their
/// function's group (a daemon that double-forks and calls `setsid`, or `git gc
/// --auto`) and were handed to us, as subreaper, when their parent died. A function
/// may not leave processes behind, so a live one is killed (and logged), and a
/// zombie is reaped.
pub fn sweep_orphans() -> Sweep {
    let _guard = GROUPS
        .spawning
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let groups: std::collections::HashSet<i32> = lock_groups().keys().copied().collect();
    let mut sweep = Sweep::default();
    for pid in own_children() {
        // A registered leader is its invocation's: skipped before its /proc file
        // is read, so a sweep under load (hundreds of leaders, spawning held off
        // meanwhile) reads nothing for them.
        if groups.contains(&pid) {
            continue;
        }
        let Some(stat) = ProcStat::read(pid) else {
            continue;
        };
        if groups.contains(&stat.pgid) {
            continue;
        }
        if stat.zombie {
            if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
                && status != WaitStatus::StillAlive
            {
                tracing::debug!(pid, ?status, "reaped an orphaned process");
                sweep.reaped += 1;
            }
        } else {
            tracing::warn!(
                pid,
                command = %stat.command,
                "killing a process a function left behind outside its process group (setsid daemon)"
            );
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            // Its own group's members too (the daemon's children): killed only
            // one by one, as each came to us, they could outlive a shutdown.
            if stat.pgid == pid && stat.pgid != own_pgid() {
                let _ = nix::sys::signal::killpg(
                    Pid::from_raw(stat.pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            sweep.killed += 1;
        }
    }
    sweep
}

fn own_pgid() -> i32 {
    nix::unistd::getpgrp().as_raw()
}

/// The fields of `/proc/PID/stat` the sweep needs.
struct ProcStat {
    command: String,
    zombie: bool,
    pgid: i32,
    session: i32,
}

impl ProcStat {
    fn read(pid: i32) -> Option<Self> {
        // Bytes: a process may name itself anything (`prctl(PR_SET_NAME)`),
        // and one whose name is not UTF-8 must still be found.
        let stat = read_proc_file(format!("/proc/{pid}/stat"))?;
        let stat = String::from_utf8_lossy(&stat);
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let command = stat.get(open + 1..close)?.to_owned();
        let mut rest = stat.get(close + 1..)?.split_whitespace();
        let state = rest.next()?;
        let _ppid = rest.next()?;
        let pgid = rest.next()?.parse().ok()?;
        let session = rest.next()?.parse().ok()?;
        Some(Self {
            command,
            zombie: state == "Z",
            pgid,
            session,
        })
    }

    /// Whether it is a running (not zombie) member of one of `groups`.
    fn runs_in(&self, groups: &std::collections::HashSet<i32>) -> bool {
        !self.zombie && groups.contains(&self.pgid)
    }
}

/// The groups of `groups` that still have a running member in `session`
/// (watchdog's: a function's groups are in it, and a pid that was reused
/// since by a process elsewhere is not taken for one of them). A zombie is
/// not a running member: members that exited after their parent (a wrapper,
/// or watchdog itself) wait to be reaped by whoever inherited them, which can
/// take seconds, and `killpg(pgid, 0)` finds them all the same. Without
/// `/proc`, that probe is all there is.
///
/// Reads every process's `stat`: for the guardian, once watchdog is gone.
pub fn groups_running(
    groups: &std::collections::HashSet<i32>,
    session: i32,
) -> std::collections::HashSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups
            .iter()
            .filter(|&&pgid| nix::sys::signal::killpg(Pid::from_raw(pgid), None).is_ok())
            .copied()
            .collect();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(ProcStat::read)
        .filter(|stat| stat.session == session && stat.runs_in(groups))
        .map(|stat| stat.pgid)
        .collect()
}

/// Whether group `pgid`, one of watchdog's functions, still has a running
/// member (a zombie is not one). Cheap enough for a worker's failure paths,
/// called a few times a request there: one `killpg` probe when the group is
/// gone, else watchdog's own children. As a subreaper, watchdog inherits
/// every member whose parent died, so a running member descends from one of
/// its children that runs in the group.
pub fn group_running(pgid: i32) -> bool {
    if matches!(
        nix::sys::signal::killpg(Pid::from_raw(pgid), None),
        Err(Errno::ESRCH)
    ) {
        return false;
    }
    let group = std::iter::once(pgid).collect();
    if SUBREAPER.load(std::sync::atomic::Ordering::Relaxed) {
        return own_children()
            .into_iter()
            .filter_map(ProcStat::read)
            .any(|stat| stat.runs_in(&group));
    }
    let session = nix::unistd::getsid(None).map_or(0, Pid::as_raw);
    !groups_running(&group, session).is_empty()
}

/// Runs [`sweep_orphans`] every `interval` for the life of the runtime.
pub fn start_orphan_sweeper(interval: Duration) {
    if !std::path::Path::new("/proc/self/task")
        .join(std::process::id().to_string())
        .join("children")
        .exists()
    {
        tracing::warn!(
            "/proc/self/task/*/children is missing (kernel without CONFIG_PROC_CHILDREN): \
             processes that leave their function's group will stay zombies until watchdog exits"
        );
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let _ = tokio::task::spawn_blocking(sweep_orphans).await;
        }
    });
}

/// Reads a small /proc file. `fs::read_to_string` sizes its buffer from the
/// file's length, which /proc reports as 0, and then grows it from 32 bytes: six
/// reads for one `stat` line, for every child, on every sweep.
fn read_proc_file(path: impl AsRef<std::path::Path>) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut text = Vec::with_capacity(1024);
    std::fs::File::open(path)
        .ok()?
        .read_to_end(&mut text)
        .ok()?;
    Some(text)
}

/// Our direct children, from `/proc/self/task/*/children`.
fn own_children() -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Some(text) = read_proc_file(task.path().join("children")) {
            pids.extend(
                String::from_utf8_lossy(&text)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}
