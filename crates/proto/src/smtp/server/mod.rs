//! The SMTP server session (RFC 5321 sections 3 and 4), without I/O, as
//! E-MailRelay 2.6.1 conducts it: the same replies, the same states, the
//! same log lines.
//!
//! ```text
//!   new() --220--> Start --HELO/EHLO--> Ready --MAIL--> [MessageOpen?] --> Mail
//!   Mail --RCPT--> [Verify?] --250--> Rcpt --RCPT--> [Verify?] --> Rcpt
//!   Rcpt --DATA--> [MessageStart?] --354--> Data --"."--> [MessageEnd?] --250--> Ready
//!   Rcpt --BDAT n--> [MessageStart?] --> (n octets) --250--> Bdat --BDAT n--> ... (see data.rs)
//!   Mail --DATA--> 554 no valid recipients --> Ready
//!   bad BDAT, DATA after BODY=BINARYMIME --> MustReset --RSET/HELO/EHLO--> Ready
//!   any --RSET--> Ready (Start stays Start)     any --HELO/EHLO--> Ready
//!   any --QUIT--> Closed (221)     any --8th protocol error--> Closed (silently)
//!   Ready --STARTTLS--> [StartTls?] --tls_started--> Ready (secure)
//!   Ready --AUTH--> exchange --> [Authenticate?] --235--> Ready   (see auth.rs)
//! ```
//!
//! States in brackets wait for the driver: the session emits an [`Event`]
//! and does nothing more with the input until the matching `answer_*` call,
//! so pipelined commands (RFC 2920) queue up in order, and the driver's own
//! log lines (the new content file, the verifier, the filter) fall between
//! the right protocol trace lines. Message text is handed out as
//! [`Event::MessageData`] chunks as it arrives and is never held whole, so
//! memory does not grow with message size.
//!
//! E-MailRelay compatibility: command lines end at CRLF only (a bare LF is
//! part of the line, as in 2.6.1, which also keeps `<LF>.<LF>` from ever
//! meaning anything); a command out of sequence gets 503 and an unknown
//! one 500, and the eighth of those ends the session without a reply
//! (`too many protocol errors from the client`); syntax errors in
//! arguments (501, 553, 550) are not counted. A command line may be long
//! (a 2000-octet NOOP is fine, with a one-time warning for a line over
//! 1000 octets), but input without CRLF is held for at most
//! [`MAX_COMMAND_BUFFER`] octets: then the session ends silently
//! (`server protocol overflow`), so memory stays bounded.
//!
//! STARTTLS (RFC 3207): after the 220 the session discards whatever
//! plaintext is already buffered and ignores input until the driver calls
//! [`ServerSession::tls_started`], so commands pipelined behind STARTTLS in
//! clear are never executed inside the encrypted session (the
//! CVE-2011-0411 class of attack). An authentication made before the
//! handshake is forgotten (RFC 3207 section 4.2).
//!
//! Limits a peer cannot exceed: the command buffer, `max_size` octets of
//! content (552), `max_recipients` (452) and `max_bad_commands`. Deadlines
//! are the driver's. Text lines inside DATA may be longer than RFC 5321's
//! 1000 octets: old devices send unwrapped HTML and long base64 lines, and
//! E-MailRelay 2.6.1 passes them on unchanged, so such a line is streamed
//! through in pieces and never held whole.

mod auth;
mod data;

use std::collections::VecDeque;
use std::mem;

pub use auth::{AuthConfig, AuthResult, Authenticated};

use super::address::{AddressError, Mailbox};
use super::command::{AddressSyntax, Command, MailFrom, MailParams, RcptTo};
use super::reply::Reply;
use crate::printable::printable;
use crate::sasl::{Credentials, Mechanism};

