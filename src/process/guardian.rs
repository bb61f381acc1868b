//! Stopping a killed watchdog's functions.
//!
//! watchdog stops every function as it shuts down, but it cannot when it is
//! killed outright (`kill -9`, the OOM killer, a supervisor that gave up
//! waiting) or aborts: each function leads its own process group, so a warm
//! worker's server and its children, or a CGI invocation that hung, ran on,
//! reparented to init, holding their memory and ports until someone found
//! them by hand (a CGI program that writes dies of SIGPIPE; one that waits
//! does not).
//!
//! So `serve` starts a guardian first, while it has only one thread: a
//! forked copy of watchdog in a session of its own (a signal to watchdog's
//! group or terminal does not reach it). The two share a roster: a table of
//! group ids in a shared anonymous mapping, which the registry of running
//! groups ([`super::reaper`]) fills and clears as each group starts and is
//! reaped. Listing a group is two atomic stores and no system call, so every
//! CGI request can afford it. When watchdog is gone, however it went, the
//! kernel closes the write end of a pipe only watchdog held; the guardian
//! reads the roster, stops the groups still listed as CONTRACT §3 stops a
//! function (SIGTERM, SIGKILL after `--kill-grace`), and exits. After a clean
//! shutdown the roster is empty and it exits at once.
//!
//! Why not `PR_SET_PDEATHSIG` on each process: it reaches the leader alone,
//! not the server a wrapper script started, it fires when the *thread* that
//! spawned the process ends, which for a runtime's worker thread is not
//! watchdog ending, and it needs code between fork and exec, which the lean
//! spawn path has none of.

use std::collections::HashSet;
use std::io::Read;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{ForkResult, Pid, fork};

use super::reaper::groups_running;

/// How many groups the roster holds at once: far beyond the processes one
/// machine runs. Only the pages that were written count in memory (the
/// first one covers a thousand groups).
const SLOTS: usize = 1 << 16;

/// The shared table. Zeroed by the kernel, which is a valid value for each
/// field.
#[repr(C)]
struct Roster {
    /// Slots at or beyond this were never written: the guardian reads no
    /// further, so it does not fault in pages watchdog never touched.
    used: AtomicUsize,
    /// A group id while that group is listed, 0 when the slot is free.
    slots: [AtomicI32; SLOTS],
}

/// The roster, in both processes once the guardian runs.
static ROSTER: OnceLock<&'static Roster> = OnceLock::new();

/// watchdog's free slots below [`Roster::used`]: only watchdog writes the
/// roster, under this lock.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The write end of the pipe whose end tells the guardian watchdog is gone.
/// Never written; held for as long as watchdog lives.
static ALIVE: OnceLock<OwnedFd> = OnceLock::new();

/// Set once the roster was found full, so that is said once.
static FULL_SAID: AtomicBool = AtomicBool::new(false);

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
/// The mapping, the pipe or a fork failed; watchdog serves on without a
/// guardian.
#[allow(unsafe_code)]
pub fn start(kill_grace: Duration) -> nix::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    let length = NonZeroUsize::new(std::mem::size_of::<Roster>()).expect("a roster has slots");
    // SAFETY: a fresh mapping at an address the kernel picks; it is never
    // unmapped, so the reference lives as long as the process. Zeroed pages
    // are a valid `Roster` (atomics of 0), and a shared mapping stays shared
    // across the fork below.
    let roster: &'static Roster = unsafe {
        mmap_anonymous(
            None,
            length,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )?
        .cast::<Roster>()
        .as_ref()
    };
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
                guard(read, roster, kill_grace);
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
            let _ = ALIVE.set(write);
            let _ = ROSTER.set(roster);
            Ok(())
        }
    }
}

/// A process group listed with the guardian while this lives. Drop it only
/// once the group has been stopped and its leader reaped (after that its id
/// may be another process's).
#[derive(Debug)]
pub struct Listed(usize);

/// Lists `pgid` with the guardian. `None` when there is no guardian (PID 1,
/// `watchdog invoke`, or it could not start) or, said once, when the roster
/// is full.
pub fn list(pgid: i32) -> Option<Listed> {
    let roster = ROSTER.get()?;
    let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = match free.pop() {
        Some(slot) => slot,
        None => {
            let next = roster.used.load(Ordering::Relaxed);
            if next == SLOTS {
                drop(free);
                if !FULL_SAID.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        groups = SLOTS,
                        "the guardian's roster is full: if watchdog is killed, some functions may outlive it; stop watchdog with SIGTERM rather than SIGKILL (its own shutdown stops them all)"
                    );
                }
                return None;
            }
            roster.used.store(next + 1, Ordering::Release);
            next
        }
    };
    roster.slots[slot].store(pgid, Ordering::Release);
    Some(Listed(slot))
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Some(roster) = ROSTER.get() {
            let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
            roster.slots[self.0].store(0, Ordering::Release);
            free.push(self.0);
        }
    }
}

/// The guardian's life: wait for the pipe to close, then stop what the
/// roster still lists.
#[allow(unsafe_code)]
fn guard(pipe: OwnedFd, roster: &Roster, kill_grace: Duration) -> ! {
    // watchdog's session, which every function's group is in, before the
    // guardian leaves it.
    let session = nix::unistd::getsid(None).map_or(0, Pid::as_raw);
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
    // Nothing is ever written: the read returns at end of file (watchdog
    // gone) or on an error that is not an interruption.
    let mut pipe = std::fs::File::from(pipe);
    let mut byte = [0u8; 1];
    loop {
        match pipe.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let used = roster.used.load(Ordering::Acquire).min(SLOTS);
    let groups: HashSet<i32> = roster.slots[..used]
        .iter()
        .map(|slot| slot.load(Ordering::Acquire))
        .filter(|&pgid| pgid > 1)
        .collect();
    stop_groups(&groups, session, kill_grace);
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

/// SIGTERM to every group, SIGKILL to those still running after `grace`;
/// then says so. The line comes last, and within [`LOG_LIMIT`]: a log reader
/// that stalled (perhaps why watchdog was killed) must not keep a function
/// alive.
fn stop_groups(groups: &HashSet<i32>, session: i32, grace: Duration) {
    let left = groups_running(groups, session);
    if left.is_empty() {
        return;
    }
    for pgid in &left {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !groups_running(&left, session).is_empty() {
        std::thread::sleep(GONE_POLL);
    }
    let stubborn = groups_running(&left, session);
    for pgid in &stubborn {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
    }
    // SIGALRM's default action ends the guardian if the write blocks.
    nix::unistd::alarm::set(LOG_LIMIT);
    tracing::warn!(
        groups = left.len(),
        killed = stubborn.len(),
        "watchdog ended without stopping its functions (killed, or it crashed): warm workers or CGI invocations in flight; the guardian stopped them"
    );
}

/// Seconds the guardian's one log line may take to write.
const LOG_LIMIT: u32 = 5;
