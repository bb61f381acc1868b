//! A client that takes none of its answer for `--send-timeout` is let go.
//!
//! hyper has no write timeout: a client that stopped reading filled its
//! socket's buffers, hyper waited on the socket and polled the answer no more,
//! so the connection, its descriptor and buffers stayed until the client read
//! or left.
//!
//! Why not a timer on the write alone (tokio-io-timeout's write timeout, as
//! this first was): the kernel calls a TCP socket writable again only once
//! about half of what is queued on it has gone, and the queue grows to
//! megabytes. A client reading steadily at 160 KB/s was cut off at a 2 s
//! timeout with 4.4 MB queued, its reads never freeing enough for a write to
//! succeed in time; at the 60 s default, any client under about 35 KB/s would
//! have been. Here the timer only says when to look: when the bytes queued on
//! the socket that the client has not acknowledged (`SIOCOUTQ`, asked when a
//! wait starts and when the timer runs out) went down since it was set, the
//! client took some, and the timer starts again.
//!
//! So a client that takes anything at all within each period is kept (as with
//! nginx's `send_timeout`, which any write resets), and one that stopped may
//! last up to about twice the timeout: bytes in flight when the timer was set
//! may be acknowledged within the first period. Where the kernel will not say
//! (a sandbox that refuses the ioctl), it is a timer on the writes alone, and
//! the log says so once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// A connection's stream, whose writes fail with `TimedOut` once the client
/// has taken nothing for the send timeout while a write waits.
pub struct SendStall {
    stream: TcpStream,
    timeout: Duration,
    /// Set while a write waits; kept (boxed once) between waits.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// What was queued on the socket when the timer was last set.
    queued: Option<usize>,
}

impl SendStall {
    pub fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            timer: None,
            waiting: false,
            queued: None,
        }
    }

    /// A write returned `Pending`: sets the timer if this wait has none yet,
    /// and when it has run out, sets it again if the client took anything
    /// meanwhile, else gives up.
    fn still_waiting(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.waiting {
            self.waiting = true;
            self.queued = queued(&self.stream);
            let deadline = Instant::now() + self.timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        // Set above whenever a wait starts, so always there by now.
        let Some(timer) = self.timer.as_mut() else {
            return Ok(());
        };
        while timer.as_mut().poll(cx).is_ready() {
            let now_queued = queued(&self.stream);
            let took_some =
                matches!((self.queued, now_queued), (Some(before), Some(now)) if now < before);
            if !took_some {
                self.waiting = false;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took none of its answer for the send timeout",
                ));
            }
            self.queued = now_queued;
            timer.as_mut().reset(Instant::now() + self.timeout);
        }
        Ok(())
    }

    /// Passes a write's outcome on, timing a wait.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => {
                self.still_waiting(cx)?;
                Poll::Pending
            }
            ready => {
                self.waiting = false;
                ready
            }
        }
    }
}

/// The bytes on `stream`'s send queue that the client has not acknowledged,
/// sent or not; none where the kernel will not say.
fn queued(stream: &TcpStream) -> Option<usize> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let queued = ask_queued(stream);
    if let Err(err) = &queued {
        WARNED.call_once(|| {
            tracing::warn!(
                error = %err,
                "the kernel does not say how much of an answer a client has taken (SIOCOUTQ); --send-timeout then counts only writes, and may cut off clients that read slowly but steadily"
            );
        });
    }
    queued.ok()
}

fn ask_queued(stream: &TcpStream) -> rustix::io::Result<usize> {
    const SIOCOUTQ: rustix::ioctl::Opcode = nix::libc::TIOCOUTQ as rustix::ioctl::Opcode;
    #[allow(unsafe_code)]
    // SAFETY: SIOCOUTQ (TIOCOUTQ) on a TCP socket is a valid opcode, and the
    // kernel writes one `int` for it, which is the getter's output type.
    let queued = unsafe {
        rustix::ioctl::ioctl(
            stream,
            rustix::ioctl::Getter::<SIOCOUTQ, std::ffi::c_int>::new(),
        )
    };
    queued.map(|bytes| usize::try_from(bytes).unwrap_or(0))
}

impl AsyncRead for SendStall {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendStall {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.timed(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.timed(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = ready!(Pin::new(&mut self.stream).poll_shutdown(cx));
        Poll::Ready(polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue is what the client has not taken: it grows while the client
    /// reads nothing, and shrinks as soon as it reads.
    #[tokio::test]
    async fn the_queue_shrinks_when_the_client_reads() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(queued(&server), Some(0));
        // Written until the client's buffers are full and the socket's too.
        let chunk = [7u8; 64 * 1024];
        while server.try_write(&chunk).is_ok() {}
        let full = queued(&server).unwrap();
        assert!(full > 0, "nothing queued");
        // Less than was queued, whatever the machine's buffer sizes.
        let mut taken = vec![0; full.min(256 * 1024)];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut taken))
            .await
            .expect("the client could not read what was queued")
            .unwrap();
        let mut now = full;
        for _ in 0..200 {
            now = queued(&server).unwrap();
            if now < full {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            now < full,
            "still {now} of {full} queued after the client read 1 MiB"
        );
    }
}
