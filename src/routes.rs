//! The route table: which function answers which URL (CONTRACT §2).
//!
//! Built once from a walk of DIR ([`discover`]); a request is then answered from
//! memory by a trie lookup ([`table`]) on safely decoded segments ([`path`]).

pub mod code_fingerprint;
pub mod discover;
pub mod link_watch;
pub mod path;
pub mod pattern;
pub mod reload;
pub mod setting_warnings;
pub mod shebang;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use discover::{FunctionFile, Runner, Skipped};
pub use path::PathError;
pub use table::ParamValue;

use crate::config::FunctionSettings;
use crate::observability::metrics::FunctionMetrics;
use crate::process::env_block::EnvBlock;
use table::{Endpoint, Found, Trie};

/// One routable function.
#[derive(Debug)]
pub struct Function {
    pub file: FunctionFile,
    /// DIR as the walk that found this function resolved it: DOCUMENT_ROOT,
    /// and where its file is run from. DIR given as a symlink that is later
    /// pointed elsewhere (a `current` release link) is resolved again by the
    /// walk that follows, whose functions run from the new folder, while a
    /// request routed before it runs the file it was routed to.
    pub document_root: Arc<Path>,
    /// The pattern as users see it: `/api/users/[id]`.
    pub pattern: String,
    /// Its effective settings (defaults, flags, config sections).
    pub settings: FunctionSettings,
    /// Its metric handles, looked up once rather than per request.
    pub metrics: FunctionMetrics,
    /// The variables it starts with whatever the request, in the form `execve`
    /// takes: built at its first start (by `invoke::cgi::environment`), so a request
    /// only adds its own on top.
    pub env_block: OnceLock<EnvBlock>,
    /// Which table build found it; later builds have higher numbers. A request
    /// routed just before a reload still holds the older table's function, and
    /// its version (a fingerprint) cannot say which of two versions is newer.
    pub generation: u64,
}

impl RouteMatch {
    /// The route's parameters as one JSON object (catch-alls as arrays), for
    /// `WATCHDOG_PARAMS` and `X-Watchdog-Params`; `{}` for a route without any.
    pub fn params_json(&self) -> String {
        if self.params.is_empty() {
            return "{}".to_owned();
        }
        let params: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    ParamValue::One(one) => serde_json::Value::from(one.as_str()),
                    ParamValue::Many(many) => serde_json::Value::from(many.clone()),
                };
                (name.clone(), value)
            })
            .collect();
        serde_json::Value::Object(params).to_string()
    }
}

/// Everything known about DIR's routes.
#[derive(Debug)]
pub struct RouteTable {
    pub dir: PathBuf,
    /// DIR as this table's walk resolved it ([`Function::document_root`]).
    pub document_root: Arc<Path>,
    pub prefix: String,
    prefix_segments: Vec<String>,
    pub functions: Vec<Arc<Function>>,
    pub skipped: Vec<Skipped>,
    /// URL patterns claimed by more than one file, with the files' indexes.
    pub conflicts: Vec<(String, Vec<usize>)>,
    trie: Trie,
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum Lookup {
    Found(RouteMatch),
    Conflict { pattern: String, files: Vec<String> },
    NotFound,
}

/// A path outside the prefix ([`RouteTable::prefix_missed_by`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixMiss {
    pub prefix: String,
    /// The path with the prefix before it, when a function answers there.
    pub meant: Option<String>,
}

/// A request matched to its function.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub function: Arc<Function>,
    pub params: Vec<(String, ParamValue)>,
    /// The URL up to (not including) a catch-all: RFC 3875's SCRIPT_NAME.
    pub script_name: String,
    /// RFC 3875's PATH_INFO: the catch-all part or the path after a script
    /// named by its file, with a leading `/`; `/` for a trailing slash alone;
    /// else empty.
    pub path_info: String,
}

