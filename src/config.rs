//! The validated settings a server runs with, decided in one place.
//!
//! Precedence: command-line flags > `WATCHDOG_*` environment (both resolved by clap
//! into `Option`s) > `watchdog.toml` > defaults. Per-function sections of the file
//! (and `vercel.json`) then refine the server-wide values for the files they match
//! ([`functions`]).

pub mod change_watch;
pub mod file;
pub mod functions;
pub mod unread_variables;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{LogFormat, ServeFlags};
pub use file::FileError;
pub use functions::{Defaults, FunctionRules, FunctionSettings, SectionSource};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;
pub const DEFAULT_MAX_CONCURRENCY: u32 = 256;
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// nginx's `send_timeout`: long enough for a phone on a bad link, short enough
/// that clients which stopped reading do not pile up.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Variables of watchdog's own environment every function gets (CONTRACT §3).
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

/// A setting that cannot be used, named for the user. All of these exit 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{dir}: {cause}\nhint: pass the folder of functions, e.g. `watchdog serve ./api`")]
    Dir { dir: String, cause: std::io::Error },
    #[error("{given}: {cause}")]
    Listen { given: String, cause: String },
    #[error("PORT={value}: not a port number; unset PORT or pass --listen")]
    Port { value: String },
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{0}")]
    User(String),
}

/// Everything the server and its invocations need to know about the settings.
#[derive(Debug)]
pub struct Settings {
    /// DIR as given on the command line.
    pub dir: PathBuf,
    /// DIR made absolute and resolved: DOCUMENT_ROOT.
    pub document_root: PathBuf,
    pub prefix: String,
    pub listen: SocketAddr,
    /// Where the built-in endpoints other than healthz and readyz are served,
    /// instead of on `listen` (`--admin-listen`).
    pub admin_listen: Option<SocketAddr>,
    /// Whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: crate::server::trusted_proxies::TrustedProxies,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub max_body: u64,
    pub max_concurrency: u32,
    pub queue_timeout: Duration,
    /// A client that sends no body bytes for this long has given up or is
    /// stalling on purpose; its upload is abandoned.
    pub body_idle_timeout: Duration,
    /// A client that takes none of an answer for this long has stopped reading
    /// (or its network has gone); its connection is closed.
    pub send_timeout: Duration,
    pub drain_delay: Duration,
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
    /// The environment every function starts from: inherited basics, pass-through
    /// variables, `.env`, the file's `env`, then `--env` (later entries win).
    pub function_env: Vec<(OsString, OsString)>,
    /// Per-function sections.
    pub rules: FunctionRules,
    /// The configuration file in use, if any.
    pub config_file: Option<PathBuf>,
    /// Scheduled jobs from `[[cron]]` and vercel.json `crons`.
    pub cron: Vec<crate::cron::CronJob>,
    /// `--user`: the unprivileged user functions run as.
    pub run_as: Option<crate::limits::RunAs>,
    /// vercel.json keys that would change answers on Vercel and are not applied
    /// here, for a warning at start.
    pub unapplied_vercel_keys: Vec<&'static str>,
}

/// The addresses given on the command line (or in the environment), which
/// only `serve` takes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Addresses<'a> {
    pub listen: Option<&'a str>,
    pub admin_listen: Option<&'a str>,
}

