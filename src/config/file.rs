//! `watchdog.toml` (CONTRACT §6) and the `vercel.json` / `.env` files that may sit
//! beside DIR.
//!
//! Parsing is strict: an unknown key or a bad value fails start-up with the file, the
//! line and the key named (`watchdog.toml:7: \`timeout\`: invalid duration ...`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::cli::LogFormat;

/// A problem in one of the configuration files, located for the user.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", at_line(*.line))]
pub struct FileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// `:LINE`, or nothing for an error about the whole file (line 0: it
/// could not be read at all).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

impl FileError {
    /// Locates `span` (a byte range of `source`) and names the key on that line.
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<std::ops::Range<usize>>,
        message: &str,
    ) -> Self {
        let start = span.map_or(0, |s| s.start).min(source.len());
        let line = source[..start].matches('\n').count() + 1;
        let text = source.lines().nth(line - 1).unwrap_or("");
        let key = text
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        let message = explain(text, &message.trim().replace('\n', " "));
        Self {
            file: file.display().to_string(),
            line,
            message: match key {
                Some(key) if !message.contains(&format!("`{key}`")) => {
                    format!("`{key}`: {message}")
                }
                _ => message,
            },
        }
    }
}

/// serde's wording where it names our own types or misses the likely slip:
/// `warm = true` was "expected struct RawWarmSection", and a section glob left
/// unquoted (`[functions.slow.sh]`, which TOML reads as nested tables) "unknown
/// field `sh`".
fn explain(line: &str, message: &str) -> String {
    let mut message = message.replace(
        "expected struct RawWarmSection",
        "expected a table such as `warm = { protocol = \"http\" }` (or \"lambda\"; `min`, `max`, `idle_timeout`, `max_requests` are optional)",
    );
    let header = line.trim();
    if let Some(glob) = header
        .strip_prefix("[functions.")
        .and_then(|rest| rest.strip_suffix(']'))
        .filter(|glob| !glob.starts_with(['"', '\'']))
        // A bare key needs no quotes; one with these is not what it seems.
        .filter(|glob| glob.contains(['.', '*', '?', '/', '{', '[']))
    {
        message.push_str(&format!(
            "; a glob with a dot or a wildcard must be quoted: [functions.\"{glob}\"]"
        ));
    }
    message
}

/// `listen` as written: an address in a string, or a bare port as a number
/// (`listen = 3000`), as `--listen 3000` takes it.
#[derive(Debug)]
pub enum ListenValue {
    Port(u16),
    Text(String),
}

impl<'de> Deserialize<'de> for ListenValue {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Port(i64),
            Text(String),
            // Anything else, for an error that says what `listen` takes.
            Other(serde::de::IgnoredAny),
        }
        match Raw::deserialize(de)? {
            Raw::Port(n) => u16::try_from(n)
                .map(ListenValue::Port)
                .map_err(|_| serde::de::Error::custom(format!("{n} is not a port (0 to 65535)"))),
            Raw::Text(text) => Ok(ListenValue::Text(text)),
            Raw::Other(_) => Err(serde::de::Error::custom(
                "expected an address such as \"127.0.0.1:3000\" or a port such as 3000",
            )),
        }
    }
}

impl ListenValue {
    pub fn text(&self) -> String {
        match self {
            ListenValue::Port(port) => port.to_string(),
            ListenValue::Text(text) => text.clone(),
        }
    }
}

/// The whole of `watchdog.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Checked where it is used (a flag may replace it), located by its span.
    pub listen: Option<Spanned<ListenValue>>,
    /// As `listen`.
    pub admin_listen: Option<Spanned<ListenValue>>,
    pub prefix: Option<String>,
    #[serde(default, deserialize_with = "timer_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub kill_grace: Option<Duration>,
    #[serde(default, deserialize_with = "size")]
    pub max_body: Option<u64>,
    #[serde(default, deserialize_with = "at_least_one")]
    pub max_concurrency: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    pub queue_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "timer_duration")]
    pub body_idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "timer_duration")]
    pub send_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "env_table")]
    pub env: Option<BTreeMap<String, String>>,
    pub pass_env: Option<Vec<String>>,
    #[serde(default, deserialize_with = "trusted_proxies")]
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,
    #[serde(default, deserialize_with = "duration")]
    pub drain_delay: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub drain_timeout: Option<Duration>,
    /// As `listen`.
    pub user: Option<Spanned<String>>,
    pub log_format: Option<LogFormat>,
    #[serde(default)]
    pub functions: BTreeMap<Spanned<String>, FunctionSection>,
    #[serde(default)]
    pub cron: Vec<Spanned<CronSection>>,
}

