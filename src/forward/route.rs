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
//!
//! A route whose upstream refused our login is paused the same way, and
//! more strictly, since providers lock an account after a few refused
//! logins (Microsoft Entra's smart lockout, Google's abuse limits): while
//! it waits no message tries it, whatever the queue holds; when the wait
//! is over exactly one connection may log in (the one that claims the
//! attempt); a refusal doubles the wait (one minute to an hour, ±20%).
//! Logins to an upstream that has not accepted one yet go one at a time
//! (the login gate), so that a wrong password at startup costs one
//! refused login, not one per parallel connection.
//!
//! ```text
//!   (new) --login refused--> Paused{refusals: 1, next}
//!   Paused --wait over, one connection claims--> (logging in)
//!   (logging in) --refused--> Paused{refusals + 1, next: doubled wait}
//!   (logging in) --accepted--> (proven)    Paused --message sent--> (gone)
//! ```

use super::backoff::route_wait;
use super::*;

/// A route that waits, as the status page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteWait {
    pub route: String,
    /// Paused after a refused login (else slowed down after throttling).
    pub paused: bool,
    /// Refused logins or throttling answers in a row.
    pub times: u32,
    /// How much longer until the next attempt (zero: due now).
    pub wait: Duration,
    /// The upstream's answer, if it gave one.
    pub reply: Option<String>,
}

/// A route paused after a refused login.
#[derive(Clone, Debug)]
pub(super) struct Pause {
    /// Refused logins in a row (0 while only a token could not be had).
    refusals: u32,
    /// When one connection may try to log in again.
    next: std::time::Instant,
    /// The upstream's last refusal (none while only a token is missing).
    reply: Option<Reply>,
}

impl Forwarder {
    /// The upstream refused our authentication: the route is paused, not
    /// the mail failed. Its messages stay queued (no message tries the
    /// route until its wait is over, see the module documentation) and
    /// one error says so per outage, with the upstream's words. Not in
    /// 2.6.1, which fails every message to `.bad` until the password is
    /// fixed.
    pub(super) fn pause(&self, target: &str, reply: Reply) -> Verdict {
        self.note_error(&format!("authentication refused by {target}: {reply}"));
        self.stats.route(target, |c| c.auth_failures += 1);
        self.unprove(target);
        let now = tokio::time::Instant::now().into_std();
        let Ok(mut paused) = self.paused.lock() else {
            return Verdict::Deferred(Some(reply));
        };
        let pause = paused.entry(target.to_string()).or_insert(Pause {
            refusals: 0,
            next: now,
            reply: None,
        });
        pause.refusals += 1;
        pause.reply = Some(reply.clone());
        let wait = route_wait(target, pause.refusals);
        pause.next = now + wait;
        if pause.refusals == 1 {
            error!(
                "forwarding to {target} paused: the server refused our authentication: {reply}: mail stays queued"
            );
        } else {
            info!(
                "forwarding to {target} still paused: authentication refused again: next attempt in {}s",
                wait.as_secs()
            );
        }
        Verdict::Deferred(Some(reply))
    }

    /// The token endpoint would not renew the route's token: paused like
    /// a refused password, but the account has said why already, and
    /// waits on its own schedule (no login was tried), so the route is
    /// free to try as soon as the account has a token.
    pub(super) fn pause_quietly(&self, target: &str) {
        self.unprove(target);
        if let Ok(mut paused) = self.paused.lock() {
            let now = tokio::time::Instant::now().into_std();
            paused.entry(target.to_string()).or_insert(Pause {
                refusals: 0,
                next: now,
                reply: None,
            });
        }
        self.stats.route(target, |c| c.auth_failures += 1);
    }

