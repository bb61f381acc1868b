//! Walks DIR once and classifies every file: a function (with its URL segments and how
//! to run it) or a skipped file with the reason a user needs to fix it.
//!
//! The walk is the only filesystem access routing does; requests never touch the disk
//! to find their function. Entries are visited in sorted order so reports are stable,
//! and precedence never depends on it anyway (see `table.rs`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::pattern::Segment;

/// Script extensions run by an interpreter when the file has no execute bit.
pub const INTERPRETERS: &[(&str, &str)] = &[
    ("sh", "sh"),
    ("py", "python3"),
    ("pl", "perl"),
    ("rb", "ruby"),
    ("php", "php-cgi"),
];

/// Handler modules for the Node adapter (CONTRACT §5).
const MODULE_EXTENSIONS: &[&str] = &["js", "mjs", "cjs", "ts"];

/// Whether a file with this extension is a handler module when it is not
/// executable (CONTRACT §5).
pub fn is_module_extension(extension: Option<&str>) -> bool {
    extension.is_some_and(|ext| MODULE_EXTENSIONS.contains(&ext))
}

/// How a function file is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    /// The file has an execute bit and can be exec'd: it starts with `#!` or is an
    /// ELF binary, or it has no known extension to fall back on.
    pub executable: bool,
    /// The interpreter its extension names, used when it is not executable (or when
    /// exec fails with ENOEXEC, e.g. a shell script without a `#!` line).
    pub interpreter: Option<&'static str>,
    /// A JavaScript/TypeScript handler module for the Node adapter.
    pub node_module: bool,
}

impl Runner {
    /// `executable`, `sh`, `executable (sh without #!)`.
    pub fn describe(&self) -> String {
        match (self.executable, self.interpreter) {
            _ if self.node_module => "node module (warm)".into(),
            (true, None) => "executable".into(),
            (true, Some(program)) => format!("executable (else {program})"),
            (false, Some(program)) => program.into(),
            (false, None) => "not runnable".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FunctionFile {
    /// DIR joined with the relative path (not canonicalized: cwd and SCRIPT_FILENAME
    /// follow what the user wrote).
    pub path: PathBuf,
    /// Relative to DIR, `/`-separated: what messages name.
    pub relative: String,
    /// The URL pattern below the prefix.
    pub segments: Vec<Segment>,
    /// Further static patterns that reach the same function (`hello.sh`, `index`).
    pub aliases: Vec<Vec<Segment>>,
    pub runner: Runner,
    /// Why it may not run as its author meant, said when the walk finds it
    /// ([`interpreter_caution`]).
    pub caution: Option<String>,
    /// Changes whenever the file does (modification time, size, inode, mode): a
    /// warm pool started from one version is recycled when it changes.
    pub version: u64,
}

/// A file under DIR that is not a function, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub relative: String,
    pub reason: String,
    /// How loudly the walk's log line names it.
    pub kind: SkipKind,
}

/// Why a file is not a route, as far as the user should hear of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// Kept out on purpose (a private name, the file `--config` reads).
    Deliberate,
    /// One of the project's files put inside DIR, where nothing reads it.
    Misplaced,
    /// Anything else: probably a file meant to be a function.
    Unexpected,
}

#[derive(Debug, Default)]
pub struct Discovery {
    pub functions: Vec<FunctionFile>,
    pub skipped: Vec<Skipped>,
    /// DIR made absolute and resolved, as the walk saw it.
    pub root: PathBuf,
}

/// Walks `dir`.
///
/// # Errors
/// Only when `dir` itself cannot be read; problems below it become [`Skipped`] entries.
pub fn discover(dir: &Path) -> std::io::Result<Discovery> {
    let root = dir.canonicalize()?;
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mut walk = Walk {
        root: root.clone(),
        ancestors: vec![root.clone()],
        symlinked_walks: 0,
        out: Discovery::default(),
    };
    walk.dir(dir, &root, "", &[]);
    Ok(Discovery { root, ..walk.out })
}

/// Folders walked through a symlink, in all: aliases of aliases could otherwise
/// multiply the walk.
const MAX_SYMLINKED_WALKS: u32 = 256;

struct Walk {
    root: PathBuf,
    /// The real paths of the folders being walked, outermost first: a folder
    /// that leads back to one of them is a symlink loop. A folder reached again
    /// beside them (an alias, `v1 -> v2`) is walked under each name.
    ancestors: Vec<PathBuf>,
    /// Folders entered through a symlink so far.
    symlinked_walks: u32,
    out: Discovery,
}

impl Walk {
    fn skip(&mut self, relative: String, reason: impl Into<String>) {
        self.skip_as(SkipKind::Unexpected, relative, reason);
    }

