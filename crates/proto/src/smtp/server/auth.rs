//! SMTP AUTH in the server session (RFC 4954).
//!
//! ```text
//!   Ready --AUTH mech [ir]--> [AuthNonce?] (CRAM-MD5 only) --334--> Exchange
//!   Exchange --response--> ... --> [Authenticate?] --235--> Ready (authenticated)
//!                                                  --535--> Ready (failures + 1)
//!                                                  --421--> Closed (too many failures)
//! ```
//!
//! The session never judges a password: it hands [`Credentials`](crate::sasl::Credentials) to the
//! driver in [`Event::Authenticate`] and acts on the [`AuthResult`]. The
//! CRAM-MD5 challenge's unpredictable part comes from the driver too
//! ([`Event::AuthNonce`]), which has a cryptographic random source.
//!
//! Response lines are never traced: the trace shows `AUTH PLAIN` and
//! `[response not logged]` for an initial response, and
//! `[authentication response not logged]` for a response line (as 2.6.1
//! does for the latter; it logs an initial response in clear, which we do
//! not). A response line is a command line as far as length goes.
//! E-MailRelay compatibility: AUTH before EHLO, or during a transaction,
//! is out of sequence (503, counted); a second AUTH too; AUTH that was
//! not offered is 502 with a warning.

use super::{Event, LogLine, ServerSession, State, Waiting};
use crate::sasl::{base64_decode, Mechanism, ServerExchange, Step};

/// What the server offers; `None` in [`super::ServerConfig::auth`] turns AUTH off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Mechanisms offered in clear, in EHLO order.
    pub clear: Vec<Mechanism>,
    /// Mechanisms offered once TLS is active.
    pub secure: Vec<Mechanism>,
    /// The client's address is trusted: MAIL needs no AUTH first.
    pub trusted: bool,
    /// Why, for the trace at each MAIL and VRFY the trust lets through
    /// unauthenticated (E-MailRelay's `trusting [<address>]: matched
    /// [<pattern>] from line <n>`); empty for none.
    pub trust_note: String,
    /// Failed attempts on one connection before 421 and close.
    pub max_failures: u32,
}

/// The driver's verdict on [`Event::Authenticate`]; shared with POP, so it
/// lives in [`crate::sasl`].
pub use crate::sasl::AuthResult;

/// Who the client proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub mechanism: Mechanism,
    pub name: String,
}

/// Per-session AUTH state.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    /// The exchange waiting for the client's next response line.
    exchange: Option<(Mechanism, ServerExchange)>,
    pub(super) done: Option<Authenticated>,
    failures: u32,
}

impl ServerSession {
    /// The authenticated identity, once AUTH has succeeded.
    pub fn authentication(&self) -> Option<&Authenticated> {
        self.auth.done.as_ref()
    }

    /// E-MailRelay compatibility: the trace says why an unauthenticated
    /// client may go on (2.6.1 checks the trust, and says so, at each MAIL
    /// and VRFY).
    pub(super) fn note_trust(&mut self) {
        let note = match &self.config.auth {
            Some(a) if a.trusted && self.auth.done.is_none() && !a.trust_note.is_empty() => {
                a.trust_note.clone()
            }
            _ => return,
        };
        self.trace_line(note);
    }

    /// True if MAIL must wait for AUTH.
    pub(super) fn needs_auth(&self) -> bool {
        self.config
            .auth
            .as_ref()
            .is_some_and(|a| !a.trusted && self.auth.done.is_none())
    }

    /// The mechanisms to offer now; empty hides AUTH.
    pub(super) fn offered_mechanisms(&self) -> &[Mechanism] {
        match &self.config.auth {
            Some(_) if self.config.tls_required && !self.secure => &[],
            Some(a) if self.secure => &a.secure,
            Some(a) => &a.clear,
            None => &[],
        }
    }

    /// Answers [`Event::AuthNonce`] with fresh random text (hex, say).
    pub fn answer_auth_nonce(&mut self, nonce: &str) {
        let Some(Waiting::AuthNonce(mechanism)) = self.waiting else {
            return;
        };
        self.waiting = None;
        let challenge = format!("<{nonce}@{}>", self.config.domain);
        let (exchange, step) = ServerExchange::start(mechanism, None, challenge);
        self.auth.exchange = Some((mechanism, exchange));
        self.auth_step(mechanism, step);
        self.process();
    }

    /// Answers [`Event::Authenticate`].
    pub fn answer_auth(&mut self, result: AuthResult) {
        let Some(Waiting::Auth(mechanism)) = self.waiting else {
            return;
        };
        self.waiting = None;
        match result {
            AuthResult::Accepted { name } => {
                self.reply(235, "authentication successful");
                self.auth.done = Some(Authenticated { mechanism, name });
            }
            AuthResult::Rejected => self.auth_failed(535, "authentication failed"),
            AuthResult::Unavailable => self.reply(454, "temporary authentication failure"),
        }
        self.process();
    }

