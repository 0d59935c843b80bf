//! The simulator's clock: wall time plus an offset that tests move forward.
//!
//! Everything time-dependent in the sandbox (token expiry and grace periods,
//! code expiry, the per-minute code limit, the daily quota window that resets
//! at midnight Beijing time) reads this clock, so a test can jump two hours
//! ahead with [`Clock::advance`] instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds Beijing time (UTC+8) is ahead of UTC; quota days start at its midnight.
const BEIJING_OFFSET: u64 = 8 * 3600;

/// Wall-clock seconds plus a movable offset.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset: AtomicU64,
}

impl Clock {
    /// The simulated unix time in seconds.
    pub(crate) fn now(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        wall.saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Moves the clock forward by `secs`.
    pub(crate) fn advance(&self, secs: u64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

/// The quota day (days since the epoch, Beijing time) that `unix` falls in.
pub(crate) fn beijing_day(unix: u64) -> u64 {
    (unix + BEIJING_OFFSET) / 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_midnight_is_16_utc() {
        // 2024-01-01T15:59:59Z is 23:59:59 in Beijing; one second later is a new day.
        let before = 1_704_124_799;
        assert_eq!(beijing_day(before) + 1, beijing_day(before + 1));
    }

    #[test]
    fn advance_moves_now() {
        let clock = Clock::default();
        let start = clock.now();
        clock.advance(7200);
        assert!(clock.now() >= start + 7200);
    }
}