    /// How much longer a paused `target` waits before the next login,
    /// unless the pass was forced (admin `forward`/`flush`).
    pub(super) fn paused_for(&self, target: &str) -> Option<Duration> {
        if self.forcing.load(Ordering::Relaxed) {
            return None;
        }
        let now = tokio::time::Instant::now().into_std();
        let next = self.paused.lock().ok()?.get(target)?.next;
        next.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// The refusal that paused `target`, if it is paused after one.
    pub(super) fn paused_reply(&self, target: &str) -> Option<Reply> {
        self.paused.lock().ok()?.get(target)?.reply.clone()
    }

    /// Claims the one connection that may try a paused `target` now: true
    /// if it is not paused, or its wait is over (or the pass was forced);
    /// the next claim then waits again, as long as the last wait was, so
    /// that only this connection tries.
    pub(super) fn claim_login(&self, target: &str) -> bool {
        let now = tokio::time::Instant::now().into_std();
        let forced = self.forcing.load(Ordering::Relaxed);
        let Ok(mut paused) = self.paused.lock() else {
            return false;
        };
        let Some(pause) = paused.get_mut(target) else {
            return true;
        };
        if !forced && now < pause.next {
            return false;
        }
        pause.next = now + route_wait(target, pause.refusals.max(1));
        true
    }

    /// True if `target` accepted our login since it was last paused.
    pub(super) fn is_proven(&self, target: &str) -> bool {
        self.proven.lock().is_ok_and(|p| p.contains(target))
    }

    /// The upstream accepted our login: the pause is over.
    pub(super) fn login_accepted(&self, target: &str) {
        if let Ok(mut proven) = self.proven.lock() {
            proven.insert(target.to_string());
        }
        if self
            .paused
            .lock()
            .is_ok_and(|mut p| p.remove(target).is_some())
        {
            info!("forwarding to {target} resumed: authentication accepted");
        }
    }

    fn unprove(&self, target: &str) {
        if let Ok(mut proven) = self.proven.lock() {
            proven.remove(target);
        }
    }

    /// The upstream sent a throttling answer: the route waits, `asked`
    /// if the upstream said how long (Graph's Retry-After).
    pub(super) fn throttle(&self, target: &str, reply: &Reply, asked: Option<Duration>) {
        let now = tokio::time::Instant::now().into_std();
        let Ok(mut waits) = self.throttled.lock() else {
            return;
        };
        let attempts = waits.get(target).map_or(0, |w| w.0) + 1;
        let wait = asked.unwrap_or_else(|| route_wait(target, attempts));
        waits.insert(
            target.to_string(),
            (attempts, now + wait, reply.to_string()),
        );
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
                .filter(|(_, (_, until, _))| *until > now)
                .map(|(route, _)| route.clone())
                .collect()
        });
        routes.sort();
        routes
    }

    /// Every route paused or slowed down now, for the status page: how
    /// long each still waits, with the answer that made it wait.
    pub fn route_waits(&self) -> Vec<RouteWait> {
        let now = tokio::time::Instant::now().into_std();
        let left = |until: std::time::Instant| until.saturating_duration_since(now);
        let mut waits: Vec<RouteWait> = Vec::new();
        if let Ok(paused) = self.paused.lock() {
            for (route, pause) in paused.iter() {
                waits.push(RouteWait {
                    route: route.clone(),
                    paused: true,
                    times: pause.refusals,
                    wait: left(pause.next),
                    reply: pause.reply.as_ref().map(Reply::to_string),
                });
            }
        }
        if let Ok(throttled) = self.throttled.lock() {
            for (route, (times, until, reply)) in throttled.iter() {
                if *until > now {
                    waits.push(RouteWait {
                        route: route.clone(),
                        paused: false,
                        times: *times,
                        wait: left(*until),
                        reply: Some(reply.clone()),
                    });
                }
            }
        }
        waits.sort_by(|a, b| (&a.route, a.paused).cmp(&(&b.route, b.paused)));
        waits
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
        if self
            .paused
            .lock()
            .is_ok_and(|mut p| p.remove(target).is_some())
        {
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