    fn skip_as(&mut self, kind: SkipKind, relative: String, reason: impl Into<String>) {
        self.out.skipped.push(Skipped {
            relative,
            reason: reason.into(),
            kind,
        });
    }

    /// Walks `dir`, whose real path is `real_dir`.
    fn dir(&mut self, dir: &Path, real_dir: &Path, relative: &str, segments: &[Segment]) {
        let mut entries: Vec<_> = match fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(Result::ok).collect(),
            Err(err) => {
                let shown = if relative.is_empty() { "." } else { relative };
                self.skip(shown.to_owned(), format!("cannot read folder: {err}"));
                return;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        let probes = probe_all(&entries, real_dir, &self.root);
        for (entry, probe) in entries.iter().zip(probes) {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                self.skip(
                    format!("{relative}{}", name.to_string_lossy()),
                    "name is not valid UTF-8, so no URL can name it",
                );
                continue;
            };
            let rel = format!("{relative}{name}");
            if relative.is_empty()
                && let Some(reason) = misplaced_project_file(name)
            {
                self.skip_as(SkipKind::Misplaced, rel, reason);
                continue;
            }
            if is_backup_copy(name) {
                self.skip_as(
                    SkipKind::Deliberate,
                    rel,
                    "a backup or editor's copy (`~`, `.bak`, `.orig`, `.swp`, ...): never a route",
                );
                continue;
            }
            // `probe_all` leaves private names untouched: no probe.
            let Some(probe) = probe.filter(|_| !is_private(name)) else {
                self.skip_as(
                    SkipKind::Deliberate,
                    rel,
                    "private: names starting with `_` or `.` are never routes",
                );
                continue;
            };
            let path = entry.path();
            let Some(meta) = probe.meta else {
                self.skip(rel, "broken symlink or unreadable file");
                continue;
            };
            let Some(canonical) = probe.real else {
                self.skip(rel, "cannot resolve its real path");
                continue;
            };
            if !canonical.starts_with(&self.root) {
                self.skip(
                    rel,
                    "symlink leads outside DIR; only files inside DIR are served",
                );
                continue;
            }
            if meta.is_dir() {
                self.folder(&path, &rel, name, canonical, probe.is_symlink, segments);
            } else if meta.is_file() {
                self.file(path, rel, name, &meta, probe.head, segments);
            } else {
                self.skip(rel, "not a regular file");
            }
        }
    }

    fn folder(
        &mut self,
        path: &Path,
        rel: &str,
        name: &str,
        canonical: PathBuf,
        via_symlink: bool,
        segments: &[Segment],
    ) {
        if self.ancestors.contains(&canonical) {
            self.skip(
                rel.to_owned(),
                "symlink loop: it leads back to a folder above it",
            );
            return;
        }
        // A real folder is always walked; walks through symlinked folders share one
        // budget, so aliases of aliases cannot multiply the walk.
        if via_symlink {
            if self.symlinked_walks >= MAX_SYMLINKED_WALKS {
                self.skip(
                    rel.to_owned(),
                    format!(
                        "more than {MAX_SYMLINKED_WALKS} folders are reached through symlinks; this one is not walked"
                    ),
                );
                return;
            }
            self.symlinked_walks += 1;
        }
        match Segment::parse(name) {
            Ok(segment) if segment.is_catch_all() => self.skip(
                rel.to_owned(),
                "a catch-all folder would need segments after it; put the catch-all in a file name",
            ),
            Ok(segment) => {
                let mut inner = segments.to_vec();
                inner.push(segment);
                self.ancestors.push(canonical.clone());
                self.dir(path, &canonical, &format!("{rel}/"), &inner);
                self.ancestors.pop();
            }
            Err(reason) => self.skip(rel.to_owned(), reason),
        }
    }

