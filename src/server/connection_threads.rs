//! Connections are dealt out, round robin, to one single-threaded runtime per
//! core, and each stays on its thread: its requests, the functions they start,
//! their pipes and pidfds are all driven by that one thread.
//!
//! Why not tokio's work-stealing runtime, which the rest of watchdog runs on:
//! measured on the static C function, a request's steps hopped between its
//! workers (whichever was parked in epoll took the next wakeup, and the others
//! were woken to look for work), which cost CPU and latency on every request.
//! Two one-thread servers side by side did 5% more requests per second than one
//! two-worker server at 16 connections and 18% more at 256. The accept loop,
//! reloads, cron and the orphan sweep stay on the main runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper_util::server::graceful::Watcher;
use tokio::sync::mpsc;

/// An accepted connection on its way to its thread.
pub struct Accepted {
    pub stream: std::net::TcpStream,
    pub remote: SocketAddr,
    /// Lets graceful shutdown reach the connection wherever it runs.
    pub watcher: Watcher,
}

/// The connection threads. Dropping this ends them once their connections have
/// closed.
pub struct ConnectionThreads {
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    next: AtomicUsize,
}

impl ConnectionThreads {
    /// Starts one thread per core; `serve` runs each connection, on its thread's
    /// runtime.
    ///
    /// # Errors
    /// When a thread or its runtime cannot be started.
    pub fn start<F, Fut>(serve: F) -> std::io::Result<Self>
    where
        F: Fn(Accepted) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let count = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let mut queues = Vec::with_capacity(count);
        for index in 0..count {
            let (queue, mut arrivals) = mpsc::unbounded_channel::<Accepted>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let serve = serve.clone();
            std::thread::Builder::new()
                .name(format!("watchdog-conn-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(accepted) = arrivals.recv().await {
                            tokio::spawn(serve(accepted));
                        }
                    });
                })?;
            queues.push(queue);
        }
        Ok(Self {
            queues,
            next: AtomicUsize::new(0),
        })
    }

    /// Hands a connection to the next thread in turn.
    pub fn hand(&self, accepted: Accepted) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        if let Err(mpsc::error::SendError(accepted)) = self.queues[index].send(accepted) {
            // The thread is gone (it panicked): the connection is closed rather
            // than left hanging.
            tracing::warn!(remote = %accepted.remote, "a connection thread has stopped; closing the connection");
        }
    }
}
