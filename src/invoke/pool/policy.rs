//! Pool policy as pure data (CONTRACT §4): settings with their defaults, and the
//! crash record that decides restart backoff and when a function is given up on.
//! No processes here, so it is tested with plain instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::file::{WarmProtocol, WarmSection};

/// A crashed worker is restarted after 0 s, 0 s, 2 s, 4 s, 8 s … up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// This many crashes within [`CRASH_WINDOW`] mark the function crashed.
pub const CRASH_LIMIT: usize = 5;
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);

/// A worker still running that closes this many connections in a row without
/// answering is replaced as crashed: one failed request is no reason to lose a
/// warm worker, a worker that answers nothing is.
pub const BROKEN_OFF_LIMIT: u32 = 3;

/// A worker's start gets at least this long, whatever the function's timeout:
/// Lambda gives a runtime's init phase 10 s apart from the function's timeout,
/// and a framework that takes 4 s to boot behind a 3 s timeout could otherwise
/// never become warm (each attempt was killed at the timeout).
pub const START_FLOOR: Duration = Duration::from_secs(10);

/// How long a worker may take to become ready.
pub fn start_allowance(timeout: Duration) -> Duration {
    timeout.max(START_FLOOR)
}

/// [`start_allowance`] in words, for the error of a start that ran out of it.
pub fn start_allowance_rule() -> String {
    format!(
        "the function's timeout, and at least {} s",
        START_FLOOR.as_secs()
    )
}

/// A function's warm settings with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmConfig {
    pub protocol: WarmProtocol,
    pub min: usize,
    pub max: usize,
    pub idle_timeout: Duration,
    pub max_requests: Option<u64>,
}

impl WarmConfig {
    /// Workers a pool may run when its section gives no `max` (CONTRACT §4).
    pub const DEFAULT_MAX: u32 = 4;

    pub fn from_section(section: &WarmSection) -> Self {
        let max = section.max.unwrap_or(Self::DEFAULT_MAX).max(1) as usize;
        Self {
            protocol: section.protocol,
            min: (section.min.unwrap_or(0) as usize).min(max),
            max,
            idle_timeout: section.idle_timeout.unwrap_or(Duration::from_secs(300)),
            max_requests: section.max_requests.filter(|n| *n > 0),
        }
    }

    /// Whether a worker that has served `served` requests must be recycled.
    pub fn worn_out(&self, served: u64) -> bool {
        self.max_requests.is_some_and(|max| served >= max)
    }
}

/// Recent crashes of one function's workers.
#[derive(Debug, Default, Clone)]
pub struct CrashRecord {
    recent: VecDeque<Instant>,
    /// Crashes since the last worker that started and served well.
    consecutive: u32,
    /// What the latest crash was, for the 503 of a function given up on:
    /// the crash that caused it was logged, maybe minutes before.
    last_cause: Option<String>,
}

impl CrashRecord {
    /// A crash at `now`; `cause` is what the function's 503 says once it is
    /// given up on.
    pub fn crashed(&mut self, now: Instant, cause: String) {
        self.last_cause = Some(cause);
        self.recent.push_back(now);
        self.consecutive += 1;
        self.prune(now);
    }

    /// What the latest crash was.
    pub fn last_cause(&self) -> Option<&str> {
        self.last_cause.as_deref()
    }

    /// A worker served a request: the backoff starts over.
    pub fn healthy(&mut self) {
        self.consecutive = 0;
    }

    /// How long from `now` until the next worker may start: the backoff counts
    /// from the last crash, so requests that arrive during it share one wait
    /// instead of each waiting the whole of it.
    pub fn restart_in(&self, now: Instant) -> Duration {
        match self.recent.back() {
            Some(last) => (*last + self.backoff()).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    /// How long to wait after a crash before starting the next worker.
    pub fn backoff(&self) -> Duration {
        match self.consecutive {
            0..=2 => Duration::ZERO,
            n => Duration::from_secs(2u64.saturating_pow(n - 2)).min(MAX_BACKOFF),
        }
    }

    /// Whether the function has crashed too often to keep trying.
    pub fn given_up(&mut self, now: Instant) -> bool {
        self.given_up_for(now).is_some()
    }

    /// How much longer the function stays given up on, if it is: until enough
    /// of its recent crashes have left the window and the restart backoff is
    /// over (no worker starts meanwhile, so no crash is added), or until its
    /// file changes and the pool is replaced.
    pub fn given_up_for(&mut self, now: Instant) -> Option<Duration> {
        self.prune(now);
        let over = self.recent.len().checked_sub(CRASH_LIMIT)?;
        let leaves = self.recent[over] + CRASH_WINDOW;
        Some(
            leaves
                .saturating_duration_since(now)
                .max(self.restart_in(now)),
        )
    }

    fn prune(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_contract() {
        let mut record = CrashRecord::default();
        let start = Instant::now();
        let mut delays = Vec::new();
        for i in 0..8 {
            record.crashed(start + Duration::from_secs(100 * i), String::new());
            delays.push(record.backoff().as_secs());
        }
        // After the 1st, 2nd, 3rd … crash.
        assert_eq!(delays, [0, 0, 2, 4, 8, 16, 32, 60]);
        // Counted from the last crash (at 700 s).
        let last = start + Duration::from_secs(700);
        assert_eq!(
            record.restart_in(last + Duration::from_secs(45)),
            Duration::from_secs(15)
        );
        assert_eq!(
            record.restart_in(last + Duration::from_secs(61)),
            Duration::ZERO
        );
        record.healthy();
        assert_eq!(record.backoff(), Duration::ZERO);
    }

    #[test]
    fn five_crashes_in_a_minute_give_up() {
        let mut record = CrashRecord::default();
        let start = Instant::now();
        for i in 0..4 {
            record.crashed(start + Duration::from_secs(i * 10), String::new());
        }
        assert!(!record.given_up(start + Duration::from_secs(41)));
        record.crashed(start + Duration::from_secs(50), String::new());
        assert!(record.given_up(start + Duration::from_secs(51)));
        // Until the first of those five is a minute old.
        assert_eq!(
            record.given_up_for(start + Duration::from_secs(51)),
            Some(Duration::from_secs(9))
        );
        assert!(!record.given_up(start + Duration::from_secs(61)));
        // After a long run of crashes the backoff (60 s from the last) can end
        // later than the window does.
        let mut long = CrashRecord::default();
        for i in 0..9 {
            long.crashed(start + Duration::from_secs(400 + i * 10), String::new());
        }
        assert_eq!(
            long.given_up_for(start + Duration::from_secs(481)),
            Some(Duration::from_secs(59))
        );
        // Spread over more than a minute they do not.
        let mut slow = CrashRecord::default();
        for i in 0..5 {
            slow.crashed(start + Duration::from_secs(i * 20), String::new());
        }
        assert!(!slow.given_up(start + Duration::from_secs(81)));
    }

    #[test]
    fn config_defaults_and_recycling() {
        let section = WarmSection {
            protocol: WarmProtocol::Http,
            min: Some(9),
            max: None,
            idle_timeout: None,
            max_requests: Some(3),
        };
        let config = WarmConfig::from_section(&section);
        assert_eq!((config.min, config.max), (4, 4));
        assert_eq!(config.idle_timeout, Duration::from_secs(300));
        assert!(!config.worn_out(2));
        assert!(config.worn_out(3));
    }
}
