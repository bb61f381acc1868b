//! The request body as a function receives it: always with a known length.
//!
//! RFC 3875 wants CONTENT_LENGTH for every body, but HTTP/1.1 clients may send a
//! chunked body of unknown length. Such a body is first de-chunked into a spill
//! buffer (memory up to [`SPILL_IN_MEMORY`], then an unlinked temporary file), bounded
//! by `--max-body`, so its length is known before the function starts. A body with a
//! Content-Length is streamed straight through, never held whole.

use std::io::{Seek, SeekFrom, Write};

use axum::body::{Body, HttpBody};
use bytes::Bytes;
use futures_util::StreamExt;

use super::InvokeError;
use super::body_fault::{self, BodyWatch};

/// Chunked bodies up to this size stay in memory; larger ones go to a temp file.
pub const SPILL_IN_MEMORY: usize = 256 * 1024;

pub enum RequestBody {
    Empty,
    /// Content-Length was given: streamed as it arrives, watched for the client
    /// breaking off or stalling.
    Streaming {
        length: u64,
        body: Body,
        watch: BodyWatch,
    },
    /// A chunked body, received whole.
    Spilled {
        length: u64,
        spill: Spill,
    },
}

pub enum Spill {
    Memory(Bytes),
    File(std::fs::File),
}

impl RequestBody {
    /// Classifies (and for chunked bodies, receives) the body. A client may pause
    /// up to `idle` between body bytes.
    ///
    /// # Errors
    /// [`InvokeError::BodyTooLarge`] over `max`, [`InvokeError::BodyRead`] when the
    /// client's body breaks off or the spill file cannot be written,
    /// [`InvokeError::BodyIdle`] when a chunked body stalls.
    pub async fn receive(
        body: Body,
        content_length: Option<u64>,
        max: u64,
        idle: std::time::Duration,
    ) -> Result<Self, InvokeError> {
        match content_length {
            Some(length) if length > max => Err(InvokeError::BodyTooLarge { limit: max }),
            Some(0) => Ok(RequestBody::Streaming {
                length: 0,
                body: Body::empty(),
                watch: BodyWatch::default(),
            }),
            Some(length) => {
                let (body, watch) = body_fault::watch(body, Some(length), idle);
                Ok(RequestBody::Streaming {
                    length,
                    body,
                    watch,
                })
            }
            None if body.size_hint().exact() == Some(0) => Ok(RequestBody::Empty),
            None => spill(body, max, idle).await,
        }
    }

    /// What becomes of the body as it is handed on, for a body still arriving.
    pub fn watch(&self) -> Option<BodyWatch> {
        match self {
            RequestBody::Streaming { watch, .. } => Some(watch.clone()),
            RequestBody::Empty | RequestBody::Spilled { .. } => None,
        }
    }

    /// The body as a stream again, for invokers that forward it (the warm pool).
    pub fn into_body(self) -> Body {
        match self {
            RequestBody::Empty => Body::empty(),
            RequestBody::Streaming { body, .. } => body,
            RequestBody::Spilled {
                spill: Spill::Memory(bytes),
                ..
            } => Body::from(bytes),
            RequestBody::Spilled {
                spill: Spill::File(file),
                ..
            } => Body::from_stream(tokio_util::io::ReaderStream::new(
                tokio::fs::File::from_std(file),
            )),
        }
    }

    /// A body [`RequestBody::into_body`] made that was never sent (its worker
    /// had ended), put back whole for another worker; `length` is what
    /// [`RequestBody::content_length`] said of it before, `watch` the one the
    /// invocation's record holds.
    pub fn unsent(body: Body, length: Option<u64>, watch: Option<BodyWatch>) -> Self {
        match length {
            None => RequestBody::Empty,
            Some(length) => RequestBody::Streaming {
                length,
                body,
                watch: watch.unwrap_or_default(),
            },
        }
    }

    /// CONTENT_LENGTH, when the request has a body (or said Content-Length: 0).
    pub fn content_length(&self) -> Option<u64> {
        match self {
            RequestBody::Empty => None,
            RequestBody::Streaming { length, .. } | RequestBody::Spilled { length, .. } => {
                Some(*length)
            }
        }
    }
}

async fn spill(
    body: Body,
    max: u64,
    idle: std::time::Duration,
) -> Result<RequestBody, InvokeError> {
    let (body, watch) = body_fault::watch(body, None, idle);
    let mut stream = body.into_data_stream();
    let mut memory: Vec<u8> = Vec::new();
    let mut file: Option<std::fs::File> = None;
    let mut length: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            watch
                .fault()
                .map_or_else(|| InvokeError::BodyRead(err.to_string()), InvokeError::from)
        })?;
        length += chunk.len() as u64;
        if length > max {
            return Err(InvokeError::BodyTooLarge { limit: max });
        }
        let write_error = |err: std::io::Error| {
            InvokeError::BodyRead(format!("spilling the body to a temporary file: {err}"))
        };
        match &mut file {
            Some(file) => file.write_all(&chunk).map_err(write_error)?,
            None if memory.len() + chunk.len() > SPILL_IN_MEMORY => {
                let mut spilled = tempfile::tempfile().map_err(write_error)?;
                spilled.write_all(&memory).map_err(write_error)?;
                spilled.write_all(&chunk).map_err(write_error)?;
                memory = Vec::new();
                file = Some(spilled);
            }
            None => memory.extend_from_slice(&chunk),
        }
    }
    let spill = match file {
        Some(mut file) => {
            file.seek(SeekFrom::Start(0))
                .map_err(|err| InvokeError::BodyRead(err.to_string()))?;
            Spill::File(file)
        }
        None => Spill::Memory(Bytes::from(memory)),
    };
    Ok(RequestBody::Spilled { length, spill })
}