impl RouteTable {
    /// Walks `dir` and builds the table mounted under `prefix`; `settings_for` gives
    /// each function (by its path relative to `dir`) its settings.
    ///
    /// # Errors
    /// When `dir` is missing or not a readable folder.
    pub fn build(
        dir: &Path,
        prefix: &str,
        settings_for: impl Fn(&str) -> FunctionSettings,
    ) -> std::io::Result<Self> {
        let found = discover::discover(dir)?;
        let prefix = normalize_prefix(prefix);
        let prefix_segments: Vec<String> = prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let generation = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut trie = Trie::default();
        let mut found_functions = Vec::with_capacity(found.functions.len());
        for (id, file) in found.functions.into_iter().enumerate() {
            trie.insert(&file.segments, id);
            for alias in &file.aliases {
                trie.insert(alias, id);
            }
            let mut settings = settings_for(&file.relative);
            if file.runner.node_module {
                // Handler modules always run warm, through the Node adapter,
                // which serves HTTP: a `lambda` protocol a section gives them
                // (a `"**"` one, say) cannot apply, and is warned of.
                let warm = settings
                    .warm
                    .get_or_insert(crate::config::file::WarmSection {
                        protocol: crate::config::file::WarmProtocol::Http,
                        min: None,
                        max: None,
                        idle_timeout: None,
                        max_requests: None,
                    });
                warm.protocol = crate::config::file::WarmProtocol::Http;
            }
            found_functions.push((file, settings));
        }
        code_fingerprint::mix_in_imports(dir, &found.root, &mut found_functions);
        let document_root: Arc<Path> = Arc::from(found.root.as_path());
        let mut functions = Vec::with_capacity(found_functions.len());
        for (file, settings) in found_functions {
            let shown = pattern::display(&prefix, &file.segments);
            functions.push(Arc::new(Function {
                document_root: Arc::clone(&document_root),
                metrics: FunctionMetrics::new(&shown),
                pattern: shown,
                settings,
                file,
                env_block: OnceLock::new(),
                generation,
            }));
        }
        // `users/[id].sh` and `users/[slug].sh` live in different trie branches but
        // claim the same URLs: make each endpoint a conflict naming both.
        let mut shapes: std::collections::BTreeMap<Vec<pattern::Segment>, Vec<usize>> =
            Default::default();
        for (id, function) in functions.iter().enumerate() {
            shapes
                .entry(shape(&function.file.segments))
                .or_default()
                .push(id);
        }
        for ids in shapes.values().filter(|ids| ids.len() > 1) {
            for &id in ids {
                for &other in ids {
                    trie.insert(&functions[other].file.segments, id);
                }
            }
        }
        let mut conflicts: Vec<(String, Vec<usize>)> = Vec::new();
        let mut reported = std::collections::HashSet::new();
        for (id, function) in functions.iter().enumerate() {
            for segments in std::iter::once(&function.file.segments).chain(&function.file.aliases) {
                if let Some(Endpoint::Conflict(ids)) = trie.endpoint_at(segments)
                    && ids[0] == id
                {
                    let mut key = ids.clone();
                    key.sort_unstable();
                    if reported.insert(key) {
                        conflicts.push((pattern::display(&prefix, segments), ids.clone()));
                    }
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            document_root,
            prefix,
            prefix_segments,
            functions,
            skipped: found.skipped,
            conflicts,
            trie,
        })
    }

    /// The files behind a conflict's function indexes.
    pub fn conflict_files(&self, ids: &[usize]) -> Vec<&str> {
        ids.iter()
            .map(|&i| self.functions[i].file.relative.as_str())
            .collect()
    }

    /// Builds the table for a server's settings.
    ///
    /// # Errors
    /// When DIR cannot be read.
    pub fn for_settings(settings: &crate::config::Settings) -> std::io::Result<Self> {
        let mut table = Self::build(&settings.dir, &settings.prefix, |relative| {
            settings.function(relative)
        })?;
        // `--config api/watchdog.toml` is read, wherever it is: not misplaced.
        if let Some(config) = &settings.config_file {
            let given = config.canonicalize().ok();
            for skipped in &mut table.skipped {
                if skipped.relative == "watchdog.toml"
                    && settings.dir.join("watchdog.toml").canonicalize().ok() == given
                {
                    skipped.reason = "the configuration file given with --config".into();
                    skipped.kind = discover::SkipKind::Deliberate;
                }
            }
        }
        Ok(table)
    }

    /// The table as `/_watchdog/routes` and `watchdog routes --json` show it.
    pub fn to_json(&self) -> serde_json::Value {
        let routes: Vec<serde_json::Value> = self
            .functions
            .iter()
            .map(|f| {
                let aliases: Vec<String> = f
                    .file
                    .aliases
                    .iter()
                    .map(|a| pattern::display(&self.prefix, a))
                    .collect();
                let s = &f.settings;
                let mut settings = serde_json::json!({
                    "timeout": humantime::format_duration(s.timeout).to_string(),
                    "max_body": s.max_body,
                    "max_concurrency": s.max_concurrency,
                    "output": format!("{:?}", s.output).to_lowercase(),
                    "env_style": format!("{:?}", s.env_style).to_lowercase(),
                    "sections": s.matched,
                });
                // The rest of what is in effect, as `watchdog routes` shows it.
                for (key, value) in s.shown() {
                    if settings.get(key).is_none_or(serde_json::Value::is_null) {
                        settings[key] = value.json;
                    }
                }
                let mut route = serde_json::json!({
                    "pattern": f.pattern,
                    "file": f.file.relative,
                    "also": aliases,
                    "runs_as": f.file.runner.describe(),
                    "settings": settings,
                });
                if let Some(caution) = &f.file.caution {
                    route["caution"] = caution.as_str().into();
                }
                route
            })
            .collect();
        let conflicts: Vec<serde_json::Value> = self
            .conflicts
            .iter()
            .map(|(pattern, ids)| {
                let files = self.conflict_files(ids);
                serde_json::json!({ "pattern": pattern, "files": files })
            })
            .collect();
        let skipped: Vec<serde_json::Value> = self
            .skipped
            .iter()
            .map(|s| serde_json::json!({ "file": s.relative, "reason": s.reason }))
            .collect();
        serde_json::json!({
            "dir": self.dir.display().to_string(),
            "prefix": self.prefix,
            "routes": routes,
            "conflicts": conflicts,
            "skipped": skipped,
        })
    }

    /// A classic cgi-bin URL, `/api/report.sh/2024/q1`: the script named by its
    /// file name, then a path for it to interpret, which becomes PATH_INFO
    /// (RFC 3875 §4.1.5), as Apache and lighttpd run it. An executable without an
    /// extension (`/api/git-http-backend/repo.git/info/refs`) is named by its
    /// route's own URL. Tried only when no route matches the whole path, and
    /// only where a segment is a function's own file name: a `[param]` that
    /// captured a value does not take a deeper path.
    fn script_with_extra_path(&self, rest: &[String]) -> Option<Found> {
        (1..rest.len()).rev().find_map(|end| {
            let script = &rest[end - 1];
            let found = self.trie.lookup(&rest[..end])?;
            let ids = match &found.endpoint {
                Endpoint::One(id) => std::slice::from_ref(id),
                Endpoint::Conflict(ids) => ids.as_slice(),
            };
            let named = ids.iter().any(|&id| {
                let file = &self.functions[id].file.relative;
                Path::new(file).file_name() == Some(std::ffi::OsStr::new(script))
            });
            (named && found.consumed == end).then_some(found)
        })
    }

    /// The prefix, when `raw_path` lies outside it: such a 404 is most often a
    /// URL without the prefix (`/hello` for `/api/hello`), which the error's
    /// hint then names, with that URL when a function answers it (`/` was
    /// told to try `/api/`, which answered 404 too). None under `--prefix /`,
    /// or for a path that does not decode (its 400 says why).
    pub fn prefix_missed_by(&self, raw_path: &str) -> Option<PrefixMiss> {
        let segments = path::decode_segments(raw_path).ok()?;
        if segments.starts_with(&self.prefix_segments) {
            return None;
        }
        let meant = format!("{}{raw_path}", self.prefix.trim_end_matches('/'));
        let answers = matches!(self.lookup(&meant), Ok(Lookup::Found(_)));
        Some(PrefixMiss {
            prefix: self.prefix.clone(),
            meant: answers.then_some(meant),
        })
    }

    /// The file at a path that found no route, when the walk passed it over
    /// as probably meant to be a function (not executable, a link leading
    /// out of DIR): its reason, for the operator's log. Never for a private
    /// name or a copy, and never told to the client, who would learn which
    /// files DIR holds.
    pub fn skipped_at(&self, raw_path: &str) -> Option<&discover::Skipped> {
        let segments = path::decode_segments(raw_path).ok()?;
        let rest = segments.strip_prefix(self.prefix_segments.as_slice())?;
        let wanted = rest.join("/");
        self.skipped.iter().find(|skipped| {
            skipped.kind == discover::SkipKind::Unexpected
                && (skipped.relative == wanted
                    || skipped
                        .relative
                        .rsplit_once('.')
                        .is_some_and(|(stem, _)| stem == wanted))
        })
    }

    /// Routes a raw request path (no query string).
    ///
    /// # Errors
    /// A path that is unsafe or malformed ([`PathError`]), answered 400.
    pub fn lookup(&self, raw_path: &str) -> Result<Lookup, PathError> {
        let segments = path::decode_segments(raw_path)?;
        let Some(rest) = segments.strip_prefix(self.prefix_segments.as_slice()) else {
            return Ok(Lookup::NotFound);
        };
        let Some(found) = self
            .trie
            .lookup(rest)
            .or_else(|| self.script_with_extra_path(rest))
        else {
            return Ok(Lookup::NotFound);
        };
        let id = match found.endpoint {
            Endpoint::One(id) => id,
            Endpoint::Conflict(ids) => {
                let first = &self.functions[ids[0]];
                return Ok(Lookup::Conflict {
                    pattern: first.pattern.clone(),
                    files: self
                        .conflict_files(&ids)
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                });
            }
        };
        let split = self.prefix_segments.len() + found.consumed;
        // Under `--prefix /`, a route at the root (`index`, a root catch-all)
        // matched no segment: its SCRIPT_NAME is empty (RFC 3875 §4.1.13), so
        // SCRIPT_NAME + PATH_INFO is always the path asked for.
        let script_name = if split == 0 {
            String::new()
        } else {
            join_path(&segments[..split])
        };
        let mut path_info = if split < segments.len() {
            join_path(&segments[split..])
        } else {
            String::new()
        };
        // A trailing slash is the script's to interpret, as Apache and lighttpd
        // pass it (`/api/app.cgi/` gives `/`, `/api/app.cgi/a/` gives `/a/`): an
        // app that redirects its root to `…/` (werkzeug's does, seeing an empty
        // PATH_INFO) would otherwise be given the same empty PATH_INFO again,
        // and loop. The route is the same with or without it (CONTRACT §2).
        // The root URL itself is so too (SCRIPT_NAME `/` with an empty
        // PATH_INFO made werkzeug redirect `/` to `/`, forever).
        if raw_path.ends_with('/') {
            path_info.push('/');
        }
        Ok(Lookup::Found(RouteMatch {
            function: Arc::clone(&self.functions[id]),
            params: found.params,
            script_name,
            path_info,
        }))
    }
}

/// A pattern with its parameter names erased: two patterns of one shape match
/// exactly the same URLs.
fn shape(segments: &[pattern::Segment]) -> Vec<pattern::Segment> {
    use pattern::Segment;
    segments
        .iter()
        .map(|segment| match segment {
            Segment::Static(s) => Segment::Static(s.clone()),
            Segment::Param(_) => Segment::Param(String::new()),
            Segment::CatchAll(_) => Segment::CatchAll(String::new()),
            Segment::OptionalCatchAll(_) => Segment::OptionalCatchAll(String::new()),
        })
        .collect()
}

fn join_path(segments: &[String]) -> String {
    if segments.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.push_str(segment);
    }
    out
}

