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
    let folder = std::env::temp_dir().join(format!("watchdog-node-{}", nix::unistd::getuid()));
    std::fs::create_dir_all(&folder)?;
    // Readable by all: with --user the worker runs as someone else. It holds no
    // secrets, only the adapter's code.
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))?;
    let path = folder.join(format!("adapter-{:016x}.mjs", hasher.finish()));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(ADAPTER) {
        let temporary = folder.join(format!(".adapter-{}.tmp", std::process::id()));
        std::fs::write(&temporary, ADAPTER)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&temporary, &path)?;
    }
    Ok(path)
}