/// Input without a CRLF is held up to this many octets, then the session
/// ends. E-MailRelay compatibility: 2.6.1's hard limit on its input buffer
/// (four reads of 20000 octets).
pub const MAX_COMMAND_BUFFER: usize = 80_000;
/// A line longer than this (CRLF not counted) is worth a warning, once
/// per session (E-MailRelay 2.6.1: RFC 2822's 998 plus CRLF).
pub const LONG_LINE: usize = 1000;
/// `--max-hops` by default: Postfix's `hopcount_limit`.
pub const DEFAULT_MAX_HOPS: usize = 50;
/// E-MailRelay 2.6.1's limit on protocol errors per session.
pub const MAX_PROTOCOL_ERRORS: u32 = 8;
/// RCPTs past `max_recipients` answered 452 in one transaction before the
/// next gets 421 and the session ends: Postfix's
/// `smtpd_recipient_overshoot_limit`. A client that pipelines a long list
/// (RFC 2920) sees 452 for the rest and sends them in a later transaction
/// (RFC 5321 section 4.5.3.1.10); one that goes on past 1000 refusals is a
/// loop or an attack, not a mailer.
pub const MAX_RECIPIENT_OVERSHOOT: usize = 1000;

/// What the server says and allows; built by the driver from its settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Our name in the greeting and the EHLO reply.
    pub domain: String,
    /// The client's address as log lines name it (`127.0.0.1`).
    pub client: String,
    /// False while the admin `smtp disable` holds: the greeting and every
    /// MAIL get `421 service not available`, as in 2.6.1.
    pub enabled: bool,
    /// Software name and version in the greeting; `None` hides the domain
    /// and the software (`--anonymous=server`: `220 greeting`).
    pub ident: Option<String>,
    /// Whether VRFY is answered (`--anonymous=vrfy` turns it off).
    pub vrfy: bool,
    /// Largest message in octets, `Received` line included; 0 for no limit (`--size`).
    pub max_size: u64,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// RCPTs refused with 452 for `max_recipients` in one transaction
    /// before the next ends the session with 421.
    pub max_recipient_overshoot: usize,
    /// Most `Received:` header lines a message may arrive with (a mail
    /// loop otherwise); 0 for no limit (`--max-hops`).
    pub max_hops: usize,
    /// Unknown and out-of-sequence commands tolerated; the next one ends the session.
    pub max_bad_commands: u32,
    /// Advertise PIPELINING.
    pub pipelining: bool,
    /// Advertise SMTPUTF8.
    pub smtputf8: bool,
    /// Refuse non-ASCII local parts unless MAIL said SMTPUTF8 (`smtputf8strict`).
    pub smtputf8_strict: bool,
    /// Advertise CHUNKING and accept BDAT (RFC 3030).
    pub chunking: bool,
    /// Paths without angle brackets (`nostrictparsing`).
    pub address_syntax: AddressSyntax,
    /// Ask the driver about every recipient ([`Event::Verify`]); otherwise all are accepted.
    pub verify_recipients: bool,
    /// Offer STARTTLS (`--server-tls`).
    pub starttls: bool,
    /// Refuse MAIL and VRFY until TLS is active (`--server-tls-required`).
    pub tls_required: bool,
    /// The connection is encrypted from the start (`--server-tls-connection`).
    pub implicit_tls: bool,
    /// Record command and reply lines for the protocol trace.
    pub trace: bool,
    /// SMTP AUTH (`--server-auth`); `None` answers AUTH with 502.
    pub auth: Option<AuthConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            domain: "localhost".into(),
            client: String::new(),
            enabled: true,
            ident: Some("E-MailRelay-rs".into()),
            vrfy: true,
            max_size: 0,
            max_recipients: 1000,
            max_recipient_overshoot: MAX_RECIPIENT_OVERSHOOT,
            max_hops: DEFAULT_MAX_HOPS,
            max_bad_commands: MAX_PROTOCOL_ERRORS,
            pipelining: true,
            smtputf8: false,
            smtputf8_strict: false,
            chunking: false,
            address_syntax: AddressSyntax::Strict,
            verify_recipients: false,
            starttls: false,
            tls_required: false,
            implicit_tls: false,
            trace: false,
            auth: None,
        }
    }
}

