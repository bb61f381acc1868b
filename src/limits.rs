//! Resource limits of one invocation (CONTRACT §6: `memory`, `cpu_time`,
//! `max_processes`, `open_files`; `max_output` is counted by the invoker), and
//! running functions as an unprivileged user (`--user`).
//!
//! Each limit is held by the strongest mechanism available, and the log says which:
//! a cgroup for processes and memory where watchdog can make one (a root process
//! can lift its own rlimits and is not bound by RLIMIT_NPROC), an rlimit otherwise,
//! and an rlimit for CPU time and open files. Functions without limits take the
//! fast spawn path: nothing here runs for them.

pub mod cgroup;
pub mod cpu_budget;

use std::ffi::CString;
use std::os::unix::process::CommandExt;

use nix::sys::resource::Resource;

use crate::config::functions::ResourceLimits;
pub use cgroup::{Cgroups, Hits, InvocationCgroup};

/// The resource limit that killed a process ended by `signal`, when one did:
/// SIGXCPU is the `cpu_time` rlimit's own, and a SIGKILL the memory cgroup's
/// when the cgroup records an OOM kill. The client is then told which limit to
/// raise, not that the function "exited with signal 9". One answer for CGI
/// functions and warm workers alike.
pub fn limit_that_killed(signal: i32, cgroup: Option<&InvocationCgroup>) -> Option<&'static str> {
    use nix::sys::signal::Signal;
    if signal == Signal::SIGXCPU as i32 {
        Some("cpu_time")
    } else if signal == Signal::SIGKILL as i32 && cgroup.is_some_and(|c| c.hits().memory) {
        Some("memory")
    } else {
        None
    }
}

/// The user functions run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Their home folder, given to functions as HOME instead of watchdog's own.
    pub home: std::path::PathBuf,
}

impl RunAs {
    /// Looks `name` up in the user database.
    ///
    /// # Errors
    /// An unknown user, or an unreadable user database; the caller names where
    /// the name came from.
    pub fn lookup(name: &str) -> Result<Self, String> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Ok(Self {
                name: name.to_owned(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                home: user.dir,
            }),
            Ok(None) => Err("no such user; create it or name another (e.g. nobody)".into()),
            Err(err) => Err(format!("cannot read the user database: {err}")),
        }
    }
}

/// Server-wide: the cgroup hierarchies found at start-up and the user to run as.
#[derive(Debug, Default)]
pub struct Limiter {
    pub cgroups: Cgroups,
    pub run_as: Option<RunAs>,
}

/// What one invocation gets applied before exec.
#[derive(Debug, Default)]
pub struct Plan {
    pub cgroup: Option<InvocationCgroup>,
    rlimits: Vec<(Resource, u64, u64)>,
}

impl Plan {
    /// For a warm worker: `cpu_time` is a budget per request
    /// ([`cpu_budget`]), so the hard limit is left at watchdog's own for the
    /// soft one to be moved up before each request.
    pub fn per_request_cpu(&mut self) {
        let hard = cpu_budget::worker_hard_limit().unwrap_or(nix::libc::RLIM_INFINITY);
        for (resource, _, max) in &mut self.rlimits {
            if *resource == Resource::RLIMIT_CPU {
                *max = hard;
            }
        }
    }
}

impl Limiter {
    pub fn new(run_as: Option<RunAs>) -> Self {
        Self {
            cgroups: Cgroups::detect(),
            run_as,
        }
    }

