//! Who may talk to a Lambda worker's Runtime API.
//!
//! Runtime clients find the API at `AWS_LAMBDA_RUNTIME_API`, a host and port, so
//! it is a TCP port on 127.0.0.1, which any local process can reach. One that did
//! could take the next event (a client's headers, cookies and body) and answer it
//! in the function's name. In Lambda only the function's own sandbox reaches it.
//! Here a connection is served only when the socket at its other end belongs to
//! the user the worker runs as; another user's process is turned away. (A process
//! of that same user could read the worker's memory anyway.)

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// A Runtime API listener that serves only the worker's user.
pub struct WorkerUserOnly {
    pub listener: TcpListener,
    /// The user the worker runs as: `--user`'s, or watchdog's own.
    pub uid: u32,
    /// The function, for the warning about a turned-away connection.
    pub file: String,
}

impl axum::serve::Listener for WorkerUserOnly {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let (stream, peer) = axum::serve::Listener::accept(&mut self.listener).await;
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            // A read of /proc/net/tcp: file work, kept off the runtime's threads.
            let owner = tokio::task::spawn_blocking(move || owner_of(peer, local))
                .await
                .ok()
                .flatten();
            if owner == Some(self.uid) {
                return (stream, peer);
            }
            tracing::warn!(
                file = %self.file,
                %peer,
                peer_uid = owner.map_or_else(|| "unknown".to_owned(), |uid| uid.to_string()),
                worker_uid = self.uid,
                "a connection to a Lambda worker's Runtime API from another user's process was closed unanswered: only the worker's own user may take its events"
            );
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The user owning the socket at `peer` that is connected to `local`, as the
/// kernel's socket table records it.
fn owner_of(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let sockets = match peer {
        SocketAddr::V4(_) => procfs::net::tcp(),
        SocketAddr::V6(_) => procfs::net::tcp6(),
    };
    sockets
        .ok()?
        .into_iter()
        .find(|socket| socket.local_address == peer && socket.remote_address == local)
        .map(|socket| socket.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_of_this_process_is_found_with_its_owner() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let local = accepted.local_addr().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(owner_of(peer, local), Some(nix::unistd::geteuid().as_raw()));
        // Not the other way round: that is the listening side's own socket.
        let unconnected: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(owner_of(unconnected, local), None);
    }
}
