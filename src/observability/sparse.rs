//! Warnings about what any client can cause as often as it likes: the first is
//! logged, then at most one per period, with how many happened since the last
//! one logged, so a flood of them does not flood the log.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct Sparse {
    every: Duration,
    /// When one was last let through, and how many came since (counting it).
    state: Mutex<(Option<Instant>, u64)>,
}

impl Sparse {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one event. `Some(n)` when it is to be logged: `n` events since
    /// the last one logged, this one included.
    pub fn note(&self) -> Option<u64> {
        self.note_at(Instant::now())
    }

    fn note_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 += 1;
        if state
            .0
            .is_some_and(|at| now.saturating_duration_since(at) < self.every)
        {
            return None;
        }
        let since = state.1;
        *state = (Some(now), 0);
        Some(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_then_one_a_period_with_the_count_since() {
        let sparse = Sparse::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(sparse.note_at(t0), Some(1));
        assert_eq!(sparse.note_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(sparse.note_at(t0 + Duration::from_secs(9)), None);
        // The two held back and this one.
        assert_eq!(sparse.note_at(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(sparse.note_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(sparse.note_at(t0 + Duration::from_secs(25)), Some(2));
    }
}
