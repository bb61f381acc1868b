//! How a response body that fails midway reaches the client: as what was sent,
//! then a cut, never as nothing.
//!
//! hyper buffers the head and body chunks and writes them out when the body has
//! nothing more ready. A body error drops the connection at once, with that buffer
//! unwritten. So a function whose last output and failure arrive in the same
//! wakeup (a Lambda runtime that sends a chunk and its error trailers in one
//! write, a CGI program killed at its deadline right after it printed) lost its
//! status and bytes: the client saw a connection closed before any response,
//! indistinguishable from a server crash. Every invoker's body can fail this way,
//! so the fix is here, once, rather than in each of them.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;

/// Wraps a response body so that an error is reported to hyper only after it
/// has had the chance to write out what came before.
pub fn after_flush(body: Body) -> Body {
    if http_body::Body::is_end_stream(&body) {
        return body;
    }
    Body::new(FlushBeforeCut {
        inner: body,
        held: None,
    })
}

struct FlushBeforeCut {
    inner: Body,
    /// An error seen and not yet reported: the poll that saw it answered
    /// `Pending`, which makes hyper flush its buffer before it polls again.
    held: Option<axum::Error>,
}

impl http_body::Body for FlushBeforeCut {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(error) = self.held.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(error))) => {
                self.held = Some(error);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn an_error_comes_after_a_pending_poll_and_the_data_before_it() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"begun")),
            Err(std::io::Error::other("cut")),
        ];
        let mut body = after_flush(Body::from_stream(futures_util::stream::iter(chunks)));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let first = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(Ok(_)))));
        // The error is ready, but hyper is first given the chance to flush.
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(!body.is_end_stream());
        let error = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(matches!(error, Poll::Ready(Some(Err(_)))));
        // A whole body is passed through as it is.
        let whole = after_flush(Body::from("whole"));
        assert_eq!(whole.collect().await.unwrap().to_bytes(), "whole");
    }
}
