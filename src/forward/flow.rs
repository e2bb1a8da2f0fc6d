//! How much work the spool holds, and what follows from it: whether a
//! poll is worth a walk of the spool directory, and how long an accepted
//! message's 250 waits when forwarding falls behind.
//!
//! A poll walks the spool only if something may have changed since the
//! last pass began: the directory's modification time moved (a message
//! arrived, failed or was put back), a deferred message's retry time has
//! come, or the last pass left something for the next poll. So an idle
//! relay holding a large deferred queue costs one `stat` a poll, not a
//! walk of every file.
//!
//! The flow delay is Postfix's `in_flow_delay` idea: while a forwarding
//! pass runs with more than [`FLOW_THRESHOLD`] messages waiting, each
//! accepted message's 250 waits a little, growing with the backlog up to
//! [`MAX_FLOW_DELAY`] at twice the threshold. Senders slow down, nobody is
//! refused, and the spool settles near the threshold instead of growing
//! until the disk fills. An upstream that is down (passes end at once)
//! slows nobody: holding mail while the link is down is the point.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::Forwarder;
use crate::store::MessageId;

/// Waiting messages above which accepting slows down.
pub const FLOW_THRESHOLD: usize = 10_000;
/// The longest an accepted message's 250 waits.
pub const MAX_FLOW_DELAY: Duration = Duration::from_secs(1);
/// A directory time younger than this is not trusted to show every change
/// (file system timestamps are coarse): the next poll looks anyway.
const SETTLED: Duration = Duration::from_secs(2);

/// What the scheduler knows of the spool's work between passes.
#[derive(Debug)]
pub(super) struct Scan {
    /// Something the last pass left is to be tried at the next poll (an
    /// unreachable upstream, a pass cut short).
    rescan: AtomicBool,
    /// The spool directory's modification time when the last pass began
    /// reading it, if that time was settled.
    last_scan: Mutex<Option<SystemTime>>,
    /// Waiting messages the latest pass saw in the spool.
    backlog: AtomicUsize,
}

impl Default for Scan {
    fn default() -> Scan {
        // The first poll looks.
        Scan {
            rescan: AtomicBool::new(true),
            last_scan: Mutex::new(None),
            backlog: AtomicUsize::new(0),
        }
    }
}

impl Scan {
    /// The next poll is to look, whatever the directory's time says.
    pub(super) fn again(&self) {
        self.rescan.store(true, Ordering::Relaxed);
    }
}

impl Forwarder {
    /// The delay before an accepted message's 250; zero unless forwarding
    /// is behind. See the module documentation.
    pub fn flow_delay(&self) -> Duration {
        let backlog = self.scan.backlog.load(Ordering::Relaxed);
        let passing = self.pass_lock.try_lock().is_err();
        flow_delay(backlog, passing && self.enabled())
    }

    /// Waiting messages the latest pass saw.
    pub fn backlog(&self) -> usize {
        self.scan.backlog.load(Ordering::Relaxed)
    }

    /// True if a poll may find something to do (module documentation).
    pub(super) fn poll_due(&self) -> bool {
        if self.scan.rescan.load(Ordering::Relaxed) {
            return true;
        }
        let last = self.scan.last_scan.lock().ok().and_then(|l| *l);
        if last.is_none() || last != self.spool.modified() {
            return true;
        }
        let now = tokio::time::Instant::now().into_std();
        self.backoff
            .lock()
            .map_or(true, |b| b.next_due().is_some_and(|t| t <= now))
    }

    /// Records the directory's time as a pass begins to read it: the
    /// pass takes up what an earlier one left for it.
    pub(super) fn note_scan(&self) {
        self.scan.rescan.store(false, Ordering::Relaxed);
        let modified = self.spool.modified();
        let settled = modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age >= SETTLED);
        if let Ok(mut last) = self.scan.last_scan.lock() {
            *last = modified.filter(|_| settled);
        }
    }

    /// Counts the waiting messages as a pass begins (one more read of
    /// the directory's names, small beside the pass itself).
    pub(super) fn count_backlog(&self) {
        let count = self.spool.walk_ready().map_or(0, |walk| walk.count());
        self.scan.backlog.store(count, Ordering::Relaxed);
    }

    /// One message of the backlog was taken up.
    pub(super) fn took_one(&self) {
        let _ = self
            .scan
            .backlog
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// True if `id` may be tried now (its retry time has come).
    pub(super) fn is_due(&self, id: &MessageId) -> bool {
        let now = tokio::time::Instant::now().into_std();
        self.backoff.lock().map_or(true, |b| b.is_due(id, now))
    }
}

/// The delay for `backlog` waiting messages while a pass runs (or not).
fn flow_delay(backlog: usize, passing: bool) -> Duration {
    if !passing || backlog <= FLOW_THRESHOLD {
        return Duration::ZERO;
    }
    let over = (backlog - FLOW_THRESHOLD).min(FLOW_THRESHOLD);
    MAX_FLOW_DELAY.mul_f64(over as f64 / FLOW_THRESHOLD as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_with_the_backlog_while_a_pass_runs() {
        assert_eq!(flow_delay(FLOW_THRESHOLD, true), Duration::ZERO);
        assert_eq!(flow_delay(50_000, false), Duration::ZERO);
        assert_eq!(
            flow_delay(FLOW_THRESHOLD + FLOW_THRESHOLD / 4, true),
            MAX_FLOW_DELAY / 4
        );
        assert_eq!(flow_delay(FLOW_THRESHOLD * 2, true), MAX_FLOW_DELAY);
        assert_eq!(flow_delay(FLOW_THRESHOLD * 50, true), MAX_FLOW_DELAY);
    }
}
