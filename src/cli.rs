//! The command line (CONTRACT §1): `serve`, `routes` and `invoke`.
//!
//! Serve flags carry no clap defaults: an absent flag stays `None`, so the one place
//! that applies defaults ([`crate::config`]) can tell "given" from "defaulted" and
//! flags > environment > file > defaults stays decidable. Every flag is also read from
//! `WATCHDOG_<FLAG>`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "watchdog",
    version,
    about = "Turn a folder of executables into an HTTP API, one process per request"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DIR over HTTP: every executable below it answers at the URL its path names.
    Serve(ServeArgs),
    /// Print the route table (and the files that are not routes, with why) and exit.
    Routes(RoutesArgs),
    /// Run one request through a function without a server and print the response.
    ///
    /// Exits 1 when the response is a 5xx.
    Invoke(InvokeArgs),
}

/// `routes` reads the serve flags so that its table shows the settings `serve`
/// would use; those that change nothing in it (the server's queue and drain, the
/// kill grace, the user functions run as) are accepted, from a shared
/// environment say, but left out of its help. `--max-body` stays: `--json`
/// gives each function's.
#[derive(Debug, Clone, Args)]
#[command(mut_args(hidden_from_routes))]
pub struct RoutesArgs {
    /// Folder of functions.
    #[arg(default_value = "api", env = "WATCHDOG_DIR")]
    pub dir: PathBuf,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
    /// The serve flags, so the table shows the settings `serve` would use.
    #[command(flatten)]
    pub serve: ServeFlags,
}

/// One request, with no server around it: the server's queue and drain flags
/// are accepted (a shared environment may set them) but left out of its help.
#[derive(Debug, Clone, Args)]
#[command(
    override_usage = "watchdog invoke [OPTIONS] [DIR] PATH",
    mut_args(hidden_from_invoke)
)]
pub struct InvokeArgs {
    // One positional list: clap takes no optional positional before a
    // required one, and CONTRACT §1 puts DIR first, as `serve` and `routes` do.
    /// The folder of functions (default `api`, or `$WATCHDOG_DIR`), then the
    /// request path with optional query, e.g. `/api/users/42?full=1`.
    // `Append`: DIR and PATH may stand on either side of a flag (`cgi-bin
    // --prefix /cgi-bin /cgi-bin/x`), as they may for `serve`; more than two
    // in all is refused by [`InvokeArgs::check`].
    #[arg(value_name = "[DIR] PATH", num_args = 1..=2, required = true, action = clap::ArgAction::Append)]
    target: Vec<String>,
    /// DIR's default when only PATH is given.
    #[arg(skip = std::env::var_os("WATCHDOG_DIR").map_or_else(|| PathBuf::from("api"), PathBuf::from))]
    default_dir: PathBuf,
    /// HTTP method [default: GET, or POST with --data, as curl does].
    #[arg(short = 'X', long)]
    pub method: Option<String>,
    /// Request header `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body; `@FILE` reads it from a file, `@-` from standard input.
    /// As with curl, it makes the request a POST and, without a Content-Type
    /// header, an `application/x-www-form-urlencoded` one.
    #[arg(short = 'd', long = "data")]
    pub data: Option<String>,
    /// Print only the body, not the status line and headers.
    #[arg(long)]
    pub body_only: bool,
    #[command(flatten)]
    pub serve: ServeFlags,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Folder of functions.
    #[arg(default_value = "api", env = "WATCHDOG_DIR")]
    pub dir: PathBuf,
    /// Address to bind (`127.0.0.1:8080`, `[::1]:3000`; a bare port is on
    /// 127.0.0.1, `:8080` on 0.0.0.0); port 0 picks a free port and the
    /// bound address is logged.
    ///
    /// [default: 127.0.0.1:3000, or 0.0.0.0:$PORT when PORT is set]
    #[arg(long, env = "WATCHDOG_LISTEN", help_heading = "Server")]
    pub listen: Option<String>,
    /// Serve `/_watchdog/` metrics, routes and cron on this address instead,
    /// out of reach of the clients of --listen (healthz and readyz answer on
    /// both). Same forms as --listen.
    #[arg(long, env = "WATCHDOG_ADMIN_LISTEN", help_heading = "Server")]
    pub admin_listen: Option<String>,
    #[command(flatten)]
    pub flags: ServeFlags,
}

