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
use std::sync::Arc;
use std::time::Duration;

use procfs::net::TcpState;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::observability::sparse::Sparse;

/// A Runtime API listener that serves only the worker's user.
///
/// Connections are checked apart from one another, each on its own task, so
/// that a slow look-up (a large socket table) or a flood of someone else's
/// connections does not hold up the worker's own: the checked ones come out of
/// a queue.
pub struct WorkerUserOnly {
    checked: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl WorkerUserOnly {
    /// Accepts on `listener`, passing on connections of user `uid` (the one the
    /// worker runs as: `--user`'s, or watchdog's own); `file` names the
    /// function in the warning about the others.
    pub fn new(listener: TcpListener, uid: u32, file: String) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (passed, checked) = mpsc::channel(16);
        let refusals = Arc::new(Refusals::new(file, uid));
        tokio::spawn(async move {
            let mut listener = listener;
            loop {
                let (stream, peer) = tokio::select! {
                    // The server is gone (the worker stopped): so is this.
                    () = passed.closed() => return,
                    accepted = axum::serve::Listener::accept(&mut listener) => accepted,
                };
                let passed = passed.clone();
                let refusals = Arc::clone(&refusals);
                tokio::spawn(async move {
                    // Kernel queries and file reads: kept off the runtime's threads.
                    let owner = tokio::task::spawn_blocking(move || owner_of(peer, local))
                        .await
                        .unwrap_or(Owner::Unknown);
                    if owner == Owner::User(uid) {
                        let _ = passed.send((stream, peer)).await;
                    } else {
                        refusals.note(peer, owner);
                    }
                });
            }
        });
        Ok(Self { checked, local })
    }
}

impl axum::serve::Listener for WorkerUserOnly {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.checked.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended only if the listener failed for good:
            // nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Whose the socket at the other end of a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A process of this user holds it.
    User(u32),
    /// No process holds it (closed already: the kernel shows such a socket
    /// as root's, whoever opened it), or it is not in the table.
    Nobody,
    /// The socket table cannot be read here.
    Unknown,
}

/// Whose the socket at `peer` connected to `local` is. Only a socket a process
/// still holds (an inode, in an open state) has its owner's uid.
///
/// Asked of the kernel for that one socket (netlink's sock_diag), which costs
/// the same however many sockets the machine has; the whole table in
/// /proc/net/tcp, read where netlink is not allowed, grew to 9,000 lines under
/// another user's flood of connections, and reading it per connection made the
/// worker's own calls take seconds (a re-probe's finding).
fn owner_of(peer: SocketAddr, local: SocketAddr) -> Owner {
    if let Ok(owner) = owner_by_sock_diag(peer, local) {
        return owner;
    }
    match owner_in_table(peer, local) {
        // The table is read in pieces, and a socket that moved in it
        // meanwhile can be missed: looked for once more, a moment later.
        Owner::Nobody => {
            std::thread::sleep(TABLE_RETRY_AFTER);
            owner_in_table(peer, local)
        }
        found => found,
    }
}

/// How long after a socket was not found in /proc/net/tcp it is looked for
/// again (on a blocking thread).
const TABLE_RETRY_AFTER: Duration = Duration::from_millis(20);

fn is_open(state: &TcpState) -> bool {
    matches!(
        state,
        TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2 | TcpState::CloseWait
    )
}

/// [`owner_of`] through one sock_diag request for the exact connection.
fn owner_by_sock_diag(peer: SocketAddr, local: SocketAddr) -> std::io::Result<Owner> {
    use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
    let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let (family, mut id) = match peer {
        SocketAddr::V4(_) => (AF_INET, SocketId::new_v4()),
        SocketAddr::V6(_) => (AF_INET6, SocketId::new_v6()),
    };
    // The peer's own socket: its source is the peer, its destination us.
    id.source_address = peer.ip();
    id.source_port = peer.port();
    id.destination_address = local.ip();
    id.destination_port = local.port();
    // No cookie to match (INET_DIAG_NOCOOKIE): any socket with that address.
    id.cookie = [0xff; 8];
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: id,
        })
        .into(),
    );
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    let mut reply = vec![0; 8192];
    let size = socket.recv(&mut &mut reply[..], 0)?;
    let answer = NetlinkMessage::<SockDiagMessage>::deserialize(&reply[..size])
        .map_err(std::io::Error::other)?;
    match answer.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(found)) => {
            let header = &found.header;
            let open = TcpState::from_u8(header.state).is_some_and(|state| is_open(&state));
            Ok(if header.inode != 0 && open {
                Owner::User(header.uid)
            } else {
                Owner::Nobody
            })
        }
        // ENOENT: no such connection (any more).
        NetlinkPayload::Error(error)
            if error.code.map(std::num::NonZeroI32::get)
                == Some(-(nix::errno::Errno::ENOENT as i32)) =>
        {
            Ok(Owner::Nobody)
        }
        other => Err(std::io::Error::other(format!(
            "unexpected sock_diag answer: {other:?}"
        ))),
    }
}

