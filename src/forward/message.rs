//! One message through a link: the client filter, the choice of
//! upstream and account, the connection, the rate limit, the send.

use super::outcome::message_info;
use super::pass::Pass;
use super::route::is_throttling;
use super::*;

/// Where one message's attempt is counted in the route figures.
pub(super) enum Counted {
    /// Decided before its route was known (a filter, a content file that
    /// cannot be read, no route at all): under the empty route.
    Unrouted,
    /// Tried on this upstream.
    Route(String),
    /// Skipped, its route waiting or unreachable: not an attempt, and not
    /// counted.
    Skipped,
}

impl Forwarder {
    /// Forwards one locked message over `conn` (opening it, or a new one
    /// for another upstream, as needed) and counts the outcome against
    /// the upstream it went to.
    pub(super) async fn forward_message(
        &self,
        pass: &Pass,
        locked: Locked,
        conn: &mut Option<(Key, Box<dyn Link>)>,
    ) -> Verdict {
        let mut route = Counted::Unrouted;
        let id = locked.id().clone();
        let verdict = self
            .forward_message_to(pass, locked, conn, &mut route)
            .await;
        let route = match route {
            Counted::Unrouted => String::new(),
            Counted::Route(route) => route,
            Counted::Skipped => return verdict,
        };
        self.stats.route(&route, |c| match verdict {
            Verdict::Sent => c.forwarded += 1,
            Verdict::Failed(_) => c.failed += 1,
            Verdict::Deferred(_) => c.deferred += 1,
        });
        // (A refusal that `--immediate` failed at once is a throttling
        // answer all the same.)
        if let Verdict::Deferred(Some(reply)) | Verdict::Failed(reply) = &verdict {
            if is_throttling(reply) {
                // Going on over the same connection would only be
                // refused again: it ends, and the route waits, as long
                // as the upstream asked if it said.
                let asked = conn.as_ref().and_then(|(_, link)| link.retry_after());
                if let Some((_, link)) = conn.take() {
                    link.quit().await;
                }
                if let (Some(wait), Ok(mut backoff)) = (asked, self.backoff.lock()) {
                    backoff.ask(&id, wait);
                }
                self.routes.throttle(&route, reply, asked);
            }
        }
        verdict
    }

    /// The work of `forward_message`; `route` says where the attempt is
    /// counted (see [`Counted`]).
    async fn forward_message_to(
        &self,
        pass: &Pass,
        locked: Locked,
        conn: &mut Option<(Key, Box<dyn Link>)>,
        route: &mut Counted,
    ) -> Verdict {
        let (locked, target) = match self.pick_up(pass, locked, route).await {
            Ok(picked) => picked,
            Err(verdict) => return verdict,
        };
        *route = Counted::Route(target.clone());
        let key = (
            target.clone(),
            locked.envelope.client_account_selector.clone(),
        );
        self.leave_other_upstream(conn, &key, &locked).await;
        let fresh = conn.is_none();
        let locked = match fresh {
            true => match self.connect(pass, locked, &key, route).await {
                Ok((locked, link)) => {
                    *conn = Some((key, link));
                    locked
                }
                Err(verdict) => return verdict,
            },
            false => locked,
        };
        self.send_on(pass, locked, conn, &target, fresh).await
    }

    /// Takes a message up for this pass: the log line, the client filter,
    /// the checks that need no upstream, and its route. `Err` is the
    /// verdict when it goes no further (`route` says if it was skipped).
    async fn pick_up(
        &self,
        pass: &Pass,
        mut locked: Locked,
        route: &mut Counted,
    ) -> Result<(Locked, String), Verdict> {
        if pass.is_stopped() {
            // A client filter ended the pass while this one was being
            // picked up: it waits for the next pass, unfiltered.
            return Err(Verdict::Deferred(None));
        }
        // A route that waits is not worth a line per message and poll.
        // (With a client filter the route is known only once it has run.)
        if self.client_filter.is_none() {
            if let Some(target) = self.target(&locked.envelope) {
                if self.held_back(pass, locked.id(), &target) {
                    *route = Counted::Skipped;
                    return Err(self.wait_out(pass, locked, &target));
                }
            }
        }
        pass.took_up();
        crate::log::set_msgid(locked.id().as_str());
        info!(
            "forwarding [{}]{}",
            locked.id(),
            message_info(&locked.envelope)
        );
        // Before connecting, so that a filter can route the message by
        // setting ForwardToAddress (E-MailRelay runs the routing filter
        // early, when ForwardTo is set, and the client filter after
        // connecting; here both run first).
        if let Some(filter) = &self.client_filter {
            locked = match self.client_filter(pass, filter, locked).await {
                Ok(locked) => locked,
                Err(verdict) => return Err(verdict),
            };
        }
        // A content file we cannot read (another user's, say) will not
        // become readable by trying again: set it aside with the reason.
        if let Err(e) = crate::store::open_regular(&locked.content_path()) {
            let reason = format!("cannot read content file: {e}");
            error!("{reason}: [{}]", locked.content_path().display());
            return Err(self.fail(locked, Reply::new(554, reason)));
        }
        if locked.envelope.to_remote.is_empty() {
            return Err(self.fail(locked, Reply::new(550, "no remote recipients")));
        }
        let Some(target) = self.target(&locked.envelope) else {
            return Err(Verdict::Deferred(None));
        };
        if pass.is_unreachable(&target) {
            *route = Counted::Skipped;
            return Err(self.skip_unconnectable(locked.id(), &target));
        }
        if self.held_back(pass, locked.id(), &target) {
            *route = Counted::Skipped;
            return Err(self.wait_out(pass, locked, &target));
        }
        Ok((locked, target))
    }

