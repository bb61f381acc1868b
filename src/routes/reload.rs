//! Live reload: a change under DIR rebuilds the route table for the next request.
//! So does an edit to the code of DIR's Node project beside it (`../lib`), which
//! a handler module may import ([`super::code_fingerprint`]).
//!
//! Every filesystem event (create, remove, rename, chmod, write) restarts a short
//! quiet period; when DIR has been quiet for [`SETTLE`] (or changes have gone on
//! for [`MAX_SETTLE`]), the whole tree is walked again and the new table swapped
//! in at once. A burst such as a `git checkout` therefore lands as one consistent
//! table. A request that finds no function (or a conflict, or a warm function)
//! while a change is pending shortens the quiet period to [`HURRIED_SETTLE`]
//! and waits for the walk ([`Pending::catch_up`]), so a file just added or
//! edited answers the next request; the steps of one copy still land together.
//! Requests pay one atomic load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};

use super::RouteTable;
use super::discover::SkipKind;
use crate::config::Settings;

/// How long DIR must be quiet before the table is rebuilt.
pub const SETTLE: Duration = Duration::from_millis(75);
/// The longest a stream of changes can delay a rebuild.
pub const MAX_SETTLE: Duration = Duration::from_millis(750);
/// The quiet period while a request waits for the walk ([`Pending::catch_up`]):
/// short, but not none, so the steps of one `cp` or `rsync` still land together.
const HURRIED_SETTLE: Duration = Duration::from_millis(10);

/// Whether a change under DIR may not be in the route table yet: from the
/// watcher's event until the table that was walked after it is swapped in.
/// For that window (the settle, then the walk) a request checks that its
/// function's file still lies below DIR before it runs it, so a file swapped
/// for a symlink that leads outside DIR is not run in the meantime (CONTRACT
/// §2). The rest of the time requests do not touch the disk.
#[derive(Debug, Default)]
pub struct Pending {
    /// Changes seen by the watcher so far.
    seen: AtomicU64,
    /// Changes the current table was walked after.
    applied: AtomicU64,
    /// Changes the latest finished walk started after, whether or not it
    /// could build a table.
    walked: AtomicU64,
    /// Rings when a walk finishes.
    walk_done: tokio::sync::Notify,
    /// Changes a waiting request needs walked ([`Pending::catch_up`]).
    wanted: AtomicU64,
    /// Rung by a request that needs the table to catch up: the quiet period
    /// shortens to [`HURRIED_SETTLE`].
    hurry: tokio::sync::Notify,
    /// DIR is gone: the routes served are the last ones read, and readyz
    /// says so.
    dir_gone: AtomicBool,
    /// What the changes not yet in the table touched ([`Pending::may_concern`]).
    recent: std::sync::Mutex<RecentChanges>,
}

/// How many changed paths are kept for [`Pending::may_concern`]; past that,
/// a pending change may concern any function.
const RECENT_PATHS: usize = 256;

/// The paths of changes not yet in the table, each with the count of changes
/// seen when it came.
#[derive(Debug, Default)]
struct RecentChanges {
    paths: Vec<(u64, std::path::PathBuf)>,
    /// Changes up to this count touched what was not kept (more than
    /// [`RECENT_PATHS`], or an event that named no path): anything.
    unknown_through: u64,
}

impl Pending {
    pub fn is_pending(&self) -> bool {
        self.seen.load(Ordering::Acquire) != self.applied.load(Ordering::Acquire)
    }

    pub fn dir_is_gone(&self) -> bool {
        self.dir_gone.load(Ordering::Relaxed)
    }

