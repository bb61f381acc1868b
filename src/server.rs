//! The HTTP server: binds, routes `/_watchdog/*` to the built-in endpoints and every
//! other request to a function, and drains on SIGTERM/SIGINT (CONTRACT §8).

pub mod admission;
pub mod builtin;
pub mod connection_threads;
pub mod cut_off;
pub mod error;
pub mod expect;
pub mod handler;
pub mod host;
pub mod list_header;
pub mod listener;
pub mod request_id;
pub mod send_stall;
pub mod stalled_head;
pub mod taken;
pub mod transfer_coding;
pub mod trusted_proxies;
pub mod unrun;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{any, get};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::invoke::Invoker;
use crate::invoke::cgi::CgiInvoker;
use crate::invoke::dispatch::Dispatcher;
use crate::invoke::pool::PoolInvoker;
use crate::routes::RouteTable;
use crate::shutdown::Shutdown;
use connection_threads::ConnectionThreads;

/// What every request handler shares.
pub struct App {
    pub settings: Arc<Settings>,
    /// Swapped whole by live reload; a request loads it once.
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// Whether a change under DIR may not be in `routes` yet.
    pub reload_pending: Arc<crate::routes::reload::Pending>,
    pub invoker: Arc<dyn Invoker>,
    /// The warm pools, stopped at shutdown.
    pub pool: Arc<PoolInvoker>,
    /// Cgroups and `--user`, for the start-up report of how limits are held.
    pub limiter: Arc<crate::limits::Limiter>,
    /// One slot per invocation allowed to run at once (`--max-concurrency`).
    pub admission: Arc<admission::Admission>,
    /// Per-function limits (`max_concurrency` in a section), by file and limit, so a
    /// reload that keeps the limit keeps the semaphore.
    function_slots: Mutex<HashMap<(String, u32), Arc<Semaphore>>>,
    /// Set on SIGTERM/SIGINT: readyz answers 503 from then on.
    pub draining: AtomicBool,
    /// The address the server is bound to; `invoke` uses a stand-in.
    pub local: SocketAddr,
    pub metrics: Option<PrometheusHandle>,
    /// Every invocation's driver task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Cancelled when the drain timeout has passed: invocations still running are
    /// stopped by process group.
    pub stop_invocations: CancellationToken,
}

impl App {
    pub fn new(settings: Arc<Settings>, routes: RouteTable, local: SocketAddr) -> Self {
        let admission = admission::Admission::new(
            settings.max_concurrency as usize,
            connection_threads::count(),
        );
        let limiter = Arc::new(crate::limits::Limiter::new(settings.run_as.clone()));
        let pool = Arc::new(PoolInvoker::new(
            Arc::clone(&settings),
            Arc::clone(&limiter),
        ));
        Self {
            settings,
            routes: Arc::new(ArcSwap::from_pointee(routes)),
            reload_pending: Arc::default(),
            invoker: Arc::new(Dispatcher {
                cgi: CgiInvoker::new(Arc::clone(&limiter)),
                pool: Arc::clone(&pool),
            }),
            pool,
            limiter,
            admission,
            function_slots: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            local,
            metrics: None,
            tasks: TaskTracker::new(),
            stop_invocations: CancellationToken::new(),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The semaphore limiting invocations of one function.
    pub fn function_slots(&self, file: &str, limit: u32) -> Arc<Semaphore> {
        let mut map = self
            .function_slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            map.entry((file.to_owned(), limit))
                .or_insert_with(|| Arc::new(Semaphore::new(limit as usize))),
        )
    }
}

/// The router of the address clients reach: every function, and the built-in
/// endpoints. With `admin_apart` (`--admin-listen`), only healthz and readyz of
/// those, which a balancer's health check needs and which tell nothing; the
/// others answer 404 naming where they are served.
pub fn router(app: Arc<App>, admin_apart: bool) -> Router {
    let builtin = if admin_apart {
        Router::new()
            .route("/_watchdog/healthz", get(builtin::healthz))
            .route("/_watchdog/readyz", get(builtin::readyz))
            .route("/_watchdog/routes", any(builtin::on_admin_address))
            .route("/_watchdog/metrics", any(builtin::on_admin_address))
            .route("/_watchdog/cron/{name}", any(builtin::on_admin_address))
    } else {
        builtin_routes()
    };
    // The layer is the built-in routes' own: a function's request never
    // passes through it.
    let builtin =
        with_reserved(builtin).layer(axum::middleware::from_fn(builtin::answer_as_watchdog));
    Router::new()
        .merge(builtin)
        .fallback(handler::function)
        .with_state(app)
}

/// The router of `--admin-listen`'s address: the built-in endpoints alone.
pub fn admin_router(app: Arc<App>) -> Router {
    with_reserved(builtin_routes())
        .fallback(builtin::admin_address_only)
        .layer(axum::middleware::from_fn(builtin::answer_as_watchdog))
        .with_state(app)
}

fn builtin_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/_watchdog/healthz", get(builtin::healthz))
        .route("/_watchdog/readyz", get(builtin::readyz))
        .route("/_watchdog/routes", get(builtin::routes))
        .route("/_watchdog/metrics", get(builtin::metrics))
        .route("/_watchdog/cron/{name}", axum::routing::post(builtin::cron))
}