impl ServeArgs {
    pub fn addresses(&self) -> crate::config::Addresses<'_> {
        crate::config::Addresses {
            listen: self.listen.as_deref(),
            admin_listen: self.admin_listen.as_deref(),
        }
    }
}

impl InvokeArgs {
    /// The folder of functions: the first of two positionals, else the default.
    pub fn dir(&self) -> PathBuf {
        match self.target.as_slice() {
            [dir, _] => PathBuf::from(dir),
            _ => self.default_dir.clone(),
        }
    }

    /// The request path: the last positional.
    pub fn path(&self) -> &str {
        self.target.last().map_or("/", String::as_str)
    }

    /// A folder given alone is DIR without its PATH, not a path to ask the
    /// default DIR for (`watchdog invoke myfuncs` would GET `/myfuncs` from
    /// `./api`).
    ///
    /// # Errors
    /// What is missing, with an example.
    pub fn check(&self) -> Result<(), String> {
        match self.target.as_slice() {
            [_, _, _, ..] => Err(format!(
                "`invoke` takes a folder and a request path, and got {}: `{}`; quote a path with spaces",
                self.target.len(),
                self.target.join("`, `")
            )),
            [alone] if !alone.starts_with('/') && std::path::Path::new(alone).is_dir() => {
                let name = std::path::Path::new(alone)
                    .file_name()
                    .map_or_else(|| alone.clone(), |name| name.to_string_lossy().into_owned());
                Err(format!(
                    "`{alone}` is a folder: give the request path after it, e.g. `watchdog invoke {alone} /{name}/hello`"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The serve flags `routes` takes but leaves out of its help.
fn hidden_from_routes(arg: clap::Arg) -> clap::Arg {
    hide_if_listed(
        arg,
        &[
            "kill_grace",
            "max_concurrency",
            "queue_timeout",
            "body_idle_timeout",
            "send_timeout",
            "drain_delay",
            "drain_timeout",
            "user",
            "trusted_proxy",
        ],
    )
}

/// The serve flags `invoke` takes but leaves out of its help.
fn hidden_from_invoke(arg: clap::Arg) -> clap::Arg {
    hide_if_listed(
        arg,
        &[
            "max_concurrency",
            "queue_timeout",
            "send_timeout",
            "drain_delay",
            "drain_timeout",
            "trusted_proxy",
        ],
    )
}

/// `arg` hidden from help when its id is in `unused`; else as it was.
fn hide_if_listed(arg: clap::Arg, unused: &[&str]) -> clap::Arg {
    if unused.contains(&arg.get_id().as_str()) {
        arg.hide(true)
    } else {
        arg
    }
}

/// The flags `serve`, `routes` and `invoke` share.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeFlags {
    /// URL prefix routes are mounted under; `/` is allowed.
    ///
    /// [default: `/` + DIR's folder name, e.g. `./api` → `/api`]
    #[arg(long, env = "WATCHDOG_PREFIX", help_heading = "Server")]
    pub prefix: Option<String>,
    /// Wall-clock limit per invocation, e.g. `500ms`, `2m` [default: 30s].
    #[arg(long, env = "WATCHDOG_TIMEOUT", value_parser = parse_nonzero_duration, help_heading = "Limits")]
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL of a function's process group [default: 2s].
    #[arg(long, env = "WATCHDOG_KILL_GRACE", value_parser = parse_duration, help_heading = "Limits")]
    pub kill_grace: Option<Duration>,
    /// Request body limit, e.g. `32MiB`; larger bodies are answered 413 [default: 32MiB].
    #[arg(long, env = "WATCHDOG_MAX_BODY", value_parser = parse_size, help_heading = "Limits")]
    pub max_body: Option<u64>,
    /// Invocations running at once in the whole server; more wait in a queue [default: 256].
    #[arg(long, env = "WATCHDOG_MAX_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Limits")]
    pub max_concurrency: Option<u32>,
    /// Longest wait in that queue before a 503 with Retry-After [default: 10s].
    #[arg(long, env = "WATCHDOG_QUEUE_TIMEOUT", value_parser = parse_duration, help_heading = "Limits")]
    pub queue_timeout: Option<Duration>,
    /// Longest pause inside a request body before the upload is abandoned: the
    /// function is stopped and the client answered 408 [default: 10s].
    #[arg(long, env = "WATCHDOG_BODY_IDLE_TIMEOUT", value_parser = parse_nonzero_duration, help_heading = "Limits")]
    pub body_idle_timeout: Option<Duration>,
    /// Longest a client may take none of an answer before its connection is
    /// closed and the answer cut off [default: 60s].
    #[arg(long, env = "WATCHDOG_SEND_TIMEOUT", value_parser = parse_nonzero_duration, help_heading = "Limits")]
    pub send_timeout: Option<Duration>,
    /// `NAME=VALUE` passed to every function; repeatable (one pair per line in WATCHDOG_ENV).
    #[arg(long = "env", env = "WATCHDOG_ENV", value_delimiter = '\n', value_parser = parse_env_pair, help_heading = "Functions")]
    pub env: Vec<(String, String)>,
    /// Pass this variable of watchdog's own environment through; repeatable.
    #[arg(
        long = "pass-env",
        env = "WATCHDOG_PASS_ENV",
        value_delimiter = ',',
        help_heading = "Functions"
    )]
    pub pass_env: Vec<String>,
    /// Believe X-Forwarded-For and X-Forwarded-Proto from this address or
    /// range (a balancer in front): functions then see the client's address as
    /// REMOTE_ADDR, and HTTPS=on behind a TLS balancer; repeatable.
    #[arg(
        long = "trusted-proxy",
        env = "WATCHDOG_TRUSTED_PROXY",
        value_delimiter = ',',
        value_parser = crate::server::trusted_proxies::parse_range,
        help_heading = "Server"
    )]
    pub trusted_proxy: Vec<ipnet::IpNet>,
    /// On SIGTERM/SIGINT/SIGHUP, keep serving this long while readyz answers 503 [default: 0s].
    #[arg(long, env = "WATCHDOG_DRAIN_DELAY", value_parser = parse_duration, help_heading = "Shutdown")]
    pub drain_delay: Option<Duration>,
    /// Then how long in-flight requests may finish [default: 10s].
    #[arg(long, env = "WATCHDOG_DRAIN_TIMEOUT", value_parser = parse_duration, help_heading = "Shutdown")]
    pub drain_timeout: Option<Duration>,
    /// Run functions as this unprivileged user (when watchdog runs as root).
    #[arg(long, env = "WATCHDOG_USER", help_heading = "Functions")]
    pub user: Option<String>,
    /// Per-function settings file [default: watchdog.toml beside DIR, if present].
    #[arg(long, env = "WATCHDOG_CONFIG", help_heading = "Server")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "WATCHDOG_LOG_FORMAT", value_enum, help_heading = "Server")]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Cli {
    /// Parses the command line. A bad value that came from a `WATCHDOG_*`
    /// variable is named by that variable: clap names the flag, which a user
    /// who never typed it cannot find.
    ///
    /// # Errors
    /// What clap found, to be told ([`ParseFailure`]); help and `--version`
    /// come this way too.
    pub fn try_parse_naming_variables() -> Result<Self, ParseFailure> {
        use clap::error::{ContextKind, ContextValue};
        Self::try_parse().map_err(|error| {
            let mut named = None;
            if let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) {
                let long = arg
                    .split(' ')
                    .next()
                    .and_then(|flag| flag.strip_prefix("--"));
                if let Some(variable) = long.and_then(variable_given_for) {
                    let by = format!("{variable} (read as --{})", long.unwrap_or_default());
                    named = Some(error.render().to_string().replace(&format!("'{arg}'"), &by));
                }
            }
            ParseFailure { error, named }
        })
    }
}