/// One `[[cron]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSection {
    pub name: String,
    pub path: String,
    pub schedule: String,
}

/// One `[functions."glob"]` section. Every key is optional; sections that match one
/// file merge key by key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSection {
    #[serde(default, deserialize_with = "timer_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "size")]
    pub max_body: Option<u64>,
    #[serde(default, deserialize_with = "at_least_one")]
    pub max_concurrency: Option<u32>,
    #[serde(default, deserialize_with = "env_table")]
    pub env: Option<BTreeMap<String, String>>,
    pub output: Option<OutputMode>,
    #[serde(default, deserialize_with = "content_type")]
    pub content_type: Option<String>,
    #[serde(default, deserialize_with = "exit_statuses")]
    pub exit_status: Option<BTreeMap<i32, u16>>,
    pub env_style: Option<EnvStyle>,
    #[serde(default, deserialize_with = "size")]
    pub memory: Option<u64>,
    #[serde(default, deserialize_with = "nonzero_duration")]
    pub cpu_time: Option<Duration>,
    #[serde(default, deserialize_with = "nonzero_size")]
    pub max_output: Option<u64>,
    #[serde(default, deserialize_with = "at_least_one")]
    pub max_processes: Option<u32>,
    #[serde(default, deserialize_with = "at_least_one")]
    pub open_files: Option<u32>,
    pub warm: Option<WarmSection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// A CGI header block, then the body, streamed.
    #[default]
    Cgi,
    /// The whole of stdout is the body (OpenFaaS classic watchdog).
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EnvStyle {
    #[default]
    Cgi,
    /// Adds `Http_Method`, `Http_Path`, `Http_Query` and `Http_<Header>`.
    Openfaas,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawWarmSection")]
pub struct WarmSection {
    pub protocol: WarmProtocol,
    pub min: Option<u32>,
    pub max: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    pub max_requests: Option<u64>,
}

/// A `warm` table as written, checked into a [`WarmSection`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWarmSection {
    protocol: WarmProtocol,
    #[serde(default)]
    min: Option<u32>,
    #[serde(default)]
    max: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    idle_timeout: Option<Duration>,
    #[serde(default)]
    max_requests: Option<u64>,
}

impl TryFrom<RawWarmSection> for WarmSection {
    type Error = String;

    fn try_from(raw: RawWarmSection) -> Result<Self, String> {
        // Named here: an error from inside the inline table is shown against
        // `warm` as a whole.
        if raw.max == Some(0) {
            return Err("`max` must be at least 1 (0 would allow no worker to run)".into());
        }
        if raw.max_requests == Some(0) {
            return Err("`max_requests` must be at least 1 (leave it out for no limit)".into());
        }
        let max = raw
            .max
            .unwrap_or(crate::invoke::pool::WarmConfig::DEFAULT_MAX);
        if let Some(min) = raw.min
            && min > max
        {
            return Err(format!(
                "`min` ({min}) is more than `max` ({max}): a pool keeps at most `max` workers; lower `min` or raise `max`"
            ));
        }
        Ok(Self {
            protocol: raw.protocol,
            min: raw.min,
            max: raw.max,
            idle_timeout: raw.idle_timeout,
            max_requests: raw.max_requests,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmProtocol {
    Http,
    Lambda,
}

fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    /// A bare number is refused with the fix (it said "invalid type: integer
    /// `5`, expected a string"): which unit it meant is anyone's guess.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Number(f64),
        Other(serde::de::IgnoredAny),
    }
    let text = match Written::deserialize(de)? {
        Written::Text(text) => text,
        Written::Number(number) => {
            return Err(serde::de::Error::custom(format!(
                "a duration is text with its unit: write \"{number}s\" for {number} seconds (or \"{number}ms\", \"{number}m\")"
            )));
        }
        Written::Other(_) => {
            return Err(serde::de::Error::custom(
                "expected a duration as text with its unit, such as \"30s\" or \"500ms\"",
            ));
        }
    };
    crate::cli::parse_duration(&text)
        .map(Some)
        .map_err(|err| serde::de::Error::custom(format!("invalid duration `{text}`: {err}")))
}

/// `content_type`: a value a header can carry, not empty (it was sent as an
/// empty header, and an invalid one silently became text/plain).
fn content_type<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(de)?;
    if text.trim().is_empty() || axum::http::HeaderValue::from_str(&text).is_err() {
        return Err(serde::de::Error::custom(format!(
            "`{text}` is not a media type such as \"application/json\" (leave the key out for text/plain)"
        )));
    }
    Ok(Some(text))
}

/// A duration that must not be zero: a zero `timeout` would fail every
/// request, a zero `cpu_time` stop every function at once, a zero
/// `body_idle_timeout` abandon every request body, a zero `send_timeout` every
/// answer that does not fit the socket's buffer.
fn nonzero_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let value = duration(de)?;
    if value.is_some_and(|d| d.is_zero()) {
        return Err(serde::de::Error::custom(
            "must be more than 0 (leave the key out for the default)",
        ));
    }
    Ok(value)
}

