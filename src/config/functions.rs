//! Per-function settings: the `[functions."glob"]` sections (and `vercel.json`'s
//! `maxDuration`) resolved for one file.
//!
//! Several sections may match a file; they merge key by key, the more specific glob
//! winning ([`Specificity`]). `watchdog.toml` sections win over `vercel.json` ones.
//! Globs are relative to DIR and `*` does not cross `/`.

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

/// How narrowly a glob names files, least first: more literal characters
/// (folder separators aside), then fewer wildcards, then the longer glob.
/// Counting wildcards first made the catch-all `**` (one wildcard) beat any
/// narrower glob that needs a `**` and another wildcard (`deep/**/*.sh`), so a
/// defaults section silently overrode them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    literals: usize,
    wildcards: std::cmp::Reverse<usize>,
    length: usize,
}

impl Specificity {
    /// `*`, `**`, `?`, a `[class]` and a `{a,b}` group are one wildcard each.
    fn of(glob: &str) -> Self {
        let (mut literals, mut wildcards) = (0, 0);
        let mut chars = glob.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    wildcards += 1;
                    while chars.next_if_eq(&'*').is_some() {}
                }
                '?' => wildcards += 1,
                '[' | '{' => {
                    wildcards += 1;
                    let close = if c == '[' { ']' } else { '}' };
                    for inner in chars.by_ref() {
                        if inner == close {
                            break;
                        }
                    }
                }
                '\\' => {
                    chars.next();
                    literals += 1;
                }
                '/' => {}
                _ => literals += 1,
            }
        }
        Self {
            literals,
            wildcards: std::cmp::Reverse(wildcards),
            length: glob.len(),
        }
    }
}

#[derive(Debug)]
struct Rule {
    glob: String,
    matcher: GlobMatcher,
    section: FunctionSection,
    /// Sort key: later rules override earlier ones.
    rank: (u8, Specificity),
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

impl FunctionRules {
    /// Compiles the globs.
    ///
    /// # Errors
    /// A glob that does not compile, located in its file.
    pub fn new(sections: Vec<(String, FunctionSection, SectionSource)>) -> Result<Self, FileError> {
        let mut rules = Vec::with_capacity(sections.len());
        for (glob, section, source) in sections {
            let matcher = GlobBuilder::new(&glob)
                .literal_separator(true)
                .build()
                .map_err(|err| FileError {
                    file: source.file.display().to_string(),
                    line: source.line,
                    message: format!("`functions.\"{glob}\"`: not a valid glob: {}", err.kind()),
                })?
                .compile_matcher();
            rules.push(Rule {
                rank: (source.priority, Specificity::of(&glob)),
                glob,
                matcher,
                section,
                source,
            });
        }
        rules.sort_by_key(|rule| rule.rank);
        Ok(Self { rules })
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
            take!(
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
            );
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

    /// A catch-all defaults section never beats a narrower glob, whatever
    /// wildcards that one needs.
    #[test]
    fn a_catch_all_loses_to_any_narrower_glob() {
        let rules = FunctionRules::new(vec![
            ("**".into(), section(1), source(1)),
            ("deep/**/*.sh".into(), section(3), source(1)),
            ("**/*.py".into(), section(4), source(1)),
            ("*.py".into(), section(5), source(1)),
        ])
        .unwrap();
        let defaults = defaults();
        let timeout = |file: &str| rules.resolve(file, &defaults).timeout.as_secs();
        assert_eq!(timeout("deep/x/s.sh"), 3);
        assert_eq!(timeout("deep/s.sh"), 3);
        assert_eq!(timeout("other/s.sh"), 1);
        assert_eq!(timeout("sub/tool.py"), 4);
        // As many letters: the one with fewer wildcards.
        assert_eq!(timeout("tool.py"), 5);
    }

    #[test]
    fn globs_rank_by_letters_then_wildcards_then_length() {
        let rank = Specificity::of;
        assert!(rank("**") < rank("deep/**/*.sh"));
        assert!(rank("**/*.py") < rank("*.py"));
        assert!(rank("reports/*") < rank("reports/*.sh"));
        assert!(rank("reports/*.sh") < rank("reports/report.sh"));
        assert!(rank("{a,b}/x.sh") < rank("a/x.sh"));
        assert_eq!(rank("[ab]/x.sh").literals, 4);
    }

    #[test]
    fn bad_globs_are_located() {
        let err = FunctionRules::new(vec![("a[".into(), section(1), source(1))]).unwrap_err();
        assert!(err.to_string().contains("a["), "{err}");
    }
}
