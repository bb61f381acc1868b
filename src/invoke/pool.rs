//! The keep-warm pool (CONTRACT §4): functions marked `warm` are started once and
//! reused. One [`Pool`] per function version; the protocol (HTTP on $PORT, or the
//! AWS Lambda Runtime API) decides how a request reaches a worker.
//!
//! Supervision: workers start lazily (or `min` of them at once), at most `max`
//! run, requests beyond that wait (the wait counts against the deadline), idle
//! workers are stopped after `idle_timeout` down to `min`, a worker is recycled
//! after `max_requests`, a request that times out kills its worker's process group
//! and the worker is replaced, a crash is restarted with backoff, and five crashes
//! in a minute mark the function crashed (503) until its file changes, which
//! recycles the pool.

pub mod deadline_guard;
pub mod function_name;
pub mod http;
pub mod lambda;
pub mod policy;
pub mod port;
pub mod runtime_peer;
pub mod trace;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use super::{Invocation, InvokeError, InvokeFuture, Invoker};
use crate::config::Settings;
use crate::config::file::WarmProtocol;
use crate::limits::Limiter;
use crate::observability::metrics;
use crate::observability::record::{InvocationRecord, describe_exit};
use crate::routes::Function;
use crate::server::admission::Held;
pub use policy::WarmConfig;
pub use worker::Worker;

/// How often idle workers are checked against their idle timeout.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// How long a request whose worker failed waits for the kernel to show that a
/// resource limit killed it (see [`Lease::blame`]). Its death is in flight by
/// then: the broken connection was its files being closed as it exited.
const LIMIT_KILL_SETTLE: Duration = Duration::from_millis(50);

/// How long a worker that broke its connection off without answering is given
/// to show that it is ending, before it is judged alive and kept (see
/// [`Lease::ended_without_answering`]). A dying process closes its
/// connections as it exits, a moment before the kernel shows it ended, longer
/// on a busy machine: judged at once, a crashed worker was kept, and the next
/// request got its dead port (a second 502).
const BREAK_SETTLE: Duration = Duration::from_millis(20);

/// How many workers in a row may end before taking one request ([`Failed::NotTaken`])
/// before it fails: each is replaced by a new one, and one that stops
/// listening but runs on is judged only after `--kill-grace`, so a function
/// whose workers all do so would start worker after worker until the
/// deadline.
const NOT_TAKEN_LIMIT: u32 = 3;

/// How long a worker the kernel shows ended is given for its exit watch to
/// have its status ([`Lease::ended_without_answering`]): its output has
/// closed and it is being reaped, milliseconds, longer on a loaded machine.
/// Only a request its worker dropped waits for it.
const EXIT_STATUS_SETTLE: Duration = Duration::from_millis(200);

/// Runs warm functions; one pool per function file and version.
pub struct PoolInvoker {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    limiter: Arc<Limiter>,
    settings: Arc<Settings>,
    /// Workers being stopped in the background, by every pool (retired ones
    /// too), so shutdown can give each its `--kill-grace` before watchdog exits.
    stopping: TaskTracker,
}

impl PoolInvoker {
    pub fn new(settings: Arc<Settings>, limiter: Arc<Limiter>) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            limiter,
            settings,
            stopping: TaskTracker::new(),
        }
    }

    /// Starts the pools of the functions that keep `min` workers, so those are
    /// running before the first request (CONTRACT §4). Called at start-up and after
    /// every reload: a changed file's new pool starts its own.
    pub fn prestart(&self, table: &crate::routes::RouteTable) {
        // A file that is gone, or no longer warm, has its pool retired: its idle
        // workers stop now, busy ones when their request ends.
        let warm: std::collections::HashSet<&str> = table
            .functions
            .iter()
            .filter(|function| function.settings.warm.is_some())
            .map(|function| function.file.relative.as_str())
            .collect();
        let gone: Vec<Arc<Pool>> = {
            let mut pools = self
                .pools
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let keys: Vec<String> = pools
                .keys()
                .filter(|key| !warm.contains(key.as_str()))
                .cloned()
                .collect();
            keys.iter().filter_map(|key| pools.remove(key)).collect()
        };
        for pool in gone {
            pool.retire();
        }
        for function in &table.functions {
            let keeps = function.settings.warm.as_ref().and_then(|warm| warm.min);
            if keeps.is_some_and(|min| min > 0) {
                self.pool(function);
            }
        }
    }

    /// The pool for this version of the function, replacing (and retiring) the
    /// pool of an older version (one from an older table).
    fn pool(&self, function: &Arc<Function>) -> Arc<Pool> {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = function.file.relative.clone();
        // A request routed on a table older than the pool's (a reload came while
        // it waited for a slot or its body) is served by the newer version,
        // which is what the file holds now, instead of flipping the pool back.
        if let Some(pool) = pools.get(&key)
            && (pool.version == function.file.version
                || pool.function.generation > function.generation)
        {
            return Arc::clone(pool);
        }
        let pool = Pool::start(
            Arc::clone(function),
            Arc::clone(&self.settings),
            Arc::clone(&self.limiter),
            self.stopping.clone(),
        );
        if let Some(old) = pools.insert(key, Arc::clone(&pool)) {
            old.retire();
        }
        pool
    }

    /// Stops every worker (shutdown).
    pub async fn shutdown(&self) {
        let pools: Vec<Arc<Pool>> = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .map(|(_, pool)| pool)
            .collect();
        // Awaited, not left to run in the background as a reload does: watchdog
        // exits next, and a worker (or a helper it started) must not outlive it.
        for pool in pools {
            pool.mark_retired();
            pool.stop_idle_now().await;
        }
        // Those stopped in the background (a request stuck at the drain timeout,
        // a worker recycled or crashed a moment ago) get their grace as well,
        // instead of the SIGKILL of a runtime dropping them.
        self.stopping.close();
        self.stopping.wait().await;
    }
}