/// The rest of the reserved prefix, which no function may answer.
fn with_reserved(builtin: Router<Arc<App>>) -> Router<Arc<App>> {
    builtin
        .route("/_watchdog", any(builtin::reserved))
        .route("/_watchdog/{*rest}", any(builtin::reserved))
}

/// The admin address's accept loop, on the main runtime: its few requests
/// (a scrape every few seconds) need no connection thread of their own.
struct AdminAddress {
    stop: CancellationToken,
    accepting: tokio::task::JoinHandle<hyper_util::server::graceful::GracefulShutdown>,
}

/// Serves `--admin-listen` until [`AdminAddress::stop`]: through the drain
/// too, so that readyz's 503 and the last metrics can be read there.
fn serve_admin(listener: TcpListener, app: &Arc<App>) -> AdminAddress {
    let router = admin_router(Arc::clone(app));
    let send_timeout = app.settings.send_timeout;
    match listener.local_addr() {
        Ok(addr) => {
            tracing::info!(%addr, "admin endpoints on http://{addr}/_watchdog/ (metrics, routes, cron; healthz and readyz on both addresses)")
        }
        Err(err) => {
            tracing::warn!(error = %err, "admin endpoints served, but the address they are on cannot be told")
        }
    }
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let accepting = tokio::spawn(async move {
        let hand = |accepted| {
            tokio::spawn(listener::serve_connection(
                accepted,
                router.clone(),
                send_timeout,
            ));
        };
        listener::accept_until(listener, hand, stopped.cancelled_owned()).await
    });
    AdminAddress { stop, accepting }
}

impl AdminAddress {
    /// Stops accepting, and gives the open connections a moment to finish.
    async fn stop(self) {
        self.stop.cancel();
        if let Ok(open) = self.accepting.await {
            let _ = tokio::time::timeout(Duration::from_secs(1), open.shutdown()).await;
        }
    }
}

/// At most this many sweeps for left-behind processes at shutdown, this far
/// apart: a kill takes the kernel a moment, and each generation of a
/// double-forking daemon is found in a round of its own.
const FINAL_SWEEP_ROUNDS: usize = 20;
const FINAL_SWEEP_PAUSE: Duration = Duration::from_millis(50);

/// `work`, unless the drain ends first: at `end`, or at once when the
/// operator insisted with a second signal.
async fn within_drain<F: std::future::Future>(
    work: F,
    end: tokio::time::Instant,
    insisted: &tokio_util::sync::CancellationToken,
) -> Option<F::Output> {
    tokio::select! {
        done = work => Some(done),
        () = tokio::time::sleep_until(end) => None,
        () = insisted.cancelled() => None,
    }
}