    /// Waits, at most `limit`, for a walk of DIR that started after every
    /// change seen so far, cutting the quiet period short. For a request that
    /// found no function, a conflict, or a function whose file has gone or
    /// that runs warm, while a change is pending: a file just added, renamed,
    /// removed or edited takes effect for the next request (CONTRACT §2), not
    /// [`SETTLE`] later (`cp f.sh api/ && curl` answered 404). Other requests
    /// that found their function do not wait.
    pub async fn catch_up(&self, limit: Duration) {
        let target = self.seen.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let done = self.walk_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            // While DIR is gone there is no walk to wait for.
            if self.walked.load(Ordering::Acquire) >= target || self.dir_is_gone() {
                return;
            }
            self.wanted.fetch_max(target, Ordering::AcqRel);
            self.hurry.notify_one();
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return;
            }
        }
    }

    /// Whether a request waits for a change no walk has covered yet. A ring
    /// of `hurry` left over from a walk that has since covered it (its permit
    /// is kept for the next waiter) does not shorten the next quiet period.
    fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Acquire) > self.walked.load(Ordering::Acquire)
    }

    /// A walk that started after `changes` has finished.
    fn walk_finished(&self, changes: u64) {
        self.walked.fetch_max(changes, Ordering::AcqRel);
        self.walk_done.notify_waiters();
    }

    /// Whether a change not yet in the table touched a path `concerns` says
    /// matters, or one that was not kept. For a request that would wait for
    /// the walk only if its function could change with it.
    pub fn may_concern(&self, concerns: impl Fn(&std::path::Path) -> bool) -> bool {
        let applied = self.applied.load(Ordering::Acquire);
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.unknown_through > applied
            || recent
                .paths
                .iter()
                .any(|(change, path)| *change > applied && concerns(path))
    }

    pub(super) fn note_change(&self, paths: &[std::path::PathBuf]) {
        // Kept before the count moves: a request that sees the change
        // pending finds what it touched.
        let change = self.seen.load(Ordering::Acquire) + 1;
        {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if paths.is_empty() || recent.paths.len() + paths.len() > RECENT_PATHS {
                recent.unknown_through = change;
            } else {
                recent
                    .paths
                    .extend(paths.iter().map(|path| (change, path.clone())));
            }
        }
        self.seen.fetch_add(1, Ordering::AcqRel);
    }

    /// The changes a walk starting now covers.
    fn changes_so_far(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    /// The table walked after `changes` is in place.
    fn applied(&self, changes: u64) {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .paths
            .retain(|(change, _)| *change > changes);
        self.applied.store(changes, Ordering::Release);
    }

    fn set_dir_gone(&self, gone: bool) {
        self.dir_gone.store(gone, Ordering::Relaxed);
        if gone {
            self.walk_done.notify_waiters();
        }
    }
}

/// Whether the function file at `path` still lies below DIR, symlinks
/// resolved: asked only while a reload is pending.
pub fn still_below_dir(path: &std::path::Path, document_root: &std::path::Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|real| real.starts_with(document_root))
}

/// How often a DIR that has gone is looked for, to be watched again when it is
/// back.
const DIR_GONE_POLL: Duration = Duration::from_millis(500);

