//! One log event per invocation (CONTRACT §7), written when the invocation is over.
//!
//! The record travels with the invocation, through whichever invoker runs it, and is
//! filled in as facts become known (pid, status, exit). Its `Drop` writes the event,
//! so every path, including errors and client disconnects, logs exactly once. It
//! also carries the invocation's concurrency slot, released at the same moment.

use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

#[derive(Debug)]
pub struct InvocationRecord {
    pub request_id: String,
    pub method: String,
    pub route: String,
    pub file: String,
    pub pid: Option<u32>,
    pub status: Option<u16>,
    /// `exit 0`, `exit 3`, `signal 9`.
    pub exit: Option<String>,
    pub timed_out: bool,
    pub client_gone: bool,
    pub queue_wait_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub started: Instant,
    pub slot: Option<OwnedSemaphorePermit>,
}

impl InvocationRecord {
    pub fn new(request_id: &str, method: &str) -> Self {
        Self {
            request_id: request_id.to_owned(),
            method: method.to_owned(),
            route: String::new(),
            file: String::new(),
            pid: None,
            status: None,
            exit: None,
            timed_out: false,
            client_gone: false,
            queue_wait_ms: 0,
            bytes_in: 0,
            bytes_out: 0,
            started: Instant::now(),
            slot: None,
        }
    }
}

impl Drop for InvocationRecord {
    fn drop(&mut self) {
        if self.file.is_empty() {
            // Never reached a function (404, bad path): the HTTP layer logs those.
            return;
        }
        tracing::info!(
            target: "watchdog::invocation",
            request_id = %self.request_id,
            method = %self.method,
            route = %self.route,
            file = %self.file,
            pid = self.pid,
            status = self.status,
            exit = self.exit.as_deref(),
            timed_out = self.timed_out,
            client_gone = self.client_gone,
            queue_wait_ms = self.queue_wait_ms,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            "invocation"
        );
    }
}