impl Settings {
    /// Reads the configuration files and applies flags, environment and defaults.
    ///
    /// # Errors
    /// A DIR that is not a readable folder, a bad address, a configuration file
    /// problem (located by file, line and key), or a flag this version cannot honour.
    pub fn resolve(
        dir: &Path,
        addresses: Addresses<'_>,
        flags: &ServeFlags,
    ) -> Result<Self, ConfigError> {
        let Addresses {
            listen,
            admin_listen,
        } = addresses;
        let document_root = dir.canonicalize().map_err(|cause| ConfigError::Dir {
            dir: dir.display().to_string(),
            cause,
        })?;
        if !document_root.is_dir() {
            return Err(ConfigError::Dir {
                dir: dir.display().to_string(),
                cause: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
            });
        }
        let config_file = file::locate(flags.config.as_deref(), &document_root);
        let config = match &config_file {
            Some(path) => file::load(path)?,
            None => file::ConfigFile::default(),
        };
        // A value of the file is checked only when it is the one used, and
        // then located in the file.
        let in_file = |span, message: String| {
            let path = config_file.as_deref().unwrap_or(Path::new("watchdog.toml"));
            let text = std::fs::read_to_string(path).unwrap_or_default();
            ConfigError::File(FileError::at(path, &text, Some(span), &message))
        };
        let run_as =
            match (&flags.user, &config.user) {
                (Some(name), _) => Some(crate::limits::RunAs::lookup(name).map_err(|cause| {
                    ConfigError::User(format!(
                        "{}: {cause}",
                        crate::cli::named_as_given("user", name)
                    ))
                })?),
                (None, Some(name)) => Some(crate::limits::RunAs::lookup(name.get_ref()).map_err(
                    |cause| in_file(name.span(), format!("`{}`: {cause}", name.get_ref())),
                )?),
                (None, None) => None,
            };
        let prefix = flags
            .prefix
            .clone()
            .or_else(|| config.prefix.clone())
            .unwrap_or_else(|| default_prefix(dir, &document_root));
        let file_listen = match (listen, &config.listen) {
            (None, Some(value)) => {
                let text = value.get_ref().text();
                if let Err(cause) = parse_listen(&text) {
                    return Err(in_file(value.span(), format!("`{text}` is {cause}")));
                }
                Some(text)
            }
            _ => None,
        };
        let listen = listen_addr(
            listen.or(file_listen.as_deref()),
            std::env::var("PORT").ok().as_deref(),
        )?;
        let admin_listen = match (admin_listen, &config.admin_listen) {
            (Some(value), _) => Some(parse_listen(value).map_err(|cause| ConfigError::Listen {
                given: crate::cli::named_as_given("admin-listen", value),
                cause,
            })?),
            (None, Some(value)) => {
                let text = value.get_ref().text();
                Some(
                    parse_listen(&text)
                        .map_err(|cause| in_file(value.span(), format!("`{text}` is {cause}")))?,
                )
            }
            (None, None) => None,
        };
        if admin_listen == Some(listen) && listen.port() != 0 {
            return Err(ConfigError::Listen {
                given: format!("admin address {listen}"),
                cause: "the same as the clients' (--listen); give the admin endpoints another port, or leave the admin address out to serve them with the functions".into(),
            });
        }
        let dotenv = file::dotenv(&document_root)?;
        let mut pass_env = flags.pass_env.clone();
        pass_env.extend(config.pass_env.clone().unwrap_or_default());
        let mut function_env = inherited_env(std::env::vars_os(), &pass_env);
        let pairs = dotenv
            .into_iter()
            .chain(config.env.clone().unwrap_or_default())
            .chain(flags.env.iter().cloned());
        function_env.extend(pairs.map(|(k, v)| (OsString::from(k), OsString::from(v))));

        let cron = cron_jobs(&config, config_file.as_deref(), &document_root)?;
        let unapplied_vercel_keys = file::unapplied_vercel_keys(&document_root)?;
        let mut sections = Vec::new();
        for (glob, section, line) in file::vercel_sections(&document_root)? {
            let source = SectionSource {
                file: document_root
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .join("vercel.json"),
                line,
                priority: 0,
            };
            sections.push((glob, section, source));
        }
        if let Some(path) = &config_file {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for (glob, section) in config.functions {
                let line = text[..glob.span().start.min(text.len())]
                    .matches('\n')
                    .count()
                    + 1;
                let source = SectionSource {
                    file: path.clone(),
                    line,
                    priority: 1,
                };
                sections.push((glob.into_inner(), section, source));
            }
        }
        let rules = FunctionRules::new(sections)?;
        // Zero is refused where it is written (the flag's parser, the file's).
        let body_idle_timeout = flags
            .body_idle_timeout
            .or(config.body_idle_timeout)
            .unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT);

