//! Tells a client that stalled partway through a request head from one that
//! kept its connection open and sent nothing.
//!
//! hyper closes both at its head deadline ([`super::listener::HEADER_READ_TIMEOUT`])
//! with the same error. The idle kept-alive connection is routine; the stalled
//! head is a client on a failing link, or one holding connections open on
//! purpose (slowloris), and an operator should see it. What differs is whether
//! any bytes came in since the last answer went out, which this wrapper notes.
//! (A pipelined request that arrived before the previous answer was sent is
//! counted as idle: rare, and only the log line is lost.)

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether a connection has unanswered bytes: read from the client since the
/// last answer was written. Shared with whoever reports the connection's end.
#[derive(Clone, Default)]
pub struct HeadStarted(Arc<AtomicBool>);

impl HeadStarted {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A connection's stream, noting in [`HeadStarted`] whether bytes came in since
/// the last write.
pub struct NoteHeadStarted<T> {
    inner: T,
    started: HeadStarted,
}

impl<T> NoteHeadStarted<T> {
    pub fn new(inner: T, started: HeadStarted) -> Self {
        Self { inner, started }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for NoteHeadStarted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.started.0.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for NoteHeadStarted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.answered(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.answered(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T> NoteHeadStarted<T> {
    /// Some of an answer went out: what comes in next starts a new head.
    fn answered(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.started.0.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_in_start_a_head_and_an_answer_out_ends_it() {
        let (client, server) = tokio::io::duplex(64);
        let started = HeadStarted::default();
        let mut server = NoteHeadStarted::new(server, started.clone());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        assert!(!started.get());
        client_write.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0; 8];
        server.read_exact(&mut buf).await.unwrap();
        assert!(started.get());
        server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert!(!started.get());
        let mut answer = [0; 17];
        client_read.read_exact(&mut answer).await.unwrap();
        // The client closing reads zero bytes: no head started.
        drop((client_read, client_write));
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        assert!(!started.get());
    }
}
