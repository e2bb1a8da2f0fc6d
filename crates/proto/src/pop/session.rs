//! The POP3 server session (RFC 1939 sections 3-7), without I/O.
//!
//! ```text
//!   new() --"+OK POP3 server ready [<apop>]"--> Authorization
//!   Authorization --USER--> Authorization (name kept)
//!     --PASS / APOP / AUTH exchange--> [Authenticate?] --accepted--> [Maildrop?] --+OK--> Transaction
//!                                                      --rejected--> Authorization (-ERR; failures + 1)
//!     --STLS--> +OK [StartTls?] --tls_started--> Authorization (secure, name forgotten)
//!     --QUIT--> Closed (+OK signing off; nothing deleted)
//!   Transaction --STAT/LIST/UIDL/DELE/RSET/NOOP/CAPA--> Transaction
//!     --RETR/TOP--> [Retrieve?] --+OK--> Sending --content, "."--> Transaction
//!     --QUIT--> [Update?] (only if something was marked) --+OK signing off--> Closed
//!   any --too many failures or bad commands--> Closed (-ERR ...)
//!   any --connection lost, timeout--> Closed: nothing is deleted (RFC 1939 section 6)
//! ```
//!
//! States in brackets wait for the driver: the session emits an [`Event`]
//! and leaves further input buffered until the matching `answer_*` call,
//! so pipelined commands run in order. While a message is being sent the
//! driver feeds its content in chunks ([`PopSession::write_content`]) and
//! polls the output between them, so memory does not grow with its size.
//!
//! STLS (RFC 2595 section 4): after the +OK the session discards plaintext
//! already buffered and ignores input until [`PopSession::tls_started`],
//! so commands pipelined in clear behind STLS never run inside TLS.
//!
//! Limits: command lines of [`super::MAX_COMMAND_LINE`] octets and AUTH
//! responses of [`super::MAX_AUTH_LINE`] (longer gets -ERR and the session
//! goes on), `max_bad_commands` unknown or out-of-state commands and
//! `max_failures` failed logins (then -ERR and close). Deadlines and the
//! pause after a failed login are the driver's.

use std::collections::VecDeque;
use std::mem;

use super::command::{message_number, Command};
use super::content::ContentEncoder;
use super::{MAX_AUTH_LINE, MAX_COMMAND_LINE};
use crate::line::{scan_line, skip_to_terminator, Scan, Terminator};
use crate::printable::escape_controls;
use crate::sasl::{apop_credentials, AuthResult, Credentials, Mechanism, ServerExchange, Step};

/// What the server offers; built by the driver from its settings.
#[derive(Clone, Debug, Default)]
pub struct PopConfig {
    /// Offer STLS (`--server-tls`).
    pub stls: bool,
    /// The connection is encrypted from the start.
    pub implicit_tls: bool,
    /// No USER, PASS, APOP or AUTH before TLS (`--server-tls-required`).
    pub tls_required: bool,
    /// SASL mechanisms offered in clear, in CAPA order; PLAIN here also
    /// allows USER/PASS, as E-MailRelay has it.
    pub clear: Vec<Mechanism>,
    /// SASL mechanisms offered once TLS is active.
    pub secure: Vec<Mechanism>,
    /// The APOP timestamp for the greeting (`<random.time@domain>`);
    /// `None` when APOP is off.
    pub apop_challenge: Option<String>,
    /// Failed logins on one connection before -ERR and close.
    pub max_failures: u32,
    /// Unknown or out-of-state commands tolerated before -ERR and close.
    pub max_bad_commands: u32,
    /// Record command and reply lines for the protocol trace.
    pub trace: bool,
}

/// How a client logged in, for the driver's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// USER and PASS (checked as SASL PLAIN).
    UserPass,
    Apop,
    Sasl(Mechanism),
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMethod::UserPass => f.write_str("USER/PASS"),
            AuthMethod::Apop => f.write_str("APOP"),
            AuthMethod::Sasl(m) => write!(f, "{m}"),
        }
    }
}

/// One message of the maildrop, as the driver lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// Octets, as LIST and STAT report them (the content file's size).
    pub size: u64,
    /// The UIDL text.
    pub uid: String,
}

