//! Failed authentication counted per client address across connections.
//!
//! A session already ends after [`super::MAX_FAILURES`] failures, but a
//! guesser simply reconnects (a probe made 60 attempts from one address and
//! then logged in). Here each address may fail [`MAX_FAILURES_PER_ADDRESS`]
//! times within [`WINDOW`]; after that every attempt from it is refused,
//! right password or not, until [`WINDOW`] has passed since its last
//! failure. A success clears the address's count.
//!
//! Must not grow without bound: at most [`MAX_ADDRESSES`] addresses are
//! tracked; the one whose last failure is oldest makes room. The clock is
//! passed in, so that tests step it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed from one address within [`WINDOW`].
pub const MAX_FAILURES_PER_ADDRESS: u32 = 10;
/// How long failures are remembered, and how long a lock-out lasts after
/// the last one.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most.
pub const MAX_ADDRESSES: usize = 10_000;

/// What the limiter says about an attempt from an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Check the credentials.
    Check,
    /// Refuse without checking: too many recent failures.
    LockedOut,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
}

/// Per-address failure counts, shared by every session of an instance.
#[derive(Debug, Default)]
pub struct Lockout {
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Lockout {
    /// Whether an attempt from `ip` at `now` may be checked.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Admission {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        match records.get(&ip) {
            Some(r) if r.failures >= MAX_FAILURES_PER_ADDRESS && now < r.last + WINDOW => {
                Admission::LockedOut
            }
            _ => Admission::Check,
        }
    }

    /// Records a failure from `ip`; true if this one locks the address out.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if !records.contains_key(&ip) && records.len() >= MAX_ADDRESSES {
            make_room(&mut records, now);
        }
        let record = records.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
        });
        if now >= record.last + WINDOW {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = now;
        record.failures == MAX_FAILURES_PER_ADDRESS
    }

    /// A success from `ip` forgets its failures.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.remove(&ip);
    }
}

/// Drops expired records, or else the one with the oldest failure.
fn make_room(records: &mut HashMap<IpAddr, Record>, now: Instant) {
    records.retain(|_, r| now < r.last + WINDOW);
    if records.len() >= MAX_ADDRESSES {
        if let Some(oldest) = records
            .iter()
            .min_by_key(|(_, r)| r.last)
            .map(|(ip, _)| *ip)
        {
            records.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn an_address_is_locked_out_after_its_tenth_failure_until_the_window_passes() {
        let lockout = Lockout::default();
        let t0 = Instant::now();
        for n in 1..MAX_FAILURES_PER_ADDRESS {
            assert_eq!(lockout.admit(ip(1), t0), Admission::Check);
            assert!(!lockout.failed(ip(1), t0 + Duration::from_secs(u64::from(n))));
        }
        let last = t0 + Duration::from_secs(60);
        assert!(lockout.failed(ip(1), last), "the tenth failure locks");
        assert_eq!(lockout.admit(ip(1), last), Admission::LockedOut);
        assert_eq!(
            lockout.admit(ip(2), last),
            Admission::Check,
            "others are not affected"
        );
        assert_eq!(
            lockout.admit(ip(1), last + WINDOW - Duration::from_secs(1)),
            Admission::LockedOut
        );
        assert_eq!(lockout.admit(ip(1), last + WINDOW), Admission::Check);
        // After the window a failure starts a new count.
        assert!(!lockout.failed(ip(1), last + WINDOW));
        assert_eq!(lockout.admit(ip(1), last + WINDOW), Admission::Check);
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let lockout = Lockout::default();
        let now = Instant::now();
        for _ in 1..MAX_FAILURES_PER_ADDRESS {
            lockout.failed(ip(1), now);
        }
        lockout.succeeded(ip(1));
        assert!(!lockout.failed(ip(1), now));
        assert_eq!(lockout.admit(ip(1), now), Admission::Check);
    }

    #[test]
    fn the_table_is_bounded() {
        let lockout = Lockout::default();
        let now = Instant::now();
        for n in 0..MAX_ADDRESSES as u32 + 5 {
            let ip = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            lockout.failed(ip, now + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(lockout.records.lock().unwrap().len(), MAX_ADDRESSES);
    }
}