/// Something the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Check a recipient (RCPT) or answer VRFY (`from` is `None`); answer with [`ServerSession::answer_verify`].
    Verify {
        address: String,
        from: Option<String>,
    },
    /// MAIL was accepted (its 250 is already out): create the content file
    /// now, as 2.6.1 does, and answer with [`ServerSession::answer_message_open`].
    /// A failure is the driver's to remember and to answer at [`Event::MessageStart`].
    MessageOpen,
    /// DATA or the first BDAT: write the `Received` line and answer with
    /// [`ServerSession::answer_message_start`].
    MessageStart,
    /// The next chunk of message text, un-stuffed, CRLF line endings as received.
    MessageData(Vec<u8>),
    /// The text is complete: commit it and answer with [`ServerSession::answer_message`].
    MessageEnd,
    /// Throw the open message away (RSET, too large, QUIT, ...).
    MessageAbort,
    /// A CRAM-MD5 exchange needs an unpredictable challenge: answer with
    /// [`ServerSession::answer_auth_nonce`].
    AuthNonce,
    /// Check these credentials; answer with [`ServerSession::answer_auth`].
    Authenticate {
        mechanism: Mechanism,
        credentials: Credentials,
    },
    /// The client asked for TLS and was told 220: flush the output, do the
    /// server side of the handshake, then call [`ServerSession::tls_started`].
    StartTls,
    /// The session is over; flush the output and close the connection.
    Close,
}

/// A line for the log, in order with the protocol trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogLine {
    /// Verbose lines, recorded only with [`ServerConfig::trace`]: the
    /// protocol trace (`rx<<: ...`, `tx>>: ...`) and notes on it.
    Trace(String),
    /// A warning, whatever the verbosity.
    Warning(String),
    /// A warning to log once per process (2.6.1's `G_WARNING_ONCE`).
    WarningOnce(&'static str),
}

/// The driver's verdict on one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyResult {
    /// Forward to this (possibly rewritten) address.
    Remote(String),
    /// A local mailbox; not forwarded.
    Local { mailbox: String, full_name: String },
    /// Refused with this reply (550 invalid, 450 temporary).
    Reject(Reply),
    /// Drop the connection.
    Abort,
}

/// The driver's verdict on a complete message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageResult {
    /// Stored for good: the client gets 250.
    Accepted,
    /// Not stored: the client gets this reply (451/452 for storage, 5xx for policy).
    Rejected(Reply),
}

/// One accepted recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    /// The mailbox name for a local recipient.
    pub local: Option<String>,
}

/// The envelope gathered so far, read by the driver at [`Event::MessageEnd`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    /// The HELO/EHLO name ("" if the client skipped it).
    pub helo: String,
    /// True after EHLO, false after HELO.
    pub esmtp: bool,
    pub from: Option<Mailbox>,
    pub params: MailParams,
    pub recipients: Vec<Recipient>,
}