impl Invoker for PoolInvoker {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        let pool = self.pool(&invocation.route.function);
        Box::pin(async move {
            let mut invocation = invocation;
            // A Lambda event carries the whole body: it is received before a
            // worker is taken, so a slow upload holds none.
            let event = match pool.config.protocol {
                WarmProtocol::Lambda => Some(lambda::receive_event(&mut invocation).await?),
                WarmProtocol::Http => None,
            };
            let mut not_taken = 0;
            loop {
                // A client that leaves while its request waits for a worker
                // (a busy pool, a cold start) drops this future: its log line
                // says so, as one that leaves during the answer.
                invocation.record.client_gone = true;
                let queue_wait = &mut invocation.record.queue_wait;
                let admitted = Admitted {
                    ticket: &invocation.ticket,
                    slots: &mut invocation.record.slots,
                };
                // Still waiting for a worker when the drain timeout ends: a 503
                // too, as for a request whose worker had not answered.
                // Biased: a worker at hand (the usual case) is taken without
                // registering with the shutdown token first.
                let acquired = tokio::select! {
                    biased;
                    acquired = pool.acquire(invocation.deadline, queue_wait, admitted) => acquired,
                    () = invocation.stop.cancelled() => {
                        invocation.record.client_gone = false;
                        return Err(invocation.stopped_by_shutdown());
                    }
                };
                invocation.record.client_gone = false;
                let lease = acquired.map_err(|error| invocation.record.failed(error))?;
                if pool.config.protocol == WarmProtocol::Lambda {
                    // The invocation's time starts once its runtime is up, as
                    // on Lambda ([`Pool::acquire`]).
                    invocation.extend_deadline(lease.init);
                }
                let answered = match &event {
                    None => http::forward(lease, invocation).await,
                    Some(event) => lambda::invoke(lease, invocation, event.clone()).await,
                };
                match answered {
                    Ok(reply) => return Ok(reply),
                    Err(Failed::Error(error)) => return Err(error),
                    // The request never started: on to another worker, within the
                    // same deadline (an exit that is not a retirement counts
                    // toward the crash limit).
                    // Back to the pool's queue, which gives up its server-wide
                    // slot while it waits again ([`Pool::acquire`]).
                    Err(Failed::NotTaken(returned)) => invocation = *returned,
                }
                not_taken += 1;
                if not_taken == NOT_TAKEN_LIMIT {
                    let error = InvokeError::WorkerFailed {
                        file: invocation.route.function.file.relative.clone(),
                        cause: format!(
                            "the request reached no worker in {NOT_TAKEN_LIMIT} tries: each had ended, stopped accepting connections, or closed its connection before the request went out"
                        ),
                    };
                    return Err(invocation.record.failed(error));
                }
            }
        })
    }
}

/// How a request on a lent worker ended, when it did not end in a reply.
pub enum Failed {
    Error(InvokeError),
    /// The worker ended before it took the request: it had answered its last
    /// one and then exited (a server that retires itself after N requests; the
    /// official Lambda Python client, after a rejected answer). The request
    /// goes to another worker instead of failing with this one: real Lambda
    /// only hands an event to a runtime that asked for one, and a proxy
    /// resends a request that never reached its upstream.
    NotTaken(Box<Invocation>),
}

impl From<InvokeError> for Failed {
    fn from(error: InvokeError) -> Self {
        Self::Error(error)
    }
}

/// How the wait for a lent worker's answer ended.
pub enum Waited<T> {
    Answered(T),
    /// The request's deadline came first.
    TimedOut,
    /// Watchdog's shutdown stopped what still ran at the end of the drain timeout.
    Stopped,
}

/// Waits for `exchange` (a request on its way to a lent worker, and the answer)
/// until the invocation's deadline or watchdog's shutdown. Until the answer comes
/// the client counts as gone: one that leaves drops this future, and the
/// invocation's log line says so.
pub async fn await_answer<F: std::future::Future>(
    invocation: &mut Invocation,
    exchange: F,
) -> Waited<F::Output> {
    let deadline = invocation.deadline;
    let stop = &invocation.stop;
    let waited = async {
        tokio::select! {
            biased;
            answered = tokio::time::timeout_at(deadline, exchange) => {
                answered.map_or(Waited::TimedOut, Waited::Answered)
            }
            () = stop.cancelled() => Waited::Stopped,
        }
    };
    let kept_if_left = invocation.route.function.file.runner.node_module;
    invocation
        .record
        .awaiting_answer(waited, kept_if_left)
        .await
}

