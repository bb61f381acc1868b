//! A function's output pipe as a stream of chunks, each read with room for a
//! whole chunk (once less than half a chunk is left in the buffer).
//!
//! Why not tokio-util's `ReaderStream`: after handing out a chunk it reads the
//! next one into whatever is left of the same buffer, so a full 64 KiB pipe was
//! read as 61,480 + 4,056 bytes (seen with strace on the 1 MiB echo): two reads,
//! two body chunks and two chunk headers on the wire for every 64 KiB a function
//! writes.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::AsyncRead;

use crate::process::pipe;

/// The chunks of one pipe, read `size` bytes at a time at most.
pub struct PipeChunks<R> {
    reader: R,
    buffer: BytesMut,
    /// Bytes asked for per read.
    size: usize,
    done: bool,
    grow_tried: bool,
    /// The pipe's place in the growth budget, while it is grown.
    grown: Option<pipe::Grown>,
}

impl<R> PipeChunks<R> {
    /// Reads `reader` up to `size` bytes at a time.
    pub fn new(reader: R, size: usize) -> Self {
        Self {
            reader,
            buffer: BytesMut::new(),
            size,
            done: false,
            grow_tried: false,
            grown: None,
        }
    }
}

impl<R: AsFd> PipeChunks<R> {
    /// Grows the pipe to `bytes` and reads that much at a time from now on, if
    /// the growth budget and the kernel allow ([`pipe::grow`]). Tried once.
    pub fn grow(&mut self, bytes: usize) {
        if self.grow_tried {
            return;
        }
        self.grow_tried = true;
        self.grown = pipe::grow(self.reader.as_fd(), bytes);
        if self.grown.is_some() {
            self.size = bytes;
        }
    }
}

impl<R: AsyncRead + Unpin> Stream for PipeChunks<R> {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        // Small chunks (a line of an event stream) keep reading into the rest of
        // the buffer; once less than half a chunk is left, a whole one is made
        // room for (the old allocation is reused when its chunks are gone).
        if this.buffer.capacity() < this.size / 2 {
            this.buffer.reserve(this.size);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.reader), cx, &mut this.buffer) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(this.buffer.split().freeze()))),
            Poll::Ready(Err(err)) => {
                this.done = true;
                Poll::Ready(Some(Err(err)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_full_pipe_is_read_in_whole_chunks() {
        let (mut writer, reader) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        writer.write_all(&data).await.unwrap();
        drop(writer);
        let chunks: Vec<Bytes> = PipeChunks::new(reader, 65_536)
            .map(Result::unwrap)
            .collect()
            .await;
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [65_536, 65_536, 65_536, 3_392]);
        assert_eq!(chunks.concat(), data);
    }

    #[tokio::test]
    async fn a_grown_pipe_holds_and_yields_larger_chunks() {
        let (mut writer, reader) = tokio::net::unix::pipe::pipe().unwrap();
        let mut chunks = PipeChunks::new(reader, 65_536);
        chunks.grow(256 * 1024);
        assert_eq!(chunks.size, 256 * 1024);
        let capacity = nix::fcntl::fcntl(chunks.reader.as_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ);
        assert_eq!(capacity.unwrap(), 256 * 1024);
        // The whole 200,000 bytes fit in the pipe and come out as one chunk.
        writer.write_all(&[7u8; 200_000]).await.unwrap();
        drop(writer);
        let first = chunks.next().await.unwrap().unwrap();
        assert_eq!(first.len(), 200_000);
        assert!(chunks.next().await.is_none());
    }
}
