//! Graph's 150 MB of uploads per 5 minutes per app and mailbox, kept as a
//! rate beside the 10,000 requests per 10 minutes: the octets of every
//! request body that carries message data (a `sendMail` body, a draft's
//! MIME, an attachment `POST`, an upload session's `PUT`) are counted in
//! a sliding window; a request that would go over waits until enough of
//! the window has slid by, as a throttled route does, and the message
//! is not failed for it.
//!
//! Must not: read a clock (`now` is passed in); refuse a request for
//! good (one larger than the whole budget goes once the window is empty).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Octets of message data per [`UPLOAD_WINDOW`] per mailbox (Graph's limit).
pub const MAX_UPLOAD: u64 = 150 * 1024 * 1024;
/// The window of [`MAX_UPLOAD`].
pub const UPLOAD_WINDOW: Duration = Duration::from_secs(300);

/// The octets a mailbox sent in the window, with when.
#[derive(Debug, Default)]
pub struct UploadBudget {
    sent: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<(Instant, u64)>,
    total: u64,
}

impl UploadBudget {
    /// `Ok` (and `octets` are counted) if a request body of `octets` may
    /// go at `now` under `limit` octets per `window`; else how long until
    /// enough of the window has passed for it to go.
    pub fn admit(
        &self,
        octets: u64,
        limit: u64,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut w = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&(t, n)) = w.entries.front() {
            if now.saturating_duration_since(t) < window {
                break;
            }
            w.entries.pop_front();
            w.total -= n;
        }
        if w.entries.is_empty() || w.total + octets <= limit {
            w.entries.push_back((now, octets));
            w.total += octets;
            return Ok(());
        }
        // The first entry whose leaving makes room: wait until it has.
        let mut left = w.total;
        for &(t, n) in &w.entries {
            left -= n;
            if left + octets <= limit {
                return Err((t + window)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)));
            }
        }
        // Only an empty window makes room (`octets` over the limit).
        let last = w.entries.back().map_or(now, |&(t, _)| t);
        Err((last + window)
            .saturating_duration_since(now)
            .max(Duration::from_millis(1)))
    }

    /// Waits (on tokio's clock) until `octets` may go, then counts them;
    /// `waited` is called with the wait before each sleep.
    pub async fn take(&self, octets: u64, mut waited: impl FnMut(Duration)) {
        while let Err(wait) = self.admit(
            octets,
            MAX_UPLOAD,
            UPLOAD_WINDOW,
            tokio::time::Instant::now().into_std(),
        ) {
            waited(wait);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    #[test]
    fn the_budget_holds_within_the_window_and_frees_as_it_slides() {
        let budget = UploadBudget::default();
        let t0 = Instant::now();
        // 37 requests of 4 MB is 148 MB: all go in the first minute.
        for s in 0..37 {
            assert_eq!(
                budget.admit(
                    4 * MB,
                    MAX_UPLOAD,
                    UPLOAD_WINDOW,
                    t0 + Duration::from_secs(s)
                ),
                Ok(())
            );
        }
        // 2 MB more fits exactly; one octet more does not.
        let now = t0 + Duration::from_secs(60);
        assert_eq!(budget.admit(2 * MB, MAX_UPLOAD, UPLOAD_WINDOW, now), Ok(()));
        // The next 4 MB must wait until the first 4 MB (at t0) has left.
        assert_eq!(
            budget.admit(4 * MB, MAX_UPLOAD, UPLOAD_WINDOW, now),
            Err(Duration::from_secs(240))
        );
        // 9 MB needs the first three to leave (the third went at t0+2s).
        assert_eq!(
            budget.admit(9 * MB, MAX_UPLOAD, UPLOAD_WINDOW, now),
            Err(Duration::from_secs(242))
        );
        assert_eq!(
            budget.admit(4 * MB, MAX_UPLOAD, UPLOAD_WINDOW, t0 + UPLOAD_WINDOW),
            Ok(())
        );
        // The first left the window: 36 of 4 MB, the 2 MB, the new 4 MB.
        assert_eq!(budget.sent.lock().unwrap().total, MAX_UPLOAD);
        assert_eq!(budget.sent.lock().unwrap().entries.len(), 38);
    }

    #[test]
    fn a_request_over_the_whole_budget_goes_once_the_window_is_empty() {
        let budget = UploadBudget::default();
        let t0 = Instant::now();
        assert_eq!(budget.admit(10, 100, UPLOAD_WINDOW, t0), Ok(()));
        assert_eq!(
            budget.admit(200, 100, UPLOAD_WINDOW, t0 + Duration::from_secs(100)),
            Err(Duration::from_secs(200))
        );
        assert_eq!(
            budget.admit(200, 100, UPLOAD_WINDOW, t0 + UPLOAD_WINDOW),
            Ok(())
        );
    }

    /// On tokio's paused clock: 160 MB of 4 MB requests take one wait of
    /// the window's length, and nothing is refused.
    #[tokio::test(start_paused = true)]
    async fn take_waits_on_the_clock_rather_than_failing() {
        let budget = UploadBudget::default();
        let start = tokio::time::Instant::now();
        let mut waits = Vec::new();
        for _ in 0..40 {
            budget.take(4 * MB, |w| waits.push(w)).await;
        }
        // 37 go at once (148 MB); the 38th waits the whole window for the
        // first ones to leave, and then the rest go at once too.
        assert_eq!(waits, vec![UPLOAD_WINDOW]);
        assert_eq!(start.elapsed(), UPLOAD_WINDOW);
    }
}