impl Transaction {
    /// The envelope's `Utf8MailboxNames`. E-MailRelay compatibility: a
    /// non-ASCII local part of the sender or of a remote recipient, not
    /// the SMTPUTF8 keyword and not a domain (stored in A-labels).
    pub fn is_utf8(&self) -> bool {
        let utf8_local = |a: &str| !a.rsplit_once('@').map_or(a, |(l, _)| l).is_ascii();
        self.from.as_ref().is_some_and(Mailbox::has_utf8_local_part)
            || self
                .recipients
                .iter()
                .any(|r| r.local.is_none() && utf8_local(&r.address))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    Ready,
    Mail,
    Rcpt,
    Data,
    /// Between BDAT chunks of one message.
    Bdat,
    /// After a bad BDAT or DATA with BINARYMIME: RSET, HELO or EHLO to go on.
    MustReset,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    Verify {
        vrfy: bool,
    },
    MessageOpen,
    /// `first_chunk` is set when the message starts with BDAT rather than DATA.
    MessageStart {
        first_chunk: Option<(u64, bool)>,
    },
    MessageEnd,
    /// The TLS handshake, after the 220 to STARTTLS.
    Tls,
    AuthNonce(Mechanism),
    Auth(Mechanism),
}

/// A server-side SMTP session. See the module documentation.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    state: State,
    waiting: Option<Waiting>,
    /// The address a pending [`Event::Verify`] is about, as the client gave it.
    verifying: String,
    input: Vec<u8>,
    /// How much of `input` is known to hold no CRLF (so a trickled long
    /// line is not scanned over and over).
    scanned: usize,
    output: Vec<u8>,
    events: VecDeque<Event>,
    log: Vec<LogLine>,
    transaction: Transaction,
    data: data::DataPhase,
    chunk: Option<data::Chunk>,
    bad_commands: u32,
    /// RCPTs refused for `max_recipients` in this transaction.
    excess_recipients: usize,
    secure: bool,
    warned_long_line: bool,
    close_reason: &'static str,
    auth: auth::AuthState,
    /// Octets the driver last said the spool can take (`None`: unknown).
    free_space: Option<u64>,
}

impl ServerSession {
    /// How many octets the spool can take now, for MAIL's `SIZE=`: a
    /// message declared larger is refused for now (452) before any of it
    /// is sent. The driver says it at the start and after each message.
    pub fn set_free_space(&mut self, octets: Option<u64>) {
        self.free_space = octets;
    }

    /// A new session; the 220 greeting is already in the output.
    pub fn new(config: ServerConfig) -> ServerSession {
        let greeting = match &config.ident {
            Some(ident) => format!("{} -- {ident} -- Service ready", config.domain),
            None => "greeting".to_string(),
        };
        let secure = config.implicit_tls;
        let enabled = config.enabled;
        let mut session = ServerSession {
            config,
            state: State::Start,
            waiting: None,
            verifying: String::new(),
            input: Vec::new(),
            scanned: 0,
            output: Vec::new(),
            events: VecDeque::new(),
            log: Vec::new(),
            transaction: Transaction::default(),
            data: data::DataPhase::default(),
            chunk: None,
            bad_commands: 0,
            excess_recipients: 0,
            secure,
            warned_long_line: false,
            close_reason: "smtp protocol done",
            auth: auth::AuthState::default(),
            free_space: None,
        };
        match enabled {
            true => session.reply(220, &greeting),
            false => session.reply(421, "service not available"),
        }
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

    /// Log lines (protocol trace and warnings) since the last call, in order.
    pub fn poll_log(&mut self) -> Vec<LogLine> {
        mem::take(&mut self.log)
    }

    /// The envelope of the transaction in progress.
    pub fn transaction(&self) -> &Transaction {
        &self.transaction
    }

    /// True once QUIT or a fatal error has ended the session.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the session ended, in 2.6.1's words for its log line:
    /// `smtp protocol done` after QUIT, with the reason after a colon when
    /// the session gave up on the client; `server protocol overflow`.
    pub fn close_reason(&self) -> &'static str {
        self.close_reason
    }

    /// True once TLS is active (STARTTLS done, or implicit TLS).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded: the session
    /// goes on encrypted. E-MailRelay compatibility: ready for MAIL (a
    /// client should say EHLO again, but need not).
    pub fn tls_started(&mut self) {
        if self.waiting != Some(Waiting::Tls) {
            return;
        }
        self.waiting = None;
        self.secure = true;
        self.reset_auth();
        self.input.clear();
        self.scanned = 0;
        self.state = State::Ready;
    }

