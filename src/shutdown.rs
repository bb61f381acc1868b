//! The signals that stop watchdog, and what a second one means.
//!
//! SIGTERM, SIGINT and SIGHUP all start the same drain: some platforms send
//! SIGINT, and SIGHUP comes when the terminal or SSH session watchdog runs in
//! closes. Left to its default action, SIGHUP ended watchdog on the spot and
//! orphaned every function and warm worker it had started.
//!
//! A second signal during the drain cuts it short: what still runs is stopped
//! by process group at once (the kill grace still applies), as a developer who
//! presses Ctrl-C twice expects. Nothing is left behind either way.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// What the operator has asked for so far.
#[derive(Clone)]
pub struct Shutdown {
    /// Cancelled on the first signal: drain.
    pub asked: CancellationToken,
    /// Cancelled on the second: stop waiting for the drain.
    pub insisted: CancellationToken,
}

/// Installs the handlers and starts the task that listens for the signals.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn on_signals() -> std::io::Result<Shutdown> {
    let mut streams = [
        (signal(SignalKind::terminate())?, "SIGTERM"),
        (signal(SignalKind::interrupt())?, "SIGINT"),
        (signal(SignalKind::hangup())?, "SIGHUP"),
    ];
    let shutdown = Shutdown {
        asked: CancellationToken::new(),
        insisted: CancellationToken::new(),
    };
    let tokens = shutdown.clone();
    tokio::spawn(async move {
        let name = next(&mut streams).await;
        tracing::info!(signal = name, "signal received");
        tokens.asked.cancel();
        let name = next(&mut streams).await;
        tracing::warn!(
            signal = name,
            "second signal: not waiting for the drain; stopping what still runs now"
        );
        tokens.insisted.cancel();
    });
    Ok(shutdown)
}

/// The name of the next signal to arrive on any of `streams`.
async fn next(streams: &mut [(Signal, &'static str); 3]) -> &'static str {
    let [(term, term_name), (int, int_name), (hup, hup_name)] = streams;
    tokio::select! {
        _ = term.recv() => term_name,
        _ = int.recv() => int_name,
        _ = hup.recv() => hup_name,
    }
}
