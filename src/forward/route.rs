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
use super::pass::Pass;
use super::rate::RateLimit;
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
struct Pause {
    /// Refused logins in a row (0 while only a token could not be had).
    refusals: u32,
    /// When one connection may try to log in again.
    next: std::time::Instant,
    /// The upstream's last refusal (none while only a token is missing).
    reply: Option<Reply>,
}

/// A route slowed down after a throttling answer.
#[derive(Clone, Debug)]
struct Throttle {
    /// Throttling answers in a row.
    times: u32,
    /// When the route may take mail again.
    until: std::time::Instant,
    /// The last throttling answer.
    reply: String,
}

/// What the scheduler knows of each route (upstream address) from one
/// pass to the next: paused after a refused login, proven by an accepted
/// one, slowed down after a throttling answer, and its messages a minute
/// (`--client-rate`). Several passes' workers share it. `forced` (an
/// admin `forward` or `flush`) overrides every wait.
#[derive(Default)]
pub(super) struct Routes {
    paused: Mutex<HashMap<String, Pause>>,
    /// Upstreams that accepted our login since they were last paused:
    /// connections to them open in parallel, without the login gate.
    proven: Mutex<std::collections::HashSet<String>>,
    /// Held while logging in to an upstream not proven yet, so that a
    /// wrong password costs one refused login, not one per connection.
    login_gate: tokio::sync::Mutex<()>,
    throttled: Mutex<HashMap<String, Throttle>>,
    /// `--client-rate` and the accounts' rates, per route and account.
    rate: RateLimit,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Routes {
    /// The upstream refused our authentication: the route is paused, not
    /// the mail failed. Its messages stay queued (no message tries the
    /// route until its wait is over, see the module documentation) and
    /// one error says so per outage, with the upstream's words. Not in
    /// 2.6.1, which fails every message to `.bad` until the password is
    /// fixed.
    pub(super) fn pause(&self, target: &str, reply: &Reply) {
        self.unprove(target);
        let now = now();
        let mut paused = lock(&self.paused);
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
    }

    /// The token endpoint would not renew the route's token: paused like
    /// a refused password, but the account has said why already, and
    /// waits on its own schedule (no login was tried), so the route is
    /// free to try as soon as the account has a token.
    pub(super) fn pause_quietly(&self, target: &str) {
        self.unprove(target);
        lock(&self.paused)
            .entry(target.to_string())
            .or_insert(Pause {
                refusals: 0,
                next: now(),
                reply: None,
            });
    }

    /// How much longer a paused `target` waits before the next login.
    pub(super) fn paused_for(&self, target: &str, forced: bool) -> Option<Duration> {
        if forced {
            return None;
        }
        let next = lock(&self.paused).get(target)?.next;
        next.checked_duration_since(now()).filter(|d| !d.is_zero())
    }

    /// The refusal that paused `target`, if it is paused after one.
    pub(super) fn paused_reply(&self, target: &str) -> Option<Reply> {
        lock(&self.paused).get(target)?.reply.clone()
    }

    /// Routes paused because they refused our authentication.
    pub(super) fn paused_routes(&self) -> Vec<String> {
        let mut routes: Vec<String> = lock(&self.paused).keys().cloned().collect();
        routes.sort();
        routes
    }

    /// Claims the one connection that may try a paused `target` now: true
    /// if it is not paused, or its wait is over (or `forced`); the next
    /// claim then waits again, as long as the last wait was, so that only
    /// this connection tries.
    pub(super) fn claim_login(&self, target: &str, forced: bool) -> bool {
        let now = now();
        let mut paused = lock(&self.paused);
        let Some(pause) = paused.get_mut(target) else {
            return true;
        };
        if !forced && now < pause.next {
            return false;
        }
        pause.next = now + route_wait(target, pause.refusals.max(1));
        true
    }

    /// Waits for the login gate if `target` has not accepted our login
    /// since it was last paused (logins to it go one at a time); `None`
    /// at once if it has.
    pub(super) async fn login_turn(&self, target: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if lock(&self.proven).contains(target) {
            return None;
        }
        Some(self.login_gate.lock().await)
    }

    /// The upstream accepted our login: the pause is over.
    pub(super) fn login_accepted(&self, target: &str) {
        lock(&self.proven).insert(target.to_string());
        if lock(&self.paused).remove(target).is_some() {
            info!("forwarding to {target} resumed: authentication accepted");
        }
    }

    fn unprove(&self, target: &str) {
        lock(&self.proven).remove(target);
    }

    /// The upstream sent a throttling answer: the route waits, `asked`
    /// if the upstream said how long (Graph's Retry-After).
    pub(super) fn throttle(&self, target: &str, reply: &Reply, asked: Option<Duration>) {
        let mut waits = lock(&self.throttled);
        let times = waits.get(target).map_or(0, |w| w.times) + 1;
        let wait = asked.unwrap_or_else(|| route_wait(target, times));
        let until = now() + wait;
        let reply = reply.to_string();
        warning!(
            "forwarding to {target} slowed down: the server is throttling: {reply}: next attempt in {}s",
            wait.as_secs()
        );
        waits.insert(
            target.to_string(),
            Throttle {
                times,
                until,
                reply,
            },
        );
    }

    /// How much longer `target` waits after a throttling answer.
    pub(super) fn throttled(&self, target: &str, forced: bool) -> Option<Duration> {
        if forced {
            return None;
        }
        let until = lock(&self.throttled).get(target)?.until;
        until.checked_duration_since(now()).filter(|d| !d.is_zero())
    }

    /// Routes waiting after a throttling answer now.
    pub(super) fn throttled_routes(&self) -> Vec<String> {
        let now = now();
        let mut routes: Vec<String> = lock(&self.throttled)
            .iter()
            .filter(|(_, w)| w.until > now)
            .map(|(route, _)| route.clone())
            .collect();
        routes.sort();
        routes
    }

    /// Every route paused or slowed down now, for the status page: how
    /// long each still waits, with the answer that made it wait.
    pub(super) fn waits(&self) -> Vec<RouteWait> {
        let now = now();
        let left = |until: std::time::Instant| until.saturating_duration_since(now);
        let mut waits: Vec<RouteWait> = lock(&self.paused)
            .iter()
            .map(|(route, pause)| RouteWait {
                route: route.clone(),
                paused: true,
                times: pause.refusals,
                wait: left(pause.next),
                reply: pause.reply.as_ref().map(Reply::to_string),
            })
            .collect();
        waits.extend(
            lock(&self.throttled)
                .iter()
                .filter(|(_, w)| w.until > now)
                .map(|(route, w)| RouteWait {
                    route: route.clone(),
                    paused: false,
                    times: w.times,
                    wait: left(w.until),
                    reply: Some(w.reply.clone()),
                }),
        );
        waits.sort_by(|a, b| (&a.route, a.paused).cmp(&(&b.route, b.paused)));
        waits
    }

    /// A message went to `target`: a pause on it is over.
    pub(super) fn resume(&self, target: &str) {
        if lock(&self.throttled).remove(target).is_some() {
            info!("forwarding to {target} taking mail again");
        }
        if lock(&self.paused).remove(target).is_some() {
            info!("forwarding to {target} resumed: authentication accepted");
        }
    }

    /// Waits until one more message a minute may go to this upstream with
    /// this account, under a limit of `limit` a minute.
    pub(super) async fn wait_for_rate(&self, limit: usize, key: &Key) {
        let mut said = false;
        while let Err(wait) = self.rate.admit(key, limit, now()) {
            if !said {
                info!(
                    "forwarding to {}: --client-rate of {limit} a minute reached: waiting {}s",
                    key.0,
                    wait.as_secs().max(1)
                );
                said = true;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// The route decisions that need more than the routes: the pass, the
/// counters, the settings.
impl Forwarder {
    /// The upstream refused our authentication: the route is paused
    /// ([`Routes::pause`]), counted, and the pass's error says so.
    pub(super) fn pause(&self, pass: &Pass, target: &str, reply: &Reply) {
        pass.note_error(&format!("authentication refused by {target}: {reply}"));
        self.stats.route(target, |c| c.auth_failures += 1);
        self.routes.pause(target, reply);
    }

    /// The token endpoint would not renew the route's token
    /// ([`Routes::pause_quietly`]), counted as a refused login.
    pub(super) fn pause_quietly(&self, target: &str) {
        self.routes.pause_quietly(target);
        self.stats.route(target, |c| c.auth_failures += 1);
    }

    /// True while `target` waits in this pass: slowed down after a
    /// throttling answer, or paused after a refused login (a skip, not an
    /// attempt).
    pub(super) fn held_back(&self, pass: &Pass, id: &MessageId, target: &str) -> bool {
        let (wait, why) = match (
            self.routes.throttled(target, pass.force),
            self.routes.paused_for(target, pass.force),
        ) {
            (Some(wait), _) => (wait, "slowed down"),
            (None, Some(wait)) => (wait, "paused"),
            (None, None) => return false,
        };
        crate::debug!(
            "forwarding [{id}]: {target} is {why} for {}s more: message left queued",
            wait.as_secs()
        );
        true
    }

    /// The verdict on a message whose route waits: it stays queued, but
    /// in a pass that fails what it cannot send (`--immediate`, proxy
    /// mode) a route paused after a refused login fails it with that
    /// refusal, which its client hears, without another login.
    pub(super) fn wait_out(&self, pass: &Pass, locked: Locked, target: &str) -> Verdict {
        match self.routes.paused_reply(target) {
            Some(reply) if pass.fails_refused => self.fail(locked, reply),
            _ => Verdict::Deferred(None),
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

/// A poisoned lock's data is still whole here (every update is one
/// statement), so it is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