    fn file(
        &mut self,
        path: PathBuf,
        rel: String,
        name: &str,
        meta: &fs::Metadata,
        head: Head,
        segments: &[Segment],
    ) {
        let Head {
            starts_like_a_program,
            caution,
        } = head;
        let mode = meta.permissions().mode();
        let (stem, extension) = split_extension(name);
        let interpreter = interpreter_for(extension);
        // An executable script without `#!` goes to its extension's interpreter:
        // decided here, once, because glibc's execvp (used on the fork path, with
        // limits or --user) would quietly run it under /bin/sh instead of failing.
        let executable = mode & 0o111 != 0 && (interpreter.is_none() || starts_like_a_program);
        let node_module = mode & 0o111 == 0 && is_module_extension(extension);
        if !executable && interpreter.is_none() && !node_module {
            let reason = format!(
                "not executable and no known script extension ({}); `chmod +x` it or rename it",
                INTERPRETERS
                    .iter()
                    .map(|(ext, _)| format!(".{ext}"))
                    .chain(MODULE_EXTENSIONS.iter().map(|ext| format!(".{ext}")))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            self.skip(rel, reason);
            return;
        }
        let last = match Segment::parse(stem) {
            Ok(segment) => segment,
            Err(reason) => return self.skip(rel, reason),
        };
        let mut main = segments.to_vec();
        let mut aliases = Vec::new();
        let with_extension = |full: &str| {
            let mut alias = segments.to_vec();
            alias.push(Segment::Static(full.to_owned()));
            alias
        };
        match &last {
            Segment::Static(s) if s == "index" => {
                aliases.push(with_extension("index"));
                if extension.is_some() {
                    aliases.push(with_extension(name));
                }
            }
            Segment::Static(_) => {
                main.push(last);
                if extension.is_some() {
                    aliases.push(with_extension(name));
                }
            }
            _ => main.push(last),
        }
        self.out.functions.push(FunctionFile {
            path,
            relative: rel,
            segments: main,
            aliases,
            runner: Runner {
                executable,
                interpreter,
                node_module,
            },
            caution,
            version: version_of(meta),
        });
    }
}

/// A fingerprint of a file's current version.
pub(super) fn version_of(meta: &fs::Metadata) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        meta.mtime(),
        meta.mtime_nsec(),
        meta.size(),
        meta.ino(),
        meta.mode(),
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// What the reason of a skipped file holds when it is one of the project's
/// files put inside DIR, where nothing reads it.
const MISPLACED: &str = "is read beside DIR, not in it";

/// A file of the project's put inside DIR instead of beside it (a newcomer
/// who made `api/` the project): its settings are silently not applied, and
/// the usual reasons (`chmod +x` it, private) would send them the wrong way.
fn misplaced_project_file(name: &str) -> Option<String> {
    let (what, effect) = match name {
        "watchdog.toml" => ("watchdog's configuration", "this one is not applied"),
        ".env" => ("the functions' `.env`", "its variables reach no function"),
        "vercel.json" => (
            "`vercel.json`",
            "its `maxDuration` and `crons` are not applied",
        ),
        _ => return None,
    };
    let or_config = if name == "watchdog.toml" {
        " (or pass --config)"
    } else {
        ""
    };
    Some(format!(
        "{what} {MISPLACED}, so {effect}: move it up one folder{or_config}"
    ))
}

/// Names starting with `_` or `.` are never routes (a `_lib/`, `.git`).
fn is_private(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// A copy an editor or a careful admin leaves beside a script
/// (`hello.pl.bak` from `cp -p`, `form.pl~`, `#x.sh#`, `x.py.orig` from a
/// patch): executable like the script, it claimed the script's URL, and the
/// conflict took the live script down (500) until it was removed.
fn is_backup_copy(name: &str) -> bool {
    const COPIES: &[&str] = &["bak", "orig", "rej", "swp", "swo", "tmp", "old"];
    name.ends_with('~')
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || name
            .rsplit_once('.')
            .is_some_and(|(stem, extension)| !stem.is_empty() && COPIES.contains(&extension))
}

/// `fn.sh` → (`fn`, `sh`); a leading dot does not start an extension, and
/// neither do the dots of a catch-all: an executable named `[...rest]` (a
/// Lambda `bootstrap` or a compiled binary) has none.
fn split_extension(name: &str) -> (&str, Option<&str>) {
    let after_brackets = name.rfind(']').map_or(0, |end| end + 1);
    match name[after_brackets..]
        .rfind('.')
        .map(|at| after_brackets + at)
    {
        Some(dot) if dot > 0 => (&name[..dot], Some(&name[dot + 1..])),
        _ => (name, None),
    }
}

/// The interpreter a script extension names.
fn interpreter_for(extension: Option<&str>) -> Option<&'static str> {
    let extension = extension?;
    INTERPRETERS
        .iter()
        .find(|(known, _)| *known == extension)
        .map(|(_, program)| *program)
}

/// What the walk learns of one entry from the filesystem: all of its system calls
/// (a stat, a symlink's resolution, the first bytes of an executable script), made
/// ahead of the walk so that a large folder's can run on several threads.
struct Probe {
    /// Symlinks followed; `None` when broken or unreadable.
    meta: Option<fs::Metadata>,
    /// Where it really is; `None` when a symlink cannot be resolved.
    real: Option<PathBuf>,
    /// The entry itself is a symlink (or its type is unknown).
    is_symlink: bool,
    /// What its first bytes said, for a file with a script extension.
    head: Head,
}

/// What a script's first bytes say about how it runs.
#[derive(Default)]
struct Head {
    /// For an executable file with a script extension: it starts with `#!` or is
    /// an ELF binary.
    starts_like_a_program: bool,
    /// For one without the execute bit: [`interpreter_caution`].
    caution: Option<String>,
}

/// Folders with at least this many entries are probed on several threads: a
/// probe is two to five system calls, and a 10,000-function tree spent most of
/// its start-up in them on one core.
const PARALLEL_PROBES_FROM: usize = 32;

/// The probes of `entries` (found in the folder whose real path is `real_dir`), in
/// their order; `None` for a private or non-UTF-8 name, which the walk skips
/// without touching it.
fn probe_all(entries: &[fs::DirEntry], real_dir: &Path, root: &Path) -> Vec<Option<Probe>> {
    let sequential = || {
        entries
            .iter()
            .map(|entry| probe(entry, real_dir, root))
            .collect()
    };
    if entries.len() < PARALLEL_PROBES_FROM {
        return sequential();
    }
    static THREADS: OnceLock<usize> = OnceLock::new();
    let threads = *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(8)
    });
    if threads < 2 {
        return sequential();
    }
    std::thread::scope(|scope| {
        let mut parts = Vec::with_capacity(threads);
        for part in entries.chunks(entries.len().div_ceil(threads)) {
            let probes = move || {
                part.iter()
                    .map(|entry| probe(entry, real_dir, root))
                    .collect::<Vec<_>>()
            };
            // A process out of threads (a low pids.max) still starts: that part
            // is probed here instead.
            parts.push(
                std::thread::Builder::new()
                    .spawn_scoped(scope, probes)
                    .map_err(|_| probes),
            );
        }
        parts
            .into_iter()
            .flat_map(|part| match part {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(probes) => probes(),
            })
            .collect()
    })
}

