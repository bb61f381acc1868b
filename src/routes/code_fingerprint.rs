//! Fingerprints of the code a warm worker may have loaded besides its own
//! file, mixed into its function's version so that editing that code recycles
//! the worker (a warm pool is kept per version): a worker that imported the
//! old code would otherwise serve it until watchdog restarts.
//!
//! - A Node handler module may import any script below DIR (a private
//!   `_lib/`), and, when DIR sits in a Node project (a `package.json` beside
//!   it, Vercel's layout of `api/` next to `lib/`), the project's own code
//!   beside DIR, which live reload watches for that reason
//!   ([`folders_to_watch`]).
//! - Any other warm function with an extension (`app.py`) may import files of
//!   its own kind below DIR (`_lib/db.py`).
//!
//! `node_modules` and dot-folders are left out everywhere: installing a package
//! is not an edit, and watching thousands of dependency folders would cost
//! inotify watches and start-up time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::FunctionFile;
use crate::config::FunctionSettings;

/// The extensions of what a handler module can import as code.
const CODE_EXTENSIONS: [&str; 6] = [".js", ".mjs", ".cjs", ".ts", ".mts", ".cts"];

/// How deep a walk goes below the folder it starts at.
const MAX_DEPTH: usize = 16;

/// Most folders of a Node project looked at, and watched, beside DIR.
pub const MAX_WATCHED_FOLDERS: usize = 2_000;

/// Mixes into each warm function's version the fingerprint of what it may
/// have imported (module doc).
pub fn mix_in_imports(
    dir: &Path,
    document_root: &Path,
    functions: &mut [(FunctionFile, FunctionSettings)],
) {
    let modules = functions.iter().any(|(file, _)| file.runner.node_module);
    let scripts = modules.then(|| scripts_version(dir, document_root));
    let warm_kinds: BTreeSet<String> = functions
        .iter()
        .filter(|(file, settings)| settings.warm.is_some() && !file.runner.node_module)
        .filter_map(|(file, _)| kind_of(&file.relative).map(str::to_owned))
        .collect();
    let kinds = versions_by_kind(dir, &warm_kinds);
    for (file, settings) in functions.iter_mut() {
        let imported = if file.runner.node_module {
            scripts
        } else if settings.warm.is_some() {
            kind_of(&file.relative).and_then(|kind| kinds.get(kind).copied())
        } else {
            None
        };
        if let Some(imported) = imported {
            // Hashed as a pair: a XOR would cancel a file's own fingerprint
            // out when it is the only one of its kind.
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (file.version, imported).hash(&mut hasher);
            file.version = hasher.finish();
        }
    }
}

/// `app.py` → `py`; none for a file without an extension.
fn kind_of(relative: &str) -> Option<&str> {
    let name = relative.rsplit('/').next()?;
    name.rsplit_once('.')
        .map(|(_, kind)| kind)
        .filter(|kind| !kind.is_empty())
}

/// The Node project DIR sits in: its parent, when that holds a `package.json`.
/// Not `/` or the home folder: a stray `~/package.json` (an `npm init` in the
/// wrong place) is common, and everything below it is not one project.
pub fn project_root(document_root: &Path) -> Option<PathBuf> {
    let parent = document_root.parent()?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let too_wide = parent.parent().is_none() || home.is_some_and(|home| home == parent);
    (!too_wide && parent.join("package.json").is_file()).then(|| parent.to_path_buf())
}

/// The folders of DIR's Node project that hold code a handler may import,
/// outside DIR's own tree: the project root and every folder below it that is
/// not `node_modules`, a dot-folder or a symlink (a project may link to
/// anywhere), breadth first, at most [`MAX_WATCHED_FOLDERS`]; the second value
/// says whether there were more. Live reload watches each, without recursion,
/// and their code is part of the handlers' version.
pub fn folders_to_watch(document_root: &Path) -> (Vec<PathBuf>, bool) {
    let Some(project) = project_root(document_root) else {
        return (Vec::new(), false);
    };
    let base_depth = project.components().count();
    let mut folders = vec![project];
    let mut next = 0;
    let mut more = false;
    while next < folders.len() && !more {
        let depth = folders[next].components().count() - base_depth;
        let Ok(entries) = fs::read_dir(&folders[next]) else {
            next += 1;
            continue;
        };
        let mut below: Vec<PathBuf> = entries
            .flatten()
            .filter(|entry| {
                entry.file_type().is_ok_and(|kind| kind.is_dir())
                    && is_walked(&entry.file_name().to_string_lossy())
            })
            .map(|entry| entry.path())
            .filter(|path| !path.starts_with(document_root))
            .collect();
        below.sort();
        if depth < MAX_DEPTH {
            for folder in below {
                if folders.len() == MAX_WATCHED_FOLDERS {
                    more = true;
                    break;
                }
                folders.push(folder);
            }
        }
        next += 1;
    }
    (folders, more)
}

