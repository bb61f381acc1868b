//! Prometheus metrics through the `metrics` facade: the names live here, in one place.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "watchdog_requests_total";
pub const DURATION: &str = "watchdog_invocation_duration_seconds";
pub const QUEUE_WAIT: &str = "watchdog_queue_wait_seconds";
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

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

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

/// One answered request, whatever answered it.
pub fn request(route: &str, status: u16) {
    counter!(REQUESTS, "route" => route.to_owned(), "status" => status.to_string()).increment(1);
}

pub fn invocation_started(route: &str) {
    gauge!(IN_FLIGHT, "route" => route.to_owned()).increment(1.0);
}

/// An invocation is over: its process is gone.
pub fn invocation_finished(
    route: &str,
    elapsed: Duration,
    queue_wait: Duration,
    exit: Option<&str>,
    kill: Option<&'static str>,
) {
    gauge!(IN_FLIGHT, "route" => route.to_owned()).decrement(1.0);
    histogram!(DURATION, "route" => route.to_owned()).record(elapsed.as_secs_f64());
    histogram!(QUEUE_WAIT).record(queue_wait.as_secs_f64());
    if let Some(exit) = exit {
        counter!(EXITS, "route" => route.to_owned(), "exit" => exit.to_owned()).increment(1);
    }
    if let Some(reason) = kill {
        counter!(KILLS, "route" => route.to_owned(), "reason" => reason).increment(1);
        if reason == "timeout" {
            counter!(TIMEOUTS, "route" => route.to_owned()).increment(1);
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

/// A function ran into one of its resource limits.
pub fn limit_hit(route: &str, limit: &'static str) {
    counter!(LIMIT_HITS, "route" => route.to_owned(), "limit" => limit).increment(1);
}

/// A warm function started a worker for a request.
pub fn cold_start(route: &str, init: Duration) {
    counter!(COLD_STARTS, "route" => route.to_owned()).increment(1);
    histogram!(INIT_DURATION, "route" => route.to_owned()).record(init.as_secs_f64());
}

/// A request found an idle warm worker.
pub fn warm_hit(route: &str) {
    counter!(WARM_HITS, "route" => route.to_owned()).increment(1);
}

/// Workers of a warm pool by state.
pub fn pool_workers(route: &str, idle: usize, busy: usize) {
    gauge!(WORKERS, "route" => route.to_owned(), "state" => "idle").set(idle as f64);
    gauge!(WORKERS, "route" => route.to_owned(), "state" => "busy").set(busy as f64);
}
