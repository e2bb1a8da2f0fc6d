//! The deadline of a message's content (DATA, or BDAT from the first chunk
//! to the last): a grace period plus the time the octets received so far
//! would take at a minimum rate, and never more than an hour, as Postfix's
//! `smtpd_min_data_rate` with `smtpd_per_request_deadline` does. A client
//! sending a byte every two seconds has the grace and a few milliseconds
//! more, not the hour; one sending faster than the rate never meets it.
//!
//! Must not: read a clock of its own. Every instant is the caller's, so the
//! tests drive it with tokio's paused clock.

use std::time::Duration;

use tokio::time::Instant;

/// The longest a message's content may take, however fast it comes.
pub const CONTENT_LIMIT: Duration = Duration::from_secs(3600);

/// `--min-data-rate` by default, in octets a second: Postfix's
/// `smtpd_min_data_rate` (4 kbit/s, far below any link a mail client has).
pub const DEFAULT_MIN_DATA_RATE: u64 = 500;

/// Why the content's deadline came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The octets came slower than the minimum rate.
    TooSlow,
    /// The hour ran out.
    Limit,
}

/// One message's content deadline; see the module documentation.
#[derive(Clone, Debug)]
pub struct ContentDeadline {
    start: Instant,
    grace: Duration,
    /// Octets a second; 0 for no minimum.
    rate: u64,
    received: u64,
}

impl ContentDeadline {
    /// Starts counting at `start`; `grace` is the client's allowance before
    /// the rate counts (the idle timeout); `rate` 0 leaves only the hour.
    pub fn new(start: Instant, grace: Duration, rate: u64) -> ContentDeadline {
        ContentDeadline {
            start,
            grace,
            rate,
            received: 0,
        }
    }

    /// Counts octets read from the client.
    pub fn received(&mut self, octets: usize) {
        self.received = self.received.saturating_add(octets as u64);
    }

    /// When the content must be complete, given what has come so far.
    pub fn deadline(&self) -> Instant {
        self.start + self.allowed()
    }

    /// Why the deadline is what it is (for the log line when it passes).
    pub fn expiry(&self) -> Expiry {
        match self.allowed() < CONTENT_LIMIT {
            true => Expiry::TooSlow,
            false => Expiry::Limit,
        }
    }

    fn allowed(&self) -> Duration {
        if self.rate == 0 {
            return CONTENT_LIMIT;
        }
        // Milliseconds, so that a fast client's credit grows smoothly.
        let earned = Duration::from_millis(self.received.saturating_mul(1000) / self.rate);
        self.grace.saturating_add(earned).min(CONTENT_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that sends one octet every `every` until the deadline
    /// passes; how long it kept the session.
    async fn trickle(deadline: &mut ContentDeadline, every: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let next = Instant::now() + every;
            if next >= deadline.deadline() {
                tokio::time::sleep_until(deadline.deadline()).await;
                return start.elapsed();
            }
            tokio::time::sleep_until(next).await;
            deadline.received(1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_every_two_seconds_is_cut_off_after_the_grace_not_the_hour() {
        let mut deadline = ContentDeadline::new(Instant::now(), Duration::from_secs(60), 500);
        let held = trickle(&mut deadline, Duration::from_secs(2)).await;
        // 30 octets in the 60 s grace earn 60 ms more.
        assert_eq!(held, Duration::from_millis(60_060));
        assert_eq!(deadline.expiry(), Expiry::TooSlow);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_minimum_the_trickle_has_the_hour() {
        let mut deadline = ContentDeadline::new(Instant::now(), Duration::from_secs(60), 0);
        let held = trickle(&mut deadline, Duration::from_secs(2)).await;
        assert_eq!(held, CONTENT_LIMIT);
        assert_eq!(deadline.expiry(), Expiry::Limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_faster_than_the_rate_is_never_cut_off_before_the_hour() {
        let start = Instant::now();
        let mut deadline = ContentDeadline::new(start, Duration::from_secs(60), 500);
        // 1000 octets a second for ten minutes: the deadline keeps ahead.
        for _ in 0..600 {
            tokio::time::advance(Duration::from_secs(1)).await;
            deadline.received(1000);
            assert!(deadline.deadline() > Instant::now() + Duration::from_secs(60));
        }
        // 500 MB at that pace would outlast the hour: the hour wins.
        deadline.received(500_000_000);
        assert_eq!(deadline.deadline(), start + CONTENT_LIMIT);
        assert_eq!(deadline.expiry(), Expiry::Limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_silence_is_judged_by_the_total() {
        let start = Instant::now();
        let mut deadline = ContentDeadline::new(start, Duration::from_secs(10), 500);
        deadline.received(5000);
        assert_eq!(deadline.deadline(), start + Duration::from_secs(20));
    }
}