/// A timeout: not zero ([`nonzero_duration`]), nor under the millisecond
/// watchdog's timers count in ([`crate::cli::check_timer_duration`]).
/// (`cpu_time` is a count of seconds, rounded up: not a timer.)
fn timer_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let value = nonzero_duration(de)?;
    if let Some(duration) = value {
        crate::cli::check_timer_duration(duration).map_err(serde::de::Error::custom)?;
    }
    Ok(value)
}

fn nonzero_size<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    let value = size(de)?;
    if value == Some(0) {
        return Err(serde::de::Error::custom(
            "must be more than 0 bytes (leave the key out for no limit)",
        ));
    }
    Ok(value)
}

/// A count of which 0 would mean "never": no invocation, process, descriptor or
/// worker at all. (0 is not "unlimited" here, as it is for some hosts.)
fn at_least_one<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u32>, D::Error> {
    let value = u32::deserialize(de)?;
    if value == 0 {
        return Err(serde::de::Error::custom(
            "must be at least 1 (0 would allow nothing to run; leave the key out for the default)",
        ));
    }
    Ok(Some(value))
}

/// Addresses and ranges, each as `--trusted-proxy` takes one.
fn trusted_proxies<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<Vec<ipnet::IpNet>>, D::Error> {
    let entries = Vec::<String>::deserialize(de)?;
    entries
        .iter()
        .map(|entry| crate::server::trusted_proxies::parse_range(entry))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn env_table<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let table = BTreeMap::<String, String>::deserialize(de)?;
    for name in table.keys() {
        crate::cli::check_variable_name(name).map_err(serde::de::Error::custom)?;
    }
    Ok(Some(table))
}

fn size<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(i64),
        Text(String),
        // Anything else, so the error says what a size is rather than
        // serde's "did not match any variant of untagged enum".
        Other(serde::de::IgnoredAny),
    }
    const EXPECTED: &str = "a number of bytes or a text such as \"32MiB\"";
    match Size::deserialize(de)? {
        Size::Bytes(n) => u64::try_from(n).map(Some).map_err(|_| {
            serde::de::Error::custom(format!("invalid size {n}: expected {EXPECTED}"))
        }),
        Size::Text(text) => crate::cli::parse_size(&text)
            .map(Some)
            .map_err(|err| serde::de::Error::custom(format!("invalid size `{text}`: {err}"))),
        Size::Other(_) => Err(serde::de::Error::custom(format!(
            "invalid size: expected {EXPECTED}"
        ))),
    }
}

fn exit_statuses<'de, D: Deserializer<'de>>(de: D) -> Result<Option<BTreeMap<i32, u16>>, D::Error> {
    let raw = BTreeMap::<String, u16>::deserialize(de)?;
    let mut out = BTreeMap::new();
    for (code, status) in raw {
        let code: i32 = code
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("exit code `{code}` is not a number")))?;
        if !crate::invoke::is_answer_status(status) {
            return Err(serde::de::Error::custom(format!(
                "status {status} for exit code {code} is not from 200 to 599 (a final HTTP status)"
            )));
        }
        out.insert(code, status);
    }
    Ok(Some(out))
}

/// Reads and parses a `watchdog.toml`.
///
/// # Errors
/// An unreadable file, or a [`FileError`] locating the first problem.
pub fn load(path: &Path) -> Result<ConfigFile, FileError> {
    let source = std::fs::read_to_string(path).map_err(|err| FileError {
        file: path.display().to_string(),
        line: 0,
        message: format!("cannot read it: {err}; check the path (--config) and its permissions"),
    })?;
    toml::from_str(&source).map_err(|err| FileError::at(path, &source, err.span(), err.message()))
}

