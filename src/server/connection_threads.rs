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
//!
//! Each thread owns stdio slots ([`StdioSlots`]), so the functions it starts
//! do not copy watchdog's descriptor table, whose size grows with the number of
//! open connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::server::graceful::Watcher;
use tokio::sync::mpsc;

use crate::process::spawn::StdioSlots;

/// How many connection threads there are: one per core.
pub fn count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// An accepted connection on its way to its thread.
pub struct Accepted {
    pub stream: std::net::TcpStream,
    pub remote: SocketAddr,
    /// Lets graceful shutdown reach the connection wherever it runs.
    pub watcher: Watcher,
}

/// How long a stopping thread's runtime waits for blocking work it started.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(100);

/// The connection threads; [`ConnectionThreads::stop`] ends them.
pub struct ConnectionThreads {
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    threads: Vec<std::thread::JoinHandle<()>>,
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
        let count = count();
        let mut queues = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (queue, mut arrivals) = mpsc::unbounded_channel::<Accepted>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let serve = serve.clone();
            // Reserved here, before any connection is accepted, so the numbers
            // are low: a function started from the thread copies only the part
            // of the descriptor table below them.
            let slots = StdioSlots::reserve()?;
            let thread = std::thread::Builder::new()
                .name(format!("watchdog-conn-{index}"))
                .spawn(move || {
                    slots.adopt();
                    super::admission::enter_lane(index);
                    runtime.block_on(async move {
                        let _pacer = tokio::spawn(keep_a_timer_pending());
                        while let Some(accepted) = arrivals.recv().await {
                            tokio::spawn(serve(accepted));
                        }
                    });
                    // Drops what is still on this runtime, here, so its cleanup
                    // runs (a driver's Drop kills its group).
                    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
                })?;
            queues.push(queue);
            threads.push(thread);
        }
        Ok(Self {
            queues,
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// Ends the threads once the server has drained: no connection arrives any
    /// more, and each runtime drops what is left on it (connections past the
    /// drain timeout, warm-pool plumbing, invocations that outlived the kill
    /// grace). Waits up to `limit` for that, so it happens before watchdog exits.
    pub async fn stop(self, limit: Duration) {
        let Self {
            queues, threads, ..
        } = self;
        drop(queues);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        if tokio::time::timeout(limit, joined).await.is_err() {
            tracing::warn!(?limit, "connection threads still busy at exit");
        }
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

/// Keeps a timer due within [`PACE`] on the thread, for as long as it runs.
///
/// tokio's timer wheel writes to the runtime's eventfd whenever a new timer is due
/// before the earliest one the thread parked with, even when the timer is set by
/// the thread itself, awake: a write and an extra event per request, as each
/// request arms timers (hyper's header-read timeout, the invocation's deadline)
/// seconds away. With a timer always due within a second, they come later than it.
/// The cost is one wakeup per second of an idle thread.
async fn keep_a_timer_pending() {
    loop {
        tokio::time::sleep(PACE).await;
    }
}

/// See [`keep_a_timer_pending`].
const PACE: Duration = Duration::from_secs(1);
