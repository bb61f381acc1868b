//! Prometheus metrics through the `metrics` facade: the names live here, in one place.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "watchdog_requests_total";
pub const DURATION: &str = "watchdog_invocation_duration_seconds";
pub const QUEUE_WAIT: &str = "watchdog_queue_wait_seconds";
pub const QUEUE_REJECTED: &str = "watchdog_queue_rejected_total";
pub const IN_FLIGHT: &str = "watchdog_invocations_in_flight";
pub const TIMEOUTS: &str = "watchdog_timeouts_total";
pub const KILLS: &str = "watchdog_kills_total";
pub const EXITS: &str = "watchdog_function_exits_total";
pub const ROUTES: &str = "watchdog_routes";
pub const CONFLICTS: &str = "watchdog_route_conflicts";
pub const RELOADS: &str = "watchdog_route_reloads_total";
pub const LIMIT_HITS: &str = "watchdog_limit_hits_total";
pub const COLD_STARTS: &str = "watchdog_cold_starts_total";
pub const INIT_DURATION: &str = "watchdog_worker_init_seconds";
pub const WARM_HITS: &str = "watchdog_warm_hits_total";
pub const WORKERS: &str = "watchdog_workers";
pub const WORKER_CRASHES: &str = "watchdog_worker_crashes_total";
pub const SEND_TIMEOUTS: &str = "watchdog_send_timeouts_total";
pub const HEAD_TIMEOUTS: &str = "watchdog_head_timeouts_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// The `# HELP` line of each metric, so that a dashboard or `curl` says what
/// a series counts without the README at hand.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "Requests answered, by route and status (\"unmatched\" for no route)"
    );
    describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Time of invocations that reached a process, from start to its end"
    );
    describe_histogram!(
        QUEUE_WAIT,
        metrics::Unit::Seconds,
        "Time requests waited for a slot or a warm worker, those turned away included"
    );
    describe_counter!(
        QUEUE_REJECTED,
        "Requests turned away (503) at --queue-timeout, by route"
    );
    describe_gauge!(IN_FLIGHT, "Invocations running now, by route");
    describe_counter!(
        TIMEOUTS,
        "Invocations that ran past their timeout, by route"
    );
    describe_counter!(
        KILLS,
        "Process groups or workers stopped by watchdog, by route and reason"
    );
    describe_counter!(EXITS, "Function exits, by route and exit code or signal");
    describe_gauge!(ROUTES, "Routes in the table served now");
    describe_gauge!(
        CONFLICTS,
        "URL patterns claimed by more than one file (each answers 500)"
    );
    describe_counter!(RELOADS, "Route table rebuilds after a change under DIR");
    describe_counter!(
        LIMIT_HITS,
        "Invocations stopped by a resource limit, by route and limit"
    );
    describe_counter!(COLD_STARTS, "Warm workers started for a request, by route");
    describe_histogram!(
        INIT_DURATION,
        metrics::Unit::Seconds,
        "Time warm workers took to become ready, by route"
    );
    describe_counter!(
        WARM_HITS,
        "Requests served by an idle warm worker, by route"
    );
    describe_gauge!(WORKERS, "Warm workers, by route and state (idle, busy)");
    describe_counter!(
        WORKER_CRASHES,
        "Warm workers that crashed or failed to start, by route (those that retired themselves or met a limit are not counted)"
    );
    describe_counter!(
        SEND_TIMEOUTS,
        "Connections closed because the client took none of its answer for --send-timeout"
    );
    describe_counter!(
        HEAD_TIMEOUTS,
        "Connections closed with part of a request head in and the rest not sent within 10 s"
    );
}

/// Installs the process-wide recorder (once) and starts its upkeep. Returns the
/// handle the `/_watchdog/metrics` endpoint renders from.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    // Shown at 0 from the start; see [`register_rare_series`].
                    for name in [RELOADS, SEND_TIMEOUTS, HEAD_TIMEOUTS] {
                        counter!(name).increment(0);
                    }
                    let upkeep = handle.clone();
                    tokio::spawn(async move {
                        let mut ticker = tokio::time::interval(Duration::from_secs(5));
                        loop {
                            ticker.tick().await;
                            upkeep.run_upkeep();
                        }
                    });
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics are unavailable");
                    None
                }
            }
        })
        .clone()
}

