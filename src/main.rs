//! The `watchdog` binary: parse, resolve settings, set up logging, run a
//! subcommand, exit 0/1/2.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use watchdog::cli::{Cli, Command, LogFormat};
use watchdog::commands;
use watchdog::config::{Addresses, Settings};

/// mimalloc instead of glibc's malloc: glibc spent about 13% of watchdog's CPU in
/// malloc, free and consolidation on the static C benchmark (perf), for the
/// buffers, headers and environment each request allocates on one worker thread
/// and frees on another. Built without transparent huge pages (`no_thp`): with
/// them, idle RSS doubled (7.6 -> 15 MiB measured).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First, before anything is opened or any thread started.
    let isolation_problems = watchdog::process::isolation::apply();
    let cli = match Cli::try_parse_naming_variables() {
        Ok(cli) => cli,
        Err(failure) => {
            let format = watchdog::cli::log_format_asked();
            if failure.is_error() && format == LogFormat::Json {
                report_fatal(format, &failure.message());
            } else {
                failure.print();
            }
            return ExitCode::from(u8::try_from(failure.exit_code()).unwrap_or(2));
        }
    };
    let resolved = match &cli.command {
        Command::Serve(args) => Settings::resolve(&args.dir, args.addresses(), &args.flags),
        Command::Routes(args) => Settings::resolve(&args.dir, Addresses::default(), &args.serve),
        Command::Invoke(args) => match args.check() {
            Ok(()) => Settings::resolve(&args.dir(), Addresses::default(), &args.serve),
            Err(missing) => {
                report_fatal(
                    args.serve.log_format.unwrap_or_default(),
                    &missing.to_string(),
                );
                return ExitCode::from(2);
            }
        },
    };
    let settings = match resolved {
        Ok(settings) => settings,
        Err(err) => {
            // In the format the command line asked for: the configuration
            // that may name one is what failed.
            let flags = match &cli.command {
                Command::Serve(args) => &args.flags,
                Command::Routes(args) => &args.serve,
                Command::Invoke(args) => &args.serve,
            };
            report_fatal(flags.log_format.unwrap_or_default(), &err.to_string());
            return ExitCode::from(2);
        }
    };
    init_logging(settings.log_format);
    let settings_log_format = settings.log_format;
    for problem in isolation_problems {
        tracing::warn!("{problem}");
    }
    let passed: Vec<_> = (settings.function_env.iter())
        .map(|(name, _)| name.clone())
        .collect();
    let environment = std::env::vars_os().map(|(name, _)| name);
    for unread in watchdog::config::unread_variables::find(environment, &passed) {
        tracing::warn!("{unread}");
    }
    // Before the runtime starts its threads: the guardian is forked.
    if let Command::Serve(_) = &cli.command
        && let Err(err) = watchdog::process::guardian::start(settings.kill_grace)
    {
        tracing::warn!(error = %err, "cannot start the guardian that stops functions if watchdog is killed: warm workers and hung CGI invocations would outlive it; check the limits on processes (ulimit -u, the container's pids limit), and stop watchdog with SIGTERM rather than SIGKILL");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("watchdog: error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                // What a restart would make of the configuration files, for
                // the warning when one changes while serving.
                let recheck = Box::new(move || {
                    Settings::resolve(&args.dir, args.addresses(), &args.flags)
                        .map(drop)
                        .map_err(|err| err.to_string())
                });
                commands::serve::run(settings, recheck).await
            }
            Command::Routes(args) => commands::routes::run(&settings, args.json),
            Command::Invoke(args) => commands::invoke::run(settings, args).await,
        }
    });
    // Do not wait for stray tasks (a request body still draining) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_fatal(settings_log_format, &format!("{err:#}"));
            ExitCode::from(err.exit_code())
        }
    }
}

/// Says why watchdog cannot go on: `watchdog: error: ...` on stderr, or, under
/// `--log-format json`, an ERROR event like every other line, which a log
/// pipeline that reads JSON would otherwise drop.
fn report_fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("watchdog: error: {message}"),
        LogFormat::Json => {
            init_logging(format);
            tracing::error!(target: "watchdog", error = message, "watchdog cannot go on");
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (the reader of stderr is gone: a
        // collector restarted, `| head` done) is dropped. Reported, as
        // tracing-subscriber does by default, it would be reported on that
        // same stderr, and the report's failure panics: watchdog died at its
        // next log line.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    // Once: a fatal error before start-up ([`report_fatal`]) may have set it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
