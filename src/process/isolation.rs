//! What watchdog does to itself at start, before it opens anything, so that the
//! functions it starts cannot reach into it.
//!
//! - Descriptors it inherited without close-on-exec (a shell's `9<secret`, a
//!   supervisor's leftovers) are marked close-on-exec. The CGI spawner closes
//!   everything above the standard streams in the child anyway, but the other
//!   paths (warm workers, the Node adapter, functions with limits or `--user`)
//!   start through std's `Command`, which relies on close-on-exec alone: a
//!   function running as `--user nobody` could read a root-only file through one.
//! - It makes itself not dumpable, so a function running as the same user cannot
//!   read `/proc/<watchdog>/environ` (the secrets of watchdog's own environment,
//!   which functions must not see, CONTRACT §3) or attach to it. A function's own
//!   `execve` makes it dumpable again; only watchdog is affected (no core dumps).

use std::os::fd::RawFd;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// Best effort: a failure here leaves things as they were, and is logged.
pub fn apply() -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(err) = close_inherited_on_exec() {
        problems.push(format!(
            "cannot mark inherited descriptors close-on-exec: {err}"
        ));
    }
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        problems.push(format!("cannot make watchdog non-dumpable: {err}"));
    }
    problems
}

fn close_inherited_on_exec() -> std::io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: only the flags of a descriptor number are changed; the one the
        // listing itself used is closed by now (EBADF, ignored).
        #[allow(unsafe_code)]
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}