    /// Says how each configured limit is held, for the start-up log.
    pub fn describe(&self, limits: &ResourceLimits) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = limits.max_processes {
            out.push(match (&self.cgroups.pids, &self.run_as) {
                (Some(_), _) => format!("max_processes={n} by cgroup pids.max"),
                (None, Some(_)) => format!(
                    "max_processes={n} by RLIMIT_NPROC, counted over all processes of the user"
                ),
                (None, None) => format!(
                    "max_processes={n} by RLIMIT_NPROC, which does not bind root: use --user"
                ),
            });
        }
        if let Some(bytes) = limits.memory {
            out.push(match &self.cgroups.memory {
                Some(_) => format!("memory={bytes} by cgroup memory.limit_in_bytes"),
                None => format!("memory={bytes} by RLIMIT_AS (address space)"),
            });
        }
        if let Some(cpu) = limits.cpu_time {
            out.push(format!(
                "cpu_time={}s by RLIMIT_CPU (per process)",
                cpu_budget::whole_seconds(cpu)
            ));
        }
        if let Some(n) = limits.open_files {
            out.push(format!("open_files={n} by RLIMIT_NOFILE"));
        }
        if let Some(n) = limits.max_output {
            out.push(format!("max_output={n} counted by watchdog"));
        }
        out
    }

    /// Prepares the cgroup and rlimits of one invocation.
    ///
    /// # Errors
    /// When a cgroup cannot be made or configured.
    pub fn plan(&self, limits: &ResourceLimits) -> std::io::Result<Plan> {
        let use_pids = limits.max_processes.is_some() && self.cgroups.pids.is_some();
        let use_memory = limits.memory.is_some() && self.cgroups.memory.is_some();
        let cgroup = if use_pids || use_memory {
            Some(InvocationCgroup::create(
                &self.cgroups,
                limits.max_processes.filter(|_| use_pids),
                limits.memory.filter(|_| use_memory),
            )?)
        } else {
            None
        };
        let mut rlimits = Vec::new();
        if let Some(cpu) = limits.cpu_time {
            // The soft limit sends SIGXCPU, the hard one a second later SIGKILL.
            let seconds = cpu_budget::whole_seconds(cpu);
            rlimits.push((Resource::RLIMIT_CPU, seconds, seconds + 1));
        }
        if let Some(n) = limits.open_files {
            rlimits.push((Resource::RLIMIT_NOFILE, u64::from(n), u64::from(n)));
        }
        if let Some(bytes) = limits.memory.filter(|_| !use_memory) {
            rlimits.push((Resource::RLIMIT_AS, bytes, bytes));
        }
        if let Some(n) = limits.max_processes.filter(|_| !use_pids) {
            rlimits.push((Resource::RLIMIT_NPROC, u64::from(n), u64::from(n)));
        }
        Ok(Plan { cgroup, rlimits })
    }

    /// Whether `plan` (or `--user`) needs work in the child between fork and exec;
    /// only then must the function take std's fork path.
    pub fn needs_child_setup(&self, plan: &Plan) -> bool {
        self.run_as.is_some()
            || !plan.rlimits.is_empty()
            || plan
                .cgroup
                .as_ref()
                .is_some_and(|c| !c.procs_files.is_empty())
    }

    /// Applies `plan` (and `--user`) to `command`.
    pub fn apply(&self, plan: &Plan, command: &mut std::process::Command) {
        let procs_files: Vec<CString> = plan
            .cgroup
            .as_ref()
            .map(|c| c.procs_files.clone())
            .unwrap_or_default();
        let rlimits = plan.rlimits.clone();
        // std's own uid()/gid() would switch user before our closure runs, and an
        // unprivileged child could no longer join its (root-owned) cgroup: the
        // switch is done here, last.
        let run_as = self.run_as.as_ref().map(|user| {
            (
                nix::unistd::Uid::from_raw(user.uid),
                nix::unistd::Gid::from_raw(user.gid),
            )
        });
        if let Some(user) = &self.run_as {
            command.env("HOME", &user.home);
        }
        if procs_files.is_empty() && rlimits.is_empty() && run_as.is_none() {
            return;
        }
        // A pre_exec closure makes std fork instead of posix_spawn; it is only
        // installed for functions with limits or with --user, never on the
        // default path. Joining
        // the cgroup here (in the child, before exec) means not even the first
        // fork of the function escapes it.
        #[allow(unsafe_code)]
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls (open, write, close, setrlimit, setgroups,
        // setgid, setuid) on data prepared before the fork; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                for path in &procs_files {
                    let fd = nix::fcntl::open(
                        path.as_c_str(),
                        nix::fcntl::OFlag::O_WRONLY,
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(std::io::Error::from)?;
                    nix::unistd::write(&fd, b"0").map_err(std::io::Error::from)?;
                }
                for (resource, soft, hard) in &rlimits {
                    nix::sys::resource::setrlimit(*resource, *soft, *hard)
                        .map_err(std::io::Error::from)?;
                }
                if let Some((uid, gid)) = run_as {
                    nix::unistd::setgroups(&[]).map_err(std::io::Error::from)?;
                    nix::unistd::setgid(gid).map_err(std::io::Error::from)?;
                    nix::unistd::setuid(uid).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.cgroups.remove();
    }
}
