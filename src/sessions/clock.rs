//! The time every session decision is made at: the system clock in production, a clock that
//! a test moves by hand so idle, grace and absolute-expiry rules are tested without sleeping.
//!
//! Milliseconds underneath: the refresh grace window is compared in milliseconds (a 1 s grace
//! ends 1 s after the rotation, not up to 2 s later as whole seconds would have it); token
//! claims, idle and absolute timeouts stay in seconds ([`Clock::now`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix time, from the system or from a test.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds since the epoch, when a test drives the clock.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands at `start` (Unix seconds) until [`Clock::advance`] or
    /// [`Clock::advance_ms`] moves it.
    pub fn manual(start: u64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(start.saturating_mul(1000)))),
        }
    }

    /// Seconds since the Unix epoch (whole seconds of [`Clock::now_ms`]).
    pub fn now(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(t) => t.load(Ordering::Relaxed),
            None => crate::util::now_unix_ms(),
        }
    }

    /// How long until the Unix second `at` begins (zero once it has), to the millisecond.
    pub fn until(&self, at: u64) -> std::time::Duration {
        std::time::Duration::from_millis(at.saturating_mul(1000).saturating_sub(self.now_ms()))
    }

    /// Move a manual clock forward by whole seconds (the system clock cannot be moved:
    /// nothing happens).
    pub fn advance(&self, secs: u64) {
        self.advance_ms(secs.saturating_mul(1000));
    }

    /// Move a manual clock forward by milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        if let Some(t) = &self.manual {
            t.fetch_add(ms, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = Clock::manual(1_000);
        assert_eq!(c.now(), 1_000);
        assert_eq!(c.now_ms(), 1_000_000);
        c.clone().advance(61);
        assert_eq!(c.now(), 1_061);
        c.advance_ms(999);
        assert_eq!((c.now(), c.now_ms()), (1_061, 1_061_999));
        c.advance_ms(1);
        assert_eq!(c.now(), 1_062);
        assert!(Clock::system().now() > 1_700_000_000);
        let ms = Clock::system().now_ms();
        assert!(ms > 1_700_000_000_000 && ms / 1000 <= Clock::system().now());
    }

    #[test]
    fn until_counts_down_to_the_start_of_a_second() {
        let c = Clock::manual(1_000);
        assert_eq!(c.until(1_030), std::time::Duration::from_secs(30));
        assert_eq!(c.until(1_000), std::time::Duration::ZERO);
        assert_eq!(c.until(900), std::time::Duration::ZERO);
        let sys = Clock::system();
        let now = sys.now();
        let left = sys.until(now + 2);
        assert!(
            left > std::time::Duration::from_secs(1) && left <= std::time::Duration::from_secs(2)
        );
        assert_eq!(sys.until(now - 1), std::time::Duration::ZERO);
    }
}
