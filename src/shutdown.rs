//! The signals that stop watchdog, and what a second one means.
//!
//! SIGTERM, SIGINT and SIGHUP all start the same drain: some platforms send
//! SIGINT, and SIGHUP comes when the terminal or SSH session watchdog runs in
//! closes. Left to its default action, SIGHUP ended watchdog on the spot and
//! orphaned every function and warm worker it had started.
//!
//! Unless SIGHUP was set to be ignored when watchdog started (`nohup`): that
//! choice of the operator's is kept, or logging out would now stop a server
//! that `nohup` used to keep.
//!
//! A second signal during the drain cuts it short: what still runs is stopped
//! by process group at once (the kill grace still applies), as a developer who
//! presses Ctrl-C twice expects. Not one within [`SAME_KEYPRESS`] of the
//! first: a terminal sends Ctrl-C's SIGINT to its whole foreground group, so
//! under a wrapper that passes signals on (`npm run`, foreman) one keypress
//! arrives twice. Nothing is left behind either way.

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

/// A signal this soon after the first is taken for the same request to stop.
const SAME_KEYPRESS: std::time::Duration = std::time::Duration::from_secs(1);

/// Set when a second signal cut the drain short, for the answer of a request
/// stopped by it: process-wide, as signals are.
static CUT_SHORT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the drain was cut short by a second signal (rather than reaching
/// its timeout).
pub fn drain_cut_short() -> bool {
    CUT_SHORT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the handlers and starts the task that listens for the signals.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn on_signals() -> std::io::Result<Shutdown> {
    let hangup = if hangup_ignored() {
        tracing::info!("SIGHUP is ignored (nohup): hanging up does not stop watchdog");
        None
    } else {
        Some(signal(SignalKind::hangup())?)
    };
    let mut streams = Streams {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hangup,
    };
    let shutdown = Shutdown {
        asked: CancellationToken::new(),
        insisted: CancellationToken::new(),
    };
    let tokens = shutdown.clone();
    tokio::spawn(async move {
        let name = streams.next().await;
        tracing::info!(
            signal = name,
            "signal received; a second one stops what still runs at once"
        );
        tokens.asked.cancel();
        let first = tokio::time::Instant::now();
        loop {
            let name = streams.next().await;
            if first.elapsed() < SAME_KEYPRESS {
                // Said, so an operator who meant it knows to send it again.
                tracing::info!(
                    signal = name,
                    "a signal within a second of the first is taken for the same one; send another to stop what still runs now"
                );
                continue;
            }
            tracing::warn!(
                signal = name,
                "second signal: not waiting for the drain; stopping what still runs now"
            );
            CUT_SHORT.store(true, std::sync::atomic::Ordering::Relaxed);
            tokens.insisted.cancel();
            break;
        }
    });
    Ok(shutdown)
}

struct Streams {
    term: Signal,
    int: Signal,
    /// `None` when SIGHUP is ignored.
    hangup: Option<Signal>,
}

impl Streams {
    /// The name of the next signal to arrive.
    async fn next(&mut self) -> &'static str {
        let hangup = async {
            match self.hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = hangup => "SIGHUP",
        }
    }
}

/// Whether watchdog was started with SIGHUP ignored, as `nohup` starts it
/// (the kernel's `SigIgn` mask; bit 0 is SIGHUP).
fn hangup_ignored() -> bool {
    procfs::process::Process::myself()
        .and_then(|me| me.status())
        .is_ok_and(|status| status.sigign & 1 == 1)
}