/// [`owner_of`] from the whole socket table, /proc/net/tcp.
fn owner_in_table(peer: SocketAddr, local: SocketAddr) -> Owner {
    let table = match peer {
        SocketAddr::V4(_) => procfs::net::tcp(),
        SocketAddr::V6(_) => procfs::net::tcp6(),
    };
    let Ok(sockets) = table else {
        return Owner::Unknown;
    };
    sockets
        .into_iter()
        .find(|socket| {
            socket.local_address == peer
                && socket.remote_address == local
                && socket.inode != 0
                && is_open(&socket.state)
        })
        .map_or(Owner::Nobody, |socket| Owner::User(socket.uid))
}

/// The warnings about turned-away connections, sparse: a flood of them does
/// not flood the log, and each says how many were turned away since the last
/// (`turned_away`).
struct Refusals {
    file: String,
    uid: u32,
    sparse: Sparse,
}

impl Refusals {
    const EVERY: Duration = Duration::from_secs(10);

    fn new(file: String, uid: u32) -> Self {
        Self {
            file,
            uid,
            sparse: Sparse::new(Self::EVERY),
        }
    }

    fn note(&self, peer: SocketAddr, owner: Owner) {
        let Some(turned_away) = self.sparse.note() else {
            return;
        };
        match owner {
            Owner::Unknown => tracing::warn!(
                file = %self.file,
                %peer,
                turned_away,
                hint = "watchdog asks the kernel whose a connection is (netlink sock_diag, else /proc/net/tcp): allow one of them to watchdog",
                "a connection to a Lambda worker's Runtime API was closed unanswered: whose it is cannot be told here"
            ),
            Owner::User(uid) => tracing::warn!(
                file = %self.file,
                %peer,
                turned_away,
                peer_uid = uid,
                worker_uid = self.uid,
                "a connection to a Lambda worker's Runtime API from another user's process was closed unanswered: only the worker's own user may take its events"
            ),
            Owner::Nobody => tracing::warn!(
                file = %self.file,
                %peer,
                turned_away,
                worker_uid = self.uid,
                "a connection to a Lambda worker's Runtime API closed by its own end before it could be checked was dropped: only the worker's own user may take its events"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_found_with_its_owner_while_it_is_held() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let local = accepted.local_addr().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(
            owner_of(peer, local),
            Owner::User(nix::unistd::geteuid().as_raw())
        );
        // Not the other way round: that is the listening side's own socket.
        let unconnected: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(owner_of(unconnected, local), Owner::Nobody);
        // Both ways of asking agree, where the kernel answers sock_diag.
        let own = Owner::User(nix::unistd::geteuid().as_raw());
        assert_eq!(owner_in_table(peer, local), own);
        match owner_by_sock_diag(peer, local) {
            Ok(found) => {
                assert_eq!(found, own);
                assert_eq!(
                    owner_by_sock_diag(unconnected, local).unwrap(),
                    Owner::Nobody
                );
            }
            Err(err) => eprintln!("sock_diag cannot be asked here ({err}): the table is read"),
        }
        // Closed by its process: listed (as root's, by the kernel) but held by
        // no one, so no one's.
        drop(client);
        assert_eq!(owner_of(peer, local), Owner::Nobody);
        assert_eq!(owner_in_table(peer, local), Owner::Nobody);
        if let Ok(found) = owner_by_sock_diag(peer, local) {
            assert_eq!(found, Owner::Nobody);
        }
    }
}
