//! The SMTP server session (RFC 5321 sections 3 and 4), without I/O.
//!
//! ```text
//!   new() --220--> Start --HELO/EHLO--> Ready --MAIL--> Mail --RCPT--> Rcpt
//!                    \__________MAIL (tolerated)__/^        ^   |  RCPT   |
//!                                                 |         |   v         |
//!            RSET, HELO, EHLO, end of data  ------+       [Verify?]<------+
//!                                                              |
//!   Rcpt --DATA--> [MessageStart?] --354--> Data --"."--> [MessageEnd?] --250--> Ready
//!   Rcpt --BDAT n--> [MessageStart?] --> Bdat (n octets) --BDAT n LAST--> [MessageEnd?] --250--> Ready
//!   any --QUIT--> Closed (221)      any --too many errors--> Closed (421)
//!   Start/Ready --STARTTLS--> [StartTls?] --tls_started--> Start (secure; EHLO again)
//!   Ready --AUTH--> exchange --> [Authenticate?] --235--> Ready   (see auth.rs)
//! ```
//!
//! States in brackets wait for the driver: the session emits an [`Event`]
//! and does nothing more with the input until the matching `answer_*` call,
//! so pipelined commands (RFC 2920) queue up in order. Message text is
//! handed out as [`Event::MessageData`] chunks as it arrives and is never
//! held whole, so memory does not grow with message size.
//!
//! STARTTLS (RFC 3207): after the 220 the session discards whatever
//! plaintext is already buffered and ignores input until the driver calls
//! [`ServerSession::tls_started`], so commands pipelined behind STARTTLS in
//! clear are never executed inside the encrypted session (the
//! CVE-2011-0411 class of attack). The handshake then forgets everything
//! said before it: the client must say EHLO again.
//!
//! Limits a peer cannot exceed: 512-octet command lines (RFC 5321 section
//! 4.5.3.1; longer gets 500 and the session goes on), `max_size` octets of
//! content (552), `max_recipients` (452) and `max_bad_commands` (then 421
//! and close). Deadlines are the driver's. Text lines inside DATA may be
//! longer than RFC 5321's 1000 octets: old devices send unwrapped HTML and
//! long base64 lines, and E-MailRelay 2.6.1 passes them on unchanged, so
//! such a line is streamed through in pieces and never held whole.

mod auth;

use std::collections::VecDeque;
use std::mem;

pub use auth::{AuthConfig, AuthResult, Authenticated};

use super::address::Mailbox;
use super::command::{Body, Command, MailParams};
use super::reply::Reply;
use crate::line::{partial_terminator, scan_line, skip_to_terminator, Scan, Terminator};
use crate::printable::printable;
use crate::sasl::{Credentials, Mechanism};

/// Longest command line, terminator included (RFC 5321 section 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Text is scanned for line ends this many octets at a time; a longer line
/// (beyond RFC 5321 section 4.5.3.1.6) is passed on in pieces.
pub const MAX_TEXT_LINE: usize = 1000;
/// Message text is handed out in chunks of about this size.
const DATA_CHUNK: usize = 64 * 1024;

/// What the server says and allows; built by the driver from its settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Our name in the greeting and the EHLO reply.
    pub domain: String,
    /// Software name and version in the greeting; `None` hides it (`--anonymous=server`).
    pub ident: Option<String>,
    /// Whether VRFY is answered (`--anonymous=vrfy` turns it off).
    pub vrfy: bool,
    /// Largest message in octets; 0 for no limit (`--size`).
    pub max_size: u64,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Unknown, invalid or out-of-sequence commands tolerated before 421.
    pub max_bad_commands: u32,
    /// Advertise PIPELINING.
    pub pipelining: bool,
    /// Advertise SMTPUTF8.
    pub smtputf8: bool,
    /// Refuse non-ASCII addresses unless MAIL said SMTPUTF8 (`smtputf8strict`).
    pub smtputf8_strict: bool,
    /// Advertise CHUNKING and accept BDAT (RFC 3030).
    pub chunking: bool,
    /// Ask the driver about every recipient ([`Event::Verify`]); otherwise all are accepted.
    pub verify_recipients: bool,
    /// Offer STARTTLS (`--server-tls`).
    pub starttls: bool,
    /// Refuse MAIL and AUTH until TLS is active (`--server-tls-required`).
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
            ident: Some("E-MailRelay-rs".into()),
            vrfy: true,
            max_size: 0,
            max_recipients: 1000,
            max_bad_commands: 10,
            pipelining: true,
            smtputf8: false,
            smtputf8_strict: false,
            chunking: false,
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
    /// DATA was accepted in principle: open the spool file; answer with [`ServerSession::answer_message_start`].
    MessageStart,
    /// The next chunk of message text, un-stuffed, CRLF line endings as received.
    MessageData(Vec<u8>),
    /// The text is complete: commit it and answer with [`ServerSession::answer_message`].
    MessageEnd,
    /// Throw the partial message away (too large, overlong line); the client has been told.
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
    /// True if the envelope needs SMTPUTF8.
    pub fn is_utf8(&self) -> bool {
        self.params.smtputf8
            || self.from.as_ref().is_some_and(Mailbox::is_utf8)
            || self.recipients.iter().any(|r| !r.address.is_ascii())
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
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    Verify {
        vrfy: bool,
    },
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

/// A BDAT chunk being consumed: its octets are always read as data, never
/// as commands, whether or not they are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    size: u64,
    remaining: u64,
    last: bool,
    /// False for a refused BDAT: the octets are thrown away.
    keep: bool,
}

