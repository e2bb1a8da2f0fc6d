//! The SMTP client session used for forwarding (RFC 5321, RFC 2920), without I/O.
//!
//! ```text
//!  Greeting --220--> [EHLO] Ehlo --250--> Ready <------------------------------+
//!                            \--5xx--> [HELO] Helo --250--/                     |
//!  Ready --send_message--> Envelope (MAIL, RCPT... pipelined when offered)      |
//!     all accepted --> [DATA] Data --354--> Content (driver streams text)       |
//!     --content_sent--> Dot --reply--> Done(outcome) ---------------------------+
//!     MAIL or RCPT refused --> [RSET] Reset --reply--> Done(outcome) -----------+
//!  Ready --quit--> [QUIT] Quit
//!  Ehlo --250 with STARTTLS, TLS wanted--> [STARTTLS] StartTls --220--> Handshake
//!     --tls_started--> [EHLO] Ehlo (secure)
//!  Ehlo --250, secret configured--> [AUTH] Auth --334--> [response] Auth
//!     --235--> Ready        --4xx/5xx--> Failed (kept / failed)
//! ```
//!
//! AUTH (RFC 4954): with a [`ClientAuth`] the session authenticates after
//! EHLO (and after STARTTLS, if any), with the first mechanism in the
//! secret's preference order, filtered by the `--client-auth-config`
//! policy, that the server offers. If there is none, the session fails: a
//! relay told to authenticate must not send unauthenticated. Responses
//! never appear in the trace. The MAIL `AUTH=` parameter is sent only to a
//! server that offers AUTH, since others refuse unknown parameters.
//!
//! STARTTLS (RFC 3207): whatever the server sent after its 220 and before
//! the handshake is discarded, never read as a reply inside TLS. With
//! [`TlsPolicy::Required`] the session fails, before MAIL, when the server
//! does not offer STARTTLS or refuses it: mail never goes out in clear.
//!
//! DATA is sent only after every RCPT reply is in, so a refused recipient
//! never leaves a half-open DATA phase that could deliver an empty message.

use std::collections::VecDeque;
use std::mem;

use super::address::Mailbox;
use super::command::Body;
use super::reply::{Reply, ReplyLine, ReplyParser};
use crate::line::{scan_line, Scan, Terminator};
use crate::sasl::{ClientExchange, ClientSecret, Mechanism, MechanismPolicy};

/// Longest reply line we accept from a server.
const MAX_REPLY_LINE: usize = 4096;

/// How the client behaves; built by the driver from its settings.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO.
    pub helo_domain: String,
    /// Pipeline MAIL and RCPT commands when the server offers PIPELINING.
    pub pipelining: bool,
    /// Deliver to the accepted recipients even if some are refused (`--forward-to-some`).
    pub forward_to_some: bool,
    /// Record command and reply lines for the protocol trace.
    pub trace: bool,
    /// Refuse to send what the server has not said it can take.
    pub strict: Strictness,
    /// Whether to ask for STARTTLS.
    pub tls: TlsPolicy,
    /// The connection is already encrypted (implicit TLS): no STARTTLS.
    pub implicit_tls: bool,
    /// Authenticate with this secret (`--client-auth`); `None` does not.
    pub auth: Option<ClientAuth>,
}

/// How the client authenticates.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    pub secret: ClientSecret,
    /// `--client-auth-config`.
    pub policy: MechanismPolicy,
}

/// When the client uses STARTTLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never.
    #[default]
    Off,
    /// When the server offers it (`--client-tls`).
    Offered,
    /// Always; fail the session if the server cannot (`--client-tls-required`).
    Required,
}

/// E-MailRelay's `--client-smtp-config` `*strict` keywords: fail a message
/// at once, rather than send it anyway, when it needs an extension the
/// server does not offer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strictness {
    /// `eightbitstrict`: an 8BITMIME message needs 8BITMIME.
    pub eightbit: bool,
    /// `smtputf8strict`: a UTF-8 envelope needs SMTPUTF8.
    pub smtputf8: bool,
    /// `binarymimestrict`: a BINARYMIME message needs BINARYMIME.
    pub binarymime: bool,
}