        Ok(Self {
            dir: dir.to_path_buf(),
            document_root,
            prefix: crate::routes::normalize_prefix(&prefix),
            listen,
            admin_listen,
            // The flag's list replaces the file's rather than adding to it:
            // trust is widened only where it is written.
            trusted_proxies: crate::server::trusted_proxies::TrustedProxies::new(
                if flags.trusted_proxy.is_empty() {
                    config.trusted_proxies.clone().unwrap_or_default()
                } else {
                    flags.trusted_proxy.clone()
                },
            ),
            timeout: flags.timeout.or(config.timeout).unwrap_or(DEFAULT_TIMEOUT),
            kill_grace: flags
                .kill_grace
                .or(config.kill_grace)
                .unwrap_or(DEFAULT_KILL_GRACE),
            max_body: flags
                .max_body
                .or(config.max_body)
                .unwrap_or(DEFAULT_MAX_BODY),
            max_concurrency: flags
                .max_concurrency
                .or(config.max_concurrency)
                .unwrap_or(DEFAULT_MAX_CONCURRENCY)
                .max(1),
            queue_timeout: flags
                .queue_timeout
                .or(config.queue_timeout)
                .unwrap_or(DEFAULT_QUEUE_TIMEOUT),
            body_idle_timeout,
            send_timeout: flags
                .send_timeout
                .or(config.send_timeout)
                .unwrap_or(DEFAULT_SEND_TIMEOUT),
            drain_delay: flags.drain_delay.or(config.drain_delay).unwrap_or_default(),
            drain_timeout: flags
                .drain_timeout
                .or(config.drain_timeout)
                .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            log_format: flags.log_format.or(config.log_format).unwrap_or_default(),
            function_env,
            rules,
            config_file,
            cron,
            run_as,
            unapplied_vercel_keys,
        })
    }

    /// The settings of the function at `relative` below DIR.
    pub fn function(&self, relative: &str) -> FunctionSettings {
        let defaults = Defaults {
            timeout: self.timeout,
            max_body: self.max_body,
            env: self.function_env.clone(),
        };
        self.rules.resolve(relative, &defaults)
    }
}

fn cron_jobs(
    config: &file::ConfigFile,
    config_file: Option<&Path>,
    document_root: &Path,
) -> Result<Vec<crate::cron::CronJob>, ConfigError> {
    let mut jobs: Vec<crate::cron::CronJob> = Vec::new();
    if let Some(path) = config_file {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for entry in &config.cron {
            let located =
                |message: String| FileError::at(path, &text, Some(entry.span()), &message);
            let section = entry.get_ref();
            let job = crate::cron::CronJob::new(&section.name, &section.path, &section.schedule)
                .map_err(located)?;
            if jobs.iter().any(|j| j.name == job.name) {
                return Err(located(format!("cron `{}` is defined twice", job.name)).into());
            }
            jobs.push(job);
        }
    }
    let toml_jobs = jobs.len();
    for cron in file::vercel_crons(document_root)? {
        let (path, schedule) = (cron.path, cron.schedule);
        // A `[[cron]]` on the same path replaces vercel.json's entries for it
        // (the TOML is the one being edited); two vercel.json entries on one
        // path (a morning and an evening run) are both kept, as Vercel keeps them.
        if let Some(job) = jobs[..toml_jobs].iter().find(|j| j.path == path) {
            tracing::info!(path = %path, schedule = %schedule, replaced_by = %job.name, "a vercel.json cron is replaced by the [[cron]] job on the same path");
            continue;
        }
        let base = path.trim_matches('/').replace('/', "-");
        let mut name = base.clone();
        for n in 2.. {
            if jobs.iter().all(|j| j.name != name) {
                break;
            }
            name = format!("{base}-{n}");
        }
        let job =
            crate::cron::CronJob::new(&name, &path, &schedule).map_err(|message| FileError {
                file: cron.file.display().to_string(),
                line: cron.line,
                message,
            })?;
        jobs.push(job);
    }
    Ok(jobs)
}

/// `/` + DIR's folder name as the user wrote it (`./api` → `/api`, even when `api`
/// is a symlink), or as it resolves for `.` and `..`.
pub fn default_prefix(dir: &Path, resolved: &Path) -> String {
    let written = dir
        .file_name()
        .filter(|name| *name != "." && *name != "..")
        .or_else(|| resolved.file_name());
    format!(
        "/{}",
        written
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )
}