/// State of the DATA phase.
#[derive(Debug, Default)]
struct DataPhase {
    chunk: Vec<u8>,
    size: u64,
    too_large: bool,
    /// Inside a line longer than [`MAX_TEXT_LINE`]: the rest of it is
    /// content, up to its CRLF, whatever it holds.
    in_long_line: bool,
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
    output: Vec<u8>,
    events: VecDeque<Event>,
    trace: Vec<String>,
    transaction: Transaction,
    data: DataPhase,
    discarding_command: bool,
    chunk: Option<Chunk>,
    bad_commands: u32,
    secure: bool,
    auth: auth::AuthState,
}

impl ServerSession {
    /// A new session; the 220 greeting is already in the output.
    pub fn new(config: ServerConfig) -> ServerSession {
        let greeting = match &config.ident {
            Some(ident) => format!("{} -- {ident} -- Service ready", config.domain),
            None => format!("{} -- Service ready", config.domain),
        };
        let secure = config.implicit_tls;
        let mut session = ServerSession {
            config,
            state: State::Start,
            waiting: None,
            verifying: String::new(),
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            trace: Vec::new(),
            transaction: Transaction::default(),
            data: DataPhase::default(),
            discarding_command: false,
            chunk: None,
            bad_commands: 0,
            secure,
            auth: auth::AuthState::default(),
        };
        session.reply(220, &greeting);
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

    /// The envelope of the transaction in progress.
    pub fn transaction(&self) -> &Transaction {
        &self.transaction
    }

    /// True once QUIT or a fatal error has ended the session.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True once TLS is active (STARTTLS done, or implicit TLS).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded: the session
    /// starts afresh, encrypted, waiting for EHLO.
    pub fn tls_started(&mut self) {
        if self.waiting != Some(Waiting::Tls) {
            return;
        }
        self.waiting = None;
        self.secure = true;
        self.reset_auth();
        self.input.clear();
        self.transaction = Transaction::default();
        self.state = State::Start;
    }

    /// True while the session waits for an `answer_*` call.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// True while message text is being received.
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data | State::Bdat) || self.waiting == Some(Waiting::MessageEnd)
    }

    /// True if a command or text line has started but not finished: the
    /// driver's per-command deadline runs while this is so.
    pub fn has_partial_input(&self) -> bool {
        !self.input.is_empty() || self.discarding_command
    }

    /// Answers [`Event::Verify`].
    pub fn answer_verify(&mut self, result: VerifyResult) {
        let Some(Waiting::Verify { vrfy }) = self.waiting.take() else {
            return;
        };
        let asked = std::mem::take(&mut self.verifying);
        match (vrfy, result) {
            (_, VerifyResult::Abort) => return self.close(),
            (_, VerifyResult::Reject(reply)) => {
                self.send(&reply);
                if !vrfy {
                    self.count_bad_command();
                }
            }
            (true, VerifyResult::Local { full_name, .. }) => self.reply(250, &full_name),
            (true, VerifyResult::Remote(_)) => {
                self.reply(252, &format!("cannot verify but will accept: {asked}"))
            }
            (false, VerifyResult::Local { mailbox, .. }) => {
                let address = mailbox.clone();
                self.add_verified_recipient(
                    &asked,
                    Recipient {
                        address,
                        local: Some(mailbox),
                    },
                )
            }
            (false, VerifyResult::Remote(address)) => self.add_verified_recipient(
                &asked,
                Recipient {
                    address,
                    local: None,
                },
            ),
        }
        self.process();
    }

    /// Answers [`Event::MessageStart`]: `Err` refuses DATA with that reply.
    pub fn answer_message_start(&mut self, result: Result<(), Reply>) {
        let Some(Waiting::MessageStart { first_chunk }) = self.waiting else {
            return;
        };
        self.waiting = None;
        self.data = DataPhase::default();
        match (result, first_chunk) {
            (Ok(()), None) => {
                self.state = State::Data;
                self.reply(354, "start mail input -- end with <CRLF>.<CRLF>");
            }
            (Ok(()), Some((size, last))) => {
                self.state = State::Bdat;
                self.start_chunk(size, last, true);
            }
            (Err(reply), chunk) => {
                self.send(&reply);
                if let Some((size, last)) = chunk {
                    self.chunk = Some(Chunk {
                        size,
                        remaining: size,
                        last,
                        keep: false,
                    });
                }
            }
        }
        self.process();
    }

    /// Answers [`Event::MessageEnd`].
    pub fn answer_message(&mut self, result: MessageResult) {
        if self.waiting.take() != Some(Waiting::MessageEnd) {
            return;
        }
        match result {
            MessageResult::Accepted => self.reply(250, "message processed"),
            MessageResult::Rejected(reply) => self.send(&reply),
        }
        self.reset_transaction();
        self.process();
    }

    /// Ends the session with a 421 (idle timeout, shutdown, too many errors).
    pub fn shutdown(&mut self, text: &str) {
        if self.state != State::Closed {
            if self.in_data() {
                self.events.push_back(Event::MessageAbort);
            }
            self.reply(421, &format!("{} {text}", self.config.domain));
            self.close();
        }
    }

    // ---- input processing ----

    fn process(&mut self) {
        while self.waiting.is_none() && self.state != State::Closed {
            let progressed = if self.chunk.is_some() {
                self.consume_chunk()
            } else if self.state == State::Data {
                self.process_data()
            } else if self.in_auth_exchange() {
                self.process_auth_response()
            } else {
                self.process_command()
            };
            if !progressed {
                break;
            }
        }
        if self.state == State::Data {
            self.flush_data();
        }
    }

    fn process_command(&mut self) -> bool {
        if self.discarding_command {
            return self.skip_overlong(Terminator::Lf);
        }
        match scan_line(&self.input, MAX_COMMAND_LINE, Terminator::Lf) {
            Scan::Incomplete => false,
            Scan::Overflow => {
                // The first MAX_COMMAND_LINE bytes hold no terminator: drop
                // them and skip the rest of the line.
                self.discarding_command = true;
                self.input.drain(..MAX_COMMAND_LINE);
                true
            }
            Scan::Line { content, total } => {
                let raw = &self.input[..content];
                let utf8 = std::str::from_utf8(raw).is_ok();
                let line = String::from_utf8_lossy(raw).into_owned();
                let traced = match auth::masked_auth_line(&line) {
                    Some(masked) => printable(masked.as_bytes()),
                    None => printable(raw),
                };
                self.input.drain(..total);
                self.trace_rx(&traced);
                self.execute(&line, utf8);
                true
            }
        }
    }

    /// Drops the rest of an overlong command line, then answers 500 once.
    fn skip_overlong(&mut self, terminator: Terminator) -> bool {
        match skip_to_terminator(&self.input, terminator) {
            Some(n) => {
                self.input.drain(..n);
                self.discarding_command = false;
                self.reply(500, "line too long");
                self.count_bad_command();
                true
            }
            None => {
                self.input.clear();
                false
            }
        }
    }

    /// Runs one command line; `utf8` is false if its bytes were not valid
    /// UTF-8 (and `line` has replacement characters).
    fn execute(&mut self, line: &str, utf8: bool) {
        // An address must never be stored with bytes it did not have, nor
        // with control characters that would reach a header or a command.
        // E-MailRelay 2.6.1's replies: 553 to MAIL, 550 to RCPT.
        if !utf8 || line.chars().any(|c| c.is_control()) {
            let verb = line.get(..4).unwrap_or("");
            if verb.eq_ignore_ascii_case("MAIL") {
                return self.reply(
                    553,
                    "mailbox name not allowed: invalid character in mailbox name",
                );
            }
            if verb.eq_ignore_ascii_case("RCPT") {
                return self.reply(550, "invalid character in mailbox name");
            }
        }
        let command = Command::parse(line);
        // Between BDAT chunks only more chunks, RSET, NOOP and QUIT make sense.
        let between_chunks_ok = matches!(
            command,
            Command::Rset | Command::Quit | Command::Noop | Command::Bdat { .. }
        );
        if self.state == State::Bdat && !between_chunks_ok {
            return self.out_of_sequence();
        }
        match command {
            Command::Helo(name) => self.hello(name, false),
            Command::Ehlo(name) => self.hello(name, true),
            Command::Mail(from, params) => self.mail(from, params),
            Command::Rcpt(to) => self.rcpt(to),
            Command::Data => self.data_command(),
            Command::Rset => {
                if self.state == State::Bdat {
                    self.events.push_back(Event::MessageAbort);
                }
                self.reset_transaction();
                self.reply(250, "state reset");
            }
            Command::Noop => self.reply(250, "noop"),
            Command::Quit => {
                self.reply(221, "OK");
                self.close();
            }
            Command::Vrfy(address) => self.vrfy(address),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::StartTls => self.starttls(),
            Command::Auth(args) => self.auth_command(&args),
            Command::Help => self.reply(502, "command not implemented"),
            Command::Invalid(text) => self.bad_command(501, text),
            Command::Unknown => self.bad_command(500, "command unrecognized"),
        }
    }

    fn hello(&mut self, name: String, esmtp: bool) {
        self.reset_transaction();
        self.transaction.helo = name;
        self.transaction.esmtp = esmtp;
        self.state = State::Ready;
        if !esmtp {
            // E-MailRelay compatibility: HELO gets a bare "250 hello".
            return self.reply(250, "hello");
        }
        // E-MailRelay 2.6.1's order of keywords, 8BITMIME always last.
        let mut lines = vec![format!("{} says hello", self.config.domain)];
        if self.config.max_size > 0 {
            lines.push(format!("SIZE {}", self.config.max_size));
        }
        let mechanisms = self.offered_mechanisms();
        if !mechanisms.is_empty() {
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        if self.config.starttls && !self.secure {
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

    fn mail(&mut self, from: Mailbox, params: MailParams) {
        if !matches!(self.state, State::Start | State::Ready) {
            return self.out_of_sequence();
        }
        if self.config.tls_required && !self.secure {
            return self.reply(530, "must issue a STARTTLS command first");
        }
        if self.needs_auth() {
            return self.reply(530, "authentication required");
        }
        if self.config.max_size > 0 && params.size.is_some_and(|s| s > self.config.max_size) {
            return self.reply(552, "message size exceeds fixed maximum message size");
        }
        if self.config.smtputf8_strict && from.is_utf8() && !params.smtputf8 {
            return self.reply(553, "mailbox name not allowed: SMTPUTF8 required");
        }
        let mut params = params;
        if self.config.auth.is_some() && self.auth.done.is_none() && params.auth.is_some() {
            // RFC 4954 section 5: an AUTH= identity from a client that has
            // not authenticated is not passed on; it becomes AUTH=<>.
            params.auth = Some(String::new());
        }
        self.reply(250, &format!("sender <{from}> OK"));
        self.transaction.from = Some(from);
        self.transaction.params = params;
        self.state = State::Mail;
    }

    fn rcpt(&mut self, to: Mailbox) {
        if !matches!(self.state, State::Mail | State::Rcpt) {
            return self.out_of_sequence();
        }
        if to.is_empty() {
            return self.reply(550, "invalid empty mailbox");
        }
        if self.config.smtputf8_strict && to.is_utf8() && !self.transaction.params.smtputf8 {
            return self.reply(553, "mailbox name not allowed: SMTPUTF8 required");
        }
        if self.transaction.recipients.len() >= self.config.max_recipients {
            return self.reply(452, "too many recipients");
        }
        if self.config.verify_recipients {
            let from = self.transaction.from.as_ref().map(|f| f.to_string());
            self.verifying = to.to_string();
            self.events.push_back(Event::Verify {
                address: to.to_string(),
                from: Some(from.unwrap_or_default()),
            });
            self.waiting = Some(Waiting::Verify { vrfy: false });
        } else {
            self.add_recipient(Recipient {
                address: to.to_string(),
                local: None,
            });
        }
    }

    fn add_recipient(&mut self, recipient: Recipient) {
        let asked = recipient.address.clone();
        self.add_verified_recipient(&asked, recipient);
    }

    /// E-MailRelay compatibility: the reply names the address the client
    /// gave, not a verifier's rewrite or mailbox, and has two spaces before
    /// `OK` for a local recipient.
    fn add_verified_recipient(&mut self, asked: &str, recipient: Recipient) {
        let gap = if recipient.local.is_some() { "  " } else { " " };
        self.reply(250, &format!("recipient <{asked}>{gap}OK"));
        self.transaction.recipients.push(recipient);
        self.state = State::Rcpt;
    }

    fn vrfy(&mut self, address: String) {
        if !self.config.vrfy {
            return self.reply(502, "command not implemented");
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

    /// STARTTLS (RFC 3207 section 4). Anything the client pipelined behind
    /// it is discarded here, before the handshake.
    fn starttls(&mut self) {
        if !self.config.starttls {
            return self.reply(502, "command not implemented");
        }
        if self.secure {
            return self.bad_command(503, "TLS already active");
        }
        if !matches!(self.state, State::Start | State::Ready) {
            return self.out_of_sequence();
        }
        self.reply(220, "ready to start TLS");
        self.input.clear();
        self.discarding_command = false;
        self.events.push_back(Event::StartTls);
        self.waiting = Some(Waiting::Tls);
    }

    fn data_command(&mut self) {
        match self.state {
            // RFC 3030 section 3: a BINARYMIME message goes by BDAT only.
            State::Rcpt if self.transaction.params.body == Body::BinaryMime => self.reply(
                503,
                "invalid data command with binarymime -- use RSET to resynchronise",
            ),
            State::Rcpt => {
                self.events.push_back(Event::MessageStart);
                self.waiting = Some(Waiting::MessageStart { first_chunk: None });
            }
            State::Mail => self.reply(503, "no recipients"),
            _ => self.out_of_sequence(),
        }
    }

    /// BDAT (RFC 3030). Whatever the verdict, the chunk's octets are
    /// consumed as data and never executed as commands (a 2.6.1 gap).
    fn bdat(&mut self, size: Option<u64>, last: bool) {
        let Some(size) = size else {
            return self.bad_command(501, "invalid BDAT size");
        };
        // E-MailRelay compatibility: an empty chunk that is not the last
        // carries nothing and is refused.
        if size == 0 && !last && self.config.chunking {
            return self.bad_command(501, "invalid argument");
        }
        let refuse = |s: &mut Self, code, text| {
            s.chunk = Some(Chunk {
                size,
                remaining: size,
                last,
                keep: false,
            });
            s.bad_command(code, text);
        };
        match self.state {
            _ if !self.config.chunking => refuse(self, 500, "command unrecognized"),
            State::Rcpt => {
                self.events.push_back(Event::MessageStart);
                self.waiting = Some(Waiting::MessageStart {
                    first_chunk: Some((size, last)),
                });
            }
            State::Bdat => self.start_chunk(size, last, true),
            State::Mail => refuse(self, 503, "no recipients"),
            _ => refuse(
                self,
                503,
                "command out of sequence -- use RSET to resynchronise",
            ),
        }
    }

    fn start_chunk(&mut self, size: u64, last: bool, keep: bool) {
        self.chunk = Some(Chunk {
            size,
            remaining: size,
            last,
            keep,
        });
        let total = self.data.size.checked_add(size);
        if total.is_none_or(|t| self.config.max_size > 0 && t > self.config.max_size) {
            self.data.too_large = true;
        }
        self.data.size = total.unwrap_or(u64::MAX);
        if size == 0 {
            self.end_chunk();
        }
    }

    /// Takes as many of the chunk's octets as have arrived.
    fn consume_chunk(&mut self) -> bool {
        let Some(mut chunk) = self.chunk else {
            return false;
        };
        let n = self
            .input
            .len()
            .min(usize::try_from(chunk.remaining).unwrap_or(usize::MAX));
        if n == 0 && chunk.remaining > 0 {
            return false;
        }
        if chunk.keep && !self.data.too_large {
            self.data.chunk.extend_from_slice(&self.input[..n]);
            if self.data.chunk.len() >= DATA_CHUNK {
                self.flush_data();
            }
        }
        self.input.drain(..n);
        chunk.remaining -= n as u64;
        self.chunk = Some(chunk);
        if chunk.remaining == 0 {
            self.end_chunk();
        }
        true
    }

    fn end_chunk(&mut self) {
        let Some(chunk) = self.chunk.take() else {
            return;
        };
        if !chunk.keep {
            return;
        }
        self.flush_data();
        if self.config.trace {
            self.trace.push(format!(
                "rx<<: [{} octets of message content not logged]",
                chunk.size
            ));
        }
        if !chunk.last {
            return self.reply(250, &format!("{} bytes received", chunk.size));
        }
        self.state = State::Ready;
        if self.data.too_large {
            self.events.push_back(Event::MessageAbort);
            self.reply(552, "message size exceeds fixed maximum message size");
            self.reset_transaction();
        } else {
            self.events.push_back(Event::MessageEnd);
            self.waiting = Some(Waiting::MessageEnd);
        }
    }

    // ---- DATA phase ----

    fn process_data(&mut self) -> bool {
        if self.data.in_long_line {
            return self.continue_long_line();
        }
        match scan_line(&self.input, MAX_TEXT_LINE, Terminator::CrLf) {
            Scan::Incomplete => false,
            Scan::Overflow => {
                // E-MailRelay compatibility: accepted, and passed on as it came.
                self.data.in_long_line = true;
                let keep = partial_terminator(&self.input[..MAX_TEXT_LINE], Terminator::CrLf);
                self.take_text(MAX_TEXT_LINE - keep, true);
                true
            }
            Scan::Line { content, total } => {
                if &self.input[..content] == b"." {
                    self.input.drain(..total);
                    self.end_of_data();
                } else {
                    self.take_text(total, true);
                }
                true
            }
        }
    }

    /// The rest of a long line: everything up to and including its CRLF.
    fn continue_long_line(&mut self) -> bool {
        match skip_to_terminator(&self.input, Terminator::CrLf) {
            Some(n) => {
                self.take_text(n, false);
                self.data.in_long_line = false;
                true
            }
            None => {
                let keep = partial_terminator(&self.input, Terminator::CrLf);
                let n = self.input.len() - keep;
                if n > 0 {
                    self.take_text(n, false);
                }
                false
            }
        }
    }

    /// Moves `total` octets of text into the chunk; at the start of a line
    /// the stuffed dot is removed (RFC 5321 section 4.5.2).
    fn take_text(&mut self, total: usize, line_start: bool) {
        let start = usize::from(line_start && self.input[0] == b'.');
        let len = (total - start) as u64;
        self.data.size += len;
        if self.config.max_size > 0 && self.data.size > self.config.max_size {
            self.data.too_large = true;
        }
        if !self.data.too_large {
            self.data.chunk.extend_from_slice(&self.input[start..total]);
        }
        self.input.drain(..total);
        if self.data.chunk.len() >= DATA_CHUNK {
            self.flush_data();
        }
    }

    fn flush_data(&mut self) {
        if !self.data.chunk.is_empty() {
            self.events
                .push_back(Event::MessageData(mem::take(&mut self.data.chunk)));
        }
    }

    fn end_of_data(&mut self) {
        self.flush_data();
        if self.config.trace {
            self.trace.push("rx<<: [message content not logged]".into());
        }
        self.state = State::Ready;
        if self.data.too_large {
            self.events.push_back(Event::MessageAbort);
            self.reply(552, "message size exceeds fixed maximum message size");
            self.reset_transaction();
        } else {
            self.events.push_back(Event::MessageEnd);
            self.waiting = Some(Waiting::MessageEnd);
        }
    }

    // ---- helpers ----

    fn reset_transaction(&mut self) {
        let helo = mem::take(&mut self.transaction.helo);
        let esmtp = self.transaction.esmtp;
        self.transaction = Transaction {
            helo,
            esmtp,
            ..Transaction::default()
        };
        if self.state != State::Closed && self.state != State::Start {
            self.state = State::Ready;
        }
    }

    fn out_of_sequence(&mut self) {
        self.bad_command(503, "command out of sequence -- use RSET to resynchronise");
    }

    fn bad_command(&mut self, code: u16, text: &str) {
        self.reply(code, text);
        self.count_bad_command();
    }

    fn count_bad_command(&mut self) {
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            self.reply(
                421,
                &format!(
                    "{} too many errors -- closing connection",
                    self.config.domain
                ),
            );
            self.close();
        }
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.waiting = None;
        self.input.clear();
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
            for line in written
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .filter(|l| !l.is_empty())
            {
                self.trace.push(format!("tx>>: \"{}\"", printable(line)));
            }
        }
    }

    fn trace_rx(&mut self, line: &str) {
        if self.config.trace {
            self.trace.push(format!("rx<<: \"{line}\""));
        }
    }
}