/// The warm workers of one version of one function.
pub struct Pool {
    pub function: Arc<Function>,
    pub config: WarmConfig,
    pub version: u64,
    settings: Arc<Settings>,
    limiter: Arc<Limiter>,
    /// One permit per worker that may exist; a request holds one while it runs.
    capacity: Arc<Semaphore>,
    idle: Mutex<Vec<Worker>>,
    crashes: Mutex<policy::CrashRecord>,
    /// Set when a newer version replaced this pool: workers are stopped, not reused.
    retired: std::sync::atomic::AtomicBool,
    /// The invoker's: see [`PoolInvoker::shutdown`].
    stopping: TaskTracker,
}

/// A worker lent to one request, with the right to hold a place in the pool.
pub struct Lease {
    pub worker: Option<Worker>,
    pub pool: Arc<Pool>,
    pub cold: bool,
    /// How long the request waited for its worker to start (zero when warm).
    pub init: Duration,
    _permit: OwnedSemaphorePermit,
}

/// A worker's start, begun for a request that may stop waiting for it.
/// Dropped while the start still runs (the request timed out, or its client
/// left and the request's future was dropped), it lets the start finish
/// apart: a worker that comes up is kept idle for the next request, one that
/// fails counts as a crash. Dropping the start's task handle instead would
/// drop the new worker with the result nobody took, killing it; the next
/// request would pay the whole start again.
struct StartOutlivingItsRequest {
    pool: Arc<Pool>,
    started: Instant,
    start: Option<(
        tokio::task::JoinHandle<Result<Worker, InvokeError>>,
        OwnedSemaphorePermit,
    )>,
}

impl StartOutlivingItsRequest {
    /// The start ended while its request waited: the place in the pool goes
    /// to the request.
    fn take(&mut self) -> OwnedSemaphorePermit {
        let (_, permit) = self.start.take().expect("the start is taken once");
        permit
    }
}

impl Drop for StartOutlivingItsRequest {
    fn drop(&mut self) {
        let Some((start, permit)) = self.start.take() else {
            return;
        };
        // Outside a runtime there is no next request: the start's task is
        // dropped with its runtime, and the worker with it. So it is, spawned
        // below, when the runtime is shutting down (watchdog is): a worker
        // still booting is killed outright, as a start that gives up is,
        // since it never served.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::clone(&self.pool);
        let started = self.started;
        runtime.spawn(async move {
            // The place in the pool stays taken until the start is over.
            let _permit = permit;
            match start.await {
                Ok(Ok(mut worker)) => {
                    metrics::cold_start(&pool.function.pattern, started.elapsed());
                    // Idle from now, not from its spawn: a start longer than
                    // `idle_timeout` would have it stopped at the next check.
                    worker.last_used = Instant::now();
                    pool.keep_idle(worker);
                }
                Ok(Err(err)) => {
                    // Its request has had its answer (a 504), or its client
                    // left: this is the only word of why the start failed.
                    tracing::warn!(route = %pool.function.pattern, error = %err, "a warm worker failed to start");
                    pool.start_failed(&err);
                }
                Err(_) => {}
            }
        });
    }
}

/// How a request left its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served: the worker can take the next request.
    Served,
    /// The request timed out: kill and replace.
    Stuck,
    /// The worker died or broke the protocol.
    Crashed,
    /// The request failed in a way that says nothing about the worker's health:
    /// the client broke off or stalled its upload, or the worker's answer could
    /// not be read. The worker is kept (its connection is closed), and its crash
    /// count left as it was.
    Abandoned,
    /// The worker closed the connection in the middle of its answer. If it has
    /// ended, it crashed. If it still runs, it cut the answer short on purpose:
    /// the way a server tells its client that a handler failed after the head
    /// went out (Express does; so does the Node adapter). It is kept.
    CutShort,
    /// The worker closed the connection instead of answering. If it has ended, it
    /// crashed. If it still runs, it is kept, unless it does so
    /// [`policy::BROKEN_OFF_LIMIT`] times in a row: a worker that answers nothing.
    BrokeOff,
    /// The worker did not take the request ([`Failed::NotTaken`]): it had
    /// ended (judged as if found ended while idle), or it accepted the
    /// connection and closed it before the request went out (kept, as one
    /// that closed a connection without answering, but not counted as having
    /// served).
    NotTaken,
    /// The worker refused the connection: it no longer listens. Judged once
    /// it ends ([`Pool::judge_once_ended`]).
    Refused,
}

/// Where a request's server-wide slot comes from once it has a place in the
/// pool ([`crate::server::admission::Ticket`]), and where it goes: the
/// invocation's record, which frees it with the rest.
pub struct Admitted<'a> {
    pub ticket: &'a Option<crate::server::admission::Ticket>,
    pub slots: &'a mut Vec<Held>,
}

impl Pool {
    fn start(
        function: Arc<Function>,
        settings: Arc<Settings>,
        limiter: Arc<Limiter>,
        stopping: TaskTracker,
    ) -> Arc<Self> {
        let config = function
            .settings
            .warm
            .as_ref()
            .map(WarmConfig::from_section)
            .unwrap_or_else(|| {
                WarmConfig::from_section(&crate::config::file::WarmSection {
                    protocol: WarmProtocol::Http,
                    min: None,
                    max: None,
                    idle_timeout: None,
                    max_requests: None,
                })
            });
        let pool = Arc::new(Self {
            version: function.file.version,
            capacity: Arc::new(Semaphore::new(config.max)),
            config,
            function,
            settings,
            limiter,
            idle: Mutex::new(Vec::new()),
            crashes: Mutex::new(policy::CrashRecord::default()),
            retired: std::sync::atomic::AtomicBool::new(false),
            stopping,
        });
        tracing::info!(
            route = %pool.function.pattern,
            protocol = ?pool.config.protocol,
            min = pool.config.min,
            max = pool.config.max,
            "warm pool created"
        );
        crate::observability::metrics::pool_created(&pool.function.pattern);
        Arc::clone(&pool).supervise();
        pool
    }