/// One answered request that no function answered (no route, a conflict): the
/// label is `unmatched` or the conflicting pattern.
pub fn request(route: &str, status: u16) {
    counter!(REQUESTS, "route" => route.to_owned(), "status" => status.to_string()).increment(1);
}

/// How a function's process ended, as the `exit` label counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn label(self) -> String {
        match self {
            Exit::Code(code) => format!("code:{code}"),
            Exit::Signal(signal) => format!("signal:{signal}"),
        }
    }
}

/// One function's metric handles, registered with the recorder on first use
/// (after the recorder is installed) and kept with the function; a reload builds
/// new functions, whose handles find the same series again. The `metrics` macros
/// hash their labels and search the registry on every call, and every label was
/// an allocated `String`: six times per request that was about 2% of watchdog's
/// CPU on the static C benchmark.
pub struct FunctionMetrics {
    /// The `route` label: the function's pattern.
    route: String,
    handles: OnceLock<Handles>,
}

impl std::fmt::Debug for FunctionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionMetrics")
            .field("route", &self.route)
            .field("registered", &self.handles.get().is_some())
            .finish()
    }
}

struct Handles {
    in_flight: Gauge,
    duration: Histogram,
    queue_wait: Histogram,
    warm_hits: Counter,
    /// By status and by exit: one function answers with few distinct ones, so
    /// a short list beats a map.
    requests: Mutex<Vec<(u16, Counter)>>,
    exits: Mutex<Vec<(Exit, Counter)>>,
}

impl FunctionMetrics {
    /// The metrics of the function answering at `route`.
    pub fn new(route: &str) -> Self {
        Self {
            route: route.to_owned(),
            handles: OnceLock::new(),
        }
    }

    fn handles(&self) -> &Handles {
        let route = &self.route;
        self.handles.get_or_init(|| {
            register_rare_series(route);
            Handles {
                in_flight: gauge!(IN_FLIGHT, "route" => route.clone()),
                duration: histogram!(DURATION, "route" => route.clone()),
                queue_wait: histogram!(QUEUE_WAIT),
                warm_hits: counter!(WARM_HITS, "route" => route.clone()),
                requests: Mutex::new(Vec::new()),
                exits: Mutex::new(Vec::new()),
            }
        })
    }

    /// One answered request of this function.
    pub fn request(&self, status: u16) {
        increment_keyed(
            &self.handles().requests,
            status,
            || counter!(REQUESTS, "route" => self.route.clone(), "status" => status.to_string()),
        );
    }

    /// A request that waited for a slot or a worker and was turned away
    /// (503). Its wait is recorded with its invocation's record, which is
    /// dropped with the error: it counts in the queue-wait histogram, or
    /// saturation would leave that histogram looking idle.
    pub fn count_queue_rejected(&self) {
        counter!(QUEUE_REJECTED, "route" => self.route.clone()).increment(1);
    }

    pub fn invocation_started(&self) {
        self.handles().in_flight.increment(1.0);
    }

    /// An invocation is over: its process is gone. `ran` is false for a
    /// request that never reached a process (turned away by the queue, a
    /// start that failed): its near-zero time would make the duration
    /// histogram look faster the more requests are turned away.
    pub fn invocation_finished(
        &self,
        ran: bool,
        elapsed: Duration,
        queue_wait: Duration,
        exit: Option<Exit>,
        kill: Option<&'static str>,
        timed_out: bool,
    ) {
        let handles = self.handles();
        handles.in_flight.decrement(1.0);
        if ran {
            handles.duration.record(elapsed.as_secs_f64());
        }
        handles.queue_wait.record(queue_wait.as_secs_f64());
        if let Some(exit) = exit {
            increment_keyed(
                &handles.exits,
                exit,
                || counter!(EXITS, "route" => self.route.clone(), "exit" => exit.label()),
            );
        }
        // Kills and limit hits are rare: looked up when they happen.
        if let Some(reason) = kill {
            counter!(KILLS, "route" => self.route.clone(), "reason" => reason).increment(1);
        }
        // Apart from the kill: a request that timed out waiting (for a warm
        // worker, a slot) killed nothing.
        if timed_out {
            counter!(TIMEOUTS, "route" => self.route.clone()).increment(1);
        }
    }

