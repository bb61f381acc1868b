//! A warm HTTP worker's port: picked free by watchdog, bound by the worker a
//! moment later, and checked to be the worker's before the worker counts as ready.
//!
//! Between the pick and the worker's bind, another program may take the port
//! (another watchdog's worker, a test server, anything binding port 0). The
//! worker then fails to bind, and until it has exited a connection to the port
//! reaches the other program: taken for the worker being ready, every request
//! would go there. So readiness asks the kernel whose listening socket it is.

use std::collections::HashSet;

use procfs::net::TcpState;
use procfs::process::FDTarget;

/// A port nothing listens on right now (the worker binds it a moment later).
pub fn free() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Who listens on a worker's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// A process of the worker's group (the worker, or a server it started).
    Worker,
    /// Some other program.
    Other,
    /// Nobody, or watchdog cannot tell (it may not read the worker's file
    /// descriptors): the connection that answered is taken at its word.
    Unknown,
}

/// Whose listening socket is on 127.0.0.1:`port` (or the wildcard address):
/// one held by a process in process group `group`, or another program's.
pub fn listener_on(port: u16, group: i32) -> Listener {
    let listening: HashSet<u64> = procfs::net::tcp()
        .into_iter()
        .chain(procfs::net::tcp6())
        .flatten()
        .filter(|entry| entry.state == TcpState::Listen && entry.local_address.port() == port)
        .map(|entry| entry.inode)
        .collect();
    if listening.is_empty() {
        return Listener::Unknown;
    }
    let Ok(processes) = procfs::process::all_processes() else {
        return Listener::Unknown;
    };
    let mut unreadable = false;
    for process in processes.flatten() {
        if process.stat().map(|stat| stat.pgrp).ok() != Some(group) {
            continue;
        }
        let Ok(fds) = process.fd() else {
            unreadable = true;
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| matches!(fd.target, FDTarget::Socket(inode) if listening.contains(&inode)));
        if holds {
            return Listener::Worker;
        }
    }
    if unreadable {
        Listener::Unknown
    } else {
        Listener::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_told_apart_by_its_process_group() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let own = nix::unistd::getpgrp().as_raw();
        assert_eq!(listener_on(port, own), Listener::Worker);
        // A group with no process in it holds no socket: another program's.
        assert_eq!(listener_on(port, i32::MAX), Listener::Other);
        drop(listener);
        assert_eq!(listener_on(port, own), Listener::Unknown);
    }
}