/// The listen address: the flag (or file), else `0.0.0.0:$PORT` when PORT is set
/// (Cloud Run, Knative), else 127.0.0.1:3000.
///
/// # Errors
/// An unparsable address or PORT value.
pub fn listen_addr(flag: Option<&str>, port_env: Option<&str>) -> Result<SocketAddr, ConfigError> {
    if let Some(value) = flag {
        return parse_listen(value).map_err(|cause| ConfigError::Listen {
            given: crate::cli::named_as_given("listen", value),
            cause,
        });
    }
    match port_env {
        Some(port) => {
            let port: u16 = port.trim().parse().map_err(|_| ConfigError::Port {
                value: port.to_owned(),
            })?;
            Ok(SocketAddr::from(([0, 0, 0, 0], port)))
        }
        None => Ok(SocketAddr::from(([127, 0, 0, 1], 3000))),
    }
}

/// `--listen`'s value, or `listen` in watchdog.toml. Besides an address, the
/// short forms other servers take: a bare port (`3000`, on 127.0.0.1 as the
/// default is: local first), `:3000` (0.0.0.0, every IPv4 interface, as the
/// `PORT` default is) and `localhost:3000` (127.0.0.1, with no lookup).
fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    let port = |text: &str| text.parse::<u16>().ok();
    if let Some(port) = port(value) {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Some(port) = value.strip_prefix(':').and_then(port) {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Some(port) = value.strip_prefix("localhost:").and_then(port) {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value.parse().map_err(|err| {
        format!(
            "not an address like 127.0.0.1:3000, 0.0.0.0:8080, [::1]:3000, localhost:3000, \
             :3000 (0.0.0.0) or a bare port ({err})"
        )
    })
}

/// Whether `name` is one of the variables every function gets from watchdog's
/// own environment (CONTRACT §3), rather than one configured for it.
pub fn is_inherited_name(name: &str) -> bool {
    INHERITED.contains(&name) || name.starts_with("LC_")
}

fn inherited_env(
    own: impl Iterator<Item = (OsString, OsString)>,
    pass_env: &[String],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = own
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            is_inherited_name(&name) || pass_env.iter().any(|p| *p == name)
        })
        .collect();
    env.sort();
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_the_short_forms_other_servers_take() {
        let parsed = |text: &str| parse_listen(text).map(|addr| addr.to_string());
        assert_eq!(parsed("3000").unwrap(), "127.0.0.1:3000");
        assert_eq!(parsed(":8080").unwrap(), "0.0.0.0:8080");
        assert_eq!(parsed("localhost:3000").unwrap(), "127.0.0.1:3000");
        assert_eq!(parsed("[::1]:3000").unwrap(), "[::1]:3000");
        assert_eq!(parsed("0.0.0.0:0").unwrap(), "0.0.0.0:0");
        for bad in ["example.com:80", "70000", "localhost", "3000:"] {
            let err = parsed(bad).unwrap_err();
            assert!(err.contains("a bare port"), "{bad}: {err}");
        }
    }

    #[test]
    fn default_prefix_follows_the_written_name() {
        assert_eq!(
            default_prefix(Path::new("./api"), Path::new("/srv/build/fn")),
            "/api"
        );
        assert_eq!(
            default_prefix(Path::new("."), Path::new("/srv/api")),
            "/api"
        );
        assert_eq!(
            default_prefix(Path::new("api/"), Path::new("/srv/api")),
            "/api"
        );
    }

    #[test]
    fn listen_defaults() {
        assert_eq!(
            listen_addr(None, None).unwrap().to_string(),
            "127.0.0.1:3000"
        );
        assert_eq!(
            listen_addr(None, Some("8080")).unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(
            listen_addr(Some("127.0.0.1:0"), Some("8080"))
                .unwrap()
                .to_string(),
            "127.0.0.1:0"
        );
        assert!(listen_addr(Some("nope"), None).is_err());
        assert!(listen_addr(None, Some("http")).is_err());
    }

    #[test]
    fn only_listed_variables_are_inherited() {
        let own = [
            ("PATH", "/bin"),
            ("LC_ALL", "C"),
            ("SECRET", "x"),
            ("KEEP", "y"),
            ("AWS_SECRET_ACCESS_KEY", "z"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let names: Vec<_> = inherited_env(own, &["KEEP".into()])
            .into_iter()
            .map(|(k, _)| k.into_string().unwrap())
            .collect();
        assert_eq!(names, ["KEEP", "LC_ALL", "PATH"]);
    }
}