/// What clap said instead of a command line: an error, or the help or version
/// text asked for.
#[derive(Debug)]
pub struct ParseFailure {
    error: clap::Error,
    /// The error's text with the variable a bad value came from named.
    named: Option<String>,
}

impl ParseFailure {
    /// An error, rather than help or version text (also the help given for
    /// a missing subcommand, which is no error to report as one).
    pub fn is_error(&self) -> bool {
        use clap::error::ErrorKind;
        !matches!(
            self.error.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    }

    pub fn exit_code(&self) -> i32 {
        self.error.exit_code()
    }

    /// Prints it as clap does: colours on a terminal, help on stdout, and a
    /// reader that has gone (`watchdog --help | head -1`) is no error.
    pub fn print(&self) {
        use std::io::Write;
        match &self.named {
            Some(text) => {
                let _ = write!(std::io::stderr(), "{text}");
            }
            None => {
                let _ = self.error.print();
            }
        }
    }

    /// The error alone, for a JSON event: without `error: `, the usage line
    /// and the pointer to `--help`.
    pub fn message(&self) -> String {
        let text = self
            .named
            .clone()
            .unwrap_or_else(|| self.error.render().to_string());
        let text = text.trim();
        let text = text.strip_prefix("error: ").unwrap_or(text);
        let end = ["\n\nUsage:", "\n\nFor more information"]
            .iter()
            .filter_map(|marker| text.find(marker))
            .min()
            .unwrap_or(text.len());
        text[..end].trim_end().to_owned()
    }
}

/// The log format asked for by `--log-format` or `WATCHDOG_LOG_FORMAT`, found
/// by a parse that goes past errors: for clap's own errors, which come before
/// (and instead of) the command line. An operator whose collector reads JSON
/// got a misspelled flag's error as plain text.
pub fn log_format_asked() -> LogFormat {
    let parsed = <Cli as clap::CommandFactory>::command()
        .ignore_errors(true)
        .try_get_matches()
        .ok()
        .and_then(|matches| {
            let (_, args) = matches.subcommand()?;
            args.try_get_one::<LogFormat>("log_format").ok()?.copied()
        });
    // Where that parse gave up first (a bad value before the flag, or from
    // another variable): the flag as typed, else the variable.
    let asked = parsed
        .map(|format| format == LogFormat::Json)
        .unwrap_or_else(|| {
            typed_log_format()
                .or_else(|| std::env::var("WATCHDOG_LOG_FORMAT").ok())
                .is_some_and(|value| value.eq_ignore_ascii_case("json"))
        });
    if asked {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// `--log-format`'s value as typed, the last one given.
fn typed_log_format() -> Option<String> {
    let mut args = std::env::args().skip(1);
    let mut typed = None;
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        } else if arg == "--log-format" {
            typed = args.next();
        } else if let Some(value) = arg.strip_prefix("--log-format=") {
            typed = Some(value.to_owned());
        }
    }
    typed
}

/// `--long value` as the user gave it, for a message about the value: the
/// flag as typed, or the `WATCHDOG_*` variable it was read from.
pub fn named_as_given(long: &str, value: &str) -> String {
    match variable_given_for(long) {
        Some(variable) => format!("{variable}={value} (read as --{long})"),
        None => format!("--{long} {value}"),
    }
}

/// The variable flag `--long` was read from: set, and the flag not typed.
fn variable_given_for(long: &str) -> Option<String> {
    let flag = format!("--{long}");
    let typed = std::env::args_os().skip(1).any(|arg| {
        arg.to_str().is_some_and(|arg| {
            arg == flag
                || arg
                    .strip_prefix(&flag)
                    .is_some_and(|rest| rest.starts_with('='))
        })
    });
    if typed {
        return None;
    }
    let command = <Cli as clap::CommandFactory>::command();
    let variable = command
        .get_subcommands()
        .flat_map(clap::Command::get_arguments)
        .find(|arg| arg.get_long() == Some(long))?
        .get_env()?
        .to_string_lossy()
        .into_owned();
    std::env::var_os(&variable).is_some().then_some(variable)
}

/// humantime durations: `500ms`, `30s`, `2m`, `1h 30m`.
/// `--timeout`, `--body-idle-timeout`, `--send-timeout`: a duration, not zero
/// (every request would time out, every request body be abandoned, at once),
/// nor under a millisecond ([`check_timer_duration`]).
fn parse_nonzero_duration(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration.is_zero() {
        return Err("must be more than 0 (leave it out for the default)".into());
    }
    check_timer_duration(duration)?;
    Ok(duration)
}

/// The shortest time a timeout may be: tokio's timers count whole
/// milliseconds, so `--timeout 1ns` was accepted and kept as a millisecond,
/// or more, while the settings line said 1ns.
pub const SHORTEST_TIMER: Duration = Duration::from_millis(1);

/// # Errors
/// A duration above zero but under [`SHORTEST_TIMER`], said in the user's terms.
pub fn check_timer_duration(duration: Duration) -> Result<(), String> {
    if !duration.is_zero() && duration < SHORTEST_TIMER {
        return Err(format!(
            "{} is shorter than 1ms, the finest step watchdog's timers take; give 1ms or more (examples: 500ms, 30s)",
            humantime::format_duration(duration)
        ));
    }
    Ok(())
}

pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|err| format!("{err} (examples: 500ms, 30s, 2m)"))?;
    if duration > MAX_DURATION {
        return Err("longer than the 3650 days watchdog accepts; give a shorter duration (examples: 500ms, 30s, 2m)".into());
    }
    Ok(duration)
}

