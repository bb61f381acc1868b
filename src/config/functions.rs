//! Per-function settings: the `[functions."glob"]` sections (and `vercel.json`'s
//! `maxDuration`) resolved for one file.
//!
//! Several sections may match a file; they merge key by key, the more specific glob
//! winning: fewer wildcards first, then the longer glob (CONTRACT §6). `watchdog.toml`
//! sections win over `vercel.json` ones. Globs are relative to DIR and `*` does not
//! cross `/`. A section a less specific-looking one overrides everywhere is named
//! at start ([`FunctionRules::overridden`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};

use super::file::{EnvStyle, FileError, FunctionSection, OutputMode, WarmSection};

/// Everything one function runs with, after defaults, flags, files and sections.
#[derive(Debug, Clone)]
pub struct FunctionSettings {
    pub timeout: Duration,
    pub max_body: u64,
    /// A per-function limit on invocations at once (`1` serialises the function).
    pub max_concurrency: Option<u32>,
    /// The full environment the function starts from (before CGI variables).
    pub env: Vec<(OsString, OsString)>,
    pub output: OutputMode,
    pub content_type: Option<String>,
    pub exit_status: BTreeMap<i32, u16>,
    pub env_style: EnvStyle,
    pub limits: ResourceLimits,
    pub warm: Option<WarmSection>,
    /// The globs that applied, least specific first, for `watchdog routes`.
    pub matched: Vec<String>,
}

impl FunctionSettings {
    /// The settings beyond the timeout that a section (or a flag) set, for
    /// `watchdog routes` and `/_watchdog/routes`: every one that changes how the
    /// function runs, so a user can check what is in effect. Environment values
    /// may be secrets: only the names are shown.
    pub fn shown(&self) -> Vec<(&'static str, Shown)> {
        let mut out = Vec::new();
        if let Some(n) = self.max_concurrency {
            out.push(("max_concurrency", Shown::number(n.into())));
        }
        if self.output == OutputMode::Raw {
            out.push(("output", Shown::text("raw")));
        }
        if let Some(content_type) = &self.content_type {
            out.push(("content_type", Shown::text(content_type)));
        }
        if !self.exit_status.is_empty() {
            let pairs: Vec<String> = (self.exit_status.iter())
                .map(|(code, status)| format!("{code}:{status}"))
                .collect();
            let json = (self.exit_status.iter())
                .map(|(code, status)| (code.to_string(), (*status).into()))
                .collect();
            out.push((
                "exit_status",
                Shown {
                    text: pairs.join(","),
                    json: serde_json::Value::Object(json),
                },
            ));
        }
        if self.env_style == EnvStyle::Openfaas {
            out.push(("env_style", Shown::text("openfaas")));
        }
        let limits = &self.limits;
        if let Some(bytes) = limits.memory {
            out.push(("memory", Shown::number(bytes)));
        }
        if let Some(cpu) = limits.cpu_time {
            out.push(("cpu_time", Shown::duration(cpu)));
        }
        if let Some(bytes) = limits.max_output {
            out.push(("max_output", Shown::number(bytes)));
        }
        if let Some(n) = limits.max_processes {
            out.push(("max_processes", Shown::number(n.into())));
        }
        if let Some(n) = limits.open_files {
            out.push(("open_files", Shown::number(n.into())));
        }
        if let Some(warm) = &self.warm {
            out.push(("warm", Shown::warm(warm)));
        }
        // Each name once: the list holds every layer's pairs (`.env`, the
        // file's `env`, `--env`, the section's), later ones winning.
        let mut seen = std::collections::HashSet::new();
        let names: Vec<String> = (self.env.iter())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .filter(|name| !crate::config::is_inherited_name(name))
            .filter(|name| seen.insert(name.clone()))
            .collect();
        if !names.is_empty() {
            out.push((
                "env",
                Shown {
                    text: names.join(","),
                    json: names.into(),
                },
            ));
        }
        out
    }
}

/// One setting as `watchdog routes` prints it (`memory=67108864`) and as its
/// JSON form gives it, typed (a number, a list of names, an object).
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub text: String,
    pub json: serde_json::Value,
}