/// Watches DIR and keeps `routes` current. The watching stops when the
/// returned handle is dropped.
///
/// DIR itself may be replaced: deleted and made again (`rm -rf api && cp -r
/// ...`), or swapped (`mv api api.old && mv api.new api`). The kernel's watch
/// stays on the folder it was put on, so each rebuild checks which folder DIR
/// is now and moves the watch to it; while DIR is gone, the previous routes
/// serve and DIR is looked for every [`DIR_GONE_POLL`].
///
/// # Errors
/// When the OS cannot watch DIR (inotify limits, for example).
pub fn watch(
    settings: Arc<Settings>,
    routes: Arc<ArcSwap<RouteTable>>,
    pending: Arc<Pending>,
    on_reload: impl Fn(&RouteTable) + Send + 'static,
) -> notify::Result<Watching> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let link_changed = tx.clone();
    // DIR as given, which may lead through a symlink (a `current` release
    // link), and the folder it leads to now, which is what is watched.
    let given = std::path::absolute(&settings.dir).unwrap_or_else(|_| settings.dir.clone());
    let shared_root = Arc::new(ArcSwap::from_pointee(settings.document_root.clone()));
    // DIR itself removed or moved away: its watch is over, whatever folder
    // is at its path by the rebuild (a new one may even reuse the inode).
    let root_replaced = Arc::new(AtomicBool::new(false));
    let mut project = ProjectWatches::default();
    let handler = {
        let (shared_root, root_replaced) = (Arc::clone(&shared_root), Arc::clone(&root_replaced));
        let pending = Arc::clone(&pending);
        let moved_away = Arc::clone(&project.moved_away);
        move |event: notify::Result<notify::Event>| {
            let root = shared_root.load();
            let root: &std::path::Path = &root;
            // Something removed or renamed: DIR itself, or a project folder
            // beside it, loses its watch.
            if let Ok(event) = &event
                && matches!(
                    event.kind,
                    notify::EventKind::Remove(_)
                        | notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                )
            {
                if event.paths.iter().any(|path| path == root) {
                    root_replaced.store(true, Ordering::Relaxed);
                }
                let beside = event.paths.iter().filter(|path| !path.starts_with(root));
                moved_away
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(beside.cloned());
            }
            if event
                .as_ref()
                .is_ok_and(|e| !e.kind.is_access() && concerns_code(e, root))
                || event.is_err()
            {
                pending.note_change(event.as_ref().map_or(&[][..], |e| e.paths.as_slice()));
                let _ = tx.send(());
            }
        }
    };
    // Only changes to the tree, never opens or closes: every request execs a file
    // under DIR, and an open event per request would wake the watcher thread on
    // the hot path (measured: a context switch and an event parse per request).
    let config = notify::Config::default().with_event_kinds(notify::EventKindMask::CORE);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)?;
    let mut root = settings.document_root.clone();
    watcher.watch(&root, RecursiveMode::Recursive)?;
    let mut watched = folder_identity(&given);
    project.sync(&mut watcher, project_folders(&routes.load(), &root));
    let links = super::link_watch::watch(&given, link_changed, Arc::clone(&pending))?;
    let task = tokio::spawn(async move {
        // Lives as long as the watching does.
        let _links = links;
        let mut gone = false;
        loop {
            if gone {
                tokio::time::sleep(DIR_GONE_POLL).await;
            } else {
                match settled_change(&mut rx, &pending).await {
                    None => return,
                    Some(Settled::Hurried) => tracing::info!(
                        "walking DIR early: a request waits on a change not yet read (a function not found, its file changed, or a warm function)"
                    ),
                    Some(Settled::Quiet) => {}
                }
            }
            let now = folder_identity(&given);
            if now.is_none() {
                if !gone {
                    gone = true;
                    pending.set_dir_gone(true);
                    tracing::error!(dir = %root.display(), "DIR is gone: the previous routes serve until it is back, and readyz answers 503");
                }
                continue;
            }
            let replaced = root_replaced.swap(false, Ordering::Relaxed);
            if gone || replaced || now != watched {
                // A new folder at DIR's path: the old watch sees nothing of it.
                // Through a symlink pointed elsewhere, a folder at a path of
                // its own, which is watched instead.
                let _ = watcher.unwatch(&root);
                let resolved = given.canonicalize().unwrap_or_else(|_| root.clone());
                if resolved != root {
                    tracing::info!(dir = %given.display(), now = %resolved.display(), was = %root.display(), "DIR leads to another folder now: serving its functions");
                    root = resolved;
                    shared_root.store(Arc::new(root.clone()));
                }
                match watcher.watch(&root, RecursiveMode::Recursive) {
                    Ok(()) => watched = now,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot watch the new DIR; restart watchdog to pick up its changes")
                    }
                }
                if gone {
                    tracing::info!(dir = %root.display(), "DIR is back");
                }
            }
            gone = false;
            pending.set_dir_gone(false);
            // The walk sees every change seen so far; later ones keep the
            // window open until the next walk.
            let walked_after = pending.changes_so_far();
            let settings = Arc::clone(&settings);
            let rebuilt = tokio::task::spawn_blocking(move || {
                RouteTable::for_settings(&settings).map(|table| {
                    let folders = project_folders(&table, &table.document_root);
                    (table, folders)
                })
            })
            .await;
            match rebuilt {
                Ok(Ok((table, folders))) => {
                    // A folder made (or made again) in the project since is
                    // watched from now on.
                    project.sync(&mut watcher, folders);
                    report(&table, true);
                    let table = Arc::new(table);
                    // Stored first: requests from here on see the versions the
                    // callback starts pools for.
                    routes.store(Arc::clone(&table));
                    pending.applied(walked_after);
                    on_reload(&table);
                }
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "cannot re-read DIR; keeping the previous routes")
                }
                Err(err) => {
                    tracing::error!(error = %err, "route rebuild failed; keeping the previous routes")
                }
            }
            pending.walk_finished(walked_after);
        }
    });
    Ok(Watching(task))
}

/// Whether a change is one a rebuild may need to see: anything under DIR, and
/// beside it (the Node project's folders) a counted script, a folder made,
/// removed or renamed, or an event that names no path (the watcher lost
/// track). A log or a database a function writes beside DIR is not.
fn concerns_code(event: &notify::Event, root: &std::path::Path) -> bool {
    use notify::event::{CreateKind, RemoveKind};
    let folder_event = matches!(
        event.kind,
        notify::EventKind::Create(CreateKind::Folder)
            | notify::EventKind::Remove(RemoveKind::Folder)
    );
    event.paths.is_empty()
        || folder_event
        || event.paths.iter().any(|path| {
            path.starts_with(root)
                || super::code_fingerprint::counts_beside_dir(path)
                || path.is_dir()
        })
}

/// The project folders to watch beside DIR, and whether there were more
/// ([`super::code_fingerprint::folders_to_watch`]); only while a Node handler
/// module is served: other functions import nothing the project's folders
/// could hold that watchdog tracks.
fn project_folders(table: &RouteTable, root: &std::path::Path) -> (Vec<std::path::PathBuf>, bool) {
    if !table.functions.iter().any(|f| f.file.runner.node_module) {
        return (Vec::new(), false);
    }
    super::code_fingerprint::folders_to_watch(root)
}

