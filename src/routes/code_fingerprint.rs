//! Fingerprints of the code a warm worker may have loaded besides its own
//! file, so that editing it recycles the worker (a warm pool is keyed by its
//! function's version): a worker that imported the old code would otherwise
//! serve it until watchdog restarts.
//!
//! - A Node handler module may import any script below DIR (a private
//!   `_lib/`), and, when DIR sits in a Node project (a `package.json` beside
//!   it, Vercel's layout of `api/` next to `lib/`), the project's own code
//!   beside DIR, which live reload watches for that reason.
//! - Any other warm function with an extension (`app.py`) may import files of
//!   its own kind below DIR (`_lib/db.py`).
//!
//! `node_modules` and dot-folders are left out everywhere: installing a package
//! is not an edit, and watching thousands of dependency folders would cost
//! inotify watches and start-up time.

use std::fs;
use std::path::{Path, PathBuf};

/// The extensions of what a handler module can import as code.
const CODE_EXTENSIONS: [&str; 6] = [".js", ".mjs", ".cjs", ".ts", ".mts", ".cts"];

/// How deep a fingerprint walk goes below the folder it starts at.
const MAX_DEPTH: usize = 16;

/// The Node project DIR sits in: its parent, when that holds a `package.json`.
pub fn project_root(document_root: &Path) -> Option<PathBuf> {
    let parent = document_root.parent()?;
    parent
        .join("package.json")
        .is_file()
        .then(|| parent.to_path_buf())
}

/// The project's folders beside DIR whose scripts a handler may import: every
/// folder of the project root but DIR itself, `node_modules` and dot-folders.
pub fn folders_beside(document_root: &Path) -> Vec<PathBuf> {
    let Some(project) = project_root(document_root) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(&project) else {
        return Vec::new();
    };
    let mut folders = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.metadata().is_ok_and(|meta| meta.is_dir())
            && is_walked(&entry.file_name().to_string_lossy())
            && !path
                .canonicalize()
                .is_ok_and(|real| real.starts_with(document_root))
        {
            folders.push(path);
        }
    }
    folders.sort();
    folders
}

/// Most folders of a Node project live reload watches beside DIR.
pub const MAX_WATCHED_FOLDERS: usize = 2_000;

/// The folders live reload watches, one by one, for edits to the project's
/// scripts beside DIR: the project root and every folder below it that the
/// fingerprint walks (so a `node_modules` deep in a monorepo's `packages/`
/// costs no watch), DIR's own tree aside. At most [`MAX_WATCHED_FOLDERS`];
/// the second value says whether there were more.
pub fn folders_to_watch(document_root: &Path) -> (Vec<PathBuf>, bool) {
    let Some(project) = project_root(document_root) else {
        return (Vec::new(), false);
    };
    let mut folders = vec![project];
    let mut next = 0;
    let mut more = false;
    while next < folders.len() {
        let depth = folders[next]
            .components()
            .count()
            .saturating_sub(folders[0].components().count());
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

/// A fingerprint of every script a handler module under `dir` may import:
/// those below `dir`, and the project's beside it (its top-level files too,
/// `package.json` among them).
pub fn scripts_version(dir: &Path, document_root: &Path) -> u64 {
    let mut version = tree_version(dir, 0, Place::BelowDir);
    if let Some(project) = project_root(document_root) {
        version = version.wrapping_add(files_version(&project));
        for folder in folders_beside(document_root) {
            version = version.wrapping_add(tree_version(&folder, 0, Place::Beside));
        }
    }
    version
}

/// For each of `extensions` (`py`), a fingerprint of the files below `dir`
/// that have it, in one walk.
pub fn versions_by_extension(
    dir: &Path,
    extensions: &std::collections::BTreeSet<&str>,
) -> std::collections::HashMap<String, u64> {
    let mut versions = std::collections::HashMap::new();
    if !extensions.is_empty() {
        walk_by_extension(dir, 0, extensions, &mut versions);
    }
    versions
}

fn walk_by_extension(
    dir: &Path,
    depth: usize,
    extensions: &std::collections::BTreeSet<&str>,
    versions: &mut std::collections::HashMap<String, u64>,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            if depth < MAX_DEPTH && is_walked(&name) {
                walk_by_extension(&entry.path(), depth + 1, extensions, versions);
            }
        } else if let Some((_, extension)) = name.rsplit_once('.')
            && extensions.contains(extension)
        {
            let version = versions.entry(extension.to_owned()).or_insert(0u64);
            *version = version.wrapping_add(file_version(&meta, &name));
        }
    }
}

/// The script files directly in `dir`.
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

/// The script files below `dir`, folders included. Symlinked folders are
/// entered below DIR, as discovery enters them, but not beside it: a project
/// may hold links to anywhere, and a loop would cost a walk of the whole
/// project at every level down to the limit.
fn tree_version(dir: &Path, depth: usize, place: Place) -> u64 {
    let mut version = 0u64;
    let Ok(entries) = fs::read_dir(dir) else {
        return version;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let linked = entry.file_type().is_ok_and(|kind| kind.is_symlink());
            if depth < MAX_DEPTH && is_walked(&name) && !(linked && place == Place::Beside) {
                version = version.wrapping_add(tree_version(&entry.path(), depth + 1, place));
            }
        } else if is_script(&name, place) {
            version = version.wrapping_add(file_version(&meta, &name));
        }
    }
    version
}

fn file_version(meta: &fs::Metadata, name: &str) -> u64 {
    super::discover::version_of(meta) ^ name.len() as u64
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
        let kinds: std::collections::BTreeSet<&str> = ["py", "rb"].into();
        let before = versions_by_extension(root, &kinds);
        assert_eq!(before.len(), 2);
        fs::write(root.join("_lib/db.py"), "changed").unwrap();
        fs::write(root.join(".venv/site.py"), "x").unwrap();
        fs::write(root.join("notes.txt"), "x").unwrap();
        let after = versions_by_extension(root, &kinds);
        assert_ne!(after["py"], before["py"]);
        assert_eq!(after["rb"], before["rb"]);
        assert!(versions_by_extension(root, &Default::default()).is_empty());
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
        assert!(folders_beside(&api).is_empty());
        let alone = scripts_version(&api, &api);
        fs::write(root.join("lib/db.js"), "changed").unwrap();
        assert_eq!(scripts_version(&api, &api), alone);

        fs::write(root.join("package.json"), "{}").unwrap();
        assert_eq!(project_root(&api), Some(root.clone()));
        assert_eq!(folders_beside(&api), vec![root.join("lib")]);
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
        fs::write(api.join("_lib/data.json"), "x").unwrap();
        assert_ne!(scripts_version(&api, &api), after_package);
        // Watched: the root and lib, not DIR, node_modules or .git.
        fs::create_dir_all(root.join("lib/deep/node_modules/x")).unwrap();
        assert_eq!(
            folders_to_watch(&api),
            (
                vec![root.clone(), root.join("lib"), root.join("lib/deep")],
                false
            )
        );
    }
}
