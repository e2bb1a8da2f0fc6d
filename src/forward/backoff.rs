//! Retry timing for deferred messages: each message that the upstream
//! refused for now (a 4xx reply) waits before its next attempt, one minute
//! after the first deferral, doubling to at most an hour, with ±20% jitter
//! so that a queue does not retry in lock-step. (A message that could not
//! be sent because the upstream was unreachable keeps no wait: a pass
//! costs one failed connect for the whole route, and the queue flows on
//! the first pass after the link is back, as with 2.6.1's polling.)
//! Without it every poll tick would retry every deferred message, however
//! often it had failed, which a throttling upstream (Microsoft 365's
//! `432 4.3.2`, `451 4.7.x`) answers with more refusals.
//!
//! The schedule lives in memory only: the spool stays E-MailRelay's
//! format, and a restart retries everything at once. Forced passes (admin
//! `forward` and `flush`) ignore it, and a message sent successfully clears
//! it for all (the upstream is back).
//!
//! Must not: read a clock (`now` is passed in, so tests step it), or grow
//! without bound (entries go when their messages do).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use crate::store::MessageId;

/// The wait after the first deferral.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(60 * 60);

#[derive(Clone, Debug)]
struct Entry {
    attempts: u32,
    next: Instant,
    /// The upstream's last reply, for the queue listing.
    reason: String,
}

/// When each deferred message may be tried again.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<MessageId, Entry>,
    /// Waits the upstream asked for, until the deferral they belong to.
    asked: HashMap<MessageId, Duration>,
}

impl Backoff {
    /// True if `id` may be tried at `now`.
    pub fn is_due(&self, id: &MessageId, now: Instant) -> bool {
        self.entries.get(id).is_none_or(|e| now >= e.next)
    }

    /// Records a deferral at `now`; returns the wait before the next
    /// attempt: the one the upstream asked for if it did ([`Backoff::ask`]),
    /// else one that grows with the deferrals.
    pub fn deferred(&mut self, id: &MessageId, now: Instant, reason: String) -> Duration {
        let attempts = self.entries.get(id).map_or(0, |e| e.attempts) + 1;
        let wait = match self.asked.remove(id) {
            Some(wait) => wait,
            None => jittered(id, attempts, nominal(attempts)),
        };
        self.entries.insert(
            id.clone(),
            Entry {
                attempts,
                next: now + wait,
                reason,
            },
        );
        wait
    }

    /// The upstream asked for exactly `wait` before `id` is tried again
    /// (Graph's Retry-After): its next deferral waits that long, with no
    /// backoff of its own.
    pub fn ask(&mut self, id: &MessageId, wait: Duration) {
        self.asked.insert(id.clone(), wait);
    }

    /// The message is gone (sent or failed): forget it.
    pub fn forget(&mut self, id: &MessageId) {
        self.entries.remove(id);
        self.asked.remove(id);
    }

    /// The upstream took a message: every deferred one may go now.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Drops the entries of messages for which `queued` is false.
    pub fn retain(&mut self, queued: impl Fn(&MessageId) -> bool) {
        self.entries.retain(|id, _| queued(id));
        self.asked.retain(|id, _| queued(id));
    }

    /// The earliest time a waiting message may be tried again.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.next).min()
    }

    /// Deferrals recorded for `id` since it last went or was cleared.
    pub fn attempts(&self, id: &MessageId) -> u32 {
        self.entries.get(id).map_or(0, |e| e.attempts)
    }

    /// The upstream's reply at the last deferral of `id`, if any.
    pub fn reason(&self, id: &MessageId) -> Option<&str> {
        self.entries.get(id).map(|e| e.reason.as_str())
    }
}

/// A route's wait after its `attempts`-th throttling answer: the same
/// schedule as a message's.
pub fn route_wait(route: &str, attempts: u32) -> Duration {
    let mut hasher = DefaultHasher::new();
    (route, attempts).hash(&mut hasher);
    spread(hasher.finish(), nominal(attempts))
}

/// One minute doubling per attempt, at most an hour.
fn nominal(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// `wait` spread by ±20%, the same for the same message and attempt.
fn jittered(id: &MessageId, attempts: u32, wait: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    (id.as_str(), attempts).hash(&mut hasher);
    spread(hasher.finish(), wait)
}

/// `wait` spread by ±20% by `hash`.
fn spread(hash: u64, wait: Duration) -> Duration {
    let spread = (hash % 401) as f64 / 1000.0; // 0.0 ..= 0.4
    wait.mul_f64(0.8 + spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> MessageId {
        MessageId::parse(&format!("emailrelay.1.2.{n}")).unwrap()
    }

    #[test]
    fn waits_double_from_a_minute_to_an_hour_within_the_jitter() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        let mut nominal = 60.0;
        for attempt in 1..=10 {
            let wait = backoff.deferred(&id(1), now, String::new()).as_secs_f64();
            assert!(
                wait >= nominal * 0.8 - 0.001 && wait <= nominal * 1.2 + 0.001,
                "attempt {attempt}: {wait}s, nominal {nominal}s"
            );
            nominal = (nominal * 2.0).min(3600.0);
        }
        assert_eq!(backoff.attempts(&id(1)), 10);
    }

    #[test]
    fn a_deferred_message_is_not_due_until_its_time() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        assert!(backoff.is_due(&id(1), now), "unknown messages are due");
        let wait = backoff.deferred(&id(1), now, String::new());
        assert!(!backoff.is_due(&id(1), now + wait - Duration::from_millis(1)));
        assert!(backoff.is_due(&id(1), now + wait));
        assert!(backoff.is_due(&id(2), now), "others are not held");
    }

    #[test]
    fn forget_clear_and_retain() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        for n in 1..=3 {
            backoff.deferred(&id(n), now, String::new());
        }
        backoff.forget(&id(1));
        assert!(backoff.is_due(&id(1), now));
        assert!(backoff.next_due().is_some_and(|t| t > now));
        backoff.retain(|i| *i == id(2));
        assert!(backoff.is_due(&id(3), now));
        assert!(!backoff.is_due(&id(2), now));
        backoff.clear();
        assert!(backoff.is_due(&id(2), now));
        assert_eq!(backoff.attempts(&id(2)), 0);
    }

    #[test]
    fn the_jitter_spreads_a_queue() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        let waits: std::collections::HashSet<u128> = (0..50)
            .map(|n| backoff.deferred(&id(n), now, String::new()).as_millis())
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}