/// Probes one entry of the folder whose real path is `real_dir`; a file outside
/// `root` (through a symlink) is never opened, only skipped.
fn probe(entry: &fs::DirEntry, real_dir: &Path, root: &Path) -> Option<Probe> {
    let name = entry.file_name();
    let name = name.to_str()?;
    if is_private(name) || is_backup_copy(name) {
        return None;
    }
    let path = entry.path();
    let meta = fs::metadata(&path).ok();
    // Only a symlink can lead elsewhere: anything else is where the walk found it.
    // Resolving every path costs a readlink per path component of every file
    // (40,000 failing system calls for a 10,000-function tree).
    let is_symlink = entry.file_type().map_or(true, |kind| kind.is_symlink());
    let real = if is_symlink {
        path.canonicalize().ok()
    } else {
        Some(real_dir.join(name))
    };
    let inside = real.as_ref().is_some_and(|real| real.starts_with(root));
    let interpreter = interpreter_for(split_extension(name).1)
        .filter(|_| inside && meta.as_ref().is_some_and(fs::Metadata::is_file));
    let executable = meta
        .as_ref()
        .is_some_and(|meta| meta.permissions().mode() & 0o111 != 0);
    let head = match interpreter {
        Some(_) if executable => Head {
            starts_like_a_program: starts_like_a_program(&path),
            caution: None,
        },
        Some(interpreter) => Head {
            starts_like_a_program: false,
            caution: interpreter_caution(&path, interpreter),
        },
        None => Head::default(),
    };
    Some(Probe {
        meta,
        real,
        is_symlink,
        head,
    })
}

