//! Telling a client's broken or stalled upload from a function's failure.
//!
//! Every invoker hands the request body on: to a function's stdin, to a warm
//! worker's socket, into a Lambda event. When the body ends early the fault is the
//! client's, but it surfaces in the invoker as a failed write or as a worker that
//! "broke off the request". Left at that, a function would act on a truncated
//! body, or a healthy worker would be counted as crashed (five aborted uploads
//! would put its pool into crash-loop 503s). [`watch`] wraps the body so the fault
//! is recorded where it happens, and the invoker asks [`BodyWatch::fault`] before
//! it blames anyone. The invocation's log record holds the watch too, and takes
//! the bytes received and a client that broke off from it.
//!
//! The pause a client may take between body bytes is enforced here too, so
//! every invoker has the same limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::InvokeError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body ended before its declared length.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyFault {
    /// No bytes for the idle timeout: the client gave up, or stalls on purpose.
    #[error("the request body stalled: no data for {0:?}")]
    Stalled(Duration),
    /// The connection closed or the framing was invalid mid-body.
    #[error("the request body broke off: {0}")]
    Broken(String),
}

/// The error a client is answered with, if it is still there to hear it.
impl From<BodyFault> for InvokeError {
    fn from(fault: BodyFault) -> Self {
        match fault {
            BodyFault::Stalled(after) => InvokeError::BodyIdle { after },
            BodyFault::Broken(cause) => InvokeError::BodyRead(cause),
        }
    }
}

/// What became of a watched body, readable after the body itself was handed on.
#[derive(Debug, Clone, Default)]
pub struct BodyWatch(Arc<Watched>);

#[derive(Debug, Default)]
struct Watched {
    fault: OnceLock<BodyFault>,
    received: AtomicU64,
    /// The body is being read and the client has not sent the next bytes yet.
    awaiting_client: AtomicBool,
    /// Set at the deadline: the body ends with an error at its next poll.
    cut_off: AtomicBool,
    /// Whoever reads the body, to be woken for the cut-off.
    reader: AtomicWaker,
}

impl BodyWatch {
    /// The fault, once the body has broken off or stalled.
    pub fn fault(&self) -> Option<BodyFault> {
        self.0.fault.get().cloned()
    }

    /// Whether the client broke the body off (it is gone, not just slow).
    pub fn broke_off(&self) -> bool {
        matches!(self.0.fault.get(), Some(BodyFault::Broken(_)))
    }

    /// Body bytes received from the client so far.
    pub fn received(&self) -> u64 {
        self.0.received.load(Ordering::Relaxed)
    }

    /// At the invocation's deadline: if it was the client's upload being waited
    /// for (not a function slow to read it), the body is cut off, so whatever
    /// carries it (a worker's connection) closes, and the error to answer is a
    /// 408 rather than the function's timeout. `timeout` is the one that ran out.
    pub fn cut_off_if_awaited(&self, timeout: Duration) -> Option<InvokeError> {
        if !self.0.awaiting_client.load(Ordering::Relaxed) {
            return None;
        }
        self.0.cut_off.store(true, Ordering::Relaxed);
        self.0.reader.wake();
        Some(InvokeError::BodyTimeout { after: timeout })
    }
}

/// Wraps a request body of `length` bytes: a pause longer than `idle` ends it with
/// [`BodyFault::Stalled`], and any fault is recorded in the returned watch.
pub fn watch(body: Body, length: Option<u64>, idle: Duration) -> (Body, BodyWatch) {
    let watch = BodyWatch::default();
    let watched = WatchedBody {
        inner: body,
        pause: PauseTimer {
            idle,
            waiting_since: None,
            timer: None,
        },
        length,
        watch: watch.clone(),
    };
    (Body::new(watched), watch)
}

/// The idle timeout is kept here rather than by tower-http's `TimeoutBody`, which
/// makes a new timer for every frame. Measured on the 1 MiB echo at 16
/// connections against the same server with no body watch (medians of
/// alternating 3 s rounds): with `TimeoutBody`, 14% fewer req/s and 150 µs more
/// of watchdog's CPU per request (five rounds); with this one, 749 against 753
/// req/s and the same user CPU (eight rounds; the pairs' median ratio 0.95, the
/// machine's noise). Here one timer serves the whole body and is moved on only
/// when it fires early.
struct WatchedBody {
    inner: Body,
    pause: PauseTimer,
    length: Option<u64>,
    watch: BodyWatch,
}