    /// The AUTH command, checked in 2.6.1's order, with its warnings.
    pub(super) fn auth_command(&mut self, args: &str) {
        if self.state != State::Ready {
            return self.out_of_sequence();
        }
        if self.auth.done.is_some() {
            // RFC 4954 section 4: no second AUTH.
            self.warn("too many AUTH requests");
            return self.out_of_sequence();
        }
        if self.offered_mechanisms().is_empty() {
            let under_tls = self
                .config
                .auth
                .as_ref()
                .is_some_and(|a| !a.secure.is_empty());
            if !self.secure && under_tls {
                self.warn("rejecting authentication attempt without encryption");
                let text = match self.starttls_offered() {
                    true => "unsupported authentication mechanism: use starttls",
                    false => "unsupported authentication mechanism",
                };
                return self.reply(504, text);
            }
            self.warn("client protocol error: AUTH requested but not advertised");
            return self.reply(502, "command not implemented");
        }
        let mut words = args.split_whitespace();
        let name = words.next().unwrap_or("");
        let initial = words.next();
        let Some(mechanism) = Mechanism::parse(name) else {
            self.warn(&format!(
                "request for unsupported server AUTH mechanism: {}",
                name.to_ascii_uppercase()
            ));
            return self.reply(504, "unsupported authentication mechanism");
        };
        if !self.offered_mechanisms().contains(&mechanism) {
            return self.unoffered(mechanism);
        }
        // E-MailRelay compatibility: a bad initial response is an argument
        // error (501), not an authentication failure.
        let initial = initial.map(|i| if i == "=" { "" } else { i });
        if mechanism == Mechanism::CramMd5 && initial.is_some() {
            self.warn("unexpected initial-response with a server-first AUTH mechanism");
            return self.reply(501, "invalid argument");
        }
        if initial.is_some_and(|i| base64_decode(i).is_none()) {
            self.warn("invalid base64 encoding of AUTH parameter");
            return self.reply(501, "invalid argument");
        }
        if mechanism == Mechanism::CramMd5 {
            self.events.push_back(Event::AuthNonce);
            self.waiting = Some(Waiting::AuthNonce(mechanism));
            return;
        }
        let (exchange, step) = ServerExchange::start(mechanism, initial, String::new());
        self.auth.exchange = Some((mechanism, exchange));
        self.auth_step(mechanism, step);
    }

    /// One response line of an exchange in progress (never traced).
    pub(super) fn auth_response(&mut self, line: &str) {
        let Some((mechanism, mut exchange)) = self.auth.exchange.take() else {
            return;
        };
        if line != "*" && base64_decode(line).is_none() {
            // RFC 4954 section 4: 501 (2.6.1 says 535). It still counts
            // as a failed attempt, as in 2.6.1, so garbage cannot probe
            // for ever.
            self.warn("invalid base64 encoding of authentication response");
            return self.auth_failed(501, "invalid argument");
        }
        let step = exchange.handle_response(line);
        self.auth.exchange = Some((mechanism, exchange));
        self.auth_step(mechanism, step);
    }

    /// True while an exchange waits for the client's next response.
    pub(super) fn in_auth_exchange(&self) -> bool {
        self.auth.exchange.is_some()
    }

    /// Forgets the identity: RFC 3207 section 4.2, after STARTTLS.
    pub(super) fn reset_auth(&mut self) {
        self.auth.done = None;
        self.auth.exchange = None;
    }

    fn auth_step(&mut self, mechanism: Mechanism, step: Step) {
        match step {
            Step::Challenge(text) => self.reply(334, &text),
            Step::Done(credentials) => {
                self.auth.exchange = None;
                self.events.push_back(Event::Authenticate {
                    mechanism,
                    credentials,
                });
                self.waiting = Some(Waiting::Auth(mechanism));
            }
            Step::Failed(code, text) => {
                self.auth.exchange = None;
                self.auth_failed(code, text);
            }
        }
    }

    fn warn(&mut self, text: &str) {
        self.log.push(LogLine::Warning(text.to_string()));
    }

    /// 538 when TLS would make the mechanism available, else 504.
    fn unoffered(&mut self, mechanism: Mechanism) {
        let under_tls = self
            .config
            .auth
            .as_ref()
            .is_some_and(|a| a.secure.contains(&mechanism));
        self.warn(&format!(
            "request for unsupported server AUTH mechanism: {}",
            mechanism.name()
        ));
        if !self.secure && under_tls {
            self.reply(
                538,
                "encryption required for requested authentication mechanism",
            );
        } else {
            self.reply(504, "unsupported authentication mechanism");
        }
    }

    /// Counts a failed attempt; the last one allowed ends the session.
    fn auth_failed(&mut self, code: u16, text: &str) {
        self.auth.failures += 1;
        let limit = self
            .config
            .auth
            .as_ref()
            .map_or(3, |a| a.max_failures.max(1));
        if self.auth.failures >= limit {
            let text = format!(
                "{} too many authentication failures -- closing connection",
                self.config.domain
            );
            self.reply(421, &text);
            return self.close("smtp protocol done: too many authentication failures");
        }
        self.reply(code, text);
    }
}

/// The trace text of an AUTH command line with an initial response: the
/// mechanism, never the response. `None` for any other line.
pub(super) fn masked_auth_line(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let verb = words.next()?;
    if !verb.eq_ignore_ascii_case("AUTH") {
        return None;
    }
    let mechanism = words.next()?;
    words.next()?;
    Some(format!("{verb} {mechanism} [response not logged]"))
}
