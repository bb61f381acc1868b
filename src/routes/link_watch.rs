//! DIR given through a symlink that a deployment points elsewhere: a
//! `current` release link, swapped with `ln -sfn releases/v2 tmp && mv -T tmp
//! current` (Capistrano, and many a deploy script).
//!
//! DIR's watch is on the folder the link led to when the watch was set, and
//! the link itself changes in the folder that holds it, which nothing watched:
//! the old release went on serving, with no word and `readyz` saying ready.
//! So the folder holding each symlink on DIR's path is watched too, without
//! recursion, by a watcher of its own (events for its other entries are
//! dropped in the handler). A change to a link wakes the reload, which finds
//! that DIR leads to another folder, moves its watch there and walks it
//! ([`super::reload::watch`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::Watcher;

use super::reload::Pending;

/// Watches the symlinks on `dir`'s path (`dir` absolute, not resolved); none
/// when there are none. Each change to one is noted in `pending` and sent on
/// `changed`.
///
/// # Errors
/// When a folder holding a link cannot be watched.
pub fn watch(
    dir: &Path,
    changed: tokio::sync::mpsc::UnboundedSender<()>,
    pending: Arc<Pending>,
) -> notify::Result<Option<notify::RecommendedWatcher>> {
    let links = links_on_the_way(dir);
    if links.is_empty() {
        return Ok(None);
    }
    let folders: Vec<PathBuf> = links
        .iter()
        .filter_map(|link| link.parent().map(Path::to_path_buf))
        .collect();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.paths.iter().any(|path| links.contains(path)) {
            pending.note_change(&event.paths);
            let _ = changed.send(());
        }
    };
    let config = notify::Config::default().with_event_kinds(notify::EventKindMask::CORE);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)?;
    for folder in folders {
        watcher.watch(&folder, notify::RecursiveMode::NonRecursive)?;
    }
    Ok(Some(watcher))
}

/// `dir` and those of its ancestors that are symlinks.
fn links_on_the_way(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .filter(|path| {
            path.symlink_metadata()
                .is_ok_and(|meta| meta.file_type().is_symlink())
        })
        .map(Path::to_path_buf)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_symlink_on_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("releases/v1/api")).unwrap();
        std::os::unix::fs::symlink(root.join("releases/v1"), root.join("current")).unwrap();
        assert_eq!(
            links_on_the_way(&root.join("current/api")),
            vec![root.join("current")]
        );
        assert!(links_on_the_way(&root.join("releases/v1/api")).is_empty());
    }
}