/// The longest timeout or grace period accepted: a deadline is the clock plus
/// the duration, and one past the clock's range would panic on every request.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// Sizes: `32MiB`, `10MB`, `512k`, `1048576`.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let size = value
        .trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|err| format!("{err} (examples: 32MiB, 10MB, 1048576)"))?;
    // bytesize saturates: `100EiB` was taken as 16EiB without a word.
    if size == u64::MAX && value.trim() != u64::MAX.to_string() {
        return Err(format!(
            "`{}` is more than the largest size watchdog can count (18446744073709551615 bytes, a byte short of 16EiB); give a smaller one (examples: 32MiB, 10GB)",
            value.trim()
        ));
    }
    Ok(size)
}

fn parse_env_pair(value: &str) -> Result<(String, String), String> {
    let (name, val) = value
        .split_once('=')
        .ok_or_else(|| format!("`{value}` is not NAME=VALUE"))?;
    check_variable_name(name)?;
    Ok((name.to_owned(), val.to_owned()))
}

/// An environment variable's name as shells and `getenv` callers expect one:
/// `--env` and the config file's `env` tables refuse anything else (a `=` in a
/// name would set another variable than the one named).
///
/// # Errors
/// The name, and what a name may hold.
pub fn check_variable_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid variable name (letters, digits, `_`, not starting with a digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_serve_flag_has_its_env_var() {
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let want = format!("WATCHDOG_{}", long.to_uppercase().replace('-', "_"));
            let got = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(got.as_deref(), Some(want.as_str()), "--{long}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("32MiB"), Ok(32 * 1024 * 1024));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").is_err());
        let too_big = parse_size("100EiB").unwrap_err();
        assert!(too_big.contains("more than the largest size"), "{too_big}");
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3650days").is_ok());
        let too_short = parse_nonzero_duration("1ns").unwrap_err();
        assert!(too_short.contains("1ns is shorter than 1ms"), "{too_short}");
        assert_eq!(parse_nonzero_duration("1ms"), Ok(Duration::from_millis(1)));
        let too_long = parse_duration("300000000000y").unwrap_err();
        assert!(too_long.contains("longer than"), "{too_long}");
        assert!(parse_env_pair("A=b=c").is_ok_and(|(n, v)| n == "A" && v == "b=c"));
        assert!(parse_env_pair("1A=x").is_err());
    }
}
