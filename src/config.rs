//! The validated settings a server runs with, decided in one place.
//!
//! Precedence: command-line flags > `WATCHDOG_*` environment (both resolved by clap
//! into `Option`s) > defaults here. The configuration file joins between environment
//! and defaults when it lands (CONTRACT §6).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{LogFormat, ServeFlags};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;
pub const DEFAULT_MAX_CONCURRENCY: u32 = 256;
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Variables of watchdog's own environment every function gets (CONTRACT §3).
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

/// A setting that cannot be used, named for the user.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{dir}: {cause}\nhint: pass the folder of functions, e.g. `watchdog serve ./api`")]
    Dir { dir: String, cause: std::io::Error },
    #[error("--listen {value}: not an address like 127.0.0.1:3000 ({cause})")]
    Listen { value: String, cause: String },
    #[error("PORT={value}: not a port number; unset PORT or pass --listen")]
    Port { value: String },
    #[error("{flag}: {what} is not available in this version of watchdog")]
    Unsupported {
        flag: &'static str,
        what: &'static str,
    },
}

/// Everything an invocation needs to know about the server's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// DIR as given on the command line.
    pub dir: PathBuf,
    /// DIR made absolute and resolved: DOCUMENT_ROOT.
    pub document_root: PathBuf,
    pub prefix: String,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub max_body: u64,
    pub max_concurrency: u32,
    pub queue_timeout: Duration,
    pub drain_delay: Duration,
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
    /// The environment every function starts from: inherited basics, `--pass-env`,
    /// then `--env` (later entries win).
    pub function_env: Vec<(OsString, OsString)>,
}

impl Settings {
    /// Applies defaults to what the command line and environment gave.
    ///
    /// # Errors
    /// A DIR that is not a readable folder, or a flag this version cannot honour.
    pub fn resolve(dir: &Path, flags: &ServeFlags) -> Result<Self, ConfigError> {
        if flags.config.is_some() {
            return Err(ConfigError::Unsupported {
                flag: "--config",
                what: "a configuration file (watchdog.toml)",
            });
        }
        if flags.user.is_some() {
            return Err(ConfigError::Unsupported {
                flag: "--user",
                what: "running functions as another user",
            });
        }
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
        let prefix = flags
            .prefix
            .clone()
            .unwrap_or_else(|| default_prefix(dir, &document_root));
        Ok(Self {
            dir: dir.to_path_buf(),
            document_root,
            prefix: crate::routes::normalize_prefix(&prefix),
            timeout: flags.timeout.unwrap_or(DEFAULT_TIMEOUT),
            kill_grace: flags.kill_grace.unwrap_or(DEFAULT_KILL_GRACE),
            max_body: flags.max_body.unwrap_or(DEFAULT_MAX_BODY),
            max_concurrency: flags.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
            queue_timeout: flags.queue_timeout.unwrap_or(DEFAULT_QUEUE_TIMEOUT),
            drain_delay: flags.drain_delay.unwrap_or_default(),
            drain_timeout: flags.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            log_format: flags.log_format.unwrap_or_default(),
            function_env: function_env(std::env::vars_os(), flags),
        })
    }
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

/// The listen address: the flag, else `0.0.0.0:$PORT` when PORT is set (Cloud Run,
/// Knative), else 127.0.0.1:3000.
///
/// # Errors
/// An unparsable flag or PORT value.
pub fn listen_addr(flag: Option<&str>, port_env: Option<&str>) -> Result<SocketAddr, ConfigError> {
    if let Some(value) = flag {
        return value
            .parse()
            .map_err(|err: std::net::AddrParseError| ConfigError::Listen {
                value: value.to_owned(),
                cause: err.to_string(),
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

fn function_env(
    own: impl Iterator<Item = (OsString, OsString)>,
    flags: &ServeFlags,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = own
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            INHERITED.contains(&name.as_ref())
                || name.starts_with("LC_")
                || flags.pass_env.iter().any(|p| *p == name)
        })
        .collect();
    env.sort();
    env.extend(
        flags
            .env
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value))),
    );
    env
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let flags = ServeFlags {
            pass_env: vec!["KEEP".into()],
            env: vec![("STAGE".into(), "dev".into())],
            ..ServeFlags::default()
        };
        let names: Vec<_> = function_env(own, &flags)
            .into_iter()
            .map(|(k, _)| k.into_string().unwrap())
            .collect();
        assert_eq!(names, ["KEEP", "LC_ALL", "PATH", "STAGE"]);
    }
}