/// One message to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub from: String,
    pub to: Vec<String>,
    pub body: Body,
    pub size: Option<u64>,
    pub smtputf8: bool,
    /// The `AUTH=` value, already xtext-encoded or `<>`; `None` leaves it out.
    pub auth: Option<String>,
}

/// The result of sending one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the server; `rejected` lists refused recipients (`--forward-to-some`).
    Sent { rejected: Vec<(String, Reply)> },
    /// Refused for good: fail the message with this reply.
    Failed(Reply),
    /// Refused for now: keep the message for the next attempt.
    Retry(Reply),
    /// Not sent at all, for a reason of ours (E-MailRelay 2.6.1's words):
    /// the message needs an extension the server does not offer, or its
    /// envelope holds an address no command may carry. Fail it; there is
    /// no reply code.
    Unsendable(&'static str),
}

/// Something the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The greeting and EHLO are done: messages can be sent.
    Ready,
    /// The server said 354: stream the dot-stuffed text, then call `content_sent`.
    SendContent,
    /// The server said 220 to STARTTLS: do the client side of the
    /// handshake, then call [`ClientSession::tls_started`].
    StartTls,
    /// The message is finished; the session is ready for the next one.
    Done(SendOutcome),
    /// The session failed (bad greeting, EHLO refused, 421, garbage): close it.
    Failed(Reply),
}

/// Server capabilities from the EHLO reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub binarymime: bool,
    pub chunking: bool,
    pub size: Option<u64>,
    pub starttls: bool,
    pub auth: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Handshake,
    Auth,
    Ready,
    Envelope,
    Data,
    Content,
    Dot,
    Reset,
    Quit,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Mail,
    Rcpt(String),
}

/// A client-side SMTP session. See the module documentation.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<ClientEvent>,
    trace: Vec<String>,
    parser: ReplyParser,
    caps: Capabilities,
    message: Option<OutgoingMessage>,
    unsent_rcpts: VecDeque<String>,
    expecting: VecDeque<Expect>,
    mail_reply: Option<Reply>,
    rejected: Vec<(String, Reply)>,
    accepted: usize,
    outcome: Option<SendOutcome>,
    secure: bool,
    exchange: Option<ClientExchange>,
    authenticated: Option<String>,
    /// The server refused our AUTH (the session then fails).
    auth_refused: bool,
    /// The mechanism the session authenticated with.
    auth_mechanism: Option<Mechanism>,
}

impl ClientSession {
    /// A new session waiting for the server's greeting.
    pub fn new(config: ClientConfig) -> ClientSession {
        ClientSession {
            state: State::Greeting,
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            trace: Vec::new(),
            parser: ReplyParser::default(),
            caps: Capabilities::default(),
            message: None,
            unsent_rcpts: VecDeque::new(),
            expecting: VecDeque::new(),
            mail_reply: None,
            rejected: Vec::new(),
            accepted: 0,
            outcome: None,
            secure: config.implicit_tls,
            exchange: None,
            authenticated: None,
            auth_refused: false,
            auth_mechanism: None,
            config,
        }
    }