/// Why a script that runs by its extension's interpreter (it has no execute
/// bit) may not run as its author meant: its `#!` line names another
/// interpreter, which is then not the one used (a bash script under sh, a
/// virtualenv's python under the system's), or it has Windows line endings,
/// which sh cannot run. Said when the walk finds it: at run time the first
/// is a 502 that blames the output or a quiet answer from the wrong
/// interpreter, and the second a 502 whose `\r` the log line cannot show.
fn interpreter_caution(path: &Path, interpreter: &str) -> Option<String> {
    use super::shebang::{EnvRequest, Shebang};
    let mut head = [0u8; 256];
    let head = read_head(path, &mut head);
    let first_line = &head[..head.iter().position(|&byte| byte == b'\n')?];
    if interpreter == "sh" && first_line.ends_with(b"\r") {
        return Some(
            "it has Windows line endings, which sh cannot run: `dos2unix` it (or `sed -i 's/\\r$//'`)"
                .into(),
        );
    }
    let shebang = Shebang::of(head)?;
    let (named, from_the_system, with_options) = match shebang.env_request() {
        Some(EnvRequest::Program {
            name, with_options, ..
        }) => (name, true, with_options),
        Some(EnvRequest::OneArgument(_) | EnvRequest::Other) => (shebang.program, false, true),
        None => (
            shebang.program,
            ["/bin", "/usr/bin", "/usr/local/bin"]
                .iter()
                .any(|folder| Path::new(shebang.program).parent() == Some(Path::new(folder))),
            shebang.argument.is_some(),
        ),
    };
    let line = shebang.line;
    let name = Path::new(named).file_name()?.to_str()?;
    if !from_the_system || !same_interpreter(name, interpreter) {
        return Some(format!(
            "it has no execute bit, so it runs under {interpreter} (by its extension), not as its first line says (`#!{line}`): `chmod +x` it to run it by that line"
        ));
    }
    with_options.then(|| {
        format!(
            "it has no execute bit, so it runs under {interpreter} (by its extension) without the options its first line gives (`#!{line}`): `chmod +x` it to run it by that line"
        )
    })
}

/// Whether a `#!` line's program is the one a script extension names, or a
/// version of it.
fn same_interpreter(named: &str, interpreter: &str) -> bool {
    match interpreter {
        "sh" => named == "sh" || named == "dash",
        "python3" => named == "python" || named == "python3" || named.starts_with("python3."),
        "php-cgi" => named.starts_with("php"),
        other => named.starts_with(other),
    }
}

/// Whether a file starts with `#!` or the ELF magic number.
fn starts_like_a_program(path: &Path) -> bool {
    let mut head = [0u8; 4];
    let head = read_head(path, &mut head);
    head.starts_with(b"#!") || head == b"\x7fELF"
}