impl Shown {
    fn text(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            json: text.into(),
        }
    }

    fn number(n: u64) -> Self {
        Self {
            text: n.to_string(),
            json: n.into(),
        }
    }

    /// As humantime writes it: `3s`, `5m`, `1m 30s`.
    fn duration(duration: Duration) -> Self {
        Self::text(&humantime::format_duration(duration).to_string())
    }

    fn warm(section: &WarmSection) -> Self {
        let config = crate::invoke::pool::WarmConfig::from_section(section);
        let protocol = format!("{:?}", config.protocol).to_lowercase();
        let idle_timeout = humantime::format_duration(config.idle_timeout).to_string();
        let mut text = format!(
            "{protocol}(min={},max={},idle_timeout={idle_timeout}",
            config.min, config.max
        );
        if let Some(n) = config.max_requests {
            text.push_str(&format!(",max_requests={n}"));
        }
        text.push(')');
        let json = serde_json::json!({
            "protocol": protocol,
            "min": config.min,
            "max": config.max,
            "idle_timeout": idle_timeout,
            "max_requests": config.max_requests,
        });
        Self { text, json }
    }
}

/// Resource limits as configured; `crate::limits` enforces them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    pub memory: Option<u64>,
    pub cpu_time: Option<Duration>,
    pub max_output: Option<u64>,
    pub max_processes: Option<u32>,
    pub open_files: Option<u32>,
}

impl ResourceLimits {
    /// Whether one of them is enforced by killing the function (`cpu_time`'s
    /// SIGXCPU, the memory cgroup's OOM kill), which is then told apart from a
    /// crash: see [`crate::limits::limit_that_killed`].
    pub fn can_kill(&self) -> bool {
        self.cpu_time.is_some() || self.memory.is_some()
    }
}

/// The server-wide values a function starts from.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub timeout: Duration,
    pub max_body: u64,
    pub env: Vec<(OsString, OsString)>,
}

/// Calls `$apply!` with every key of a section that one value replaces (the
/// environment, merged name by name, aside): one list for merging and for
/// telling which section a key came from.
macro_rules! section_keys {
    ($apply:ident) => {
        $apply!(
            timeout,
            max_body,
            max_concurrency,
            output,
            content_type,
            exit_status,
            env_style,
            memory,
            cpu_time,
            max_output,
            max_processes,
            open_files,
            warm
        )
    };
}

/// The keys a section sets, by name (the environment aside).
fn keys_set(section: &FunctionSection) -> Vec<&'static str> {
    let mut keys = Vec::new();
    macro_rules! collect {
        ($($field:ident),*) => { $( if section.$field.is_some() { keys.push(stringify!($field)); } )* };
    }
    section_keys!(collect);
    keys
}

/// A key a section sets that another section of the same file overrides for
/// every file both match ([`FunctionRules::overridden`]).
#[derive(Debug)]
pub struct Overridden<'a> {
    pub glob: &'a str,
    pub key: &'static str,
    pub source: &'a SectionSource,
    /// The glob of the section whose value applies instead.
    pub by: &'a str,
}

#[derive(Debug)]
struct Rule {
    glob: String,
    matcher: GlobMatcher,
    section: FunctionSection,
    /// Sort key: later rules override earlier ones.
    rank: (u8, std::cmp::Reverse<usize>, usize),
    source: SectionSource,
}

/// The compiled sections.
#[derive(Debug, Default)]
pub struct FunctionRules {
    rules: Vec<Rule>,
}

/// Where a section came from, for error messages and precedence.
#[derive(Debug, Clone)]
pub struct SectionSource {
    pub file: std::path::PathBuf,
    pub line: usize,
    /// 0 for vercel.json, 1 for watchdog.toml.
    pub priority: u8,
}

