//! Says when a configuration file changes while watchdog serves.
//!
//! `watchdog.toml`, `.env` and `vercel.json` are read at start-up only (the
//! README says so): an edit changes nothing until a restart. Without a word,
//! an edit looked lost, and a broken one was found only by the next start,
//! which then failed. So each is watched, and a change is logged: restart to
//! apply it, and, when the file as it stands no longer loads, why.
//!
//! Their folder (DIR's parent, or `--config`'s) is watched without recursion
//! by a watcher of its own, apart from DIR's ([`crate::routes::reload`]):
//! events for other files there are dropped in the handler.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher;

use super::Settings;

/// How long a file must be quiet before it is judged: an editor's save is
/// several events (write a temporary file, rename it over, set its mode).
const QUIET: Duration = Duration::from_millis(200);

/// One of the files read at start-up, and how to check what it holds now.
struct Watched {
    path: PathBuf,
    check: fn(&Path, &Path) -> Result<(), super::FileError>,
}

/// Starts watching; the watcher stops when the returned value is dropped.
///
/// # Errors
/// When the folders cannot be watched (too many inotify watches, say).
pub fn watch(settings: &Settings) -> notify::Result<notify::RecommendedWatcher> {
    let root = settings.document_root.clone();
    let project = root.parent().unwrap_or(Path::new("/")).to_path_buf();
    let config = settings
        .config_file
        .clone()
        .unwrap_or_else(|| project.join("watchdog.toml"));
    let files = [
        Watched {
            path: config,
            check: |path, _| super::file::load(path).map(drop),
        },
        Watched {
            path: project.join(".env"),
            check: |_, root| super::file::dotenv(root).map(drop),
        },
        Watched {
            path: project.join("vercel.json"),
            check: |_, root| super::file::vercel_crons(root).map(drop),
        },
    ];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let paths: Vec<PathBuf> = files.iter().map(|file| file.path.clone()).collect();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for (index, path) in paths.iter().enumerate() {
            if event.paths.iter().any(|changed| changed == path) {
                let _ = tx.send(index);
            }
        }
    };
    let config = notify::Config::default().with_event_kinds(notify::EventKindMask::CORE);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)?;
    let mut folders: Vec<&Path> = files.iter().filter_map(|file| file.path.parent()).collect();
    folders.sort();
    folders.dedup();
    for folder in folders {
        watcher.watch(folder, notify::RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        // The latest event of each file not yet judged, by its index.
        let mut changed: HashMap<usize, tokio::time::Instant> = HashMap::new();
        loop {
            let next_due = changed.values().min().map(|at| *at + QUIET);
            let received = match next_due {
                Some(due) => match tokio::time::timeout_at(due, rx.recv()).await {
                    Ok(received) => received,
                    Err(_) => {
                        let now = tokio::time::Instant::now();
                        let due: Vec<usize> = changed
                            .iter()
                            .filter(|(_, at)| **at + QUIET <= now)
                            .map(|(index, _)| *index)
                            .collect();
                        for index in due {
                            changed.remove(&index);
                            report(&files[index], &root);
                        }
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(index) = received else { return };
            changed.insert(index, tokio::time::Instant::now());
        }
    });
    Ok(watcher)
}

/// Logs a change to `file`: what a restart would do with it.
fn report(file: &Watched, root: &Path) {
    let shown = file.path.display();
    if !file.path.exists() {
        tracing::warn!(file = %shown, "a configuration file was removed; its settings stay in effect until watchdog restarts");
        return;
    }
    match (file.check)(&file.path, root) {
        Ok(()) => tracing::warn!(
            file = %shown,
            "a configuration file changed; it is read at start-up only: restart watchdog to apply it"
        ),
        Err(err) => tracing::error!(
            file = %shown,
            error = %err,
            "a configuration file changed and no longer loads; the running server keeps the settings it started with, and a restart fails until the file is fixed"
        ),
    }
}
