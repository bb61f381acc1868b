//! `watchdog serve DIR`.

use std::sync::Arc;

use anyhow::Context;

use super::{CommandError, runtime, usage};
use crate::cli::ServeArgs;
use crate::config::{Settings, listen_addr};
use crate::process::reaper;
use crate::routes::RouteTable;
use crate::server::{self, App};

/// How often zombies that left their function's group are looked for and reaped.
const ORPHAN_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

pub async fn run(args: ServeArgs) -> Result<(), CommandError> {
    let settings = Settings::resolve(&args.dir, &args.flags).map_err(usage)?;
    let addr = listen_addr(
        args.listen.as_deref(),
        std::env::var("PORT").ok().as_deref(),
    )
    .map_err(usage)?;
    let routes = RouteTable::build(&settings.dir, &settings.prefix)
        .with_context(|| format!("reading {}", settings.dir.display()))
        .map_err(usage)?;
    report_routes(&routes);
    match reaper::become_subreaper() {
        Ok(()) => reaper::start_orphan_sweeper(ORPHAN_SWEEP_INTERVAL),
        Err(err) => {
            tracing::warn!(error = %err, "cannot become a child subreaper; orphaned grandchildren of functions will be reaped by init")
        }
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; pick another address with --listen"))
        .map_err(runtime)?;
    let local = listener.local_addr().map_err(runtime)?;
    tracing::info!(
        dir = %settings.dir.display(),
        prefix = %settings.prefix,
        timeout = ?settings.timeout,
        kill_grace = ?settings.kill_grace,
        max_body = settings.max_body,
        max_concurrency = settings.max_concurrency,
        "settings"
    );
    tracing::info!(addr = %local, "listening on http://{local}");
    let app = Arc::new(App::new(settings, routes, local));
    let shutdown = crate::shutdown::on_signal().map_err(runtime)?;
    server::serve(listener, app, shutdown)
        .await
        .map_err(runtime)?;
    tracing::info!("stopped");
    Ok(())
}

fn report_routes(routes: &RouteTable) {
    tracing::info!(
        functions = routes.functions.len(),
        skipped = routes.skipped.len(),
        "routes loaded"
    );
    for (pattern, ids) in &routes.conflicts {
        let files: Vec<&str> = ids
            .iter()
            .map(|&i| routes.functions[i].file.relative.as_str())
            .collect();
        tracing::warn!(%pattern, files = %files.join(", "), "route conflict: this URL answers 500 until only one file claims it");
    }
    for skipped in &routes.skipped {
        tracing::debug!(file = %skipped.relative, reason = %skipped.reason, "not a route");
    }
}
