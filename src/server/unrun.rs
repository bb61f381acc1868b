//! A request hyper read but dropped before it ever reached routing is logged.
//!
//! hyper hands each request to the service and, before polling what the
//! service returned, reads on to watch for the client leaving. A client that
//! closes its side right after sending, as `ncat`, `socat` and `nc -N` do at the
//! end of their input (a TCP half-close), is taken for one that left, and the
//! request is dropped unpolled: nothing ran, nothing was answered, and before
//! [`Unrun`] nothing was logged either, so such a user saw an empty reply and
//! an operator an empty log. (A half-close is indistinguishable from a client
//! that went away, whose function CONTRACT §3 has killed; nginx in front of an
//! upstream judges it the same way.)

use std::net::SocketAddr;
use std::sync::Arc;

use super::taken::Taken;

/// Armed when hyper hands a request over; disarmed when the request's future
/// is first polled. Dropped armed, it logs the request as dropped unrun.
pub struct Unrun {
    armed: Option<(Arc<Taken>, SocketAddr)>,
}

impl Unrun {
    pub fn new(taken: Arc<Taken>, remote: SocketAddr) -> Self {
        Self {
            armed: Some((taken, remote)),
        }
    }

    /// The request's future is running: from here on it logs for itself.
    pub fn started(mut self) {
        self.armed = None;
    }
}

impl Drop for Unrun {
    fn drop(&mut self) {
        if let Some((taken, remote)) = self.armed.take() {
            tracing::info!(
                request_id = %taken.id,
                method = %taken.method,
                path = %taken.uri.path(),
                %remote,
                hint = "a client must keep its side of the connection open until its answer has come: `ncat --no-shutdown`, `nc` without -N; curl and browsers do",
                "request dropped before it ran: the client closed its side of the connection right after sending it (a TCP half-close is taken as a client that left); nothing was run or answered"
            );
        }
    }
}