/// The first bytes of a file, as many as fit in `buf` and one read gives;
/// none when it cannot be read. For sniffing what a file is, never its code.
pub fn read_head<'buf>(path: &Path, buf: &'buf mut [u8]) -> &'buf [u8] {
    use std::io::Read;
    let read = fs::File::open(path).map_or(0, |mut file| file.read(buf).unwrap_or(0));
    &buf[..read]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn extensions_end_a_name_and_never_come_from_a_segments_brackets() {
        assert_eq!(split_extension("fn.sh"), ("fn", Some("sh")));
        assert_eq!(split_extension("a.b.py"), ("a.b", Some("py")));
        assert_eq!(split_extension(".hidden"), (".hidden", None));
        assert_eq!(split_extension("bootstrap"), ("bootstrap", None));
        assert_eq!(split_extension("[...rest]"), ("[...rest]", None));
        assert_eq!(split_extension("[[...rest]]"), ("[[...rest]]", None));
        assert_eq!(split_extension("[...rest].bin"), ("[...rest]", Some("bin")));
        assert_eq!(split_extension("[id].sh"), ("[id]", Some("sh")));
    }

    fn write(dir: &Path, rel: &str, mode: u32) {
        write_with(dir, rel, "#!/bin/sh\n", mode);
    }

    fn write_with(dir: &Path, rel: &str, body: &str, mode: u32) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// How loudly a skipped file is logged follows from its kind, not from
    /// the wording of its reason.
    #[test]
    fn skipped_files_say_whether_they_are_deliberate_misplaced_or_unexpected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "_helper.sh", 0o755);
        write_with(dir, "watchdog.toml", "timeout = \"5s\"\n", 0o644);
        write_with(dir, "notes", "plain text\n", 0o644);
        let found = discover(dir).unwrap();
        let kind_of = |name: &str| {
            found
                .skipped
                .iter()
                .find(|skipped| skipped.relative == name)
                .unwrap_or_else(|| panic!("{name} skipped: {:?}", found.skipped))
                .kind
        };
        assert_eq!(kind_of("_helper.sh"), SkipKind::Deliberate);
        assert_eq!(kind_of("watchdog.toml"), SkipKind::Misplaced);
        assert_eq!(kind_of("notes"), SkipKind::Unexpected);
    }

    #[test]
    fn classifies_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "hello.sh", 0o644);
        write(dir, "bin", 0o755);
        write(dir, "notes.txt", 0o644);
        write(dir, "mod.js", 0o644);
        write(dir, "_private.sh", 0o755);
        // Copies beside a script (`cp -p`, an editor) are no routes.
        write(dir, "hello.sh.bak", 0o755);
        write(dir, "hello.sh~", 0o755);
        write(dir, "#hello.sh#", 0o755);
        write(dir, "users/index.py", 0o644);
        write(dir, "users/[id].sh", 0o644);
        write(dir, "[...rest]/x.sh", 0o644);
        symlink("/bin/sh", dir.join("outside")).unwrap();
        let found = discover(dir).unwrap();
        let names: Vec<_> = found
            .functions
            .iter()
            .map(|f| f.relative.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "bin",
                "hello.sh",
                "mod.js",
                "users/[id].sh",
                "users/index.py"
            ]
        );
        let hello = &found.functions[1];
        assert_eq!(hello.segments, [Segment::Static("hello".into())]);
        assert_eq!(hello.aliases, [vec![Segment::Static("hello.sh".into())]]);
        assert_eq!(
            hello.runner,
            Runner {
                executable: false,
                interpreter: Some("sh"),
                node_module: false,
            }
        );
        assert!(found.functions[2].runner.node_module);
        let index = &found.functions[4];
        assert_eq!(index.segments, [Segment::Static("users".into())]);
        let skipped: Vec<_> = found.skipped.iter().map(|s| s.relative.as_str()).collect();
        assert_eq!(
            skipped,
            [
                "#hello.sh#",
                "[...rest]",
                "_private.sh",
                "hello.sh.bak",
                "hello.sh~",
                "notes.txt",
                "outside"
            ]
        );
        assert!(
            found
                .skipped
                .iter()
                .any(|s| s.relative == "hello.sh.bak"
                    && s.reason.contains("backup or editor's copy"))
        );
    }

    /// A folder large enough to be probed on several threads comes out as the
    /// same folder walked one entry at a time would: in name order, each entry
    /// classified by its own probe (a mix-up between threads would hand one
    /// entry another's stat or `#!`).
    #[test]
    fn a_large_folder_probed_on_threads_is_classified_entry_by_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let kinds = 8;
        let count = PARALLEL_PROBES_FROM * 2;
        for i in 0..count {
            let name = format!("f{i:03}");
            match i % kinds {
                0 => write(dir, &format!("{name}.sh"), 0o755),
                1 => write_with(dir, &format!("{name}.sh"), "echo no shebang\n", 0o755),
                2 => write(dir, &format!("_{name}.sh"), 0o755),
                3 => symlink("/bin/sh", dir.join(&name)).unwrap(),
                4 => symlink(dir.join("f000.sh"), dir.join(&name)).unwrap(),
                5 => symlink(dir.join("missing"), dir.join(&name)).unwrap(),
                6 => write(dir, &format!("{name}/inner.sh"), 0o755),
                _ => write(dir, &format!("{name}.txt"), 0o644),
            }
        }
        let found = discover(dir).unwrap();
        let mut expected_functions = Vec::new();
        let mut expected_skipped = Vec::new();
        for i in 0..count {
            let name = format!("f{i:03}");
            match i % kinds {
                0 | 1 => expected_functions.push((format!("{name}.sh"), i % kinds == 0)),
                2 => expected_skipped.push((format!("_{name}.sh"), "private")),
                3 => expected_skipped.push((name, "outside DIR")),
                4 => expected_functions.push((name, true)),
                5 => expected_skipped.push((name, "broken symlink")),
                6 => expected_functions.push((format!("{name}/inner.sh"), true)),
                _ => expected_skipped.push((format!("{name}.txt"), "not executable")),
            }
        }
        expected_skipped.sort();
        let functions: Vec<_> = found
            .functions
            .iter()
            .map(|f| (f.relative.clone(), f.runner.executable))
            .collect();
        assert_eq!(functions, expected_functions);
        let mut skipped: Vec<_> = found.skipped.iter().collect();
        skipped.sort_by(|a, b| a.relative.cmp(&b.relative));
        assert_eq!(skipped.len(), expected_skipped.len());
        for (skip, (relative, reason)) in skipped.iter().zip(&expected_skipped) {
            assert_eq!(&skip.relative, relative);
            assert!(skip.reason.contains(reason), "{skip:?} should say {reason}");
        }
    }
}
