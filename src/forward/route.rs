//! Routes (upstream addresses): paused after a refused authentication,
//! slowed down after a throttling answer, skipped when unreachable for
//! the rest of a pass.
//!
//! Throttling answers are those providers give when a client sends too
//! much too fast: `421` (RFC 5321 4.2.3: service not available, closing),
//! Microsoft 365's `432 4.3.2` (too many concurrent connections), and
//! `450`/`451` with a `4.7.x` enhanced code (RFC 3463: security or policy
//! status, as Gmail's `4.7.28` rate limits and Microsoft's `4.7.500`
//! send them). After one, the whole route waits (one minute, doubling
//! to an hour, as a message's backoff) instead of each of its messages
//! trying on its own; the first message it takes again ends the wait.

use super::backoff::route_wait;
use super::*;

impl Forwarder {
    /// The upstream refused our authentication: the route is paused, not
    /// the mail failed. Its messages stay queued (the rest of this pass
    /// skips them, later passes retry with backoff) and one error says so
    /// per outage, with the upstream's words. Not in 2.6.1, which fails
    /// every message to `.bad` until the password is fixed.
    pub(super) fn pause(&self, target: &str, reply: Reply) -> Verdict {
        self.note_error(&format!("authentication refused by {target}: {reply}"));
        self.stats.route(target, |c| c.auth_failures += 1);
        let newly = self
            .paused
            .lock()
            .is_ok_and(|mut p| p.insert(target.to_string()));
        if newly {
            error!(
                "forwarding to {target} paused: the server refused our authentication: {reply}: mail stays queued"
            );
        }
        Verdict::Deferred(Some(reply))
    }

    /// The token endpoint would not renew the route's token: paused like
    /// a refused password, but the account has said why already.
    pub(super) fn pause_quietly(&self, target: &str) {
        if let Ok(mut paused) = self.paused.lock() {
            paused.insert(target.to_string());
        }
        self.stats.route(target, |c| c.auth_failures += 1);
    }

    /// The upstream sent a throttling answer: the route waits.
    pub(super) fn throttle(&self, target: &str, reply: &Reply) {
        let now = tokio::time::Instant::now().into_std();
        let Ok(mut waits) = self.throttled.lock() else {
            return;
        };
        let attempts = waits.get(target).map_or(0, |w| w.0) + 1;
        let wait = route_wait(target, attempts);
        waits.insert(target.to_string(), (attempts, now + wait));
        warning!(
            "forwarding to {target} slowed down: the server is throttling: {reply}: next attempt in {}s",
            wait.as_secs()
        );
    }

    /// How much longer `target` waits after a throttling answer, unless
    /// the pass was forced (admin `forward`/`flush`).
    pub(super) fn throttled(&self, target: &str) -> Option<Duration> {
        if self.forcing.load(Ordering::Relaxed) {
            return None;
        }
        let now = tokio::time::Instant::now().into_std();
        let waits = self.throttled.lock().ok()?;
        let until = waits.get(target)?.1;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Routes waiting after a throttling answer now.
    pub fn throttled_routes(&self) -> Vec<String> {
        let now = tokio::time::Instant::now().into_std();
        let mut routes: Vec<String> = self.throttled.lock().map_or(Vec::new(), |waits| {
            waits
                .iter()
                .filter(|(_, (_, until))| *until > now)
                .map(|(route, _)| route.clone())
                .collect()
        });
        routes.sort();
        routes
    }

    /// A message went to `target`: a pause on it is over.
    pub(super) fn resume(&self, target: &str) {
        if self
            .throttled
            .lock()
            .is_ok_and(|mut w| w.remove(target).is_some())
        {
            info!("forwarding to {target} taking mail again");
        }
        if self.paused.lock().is_ok_and(|mut p| p.remove(target)) {
            info!("forwarding to {target} resumed: authentication accepted");
        }
    }

    /// True if `target` is the `--forward-to` address.
    pub(super) fn is_default(&self, target: &str) -> bool {
        self.settings.forward_to.as_deref() == Some(target)
    }

    pub(super) fn skip_unconnectable(&self, id: &MessageId, target: &str) -> Verdict {
        // E-MailRelay compatibility: 2.6.1 says this for a routed address
        // only; at the forward-to address's failure it ends the pass. We
        // go on for the routed messages, quietly past the rest (a large
        // queue behind a dead link is not worth a line per message).
        if self.is_default(target) {
            crate::debug!(
                "forwarding [{id}]: skipping message with unconnectable address [{target}]"
            );
        } else {
            info!("forwarding [{id}]: skipping message with unconnectable address [{target}]");
        }
        Verdict::Deferred(None)
    }
}

/// True for an answer that asks us to send less, less often (module
/// documentation).
pub(super) fn is_throttling(reply: &Reply) -> bool {
    let policy = reply.text().starts_with("4.7.");
    matches!(reply.code, 421 | 432) || (matches!(reply.code, 450 | 451) && policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_answers_are_recognised() {
        let r = |code, text: &str| Reply::new(code, text);
        assert!(is_throttling(&r(421, "4.3.2 Service not available")));
        assert!(is_throttling(&r(
            432,
            "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
        )));
        assert!(is_throttling(&r(
            451,
            "4.7.500 Server busy. Please try again later"
        )));
        assert!(is_throttling(&r(
            450,
            "4.7.28 Unusual rate of unsolicited mail"
        )));
        assert!(!is_throttling(&r(451, "4.3.0 local error")));
        assert!(!is_throttling(&r(450, "mailbox busy")));
        assert!(!is_throttling(&r(452, "4.7.1 whatever")));
        assert!(!is_throttling(&r(550, "5.7.1 rejected")));
    }
}