/// Times the client's pause between body bytes.
struct PauseTimer {
    idle: Duration,
    /// Since when the next frame has been awaited (`None` right after one):
    /// the pause is timed only while the body is being read, so a function
    /// that is slow to drain its stdin does not make the client look stalled.
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl PauseTimer {
    /// Ready once the pause has lasted `idle`.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        // An idle timeout too long to add to the clock never fires.
        let Some(due) = since.checked_add(self.idle) else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        loop {
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            // Set for an earlier pause: bytes came since.
            timer.as_mut().reset(due);
        }
    }
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let watched = &this.watch.0;
        if watched.cut_off.load(Ordering::Relaxed) {
            watched.awaiting_client.store(false, Ordering::Relaxed);
            return Poll::Ready(Some(Err(
                "the request body was cut off at the invocation's deadline".into(),
            )));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        watched
            .awaiting_client
            .store(polled.is_pending(), Ordering::Relaxed);
        let fault = match polled {
            Poll::Pending => {
                watched.reader.register(cx.waker());
                ready!(this.pause.poll_expired(cx));
                watched.awaiting_client.store(false, Ordering::Relaxed);
                BodyFault::Stalled(this.pause.idle)
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.pause.waiting_since = None;
                if let Some(data) = frame.data_ref() {
                    watched
                        .received
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(err))) => BodyFault::Broken(with_causes(&err)),
            Poll::Ready(None) => return Poll::Ready(None),
        };
        let _ = watched.fault.set(fault.clone());
        Poll::Ready(Some(Err(Box::new(fault))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length.saturating_sub(self.watch.received())),
            None => SizeHint::default(),
        }
    }
}

/// hyper's body error says only "error reading a body from connection"; its
/// causes say why (a reset, an early end of file).
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        // Wrappers (axum's error around hyper's) repeat their inner message.
        let said = inner.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn a_pause_longer_than_the_idle_timeout_is_a_stall() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let inner = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let (body, watch) = watch(inner, Some(10), Duration::from_secs(5));
        let mut stream = body.into_data_stream();
        tx.send(Ok(Bytes::from_static(b"abcd"))).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "abcd");
        // A pause shorter than the limit is fine, and bytes reset the clock.
        tokio::time::sleep(Duration::from_secs(4)).await;
        tx.send(Ok(Bytes::from_static(b"ef"))).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "ef");
        let pause = tokio::time::Instant::now();
        assert!(stream.next().await.unwrap().is_err());
        // Timed from the last bytes, not from the first pause.
        assert_eq!(pause.elapsed(), Duration::from_secs(5));
        assert!(
            matches!(watch.fault(), Some(BodyFault::Stalled(after)) if after == Duration::from_secs(5))
        );
        assert_eq!(watch.received(), 6);
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_recorded_as_broken() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "peer reset",
            )),
        ];
        let inner = Body::from_stream(futures_util::stream::iter(chunks));
        let (body, watch) = watch(inner, Some(10), Duration::from_secs(5));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(10));
        let mut stream = body.into_data_stream();
        assert_eq!(stream.next().await.unwrap().unwrap(), "abc");
        assert!(stream.next().await.unwrap().is_err());
        assert!(
            matches!(watch.fault(), Some(BodyFault::Broken(cause)) if cause.contains("peer reset"))
        );
        assert_eq!(watch.received(), 3);
    }

    #[tokio::test]
    async fn the_deadline_cuts_off_only_a_body_awaited_from_the_client() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let inner = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let (body, watch) = watch(inner, Some(10), Duration::from_secs(60));
        let mut stream = body.into_data_stream();
        tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "abc");
        // Not being read (a function slow to drain its stdin): not the client's fault.
        assert!(watch.cut_off_if_awaited(Duration::from_secs(1)).is_none());
        // Being read, with nothing from the client: the body is cut off.
        let reader = tokio::spawn(async move { stream.next().await.map(|item| item.is_err()) });
        tokio::task::yield_now().await;
        let error = watch.cut_off_if_awaited(Duration::from_secs(1));
        assert!(
            matches!(error, Some(InvokeError::BodyTimeout { .. })),
            "{error:?}"
        );
        assert_eq!(reader.await.unwrap(), Some(true));
        assert_eq!(watch.received(), 3);
        drop(tx);
    }

    #[tokio::test]
    async fn a_whole_body_has_no_fault() {
        let (body, watch) = watch(Body::from("hello"), Some(5), Duration::from_secs(5));
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(bytes, "hello");
        assert!(watch.fault().is_none());
        assert_eq!(watch.received(), 5);
    }
}