    /// The function ran into one of its resource limits.
    pub fn limit_hit(&self, limit: &'static str) {
        counter!(LIMIT_HITS, "route" => self.route.clone(), "limit" => limit).increment(1);
    }

    /// A request found an idle warm worker.
    pub fn warm_hit(&self) {
        self.handles().warm_hits.increment(1);
    }
}

/// The series of rare events, shown at 0 from a route's first request rather
/// than from its first timeout or kill: Prometheus's `increase()` and `rate()`
/// see nothing of a series' first sample, so an alert on them would miss the
/// first timeout, and a dashboard could not tell "none" from "not measured".
/// Not at start-up for every route: a 10,000-function tree would list 50,000
/// zeros. Limit hits are left out: their labels depend on the limits set.
fn register_rare_series(route: &str) {
    counter!(TIMEOUTS, "route" => route.to_owned()).increment(0);
    counter!(QUEUE_REJECTED, "route" => route.to_owned()).increment(0);
    for reason in KILL_REASONS {
        counter!(KILLS, "route" => route.to_owned(), "reason" => *reason).increment(0);
    }
}

/// The `reason` labels of [`KILLS`].
pub const KILL_TIMEOUT: &str = "timeout";
pub const KILL_CLIENT_GONE: &str = "client_gone";
pub const KILL_SHUTDOWN: &str = "shutdown";
const KILL_REASONS: &[&str] = &[KILL_TIMEOUT, KILL_CLIENT_GONE, KILL_SHUTDOWN];

/// Adds one to the counter kept under `key`, registering it on first sight.
fn increment_keyed<K: PartialEq + Copy>(
    list: &Mutex<Vec<(K, Counter)>>,
    key: K,
    register: impl FnOnce() -> Counter,
) {
    let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
    match list.iter().find(|(k, _)| *k == key) {
        Some((_, counter)) => counter.increment(1),
        None => {
            let counter = register();
            counter.increment(1);
            list.push((key, counter));
        }
    }
}

/// A route table was (re)built.
pub fn routes_loaded(functions: usize, conflicts: usize, reload: bool) {
    gauge!(ROUTES).set(functions as f64);
    gauge!(CONFLICTS).set(conflicts as f64);
    if reload {
        counter!(RELOADS).increment(1);
    }
}

/// A warm function started a worker for a request.
pub fn cold_start(route: &str, init: Duration) {
    counter!(COLD_STARTS, "route" => route.to_owned()).increment(1);
    histogram!(INIT_DURATION, "route" => route.to_owned()).record(init.as_secs_f64());
}

/// A connection was closed because its client took none of its answer for
/// `--send-timeout`. Not by route: it is the connection's, which may be
/// between requests.
pub fn send_timeout() {
    counter!(SEND_TIMEOUTS).increment(1);
}

/// A connection closed at the head deadline with part of a request head in:
/// a rising count is clients on failing links, or slowloris.
pub fn head_timeout() {
    counter!(HEAD_TIMEOUTS).increment(1);
}

/// A warm pool was created: its crash counter is shown at 0 from then on
/// (see [`register_rare_series`]).
pub fn pool_created(route: &str) {
    counter!(WORKER_CRASHES, "route" => route.to_owned()).increment(0);
}

/// A warm worker crashed, or could not start.
pub fn worker_crashed(route: &str) {
    counter!(WORKER_CRASHES, "route" => route.to_owned()).increment(1);
}

/// Workers of a warm pool by state.
pub fn pool_workers(route: &str, idle: usize, busy: usize) {
    gauge!(WORKERS, "route" => route.to_owned(), "state" => "idle").set(idle as f64);
    gauge!(WORKERS, "route" => route.to_owned(), "state" => "busy").set(busy as f64);
}