/// Serves until the first signal of `shutdown`, then drains (a second signal
/// cuts the drain short): readyz turns 503 at once,
/// requests are still served for the drain delay, then no new connection is
/// accepted and in-flight requests and invocations get the drain timeout to finish;
/// what is left is stopped by process group (TERM, kill grace, KILL).
///
/// # Errors
/// When the connection threads cannot be started.
pub async fn serve(
    listener: TcpListener,
    admin: Option<TcpListener>,
    app: Arc<App>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let settings = Arc::clone(&app.settings);
    let draining_app = Arc::clone(&app);
    let Shutdown { asked, insisted } = shutdown;
    let insisted_early = insisted.clone();
    let stop_accepting = async move {
        asked.cancelled().await;
        draining_app.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            drain_delay = ?settings.drain_delay,
            drain_timeout = ?settings.drain_timeout,
            "shutting down: readyz now answers 503"
        );
        tokio::select! {
            () = tokio::time::sleep(settings.drain_delay) => {}
            () = insisted_early.cancelled() => {}
        }
        tracing::info!("no longer accepting connections; waiting for in-flight requests");
    };
    let router = router(Arc::clone(&app), admin.is_some());
    let send_timeout = app.settings.send_timeout;
    let threads = ConnectionThreads::start(move |accepted| {
        listener::serve_connection(accepted, router.clone(), send_timeout)
    })
    .map_err(|err| {
        std::io::Error::other(format!(
            "cannot start the connection threads: {err}; check the limits on threads (ulimit -u, the container's pids limit) and open files (ulimit -n)"
        ))
    })?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "listening on http://{local}");
    let admin = admin.map(|admin| serve_admin(admin, &app));
    let connections =
        listener::accept_until(listener, |accepted| threads.hand(accepted), stop_accepting).await;
    let drain_end = tokio::time::Instant::now() + app.settings.drain_timeout;
    let connections = connections.shutdown();
    tokio::pin!(connections);
    let drained = within_drain(&mut connections, drain_end, &insisted)
        .await
        .is_some();
    // Functions may still be running (a response can be complete before its
    // process exits): they get what is left of the drain timeout, then are stopped
    // by process group.
    app.tasks.close();
    let finished = within_drain(app.tasks.wait(), drain_end, &insisted)
        .await
        .is_some();
    if !drained || !finished {
        // Invocations hold their slot until they are over, warm requests
        // included (which run in their connection's task, not as a task of
        // `tasks`: counting those said `running=0` with a warm request in
        // flight). One still waiting for a warm worker holds none yet: it is
        // stopped all the same, but not counted as running.
        let running = app.admission.running();
        tracing::warn!(
            running,
            "drain over (its timeout, or a second signal); stopping the invocations still running"
        );
        // CGI functions and warm workers alike: those that had not answered
        // answer 503 (shutting down) rather than leave their clients with a
        // closed connection.
        app.stop_invocations.cancel();
        // Kill grace, then reaping and cgroup cleanup.
        let limit = app.settings.kill_grace + Duration::from_secs(8);
        let _ = tokio::time::timeout(limit, app.tasks.wait()).await;
        // Time to write those answers before the connections are closed.
        if !drained
            && tokio::time::timeout(Duration::from_secs(1), &mut connections)
                .await
                .is_err()
        {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
    }
    app.pool.shutdown().await;
    if let Some(admin) = admin {
        admin.stop().await;
    }
    threads.stop(Duration::from_secs(2)).await;
    // Processes that left their function's or worker's group (a `setsid`
    // helper) came to watchdog, as subreaper, when their parents were stopped
    // just now; the periodic sweep would have killed them, but it does not run
    // again. Nothing may outlive watchdog.
    // A killed process's own children come to watchdog in turn (unless they
    // were in its group, killed with it), so the sweep goes on until a round
    // finds nothing left alive.
    let mut killed = 0;
    for _ in 0..FINAL_SWEEP_ROUNDS {
        let swept = tokio::task::spawn_blocking(crate::process::reaper::sweep_orphans).await;
        let Ok(sweep) = swept else { break };
        killed += sweep.killed;
        if sweep.killed == 0 && sweep.reaped == 0 {
            break;
        }
        tokio::time::sleep(FINAL_SWEEP_PAUSE).await;
    }
    if killed > 0 {
        tracing::info!(killed, "stopped processes functions left behind");
    }
    Ok(())
}
