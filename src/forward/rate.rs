//! `--client-rate` (or an OAuth account's `rate`): at most so many
//! messages a minute to one upstream with one client account (Exchange Online takes 30 a minute per
//! mailbox and answers more with `432 4.3.2` or `451 4.7.x`; waiting is
//! cheaper than being refused).
//!
//! A sliding window of one minute per (upstream, account): a message may
//! go if fewer than the limit went in the last 60 seconds; otherwise the
//! answer is how long to wait. Must not read a clock (`now` is passed in)
//! or keep more than the limit's worth of times per key.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the limit counts in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Messages sent per key in the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct RateLimit {
    sent: Mutex<HashMap<(String, String), VecDeque<Instant>>>,
}

impl RateLimit {
    /// `Ok` (and the send is counted) if a message to `key` may go at
    /// `now` under a limit of `per_minute` (at least one); else how long
    /// until one may.
    pub fn admit(
        &self,
        key: &(String, String),
        per_minute: usize,
        now: Instant,
    ) -> Result<(), Duration> {
        self.admit_within(key, per_minute, WINDOW, now)
    }

    /// As [`RateLimit::admit`], for `count` in any `window` (Graph's
    /// 10,000 requests in 10 minutes).
    pub fn admit_within(
        &self,
        key: &(String, String),
        count: usize,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        let per_window = count.max(1);
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let times = sent.entry(key.clone()).or_default();
        while times
            .front()
            .is_some_and(|&t| now.duration_since(t) >= window)
        {
            times.pop_front();
        }
        // A limit lowered since: the oldest beyond it no longer count.
        while times.len() > per_window {
            times.pop_front();
        }
        if times.len() < per_window {
            times.push_back(now);
            return Ok(());
        }
        let oldest = *times.front().unwrap_or(&now);
        Err((oldest + window)
            .saturating_duration_since(now)
            .max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 3;

    fn key(account: &str) -> (String, String) {
        ("smtp.example.com:587".into(), account.into())
    }

    #[test]
    fn the_limit_holds_within_a_minute_and_frees_as_it_slides() {
        let limit = RateLimit::default();
        let t0 = Instant::now();
        for s in 0..3 {
            assert_eq!(
                limit.admit(&key("a"), LIMIT, t0 + Duration::from_secs(s)),
                Ok(())
            );
        }
        // The fourth waits until the first is a minute old.
        let now = t0 + Duration::from_secs(10);
        assert_eq!(
            limit.admit(&key("a"), LIMIT, now),
            Err(Duration::from_secs(50))
        );
        assert_eq!(
            limit.admit(&key("b"), LIMIT, now),
            Ok(()),
            "another account is not held"
        );
        assert_eq!(limit.admit(&key("a"), LIMIT, t0 + WINDOW), Ok(()));
        assert_eq!(
            limit.admit(&key("a"), LIMIT, t0 + WINDOW),
            Err(Duration::from_secs(1)),
            "the second is still in the window"
        );
    }

    #[test]
    fn memory_is_bounded_by_the_limit() {
        let limit = RateLimit::default();
        let t0 = Instant::now();
        for s in 0..1000 {
            let _ = limit.admit(&key("a"), 2, t0 + Duration::from_millis(s));
        }
        assert_eq!(limit.sent.lock().unwrap()[&key("a")].len(), 2);
    }
}