/// The config file to use: `--config`, else `watchdog.toml` beside DIR if present.
pub fn locate(flag: Option<&Path>, document_root: &Path) -> Option<PathBuf> {
    match flag {
        Some(path) => Some(path.to_path_buf()),
        None => {
            let beside = document_root.parent()?.join("watchdog.toml");
            beside.is_file().then_some(beside)
        }
    }
}

/// A `vercel.json` beside DIR, parsed.
struct VercelJson {
    path: PathBuf,
    source: String,
    json: serde_json::Value,
}

fn read_vercel_json(document_root: &Path) -> Result<Option<VercelJson>, FileError> {
    let Some(project) = document_root.parent() else {
        return Ok(None);
    };
    let path = project.join("vercel.json");
    let Ok(source) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let json = serde_json::from_str(&source).map_err(|err| FileError {
        file: path.display().to_string(),
        line: err.line(),
        message: format!("not valid JSON: {err}"),
    })?;
    Ok(Some(VercelJson { path, source, json }))
}

/// One of `crons` in a `vercel.json`, with where it is written.
pub struct VercelCron {
    pub path: String,
    pub schedule: String,
    pub file: PathBuf,
    /// Its schedule's line, for an error about it.
    pub line: usize,
}

/// `crons` from a `vercel.json` beside DIR.
///
/// # Errors
/// A `vercel.json` that is not valid JSON, or a cron entry without a path or schedule.
pub fn vercel_crons(document_root: &Path) -> Result<Vec<VercelCron>, FileError> {
    let Some(VercelJson { path, source, json }) = read_vercel_json(document_root)? else {
        return Ok(Vec::new());
    };
    let mut crons = Vec::new();
    for entry in json
        .get("crons")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        match (field("path"), field("schedule")) {
            (Some(cron_path), Some(schedule)) => {
                let quoted = serde_json::Value::from(schedule.as_str()).to_string();
                let line = match line_of(&source, &quoted) {
                    0 => line_of(&source, "crons"),
                    line => line,
                };
                crons.push(VercelCron {
                    path: cron_path,
                    schedule,
                    file: path.clone(),
                    line,
                });
            }
            _ => {
                return Err(FileError {
                    file: path.display().to_string(),
                    line: line_of(&source, "crons"),
                    message: "`crons`: each entry needs a `path` and a `schedule`".into(),
                });
            }
        }
    }
    Ok(crons)
}

/// `functions.<glob>.maxDuration` from a `vercel.json` beside DIR, as sections keyed
/// by globs relative to DIR (Vercel's globs start at the project root, `api/...`).
///
/// # Errors
/// A `vercel.json` that is not valid JSON or has a `maxDuration` that is not a
/// positive number of seconds.
pub fn vercel_sections(
    document_root: &Path,
) -> Result<Vec<(String, FunctionSection, usize)>, FileError> {
    let Some(VercelJson { path, source, json }) = read_vercel_json(document_root)? else {
        return Ok(Vec::new());
    };
    let folder = document_root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut sections = Vec::new();
    let Some(functions) = json.get("functions").and_then(|f| f.as_object()) else {
        return Ok(sections);
    };
    for (glob, settings) in functions {
        let Some(max) = settings.get("maxDuration") else {
            continue;
        };
        let longest = crate::cli::MAX_DURATION.as_secs_f64();
        let seconds = max
            .as_f64()
            .filter(|s| *s > 0.0 && *s <= longest)
            .ok_or_else(|| FileError {
                file: path.display().to_string(),
                line: line_of(&source, glob),
                message: format!(
                    "`functions.\"{glob}\".maxDuration`: expected a positive number of seconds, at most {longest}"
                ),
            })?;
        let relative = glob.trim_start_matches("./");
        let Some(relative) = relative.strip_prefix(&format!("{folder}/")) else {
            tracing::debug!(%glob, "vercel.json function pattern is outside DIR; ignored");
            continue;
        };
        sections.push((
            relative.to_owned(),
            FunctionSection {
                timeout: Some(Duration::from_secs_f64(seconds)),
                ..FunctionSection::default()
            },
            line_of(&source, &format!("\"{glob}\"")),
        ));
    }
    Ok(sections)
}

/// `vercel.json` keys that change how Vercel answers a request and that watchdog
/// does not apply: routes come from the files in DIR, and a function sets its
/// own headers. `env` (deprecated by Vercel, still read by its older projects)
/// gave functions variables they would now miss; they belong in `.env`.
const UNAPPLIED_VERCEL_KEYS: [&str; 7] = [
    "rewrites",
    "redirects",
    "headers",
    "routes",
    "cleanUrls",
    "trailingSlash",
    "env",
];

