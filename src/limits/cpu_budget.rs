//! `cpu_time` for a warm worker: a budget per request, not per worker.
//!
//! RLIMIT_CPU counts a process's CPU time over its whole life. Set once when a
//! warm worker starts, it would be spent across requests, and a healthy worker
//! would be killed (SIGXCPU) in the middle of whichever request crossed it: a
//! worker using 0.8 s a request under `cpu_time = "1s"` failed every second
//! request, and the pool then took it for a crash loop. So a worker starts with
//! the soft limit only ([`Plan::per_request_cpu`](super::Plan::per_request_cpu)),
//! and before each request the soft limit is moved to what it has used so far
//! plus the budget. The hard limit stays where it was: lowering it is allowed
//! but raising it back is not without CAP_SYS_RESOURCE, so a worker that ignores
//! SIGXCPU is left to the request's timeout.

use std::io;
use std::time::Duration;

use rustix::process::{Pid, Resource, Rlimit};

/// The hard limit a worker keeps: watchdog's own.
pub fn worker_hard_limit() -> Option<u64> {
    rustix::process::getrlimit(Resource::Cpu).maximum
}

/// `cpu_time` in the kernel's unit, whole seconds: rounded up, so a function
/// gets at least what its section says (`1500ms` is 2 s, not 1).
pub fn whole_seconds(budget: Duration) -> u64 {
    (budget.as_secs() + u64::from(budget.subsec_nanos() > 0)).max(1)
}

/// The soft limit that gives a process which has used `used_ticks` of CPU
/// `budget` more: whole seconds (the kernel's unit), rounded so the request
/// gets at least its budget and less than a second beyond it.
pub fn soft_limit(used_ticks: u64, ticks_per_second: u64, budget: Duration) -> u64 {
    used_ticks.div_ceil(ticks_per_second.max(1)) + whole_seconds(budget)
}

/// Gives the worker `pid` a request's `budget` of CPU time from now.
///
/// # Errors
/// The worker is gone, or its limit cannot be set.
pub fn grant(pid: u32, budget: Duration) -> io::Result<()> {
    let raw = i32::try_from(pid).map_err(io::Error::other)?;
    let stat = procfs::process::Process::new(raw)
        .and_then(|process| process.stat())
        .map_err(io::Error::other)?;
    let soft = soft_limit(stat.utime + stat.stime, procfs::ticks_per_second(), budget);
    let limit = Rlimit {
        current: Some(soft),
        maximum: worker_hard_limit(),
    };
    let pid = Pid::from_raw(raw).ok_or_else(|| io::Error::other("pid 0"))?;
    rustix::process::prlimit(Some(pid), Resource::Cpu, limit)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gets_its_budget_on_top_of_what_the_worker_used() {
        let second = Duration::from_secs(1);
        assert_eq!(soft_limit(0, 100, second), 1);
        // 0.8 s used: the next request may use 1.2 s, never less than 1 s.
        assert_eq!(soft_limit(80, 100, second), 2);
        assert_eq!(soft_limit(100, 100, second), 2);
        assert_eq!(soft_limit(101, 100, Duration::from_secs(3)), 5);
        // The kernel counts whole seconds: a part of one is one.
        assert_eq!(soft_limit(0, 100, Duration::from_millis(300)), 1);
        assert_eq!(soft_limit(0, 100, Duration::from_millis(1500)), 2);
    }

    #[test]
    fn the_limit_moves_with_what_the_process_used() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        grant(child.id(), Duration::from_secs(7)).unwrap();
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max cpu time"))
            .unwrap()
            .to_owned();
        child.kill().unwrap();
        child.wait().unwrap();
        let soft: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(soft[3], "7", "{line}");
    }
}