/// Whether a file beside DIR, at `path`, counts for the handlers' version: an
/// edit to any other (a log, a database a function writes) is not a reason to
/// look again.
pub fn counts_beside_dir(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| is_script(&name.to_string_lossy(), Place::Beside))
}

/// Whether a change at `changed` may give the warm function `file` a new
/// version, so that a request for it waits for the walk that sees it
/// (`crate::server::handler`): a file of a kind its version counts (module
/// doc), its own included, or a path without an extension (a folder of such
/// files renamed, a binary). A log or a database it writes as it runs,
/// under DIR too, does not: a request would wait for a walk that changes
/// nothing for it, after every one of its writes.
pub fn may_change_version(file: &FunctionFile, changed: &Path) -> bool {
    let Some(name) = changed.file_name().map(|name| name.to_string_lossy()) else {
        return true;
    };
    let Some((_, kind)) = name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) else {
        return true;
    };
    if file.runner.node_module {
        is_script(&name, Place::BelowDir) || is_script(&name, Place::Beside)
    } else {
        kind_of(&file.relative) == Some(kind)
    }
}

/// A fingerprint of every script a handler module under `dir` may import:
/// those below `dir`, and the project's beside it.
fn scripts_version(dir: &Path, document_root: &Path) -> u64 {
    let mut version = 0u64;
    walk_files(dir, &mut |name, meta| {
        if is_script(name, Place::BelowDir) {
            version = version.wrapping_add(file_version(meta, name));
        }
    });
    for folder in folders_to_watch(document_root).0 {
        version = version.wrapping_add(files_version(&folder));
    }
    version
}

/// For each kind in `kinds` (`py`), a fingerprint of the files below `dir`
/// of that kind, in one walk.
fn versions_by_kind(dir: &Path, kinds: &BTreeSet<String>) -> HashMap<String, u64> {
    let mut versions = HashMap::new();
    if kinds.is_empty() {
        return versions;
    }
    walk_files(dir, &mut |name, meta| {
        if let Some((_, kind)) = name.rsplit_once('.')
            && kinds.contains(kind)
        {
            let version: &mut u64 = versions.entry(kind.to_owned()).or_default();
            *version = version.wrapping_add(file_version(meta, name));
        }
    });
    versions
}

/// What counts, below DIR (code and JSON, which a handler may import as
/// data) or beside it (code only, and `package.json`): a project often keeps
/// files a function writes as it runs there (a lowdb `db.json`), and each
/// write would recycle every handler's workers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    BelowDir,
    Beside,
}

fn is_script(name: &str, place: Place) -> bool {
    CODE_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
        || match place {
            Place::BelowDir => name.ends_with(".json"),
            Place::Beside => name == "package.json",
        }
}

/// The counted files directly in a folder beside DIR.
fn files_version(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().ok()?;
            (meta.is_file() && is_script(&name, Place::Beside)).then(|| file_version(&meta, &name))
        })
        .fold(0u64, u64::wrapping_add)
}

/// Calls `visit` with every file below `dir`, folders walked to
/// [`MAX_DEPTH`]. Symlinked folders are entered, as discovery enters them, but
/// each folder only once: two links that lead back up would otherwise make the
/// walk grow twofold at every level.
fn walk_files(dir: &Path, visit: &mut impl FnMut(&str, &fs::Metadata)) {
    let mut seen = HashSet::new();
    walk_folder(dir, 0, &mut seen, visit);
}

fn walk_folder(
    dir: &Path,
    depth: usize,
    seen: &mut HashSet<(u64, u64)>,
    visit: &mut impl FnMut(&str, &fs::Metadata),
) {
    let Ok(meta) = fs::metadata(dir) else { return };
    if !seen.insert((meta.dev(), meta.ino())) {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            if depth < MAX_DEPTH && is_walked(&name) {
                walk_folder(&entry.path(), depth + 1, seen, visit);
            }
        } else {
            visit(&name, &meta);
        }
    }
}