/// Something the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A CRAM-MD5 exchange needs an unpredictable challenge: answer with
    /// [`PopSession::answer_auth_nonce`].
    AuthNonce,
    /// Check these credentials; answer with [`PopSession::answer_auth`].
    Authenticate {
        method: AuthMethod,
        credentials: Credentials,
    },
    /// `user` has logged in: list their maildrop and answer with
    /// [`PopSession::answer_maildrop`].
    Maildrop { user: String },
    /// Send message `index` (0-based in the maildrop list), whole or, for
    /// TOP, its header and `lines` body lines: answer with
    /// [`PopSession::answer_retrieve`], then feed the content.
    Retrieve { index: usize, lines: Option<u64> },
    /// QUIT in the transaction state: delete these messages (0-based) and
    /// answer with [`PopSession::answer_update`].
    Update { deleted: Vec<usize> },
    /// The client asked for TLS and was told +OK: flush the output, do the
    /// server side of the handshake, then call [`PopSession::tls_started`].
    StartTls,
    /// The session is over; flush the output and close the connection.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Authorization,
    Transaction,
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Waiting {
    Tls,
    AuthNonce(Mechanism),
    Auth(AuthMethod),
    Maildrop,
    Retrieve {
        lines: Option<u64>,
        size: u64,
    },
    /// Content is being fed through this encoder.
    Sending(ContentEncoder),
    Update,
}

/// A server-side POP3 session. See the module documentation.
#[derive(Debug)]
pub struct PopSession {
    config: PopConfig,
    state: State,
    waiting: Option<Waiting>,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<Event>,
    trace: Vec<String>,
    /// The name from USER, for PASS.
    user: Option<String>,
    exchange: Option<(Mechanism, ServerExchange)>,
    /// Skipping the rest of an overlong line.
    discarding: bool,
    failures: u32,
    bad_commands: u32,
    secure: bool,
    authenticated: Option<String>,
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
}

impl PopSession {
    /// A new session; the greeting is already in the output.
    pub fn new(config: PopConfig) -> PopSession {
        let greeting = match &config.apop_challenge {
            Some(challenge) => format!("+OK POP3 server ready {challenge}"),
            None => "+OK POP3 server ready".to_string(),
        };
        let secure = config.implicit_tls;
        let mut session = PopSession {
            config,
            state: State::Authorization,
            waiting: None,
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            trace: Vec::new(),
            user: None,
            exchange: None,
            discarding: false,
            failures: 0,
            bad_commands: 0,
            secure,
            authenticated: None,
            messages: Vec::new(),
            deleted: Vec::new(),
        };
        session.line(&greeting);
        session
    }

