//! A warm HTTP worker's port: picked free by watchdog, bound by the worker a
//! moment later, and checked to be the worker's before the worker counts as ready.
//!
//! Between the pick and the worker's bind, another program may take the port
//! (another watchdog's worker, a test server, anything binding port 0). The
//! worker then fails to bind, and until it has exited a connection to the port
//! reaches the other program: taken for the worker being ready, every request
//! would go there. So readiness asks the kernel whose listening socket it is.

use std::collections::{HashMap, HashSet};

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
    /// A process of the worker's group (the worker, or a server it started);
    /// `everywhere` when its socket is bound to every interface (`0.0.0.0` or
    /// `::`), where other machines reach the worker without watchdog.
    Worker { everywhere: bool },
    /// Some other program.
    Other,
    /// Nobody, or watchdog cannot tell (it may not read the worker's file
    /// descriptors): the connection that answered is taken at its word.
    Unknown,
}

/// Whose listening socket is on 127.0.0.1:`port` (or the wildcard address):
/// the worker's (led by `worker`, whose group it leads), held by the worker, a
/// process of its group, or one it started in a group or session of its own
/// (a server it daemonized); or another program's.
pub fn listener_on(port: u16, worker: i32) -> Listener {
    // Reading a table costs about 2 ms whatever it holds (the kernel walks its
    // whole socket hash), once per worker start: the IPv6 one only when the
    // IPv4 one has no listener on the port (a worker bound to `::`).
    // Each listening socket's inode, and whether it is bound to every interface.
    let on_port = |table: procfs::ProcResult<Vec<procfs::net::TcpNetEntry>>| -> HashMap<u64, bool> {
        table
            .into_iter()
            .flatten()
            .filter(|entry| entry.state == TcpState::Listen && entry.local_address.port() == port)
            .map(|entry| (entry.inode, entry.local_address.ip().is_unspecified()))
            .collect()
    };
    let mut listening = on_port(procfs::net::tcp());
    if listening.is_empty() {
        listening = on_port(procfs::net::tcp6());
    }
    if listening.is_empty() {
        return Listener::Unknown;
    }
    // Which of those sockets `process` holds, if one; `None` when its file
    // descriptors cannot be read.
    let holds = |process: &procfs::process::Process| -> Option<Option<Listener>> {
        let fds = process.fd().ok()?;
        Some(fds.flatten().find_map(|fd| {
            match fd.target {
                FDTarget::Socket(inode) => listening
                    .get(&inode)
                    .map(|&everywhere| Listener::Worker { everywhere }),
                _ => None,
            }
        }))
    };
    // The worker itself usually serves: asked first, it spares the walk over
    // every process.
    let mut unreadable = false;
    match procfs::process::Process::new(worker)
        .ok()
        .as_ref()
        .map(holds)
    {
        Some(Some(Some(found))) => return found,
        Some(None) => unreadable = true,
        _ => {}
    }
    let Some(members) = worker_processes(worker) else {
        return Listener::Unknown;
    };
    for process in members.iter().filter(|process| process.pid != worker) {
        match holds(process) {
            Some(Some(found)) => return found,
            Some(None) => {}
            None => unreadable = true,
        }
    }
    if unreadable {
        Listener::Unknown
    } else {
        Listener::Other
    }
}

/// The processes that count as the worker led by `worker`: itself, the
/// members of its group, and the processes it started in a group or session
/// of their own (a server it daemonized). `None` when the process list
/// cannot be read.
fn worker_processes(worker: i32) -> Option<Vec<procfs::process::Process>> {
    let processes: Vec<(procfs::process::Process, procfs::process::Stat)> =
        procfs::process::all_processes()
            .ok()?
            .flatten()
            .filter_map(|process| process.stat().ok().map(|stat| (process, stat)))
            .collect();
    let parents: HashMap<i32, i32> = processes
        .iter()
        .map(|(_, stat)| (stat.pid, stat.ppid))
        .collect();
    let descends = |mut pid: i32| {
        // Bounded: a parent map read while processes come and go could loop.
        for _ in 0..parents.len() {
            match parents.get(&pid) {
                Some(&parent) if parent == worker => return true,
                Some(&parent) if parent > 1 => pid = parent,
                _ => return false,
            }
        }
        false
    };
    Some(
        processes
            .into_iter()
            .filter(|(_, stat)| stat.pid == worker || stat.pgrp == worker || descends(stat.pid))
            .map(|(process, _)| process)
            .collect(),
    )
}

/// The TCP ports the worker (led by `worker`, see [`worker_processes`]) listens on, for the
/// worker that never listens on its `$PORT`: one with a port of its own
/// (an OpenFaaS template's fixed upstream port) is told which it used.
/// Empty when none, or when its file descriptors cannot be read.
pub fn ports_held_by(worker: i32) -> Vec<u16> {
    let sockets: HashSet<u64> = worker_processes(worker)
        .unwrap_or_default()
        .iter()
        .filter_map(|process| process.fd().ok())
        .flat_map(|fds| {
            fds.flatten().filter_map(|fd| match fd.target {
                FDTarget::Socket(inode) => Some(inode),
                _ => None,
            })
        })
        .collect();
    let mut ports: Vec<u16> = [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.state == TcpState::Listen && sockets.contains(&entry.inode))
        .map(|entry| entry.local_address.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_told_apart_by_the_process_that_holds_it() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let own = i32::try_from(std::process::id()).unwrap();
        let worker = Listener::Worker { everywhere: false };
        assert_eq!(listener_on(port, own), worker);
        // A worker that is not there holds no socket: another program's.
        assert_eq!(listener_on(port, i32::MAX), Listener::Other);
        // One held by a process the worker started, in a session of its own
        // (a daemonized server), is the worker's.
        let parent = nix::unistd::getppid().as_raw();
        if parent > 1 {
            assert_eq!(listener_on(port, parent), worker);
        }
        assert!(ports_held_by(own).contains(&port));
        drop(listener);
        assert_eq!(listener_on(port, own), Listener::Unknown);
        assert!(!ports_held_by(own).contains(&port));
        // Bound to every interface: told apart.
        let open = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = open.local_addr().unwrap().port();
        assert_eq!(
            listener_on(port, own),
            Listener::Worker { everywhere: true }
        );
    }
}