/// `api`, `/api/`, `/api` → `/api`; `` and `/` → `/`.
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn table(files: &[&str]) -> (tempfile::TempDir, RouteTable) {
        let tmp = tempfile::tempdir().unwrap();
        for rel in files {
            let path = tmp.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let table = RouteTable::build(tmp.path(), "/api", test_settings).unwrap();
        (tmp, table)
    }

    pub(crate) fn test_settings(relative: &str) -> FunctionSettings {
        let defaults = crate::config::Defaults {
            timeout: std::time::Duration::from_secs(30),
            max_body: 1024,
            env: Vec::new(),
        };
        crate::config::FunctionRules::default().resolve(relative, &defaults)
    }

    fn found(table: &RouteTable, url: &str) -> RouteMatch {
        match table.lookup(url).unwrap() {
            Lookup::Found(m) => m,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn urls_and_cgi_paths() {
        let (_tmp, table) = table(&["hello.sh", "index.sh", "users/[id].sh", "git/[...path].sh"]);
        assert_eq!(
            found(&table, "/api/hello").function.file.relative,
            "hello.sh"
        );
        assert_eq!(
            found(&table, "/api/hello.sh").function.file.relative,
            "hello.sh"
        );
        assert_eq!(
            found(&table, "/api/hello/").function.file.relative,
            "hello.sh"
        );
        assert_eq!(found(&table, "/api").function.file.relative, "index.sh");
        assert_eq!(
            found(&table, "/api/index.sh").function.file.relative,
            "index.sh"
        );
        let user = found(&table, "/api/users/42");
        assert_eq!(
            (user.script_name.as_str(), user.path_info.as_str()),
            ("/api/users/42", "")
        );
        let git = found(&table, "/api/git/repo.git/info/refs");
        assert_eq!(git.script_name, "/api/git");
        assert_eq!(git.path_info, "/repo.git/info/refs");
        assert!(matches!(
            table.lookup("/other/hello").unwrap(),
            Lookup::NotFound
        ));
        assert!(matches!(
            table.lookup("/api/nope").unwrap(),
            Lookup::NotFound
        ));
        assert!(table.lookup("/api/%2e%2e/hello").is_err());
    }

    #[test]
    fn conflicts_are_reported_and_answered() {
        let (_tmp, table) = table(&["a.sh", "a.py", "b.sh"]);
        assert_eq!(table.conflicts.len(), 1);
        assert_eq!(table.conflicts[0].0, "/api/a");
        match table.lookup("/api/a").unwrap() {
            Lookup::Conflict { files, .. } => assert_eq!(files, ["a.py", "a.sh"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(found(&table, "/api/a.sh").function.file.relative, "a.sh");
    }

    #[test]
    fn differently_named_parameters_in_one_place_conflict() {
        let (_tmp, table) = table(&["users/[id].sh", "users/[slug].sh", "users/[id]/edit.sh"]);
        assert_eq!(table.conflicts.len(), 1, "{:?}", table.conflicts);
        assert!(matches!(
            table.lookup("/api/users/7").unwrap(),
            Lookup::Conflict { .. }
        ));
        assert_eq!(
            found(&table, "/api/users/7/edit").function.file.relative,
            "users/[id]/edit.sh"
        );
    }

    #[test]
    fn a_path_outside_the_prefix_is_told_the_prefix() {
        let (_dir, table) = table(&["hello.sh"]);
        let miss = |meant: Option<&str>| {
            Some(PrefixMiss {
                prefix: "/api".to_owned(),
                meant: meant.map(str::to_owned),
            })
        };
        assert_eq!(table.prefix_missed_by("/hello"), miss(Some("/api/hello")));
        // No function at /api/apix/hello: no URL to suggest.
        assert_eq!(table.prefix_missed_by("/apix/hello"), miss(None));
        assert_eq!(table.prefix_missed_by("/api/nothing"), None);
        assert_eq!(table.prefix_missed_by("/api"), None);
    }

    #[test]
    fn prefix_normalization() {
        assert_eq!(normalize_prefix("api"), "/api");
        assert_eq!(normalize_prefix("/api/"), "/api");
        assert_eq!(normalize_prefix("/"), "/");
        assert_eq!(normalize_prefix(""), "/");
    }
}
