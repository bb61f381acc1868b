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
use std::path::Path;
use std::time::Duration;

use notify::Watcher;

use super::Settings;

/// How long a file must be quiet before it is judged: an editor's save is
/// several events (write a temporary file, rename it over, set its mode).
const QUIET: Duration = Duration::from_millis(200);

/// What a restart would make of the configuration as it stands: the same
/// resolution as at start-up, every file and flag in it.
pub type Recheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Starts watching; the watcher stops when the returned value is dropped.
/// None when DIR has no folder above it (`/`), where none of the files is read.
///
/// # Errors
/// When the folders cannot be watched (too many inotify watches, say).
pub fn watch(
    settings: &Settings,
    recheck: Recheck,
) -> notify::Result<Option<notify::RecommendedWatcher>> {
    let Some(project) = settings.document_root.parent().map(Path::to_path_buf) else {
        return Ok(None);
    };
    let config = settings
        .config_file
        .clone()
        .unwrap_or_else(|| project.join("watchdog.toml"));
    let files = [config, project.join(".env"), project.join("vercel.json")];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let paths = files.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        for (index, path) in paths.iter().enumerate() {
            if event.paths.iter().any(|changed| changed == path) {
                let _ = tx.send(index);
            }
        }
    };
    // A save is a rename over the file, or a write ending in a close; the
    // writes themselves are left out, so a log that a function appends to
    // beside DIR does not wake this watcher at each write.
    use notify::EventKindMask as Kind;
    let kinds =
        Kind::CREATE | Kind::REMOVE | Kind::MODIFY_NAME | Kind::MODIFY_META | Kind::ACCESS_CLOSE;
    let config = notify::Config::default().with_event_kinds(kinds);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)?;
    let mut folders: Vec<&Path> = files.iter().filter_map(|path| path.parent()).collect();
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
                            report(&files[index], &recheck);
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
    Ok(Some(watcher))
}

/// Logs a change to `file`: what a restart would do with it.
fn report(file: &Path, recheck: &Recheck) {
    let shown = file.display();
    let removed = !file.exists();
    match recheck() {
        Ok(()) if removed => tracing::warn!(
            file = %shown,
            "a configuration file was removed; its settings stay in effect until watchdog restarts"
        ),
        Ok(()) => tracing::warn!(
            file = %shown,
            "a configuration file changed; it is read at start-up only: restart watchdog to apply it (SIGHUP stops it as SIGTERM does; it does not reload)"
        ),
        Err(err) => tracing::error!(
            file = %shown,
            error = %err,
            "a configuration file changed, and watchdog would not start with the configuration as it stands; the running server keeps the settings it started with"
        ),
    }
}
