//! Injectable time.
//!
//! Freshness, token expiry, quota breakers, refresh leases and the
//! in-memory windows (a token fetch's hold-off, the "just refreshed" window,
//! the app cache's age) read the time through a [`Clock`], so tests move
//! time forward instead of sleeping.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<Mutex<DateTime<Utc>>>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A manual clock starting at `start`; it moves only when told to.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self(Some(Arc::new(Mutex::new(start))))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(t) => *t.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// Whether `at` lies less than `window` in the past. A time in the
    /// future (the system clock stepped back since) counts as outside the
    /// window, so a clock correction can shorten a window, never stretch it.
    pub fn within(&self, at: DateTime<Utc>, window: Duration) -> bool {
        let age = self.now() - at;
        age >= Duration::zero() && age < window
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.0 {
            let mut t = t.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *t += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_for_its_length_and_never_for_the_future() {
        let clock = Clock::manual(DateTime::<Utc>::UNIX_EPOCH + Duration::days(1));
        let now = clock.now();
        let window = Duration::seconds(10);
        assert!(clock.within(now, window));
        assert!(clock.within(now - Duration::seconds(9), window));
        assert!(!clock.within(now - Duration::seconds(10), window));
        assert!(!clock.within(now + Duration::seconds(1), window));
        clock.advance(Duration::seconds(10));
        assert!(!clock.within(now, window));
    }
}
