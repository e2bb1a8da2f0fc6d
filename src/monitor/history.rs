//! Recent activity for the status page's charts: messages received,
//! forwarded, deferred and failed per minute over the last hour and per
//! quarter hour over the last day, and per route the messages sent per
//! minute over the last hour. Fed with the running totals of `Stats`
//! now and then (the HTTP endpoint samples every few seconds); each
//! sample's increase goes to the bucket of the time it was seen.
//!
//! Must stay small and bounded: fixed rings (60 + 96 buckets, and 60 per
//! route for at most [`MAX_ROUTES`] routes), no clock of its own (the
//! caller passes Unix seconds, so tests choose the time).

use std::collections::BTreeMap;
use std::ops::AddAssign;

/// Minute buckets kept: one hour.
pub const HOUR_BUCKETS: usize = 60;

/// Seconds per bucket of the day's chart.
pub const DAY_BUCKET_SECONDS: u64 = 15 * 60;

/// Quarter-hour buckets kept: one day.
pub const DAY_BUCKETS: usize = 96;

/// Routes followed per minute; more are counted in the totals only.
pub const MAX_ROUTES: usize = 32;

/// Messages by outcome, over some time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub received: u64,
    pub forwarded: u64,
    pub deferred: u64,
    pub failed: u64,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.received += other.received;
        self.forwarded += other.forwarded;
        self.deferred += other.deferred;
        self.failed += other.failed;
    }
}

impl Counts {
    /// The increase from `earlier` (a counter that went down, which a
    /// counter never does, counts as no increase).
    fn since(self, earlier: Counts) -> Counts {
        Counts {
            received: self.received.saturating_sub(earlier.received),
            forwarded: self.forwarded.saturating_sub(earlier.forwarded),
            deferred: self.deferred.saturating_sub(earlier.deferred),
            failed: self.failed.saturating_sub(earlier.failed),
        }
    }
}

/// The rings; see the module documentation.
#[derive(Debug)]
pub struct History {
    hour: Ring<Counts>,
    day: Ring<Counts>,
    routes: BTreeMap<String, Ring<u64>>,
    /// The totals of the last sample, and each route's forwarded total.
    last: Option<(Counts, BTreeMap<String, u64>)>,
}

impl Default for History {
    fn default() -> History {
        History {
            hour: Ring::new(HOUR_BUCKETS, 60),
            day: Ring::new(DAY_BUCKETS, DAY_BUCKET_SECONDS),
            routes: BTreeMap::new(),
            last: None,
        }
    }
}

impl History {
    /// Takes a sample at `now` (Unix seconds): the running `totals` and
    /// each route's running count of forwarded messages. The first
    /// sample only sets the baseline.
    pub fn observe(&mut self, now: u64, totals: Counts, routes: &[(String, u64)]) {
        let routes: BTreeMap<String, u64> = routes.iter().cloned().collect();
        if let Some((last, last_routes)) = &self.last {
            let increase = totals.since(*last);
            self.hour.add(now, increase);
            self.day.add(now, increase);
            for (route, count) in &routes {
                let sent = count.saturating_sub(last_routes.get(route).copied().unwrap_or(0));
                if sent == 0 && !self.routes.contains_key(route) {
                    continue;
                }
                if !self.routes.contains_key(route) && self.routes.len() >= MAX_ROUTES {
                    continue;
                }
                self.routes
                    .entry(route.clone())
                    .or_insert_with(|| Ring::new(HOUR_BUCKETS, 60))
                    .add(now, sent);
            }
        }
        self.last = Some((totals, routes));
    }

    /// The last hour, a minute a bucket, oldest first, the current
    /// (unfinished) minute last.
    pub fn hour(&self, now: u64) -> Vec<Counts> {
        self.hour.series(now)
    }

    /// The last day, a quarter hour a bucket, oldest first.
    pub fn day(&self, now: u64) -> Vec<Counts> {
        self.day.series(now)
    }

    /// Messages `route` was sent in the last hour (the current minute and
    /// the 59 before it).
    pub fn sent_last_hour(&self, route: &str, now: u64) -> u64 {
        self.routes
            .get(route)
            .map_or(0, |ring| ring.series(now).iter().sum())
    }
}

/// A fixed ring of buckets, each `width` seconds, keyed by the bucket's
/// number since the epoch so that a stale slot reads as empty.
#[derive(Debug)]
struct Ring<T> {
    width: u64,
    slots: Vec<(u64, T)>,
}

impl<T: Copy + Default + AddAssign> Ring<T> {
    fn new(len: usize, width: u64) -> Ring<T> {
        Ring {
            width,
            slots: vec![(u64::MAX, T::default()); len],
        }
    }

