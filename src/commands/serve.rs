//! `watchdog serve DIR`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{CommandError, runtime, usage};
use crate::config::Settings;
use crate::process::reaper;
use crate::routes::{RouteTable, reload};
use crate::server::{self, App};

/// A path as a log field: the path itself, not Rust's `Some("…")`; a field
/// that is `None` is left out of the line.
fn path_field(
    path: Option<&std::path::Path>,
) -> Option<tracing::field::DisplayValue<std::path::Display<'_>>> {
    path.map(|path| tracing::field::display(path.display()))
}

/// Says once how each function's limits are held, and warns when functions would
/// run as root.
fn report_limits(app: &App) {
    let limiter = &app.limiter;
    tracing::info!(
        pids_cgroup = path_field(limiter.cgroups.pids.as_deref()),
        memory_cgroup = path_field(limiter.cgroups.memory.as_deref()),
        user = limiter.run_as.as_ref().map(|u| u.name.as_str()),
        "resource limit mechanisms"
    );
    if limiter.run_as.is_none() && nix::unistd::geteuid().is_root() {
        tracing::warn!(
            "functions run as root: pass --user NAME (e.g. --user nobody) to run them unprivileged"
        );
    }
    for function in &app.routes.load().functions {
        let held = limiter.describe(&function.settings.limits);
        if !held.is_empty() {
            tracing::info!(route = %function.pattern, limits = %held.join(", "), "limits");
        }
    }
}

/// Every connection and every running function holds descriptors (socket, three
/// pipes, a pidfd for one that runs past a second): lift the soft limit to the
/// hard one so a thousand concurrent clients do not run out.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(err) => tracing::warn!(error = %err, soft, "cannot raise the open-file limit"),
        }
    }
}

/// How often zombies that left their function's group are looked for and reaped.
const ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_millis(500);

pub async fn run(
    settings: Settings,
    recheck: crate::config::change_watch::Recheck,
) -> Result<(), CommandError> {
    let settings = Arc::new(settings);
    raise_open_file_limit();
    let routes = RouteTable::for_settings(&settings)
        .with_context(|| format!("reading {}", settings.dir.display()))
        .map_err(usage)?;
    let metrics = crate::observability::metrics::install();
    reload::report(&routes, false);
    crate::routes::setting_warnings::report_setting_problems(&settings, &routes);
    match reaper::become_subreaper() {
        Ok(()) => reaper::start_orphan_sweeper(ORPHAN_SWEEP_INTERVAL),
        Err(err) => tracing::warn!(
            error = %err,
            "cannot become a child subreaper; orphaned grandchildren of functions will be reaped by init"
        ),
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; pick another address with --listen",
                settings.listen
            )
        })
        .map_err(runtime)?;
    let local = listener.local_addr().map_err(runtime)?;
    let admin = match settings.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {addr} for the admin endpoints; pick another address (--admin-listen, WATCHDOG_ADMIN_LISTEN or admin_listen in watchdog.toml)"
                    )
                })
                .map_err(runtime)?,
        ),
        None => None,
    };
    tracing::info!(
        dir = %settings.dir.display(),
        config = path_field(settings.config_file.as_deref()),
        prefix = %settings.prefix,
        timeout = ?settings.timeout,
        kill_grace = ?settings.kill_grace,
        max_body = settings.max_body,
        max_concurrency = settings.max_concurrency,
        queue_timeout = ?settings.queue_timeout,
        body_idle_timeout = ?settings.body_idle_timeout,
        send_timeout = ?settings.send_timeout,
        trusted_proxies = (!settings.trusted_proxies.is_empty())
            .then(|| tracing::field::display(settings.trusted_proxies.ranges().join(","))),
        "settings"
    );
    if settings.trusted_proxies.trusts_anyone() {
        tracing::warn!(
            trusted_proxies = %settings.trusted_proxies.ranges().join(","),
            "a trusted proxy range covers every address: any client can set the address and scheme functions see (X-Forwarded-For, X-Forwarded-Proto); name only your balancers' addresses"
        );
    }
    let mut app = App::new(Arc::clone(&settings), routes, local);
    app.metrics = metrics;
    let app = Arc::new(app);
    report_limits(&app);
    app.pool.prestart(&app.routes.load());
    let pools = Arc::clone(&app.pool);
    let prestart = move |table: &crate::routes::RouteTable| pools.prestart(table);
    let _watcher = match reload::watch(
        Arc::clone(&settings),
        Arc::clone(&app.routes),
        Arc::clone(&app.reload_pending),
        prestart,
    ) {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch DIR for changes; restart watchdog to pick up new files");
            None
        }
    };
    // Read at start-up only: an edit while serving is said to need a restart.
    let _config_watcher = match crate::config::change_watch::watch(&settings, recheck) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::info!(error = %err, "cannot watch the configuration files; an edit to them will not be reported before the restart that applies it");
            None
        }
    };
    crate::cron::start(Arc::clone(&app));
    let shutdown = crate::shutdown::on_signals().map_err(runtime)?;
    server::serve(listener, admin, app, shutdown)
        .await
        .map_err(runtime)?;
    tracing::info!("stopped");
    Ok(())
}