/// The keys of a `vercel.json` beside DIR that would change how a request is
/// answered on Vercel and that watchdog ignores, so start-up can say so rather
/// than serve something else in silence.
///
/// # Errors
/// A `vercel.json` that is not valid JSON.
pub fn unapplied_vercel_keys(document_root: &Path) -> Result<Vec<&'static str>, FileError> {
    let Some(VercelJson { json, .. }) = read_vercel_json(document_root)? else {
        return Ok(Vec::new());
    };
    Ok(UNAPPLIED_VERCEL_KEYS
        .into_iter()
        .filter(|key| {
            json.get(key)
                .is_some_and(|value| changes_answers(key, value))
        })
        .collect())
}

/// Whether a `vercel.json` value asks for something: `null`, an empty list and
/// `cleanUrls: false` (Vercel's default) do not.
fn changes_answers(key: &str, value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Array(items) => !items.is_empty(),
        serde_json::Value::Bool(false) => key != "cleanUrls",
        _ => true,
    }
}

fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

/// What a `.env` line dotenv could not parse says, and its line in `source`.
/// dotenv hands back the text of the entry (or of its value alone) from where
/// it began, which holds more than one line when a quoted value spans
/// several; `at` is where it failed in that text, its very end when a quote
/// was never closed. Only
/// the failing line is quoted: the rest of the file holds other values,
/// secrets among them.
fn dotenv_parse_error(source: &str, text: &str, at: usize) -> (String, usize) {
    let first = text.lines().next().unwrap_or_default();
    // The text is the entry from its start, or for a bad value the value
    // alone: its first line ends a line of the file.
    let begins = source
        .lines()
        .position(|line| line.ends_with(first))
        .map_or(0, |index| index + 1);
    let unclosed = at >= text.len() && !text.is_empty();
    let within = if unclosed {
        0
    } else {
        text.get(..at)
            .map_or(0, |before| before.matches('\n').count())
    };
    let line = if begins == 0 { 0 } else { begins + within };
    // The line's name only: its value may be the very secret being added
    // (`TOKEN=correct horse battery staple`), and the log keeps it.
    let shown = redacted(
        line.checked_sub(1)
            .and_then(|index| source.lines().nth(index))
            .or_else(|| text.lines().nth(within))
            .unwrap_or(first),
    );
    let message = if unclosed {
        format!(
            "cannot parse {shown}: a quote opened on this line is never closed, so the \
             value runs to the end of the file; close it where the value ends"
        )
    } else {
        format!(
            "cannot parse {shown}: write NAME=value, quoting a value that holds spaces, \
             quotes or `#` (NAME=\"a b\")"
        )
    };
    (message, line)
}

/// A `.env` line as an error message shows it: `` `NAME=…` `` when it starts
/// with a name, else no text of it at all.
fn redacted(line: &str) -> String {
    let entry = line.trim_start();
    let entry = entry.strip_prefix("export ").unwrap_or(entry).trim_start();
    match entry
        .split_once('=')
        .map(|(name, value)| (name.trim_end(), value))
    {
        // Not a value that starts with `=`: that is a base64 secret's padding,
        // and the "name" the secret itself.
        Some((name, value))
            if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                && !value.starts_with('=') =>
        {
            format!("`{name}=…` (its value is not shown)")
        }
        _ => "this line (its text is not shown: it may hold a secret)".to_owned(),
    }
}