    /// Feeds bytes from the server.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        // Nothing the server says between its 220 and the handshake counts.
        if self.state == State::Handshake {
            return;
        }
        self.input.extend_from_slice(bytes);
        while self.state != State::Failed {
            match scan_line(&self.input, MAX_REPLY_LINE, Terminator::Lf) {
                Scan::Incomplete => break,
                Scan::Overflow => return self.fail(Reply::new(421, "reply line too long")),
                Scan::Line { content, total } => {
                    let line: Vec<u8> = self.input.drain(..total).take(content).collect();
                    self.handle_line(&line);
                }
            }
        }
    }

    /// Moves pending command bytes into `out`.
    pub fn poll_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// The next event for the driver, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Protocol trace lines since the last call.
    pub fn poll_trace(&mut self) -> Vec<String> {
        mem::take(&mut self.trace)
    }

    /// What the server offered in its EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The prompt timeout expired without a greeting: carry on regardless
    /// (E-MailRelay's `--prompt-timeout` behaviour).
    pub fn handle_prompt_timeout(&mut self) {
        if self.state == State::Greeting {
            self.send_ehlo();
        }
    }

    /// True once TLS is active (STARTTLS done, or implicit TLS).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The name the server accepted in AUTH, if the session authenticated.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// True once the server has refused our authentication: the
    /// [`ClientEvent::Failed`] that follows is about our credentials, not
    /// about a message.
    pub fn auth_refused(&self) -> bool {
        self.auth_refused
    }

    /// The mechanism the session authenticated with, if it did.
    pub fn auth_mechanism(&self) -> Option<Mechanism> {
        self.auth_mechanism
    }

    /// The handshake after [`ClientEvent::StartTls`] succeeded: say EHLO
    /// again, encrypted.
    pub fn tls_started(&mut self) {
        if self.state == State::Handshake {
            self.secure = true;
            self.input.clear();
            self.parser = ReplyParser::default();
            self.caps = Capabilities::default();
            self.send_ehlo();
        }
    }

    /// Starts sending a message; only valid after [`ClientEvent::Ready`] or [`ClientEvent::Done`].
    pub fn send_message(&mut self, message: OutgoingMessage) {
        if self.state != State::Ready {
            return;
        }
        if let Some(reason) = self.unsendable(&message) {
            return self.done(SendOutcome::Unsendable(reason));
        }
        self.state = State::Envelope;
        self.rejected.clear();
        self.accepted = 0;
        self.mail_reply = None;
        self.outcome = None;
        self.unsent_rcpts = message.to.iter().cloned().collect();
        let mut mail = format!("MAIL FROM:<{}>", message.from);
        if self.caps.size.is_some() {
            if let Some(size) = message.size {
                mail.push_str(&format!(" SIZE={size}"));
            }
        }
        if self.caps.eightbitmime {
            match message.body {
                Body::EightBitMime => mail.push_str(" BODY=8BITMIME"),
                Body::SevenBit => mail.push_str(" BODY=7BIT"),
                _ => {}
            }
        }
        if message.smtputf8 && self.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if let Some(auth) = message.auth.as_ref().filter(|_| !self.caps.auth.is_empty()) {
            mail.push_str(&format!(" AUTH={auth}"));
        }
        self.command(&mail);
        self.expecting.push_back(Expect::Mail);
        self.message = Some(message);
        if self.pipelining() {
            while let Some(rcpt) = self.unsent_rcpts.pop_front() {
                self.send_rcpt(rcpt);
            }
        }
    }

    /// The driver has written the whole text (`lines` lines) and the
    /// end-of-data marker.
    pub fn content_sent(&mut self, lines: u64) {
        if self.state == State::Content {
            // E-MailRelay's trace: a count, then the dot.
            if self.config.trace {
                self.trace
                    .push(format!("tx>>: [{lines} line(s) of content]"));
            }
            self.trace_tx(".");
            self.state = State::Dot;
        }
    }

    /// Ends the session politely.
    pub fn quit(&mut self) {
        if matches!(self.state, State::Ready | State::Greeting) {
            self.command("QUIT");
            self.state = State::Quit;
        }
    }

    /// Why the message cannot go to this server, in E-MailRelay 2.6.1's
    /// words and order: an extension it needs and the server lacks (with
    /// the `*strict` switches), or an address that is not a valid path,
    /// the last line of defence against command injection from an edited
    /// envelope.
    fn unsendable(&self, message: &OutgoingMessage) -> Option<&'static str> {
        let strict = self.config.strict;
        let caps = &self.caps;
        if message.body == Body::EightBitMime && strict.eightbit && !caps.eightbitmime {
            return Some("cannot send 8-bit message to 7-bit server");
        }
        // RFC 3030 section 3: BINARYMIME needs CHUNKING as well.
        let binary_ok = caps.binarymime && caps.chunking;
        if message.body == Body::BinaryMime && strict.binarymime && !binary_ok {
            return Some("cannot send binarymime message to a non-chunking server");
        }
        if message.smtputf8 && strict.smtputf8 && !caps.smtputf8 {
            return Some("cannot send utf8 message to non-smtputf8 server");
        }
        let bad_to = message
            .to
            .iter()
            .any(|to| to.is_empty() || Mailbox::new(to).is_err());
        let bad_auth = (message.auth.as_deref())
            .is_some_and(|a| a.contains(|c: char| c.is_control() || c == ' '));
        (Mailbox::new(&message.from).is_err() || bad_to || bad_auth)
            .then_some("invalid address in the envelope")
    }

    // ---- replies ----

    fn handle_line(&mut self, line: &[u8]) {
        if self.config.trace {
            self.trace
                .push(format!("rx<<: \"{}\"", crate::printable::printable(line)));
        }
        match self.parser.handle_line(line) {
            ReplyLine::More => {}
            // A server that speaks nonsense is a broken connection, not a
            // verdict on the message: transient codes, so it stays queued.
            ReplyLine::Invalid => self.fail(Reply::new(421, "invalid response from server")),
            ReplyLine::TooLong => self.fail(Reply::new(421, "response from server too long")),
            ReplyLine::Complete(reply) => self.handle_reply(reply),
        }
    }

    fn handle_reply(&mut self, reply: Reply) {
        match self.state {
            State::Greeting if reply.code == 220 => self.send_ehlo(),
            State::Ehlo if reply.is_positive() => self.ready(&reply),
            State::Ehlo if reply.is_permanent() && reply.code != 554 => {
                self.command(&format!("HELO {}", self.config.helo_domain));
                self.state = State::Helo;
            }
            State::Helo if reply.is_positive() => self.ready(&Reply::new(250, "")),
            State::StartTls if reply.code == 220 => {
                self.input.clear();
                self.state = State::Handshake;
                self.events.push_back(ClientEvent::StartTls);
            }
            State::StartTls if self.config.tls == TlsPolicy::Required => self.fail(
                tls_unavailable(&format!("the server refused STARTTLS: {reply}")),
            ),
            State::StartTls => {
                // Opportunistic TLS refused: carry on in clear with what the
                // EHLO reply offered.
                self.state = State::Ready;
                self.events.push_back(ClientEvent::Ready);
            }
            State::Auth => self.auth_reply(reply),
            State::Envelope => self.envelope_reply(reply),
            State::Data if reply.code == 354 => {
                self.state = State::Content;
                self.events.push_back(ClientEvent::SendContent);
            }
            State::Data => self.finish_with_reset(outcome_of(reply)),
            State::Dot => {
                let outcome = if reply.is_positive() {
                    SendOutcome::Sent {
                        rejected: mem::take(&mut self.rejected),
                    }
                } else {
                    outcome_of(reply)
                };
                self.done(outcome);
            }
            State::Reset => {
                let outcome = self.outcome.take().unwrap_or(SendOutcome::Retry(reply));
                self.done(outcome);
            }
            State::Quit => {}
            // A positive reply nobody asked for: the peer is out of step,
            // so stop here and keep the message for a later attempt.
            _ if reply.code < 400 => self.fail(Reply::new(
                451,
                format!("protocol error: unexpected reply from the server: {reply}"),
            )),
            _ => self.fail(reply),
        }
    }

    fn envelope_reply(&mut self, reply: Reply) {
        match self.expecting.pop_front() {
            Some(Expect::Mail) => {
                if !reply.is_positive() {
                    self.mail_reply = Some(reply);
                }
            }
            Some(Expect::Rcpt(address)) => {
                if reply.is_positive() {
                    self.accepted += 1;
                } else {
                    self.rejected.push((address, reply));
                }
            }
            None => return self.fail(reply),
        }
        if self.mail_reply.is_none() {
            if let Some(rcpt) = self.unsent_rcpts.pop_front() {
                return self.send_rcpt(rcpt);
            }
        } else {
            self.unsent_rcpts.clear();
        }
        if self.expecting.is_empty() {
            self.envelope_complete();
        }
    }

    fn envelope_complete(&mut self) {
        if let Some(reply) = self.mail_reply.take() {
            return self.finish_with_reset(outcome_of(reply));
        }
        let refused = !self.rejected.is_empty();
        if self.accepted == 0 || (refused && !self.config.forward_to_some) {
            let all_transient = self.rejected.iter().all(|(_, r)| r.is_transient());
            let code = if all_transient { 450 } else { 550 };
            let reply = Reply::new(code, "one or more recipients rejected");
            let outcome = if all_transient {
                SendOutcome::Retry(reply)
            } else {
                SendOutcome::Failed(reply)
            };
            return self.finish_with_reset(outcome);
        }
        self.command("DATA");
        self.state = State::Data;
    }

    fn finish_with_reset(&mut self, outcome: SendOutcome) {
        self.outcome = Some(outcome);
        self.command("RSET");
        self.state = State::Reset;
    }

    fn done(&mut self, outcome: SendOutcome) {
        self.state = State::Ready;
        self.message = None;
        self.events.push_back(ClientEvent::Done(outcome));
    }

    fn ready(&mut self, reply: &Reply) {
        self.caps = parse_capabilities(reply);
        if !self.secure {
            match self.config.tls {
                TlsPolicy::Required if !self.caps.starttls => {
                    return self.fail(tls_unavailable("the server does not offer STARTTLS"));
                }
                TlsPolicy::Required | TlsPolicy::Offered if self.caps.starttls => {
                    self.command("STARTTLS");
                    self.state = State::StartTls;
                    return;
                }
                _ => {}
            }
        }
        if self.config.auth.is_some() {
            return self.start_auth();
        }
        self.state = State::Ready;
        self.events.push_back(ClientEvent::Ready);
    }

    fn start_auth(&mut self) {
        let Some(auth) = &self.config.auth else {
            return;
        };
        let offered: Vec<Mechanism> = self
            .caps
            .auth
            .iter()
            .filter_map(|name| Mechanism::parse(name))
            .collect();
        let ours = auth.policy.apply(auth.secret.mechanisms(), self.secure);
        let Some(mechanism) = ours.into_iter().find(|m| offered.contains(m)) else {
            let offers = match self.caps.auth.join(" ") {
                list if list.is_empty() => "no AUTH".to_string(),
                list => format!("AUTH {list}"),
            };
            let hint = if self.secure { "" } else { " (without TLS)" };
            return self.fail(Reply::new(
                530,
                format!("cannot do authentication: the server offers {offers}{hint}, none usable with the client secret"),
            ));
        };
        let (exchange, command) = ClientExchange::start(mechanism, auth.secret.clone());
        self.exchange = Some(exchange);
        self.command_masked(&command);
        self.state = State::Auth;
    }

    fn auth_reply(&mut self, reply: Reply) {
        if reply.code == 334 {
            let challenge = reply.lines.first().map(String::as_str).unwrap_or("");
            let response = match self.exchange.as_mut() {
                Some(exchange) => exchange.handle_challenge(challenge),
                None => "*".to_string(),
            };
            return self.command_masked(&response);
        }
        let exchange = self.exchange.take();
        if reply.is_positive() {
            self.authenticated = self
                .config
                .auth
                .as_ref()
                .map(|a| a.secret.user().to_string());
            self.auth_mechanism = exchange.as_ref().map(|e| e.mechanism());
            self.state = State::Ready;
            self.events.push_back(ClientEvent::Ready);
            return;
        }
        let mechanism = exchange.map(|e| e.mechanism().name()).unwrap_or("AUTH");
        self.auth_refused = true;
        self.fail(Reply::new(
            reply.code,
            format!("authentication failed ({mechanism}): {}", reply.text()),
        ));
    }

    fn fail(&mut self, reply: Reply) {
        if self.state != State::Failed && self.state != State::Quit {
            self.state = State::Failed;
            self.events.push_back(ClientEvent::Failed(reply));
        }
    }

    // ---- commands ----

    fn pipelining(&self) -> bool {
        self.config.pipelining && self.caps.pipelining
    }

    fn send_ehlo(&mut self) {
        self.command(&format!("EHLO {}", self.config.helo_domain));
        self.state = State::Ehlo;
    }

    fn send_rcpt(&mut self, rcpt: String) {
        self.command(&format!("RCPT TO:<{rcpt}>"));
        self.expecting.push_back(Expect::Rcpt(rcpt));
    }

    /// Sends an AUTH line; the trace keeps the verb and mechanism only
    /// (and LOGIN's user name, which is no secret: E-MailRelay shows it),
    /// in E-MailRelay's words: `"AUTH PLAIN [not logged]"`, and a bare
    /// `[response not logged]` for a response to a challenge.
    fn command_masked(&mut self, line: &str) {
        match line.split_once(' ') {
            Some(("AUTH", rest)) => match rest.split_once(' ') {
                Some(("LOGIN", _)) | None => self.trace_tx(line),
                Some((mechanism, _)) => self.trace_tx(&format!("AUTH {mechanism} [not logged]")),
            },
            _ => {
                if self.config.trace {
                    self.trace.push("tx>>: [response not logged]".to_string());
                }
            }
        }
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn command(&mut self, line: &str) {
        self.trace_tx(line);
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn trace_tx(&mut self, line: &str) {
        if self.config.trace {
            self.trace.push(format!(
                "tx>>: \"{}\"",
                crate::printable::printable(line.as_bytes())
            ));
        }
    }
}

/// A transient failure, so that the message stays in the spool for a
/// server that can do TLS next time.
fn tls_unavailable(why: &str) -> Reply {
    Reply::new(454, format!("TLS is required but not available: {why}"))
}

fn outcome_of(reply: Reply) -> SendOutcome {
    if reply.is_permanent() {
        SendOutcome::Failed(reply)
    } else {
        SendOutcome::Retry(reply)
    }
}

fn parse_capabilities(reply: &Reply) -> Capabilities {
    let mut caps = Capabilities::default();
    for line in reply.lines.iter().skip(1) {
        let mut words = line.split_whitespace();
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        match keyword.as_str() {
            "PIPELINING" => caps.pipelining = true,
            "8BITMIME" => caps.eightbitmime = true,
            "SMTPUTF8" => caps.smtputf8 = true,
            "BINARYMIME" => caps.binarymime = true,
            "CHUNKING" => caps.chunking = true,
            "STARTTLS" => caps.starttls = true,
            "SIZE" => caps.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0)),
            "AUTH" => caps.auth = words.map(|w| w.to_ascii_uppercase()).collect(),
            // The pre-RFC "AUTH=LOGIN PLAIN" form some old servers still send.
            k if k.starts_with("AUTH=") && caps.auth.is_empty() => {
                let first = k.trim_start_matches("AUTH=").to_string();
                caps.auth = std::iter::once(first)
                    .chain(words.map(|w| w.to_ascii_uppercase()))
                    .collect();
            }
            _ => {}
        }
    }
    caps
}