/// `glob` with the brackets of dynamic route segments made literal, so that
/// `[functions."users/[id].py"]` is the file the README's routing names
/// (`api/users/[id].py`). Read as a glob, `[id]` is a class: the section
/// matched no such file, and set its keys on `users/d.py` instead. A group is
/// taken for a segment only where a route's is: a whole folder or file name
/// (`[id]`, `[...slug]`, `[[...slug]]`, after `/` or at the start, before `/`,
/// `.` or the end) of letters, digits, `_` and `-`, with a letter, and not a
/// one-character range. Every other group is a class as before: `*.[jt]s`,
/// `[a-z]*.sh`, `[Rr]eadme.sh`, `v[0-9]/*`, `[a-z].sh`.
fn route_brackets_literal(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 8);
    let mut rest = glob;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let at_name_start = out.is_empty() || out.ends_with('/');
        let segment = ["[[...", "[...", "["].into_iter().find_map(|start| {
            let inner = tail.strip_prefix(start)?;
            let end = if start == "[[..." { "]]" } else { "]" };
            let name_len = inner.find(end)?;
            let name = &inner[..name_len];
            let len = start.len() + name_len + end.len();
            let at_name_end = tail[len..].is_empty() || tail[len..].starts_with(['/', '.']);
            let one_char_range = name.len() == 3 && name.as_bytes()[1] == b'-';
            let is_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && name.bytes().any(|b| b.is_ascii_alphabetic())
                && !one_char_range;
            (at_name_start && at_name_end && is_name).then_some(len)
        });
        match segment {
            Some(len) => {
                out.push_str(&tail[..len].replace('[', "[[]"));
                rest = &tail[len..];
            }
            None => {
                out.push('[');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl FunctionRules {
    /// Compiles the globs.
    ///
    /// # Errors
    /// A glob that does not compile, located in its file.
    pub fn new(sections: Vec<(String, FunctionSection, SectionSource)>) -> Result<Self, FileError> {
        let mut rules = Vec::with_capacity(sections.len());
        for (glob, section, source) in sections {
            let pattern = route_brackets_literal(&glob);
            let matcher = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(|err| FileError {
                    file: source.file.display().to_string(),
                    line: source.line,
                    message: format!("`functions.\"{glob}\"`: not a valid glob: {}", err.kind()),
                })?
                .compile_matcher();
            // Counted on the pattern as compiled: `[id]` in `users/[id].py`
            // is a name, not a class.
            let wildcards = pattern
                .replace("[[]", "")
                .chars()
                .filter(|c| matches!(c, '*' | '?' | '[' | '{'))
                .count();
            rules.push(Rule {
                rank: (source.priority, std::cmp::Reverse(wildcards), glob.len()),
                glob,
                matcher,
                section,
                source,
            });
        }
        rules.sort_by_key(|rule| rule.rank);
        Ok(Self { rules })
    }

    /// The keys that reach none of the `files` their section matches, each
    /// with the section that wins instead. Fewer wildcards win, so a catch-all
    /// `"**"` of defaults overrides a narrower-looking `"deep/**/*.sh"` (two
    /// wildcards) that sets the same key: valid, and silent but for this.
    /// Sections of different files are left out: `watchdog.toml` overriding
    /// `vercel.json` is the documented order, not a surprise.
    pub fn overridden(&self, files: &[&str]) -> Vec<Overridden<'_>> {
        let keys: Vec<Vec<&'static str>> = self
            .rules
            .iter()
            .map(|rule| keys_set(&rule.section))
            .collect();
        let mut reached = std::collections::HashSet::new();
        let mut beaten_by = BTreeMap::new();
        for file in files {
            let matching: Vec<usize> = (0..self.rules.len())
                .filter(|&at| self.rules[at].matcher.is_match(file))
                .collect();
            let mut setter: BTreeMap<&str, usize> = BTreeMap::new();
            for &at in &matching {
                for key in &keys[at] {
                    setter.insert(key, at);
                }
            }
            for &at in &matching {
                for &key in &keys[at] {
                    let winner = setter[key];
                    if winner == at {
                        reached.insert((at, key));
                    } else if self.rules[winner].source.priority == self.rules[at].source.priority {
                        beaten_by.entry((at, key)).or_insert(winner);
                    }
                }
            }
        }
        beaten_by
            .into_iter()
            .filter(|entry| !reached.contains(&entry.0))
            .map(|((at, key), winner)| Overridden {
                glob: &self.rules[at].glob,
                key,
                source: &self.rules[at].source,
                by: &self.rules[winner].glob,
            })
            .collect()
    }

    /// The sections whose glob matches none of `files` (paths below DIR), with
    /// where each was written: a key such as `"api/hello.sh"` (DIR's own name
    /// in front) or `"hello"` (no extension) applies to nothing, silently.
    pub fn unmatched<'a>(
        &'a self,
        files: &'a [&str],
    ) -> impl Iterator<Item = (&'a str, &'a SectionSource)> + 'a {
        self.rules
            .iter()
            .filter(|rule| !files.iter().any(|file| rule.matcher.is_match(file)))
            .map(|rule| (rule.glob.as_str(), &rule.source))
    }

    /// The settings of the function at `relative` (a `/`-separated path below DIR).
    pub fn resolve(&self, relative: &str, defaults: &Defaults) -> FunctionSettings {
        let mut merged = FunctionSection::default();
        let mut matched = Vec::new();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for rule in self.rules.iter().filter(|r| r.matcher.is_match(relative)) {
            matched.push(rule.glob.clone());
            let s = &rule.section;
            macro_rules! take {
                ($($field:ident),*) => { $( if s.$field.is_some() { merged.$field = s.$field.clone(); } )* };
            }
            section_keys!(take);
            if let Some(extra) = &s.env {
                env.extend(extra.clone());
            }
        }
        let mut full_env = defaults.env.clone();
        full_env.extend(
            env.into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        FunctionSettings {
            timeout: merged.timeout.unwrap_or(defaults.timeout),
            max_body: merged.max_body.unwrap_or(defaults.max_body),
            max_concurrency: merged.max_concurrency,
            env: full_env,
            output: merged.output.unwrap_or_default(),
            content_type: merged.content_type,
            exit_status: merged.exit_status.unwrap_or_default(),
            env_style: merged.env_style.unwrap_or_default(),
            limits: ResourceLimits {
                memory: merged.memory,
                cpu_time: merged.cpu_time,
                max_output: merged.max_output,
                max_processes: merged.max_processes,
                open_files: merged.open_files,
            },
            warm: merged.warm,
            matched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(timeout_s: u64) -> FunctionSection {
        FunctionSection {
            timeout: Some(Duration::from_secs(timeout_s)),
            ..FunctionSection::default()
        }
    }

    fn source(priority: u8) -> SectionSource {
        SectionSource {
            file: "watchdog.toml".into(),
            line: 1,
            priority,
        }
    }

    fn defaults() -> Defaults {
        Defaults {
            timeout: Duration::from_secs(30),
            max_body: 10,
            env: vec![],
        }
    }

    #[test]
    fn more_specific_globs_win_key_by_key() {
        let mut env_section = section(5);
        env_section.timeout = None;
        env_section.env = Some([("A".to_owned(), "1".to_owned())].into());
        let rules = FunctionRules::new(vec![
            ("reports/report.sh".into(), section(120), source(1)),
            ("**".into(), section(1), source(1)),
            ("reports/*.sh".into(), section(60), source(1)),
            ("reports/*".into(), env_section, source(1)),
            ("reports/report.sh".into(), section(9), source(0)),
        ])
        .unwrap();
        let defaults = defaults();
        let exact = rules.resolve("reports/report.sh", &defaults);
        assert_eq!(exact.timeout, Duration::from_secs(120));
        assert_eq!(exact.env, vec![(OsString::from("A"), OsString::from("1"))]);
        assert_eq!(
            rules.resolve("reports/other.sh", &defaults).timeout,
            Duration::from_secs(60)
        );
        assert_eq!(
            rules.resolve("reports/sub/x.sh", &defaults).timeout,
            Duration::from_secs(1)
        );
        assert_eq!(
            rules.resolve("top.sh", &defaults).timeout,
            Duration::from_secs(1)
        );
        let none = FunctionRules::default().resolve("x.sh", &defaults);
        assert_eq!((none.timeout, none.max_body), (Duration::from_secs(30), 10));
    }

    /// `users/[id].py` names that file, as the README's routing does; read
    /// as a class, `[id]` matched no such file and set its keys on `users/d.py`.
    #[test]
    fn route_segments_in_a_glob_name_files() {
        assert_eq!(route_brackets_literal("users/[id].py"), "users/[[]id].py");
        assert_eq!(
            route_brackets_literal("docs/[...slug].js"),
            "docs/[[]...slug].js"
        );
        assert_eq!(
            route_brackets_literal("shop/[[...path]].mjs"),
            "shop/[[][[]...path]].mjs"
        );
        assert_eq!(
            route_brackets_literal("[team]/[user-id]/x.py"),
            "[[]team]/[[]user-id]/x.py"
        );
        // Classes stay classes: not a whole name, or a one-character range.
        for class in [
            "v[0-9]/*.sh",
            "[!_]*.sh",
            "a[b",
            "**/*.[jt]s",
            "[a-z]*.sh",
            "[Rr]eadme.sh",
            "[a-z].sh",
            "x[id].sh",
            "[[...x]",
        ] {
            assert_eq!(route_brackets_literal(class), class);
        }
        let rules = FunctionRules::new(vec![
            ("users/[id].py".into(), section(5), source(1)),
            ("docs/[...slug].js".into(), section(6), source(1)),
            ("v[0-9]/*.sh".into(), section(7), source(1)),
        ])
        .unwrap();
        let defaults = defaults();
        let timeout = |file: &str| rules.resolve(file, &defaults).timeout.as_secs();
        assert_eq!(timeout("users/[id].py"), 5);
        assert_eq!(timeout("users/d.py"), 30);
        assert_eq!(timeout("docs/[...slug].js"), 6);
        assert_eq!(timeout("v2/a.sh"), 7);
        let rules = FunctionRules::new(vec![("**/*.[jt]s".into(), section(9), source(1))]).unwrap();
        assert_eq!(rules.resolve("lib/a.js", &defaults).timeout.as_secs(), 9);
        assert_eq!(rules.resolve("a.ts", &defaults).timeout.as_secs(), 9);
        // A name, not a wildcard: it outranks a section with one.
        let rules = FunctionRules::new(vec![
            ("users/*.py".into(), section(8), source(1)),
            ("users/[id].py".into(), section(5), source(1)),
        ])
        .unwrap();
        assert_eq!(
            rules.resolve("users/[id].py", &defaults).timeout.as_secs(),
            5
        );
    }

    /// A key a narrower-looking section sets but a section with fewer
    /// wildcards overrides for all its files is named; one that reaches some
    /// file, or that vercel.json sets under a watchdog.toml section, is not.
    #[test]
    fn keys_overridden_everywhere_are_named() {
        let mut deep = section(3);
        deep.max_body = Some(1);
        let rules = FunctionRules::new(vec![
            ("**".into(), section(1), source(1)),
            ("deep/**/*.sh".into(), deep, source(1)),
            ("*.py".into(), section(5), source(1)),
            ("top.py".into(), section(9), source(0)),
        ])
        .unwrap();
        let files = ["deep/x/s.sh", "deep/s.sh", "top.py", "other.py"];
        let overridden = rules.overridden(&files);
        assert_eq!(
            overridden
                .iter()
                .map(|o| (o.glob, o.key, o.by))
                .collect::<Vec<_>>(),
            vec![("deep/**/*.sh", "timeout", "**")],
        );
        let defaults = defaults();
        assert_eq!(
            rules.resolve("deep/s.sh", &defaults).timeout,
            Duration::from_secs(1)
        );
        assert_eq!(rules.resolve("deep/s.sh", &defaults).max_body, 1);
    }

    #[test]
    fn bad_globs_are_located() {
        let err = FunctionRules::new(vec![("a[".into(), section(1), source(1))]).unwrap_err();
        assert!(err.to_string().contains("a["), "{err}");
    }
}
