//! Writes the request body to the function's stdin, in its own task.
//!
//! Running apart from the stdout reader is what keeps a function that writes before
//! it reads (or echoes as it reads) from deadlocking on full pipes. When the function
//! stops reading (it exited, or closed stdin), the rest of a streamed body is read
//! and dropped, so the client's upload completes and its connection stays usable.
//!
//! A body that breaks off or stalls (the client went away mid-upload, sent a
//! malformed body, or paused longer than `--body-idle-timeout`) is not passed on
//! as an end: closing stdin would hand the function a clean EOF, and it would act
//! on a truncated body as if it were whole. The pump tells the driver instead,
//! handing over stdin still open, and the driver stops the function before
//! stdin closes ([`crate::invoke::body_fault`] says which fault it was).

use std::os::fd::AsFd;

use axum::body::Body;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe::Sender as ChildStdin;
use tokio::sync::oneshot;

use crate::invoke::request_body::{RequestBody, Spill};
use crate::process::pipe;

/// A body larger than the default 64 KiB pipe gets a pipe of
/// [`LARGE_BODY_PIPE_BYTES`]. The connection's thread both receives the body and
/// writes it to stdin; with 64 KiB it slept and woke for every 64 KiB the function
/// drained. Measured on the 1 MiB echo: +40% req/s at 1 connection, +7% at 16,
/// the same with 256 KiB as with 1 MiB, so the smaller one (kernel memory, per
/// upload in flight).
const LARGE_BODY: u64 = 64 * 1024;
const LARGE_BODY_PIPE_BYTES: usize = 256 * 1024;

/// Resolves with the function's stdin, still open, if the request body broke off
/// or stalled while the function was reading it; fails once the body has ended
/// otherwise.
pub type BodyBroken = oneshot::Receiver<ChildStdin>;

/// Starts the pump; it ends when the body is written (stdin is then closed, the
/// function sees EOF), when it cannot be, or when the body breaks off or stalls
/// (reported through the returned [`BodyBroken`]).
pub fn spawn(stdin: ChildStdin, body: RequestBody, deadline: tokio::time::Instant) -> BodyBroken {
    let grown = if body
        .content_length()
        .is_some_and(|length| length > LARGE_BODY)
    {
        pipe::grow(stdin.as_fd(), LARGE_BODY_PIPE_BYTES)
    } else {
        None
    };
    let (broken_tx, broken_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut stdin = Some(stdin);
        let mut broken = Some(broken_tx);
        // Nothing is read or written for this request past its deadline. Nor
        // is stdin closed then, while the body is unfinished: the driver is
        // stopping the function at that same deadline, and an EOF first would
        // hand it a cut-off body as a whole one, to act on before the SIGTERM.
        // It stays open until the driver is done (it drops its receiver).
        let pumped = tokio::time::timeout_at(deadline, pump(&mut stdin, body, &mut broken)).await;
        if pumped.is_err()
            && stdin.is_some()
            && let Some(driver) = broken.as_mut()
        {
            driver.closed().await;
        }
        drop(stdin);
        // Its place in the growth budget is free once the pipe is closed.
        drop(grown);
    });
    broken_rx
}

/// Writes `body` to `stdin`; leaves it there (to be closed by the caller,
/// the end the function sees) unless the function closed its end or the body
/// broke off (the pipe then went to the driver through `broken`).
async fn pump(
    stdin: &mut Option<ChildStdin>,
    body: RequestBody,
    broken: &mut Option<oneshot::Sender<ChildStdin>>,
) {
    let Some(pipe) = stdin.as_mut() else {
        return;
    };
    match body {
        RequestBody::Empty => {}
        RequestBody::Streaming { body, .. } => stream(stdin, body, broken).await,
        RequestBody::Spilled {
            spill: Spill::Memory(bytes),
            ..
        } => {
            let _ = pipe.write_all(&bytes).await;
        }
        RequestBody::Spilled {
            spill: Spill::File(file),
            ..
        } => {
            let mut file = tokio::fs::File::from_std(file);
            let _ = tokio::io::copy(&mut file, pipe).await;
        }
    }
}

async fn stream(
    stdin: &mut Option<ChildStdin>,
    body: Body,
    broken: &mut Option<oneshot::Sender<ChildStdin>>,
) {
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            // Once the function has closed its stdin, the rest of the body was only
            // being drained: it cannot mistake a short body for a whole one, and
            // is left to finish. A driver already gone has nothing left to stop.
            if let (Some(pipe), Some(driver)) = (stdin.take(), broken.take()) {
                let _ = driver.send(pipe);
            }
            return;
        };
        if let Some(pipe) = stdin.as_mut()
            && pipe.write_all(&chunk).await.is_err()
        {
            // EPIPE: the function is not reading any more. Close our end and drain.
            *stdin = None;
        }
    }
}