    /// Quits a connection to another upstream (or with another account)
    /// than `key`'s, with E-MailRelay's line for the change.
    async fn leave_other_upstream(
        &self,
        conn: &mut Option<(Key, Box<dyn Link>)>,
        key: &Key,
        locked: &Locked,
    ) {
        if conn.as_ref().is_some_and(|(k, _)| k != key) {
            if let Some((old_key, old)) = conn.take() {
                old.quit().await;
                // E-MailRelay's line for a change of upstream mid-pass.
                let (new_address, new_selector) = (old_key.0 != key.0, old_key.1 != key.1);
                let mut what = Vec::new();
                if new_address {
                    what.push(format!("[{}]", locked.envelope.forward_to_address.trim()));
                }
                if new_selector {
                    what.push(format!("account selector [{}]", key.1));
                }
                info!(
                    "forwarding [{}]: new connection for {}",
                    locked.id(),
                    what.join(" and ")
                );
            }
        }
    }

    /// Opens a connection for `key` (its account's secret, the login
    /// gate, the transport), or says why the message goes no further.
    async fn connect(
        &self,
        pass: &Pass,
        locked: Locked,
        key: &Key,
        route: &mut Counted,
    ) -> Result<(Locked, Box<dyn Link>), Verdict> {
        let target = &key.0;
        let (locked, secret) = self.account_secret(pass, locked, key).await?;
        // Logins to an upstream that has not accepted one go one at a
        // time, and a paused one gets one connection per wait (`route`).
        let gate = match secret.is_some() {
            true => self.routes.login_turn(target).await,
            false => None,
        };
        // Another connection of this pass was refused meanwhile.
        if pass.is_unreachable(target) {
            *route = Counted::Skipped;
            return Err(self.skip_unconnectable(locked.id(), target));
        }
        if !self.routes.claim_login(target, pass.force) {
            *route = Counted::Skipped;
            self.held_back(pass, locked.id(), target);
            return Err(self.wait_out(pass, locked, target));
        }
        let logs_in = secret.is_some();
        let transport = match self.transports.for_account(&key.1, &self.settings) {
            Ok(transport) => transport,
            Err(e) => {
                error!("{e}");
                pass.note_error(&e.to_string());
                return Err(Verdict::Deferred(None));
            }
        };
        let opened = transport.open(target, secret).await;
        drop(gate);
        match opened {
            Ok(c) => {
                if let (Some(user), Some(mechanism), Some(auth)) =
                    (c.authenticated(), c.auth_mechanism(), &self.settings.auth)
                {
                    info!("{}", auth.success_text(&key.1, mechanism.name(), user));
                }
                if logs_in {
                    self.routes.login_accepted(target);
                }
                Ok((locked, c))
            }
            Err(e) => Err(self.connect_failed(pass, locked, target, e, route)),
        }
    }

    /// The secret to log in to `key`'s upstream with (none without an
    /// account), or the message's verdict if there is none to be had.
    async fn account_secret(
        &self,
        pass: &Pass,
        locked: Locked,
        key: &Key,
    ) -> Result<(Locked, Option<ClientSecret>), Verdict> {
        let target = &key.0;
        match self.client_secret(&key.1).await {
            Ok(secret) => Ok((locked, secret)),
            Err(AccountError::NoAccount(selector)) => {
                // E-MailRelay's words.
                let reason = format!("no client authentication account: selector [{selector}]");
                pass.note_error(&reason);
                // E-MailRelay compatibility: 2.6.1 finds the account
                // missing once connected (so the upstream sees a
                // session without MAIL), and that ends the pass; the
                // messages after it wait for the next one.
                if let Ok(c) = self.transports.smtp().open(target, None).await {
                    c.quit().await;
                }
                pass.stop();
                Err(self.fail(locked, Reply::new(554, reason)))
            }
            // Logged once per outage by the account; the route
            // waits, as for a refused password.
            Err(AccountError::Token(_)) => {
                self.pause_quietly(target);
                Err(Verdict::Deferred(None))
            }
        }
    }