    /// Feeds bytes from the client.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        // Plaintext that arrives while the handshake is due is dropped.
        if self.state == State::Closed || self.waiting == Some(Waiting::Tls) {
            return;
        }
        self.input.extend_from_slice(bytes);
        self.process();
    }

    /// Moves pending reply bytes into `out`.
    pub fn poll_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// The next event for the driver, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Protocol trace lines (`rx<<: ...` / `tx>>: ...` texts) since the last call.
    pub fn poll_trace(&mut self) -> Vec<String> {
        mem::take(&mut self.trace)
    }

    /// True once QUIT or a fatal error has ended the session.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True once TLS is active.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// True while the session waits for an `answer_*` call or for content.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// True while a RETR or TOP reply wants content.
    pub fn is_sending(&self) -> bool {
        matches!(self.waiting, Some(Waiting::Sending(_)))
    }

    /// The logged-in user, in the transaction state.
    pub fn user(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Ends the session from the driver's side (idle timeout, shutdown):
    /// nothing is deleted and nothing is said (RFC 1939 section 3, the
    /// autologout timer).
    pub fn shutdown(&mut self) {
        if self.state != State::Closed {
            self.close();
        }
    }

    /// Answers [`Event::AuthNonce`] with fresh random text (hex, say);
    /// `domain` completes the `<random@domain>` challenge.
    pub fn answer_auth_nonce(&mut self, nonce: &str, domain: &str) {
        let Some(Waiting::AuthNonce(mechanism)) = self.waiting else {
            return;
        };
        self.waiting = None;
        let (exchange, step) =
            ServerExchange::start(mechanism, None, format!("<{nonce}@{domain}>"));
        self.exchange = Some((mechanism, exchange));
        self.auth_step(mechanism, step);
        self.process();
    }

    /// Answers [`Event::Authenticate`].
    pub fn answer_auth(&mut self, result: AuthResult) {
        let Some(Waiting::Auth(_)) = self.waiting else {
            return;
        };
        self.waiting = None;
        match result {
            AuthResult::Accepted { name } => {
                self.events
                    .push_back(Event::Maildrop { user: name.clone() });
                self.authenticated = Some(name);
                self.waiting = Some(Waiting::Maildrop);
            }
            AuthResult::Rejected => self.auth_failed(),
            AuthResult::Unavailable => self.line("-ERR temporary authentication failure"),
        }
        self.process();
    }

    /// Answers [`Event::Maildrop`]: the messages, or why the maildrop
    /// cannot be opened (the client stays in the authorization state).
    pub fn answer_maildrop(&mut self, result: Result<Vec<MessageInfo>, String>) {
        if self.waiting != Some(Waiting::Maildrop) {
            return;
        }
        self.waiting = None;
        match result {
            Ok(messages) => {
                self.deleted = vec![false; messages.len()];
                self.messages = messages;
                self.state = State::Transaction;
                self.ok();
            }
            Err(reason) => {
                self.authenticated = None;
                self.line(&format!("-ERR {}", escape_controls(&reason)));
            }
        }
        self.process();
    }

    /// Answers [`Event::Retrieve`]: true if the content can be read; the
    /// driver then feeds it with [`PopSession::write_content`] and
    /// [`PopSession::finish_content`].
    pub fn answer_retrieve(&mut self, readable: bool) {
        let Some(Waiting::Retrieve { lines, size }) = self.waiting else {
            return;
        };
        self.waiting = None;
        if !readable {
            self.line("-ERR cannot read message file");
            return self.process();
        }
        let encoder = match lines {
            None => {
                self.line(&format!("+OK {size} octets"));
                ContentEncoder::retr()
            }
            Some(n) => {
                self.ok();
                ContentEncoder::top(n)
            }
        };
        self.waiting = Some(Waiting::Sending(encoder));
    }

    /// Feeds the next chunk of the message being sent. Returns false once
    /// no more is wanted (TOP has its lines); the reply is then complete.
    pub fn write_content(&mut self, chunk: &[u8]) -> bool {
        let Some(Waiting::Sending(encoder)) = self.waiting.as_mut() else {
            return false;
        };
        if encoder.encode(chunk, &mut self.output) {
            return true;
        }
        self.content_sent();
        false
    }

    /// The end of the message's content: terminates the reply.
    pub fn finish_content(&mut self) {
        let Some(Waiting::Sending(encoder)) = self.waiting.as_mut() else {
            return;
        };
        encoder.finish(&mut self.output);
        self.content_sent();
    }

    /// Answers [`Event::Update`]: false if some marked message could not
    /// be removed (RFC 1939 section 6 then says -ERR).
    pub fn answer_update(&mut self, all_removed: bool) {
        if self.waiting != Some(Waiting::Update) {
            return;
        }
        self.waiting = None;
        if all_removed {
            self.line("+OK signing off");
        } else {
            self.line("-ERR some deleted messages not removed");
        }
        self.close();
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded: the session
    /// goes on encrypted, in the authorization state, forgetting USER.
    pub fn tls_started(&mut self) {
        if self.waiting != Some(Waiting::Tls) {
            return;
        }
        // E-MailRelay compatibility: 2.6.1 also sends an unsolicited "+OK"
        // here, which shifts every later reply for a client that does not
        // expect it (Python's poplib); RFC 2595 section 4 has the server
        // say nothing, and so do we.
        self.waiting = None;
        self.secure = true;
        self.user = None;
        self.input.clear();
        self.discarding = false;
    }

    fn process(&mut self) {
        while self.waiting.is_none() && self.state != State::Closed && !self.input.is_empty() {
            let limit = if self.exchange.is_some() {
                MAX_AUTH_LINE
            } else {
                MAX_COMMAND_LINE
            };
            if self.discarding {
                match skip_to_terminator(&self.input, Terminator::Lf) {
                    Some(n) => {
                        self.input.drain(..n);
                        self.discarding = false;
                        self.line_too_long();
                        continue;
                    }
                    None => {
                        self.input.clear();
                        return;
                    }
                }
            }
            let (content, total) = match scan_line(&self.input, limit, Terminator::Lf) {
                Scan::Incomplete => return,
                Scan::Overflow => {
                    self.input.drain(..limit.min(self.input.len()));
                    self.discarding = true;
                    continue;
                }
                Scan::Line { content, total } => (content, total),
            };
            let line = String::from_utf8_lossy(&self.input[..content]).into_owned();
            self.input.drain(..total);
            if self.exchange.is_some() {
                self.auth_response(&line);
            } else {
                self.command(&line);
            }
        }
    }

    fn line_too_long(&mut self) {
        self.trace_note("rx<<: [line too long]");
        if self.exchange.take().is_some() {
            return self.auth_failed();
        }
        self.bad_command("-ERR line too long");
    }

    fn command(&mut self, line: &str) {
        let command = Command::parse(line);
        self.trace_rx(&command.trace_text(line));
        match self.state {
            State::Authorization => self.authorization(command),
            State::Transaction => self.transaction(command),
            State::Closed => {}
        }
    }

    fn authorization(&mut self, command: Command) {
        match command {
            Command::User(name) => self.user_command(name),
            Command::Pass(password) => self.pass_command(password),
            Command::Apop { user, digest } => self.apop_command(&user, &digest),
            Command::Auth {
                mechanism: None, ..
            } => self.auth_list(),
            Command::Auth {
                mechanism: Some(name),
                initial,
            } => self.auth_command(&name, initial),
            Command::Capa => self.capa(),
            Command::Stls if self.config.stls && !self.secure => {
                self.ok();
                self.input.clear();
                self.discarding = false;
                self.waiting = Some(Waiting::Tls);
                self.events.push_back(Event::StartTls);
            }
            Command::Quit => {
                self.line("+OK signing off");
                self.close();
            }
            _ => self.bad_command("-ERR"),
        }
    }

    fn transaction(&mut self, command: Command) {
        match command {
            Command::Stat => {
                let (count, octets) = self.totals();
                self.line(&format!("+OK {count} {octets}"));
            }
            Command::List(arg) => self.list(arg.as_deref(), false),
            Command::Uidl(arg) => self.list(arg.as_deref(), true),
            Command::Retr(arg) => match self.valid(arg.as_deref()) {
                Some(index) => self.retrieve(index, None),
                None => self.line("-ERR"),
            },
            Command::Top(arg, lines) => {
                let lines = message_number(lines.as_deref()).map(|n| n as u64);
                match (self.valid(arg.as_deref()), lines) {
                    (Some(index), Some(lines)) => self.retrieve(index, Some(lines)),
                    _ => self.line("-ERR"),
                }
            }
            Command::Dele(arg) => match self.valid(arg.as_deref()) {
                Some(index) => {
                    self.deleted[index] = true;
                    self.ok();
                }
                None => self.line("-ERR"),
            },
            Command::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                self.ok();
            }
            Command::Noop => self.ok(),
            Command::Capa => self.capa(),
            Command::Quit => self.quit(),
            _ => self.bad_command("-ERR"),
        }
    }

    fn user_command(&mut self, name: String) {
        if self.mechanisms().contains(&Mechanism::Plain) {
            // Not in 2.6.1, which echoes a NUL or an ESC as it came.
            self.line(&format!("+OK user: {}", escape_controls(&name)));
            self.user = Some(name);
        } else if self.tls_first() {
            self.line("-ERR must use STLS before authentication");
        } else {
            self.line("-ERR no SASL PLAIN mechanism to do USER/PASS authentication");
        }
    }

    fn pass_command(&mut self, password: String) {
        let user = match &self.user {
            Some(user) if !user.is_empty() && self.mechanisms().contains(&Mechanism::Plain) => {
                user.clone()
            }
            _ => return self.line("-ERR"),
        };
        self.authenticate(
            AuthMethod::UserPass,
            Credentials::Password {
                authzid: String::new(),
                user,
                password,
            },
        );
    }

    fn apop_command(&mut self, user: &str, digest: &str) {
        let Some(challenge) = self.config.apop_challenge.clone() else {
            return self.line("-ERR");
        };
        if self.tls_first() {
            return self.line("-ERR must use STLS before authentication");
        }
        match apop_credentials(user, digest, &challenge) {
            Some(credentials) => self.authenticate(AuthMethod::Apop, credentials),
            None => self.auth_failed(),
        }
    }

    /// E-MailRelay compatibility: AUTH without a mechanism lists them, one
    /// per line (not in RFC 5034, but some clients ask).
    fn auth_list(&mut self) {
        let mut lines = vec!["+OK".to_string()];
        lines.extend(self.mechanisms().iter().map(|m| m.name().to_string()));
        self.multi_line(lines);
    }

    fn auth_command(&mut self, name: &str, initial: Option<String>) {
        if self.mechanisms().is_empty() {
            return self.line("-ERR must use STLS before authentication");
        }
        let mechanism = Mechanism::parse(name).filter(|m| self.mechanisms().contains(m));
        let Some(mechanism) = mechanism else {
            return self.line("-ERR invalid mechanism");
        };
        // E-MailRelay compatibility: "=" (RFC 5034's empty initial
        // response) is taken as no initial response at all.
        let initial = initial.filter(|i| i != "=");
        if mechanism == Mechanism::CramMd5 {
            if initial.is_some() {
                return self.line("-ERR invalid initial response");
            }
            self.events.push_back(Event::AuthNonce);
            self.waiting = Some(Waiting::AuthNonce(mechanism));
            return;
        }
        let (exchange, step) = ServerExchange::start(mechanism, initial.as_deref(), String::new());
        self.exchange = Some((mechanism, exchange));
        self.auth_step(mechanism, step);
    }

    fn auth_response(&mut self, line: &str) {
        self.trace_note("rx<<: [authentication response not logged]");
        let Some((mechanism, mut exchange)) = self.exchange.take() else {
            return;
        };
        let step = exchange.handle_response(line);
        self.exchange = Some((mechanism, exchange));
        self.auth_step(mechanism, step);
    }

    fn auth_step(&mut self, mechanism: Mechanism, step: Step) {
        match step {
            Step::Challenge(text) => self.line(&format!("+ {text}")),
            Step::Done(credentials) => {
                self.exchange = None;
                self.authenticate(AuthMethod::Sasl(mechanism), credentials);
            }
            Step::Failed(..) => {
                self.exchange = None;
                self.auth_failed();
            }
        }
    }

    fn authenticate(&mut self, method: AuthMethod, credentials: Credentials) {
        self.events.push_back(Event::Authenticate {
            method,
            credentials,
        });
        self.waiting = Some(Waiting::Auth(method));
    }

    /// Counts a failed login; the last one allowed ends the session.
    fn auth_failed(&mut self) {
        self.failures += 1;
        if self.failures >= self.config.max_failures.max(1) {
            self.line("-ERR too many authentication failures -- closing connection");
            return self.close();
        }
        self.line("-ERR");
    }

    /// An unknown command, or one the state does not allow.
    fn bad_command(&mut self, reply: &str) {
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands.max(1) {
            self.line("-ERR too many bad commands -- closing connection");
            return self.close();
        }
        self.line(reply);
    }

    /// The SASL mechanisms usable now.
    fn mechanisms(&self) -> &[Mechanism] {
        if self.tls_first() {
            &[]
        } else if self.secure {
            &self.config.secure
        } else {
            &self.config.clear
        }
    }

    /// `--server-tls-required` and no TLS yet.
    fn tls_first(&self) -> bool {
        self.config.tls_required && !self.secure
    }

    /// RFC 2449 section 5, in E-MailRelay's order.
    fn capa(&mut self) {
        let mut lines = vec!["+OK capability list follows".to_string()];
        if self.mechanisms().contains(&Mechanism::Plain) {
            lines.push("USER".into());
        }
        lines.extend(["CAPA", "TOP", "UIDL"].map(String::from));
        // E-MailRelay compatibility, except that STLS is offered only while
        // it can be used (RFC 2595 section 4): 2.6.1 offers it after TLS
        // and after login too.
        if self.config.stls && !self.secure && self.state == State::Authorization {
            lines.push("STLS".into());
        }
        if !self.mechanisms().is_empty() {
            let names: Vec<&str> = self.mechanisms().iter().map(|m| m.name()).collect();
            lines.push(format!("SASL {}", names.join(" ")));
        }
        self.multi_line(lines);
    }

    fn list(&mut self, arg: Option<&str>, uidl: bool) {
        let item = |m: &MessageInfo| {
            if uidl {
                m.uid.clone()
            } else {
                m.size.to_string()
            }
        };
        if arg.is_none() {
            let (count, _) = self.totals();
            let mut lines = vec![format!("+OK {count} message(s)")];
            for (i, m) in self.messages.iter().enumerate() {
                if !self.deleted[i] {
                    lines.push(format!("{} {}", i + 1, item(m)));
                }
            }
            return self.multi_line(lines);
        }
        match self.valid(arg) {
            Some(index) => {
                let text = format!("+OK {} {}", index + 1, item(&self.messages[index]));
                self.line(&text);
            }
            None => self.line("-ERR invalid id"),
        }
    }

    fn retrieve(&mut self, index: usize, lines: Option<u64>) {
        let size = self.messages[index].size;
        self.events.push_back(Event::Retrieve { index, lines });
        self.waiting = Some(Waiting::Retrieve { lines, size });
    }

    fn content_sent(&mut self) {
        if let Some(Waiting::Sending(encoder)) = self.waiting.take() {
            if self.config.trace {
                self.trace
                    .push(format!("tx>>: [{} line(s) of content]", encoder.lines()));
                self.trace.push("tx>>: \".\"".into());
            }
        }
        self.process();
    }

    fn quit(&mut self) {
        let deleted: Vec<usize> = (0..self.deleted.len())
            .filter(|&i| self.deleted[i])
            .collect();
        if deleted.is_empty() {
            self.line("+OK signing off");
            return self.close();
        }
        self.events.push_back(Event::Update { deleted });
        self.waiting = Some(Waiting::Update);
    }

    /// The 0-based index of a message number that names a message not
    /// marked as deleted.
    fn valid(&self, arg: Option<&str>) -> Option<usize> {
        let n = message_number(arg)?;
        let index = n.checked_sub(1)?;
        (index < self.messages.len() && !self.deleted[index]).then_some(index)
    }

    fn totals(&self) -> (usize, u64) {
        self.messages
            .iter()
            .zip(&self.deleted)
            .filter(|(_, &deleted)| !deleted)
            .fold((0, 0), |(n, octets), (m, _)| (n + 1, octets + m.size))
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.waiting = None;
        self.exchange = None;
        self.input.clear();
        self.events.push_back(Event::Close);
    }

    fn ok(&mut self) {
        self.line("+OK");
    }

    fn line(&mut self, text: &str) {
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
        if self.config.trace {
            self.trace.push(format!("tx>>: \"{}\"", printable(text)));
        }
    }

    /// A multi-line reply: the lines, then ".". E-MailRelay compatibility:
    /// a long one is traced as its first four lines, a count and its last
    /// two.
    fn multi_line(&mut self, mut lines: Vec<String>) {
        lines.push(".".into());
        for line in &lines {
            self.output.extend_from_slice(line.as_bytes());
            self.output.extend_from_slice(b"\r\n");
        }
        if !self.config.trace {
            return;
        }
        let n = lines.len();
        for (i, line) in lines.iter().enumerate() {
            if n <= 7 || i < 4 || i + 2 >= n {
                self.trace.push(format!("tx>>: \"{}\"", printable(line)));
            } else if i == 4 {
                self.trace.push(format!("tx>>: [{} lines]", n - 6));
            }
        }
    }

    fn trace_rx(&mut self, text: &str) {
        if self.config.trace {
            self.trace.push(format!("rx<<: \"{}\"", printable(text)));
        }
    }

    fn trace_note(&mut self, text: &str) {
        if self.config.trace {
            self.trace.push(text.to_string());
        }
    }
}

/// Control characters as escapes, so a log line stays one line.
fn printable(text: &str) -> String {
    crate::printable::printable(text.as_bytes())
}