/// The folders of DIR's Node project beside it that are watched, one by one,
/// without recursion: a recursive watch of the project would also cover every
/// `node_modules` in it ([`super::code_fingerprint::folders_to_watch`]).
///
/// A watch stays on the folder it was put on: one removed or renamed (`rm -rf
/// lib && cp -r ...`, `mv lib.new lib`) leaves its path unwatched, even when a
/// new folder there reuses the old inode. The watcher notes such paths as
/// they go, and the next sync watches what is there now.
#[derive(Default)]
struct ProjectWatches {
    watched: std::collections::HashSet<std::path::PathBuf>,
    moved_away: Arc<std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>>,
    said_too_many: bool,
}

impl ProjectWatches {
    /// Watches `wanted` and no others from now on.
    fn sync(
        &mut self,
        watcher: &mut impl Watcher,
        (wanted, more): (Vec<std::path::PathBuf>, bool),
    ) {
        if more && !self.said_too_many {
            self.said_too_many = true;
            tracing::warn!(
                limit = super::code_fingerprint::MAX_WATCHED_FOLDERS,
                "the Node project beside DIR has more folders than watchdog looks at; code in the rest is not watched and an edit there does not recycle warm handler modules"
            );
        }
        let moved_away = std::mem::take(
            &mut *self
                .moved_away
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let wanted: std::collections::HashSet<_> = wanted.into_iter().collect();
        self.watched.retain(|folder| {
            let keep = wanted.contains(folder) && !moved_away.contains(folder);
            if !keep {
                let _ = watcher.unwatch(folder);
            }
            keep
        });
        for folder in wanted {
            if self.watched.contains(&folder) {
                continue;
            }
            match watcher.watch(&folder, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(folder);
                }
                Err(err) => {
                    tracing::debug!(folder = %folder.display(), error = %err, "cannot watch a folder of the project beside DIR");
                }
            }
        }
    }
}

/// How a stretch of changes ended.
enum Settled {
    /// DIR was quiet for [`SETTLE`], or changes went on for [`MAX_SETTLE`].
    Quiet,
    /// A request was waiting: quiet for [`HURRIED_SETTLE`] was enough.
    Hurried,
}

/// Waits for a change under DIR, then for DIR to be quiet for [`SETTLE`] (at
/// most [`MAX_SETTLE`] after the first), or only [`HURRIED_SETTLE`] while a
/// request waits for the walk. None once the watcher is gone.
async fn settled_change(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    pending: &Pending,
) -> Option<Settled> {
    rx.recv().await?;
    let started = tokio::time::Instant::now();
    let mut last_change = started;
    loop {
        let hurried = pending.is_wanted();
        let quiet = if hurried { HURRIED_SETTLE } else { SETTLE };
        let quiet_until = (last_change + quiet).min(started + MAX_SETTLE);
        let next = tokio::select! {
            // Looks again at how long to wait.
            () = pending.hurry.notified() => continue,
            next = tokio::time::timeout_at(quiet_until, rx.recv()) => next,
        };
        match next {
            Ok(Some(())) if tokio::time::Instant::now() < started + MAX_SETTLE => {
                last_change = tokio::time::Instant::now();
            }
            Ok(None) => return None,
            _ if hurried => return Some(Settled::Hurried),
            _ => return Some(Settled::Quiet),
        }
    }
}

/// Live reload running; dropped, it stops.
pub struct Watching(tokio::task::JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which folder `path` is now (device and inode), if it is one.
fn folder_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_dir)
        .map(|meta| (meta.dev(), meta.ino()))
}

/// Logs a freshly built table: counts, conflicts by name, and (at debug) the files
/// that are not routes with the reason.
pub fn report(table: &RouteTable, reload: bool) {
    crate::observability::metrics::routes_loaded(
        table.functions.len(),
        table.conflicts.len(),
        reload,
    );
    tracing::info!(
        functions = table.functions.len(),
        skipped = table.skipped.len(),
        conflicts = table.conflicts.len(),
        "{}",
        if reload {
            "routes reloaded"
        } else {
            "routes loaded"
        }
    );
    for (pattern, ids) in &table.conflicts {
        let files = table.conflict_files(ids);
        tracing::warn!(%pattern, files = %files.join(", "), "route conflict: this URL answers 500 until only one file claims it");
    }
    for function in &table.functions {
        if let Some(caution) = &function.file.caution {
            let file = &function.file.relative;
            tracing::warn!(%file, %caution, "a function may not run as its author meant");
        }
    }
    for skipped in &table.skipped {
        let (file, reason) = (&skipped.relative, &skipped.reason);
        match skipped.kind {
            SkipKind::Deliberate => tracing::debug!(%file, %reason, "not a route"),
            SkipKind::Misplaced => tracing::warn!(%file, %reason, "not a route"),
            SkipKind::Unexpected => tracing::info!(%file, %reason, "not a route"),
        }
    }
}
