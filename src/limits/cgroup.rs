//! Per-invocation cgroups (v1 `pids` and `memory` hierarchies), for limits a
//! process cannot lift itself: a process running as root may raise its own
//! rlimits and is not bound by RLIMIT_NPROC, but it cannot leave its cgroup's
//! `pids.max` or `memory.limit_in_bytes`.
//!
//! At start-up watchdog makes `watchdog-<pid>/` below its own cgroup in each
//! hierarchy it can write. An invocation with limits gets a child group there; the
//! function joins it before exec (see `limits.rs`), and when the invocation is over
//! every process still listed is killed and the group removed. A cgroup also finds
//! processes that left their process group with `setsid`.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The hierarchies watchdog can use, with its own base folder in each.
#[derive(Debug, Clone, Default)]
pub struct Cgroups {
    pub pids: Option<PathBuf>,
    pub memory: Option<PathBuf>,
}

impl Cgroups {
    /// Finds writable v1 `pids` and `memory` hierarchies and makes watchdog's base
    /// folder in each. Hierarchies that are missing or read-only are left out.
    pub fn detect() -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let base = |controller: &str| -> Option<PathBuf> {
            let mount = Path::new("/sys/fs/cgroup").join(controller);
            if !mount.join("cgroup.procs").exists() {
                return None;
            }
            let relative = own.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then(|| path.trim_start_matches('/').to_owned())
            })?;
            let dir = mount
                .join(relative)
                .join(format!("watchdog-{}", std::process::id()));
            // A folder of that name may be left from an earlier run with the same
            // pid (PID 1 in a container): clear out its empty invocation groups.
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with("inv-") {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
            }
            match std::fs::create_dir_all(&dir) {
                Ok(()) => Some(dir),
                Err(err) => {
                    tracing::debug!(controller, error = %err, "cgroup hierarchy not writable");
                    None
                }
            }
        };
        Self {
            pids: base("pids"),
            memory: base("memory"),
        }
    }

    /// Removes the base folders (empty once every invocation is over).
    pub fn remove(&self) {
        for dir in [&self.pids, &self.memory].into_iter().flatten() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// One invocation's cgroups.
#[derive(Debug)]
pub struct InvocationCgroup {
    dirs: Vec<PathBuf>,
    pids_dir: Option<PathBuf>,
    memory_dir: Option<PathBuf>,
    /// `cgroup.procs` of each folder, ready for the child to open before exec
    /// (no allocation may happen there).
    pub procs_files: Vec<CString>,
}

/// Which limits a finished invocation ran into.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hits {
    pub memory: bool,
    pub processes: bool,
}

impl InvocationCgroup {
    /// Makes the folders and writes the limits.
    ///
    /// # Errors
    /// When a folder cannot be made or a limit cannot be written.
    pub fn create(
        cgroups: &Cgroups,
        max_processes: Option<u32>,
        memory: Option<u64>,
    ) -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("inv-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut group = Self {
            dirs: Vec::new(),
            pids_dir: None,
            memory_dir: None,
            procs_files: Vec::new(),
        };
        if let (Some(base), Some(max)) = (&cgroups.pids, max_processes) {
            let dir = base.join(&name);
            std::fs::create_dir(&dir)?;
            group.dirs.push(dir.clone());
            std::fs::write(dir.join("pids.max"), max.to_string())?;
            group.pids_dir = Some(dir);
        }
        if let (Some(base), Some(bytes)) = (&cgroups.memory, memory) {
            let dir = base.join(&name);
            std::fs::create_dir(&dir)?;
            group.dirs.push(dir.clone());
            std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
            // Without swap accounting this file is absent; the limit above still holds.
            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
            group.memory_dir = Some(dir);
        }
        for dir in &group.dirs {
            let path = dir.join("cgroup.procs");
            group.procs_files.push(
                CString::new(path.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?,
            );
        }
        Ok(group)
    }

    /// Which limits the group has run into so far.
    pub fn hits(&self) -> Hits {
        Hits {
            // Only an OOM kill counts: failcnt also grows with ordinary page-cache
            // reclaim in a function that succeeds.
            memory: self.memory_dir.as_ref().is_some_and(|dir| {
                std::fs::read_to_string(dir.join("memory.oom_control")).is_ok_and(|text| {
                    text.lines()
                        .any(|l| l.starts_with("oom_kill ") && l.trim() != "oom_kill 0")
                })
            }),
            processes: self
                .pids_dir
                .as_ref()
                .and_then(|d| std::fs::read_to_string(d.join("pids.events")).ok())
                .is_some_and(|events| {
                    events
                        .lines()
                        .any(|l| l.starts_with("max ") && l.trim() != "max 0")
                }),
        }
    }

    /// Kills everything still in the group (including processes that left their
    /// process group), waits for it to empty, reads which limits were hit, and
    /// removes the folders.
    pub async fn finish(mut self) -> Hits {
        let hits = self.hits();
        for _ in 0..200 {
            let mut alive = 0;
            for dir in &self.dirs {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    alive += 1;
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if alive == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for dir in std::mem::take(&mut self.dirs) {
            if let Err(err) = std::fs::remove_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot remove an invocation's cgroup");
            }
        }
        hits
    }
}

impl Drop for InvocationCgroup {
    /// The backstop when [`InvocationCgroup::finish`] never ran (spawn failed, or
    /// the driver was dropped at shutdown): kill what is inside, remove the
    /// folders. After `finish` there is nothing left to do.
    fn drop(&mut self) {
        for dir in &self.dirs {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for dir in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}