/// `NAME=value` pairs from a `.env` beside DIR, if there is one.
///
/// # Errors
/// A line dotenv cannot parse, with its line number.
pub fn dotenv(document_root: &Path) -> Result<Vec<(String, String)>, FileError> {
    let Some(project) = document_root.parent() else {
        return Ok(Vec::new());
    };
    let path = project.join(".env");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let error = |message: String, line: usize| FileError {
        file: path.display().to_string(),
        line,
        message,
    };
    let iter = dotenvy::from_path_iter(&path).map_err(|err| error(err.to_string(), 0))?;
    let mut pairs = Vec::new();
    for item in iter {
        match item {
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(text, at)) => {
                let source = std::fs::read_to_string(&path).unwrap_or_default();
                let (message, line) = dotenv_parse_error(&source, &text, at);
                return Err(error(message, line));
            }
            Err(err) => return Err(error(err.to_string(), 0)),
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> String {
        let project = tempfile::tempdir().unwrap();
        let path = project.path().join("watchdog.toml");
        std::fs::write(&path, text).unwrap();
        match load(&path) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{text:?} loaded without an error"),
        }
    }

    /// Said in the user's terms, with what to write.
    #[test]
    fn a_warm_that_is_no_table_says_what_to_write() {
        let error = load_text("[functions.\"*.py\"]\nwarm = true\n");
        assert!(error.contains("watchdog.toml:2"), "{error}");
        assert!(!error.contains("RawWarmSection"), "{error}");
        assert!(error.contains("warm = { protocol = \"http\" }"), "{error}");
    }

    #[test]
    fn an_unquoted_glob_is_told_to_be_quoted() {
        let error = load_text("[functions.slow.sh]\ntimeout = \"5s\"\n");
        assert!(error.contains("watchdog.toml:1"), "{error}");
        assert!(
            error.contains("must be quoted: [functions.\"slow.sh\"]"),
            "{error}"
        );
        // A quoted one is not, nor a bare key (its error is another).
        let error = load_text("[functions.\"slow.sh\"]\ntimeout = \"soon\"\n");
        assert!(!error.contains("must be quoted"), "{error}");
        let error = load_text("[functions.hello]\ntimeout = \"1s\"\n[functions.hello]\n");
        assert!(!error.contains("must be quoted"), "{error}");
    }

    /// An unclosed quote is located at its line, and the rest of the file is
    /// not quoted back: it was, across several lines and with no line number.
    #[test]
    fn a_dotenv_quote_never_closed_is_located_at_its_line() {
        let project = tempfile::tempdir().unwrap();
        let dir = project.path().join("api");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            project.path().join(".env"),
            "A=1\nUNCLOSED=\"abc\nNEXT=2\nSECRET=s3cret\n",
        )
        .unwrap();
        let err = dotenv(&dir).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("`UNCLOSED=…`"), "{err}");
        assert!(!err.message.contains("abc"), "{err}");
        assert!(err.message.contains("never closed"), "{err}");
        assert!(!err.message.contains("s3cret"), "{err}");
    }

    /// The other shapes: a quote left open on the last line (no newline
    /// after it), a closed multi-line value with junk after it (not "never
    /// closed"), and a line that only contains an earlier one's text.
    #[test]
    fn dotenv_errors_name_the_line_that_fails() {
        let source = "A=1\nLAST=\"abc";
        let (message, line) = dotenv_parse_error(source, "LAST=\"abc", 9);
        assert_eq!(line, 2);
        assert!(message.contains("never closed"), "{message}");
        let source = "A=1\nB=\"x\ny\" junk\nC=2\n";
        let (message, line) = dotenv_parse_error(source, "B=\"x\ny\" junk\n", 7);
        assert_eq!(line, 3, "{message}");
        assert!(!message.contains("never closed"), "{message}");
        assert!(
            message.contains("this line (its text is not shown"),
            "{message}"
        );
        assert!(!message.contains("junk"), "{message}");
        // As dotenv reads them.
        let project = tempfile::tempdir().unwrap();
        let dir = project.path().join("api");
        std::fs::create_dir(&dir).unwrap();
        for (text, want_line, want) in [
            (
                "A=1\nLAST=\"abc",
                2,
                "never closed, so the value runs to the end of the file; close it",
            ),
            ("A=1\nB=\"x\ny\" junk\nC=2\n", 3, "this line (its text"),
            (
                "A=1\nB=x y\n",
                2,
                "`B=…` (its value is not shown): write NAME=value, quoting",
            ),
            ("A=1\nexport TOKEN=correct horse\n", 2, "`TOKEN=…`"),
        ] {
            std::fs::write(project.path().join(".env"), text).unwrap();
            let err = dotenv(&dir).unwrap_err();
            assert_eq!(err.line, want_line, "{text:?}: {err}");
            assert!(err.message.contains(want), "{text:?}: {err}");
            for value in ["x y", "junk", "horse"] {
                assert!(!err.message.contains(value), "{text:?}: {err}");
            }
        }
        // A base64 secret's padding is no `NAME=`: nothing of it is shown.
        assert!(!redacted("c2VjcmV0IHZhbHVl== junk").contains("c2Vj"));
        assert!(redacted(" export B = x y").contains("`B=…`"));
        let source = "OTHER_KEY=\"xyz\"\nKEY=\"x\n";
        let (_, line) = dotenv_parse_error(source, "KEY=\"x\n", 7);
        assert_eq!(line, 2);
    }

    #[test]
    fn vercel_json_keys_that_would_change_answers_are_reported() {
        let project = tempfile::tempdir().unwrap();
        let api = project.path().join("api");
        std::fs::create_dir(&api).unwrap();
        assert!(unapplied_vercel_keys(&api).unwrap().is_empty());
        std::fs::write(
            project.path().join("vercel.json"),
            r#"{ "$schema": "x", "crons": [], "rewrites": [{ "source": "/(.*)", "destination": "/api" }],
                "headers": [], "cleanUrls": false, "trailingSlash": false, "redirects": null,
                "env": { "API_KEY": "k" }, "build": { "env": { "X": "1" } } }"#,
        )
        .unwrap();
        assert_eq!(
            unapplied_vercel_keys(&api).unwrap(),
            ["rewrites", "trailingSlash", "env"]
        );
        std::fs::write(project.path().join("vercel.json"), "{ \"rewrites\": ").unwrap();
        assert!(unapplied_vercel_keys(&api).is_err());
    }

    fn parse(text: &str) -> Result<ConfigFile, FileError> {
        toml::from_str(text).map_err(|err| {
            FileError::at(Path::new("watchdog.toml"), text, err.span(), err.message())
        })
    }

    #[test]
    fn a_duration_without_its_unit_is_refused_with_the_fix() {
        let err = parse("timeout = 5\n").unwrap_err().to_string();
        assert!(err.contains(r#"write "5s" for 5 seconds"#), "{err}");
        let err = parse("[functions.\"a.sh\"]\ntimeout = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#"such as "30s""#), "{err}");
        assert!(parse("timeout = \"5s\"\n").is_ok());
        assert!(parse("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").is_ok());
        let err = parse("trusted_proxies = [\"lb.internal\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`lb.internal` is not an address or a range"),
            "{err}"
        );
        // Whole seconds, rounded up: not one of the timers.
        assert!(parse("[functions.\"a.sh\"]\ncpu_time = \"500us\"\n").is_ok());
    }

    #[test]
    fn contract_example_parses() {
        let config = parse(
            r#"
timeout = "30s"
env = { STAGE = "dev" }

[functions."reports/*.sh"]
timeout = "2m"
memory = "256MiB"
max_concurrency = 1

[functions."legacy/*"]
output = "raw"
content_type = "application/json"
env_style = "openfaas"
exit_status = { 2 = 400, 3 = 404 }

[functions."hello.js"]
warm = { protocol = "http", min = 1, max = 4, idle_timeout = "5m", max_requests = 10000 }
"#,
        )
        .unwrap();
        assert_eq!(config.timeout, Some(Duration::from_secs(30)));
        let legacy = config
            .functions
            .iter()
            .find(|(k, _)| k.get_ref() == "legacy/*")
            .unwrap()
            .1;
        assert_eq!(legacy.output, Some(OutputMode::Raw));
        assert_eq!(legacy.exit_status.as_ref().unwrap()[&3], 404);
        let reports = config
            .functions
            .iter()
            .find(|(k, _)| k.get_ref() == "reports/*.sh")
            .unwrap()
            .1;
        assert_eq!(reports.memory, Some(256 * 1024 * 1024));
    }

    #[test]
    fn an_exit_status_must_be_a_final_status() {
        // A 1xx is no final answer: the client would wait for another.
        let err = parse("[functions.\"a.sh\"]\nexit_status = { 2 = 101 }\n").unwrap_err();
        assert!(err.to_string().contains("not from 200 to 599"), "{err}");
        assert_eq!(err.line, 2, "{err}");
        assert!(parse("[functions.\"a.sh\"]\nexit_status = { 2 = 200, 3 = 599 }\n").is_ok());
    }

    /// A size that is neither bytes nor a size text says what a size is,
    /// where serde said "did not match any variant of untagged enum Size".
    #[test]
    fn a_bad_size_says_what_a_size_is() {
        for bad in ["-1", "1.5", "true"] {
            let err = parse(&format!("max_body = {bad}\n")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("`max_body`"), "{text}");
            assert!(
                text.contains("a number of bytes or a text such as"),
                "{text}"
            );
            assert!(!text.contains("untagged"), "{text}");
        }
        assert!(parse("max_body = 1024\n").is_ok());
        assert!(parse("max_body = \"1MiB\"\n").is_ok());
    }

    /// `listen = 3000` is a bare port, as `--listen 3000` is: it was a type
    /// error, as the key wanted a string.
    #[test]
    fn listen_takes_a_port_as_a_number() {
        let config = parse("listen = 3000\n").unwrap();
        assert_eq!(config.listen.unwrap().get_ref().text(), "3000");
        let config = parse("listen = \"0.0.0.0:8080\"\n").unwrap();
        assert_eq!(config.listen.unwrap().get_ref().text(), "0.0.0.0:8080");
        let err = parse("listen = true\n").unwrap_err().to_string();
        assert!(err.contains("or a port such as 3000"), "{err}");
        let err = parse("listen = 70000\n").unwrap_err().to_string();
        assert!(err.contains("70000 is not a port"), "{err}");
    }

    #[test]
    fn errors_name_line_and_key() {
        let err =
            parse("timeout = \"30s\"\n\n[functions.\"a.sh\"]\ntimeuot = \"1s\"\n").unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.to_string().contains("timeuot"), "{err}");
        let err = parse("kill_grace = \"soon\"\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(
            err.to_string().contains("`kill_grace`") && err.to_string().contains("soon"),
            "{err}"
        );
        let err = parse("[functions.\"x\"]\nexit_status = { 2 = 700 }\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(
            err.to_string()
                .starts_with("watchdog.toml:2: `exit_status`"),
            "{err}"
        );
    }

    #[test]
    fn values_that_would_let_nothing_run_are_refused_where_they_stand() {
        let cases = [
            (
                "max_concurrency = 0\n",
                1,
                "`max_concurrency`",
                "at least 1",
            ),
            ("timeout = \"0s\"\n", 1, "`timeout`", "more than 0"),
            (
                "[functions.\"a.sh\"]\ntimeout = \"500us\"\n",
                2,
                "`timeout`",
                "500us is shorter than 1ms",
            ),
            (
                "[functions.\"a.sh\"]\nmax_concurrency = 0\n",
                2,
                "`max_concurrency`",
                "at least 1",
            ),
            (
                "[functions.\"a.sh\"]\ncpu_time = \"0s\"\n",
                2,
                "`cpu_time`",
                "more than 0",
            ),
            (
                "[functions.\"a.sh\"]\ncontent_type = \"\"\n",
                2,
                "`content_type`",
                "not a media type",
            ),
            (
                "[functions.\"a.sh\"]\nopen_files = 0\n",
                2,
                "`open_files`",
                "at least 1",
            ),
            (
                "[functions.\"a.sh\"]\nmax_processes = 0\n",
                2,
                "`max_processes`",
                "at least 1",
            ),
            (
                "[functions.\"a.sh\"]\nmax_output = \"0\"\n",
                2,
                "`max_output`",
                "more than 0",
            ),
            (
                "[functions.\"a.sh\"]\nwarm = { protocol = \"http\", max = 0 }\n",
                2,
                "`max` must be at least 1",
                "`warm`",
            ),
            (
                "[functions.\"a.sh\"]\nwarm = { protocol = \"http\", min = 5, max = 2 }\n",
                2,
                "`warm`",
                "`min` (5) is more than `max` (2)",
            ),
            (
                "[functions.\"a.sh\"]\nwarm = { protocol = \"http\", min = 5 }\n",
                2,
                "`warm`",
                "`max` (4)",
            ),
            (
                "env = { \"A=B\" = \"x\" }\n",
                1,
                "`env`",
                "`A=B` is not a valid variable name",
            ),
            (
                "[functions.\"a.sh\"]\nenv = { \"\" = \"x\" }\n",
                2,
                "`env`",
                "not a valid variable name",
            ),
            (
                "[functions.\"a.sh\"]\nenv = { \"WITH SPACE\" = \"x\" }\n",
                2,
                "`env`",
                "WITH SPACE",
            ),
        ];
        for (text, line, key, says) in cases {
            let err = parse(text).unwrap_err();
            let shown = err.to_string();
            assert_eq!(err.line, line, "{text}: {shown}");
            assert!(
                shown.contains(key) && shown.contains(says),
                "{text}: {shown}"
            );
        }
        // What they guard is still allowed when it lets something run.
        let config = parse(
            "max_concurrency = 1\n[functions.\"a.sh\"]\nwarm = { protocol = \"http\", min = 2, max = 2 }\nenv = { _X1 = \"\" }\n",
        )
        .unwrap();
        assert_eq!(config.max_concurrency, Some(1));
    }
}