    /// The verdict on a message whose connection could not be made.
    fn connect_failed(
        &self,
        pass: &Pass,
        locked: Locked,
        target: &str,
        e: ConnectionError,
        route: &mut Counted,
    ) -> Verdict {
        // Several connections may try the same dead address at once: only
        // the first failure is reported, as with 2.6.1's one connection at
        // a time.
        if !pass.unreachable(target, &e.to_string()) {
            *route = Counted::Skipped;
            return self.skip_unconnectable(locked.id(), target);
        }
        // E-MailRelay's lines for a connection that failed: to a routed
        // address it only costs that address's messages their turn; to
        // the forward-to address it is the pass's error.
        if let ConnectionError::AuthRefused(reply) = e {
            self.pause(pass, target, &reply);
            return self.defer(pass, locked, reply);
        }
        if self.is_default(target) {
            warning!("smtp client error: {e}");
        } else {
            warning!("smtp connection failed: {e}");
        }
        self.broken(pass, locked, e)
    }

    /// Sends the message down the connection and judges the outcome.
    async fn send_on(
        &self,
        pass: &Pass,
        locked: Locked,
        conn: &mut Option<(Key, Box<dyn Link>)>,
        target: &str,
        fresh: bool,
    ) -> Verdict {
        let envelope = locked.envelope.clone();
        let Some((_, connection)) = conn.as_mut() else {
            return Verdict::Deferred(None);
        };
        if !fresh {
            // E-MailRelay compatibility: the line comes with every message,
            // on a new connection or not.
            info!("{}", connection.connection_line(target));
        }
        self.connections
            .emit(&["client", "sending", locked.id().as_str()]);
        self.stats.out_started.fetch_add(1, Ordering::Relaxed);
        if let Some(limit) = self.rate_limit(&envelope.client_account_selector) {
            let key = (target.to_string(), envelope.client_account_selector.clone());
            self.routes.wait_for_rate(limit, &key).await;
        }
        let message = self.outgoing(&envelope, connection.authenticated());
        let result = connection.send(message, &locked.content_path()).await;
        self.stats.out_finished.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(outcome) => {
                let verdict = self.apply(pass, locked, outcome);
                if matches!(verdict, Verdict::Sent) {
                    self.routes.resume(target);
                }
                verdict
            }
            Err(ConnectionError::Content(e)) => {
                // The content cannot be read (a directory, an I/O error):
                // trying again will not help, and the half-sent message
                // left the connection unusable.
                *conn = None;
                let reason = format!("cannot read content file: {e}");
                error!("{reason}: [{}]", locked.content_path().display());
                self.fail(locked, Reply::new(554, reason))
            }
            Err(ConnectionError::AuthRefused(reply)) => {
                // Graph refused a renewed token: as a refused password.
                *conn = None;
                self.pause(pass, target, &reply);
                self.defer(pass, locked, reply)
            }
            Err(e) => {
                warning!("smtp client error: {e}");
                // The session broke: that is the pass's error too (for
                // `--as-client`'s exit code and the admin `flush` answer).
                pass.note_error(&e.to_string());
                *conn = None;
                self.broken(pass, locked, e)
            }
        }
    }

    /// The verdict on a message whose connection could not be set up or
    /// broke while sending it: in one place for both.
    fn broken(&self, pass: &Pass, locked: Locked, e: ConnectionError) -> Verdict {
        match e {
            ConnectionError::Refused(reply) if reply.is_permanent() => self.fail(locked, reply),
            ConnectionError::Refused(reply) => self.defer(pass, locked, reply),
            // E-MailRelay compatibility: a TLS refusal (a certificate, no
            // common version) fails the message.
            ConnectionError::Tls(e) | ConnectionError::Io(e) if crate::tls::is_refusal(&e) => {
                self.fail(locked, Reply::new(554, e.to_string()))
            }
            _ => Verdict::Deferred(None),
        }
    }

    /// Where a message goes: its `ForwardToAddress`, or `--forward-to`.
    pub(super) fn target(&self, envelope: &crate::store::Envelope) -> Option<String> {
        match (
            envelope.forward_to_address.trim(),
            &self.settings.forward_to,
        ) {
            ("", default) => default.clone(),
            (address, _) => Some(address.to_string()),
        }
    }

    /// The messages a minute allowed with this account: the lower of
    /// `--client-rate` and the account's own (`rate =` in an OAuth
    /// account file; 30 for `provider = microsoft`, Exchange Online's
    /// limit per mailbox).
    pub(super) fn rate_limit(&self, selector: &str) -> Option<usize> {
        let account = self.settings.auth.as_ref().and_then(|a| a.rate(selector));
        match (self.settings.rate, account) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs `--client-filter`, as the routing filter if the message has a
    /// `ForwardTo`; `Err` is the message's verdict if the filter decided
    /// it. As 2.6.1: a client filter's failure fails the message with its
    /// reason and code 550, and a proxy's client hears `452 <response>`; a
    /// routing filter's failure fails it with `routing filter failed:
    /// <response>: <reason>`, and a proxy's client hears `452 routing
    /// failed`; abandon leaves the message where the filter left it; only a
    /// client filter's special flag stops the pass.
    pub(super) async fn client_filter(
        &self,
        pass: &Pass,
        filter: &Filter,
        mut locked: Locked,
    ) -> Result<Locked, Verdict> {
        let job = FilterJob {
            content: locked.content_path(),
            envelope: locked.envelope_path(),
        };
        let ty = match locked.envelope.forward_to.is_empty() {
            true => FilterType::Client,
            false => FilterType::Routing,
        };
        let outcome = filter.run(&job, ty).await;
        if outcome.special && ty == FilterType::Client {
            pass.stop();
        }
        match (outcome.result, ty) {
            (FilterResult::Ok, _) => {}
            (FilterResult::Retry, _) => {
                warning!(
                    "{}: [{}] deferred: {}",
                    ty.name(),
                    locked.id(),
                    outcome.reason
                );
                return Err(Verdict::Deferred(None));
            }
            // Dropping the lock puts back whatever the filter left.
            (FilterResult::Abandon, _) => return Err(Verdict::Deferred(None)),
            (FilterResult::Fail, FilterType::Routing) => {
                let reason = format!(
                    "routing filter failed: {}: {}",
                    outcome.response, outcome.reason
                );
                let heard = Reply::new(452, "routing failed");
                return Err(self.fail_as(locked, &reason, None, heard));
            }
            (FilterResult::Fail, _) => {
                let heard = Reply::new(452, outcome.response.clone());
                return Err(self.fail_as(locked, &outcome.reason, Some(550), heard));
            }
        }
        if let Err(e) = locked.reload() {
            error!("{e}");
            return Err(Verdict::Deferred(None));
        }
        Ok(locked)
    }

    /// The secret for an account selector; `Ok(None)` without
    /// `--client-auth` or for an account that says not to authenticate.
    pub(super) async fn client_secret(
        &self,
        selector: &str,
    ) -> Result<Option<ClientSecret>, AccountError> {
        match &self.settings.auth {
            None => Ok(None),
            Some(auth) => auth.secret(selector).await,
        }
    }

    pub(super) fn outgoing(
        &self,
        envelope: &crate::store::Envelope,
        authenticated: Option<&str>,
    ) -> OutgoingMessage {
        // E-MailRelay's policy, only on a connection that authenticated:
        // `--anonymous=client` sends AUTH=<>, an empty MailFromAuthOut the
        // name we authenticated with, a valid xtext name itself, anything
        // else AUTH=<>. Without authentication there is no AUTH= at all.
        let out = envelope.mail_from_auth_out.as_str();
        let auth = authenticated.map(|id| {
            if self.settings.anonymous_client {
                "<>".to_string()
            } else if out.is_empty() {
                xtext_encode(id)
            } else if is_xtext(out) {
                out.to_string()
            } else {
                "<>".to_string()
            }
        });
        OutgoingMessage {
            from: envelope.from.clone(),
            to: envelope.to_remote.clone(),
            body: envelope.body,
            size: None,
            smtputf8: envelope.utf8_mailbox_names,
            auth,
        }
    }
}

/// True for RFC 3461 xtext: printable ASCII but `+` and `=`, with `+XX`
/// hex escapes.
fn is_xtext(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
                let escaped = bytes.get(i + 1).copied().is_some_and(hex)
                    && bytes.get(i + 2).copied().is_some_and(hex);
                if !escaped {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            33..=126 => i += 1,
            _ => return false,
        }
    }
    !bytes.is_empty()
}