    /// Starts `min` workers and keeps idle ones within their idle timeout.
    fn supervise(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        tokio::spawn(async move {
            loop {
                let Some(pool) = weak.upgrade() else { return };
                if pool.is_retired() {
                    return;
                }
                pool.reap_idle().await;
                pool.fill_to_min().await;
                drop(pool);
                tokio::time::sleep(IDLE_CHECK).await;
            }
        });
    }

    fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// From now on a worker given back is stopped, not lent again.
    fn mark_retired(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Retires the pool and stops its idle workers in the background.
    fn retire(&self) {
        self.mark_retired();
        let idle: Vec<Worker> = self.lock_idle().drain(..).collect();
        for worker in idle {
            self.stop_in_background(worker);
        }
    }

    /// Stops the idle workers, all at once, and waits until they are gone.
    async fn stop_idle_now(&self) {
        let idle: Vec<Worker> = self.lock_idle().drain(..).collect();
        let grace = self.settings.kill_grace;
        futures_util::future::join_all(idle.into_iter().map(|worker| worker.stop(grace))).await;
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_crashes(&self) -> std::sync::MutexGuard<'_, policy::CrashRecord> {
        self.crashes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn reap_idle(&self) {
        let now = Instant::now();
        // Idled out, and found dead.
        let (expired, died): (Vec<Worker>, Vec<Worker>) = {
            let mut idle = self.lock_idle();
            let in_use = self.config.max - self.capacity.available_permits();
            let mut keep = self.config.min.saturating_sub(in_use);
            let mut expired = Vec::new();
            // Most recently used last: keep those, expire the oldest first.
            idle.sort_by_key(|w| w.last_used);
            let mut kept = Vec::new();
            let mut died = Vec::new();
            for worker in idle.drain(..).rev() {
                if worker.has_exited() {
                    died.push(worker);
                } else if keep > 0
                    || now.duration_since(worker.last_used) < self.config.idle_timeout
                {
                    keep = keep.saturating_sub(1);
                    kept.push(worker);
                } else {
                    expired.push(worker);
                }
            }
            kept.reverse();
            *idle = kept;
            (expired, died)
        };
        // Counted as an idle worker taken for a request would be: one that died
        // as it broke off its last answer, before its exit was seen, is a crash.
        for worker in died {
            self.ended_while_idle(worker);
        }
        for worker in expired {
            tracing::info!(route = %self.function.pattern, pid = worker.pid, "stopping an idle worker");
            worker.stop(self.settings.kill_grace).await;
        }
        metrics::pool_workers(
            &self.function.pattern,
            self.lock_idle().len(),
            self.config.max - self.capacity.available_permits(),
        );
    }

    async fn fill_to_min(self: &Arc<Self>) {
        // A pool retired while one of its starts was under way (a file saved
        // twice in quick succession) stops here: its new worker went straight
        // to recycling, and the count never reached `min`, so it started
        // another, and another, for good.
        while !self.is_retired()
            && self.lock_idle().len() + (self.config.max - self.capacity.available_permits())
                < self.config.min
        {
            {
                let mut crashes = self.lock_crashes();
                let now = Instant::now();
                // Tried again on a later round once the backoff is over.
                if crashes.given_up(now) || !crashes.restart_in(now).is_zero() {
                    return;
                }
            }
            let Ok(permit) = Arc::clone(&self.capacity).try_acquire_owned() else {
                return;
            };
            let allowance = policy::start_allowance(self.function.settings.timeout);
            match self
                .start_worker(tokio::time::Instant::now() + allowance)
                .await
            {
                Ok(worker) => self.keep_idle(worker),
                Err(err) => {
                    tracing::warn!(route = %self.function.pattern, error = %err, "could not pre-start a worker");
                    // Counted like any failed start, so a function that cannot start
                    // ends in the crash-loop 503 instead of being retried forever.
                    self.start_failed(&err);
                    drop(permit);
                    return;
                }
            }
            drop(permit);
        }
    }

    /// Takes an idle worker or starts one, waiting for room when `max` are busy.
    /// The wait for room, and for a crash backoff, is added to `queue_wait`
    /// (a worker's start is not: that is the cold start).
    ///
    /// # Errors
    /// [`InvokeError::Crashed`] when the function crashed too often,
    /// [`InvokeError::RestartBackoff`] when the next start is later than the
    /// request can wait, [`InvokeError::Overloaded`] when the queue timeout
    /// passes, [`InvokeError::NoWorkerInTime`] when the request's own time does,
    /// or why a new worker could not start.
    pub async fn acquire(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
        queue_wait: &mut Duration,
        admitted: Admitted<'_>,
    ) -> Result<Lease, InvokeError> {
        // A request back from a worker that never took it waits again without
        // its server-wide slot, as the first time: held, it could keep the
        // request that took the place it gave back from running.
        if admitted.ticket.is_some() {
            admitted.slots.retain(|held| !held.is_server());
        }
        let file = &self.function.file.relative;
        let given_up = {
            let mut crashes = self.lock_crashes();
            let left = crashes.given_up_for(Instant::now());
            left.map(|left| (left, crashes.last_cause().map(str::to_owned)))
        };
        if let Some((left, last)) = given_up {
            return Err(InvokeError::Crashed {
                file: file.clone(),
                // Rounded up: a client that retries on time finds it tried again.
                seconds: left.as_secs() + 1,
                last: last.unwrap_or_else(|| "not recorded".into()),
            });
        }
        let queued = tokio::time::Instant::now();
        let give_up = (queued + self.settings.queue_timeout).min(deadline);
        let permit = tokio::time::timeout_at(give_up, Arc::clone(&self.capacity).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        *queue_wait += queued.elapsed();
        let Some(permit) = permit else {
            // The request's own time ran out first: a timeout, not a full queue.
            if give_up == deadline {
                return Err(InvokeError::NoWorkerInTime {
                    file: file.clone(),
                    after: self.function.settings.timeout,
                    why: crate::invoke::WorkerWait::AllBusy,
                });
            }
            self.function.metrics.count_queue_rejected();
            return Err(InvokeError::Overloaded {
                seconds: crate::invoke::retry_after_seconds(self.settings.queue_timeout),
            });
        };
        // Placed: now the server-wide slot, which the wait for a place did not
        // hold (a request queued for a busy pool kept other routes waiting).
        if let Some(ticket) = admitted.ticket.as_ref() {
            let queued = tokio::time::Instant::now();
            let slot = ticket.admit().await;
            *queue_wait += queued.elapsed();
            match slot {
                Ok(slot) => admitted.slots.push(slot),
                Err(refused) => {
                    self.function.metrics.count_queue_rejected();
                    return Err(refused);
                }
            }
        }
        loop {
            let candidate = self.lock_idle().pop();
            match candidate {
                Some(worker) if worker.has_exited() => self.ended_while_idle(worker),
                Some(worker) => {
                    self.function.metrics.warm_hit();
                    self.grant_cpu(&worker);
                    return Ok(Lease {
                        worker: Some(worker),
                        pool: Arc::clone(self),
                        cold: false,
                        init: Duration::ZERO,
                        _permit: permit,
                    });
                }
                None => break,
            }
        }
        let backoff = self.lock_crashes().restart_in(Instant::now());
        if !backoff.is_zero() {
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(InvokeError::RestartBackoff {
                    file: file.clone(),
                    // Rounded up: a client that retries on time finds it started.
                    seconds: backoff.as_secs() + 1,
                });
            }
            tracing::info!(route = %self.function.pattern, ?backoff, "waiting before restarting a crashed worker");
            tokio::time::sleep(backoff).await;
            *queue_wait += backoff;
        }
        let started = Instant::now();
        // A start is judged on its own time (the function's timeout, at least
        // Lambda's init allowance), not on what is left of a request that may
        // have waited in the queue: it runs apart, and outlives the request if
        // need be.
        let timeout = self.function.settings.timeout;
        let own_deadline = tokio::time::Instant::now() + policy::start_allowance(timeout);
        let start = tokio::spawn({
            let pool = Arc::clone(self);
            async move { pool.start_worker(own_deadline).await }
        });
        // Lambda's init has a budget of its own: there the function's timeout
        // starts when the runtime takes the event, so a 7 s init does not fail
        // a 5 s function. The request waits for the start as long as the start
        // may take, and its deadline moves on by the wait ([`Lease::init`]).
        // An HTTP worker's start counts against the request's time.
        let wait_until = match self.config.protocol {
            WarmProtocol::Lambda => deadline.max(own_deadline),
            WarmProtocol::Http => deadline,
        };
        // Whatever ends the wait first (the request's time, or its client
        // leaving, which drops this future), a start that outlives it is
        // finished apart, and its worker kept for the next request.
        let mut start = StartOutlivingItsRequest {
            pool: Arc::clone(self),
            started,
            start: Some((start, permit)),
        };
        let waited = {
            let (handle, _) = start
                .start
                .as_mut()
                .expect("the start is held until it is taken");
            tokio::time::timeout_at(wait_until, handle).await
        };
        let (worker, permit) = match waited {
            Ok(ended) => {
                let permit = start.take();
                match ended {
                    Ok(Ok(worker)) => (worker, permit),
                    Ok(Err(err)) => {
                        self.start_failed(&err);
                        return Err(err);
                    }
                    Err(_) => return Err(InvokeError::Internal),
                }
            }
            // The request's time ran out first: its timeout (the start goes on
            // as the guard is dropped).
            Err(_) => {
                return Err(InvokeError::NoWorkerInTime {
                    file: file.clone(),
                    after: timeout,
                    why: crate::invoke::WorkerWait::Starting,
                });
            }
        };
        metrics::cold_start(&self.function.pattern, started.elapsed());
        self.grant_cpu(&worker);
        Ok(Lease {
            worker: Some(worker),
            pool: Arc::clone(self),
            cold: true,
            init: started.elapsed(),
            _permit: permit,
        })
    }

    async fn start_worker(&self, deadline: tokio::time::Instant) -> Result<Worker, InvokeError> {
        crate::invoke::file_busy::retry_while_busy(deadline, || async move {
            match self.config.protocol {
                WarmProtocol::Http => http::start(&self.function, &self.limiter, deadline).await,
                WarmProtocol::Lambda => {
                    lambda::start(&self.function, &self.limiter, deadline).await
                }
            }
        })
        .await
    }

    /// Counts a start that failed toward the crash limit, unless its file
    /// was being written ([`InvokeError::FileBusy`]): a save, not a function
    /// that cannot start. A file still empty after the retry window
    /// ([`InvokeError::FileEmpty`]) counts: it may stay empty (`touch`), and
    /// `min` workers would be tried again forever without the backoff.
    fn start_failed(&self, err: &InvokeError) {
        if !matches!(err, InvokeError::FileBusy { .. }) {
            crate::observability::metrics::worker_crashed(&self.function.pattern);
            self.lock_crashes()
                .crashed(Instant::now(), format!("its start failed: {err}"));
        }
    }

    /// A worker found ended between requests. One that had served and exited
    /// with status 0 retired itself: a new one is started when needed, with
    /// no backoff and nothing counted against the function. Any other end is
    /// a crash, one that served nothing included (else a worker that exits
    /// as soon as it is ready would be restarted forever, never backing off).
    fn ended_while_idle(&self, worker: Worker) {
        if worker.retired() {
            return self.retired_itself(worker);
        }
        self.crashed(worker, "exited while idle");
    }

    fn retired_itself(&self, worker: Worker) {
        tracing::info!(route = %self.function.pattern, pid = worker.pid, served = worker.served, "a warm worker exited on its own (exit 0) after serving; not counted as a crash");
        self.stop_in_background(worker);
    }

    /// A worker that ended during a request. A limit the function was given
    /// that stopped it did its job: the pool does not back off from starting
    /// the next worker, as it does for a crash loop. (Killed while idle, it
    /// counts as a crash: the request that brings a new one did not cause it.)
    fn ended_in_request(&self, worker: Worker, why: &str) {
        if let Some((limit, _)) = worker.limit_that_killed_now() {
            tracing::info!(route = %self.function.pattern, pid = worker.pid, limit, "a warm worker was stopped by its limit; the next request gets a new one");
            return self.stop_in_background(worker);
        }
        self.crashed(worker, why);
    }

    fn crashed(&self, worker: Worker, why: &str) {
        self.count_crash(&worker, why);
        self.stop_in_background(worker);
    }

    /// Logs a worker's crash and counts it toward the crash limit.
    fn count_crash(&self, worker: &Worker, why: &str) {
        let exit = worker.describe_end();
        tracing::warn!(route = %self.function.pattern, pid = worker.pid, why, exit, "worker crashed");
        crate::observability::metrics::worker_crashed(&self.function.pattern);
        let given_up = {
            let mut crashes = self.lock_crashes();
            crashes.crashed(Instant::now(), format!("a worker {why} ({exit})"));
            crashes.given_up(Instant::now())
        };
        if given_up {
            tracing::error!(
                route = %self.function.pattern,
                "worker crashed 5 times within 60 s: answering 503 until a minute has passed since the first of them, or the file changes"
            );
        }
    }

    /// Stops a worker as CONTRACT §3 stops a function (SIGTERM to its group,
    /// SIGKILL after `--kill-grace`) without holding up the request or the
    /// pool; shutdown waits for it.
    fn stop_in_background(&self, worker: Worker) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let stop = worker.stop(self.settings.kill_grace);
                drop(self.stopping.spawn_on(stop, &runtime));
            }
            // A runtime shutting down: the worker's group is killed as it drops.
            Err(_) => drop(worker),
        }
    }

    /// With `cpu_time`, gives the worker the request's budget of CPU time
    /// ([`crate::limits::cpu_budget`]).
    fn grant_cpu(&self, worker: &Worker) {
        if let Some(budget) = self.function.settings.limits.cpu_time
            && let Err(err) = crate::limits::cpu_budget::grant(worker.pid, budget)
        {
            // A worker that has just died: the request finds out.
            tracing::debug!(route = %self.function.pattern, pid = worker.pid, error = %err, "could not set a warm worker's cpu_time for a request");
        }
    }

    /// A worker that refused a connection yet runs: a server shutting down
    /// closes its listener first (`uvicorn --limit-max-requests` finishes its
    /// shutdown after). Off the request: one that ends within
    /// [`EXIT_STATUS_SETTLE`] is judged as one found ended while idle; one
    /// still running is stopped as CONTRACT §3 stops a function (SIGTERM,
    /// `--kill-grace`, SIGKILL), counted as a crash if it never served (a
    /// worker that only ever refuses would otherwise be started again
    /// forever) or if it has ended after all (a wrapper's server that
    /// crashed: its group is gone while what it started still held the
    /// output a moment ago, [`Worker::has_ended_now`]).
    fn judge_once_ended(self: &Arc<Self>, worker: Worker) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // A runtime shutting down: the worker's group is killed as it drops.
            return drop(worker);
        };
        let pool = Arc::clone(self);
        let judge = async move {
            // Ended on its own a moment after it refused: its status says
            // whether it retired or crashed.
            if tokio::time::timeout(EXIT_STATUS_SETTLE, worker.exited())
                .await
                .is_ok()
            {
                return pool.ended_while_idle(worker);
            }
            if worker.served == 0 || worker.has_ended_now() {
                pool.count_crash(&worker, "stopped accepting connections");
            } else {
                tracing::info!(route = %pool.function.pattern, pid = worker.pid, served = worker.served, "a warm worker stopped accepting connections after serving; stopping it");
            }
            worker.stop(pool.settings.kill_grace).await;
        };
        drop(self.stopping.spawn_on(judge, &runtime));
    }

    /// Gives a worker that can serve again to the next request, or stops it
    /// when the pool was retired meanwhile (its file changed).
    fn keep_idle(&self, worker: Worker) {
        // Looked at under the lock [`Pool::retire`] drains with: a retirement
        // between the look and the push would strand the worker in a pool
        // nobody lends from, to be killed without its grace when it drops.
        let mut idle = self.lock_idle();
        if self.is_retired() {
            drop(idle);
            tracing::info!(route = %self.function.pattern, pid = worker.pid, served = worker.served, "recycling a worker");
            return self.stop_in_background(worker);
        }
        idle.push(worker);
    }

    /// Counts a connection the worker closed without answering, or before
    /// the request went out: [`policy::BROKEN_OFF_LIMIT`] in a row make a
    /// worker that answers nothing, replaced as crashed. Gives the worker back
    /// while it is under the limit.
    fn broke_off(&self, mut worker: Worker) -> Option<Worker> {
        worker.broke_off_in_a_row += 1;
        if worker.broke_off_in_a_row >= policy::BROKEN_OFF_LIMIT {
            self.crashed(worker, "closed its last connections without answering");
            return None;
        }
        Some(worker)
    }

    /// Takes a worker back after a request.
    pub fn release(self: &Arc<Self>, mut worker: Worker, outcome: Outcome) {
        let outcome = match outcome {
            // Ended before it took the request: retired, stopped by a limit,
            // or crashed.
            Outcome::NotTaken | Outcome::Refused if worker.has_exited() => {
                if worker.retired() {
                    return self.retired_itself(worker);
                }
                return self.ended_in_request(worker, "exited before it took a request");
            }
            Outcome::Refused => return self.judge_once_ended(worker),
            Outcome::NotTaken if worker.has_ended_now() => Outcome::Crashed,
            Outcome::NotTaken => {
                if let Some(worker) = self.broke_off(worker) {
                    self.keep_idle(worker);
                }
                return;
            }
            // It had served, and exited 0 as this request reached it, unread: a
            // retirement that crossed the request, not a crash.
            Outcome::BrokeOff if worker.retired() => {
                return self.retired_itself(worker);
            }
            Outcome::CutShort | Outcome::BrokeOff if worker.has_ended_now() => Outcome::Crashed,
            Outcome::CutShort | Outcome::BrokeOff => {
                let answered = outcome == Outcome::CutShort;
                if !answered {
                    let Some(kept) = self.broke_off(worker) else {
                        return;
                    };
                    worker = kept;
                }
                tracing::info!(
                    route = %self.function.pattern,
                    pid = worker.pid,
                    answered,
                    "a warm worker closed its connection before the end of an answer and runs on: kept (its log may say why)"
                );
                Outcome::Abandoned
            }
            Outcome::Served => {
                worker.broke_off_in_a_row = 0;
                outcome
            }
            other => other,
        };
        match outcome {
            Outcome::Served if worker.exited_cleanly() => {
                self.lock_crashes().healthy();
                worker.served += 1;
                self.retired_itself(worker);
            }
            Outcome::Served | Outcome::Abandoned if worker.has_exited() => {
                self.ended_in_request(worker, "exited after a request")
            }
            Outcome::Served | Outcome::Abandoned => {
                if matches!(outcome, Outcome::Served) {
                    self.lock_crashes().healthy();
                }
                worker.served += 1;
                worker.last_used = Instant::now();
                if self.config.worn_out(worker.served) {
                    tracing::info!(route = %self.function.pattern, pid = worker.pid, served = worker.served, "recycling a worker");
                    self.stop_in_background(worker);
                } else {
                    self.keep_idle(worker);
                }
            }
            Outcome::Stuck => {
                tracing::warn!(route = %self.function.pattern, pid = worker.pid, "killing a worker whose request ran past its time (its timeout, or the drain timeout at shutdown)");
                self.stop_in_background(worker);
            }
            // (A worker that broke off or took nothing has been judged above.)
            Outcome::Crashed
            | Outcome::CutShort
            | Outcome::BrokeOff
            | Outcome::NotTaken
            | Outcome::Refused => self.ended_in_request(worker, "broke off a request"),
        }
    }
}

