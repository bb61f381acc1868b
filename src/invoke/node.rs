//! The Node adapter (CONTRACT §5): Vercel-style handler modules (`.js`, `.mjs`,
//! `.cjs`, `.ts` without an execute bit) run warm through the pool's HTTP protocol.
//!
//! The adapter is a small Node program embedded in the binary
//! (`node/adapter.mjs`). It is written once to a cache folder and started as
//! `node adapter.mjs MODULE`; it serves the module on $PORT, so everything the pool
//! does (timeouts, kills, crash backoff, logs, metrics) applies unchanged.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The adapter's source.
pub const ADAPTER: &str = include_str!("node/adapter.mjs");

/// Where the adapter was written, writing it on first use.
///
/// # Errors
/// When the cache folder or the file cannot be written.
pub fn adapter_path() -> std::io::Result<PathBuf> {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PATH.get_or_init(|| write_adapter().map_err(|err| err.to_string()))
        .clone()
        .map_err(std::io::Error::other)
}

fn write_adapter() -> std::io::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::PermissionsExt;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ADAPTER.hash(&mut hasher);
    let folder = adapter_folder()?;
    let path = folder.join(format!("adapter-{:016x}.mjs", hasher.finish()));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(ADAPTER) {
        let temporary = folder.join(format!(".adapter-{}.tmp", std::process::id()));
        std::fs::write(&temporary, ADAPTER)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&temporary, &path)?;
    }
    Ok(path)
}

/// The first folder from `folder` up to `/` that another user could rename
/// entries in (or the folder itself), said as the reason: one owned by another
/// user than root and watchdog's, or that others may write to without the
/// sticky bit (which, as on /tmp, keeps each entry to its owner). Any of those
/// lets them move the adapter's folder aside and put theirs in its place,
/// after it was checked, for every worker started later.
fn first_unsafe_folder(folder: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let own = nix::unistd::geteuid().as_raw();
    folder.ancestors().find_map(|path| {
        let found = match std::fs::metadata(path) {
            Ok(found) => found,
            Err(err) => {
                return Some(format!(
                    "{} cannot be looked at ({err}), so whether another user could replace the adapter cannot be told",
                    path.display()
                ));
            }
        };
        let owner = found.uid();
        let mode = found.mode();
        if owner != 0 && owner != own {
            Some(format!(
                "{} (on the way to TMPDIR) belongs to uid {owner}, who could put their own code in the adapter's place",
                path.display()
            ))
        } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            Some(format!(
                "{} (on the way to TMPDIR) may be written to by other users and is not sticky, so they could put their own code in the adapter's place",
                path.display()
            ))
        } else {
            None
        }
    })
}

/// `$TMPDIR/watchdog-node-<uid>`, shared by this user's runs, when only this
/// user can write to it; otherwise a new folder of this run's own.
///
/// The folder's name can be guessed: another local user may have made it first
/// (or left it writable) and would then swap the adapter for their own code,
/// which every handler module's worker runs as watchdog's user (root, often).
fn adapter_folder() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let uid = nix::unistd::getuid();
    let temp = std::env::temp_dir().canonicalize()?;
    if let Some(unsafe_folder) = first_unsafe_folder(&temp) {
        return Err(std::io::Error::other(format!(
            "{unsafe_folder}; set TMPDIR to a folder that only watchdog's user and root control, all the way up (as /tmp is)",
        )));
    }
    let shared = temp.join(format!("watchdog-node-{uid}"));
    match std::fs::DirBuilder::new().mode(0o755).create(&shared) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => return Err(err),
        _ => {}
    }
    let found = std::fs::symlink_metadata(&shared)?;
    let owner = found.uid();
    let ours = found.is_dir() && owner == nix::unistd::geteuid().as_raw();
    if ours && found.mode() & 0o022 == 0 {
        // Readable by all: with --user the worker runs as someone else. It holds
        // no secrets, only the adapter's code.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755))?;
        return Ok(shared);
    }
    let own = tempfile::Builder::new()
        .prefix(&format!("watchdog-node-{uid}-"))
        .tempdir()?
        .keep();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755))?;
    tracing::warn!(
        folder = %shared.display(),
        owner,
        mode = %format!("{:o}", found.mode() & 0o7777),
        instead = %own.display(),
        hint = "remove that folder: whoever can write to it could replace the Node adapter with their own code",
        "the Node adapter's usual folder is not used: it is not a folder only watchdog's user can write to"
    );
    Ok(own)
}
