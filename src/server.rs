//! The HTTP server: binds, routes `/_watchdog/*` to the built-in endpoints and every
//! other request to a function, and drains on SIGTERM/SIGINT.

pub mod builtin;
pub mod error;
pub mod handler;
pub mod request_id;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Settings;
use crate::invoke::Invoker;
use crate::invoke::cgi::CgiInvoker;
use crate::routes::RouteTable;

/// What every request handler shares.
pub struct App {
    pub settings: Arc<Settings>,
    pub routes: Arc<RouteTable>,
    pub invoker: Arc<dyn Invoker>,
    /// One permit per invocation allowed to run at once (`--max-concurrency`).
    pub slots: Arc<Semaphore>,
    /// Set on SIGTERM/SIGINT: readyz answers 503 from then on.
    pub draining: AtomicBool,
    /// The address the server is bound to; `invoke` uses a stand-in.
    pub local: SocketAddr,
}

impl App {
    pub fn new(settings: Settings, routes: RouteTable, local: SocketAddr) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_concurrency as usize));
        Self {
            settings: Arc::new(settings),
            routes: Arc::new(routes),
            invoker: Arc::new(CgiInvoker),
            slots,
            draining: AtomicBool::new(false),
            local,
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/_watchdog/healthz", get(builtin::healthz))
        .route("/_watchdog/readyz", get(builtin::readyz))
        .route("/_watchdog/routes", get(builtin::routes))
        .route("/_watchdog", any(builtin::reserved))
        .route("/_watchdog/{*rest}", any(builtin::reserved))
        .fallback(handler::function)
        .with_state(app)
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish; gives up on them after the app's drain timeout.
///
/// # Errors
/// Accept-loop failures from the listener.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopped_tx, mut stopped_rx) = tokio::sync::watch::channel(false);
    let drain_delay = app.settings.drain_delay;
    let drain_timeout = app.settings.drain_timeout;
    let draining_app = Arc::clone(&app);
    let graceful = async move {
        shutdown.await;
        draining_app.draining.store(true, Ordering::Relaxed);
        tracing::info!(drain_delay = ?drain_delay, drain_timeout = ?drain_timeout, "shutting down: readyz now answers 503");
        tokio::time::sleep(drain_delay).await;
        tracing::info!("no longer accepting connections; waiting for in-flight requests");
        let _ = stopped_tx.send(true);
    };
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    // Without TCP_NODELAY a response written in pieces (head, body chunks, the final
    // chunk) waits on the client's delayed ACK: 40 ms per keep-alive request.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, service).with_graceful_shutdown(graceful);
    tokio::select! {
        result = server => result,
        () = async {
            let _ = stopped_rx.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!("drain timeout reached; killing the invocations still running");
            Ok(())
        }
    }
}