    /// True while the session waits for an `answer_*` call.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// True while message text is being received.
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data | State::Bdat)
            || self.chunk.is_some()
            || self.waiting == Some(Waiting::MessageEnd)
    }

    /// True if a command or text line has started but not finished: the
    /// driver's per-command deadline runs while this is so.
    pub fn has_partial_input(&self) -> bool {
        !self.input.is_empty()
    }

    /// Answers [`Event::Verify`]. An answer nobody asked for (none
    /// pending, or another kind pending) is ignored and leaves the pending
    /// wait as it was.
    pub fn answer_verify(&mut self, result: VerifyResult) {
        let Some(Waiting::Verify { vrfy }) = self.waiting else {
            return;
        };
        self.waiting = None;
        let asked = mem::take(&mut self.verifying);
        match (vrfy, result) {
            (_, VerifyResult::Abort) => {
                return self.close("smtp protocol done: address verifier abort")
            }
            (_, VerifyResult::Reject(reply)) => self.send(&reply),
            (true, VerifyResult::Local { full_name, .. }) => self.reply(250, &full_name),
            (true, VerifyResult::Remote(_)) => {
                self.reply(252, &format!("cannot verify but will accept: {asked}"))
            }
            (false, VerifyResult::Local { mailbox, .. }) => {
                let address = mailbox.clone();
                self.add_recipient(
                    &asked,
                    Recipient {
                        address,
                        local: Some(mailbox),
                    },
                )
            }
            (false, VerifyResult::Remote(address)) => self.add_recipient(
                &asked,
                Recipient {
                    address,
                    local: None,
                },
            ),
        }
        self.process();
    }

    /// Answers [`Event::MessageOpen`].
    pub fn answer_message_open(&mut self) {
        if self.waiting == Some(Waiting::MessageOpen) {
            self.waiting = None;
            self.process();
        }
    }

    /// Answers [`Event::MessageEnd`]; ignored, like a stray
    /// [`ServerSession::answer_verify`], unless that is what is pending.
    pub fn answer_message(&mut self, result: MessageResult) {
        if self.waiting != Some(Waiting::MessageEnd) {
            return;
        }
        self.waiting = None;
        match result {
            MessageResult::Accepted => self.reply(250, "message processed"),
            MessageResult::Rejected(reply) => self.send(&reply),
        }
        self.clear_transaction();
        self.state = State::Ready;
        self.process();
    }

    /// Ends the session with a 421 (service shutting down).
    pub fn shutdown(&mut self, text: &str) {
        if self.state != State::Closed {
            self.reply(421, &format!("{} {text}", self.config.domain));
            self.close("smtp protocol done");
        }
    }

    // ---- input processing ----

    fn process(&mut self) {
        while self.waiting.is_none() && self.state != State::Closed {
            let progressed = if self.chunk.is_some() {
                self.consume_chunk()
            } else if self.state == State::Data {
                self.process_data()
            } else {
                self.process_line()
            };
            if !progressed {
                break;
            }
        }
        if self.state == State::Data {
            self.flush_data();
        }
    }

    /// Takes one CRLF-terminated line: a command, or a response inside an
    /// AUTH exchange. False if none is complete yet.
    fn process_line(&mut self) -> bool {
        let from = self.scanned.saturating_sub(1);
        let Some(cr) = self.input[from..].windows(2).position(|w| w == b"\r\n") else {
            self.scanned = self.input.len();
            if self.input.len() >= MAX_COMMAND_BUFFER {
                self.close("server protocol overflow");
            }
            return false;
        };
        let content = from + cr;
        self.warn_long_line(content);
        let raw: Vec<u8> = self.input.drain(..content + 2).take(content).collect();
        self.scanned = 0;
        let utf8 = std::str::from_utf8(&raw).is_ok();
        let line = String::from_utf8_lossy(&raw).into_owned();
        if self.in_auth_exchange() {
            self.trace_line("rx<<: [authentication response not logged]".into());
            self.auth_response(&line);
            return true;
        }
        let traced = match auth::masked_auth_line(&line) {
            Some(masked) => printable(masked.as_bytes()),
            None => printable(&raw),
        };
        self.trace_line(format!("rx<<: \"{traced}\""));
        self.execute(&line, utf8);
        true
    }

    /// E-MailRelay compatibility: one warning per session, for the first
    /// line (command or text) longer than [`LONG_LINE`] octets.
    fn warn_long_line(&mut self, length: usize) {
        if length > LONG_LINE && !self.warned_long_line {
            self.warned_long_line = true;
            self.log.push(LogLine::Warning(format!(
                "very long line detected: {length} > {LONG_LINE}"
            )));
        }
    }

    /// Runs one command line; `utf8` is false if its bytes were not valid
    /// UTF-8 (and `line` has replacement characters).
    fn execute(&mut self, line: &str, utf8: bool) {
        let mut command = Command::parse(line, self.config.address_syntax);
        // An address must never be stored with bytes it did not have, nor
        // with control characters that would reach a header or a command.
        if !utf8 || line.contains(|c: char| c.is_control() && c != '\t') {
            command = match command {
                Command::Mail(_) => Command::Mail(Err(AddressError::BadCharacter)),
                Command::Rcpt(_) => Command::Rcpt(Err(AddressError::BadCharacter)),
                other => other,
            };
        }
        match command {
            Command::Quit => {
                self.reply(221, "OK");
                self.close("smtp protocol done");
            }
            Command::Unknown => self.unrecognized(),
            Command::StartTls if !self.starttls_offered() => self.unrecognized(),
            Command::Bdat { .. } if !self.config.chunking => self.unrecognized(),
            Command::Rset => {
                self.abort_transaction();
                if self.state != State::Start {
                    self.state = State::Ready;
                }
                self.reply(250, "state reset");
            }
            Command::Noop => self.reply(250, "noop"),
            Command::Help | Command::Expn => self.reply(502, "command not implemented"),
            Command::Helo(name) => self.hello(name, false),
            Command::Ehlo(name) => self.hello(name, true),
            Command::Vrfy(address) => self.vrfy(address),
            Command::Mail(parsed) => self.mail(parsed),
            Command::Rcpt(parsed) => self.rcpt(parsed),
            Command::Data => self.data_command(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::StartTls => self.starttls(),
            Command::Auth(args) => self.auth_command(&args),
        }
    }

    fn starttls_offered(&self) -> bool {
        self.config.starttls && !self.config.implicit_tls
    }

    fn hello(&mut self, name: String, esmtp: bool) {
        if name.is_empty() {
            return self.reply(501, "parameter required");
        }
        self.abort_transaction();
        self.transaction.helo = name;
        self.transaction.esmtp = esmtp;
        self.state = State::Ready;
        if !esmtp {
            return self.reply(250, "hello");
        }
        // E-MailRelay compatibility: EHLO starts authentication afresh.
        self.reset_auth();
        let hello = match self.config.ident {
            Some(_) => format!("{} says hello", self.config.domain),
            None => "smtp says hello".to_string(),
        };
        // E-MailRelay 2.6.1's order of keywords, 8BITMIME always last.
        let mut lines = vec![hello];
        if self.config.max_size > 0 {
            lines.push(format!("SIZE {}", self.config.max_size));
        }
        let mechanisms = self.offered_mechanisms();
        if !mechanisms.is_empty() {
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        if self.starttls_offered() && !self.secure {
            lines.push("STARTTLS".into());
        }
        if self.config.vrfy {
            lines.push("VRFY".into());
        }
        if self.config.chunking {
            lines.push("CHUNKING".into());
            lines.push("BINARYMIME".into());
        }
        if self.config.pipelining {
            lines.push("PIPELINING".into());
        }
        if self.config.smtputf8 {
            lines.push("SMTPUTF8".into());
        }
        lines.push("8BITMIME".into());
        self.send(&Reply { code: 250, lines });
    }

    /// The 530 for MAIL and VRFY from a client that has not authenticated
    /// or has not started TLS when it must; `None` if it may go on.
    fn refusal_before_mail(&self) -> Option<&'static str> {
        let need_tls = self.config.tls_required && !self.secure;
        let hint = self.starttls_offered();
        match () {
            _ if self.needs_auth() && need_tls && hint => {
                Some("authentication required: use starttls")
            }
            _ if self.needs_auth() => Some("authentication required"),
            _ if need_tls && hint => Some("encryption required: use starttls"),
            _ if need_tls => Some("encryption required"),
            _ => None,
        }
    }

    fn vrfy(&mut self, address: String) {
        if !matches!(
            self.state,
            State::Start | State::Ready | State::Mail | State::Rcpt
        ) {
            return self.out_of_sequence();
        }
        if !self.config.vrfy {
            return self.reply(252, "cannot vrfy");
        }
        self.note_trust();
        if let Some(text) = self.refusal_before_mail() {
            return self.reply(530, text);
        }
        if address.is_empty() {
            return self.reply(550, "invalid mailbox");
        }
        if self.config.verify_recipients {
            self.verifying = address.clone();
            self.events.push_back(Event::Verify {
                address,
                from: None,
            });
            self.waiting = Some(Waiting::Verify { vrfy: true });
        } else {
            self.reply(252, &format!("cannot verify but will accept: {address}"));
        }
    }

    fn mail(&mut self, parsed: Result<MailFrom, AddressError>) {
        if self.state != State::Ready {
            return self.out_of_sequence();
        }
        if !self.config.enabled {
            return self.reply(421, "service not available");
        }
        if self.needs_auth() {
            let note = format!(
                "server authentication enabled but not a trusted address: {}",
                self.config.client
            );
            self.trace_line(note);
        }
        self.note_trust();
        if let Some(text) = self.refusal_before_mail() {
            return self.reply(530, text);
        }
        let mail = match parsed {
            Ok(mail) => mail,
            Err(e) => {
                self.warn_no_brackets(e);
                return self.reply(553, &format!("mailbox name not allowed: {e}"));
            }
        };
        let MailFrom { path, mut params } = mail;
        if self.config.max_size > 0 && params.size.unwrap_or(0) > self.config.max_size {
            return self.reply(552, "message size exceeds fixed maximum message size");
        }
        // RFC 1870 section 6.1: a declared size the spool cannot take now.
        if params
            .size
            .zip(self.free_space)
            .is_some_and(|(size, free)| size > free)
        {
            return self.reply(452, "insufficient system storage");
        }
        if self.config.smtputf8_strict && path.has_utf8_local_part() && !params.smtputf8 {
            // E-MailRelay compatibility: "smptutf8" sic.
            return self.reply(
                553,
                "mailbox name not allowed: invalid character in mailbox name: not using smptutf8",
            );
        }
        if self.config.auth.is_some() && self.auth.done.is_none() && params.auth.is_some() {
            // RFC 4954 section 5: an AUTH= identity from a client that has
            // not authenticated is not passed on; it becomes AUTH=<>.
            params.auth = Some(String::new());
        }
        self.reply(250, &format!("sender <{}> OK", path.raw));
        self.transaction.from = Some(path.mailbox);
        self.transaction.params = params;
        self.state = State::Mail;
        self.events.push_back(Event::MessageOpen);
        self.waiting = Some(Waiting::MessageOpen);
    }

    fn rcpt(&mut self, parsed: Result<RcptTo, AddressError>) {
        if !matches!(self.state, State::Mail | State::Rcpt) {
            return self.out_of_sequence();
        }
        let path = match parsed {
            Ok(rcpt) => rcpt.path,
            Err(e) => {
                self.warn_no_brackets(e);
                return self.reply(550, e.text());
            }
        };
        if self.config.smtputf8_strict
            && path.has_utf8_local_part()
            && !self.transaction.params.smtputf8
        {
            return self.reply(550, "invalid character in mailbox name: not using smtputf8");
        }
        if self.transaction.recipients.len() >= self.config.max_recipients {
            // Not in E-MailRelay 2.6.1, which has no limit at all.
            self.excess_recipients += 1;
            if self.excess_recipients > self.config.max_recipient_overshoot {
                let text = format!(
                    "{} too many recipients -- closing connection",
                    self.config.domain
                );
                self.reply(421, &text);
                return self.close("smtp protocol done: too many recipients");
            }
            return self.reply(452, "too many recipients");
        }
        let address = path.mailbox.to_string();
        if self.config.verify_recipients {
            let from = self.transaction.from.as_ref().map(|f| f.to_string());
            self.verifying = path.raw;
            self.events.push_back(Event::Verify {
                address,
                from: Some(from.unwrap_or_default()),
            });
            self.waiting = Some(Waiting::Verify { vrfy: false });
        } else {
            let recipient = Recipient {
                address,
                local: None,
            };
            self.add_recipient(&path.raw, recipient);
        }
    }

    /// E-MailRelay compatibility: the reply names the address the client
    /// gave, not a verifier's rewrite or mailbox, and has two spaces before
    /// `OK` for a local recipient.
    fn add_recipient(&mut self, asked: &str, recipient: Recipient) {
        let gap = if recipient.local.is_some() { "  " } else { " " };
        self.reply(250, &format!("recipient <{asked}>{gap}OK"));
        self.transaction.recipients.push(recipient);
        self.state = State::Rcpt;
    }

    /// E-MailRelay compatibility: a path without brackets is worth a hint
    /// in the log, once per process.
    fn warn_no_brackets(&mut self, e: AddressError) {
        if e == AddressError::NoBrackets {
            self.log.push(LogLine::WarningOnce(
                "invalid smtp command syntax from remote client: use --server-smtp-config=nostrictparsing to allow",
            ));
        }
    }

    /// STARTTLS (RFC 3207 section 4). Anything the client pipelined behind
    /// it is discarded here, before the handshake. E-MailRelay
    /// compatibility: arguments are ignored.
    fn starttls(&mut self) {
        if self.state != State::Ready || self.secure {
            return self.out_of_sequence();
        }
        self.reply(220, "ready to start tls");
        self.input.clear();
        self.scanned = 0;
        self.events.push_back(Event::StartTls);
        self.waiting = Some(Waiting::Tls);
    }

    // ---- helpers ----

    /// Forgets the transaction; the driver has the message already.
    fn clear_transaction(&mut self) {
        self.excess_recipients = 0;
        let helo = mem::take(&mut self.transaction.helo);
        let esmtp = self.transaction.esmtp;
        self.transaction = Transaction {
            helo,
            esmtp,
            ..Transaction::default()
        };
    }

    /// Forgets the transaction and tells the driver to drop its message.
    fn abort_transaction(&mut self) {
        if self.transaction.from.is_some() {
            self.events.push_back(Event::MessageAbort);
        }
        self.clear_transaction();
    }

    fn out_of_sequence(&mut self) {
        self.reply(503, "command out of sequence -- use RSET to resynchronise");
        self.protocol_error();
    }

    fn unrecognized(&mut self) {
        self.reply(500, "command unrecognized");
        self.protocol_error();
    }

    /// E-MailRelay compatibility: the last error allowed ends the session
    /// after its reply, with no 421.
    fn protocol_error(&mut self) {
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            self.close("smtp protocol done: too many protocol errors from the client");
        }
    }

    fn close(&mut self, reason: &'static str) {
        self.abort_transaction();
        self.close_reason = reason;
        self.state = State::Closed;
        self.waiting = None;
        self.input.clear();
        self.scanned = 0;
        self.events.push_back(Event::Close);
    }

    fn reply(&mut self, code: u16, text: &str) {
        self.send(&Reply::new(code, text));
    }

    fn send(&mut self, reply: &Reply) {
        let start = self.output.len();
        reply.write_to(&mut self.output);
        if self.config.trace {
            let written = &self.output[start..];
            let lines: Vec<String> = written
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .filter(|l| !l.is_empty())
                .map(|l| format!("tx>>: \"{}\"", printable(l)))
                .collect();
            self.log.extend(lines.into_iter().map(LogLine::Trace));
        }
    }

    pub(super) fn trace_line(&mut self, line: String) {
        if self.config.trace {
            self.log.push(LogLine::Trace(line));
        }
    }
}