    fn add(&mut self, now: u64, value: T) {
        let bucket = now / self.width;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(bucket % len) as usize];
        if slot.0 != bucket {
            *slot = (bucket, T::default());
        }
        slot.1 += value;
    }

    fn series(&self, now: u64) -> Vec<T> {
        let current = now / self.width;
        let len = self.slots.len() as u64;
        let first = (current + 1).saturating_sub(len);
        (first..=current)
            .map(|bucket| {
                let slot = &self.slots[(bucket % len) as usize];
                if slot.0 == bucket {
                    slot.1
                } else {
                    T::default()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000; // a whole hour: 1_800_000_000 % 3600 == 0

    fn received(n: u64) -> Counts {
        Counts {
            received: n,
            ..Counts::default()
        }
    }

    #[test]
    fn the_first_sample_is_a_baseline_and_increases_land_in_their_minute() {
        let mut h = History::default();
        h.observe(T0, received(100), &[]);
        assert!(h.hour(T0).iter().all(|c| *c == Counts::default()));
        h.observe(T0 + 5, received(103), &[]);
        h.observe(T0 + 65, received(110), &[]);
        let hour = h.hour(T0 + 65);
        assert_eq!(hour.len(), HOUR_BUCKETS);
        assert_eq!(hour[HOUR_BUCKETS - 1], received(7));
        assert_eq!(hour[HOUR_BUCKETS - 2], received(3));
        assert_eq!(
            hour[..HOUR_BUCKETS - 2]
                .iter()
                .map(|c| c.received)
                .sum::<u64>(),
            0
        );
        let day = h.day(T0 + 65);
        assert_eq!(day.len(), DAY_BUCKETS);
        assert_eq!(day[DAY_BUCKETS - 1], received(10));
    }

    #[test]
    fn old_buckets_fall_off_after_an_hour_and_a_day() {
        let mut h = History::default();
        h.observe(T0, Counts::default(), &[]);
        h.observe(
            T0 + 1,
            Counts {
                received: 1,
                forwarded: 2,
                deferred: 3,
                failed: 4,
            },
            &[],
        );
        assert_eq!(h.hour(T0 + 59 * 60)[0].failed, 4);
        // An hour later the minute has left the hour's chart, and a slot
        // reused by a later minute does not show the old count.
        assert!(h.hour(T0 + 3600).iter().all(|c| *c == Counts::default()));
        assert_eq!(h.day(T0 + 3600)[DAY_BUCKETS - 5].forwarded, 2);
        assert_eq!(h.day(T0 + 24 * 3600 - 1)[0].deferred, 3);
        assert!(h
            .day(T0 + 24 * 3600)
            .iter()
            .all(|c| *c == Counts::default()));
        h.observe(T0 + 3600 + 30, received(6), &[]);
        let hour = h.hour(T0 + 3600 + 30);
        assert_eq!(hour[HOUR_BUCKETS - 1], received(5));
        assert_eq!(hour.iter().map(|c| c.failed).sum::<u64>(), 0);
    }

    #[test]
    fn a_quiet_spell_reads_as_zeros_not_as_the_old_counts() {
        let mut h = History::default();
        h.observe(T0, Counts::default(), &[]);
        h.observe(T0 + 10, received(1), &[]);
        // Two hours and ten seconds later the same slot's minute comes round.
        let later = T0 + 2 * 3600 + 10;
        assert_eq!(h.hour(later)[HOUR_BUCKETS - 1], Counts::default());
        h.observe(later, received(4), &[]);
        assert_eq!(h.hour(later)[HOUR_BUCKETS - 1], received(3));
    }

    #[test]
    fn routes_count_sent_messages_for_an_hour_and_are_bounded() {
        let mut h = History::default();
        let routes = |n: u64| -> Vec<(String, u64)> {
            (0..40).map(|i| (format!("r{i:02}:25"), n)).collect()
        };
        h.observe(T0, Counts::default(), &[("a:25".into(), 5)]);
        h.observe(T0 + 30, Counts::default(), &[("a:25".into(), 8)]);
        h.observe(T0 + 1800, Counts::default(), &[("a:25".into(), 9)]);
        assert_eq!(h.sent_last_hour("a:25", T0 + 1800), 4);
        assert_eq!(h.sent_last_hour("a:25", T0 + 3600), 1);
        assert_eq!(h.sent_last_hour("a:25", T0 + 3600 + 1800), 0);
        assert_eq!(h.sent_last_hour("b:25", T0), 0);
        h.observe(T0 + 1900, Counts::default(), &routes(0));
        h.observe(T0 + 1901, Counts::default(), &routes(1));
        assert_eq!(h.routes.len(), MAX_ROUTES);
        assert_eq!(h.sent_last_hour("r00:25", T0 + 1901), 1);
        assert_eq!(h.sent_last_hour("r39:25", T0 + 1901), 0);
    }

    #[test]
    fn a_counter_that_goes_back_counts_as_no_increase() {
        let mut h = History::default();
        h.observe(T0, received(10), &[]);
        h.observe(T0 + 1, received(4), &[]);
        assert_eq!(h.hour(T0 + 1)[HOUR_BUCKETS - 1], Counts::default());
        h.observe(T0 + 2, received(6), &[]);
        assert_eq!(h.hour(T0 + 2)[HOUR_BUCKETS - 1], received(2));
    }
}