impl Lease {
    /// The error to answer for a request its worker failed: the limit that
    /// killed the worker when one did, noted in `record`, else `error`.
    pub async fn blame(&self, record: &mut InvocationRecord, error: InvokeError) -> InvokeError {
        let Some((limit, signal)) = self.limit_that_killed().await else {
            // A broken exchange may be the worker's end; a bad answer from a
            // worker that runs on is not, and is not held up looking (a
            // handler module's, which may end its process, always is).
            if !self.stops_work_on_close() && !matches!(error, InvokeError::WorkerFailed { .. }) {
                return error;
            }
            return self.process_ended().await.unwrap_or(error);
        };
        record.limit_hit = Some(limit);
        InvokeError::LimitHit {
            file: self.pool.function.file.relative.clone(),
            limit,
            exit: describe_exit(None, Some(signal)).unwrap_or_default(),
        }
    }

    /// For a worker that broke off a request: whether its process ended (a
    /// crash, an `os._exit`, a handler module's `process.exit()`), said as such
    /// with its exit, rather than as the HTTP client's "connection closed
    /// before message completed". Its end shows a moment after the
    /// connection breaks: waited for up to [`LIMIT_KILL_SETTLE`].
    async fn process_ended(&self) -> Option<InvokeError> {
        let settled = tokio::time::Instant::now() + LIMIT_KILL_SETTLE;
        if !self.ends_by(settled).await {
            return None;
        }
        // Its status reaches the exit watch once its output has closed too.
        while !self.worker().end_known() && tokio::time::Instant::now() < settled {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let exit = if self.worker().end_known() {
            self.worker().describe_end()
        } else {
            "its exit status is in watchdog's log".into()
        };
        let file = self.pool.function.file.relative.clone();
        Some(if self.stops_work_on_close() {
            InvokeError::HandlerExited { file, exit }
        } else {
            InvokeError::WorkerFailed {
                file,
                cause: format!("its process ended ({exit}) before it answered"),
            }
        })
    }

    /// Whether the function has a limit the kernel enforces by killing it.
    pub fn killable_by_limit(&self) -> bool {
        self.pool.function.settings.limits.can_kill()
    }

    /// The limit that killed the worker, with its signal, if one did. A dying
    /// worker's connection breaks a moment before the kernel shows it ended,
    /// so this waits up to [`LIMIT_KILL_SETTLE`] for that, and only for a
    /// function that has such a limit.
    pub async fn limit_that_killed(&self) -> Option<(&'static str, i32)> {
        if !self.killable_by_limit() {
            return None;
        }
        let worker = self.worker();
        let settled = tokio::time::Instant::now() + LIMIT_KILL_SETTLE;
        if !self.ends_by(settled).await {
            return None;
        }
        if let Some(killed) = worker.limit_that_killed_now() {
            return Some(killed);
        }
        // Not by a limit, unless it was reaped a moment ago and its status is
        // on its way: wait for that, then look again.
        let left = settled.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(left, worker.exited()).await;
        worker.limit_that_killed_now()
    }

    /// Whether the worker, which dropped a request without answering it, is
    /// over: the kernel shows its end within [`BREAK_SETTLE`], and the exit
    /// watch has its status within [`EXIT_STATUS_SETTLE`] more, since that status tells a worker that
    /// retired itself from one that crashed. A wrapper's leader that exited
    /// while its server runs on is not over: the server holds the output the
    /// exit watch waits on.
    pub async fn ended_without_answering(&self) -> bool {
        self.ends_by(tokio::time::Instant::now() + BREAK_SETTLE)
            .await
            && tokio::time::timeout(EXIT_STATUS_SETTLE, self.worker().exited())
                .await
                .is_ok()
    }

    /// Whether the worker shows it has ended by `deadline`, asked of the kernel
    /// every 2 ms (a process's end has no event to wait on before it is
    /// reaped).
    async fn ends_by(&self, deadline: tokio::time::Instant) -> bool {
        let worker = self.worker();
        loop {
            if worker.has_ended_now() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn worker(&self) -> &Worker {
        // A lease holds its worker until it is given back, in `finish` or `drop`.
        self.worker
            .as_ref()
            .expect("a lease holds its worker until it is given back")
    }

    pub fn worker_mut(&mut self) -> &mut Worker {
        // A lease holds its worker until it is given back, in `finish` or `drop`.
        self.worker
            .as_mut()
            .expect("a lease holds its worker until it is given back")
    }

    /// The pool's tracker of work that ends in stopping a worker, which
    /// shutdown waits for.
    pub fn tracker(&self) -> TaskTracker {
        self.pool.stopping.clone()
    }

    /// Whether the worker stops the work of a request whose connection
    /// closes: the Node adapter does, any other server may go on with it.
    pub fn stops_work_on_close(&self) -> bool {
        self.pool.function.file.runner.node_module
    }

    /// Gives the worker back.
    pub fn finish(mut self, outcome: Outcome) {
        if let Some(worker) = self.worker.take() {
            self.pool.release(worker, outcome);
        }
    }
}

impl Drop for Lease {
    /// A lease dropped without a verdict: the request was abandoned before the
    /// worker answered (its client left, and the handler's future with it). The
    /// worker may still be busy with it, so it is not lent again (the next
    /// request would wait behind the abandoned one, or time out on it): it is
    /// stopped, as a CGI function's group is when its client disconnects
    /// (CONTRACT §3), and a new one starts on demand. Not counted as a crash.
    /// (An answer's body holds the lease and gives its own verdict.)
    ///
    /// The Node adapter's worker is the exception, as when its client leaves
    /// mid-answer ([`Lease::stops_work_on_close`]): the connection watchdog
    /// drops with the request aborts the handler's `request.signal` and
    /// `close` there, and the worker, its module state with it, serves on.
    fn drop(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        if self.stops_work_on_close() {
            tracing::debug!(
                route = %self.pool.function.pattern,
                pid = worker.pid,
                "a client left before its answer; the handler module's worker is kept"
            );
            self.pool.release(worker, Outcome::Served);
            return;
        }
        tracing::info!(
            route = %self.pool.function.pattern,
            pid = worker.pid,
            "stopping a warm worker whose client left before the end of its answer"
        );
        self.pool.stop_in_background(worker);
    }
}