fn file_version(meta: &fs::Metadata, name: &str) -> u64 {
    super::discover::version_of(meta) ^ name.len() as u64
}

fn is_walked(folder: &str) -> bool {
    folder != "node_modules" && !folder.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_each_kind_below_dir_have_their_own_version() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("_lib")).unwrap();
        fs::create_dir_all(root.join(".venv")).unwrap();
        fs::write(root.join("app.py"), "x").unwrap();
        fs::write(root.join("_lib/db.py"), "x").unwrap();
        fs::write(root.join("tool.rb"), "x").unwrap();
        // Two links back up: walked once each, not 2^16 times.
        std::os::unix::fs::symlink("..", root.join("_lib/up")).unwrap();
        std::os::unix::fs::symlink(".", root.join("_lib/here")).unwrap();
        let kinds: BTreeSet<String> = ["py".to_owned(), "rb".to_owned()].into();
        let before = versions_by_kind(root, &kinds);
        assert_eq!(before.len(), 2);
        fs::write(root.join("_lib/db.py"), "changed").unwrap();
        fs::write(root.join(".venv/site.py"), "x").unwrap();
        fs::write(root.join("notes.txt"), "x").unwrap();
        let after = versions_by_kind(root, &kinds);
        assert_ne!(after["py"], before["py"]);
        assert_eq!(after["rb"], before["rb"]);
        assert!(versions_by_kind(root, &BTreeSet::new()).is_empty());
        assert_eq!(kind_of("a.b/app.py"), Some("py"));
        assert_eq!(kind_of("a.b/app"), None);
        assert_eq!(kind_of("bin/tool."), None);
    }

    #[test]
    fn a_node_project_beside_dir_is_part_of_the_version() {
        let project = tempfile::tempdir().unwrap();
        let root = project.path().canonicalize().unwrap();
        let api = root.join("api");
        fs::create_dir_all(api.join("_lib")).unwrap();
        fs::create_dir_all(root.join("lib")).unwrap();
        fs::create_dir_all(root.join("node_modules/dep")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(api.join("hello.js"), "x").unwrap();
        fs::write(root.join("lib/db.js"), "x").unwrap();
        // Without a package.json, the parent is not a Node project: nothing
        // beside DIR counts.
        assert_eq!(project_root(&api), None);
        assert_eq!(folders_to_watch(&api), (Vec::new(), false));
        let alone = scripts_version(&api, &api);
        fs::write(root.join("lib/db.js"), "changed").unwrap();
        assert_eq!(scripts_version(&api, &api), alone);

        fs::write(root.join("package.json"), "{}").unwrap();
        assert_eq!(project_root(&api), Some(root.clone()));
        let before = scripts_version(&api, &api);
        fs::write(root.join("lib/db.js"), "changed again").unwrap();
        let after_lib = scripts_version(&api, &api);
        assert_ne!(after_lib, before, "an edit in ../lib changes the version");
        fs::write(root.join("package.json"), "{ \"type\": \"module\" }").unwrap();
        let after_package = scripts_version(&api, &api);
        assert_ne!(after_package, after_lib, "so does package.json");
        // A data file a function writes beside DIR does not count; below DIR a
        // handler may import JSON, and it does.
        fs::write(root.join("db.json"), "[]").unwrap();
        fs::write(root.join("lib/cache.json"), "[]").unwrap();
        fs::write(root.join("node_modules/dep/index.js"), "x").unwrap();
        fs::write(root.join(".git/index.js"), "x").unwrap();
        assert_eq!(scripts_version(&api, &api), after_package);
        assert!(!counts_beside_dir(&root.join("db.json")));
        assert!(counts_beside_dir(&root.join("lib/db.js")));
        fs::write(api.join("_lib/data.json"), "x").unwrap();
        assert_ne!(scripts_version(&api, &api), after_package);
        // Watched: the root and lib, not DIR, node_modules, .git or a link.
        fs::create_dir_all(root.join("lib/deep/node_modules/x")).unwrap();
        std::os::unix::fs::symlink("/", root.join("lib/everything")).unwrap();
        assert_eq!(
            folders_to_watch(&api),
            (
                vec![root.clone(), root.join("lib"), root.join("lib/deep")],
                false
            )
        );
    }

    #[test]
    fn the_root_folder_is_never_a_project() {
        assert_eq!(project_root(Path::new("/api")), None);
    }
}
