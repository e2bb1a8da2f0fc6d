//! Server session transcripts: the E-MailRelay 2.6.1 dialogue (as its
//! golden transcripts record it), pipelining, DATA edge cases and limits,
//! all in memory.
//!
//! A transcript is a list of `C:` (client sends, CRLF added) and `S:`
//! (exact expected server reply line) entries. The driver stand-in accepts
//! every recipient and stores every message in a Vec.

use emailrelay_proto::sasl::{base64_encode, Credentials, HmacMd5Key, Mechanism};
use emailrelay_proto::smtp::{
    AuthConfig, AuthResult, Event, LogLine, MessageResult, Reply, ServerConfig, ServerSession,
    VerifyResult,
};

struct Harness {
    session: ServerSession,
    stored: Vec<Vec<u8>>,
    current: Vec<u8>,
    closed: bool,
    verify: Box<dyn Fn(&str) -> VerifyResult>,
    commit: MessageResult,
    /// Accounts the stand-in driver accepts: (name, password).
    accounts: Vec<(&'static str, &'static str)>,
    /// What the driver was asked to check, name and mechanism.
    checked: Vec<(Mechanism, String)>,
    /// How many content files the stand-in driver made (at MAIL).
    opened: usize,
    /// The octets the stand-in driver writes first (a `Received` line).
    prefix: u64,
    /// Every event, in order, for tests of the sequence.
    events: Vec<Event>,
}

impl Harness {
    fn new(config: ServerConfig) -> Harness {
        Harness {
            session: ServerSession::new(config),
            stored: Vec::new(),
            current: Vec::new(),
            closed: false,
            verify: Box::new(|a| VerifyResult::Remote(a.to_string())),
            commit: MessageResult::Accepted,
            accounts: vec![("alice", "e=mc2"), ("carol", "my password")],
            checked: Vec::new(),
            opened: 0,
            prefix: 0,
            events: Vec::new(),
        }
    }

    /// The log lines so far, warnings marked as the log marks them.
    fn log(&mut self) -> Vec<String> {
        self.session
            .poll_log()
            .into_iter()
            .map(|line| match line {
                LogLine::Trace(text) => text,
                LogLine::Warning(text) => format!("warning: {text}"),
                LogLine::WarningOnce(text) => format!("warning (once): {text}"),
            })
            .collect()
    }

    fn feed(&mut self, bytes: &[u8]) -> String {
        self.session.handle_input(bytes);
        self.drive();
        self.output()
    }

    fn output(&mut self) -> String {
        let mut out = Vec::new();
        self.session.poll_output(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn drive(&mut self) {
        while let Some(event) = self.session.poll_event() {
            self.events.push(event.clone());
            match event {
                Event::Verify { address, .. } => {
                    let result = (self.verify)(&address);
                    self.session.answer_verify(result)
                }
                Event::MessageOpen => {
                    self.opened += 1;
                    self.session.answer_message_open()
                }
                Event::MessageStart => {
                    self.current.clear();
                    self.session.answer_message_start(Ok(self.prefix))
                }
                Event::MessageData(chunk) => self.current.extend_from_slice(&chunk),
                Event::MessageEnd => {
                    if self.commit == MessageResult::Accepted {
                        self.stored.push(std::mem::take(&mut self.current));
                    }
                    self.session.answer_message(self.commit.clone())
                }
                Event::MessageAbort => self.current.clear(),
                Event::Close => self.closed = true,
                // The handshake itself is the driver's; here it always succeeds.
                Event::StartTls => self.session.tls_started(),
                Event::AuthNonce => self.session.answer_auth_nonce("4f1c9a.1795530688"),
                Event::Authenticate {
                    mechanism,
                    credentials,
                } => {
                    self.checked
                        .push((mechanism, credentials.user().to_string()));
                    let result = match self.check(&credentials) {
                        true => AuthResult::Accepted {
                            name: credentials.user().to_string(),
                        },
                        false => AuthResult::Rejected,
                    };
                    self.session.answer_auth(result)
                }
            }
        }
    }

    fn check(&self, credentials: &Credentials) -> bool {
        let password = |user: &str| {
            self.accounts
                .iter()
                .find(|(u, _)| *u == user)
                .map(|(_, p)| *p)
        };
        match credentials {
            Credentials::Password {
                user, password: p, ..
            } => password(user) == Some(p),
            Credentials::CramMd5 {
                user,
                challenge,
                digest,
            } => password(user).is_some_and(|p| {
                HmacMd5Key::new(p.as_bytes())
                    .mac(challenge.as_bytes())
                    .as_slice()
                    == digest
            }),
            // SMTP has no APOP.
            Credentials::Apop { .. } => false,
        }
    }

    /// Runs a transcript; the greeting is the first `S:` line.
    fn run(&mut self, transcript: &str) {
        let mut expected: Vec<String> = Vec::new();
        let mut got = self.output();
        for line in transcript.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line == "C:" {
                got.push_str(&self.feed(b"\r\n"));
            } else if let Some(c) = line.strip_prefix("C: ") {
                got.push_str(&self.feed(format!("{c}\r\n").as_bytes()));
            } else if let Some(s) = line.strip_prefix("S: ") {
                expected.push(s.to_string());
            } else if line == "S:" {
                expected.push(String::new());
            } else {
                panic!("bad transcript line {line:?}");
            }
        }
        let got: Vec<&str> = got.split_terminator("\r\n").collect();
        assert_eq!(got, expected);
    }
}

fn relay_config() -> ServerConfig {
    ServerConfig {
        domain: "relay.example.com".into(),
        ident: Some("E-MailRelay-rs V0.1.0".into()),
        ..ServerConfig::default()
    }
}

#[test]
fn the_default_dialogue_matches_emailrelay() {
    let mut h = Harness::new(relay_config());
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: MAIL FROM:<alice@example.com>
         S: 250 sender <alice@example.com> OK
         C: RCPT TO:<bob@example.org>
         S: 250 recipient <bob@example.org> OK
         C: RCPT TO:<>
         S: 550 invalid empty mailbox
         C: DATA
         S: 354 start mail input -- end with <CRLF>.<CRLF>
         C: Subject: hi
         C:
         C: ..leading dot
         C: .
         S: 250 message processed
         C: VRFY bob
         S: 252 cannot verify but will accept: bob
         C: NOOP
         S: 250 noop
         C: RSET
         S: 250 state reset
         C: MAIL FROM:<a@b>
         S: 250 sender <a@b> OK
         C: MAIL FROM:<a@b>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: HELP
         S: 502 command not implemented
         C: XYZZY
         S: 500 command unrecognized
         C: BDAT 0 LAST
         S: 500 command unrecognized
         C: QUIT
         S: 221 OK",
    );
    assert!(h.closed);
    assert_eq!(
        h.stored,
        vec![b"Subject: hi\r\n\r\n.leading dot\r\n".to_vec()]
    );
}

#[test]
fn helo_gets_a_one_line_reply_and_anonymous_hides_vrfy_and_ident() {
    let config = ServerConfig {
        ident: None,
        vrfy: false,
        ..relay_config()
    };
    let mut h = Harness::new(config);
    // E-MailRelay 2.6.1 with --anonymous.
    h.run(
        "S: 220 greeting
         C: HELO vm
         S: 250 hello
         C: EHLO vm
         S: 250-smtp says hello
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: VRFY bob
         S: 252 cannot vrfy",
    );
}

#[test]
fn size_is_advertised_and_enforced_both_ways() {
    let mut h = Harness::new(ServerConfig {
        max_size: 20,
        ..relay_config()
    });
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-SIZE 20
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: MAIL FROM:<a@b> SIZE=21
         S: 552 message size exceeds fixed maximum message size
         C: MAIL FROM:<a@b> SIZE=20
         S: 250 sender <a@b> OK
         C: RCPT TO:<c@d>
         S: 250 recipient <c@d> OK
         C: DATA
         S: 354 start mail input -- end with <CRLF>.<CRLF>
         C: 0123456789
         C: 0123456789
         C: .
         S: 552 message size exceeds fixed maximum message size
         C: MAIL FROM:<a@b>
         S: 250 sender <a@b> OK",
    );
    assert!(h.stored.is_empty());
}

#[test]
fn pipelined_commands_are_answered_in_order_in_one_batch() {
    let mut h = Harness::new(relay_config());
    h.output();
    let got = h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n");
    assert!(got.ends_with(
        "250 sender <a@b> OK\r\n250 recipient <c@d> OK\r\n250 recipient <e@f> OK\r\n354 start mail input -- end with <CRLF>.<CRLF>\r\n"
    ));
    let got = h.feed(b"body\r\n.\r\nMAIL FROM:<x@y>\r\nQUIT\r\n");
    assert_eq!(
        got,
        "250 message processed\r\n250 sender <x@y> OK\r\n221 OK\r\n"
    );
    assert_eq!(h.stored, vec![b"body\r\n".to_vec()]);
}

#[test]
fn bare_lf_dot_lf_does_not_end_data() {
    let mut h = Harness::new(relay_config());
    h.feed(b"HELO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    let got = h.feed(b"one\n.\nMAIL FROM:<evil@x>\nRCPT TO:<v@y>\n");
    assert_eq!(got, "", "a bare LF must not end the DATA phase");
    let got = h.feed(b"\r\n.\r\n");
    assert_eq!(got, "250 message processed\r\n");
    assert_eq!(
        h.stored,
        vec![b"one\n.\nMAIL FROM:<evil@x>\nRCPT TO:<v@y>\n\r\n".to_vec()]
    );
}

#[test]
fn end_of_data_split_across_reads_is_found() {
    let mut h = Harness::new(relay_config());
    h.feed(b"HELO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    let replies: Vec<String> = [&b"abc\r"[..], b"\n", b".", b"\r", b"\n"]
        .into_iter()
        .map(|piece| h.feed(piece))
        .collect();
    // Nothing until the last octet of the end marker, then the reply.
    assert_eq!(replies, ["", "", "", "", "250 message processed\r\n"]);
    assert_eq!(h.stored, vec![b"abc\r\n".to_vec()]);
}

#[test]
fn long_command_lines_are_fine_with_one_warning() {
    let mut h = Harness::new(ServerConfig {
        trace: true,
        ..relay_config()
    });
    h.output();
    h.log();
    let long = format!(
        "NOOP {}\r\nNOOP {}\r\nNOOP\r\n",
        "x".repeat(2000),
        "y".repeat(1500)
    );
    assert_eq!(
        h.feed(long.as_bytes()),
        "250 noop\r\n250 noop\r\n250 noop\r\n"
    );
    let log = h.log();
    // E-MailRelay 2.6.1: a warning for the first line over 1000 octets only.
    assert_eq!(log[0], "warning: very long line detected: 2005 > 1000");
    assert_eq!(log.iter().filter(|l| l.starts_with("warning")).count(), 1);
    assert!(log[1].starts_with("rx<<: \"NOOP xxxx"));
}

#[test]
fn input_without_crlf_is_held_only_so_far_then_the_session_ends() {
    for step in [1000, 80_000, 100_000] {
        let mut h = Harness::new(relay_config());
        h.output();
        let mut got = String::new();
        for piece in format!("NOOP {}", "n".repeat(100_000))
            .as_bytes()
            .chunks(step)
        {
            got.push_str(&h.feed(piece));
        }
        // E-MailRelay 2.6.1: no reply, the connection closes.
        assert_eq!(got, "", "step {step}");
        assert!(h.closed && h.session.is_closed(), "step {step}");
        assert_eq!(h.session.close_reason(), "server protocol overflow");
        assert!(!h.session.has_partial_input(), "the buffer is released");
    }
    // Just under the limit, with its CRLF, is still a command.
    let mut h = Harness::new(relay_config());
    h.output();
    let line = format!("NOOP {}\r\n", "n".repeat(79_000));
    assert_eq!(h.feed(line.as_bytes()), "250 noop\r\n");
}

#[test]
fn command_lines_end_at_crlf_only() {
    let mut h = Harness::new(ServerConfig {
        trace: true,
        ..relay_config()
    });
    h.output();
    // E-MailRelay 2.6.1: bare LFs are part of one long EHLO line.
    let got = h.feed(b"EHLO client.example\nNOOP\nMAIL FROM:<a@b>\nDATA\nx\n.\n\r\n");
    assert!(
        got.starts_with("250-relay.example.com says hello\r\n"),
        "{got}"
    );
    assert!(got.ends_with("250 8BITMIME\r\n"), "{got}");
    assert_eq!(
        h.feed(b".\r\nQUIT\nQUIT\r\n"),
        "500 command unrecognized\r\n500 command unrecognized\r\n"
    );
    assert!(h.log().contains(&"rx<<: \"QUIT\\nQUIT\"".to_string()));
    assert_eq!(
        h.session.transaction().helo,
        "client.example\nNOOP\nMAIL FROM:<a@b>\nDATA\nx\n.\n"
    );
    assert!(h.stored.is_empty() && h.opened == 0);
}

#[test]
fn text_lines_over_1000_octets_pass_through_unchanged() {
    // E-MailRelay compatibility: old devices send unwrapped HTML and long
    // base64; 2.6.1 accepts them, and so do we, a byte at a time or whole.
    for step in [1, 7, 4096] {
        let mut h = Harness::new(relay_config());
        h.output();
        h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
        let long = format!(".{}.\r\n", "y".repeat(5000));
        let text = format!("ok\r\n{long}after\r\n..dot\r\n.\r\n");
        let mut out = String::new();
        for piece in text.as_bytes().chunks(step) {
            out.push_str(&h.feed(piece));
        }
        assert_eq!(out, "250 message processed\r\n", "step {step}");
        let stored = String::from_utf8(h.stored.concat()).unwrap();
        assert_eq!(
            stored,
            format!("ok\r\n{}after\r\n.dot\r\n", &long[1..]),
            "step {step}"
        );
    }
}

#[test]
fn a_998_octet_text_line_is_accepted() {
    let mut h = Harness::new(relay_config());
    h.feed(b"HELO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    let line = "z".repeat(998);
    assert_eq!(
        h.feed(format!("{line}\r\n.\r\n").as_bytes()),
        "250 message processed\r\n"
    );
    assert_eq!(h.stored[0].len(), 1000);
}

#[test]
fn sequence_errors_as_2_6_1_answers_them() {
    let mut h = Harness::new(relay_config());
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: MAIL FROM:<a@b>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: RCPT TO:<a@b>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: DATA
         S: 503 command out of sequence -- use RSET to resynchronise
         C: RSET
         S: 250 state reset
         C: MAIL FROM:<a@b>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: MAIL FROM:<a@b>
         S: 250 sender <a@b> OK
         C: DATA
         S: 554 no valid recipients
         C: RCPT TO:<c@d>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: QUIT now
         S: 221 OK",
    );
    assert!(h.closed);
    assert_eq!(h.opened, 1);
    // The message opened at MAIL was dropped at the 554.
    assert!(h.events.contains(&Event::MessageAbort));
}

#[test]
fn the_eighth_protocol_error_ends_the_session_silently() {
    let mut h = Harness::new(relay_config());
    // Argument errors are not counted, as in 2.6.1.
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: EHLO
         S: 501 parameter required
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: MAIL TO:<a@b>
         S: 553 mailbox name not allowed: invalid mail-from command
         C: MAIL FROM:<a b@c>
         S: 553 mailbox name not allowed: invalid character in mailbox name
         C: RCPT TO:<c@d>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: VRFY
         S: 550 invalid mailbox
         C: X1
         S: 500 command unrecognized
         C: X2
         S: 500 command unrecognized
         C: X3
         S: 500 command unrecognized
         C:
         S: 500 command unrecognized
         C:  \t
         S: 500 command unrecognized
         C: DATA
         S: 503 command out of sequence -- use RSET to resynchronise
         C: X8
         S: 500 command unrecognized",
    );
    assert!(h.closed && h.session.is_closed());
    assert_eq!(
        h.session.close_reason(),
        "smtp protocol done: too many protocol errors from the client"
    );
    assert_eq!(h.feed(b"NOOP\r\n"), "");
}

#[test]
fn the_recipient_cap_answers_452() {
    let mut h = Harness::new(ServerConfig {
        max_recipients: 2,
        ..relay_config()
    });
    h.feed(b"HELO vm\r\nMAIL FROM:<a@b>\r\n");
    let got = h.feed(b"RCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\nRCPT TO:<3@x>\r\n");
    assert_eq!(
        got,
        "250 recipient <1@x> OK\r\n250 recipient <2@x> OK\r\n452 too many recipients\r\n"
    );
}

#[test]
fn a_client_that_goes_on_past_the_recipient_cap_is_disconnected() {
    let mut h = Harness::new(ServerConfig {
        max_recipients: 2,
        max_recipient_overshoot: 3,
        ..relay_config()
    });
    h.feed(b"HELO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\n");
    // Three refusals, then a new transaction starts the count afresh.
    let refused = "452 too many recipients\r\n".repeat(3);
    assert_eq!(h.feed(&b"RCPT TO:<3@x>\r\n".repeat(3)), refused);
    h.feed(b"DATA\r\n");
    assert_eq!(h.feed(b"body\r\n.\r\n"), "250 message processed\r\n");
    h.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\n");
    assert_eq!(h.feed(&b"RCPT TO:<3@x>\r\n".repeat(3)), refused);
    // The fourth in one transaction ends the session, and its message.
    assert_eq!(
        h.feed(b"RCPT TO:<3@x>\r\nNOOP\r\n"),
        "421 relay.example.com too many recipients -- closing connection\r\n"
    );
    assert!(h.closed && h.session.is_closed());
    assert_eq!(
        h.session.close_reason(),
        "smtp protocol done: too many recipients"
    );
    assert_eq!(h.stored.len(), 1);
    assert_eq!(h.events.last(), Some(&Event::Close));
    assert!(h.events.contains(&Event::MessageAbort));
}

#[test]
fn by_default_1000_recipients_then_1000_refusals_then_421() {
    let mut h = Harness::new(relay_config());
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\n");
    let rcpts: Vec<u8> = (0..2000)
        .flat_map(|i| format!("RCPT TO:<r{i}@x>\r\n").into_bytes())
        .collect();
    let got = h.feed(&rcpts);
    assert_eq!(got.matches("250 recipient").count(), 1000);
    assert_eq!(got.matches("452 too many recipients").count(), 1000);
    assert!(!h.closed);
    assert_eq!(
        h.feed(b"RCPT TO:<one-more@x>\r\n"),
        "421 relay.example.com too many recipients -- closing connection\r\n"
    );
    assert!(h.closed);
}

#[test]
fn verifier_answers_shape_the_replies_and_envelope() {
    let mut h = Harness::new(ServerConfig {
        verify_recipients: true,
        ..relay_config()
    });
    h.verify = Box::new(|a| match a {
        "postmaster" => VerifyResult::Local {
            mailbox: "pm".into(),
            full_name: "Post Master <pm@x>".into(),
        },
        "bad@x" => VerifyResult::Reject(Reply::new(550, "invalid mailbox: bad@x")),
        "later@x" => VerifyResult::Reject(Reply::new(450, "mailbox unavailable: later@x")),
        other => VerifyResult::Remote(other.to_ascii_lowercase()),
    });
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\n");
    let got = h.feed(b"RCPT TO:<postmaster>\r\nRCPT TO:<bad@x>\r\nRCPT TO:<later@x>\r\nRCPT TO:<Bob@X>\r\nVRFY postmaster\r\nVRFY Carol@X\r\n");
    // E-MailRelay 2.6.1: replies name the address as given (not the
    // mailbox or the rewrite), with two spaces before OK for a local one.
    assert_eq!(
        got,
        "250 recipient <postmaster>  OK\r\n550 invalid mailbox: bad@x\r\n450 mailbox unavailable: later@x\r\n\
         250 recipient <Bob@X> OK\r\n250 Post Master <pm@x>\r\n252 cannot verify but will accept: Carol@X\r\n"
    );
    let rcpts = &h.session.transaction().recipients;
    assert_eq!(rcpts.len(), 2);
    assert_eq!(rcpts[0].local.as_deref(), Some("pm"));
    assert_eq!(rcpts[1].address, "bob@x");
}

#[test]
fn storage_failure_is_a_4xx_and_the_session_goes_on() {
    let mut h = Harness::new(relay_config());
    h.commit = MessageResult::Rejected(Reply::new(452, "insufficient system storage"));
    h.feed(b"HELO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    assert_eq!(h.feed(b"x\r\n.\r\n"), "452 insufficient system storage\r\n");
    assert_eq!(h.feed(b"MAIL FROM:<a@b>\r\n"), "250 sender <a@b> OK\r\n");
}

#[test]
fn a_stray_or_duplicate_answer_is_refused_and_the_pending_one_still_counts() {
    let mut h = Harness::new(ServerConfig {
        verify_recipients: true,
        ..relay_config()
    });
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\n");
    // Waiting for the verifier: an end-of-message answer is not it.
    h.session.handle_input(b"RCPT TO:<c@d>\r\nNOOP\r\n");
    assert!(matches!(h.session.poll_event(), Some(Event::Verify { .. })));
    h.session.answer_message(MessageResult::Accepted);
    assert_eq!(h.output(), "");
    assert_eq!(h.session.poll_event(), None);
    h.session.answer_verify(VerifyResult::Remote("c@d".into()));
    assert_eq!(h.output(), "250 recipient <c@d> OK\r\n250 noop\r\n");
    // A second verifier answer finds nothing pending.
    h.session
        .answer_verify(VerifyResult::Reject(Reply::new(550, "no")));
    assert_eq!(h.output(), "");
    assert_eq!(h.session.transaction().recipients.len(), 1);
    // Waiting for the message's commit: a verifier answer is not it, and
    // the commit's own answer still ends the message.
    h.feed(b"DATA\r\n");
    h.session.handle_input(b"x\r\n.\r\nNOOP\r\n");
    let mut ended = false;
    while let Some(event) = h.session.poll_event() {
        ended |= event == Event::MessageEnd;
    }
    assert!(ended);
    h.session.answer_verify(VerifyResult::Remote("e@f".into()));
    assert_eq!(h.output(), "");
    h.session.answer_message(MessageResult::Accepted);
    assert_eq!(h.output(), "250 message processed\r\n250 noop\r\n");
    // A duplicate commit answer is not a second message.
    h.session
        .answer_message(MessageResult::Rejected(Reply::new(452, "full")));
    assert_eq!(h.output(), "");
    assert_eq!(h.feed(b"NOOP\r\n"), "250 noop\r\n");
}

#[test]
fn without_chunking_bdat_is_an_unknown_command() {
    let mut h = Harness::new(relay_config());
    h.feed(b"HELO vm\r\n");
    // E-MailRelay 2.6.1: nothing was offered, so nothing is read as a chunk.
    let got = h.feed(b"BDAT 10 LAST\r\nSTARTTLS\r\nNOOP\r\n");
    assert_eq!(
        got,
        "500 command unrecognized\r\n500 command unrecognized\r\n250 noop\r\n"
    );
}

#[test]
fn mail_parameters_are_recorded() {
    let mut h = Harness::new(relay_config());
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8 AUTH=bob\r\n");
    let t = h.session.transaction();
    assert!(t.esmtp);
    assert_eq!(t.helo, "vm");
    // E-MailRelay compatibility: Utf8MailboxNames is about local parts.
    assert!(t.params.smtputf8 && !t.is_utf8());
    assert_eq!(t.params.auth.as_deref(), Some("bob"));
    assert_eq!(t.params.body.envelope_keyword(), "8bit");
}

#[test]
fn malformed_mail_parameters_are_ignored_as_2_6_1_ignores_them() {
    let mut h = Harness::new(ServerConfig {
        max_size: 100,
        ..relay_config()
    });
    h.output();
    h.feed(b"EHLO vm\r\n");
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b> BODY=NONSENSE SIZE=xyz X-FOO=1\r\n"),
        "250 sender <a@b> OK\r\n"
    );
    let t = h.session.transaction();
    assert_eq!(t.params.body.envelope_keyword(), "unknown");
    assert_eq!(t.params.size, Some(0));
    h.feed(b"RSET\r\n");
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b> SMTPUTF8=yes\r\n"),
        "553 mailbox name not allowed: invalid mail-from parameter\r\n"
    );
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b> SIZE=101\r\n"),
        "552 message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b> SIZE=100\r\n"),
        "250 sender <a@b> OK\r\n"
    );
}

#[test]
fn a_trickle_of_single_bytes_is_reassembled() {
    let mut h = Harness::new(relay_config());
    h.output();
    let mut got = String::new();
    for b in b"HELO vm\r\nNOOP\r\n" {
        got.push_str(&h.feed(&[*b]));
    }
    assert_eq!(got, "250 hello\r\n250 noop\r\n");
    assert!(!h.session.has_partial_input());
}

#[test]
fn trace_lines_never_include_content() {
    let mut h = Harness::new(ServerConfig {
        trace: true,
        ..relay_config()
    });
    h.feed(b"HELO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nsecret\r\n.\r\n");
    let trace = h.log().join("\n");
    assert!(trace.contains("rx<<: \"HELO vm\""));
    assert!(trace.ends_with(
        "rx<<: [message content not logged]\nrx<<: \".\"\ntx>>: \"250 message processed\""
    ));
    assert!(!trace.contains("secret"));
}

#[test]
fn the_session_waits_at_mail_so_the_content_file_is_logged_in_order() {
    let mut h = Harness::new(ServerConfig {
        trace: true,
        ..relay_config()
    });
    h.output();
    h.log();
    h.session
        .handle_input(b"EHLO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    // E-MailRelay 2.6.1 makes the content file when MAIL is accepted:
    // nothing after MAIL is looked at until the driver has made it.
    let log = h.log();
    assert_eq!(log.last().unwrap(), "tx>>: \"250 sender <a@b> OK\"");
    assert_eq!(h.session.poll_event(), Some(Event::MessageOpen));
    assert_eq!(h.session.poll_event(), None);
    h.session.answer_message_open();
    assert_eq!(
        h.log(),
        [
            "rx<<: \"RCPT TO:<c@d>\"",
            "tx>>: \"250 recipient <c@d> OK\""
        ]
    );
    // A transaction given up is a message the driver throws away.
    h.feed(b"RSET\r\nMAIL FROM:<a@b>\r\nEHLO vm\r\nMAIL FROM:<a@b>\r\nQUIT\r\n");
    let opens = h
        .events
        .iter()
        .filter(|e| **e == Event::MessageOpen)
        .count();
    let aborts = h
        .events
        .iter()
        .filter(|e| **e == Event::MessageAbort)
        .count();
    assert_eq!((opens, aborts), (2, 3));
}

fn chunking_config() -> ServerConfig {
    ServerConfig {
        chunking: true,
        max_size: 100,
        ..relay_config()
    }
}

#[test]
fn bdat_chunks_make_a_message_when_chunking_is_on() {
    let mut h = Harness::new(chunking_config());
    h.output();
    let got = h.feed(b"EHLO vm\r\n");
    assert!(
        got.contains("250-CHUNKING\r\n") || got.contains("250 CHUNKING\r\n"),
        "{got}"
    );
    h.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    // A chunk may hold anything, including what looks like commands and a lone dot.
    let got = h.feed(b"BDAT 18\r\nRSET\r\n.\r\nQUIT\r\nabcBDAT 3 LAST\r\nxyzNOOP\r\n");
    assert_eq!(
        got,
        "250 18 bytes received\r\n250 message processed\r\n250 noop\r\n"
    );
    assert_eq!(h.stored, vec![b"RSET\r\n.\r\nQUIT\r\nabcxyz".to_vec()]);
}

#[test]
fn bdat_sizes_are_checked_against_the_limit_and_overflow() {
    let mut h = Harness::new(chunking_config());
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    let got = h.feed(
        format!(
            "BDAT 60\r\n{}BDAT 60 LAST\r\n{}",
            "x".repeat(60),
            "y".repeat(60)
        )
        .as_bytes(),
    );
    assert_eq!(
        got,
        "250 60 bytes received\r\n552 message size exceeds fixed maximum message size\r\n"
    );
    assert!(h.stored.is_empty());
    h.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    let got = h.feed(b"BDAT 18446744073709551615\r\nBDAT 2 LAST\r\n");
    assert_eq!(got, "", "the huge chunk swallows what follows as data");
    assert!(h.stored.is_empty());
}

#[test]
fn bdat_out_of_sequence_is_refused_but_still_consumed() {
    let mut h = Harness::new(chunking_config());
    h.feed(b"EHLO vm\r\n");
    // The 10 octets "MAIL FROM:" are the chunk; the NOOP after them is a
    // command (2.6.1 would read the chunk as commands).
    let got = h.feed(b"BDAT 10 LAST\r\nMAIL FROM:NOOP\r\n");
    assert_eq!(
        got,
        "503 command out of sequence -- use RSET to resynchronise\r\n250 noop\r\n"
    );
    // As in 2.6.1, only RSET, HELO or EHLO go on from there.
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b>\r\n"),
        "503 command out of sequence -- use RSET to resynchronise\r\n"
    );
    h.feed(b"RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1\r\nx");
    assert_eq!(
        h.feed(b"DATA\r\n"),
        "503 command out of sequence -- use RSET to resynchronise\r\n"
    );
    assert_eq!(h.feed(b"RSET\r\n"), "250 state reset\r\n");
    assert!(h.events.contains(&Event::MessageAbort));
    // E-MailRelay 2.6.1's chunking transcript: BDAT outside a transaction.
    assert_eq!(
        h.feed(b"BDAT\r\nBDAT x\r\n"),
        "503 command out of sequence -- use RSET to resynchronise\r\n\
         503 command out of sequence -- use RSET to resynchronise\r\n"
    );
    assert!(h.stored.is_empty());
}

#[test]
fn a_bdat_size_with_a_sign_is_not_a_size() {
    // RFC 3030: chunk-size = 1*DIGIT. `+5` was taken as 5 (issue 25).
    for size in ["+5", "+0", "5x", " 0x5"] {
        let mut h = Harness::new(chunking_config());
        h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
        let got = h.feed(format!("BDAT {size} LAST\r\nhello").as_bytes());
        assert_eq!(got, "501 invalid argument\r\n", "{size}");
        assert!(h.stored.is_empty());
        assert!(h.events.contains(&Event::MessageAbort));
    }
}

#[test]
fn bdat_argument_errors_and_no_recipients() {
    let mut h = Harness::new(chunking_config());
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(
        h.feed(b"BDAT 3 LAST\r\nabcNOOP\r\n"),
        "554 no valid recipients\r\n250 noop\r\n"
    );
    h.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    assert_eq!(h.feed(b"BDAT x\r\n"), "501 invalid argument\r\n");
    assert_eq!(
        h.feed(b"BDAT 1 LAST\r\n"),
        "503 command out of sequence -- use RSET to resynchronise\r\n"
    );
    h.feed(b"xRSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\nab");
    assert_eq!(h.feed(b"BDAT 0\r\n"), "501 invalid argument\r\n");
    assert!(h.stored.is_empty());
    // The bad chunk ended that message too.
    let opens = h
        .events
        .iter()
        .filter(|e| **e == Event::MessageOpen)
        .count();
    let aborts = h
        .events
        .iter()
        .filter(|e| **e == Event::MessageAbort)
        .count();
    assert_eq!((opens, aborts), (3, 3));
}

#[test]
fn smtputf8_strict_refuses_utf8_addresses_without_the_parameter() {
    let mut h = Harness::new(ServerConfig {
        smtputf8: true,
        smtputf8_strict: true,
        ..relay_config()
    });
    h.feed(b"EHLO vm\r\n");
    // E-MailRelay 2.6.1's words, "smptutf8" and all.
    assert_eq!(
        h.feed("MAIL FROM:<jörg@example.com>\r\n".as_bytes()),
        "553 mailbox name not allowed: invalid character in mailbox name: not using smptutf8\r\n"
    );
    assert_eq!(h.feed(b"MAIL FROM:<a@b>\r\n"), "250 sender <a@b> OK\r\n");
    assert_eq!(
        h.feed("RCPT TO:<zoë@example.com>\r\n".as_bytes()),
        "550 invalid character in mailbox name: not using smtputf8\r\n"
    );
    // A UTF-8 domain is not a UTF-8 mailbox name.
    assert_eq!(
        h.feed("RCPT TO:<zoe@exämple.com>\r\n".as_bytes()),
        "250 recipient <zoe@exämple.com> OK\r\n"
    );
    h.feed(b"RSET\r\n");
    assert_eq!(
        h.feed("MAIL FROM:<jörg@example.com> SMTPUTF8\r\n".as_bytes()),
        "250 sender <jörg@example.com> OK\r\n"
    );
    assert_eq!(
        h.feed("RCPT TO:<zoë@example.com>\r\n".as_bytes()),
        "250 recipient <zoë@example.com> OK\r\n"
    );
    assert!(h.session.transaction().is_utf8());
}

#[test]
fn utf8_domains_are_stored_in_a_labels_and_replies_say_them_as_given() {
    let mut h = Harness::new(relay_config());
    h.feed(b"EHLO vm\r\n");
    assert_eq!(
        h.feed("MAIL FROM:<alice@bücher.example>\r\n".as_bytes()),
        "250 sender <alice@bücher.example> OK\r\n"
    );
    assert_eq!(
        h.feed("RCPT TO:<bob@bücher.example>\r\n".as_bytes()),
        "250 recipient <bob@bücher.example> OK\r\n"
    );
    let t = h.session.transaction();
    assert_eq!(
        t.from.as_ref().unwrap().as_str(),
        "alice@xn--bcher-kva.example"
    );
    assert_eq!(t.recipients[0].address, "bob@xn--bcher-kva.example");
    assert!(!t.is_utf8());
}

fn tls_config() -> ServerConfig {
    ServerConfig {
        starttls: true,
        ..relay_config()
    }
}

#[test]
fn starttls_is_offered_once_and_the_handshake_resets_the_session() {
    let mut h = Harness::new(tls_config());
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: STARTTLS
         S: 503 command out of sequence -- use RSET to resynchronise
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-STARTTLS
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: MAIL FROM:<a@b>
         S: 250 sender <a@b> OK
         C: STARTTLS
         S: 503 command out of sequence -- use RSET to resynchronise
         C: RSET
         S: 250 state reset
         C: STARTTLS now
         S: 220 ready to start tls
         C: RCPT TO:<c@d>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: STARTTLS
         S: 503 command out of sequence -- use RSET to resynchronise",
    );
    assert!(h.session.is_secure());
    assert_eq!(h.session.transaction().helo, "vm");
}

#[test]
fn after_the_handshake_mail_may_come_without_ehlo() {
    let mut h = Harness::new(tls_config());
    h.feed(b"EHLO vm\r\nSTARTTLS\r\n");
    // E-MailRelay compatibility: the session is ready, as 2.6.1's is.
    assert_eq!(h.feed(b"MAIL FROM:<a@b>\r\n"), "250 sender <a@b> OK\r\n");
}

#[test]
fn plaintext_pipelined_behind_starttls_is_never_executed() {
    let mut h = Harness::new(tls_config());
    h.output();
    assert!(h.feed(b"EHLO vm\r\n").contains("250-STARTTLS\r\n"));
    // One packet: STARTTLS plus an injected envelope (CVE-2011-0411).
    let reply = h.feed(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<x@y>\r\n");
    assert_eq!(reply, "220 ready to start tls\r\n");
    assert!(h.session.is_secure());
    assert_eq!(h.session.transaction().from, None);
    // Had the injected MAIL run, this RCPT would be accepted.
    assert_eq!(
        h.feed(b"RCPT TO:<bob@example.org>\r\n"),
        "503 command out of sequence -- use RSET to resynchronise\r\n"
    );
}

#[test]
fn plaintext_arriving_before_the_handshake_is_dropped() {
    let mut session = ServerSession::new(tls_config());
    session.handle_input(b"EHLO vm\r\nSTARTTLS\r\n");
    let mut events = Vec::new();
    while let Some(e) = session.poll_event() {
        events.push(e);
    }
    assert_eq!(events, vec![Event::StartTls]);
    session.handle_input(b"NOOP\r\nQUIT\r\n");
    session.tls_started();
    let mut out = Vec::new();
    session.poll_output(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with("250 8BITMIME\r\n220 ready to start tls\r\n"),
        "{out}"
    );
    assert!(!session.is_closed());
    assert_eq!(session.poll_event(), None);
}

#[test]
fn tls_required_refuses_mail_in_clear_but_not_after_starttls() {
    let mut h = Harness::new(ServerConfig {
        tls_required: true,
        ..tls_config()
    });
    // E-MailRelay 2.6.1 with --server-tls-required.
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: HELO vm
         S: 250 hello
         C: MAIL FROM:<a@b>
         S: 530 encryption required: use starttls
         C: RCPT TO:<c@d>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: VRFY bob
         S: 530 encryption required: use starttls
         C: AUTH PLAIN
         S: 502 command not implemented
         C: STARTTLS
         S: 220 ready to start tls
         C: HELO vm
         S: 250 hello
         C: MAIL FROM:<a@b>
         S: 250 sender <a@b> OK",
    );
}

#[test]
fn implicit_tls_is_secure_from_the_start_and_offers_no_starttls() {
    let mut h = Harness::new(ServerConfig {
        tls_required: true,
        implicit_tls: true,
        ..tls_config()
    });
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: STARTTLS
         S: 500 command unrecognized
         C: MAIL FROM:<a@b>
         S: 250 sender <a@b> OK",
    );
}

#[test]
fn starttls_is_unknown_without_server_tls() {
    let mut h = Harness::new(relay_config());
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: STARTTLS
         S: 500 command unrecognized",
    );
}

// ---- SMTP AUTH (RFC 4954) ----

fn auth_config(trusted: bool) -> ServerConfig {
    ServerConfig {
        auth: Some(AuthConfig {
            clear: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            secure: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            trusted,
            trust_note: match trusted {
                true => "trusting [127.0.0.1]: matched [127.0.0.0/8] from line 1".into(),
                false => String::new(),
            },
            max_failures: 3,
        }),
        trace: true,
        ..relay_config()
    }
}

fn b64(text: &str) -> String {
    base64_encode(text.as_bytes())
}

#[test]
fn auth_is_advertised_and_required_before_mail() {
    let mut h = Harness::new(auth_config(false));
    h.run(&format!(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-AUTH PLAIN LOGIN CRAM-MD5
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: MAIL FROM:<a@b.c>
         S: 530 authentication required
         C: AUTH PLAIN {}
         S: 235 authentication successful
         C: AUTH PLAIN {}
         S: 503 command out of sequence -- use RSET to resynchronise
         C: MAIL FROM:<a@b.c> AUTH=alice
         S: 250 sender <a@b.c> OK",
        b64("\0alice\0e=mc2"),
        b64("\0alice\0e=mc2"),
    ));
    let auth = h.session.authentication().unwrap();
    assert_eq!(
        (auth.mechanism, auth.name.as_str()),
        (Mechanism::Plain, "alice")
    );
    assert_eq!(
        h.session.transaction().params.auth.as_deref(),
        Some("alice")
    );
}

#[test]
fn login_and_cram_md5_exchanges() {
    let mut h = Harness::new(auth_config(false));
    h.run(&format!(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-AUTH PLAIN LOGIN CRAM-MD5
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: AUTH LOGIN
         S: 334 VXNlcm5hbWU6
         C: {}
         S: 334 UGFzc3dvcmQ6
         C: {}
         S: 235 authentication successful",
        b64("carol"),
        b64("my password"),
    ));
    let mut h = Harness::new(auth_config(false));
    h.feed(b"EHLO vm\r\n");
    let challenge_text = "<4f1c9a.1795530688@relay.example.com>";
    assert_eq!(
        h.feed(b"AUTH CRAM-MD5\r\n"),
        format!("334 {}\r\n", b64(challenge_text))
    );
    let digest = HmacMd5Key::new(b"e=mc2").mac(challenge_text.as_bytes());
    let response = b64(&format!("alice {}", emailrelay_proto::sasl::hex(&digest)));
    assert_eq!(
        h.feed(format!("{response}\r\n").as_bytes()),
        "235 authentication successful\r\n"
    );
    assert_eq!(h.checked, [(Mechanism::CramMd5, "alice".to_string())]);
}

#[test]
fn failures_get_535_then_421_and_close_on_the_third() {
    let mut h = Harness::new(auth_config(false));
    h.feed(b"EHLO vm\r\n");
    let wrong = format!("AUTH PLAIN {}\r\n", b64("\0alice\0wrong"));
    assert_eq!(h.feed(wrong.as_bytes()), "535 authentication failed\r\n");
    assert_eq!(
        h.feed(b"AUTH LOGIN\r\n*\r\n"),
        "334 VXNlcm5hbWU6\r\n501 authentication cancelled\r\n"
    );
    assert_eq!(
        h.feed(wrong.as_bytes()),
        "421 relay.example.com too many authentication failures -- closing connection\r\n"
    );
    assert!(h.closed && h.session.is_closed());
}

#[test]
fn mechanism_errors_have_their_own_codes() {
    let mut h = Harness::new(ServerConfig {
        auth: Some(AuthConfig {
            clear: vec![Mechanism::CramMd5],
            secure: vec![Mechanism::Plain, Mechanism::CramMd5],
            trusted: false,
            trust_note: String::new(),
            max_failures: 3,
        }),
        starttls: true,
        ..relay_config()
    });
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: AUTH CRAM-MD5
         S: 503 command out of sequence -- use RSET to resynchronise
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-AUTH CRAM-MD5
         S: 250-STARTTLS
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: AUTH PLAIN
         S: 538 encryption required for requested authentication mechanism
         C: AUTH SCRAM-SHA-256
         S: 504 unsupported authentication mechanism
         C: AUTH XOAUTH2
         S: 504 unsupported authentication mechanism
         C: STARTTLS
         S: 220 ready to start tls
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-AUTH PLAIN CRAM-MD5
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME",
    );
}

#[test]
fn tls_required_hides_auth_until_starttls() {
    let mut h = Harness::new(ServerConfig {
        starttls: true,
        tls_required: true,
        ..auth_config(false)
    });
    h.feed(b"EHLO vm\r\n");
    let got = h.feed(format!("AUTH PLAIN {}\r\nEHLO vm\r\n", b64("\0alice\0e=mc2")).as_bytes());
    assert_eq!(
        got.lines().next(),
        Some("504 unsupported authentication mechanism: use starttls")
    );
    assert!(!got.contains("AUTH"), "{got}");
    assert!(h
        .log()
        .contains(&"warning: rejecting authentication attempt without encryption".to_string()));
    h.feed(b"STARTTLS\r\n");
    h.feed(b"EHLO vm\r\n");
    assert_eq!(
        h.feed(format!("AUTH PLAIN {}\r\n", b64("\0alice\0e=mc2")).as_bytes()),
        "235 authentication successful\r\n"
    );
}

#[test]
fn starttls_forgets_the_identity() {
    let mut h = Harness::new(ServerConfig {
        starttls: true,
        ..auth_config(false)
    });
    h.feed(format!("EHLO vm\r\nAUTH PLAIN {}\r\n", b64("\0alice\0e=mc2")).as_bytes());
    assert!(h.session.authentication().is_some());
    h.feed(b"STARTTLS\r\n");
    assert!(h.session.authentication().is_none());
    h.feed(b"EHLO vm\r\n");
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b>\r\n"),
        "530 authentication required\r\n"
    );
}

#[test]
fn a_trusted_client_needs_no_auth_and_its_auth_parameter_becomes_empty() {
    let mut h = Harness::new(auth_config(true));
    h.feed(b"EHLO vm\r\n");
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b> AUTH=mallory\r\n"),
        "250 sender <a@b> OK\r\n"
    );
    // RFC 4954 section 5: an unauthenticated client's AUTH= is not trusted.
    assert_eq!(h.session.transaction().params.auth.as_deref(), Some(""));
    // E-MailRelay's line, after the command, at each MAIL and VRFY.
    h.feed(b"RSET\r\nVRFY b@c\r\n");
    let note = "trusting [127.0.0.1]: matched [127.0.0.0/8] from line 1";
    let log = h.log();
    let at: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, l)| *l == note)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 2, "{log:?}");
    assert_eq!(
        log[at[0] - 1],
        "rx<<: \"MAIL FROM:<a@b> AUTH=mallory\"",
        "{log:?}"
    );
    assert_eq!(log[at[1] - 1], "rx<<: \"VRFY b@c\"", "{log:?}");
}

#[test]
fn the_trace_never_shows_a_response() {
    let mut h = Harness::new(auth_config(false));
    h.feed(format!("EHLO vm\r\nAUTH PLAIN {}\r\n", b64("\0alice\0e=mc2")).as_bytes());
    let mut trace = h.log().join("\n");
    let mut h = Harness::new(auth_config(false));
    h.feed(format!("EHLO vm\r\nAUTH LOGIN\r\n{}\r\n", b64("carol")).as_bytes());
    trace.push('\n');
    trace.push_str(&h.log().join("\n"));
    assert!(
        trace.contains("rx<<: \"AUTH PLAIN [response not logged]\""),
        "{trace}"
    );
    assert!(
        trace.contains(
            "rx<<: \"AUTH LOGIN\"\ntx>>: \"334 VXNlcm5hbWU6\"\nrx<<: [authentication response not logged]"
        ),
        "{trace}"
    );
    assert!(
        !trace.contains(&b64("\0alice\0e=mc2")) && !trace.contains(&b64("carol")),
        "{trace}"
    );
}

#[test]
fn without_server_auth_the_command_is_not_implemented() {
    let mut h = Harness::new(relay_config());
    h.output();
    // E-MailRelay 2.6.1: out of sequence before EHLO, then 502 and a warning.
    assert_eq!(
        h.feed(b"AUTH PLAIN\r\n"),
        "503 command out of sequence -- use RSET to resynchronise\r\n"
    );
    h.feed(b"EHLO vm\r\n");
    h.log();
    assert_eq!(h.feed(b"AUTH PLAIN\r\n"), "502 command not implemented\r\n");
    assert_eq!(
        h.log(),
        ["warning: client protocol error: AUTH requested but not advertised"]
    );
}

// ---- hostile input (issue 18) ----

#[test]
fn addresses_with_invalid_utf8_or_control_characters_get_553() {
    let mut h = Harness::new(relay_config());
    h.feed(b"EHLO vm\r\n");
    h.output();
    // E-MailRelay 2.6.1's replies.
    let bad = "553 mailbox name not allowed: invalid character in mailbox name\r\n";
    assert_eq!(h.feed(b"MAIL FROM:<a\xff\xfe@b>\r\n"), bad);
    assert_eq!(h.feed(b"MAIL FROM:<a\x01@b>\r\n"), bad);
    assert_eq!(h.feed(b"MAIL FROM:<a@b>\r\n"), "250 sender <a@b> OK\r\n");
    let bad = "550 invalid character in mailbox name\r\n";
    assert_eq!(h.feed(b"RCPT TO:<c\xc3\x28@d>\r\n"), bad);
    assert_eq!(h.feed(b"RCPT TO:<c\t@d>\r\n"), bad);
    assert_eq!(h.feed(b"RCPT TO:<c\x7f@d>\r\n"), bad);
    assert_eq!(
        h.feed("RCPT TO:<b\u{fc}cher@d>\r\n".as_bytes()),
        "250 recipient <b\u{fc}cher@d> OK\r\n"
    );
}

#[test]
fn peer_bytes_in_the_trace_are_escaped_onto_one_line() {
    let mut h = Harness::new(ServerConfig {
        trace: true,
        ..relay_config()
    });
    h.feed(b"EHLO evil\rX-Spam-Flag: NO\r\nNOOP \x00\x1b\xff\r\n");
    let trace = h.log();
    assert!(
        trace.contains(&"rx<<: \"EHLO evil\\rX-Spam-Flag: NO\"".to_string()),
        "{trace:?}"
    );
    assert!(
        trace.contains(&"rx<<: \"NOOP \\0\\x1b\\xff\"".to_string()),
        "{trace:?}"
    );
    assert!(trace.iter().all(|l| !l.contains(['\r', '\n', '\0'])));
}

#[test]
fn binarymime_goes_by_bdat_only_and_an_empty_chunk_must_be_last() {
    let mut h = Harness::new(chunking_config());
    h.output();
    h.feed(b"EHLO vm\r\n");
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        "250 sender <a@b> OK\r\n250 recipient <c@d> OK\r\n\
         503 invalid data command with binarymime -- use RSET to resynchronise\r\n"
    );
    // As in 2.6.1, the transaction is over until RSET.
    assert_eq!(
        h.feed(b"BDAT 3 LAST\r\nabc"),
        "503 command out of sequence -- use RSET to resynchronise\r\n"
    );
    h.feed(b"RSET\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\n");
    assert_eq!(h.feed(b"BDAT 0\r\n"), "501 invalid argument\r\n");
    h.feed(b"RSET\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\n");
    assert_eq!(h.feed(b"BDAT 3 LAST\r\nabc"), "250 message processed\r\n");
    assert_eq!(h.stored, [b"abc".to_vec()]);
}

#[test]
fn auth_argument_errors_are_2_6_1_s_and_rfc_4954_s() {
    let mut h = Harness::new(ServerConfig {
        client: "192.0.2.7".into(),
        ..auth_config(false)
    });
    h.feed(b"EHLO vm\r\n");
    h.log();
    h.run(
        "C: AUTH
         S: 504 unsupported authentication mechanism
         C: AUTH PLAIN !!!
         S: 501 invalid argument
         C: AUTH CRAM-MD5 YWJj
         S: 501 invalid argument",
    );
    assert_eq!(h.feed(b"AUTH PLAIN\r\n"), "334 \r\n");
    // RFC 4954 section 4 (2.6.1: 535).
    assert_eq!(h.feed(b"not base64 !\r\n"), "501 invalid argument\r\n");
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b>\r\n"),
        "530 authentication required\r\n"
    );
    // Each counts as a failed attempt: the third ends the session.
    assert_eq!(h.feed(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.feed(b"%%%\r\n"), "501 invalid argument\r\n");
    h.feed(b"AUTH LOGIN\r\n");
    assert_eq!(
        h.feed(b"%%%\r\n"),
        "421 relay.example.com too many authentication failures -- closing connection\r\n"
    );
    assert!(h.closed);
    let log = h.log();
    let warnings: Vec<&String> = log.iter().filter(|l| l.starts_with("warning")).collect();
    assert_eq!(
        warnings,
        [
            "warning: request for unsupported server AUTH mechanism: ",
            "warning: invalid base64 encoding of AUTH parameter",
            "warning: unexpected initial-response with a server-first AUTH mechanism",
            "warning: invalid base64 encoding of authentication response",
            "warning: invalid base64 encoding of authentication response",
            "warning: invalid base64 encoding of authentication response",
        ]
    );
    assert!(log.contains(&"rx<<: \"AUTH\"".to_string()), "{log:?}");
    assert!(log.contains(&"rx<<: [authentication response not logged]".to_string()));
    assert!(log.contains(
        &"server authentication enabled but not a trusted address: 192.0.2.7".to_string()
    ));
}

#[test]
fn a_disabled_server_greets_with_421_and_refuses_mail() {
    let mut h = Harness::new(ServerConfig {
        enabled: false,
        ..relay_config()
    });
    // E-MailRelay 2.6.1 after the admin `smtp disable`.
    h.run(
        "S: 421 service not available
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: MAIL FROM:<a@b>
         S: 421 service not available
         C: NOOP
         S: 250 noop",
    );
    assert!(!h.closed && h.opened == 0);
}

#[test]
fn a_message_over_the_hop_limit_is_refused_with_554() {
    let mut h = Harness::new(ServerConfig {
        max_hops: 3,
        ..relay_config()
    });
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    h.log();
    let hops = "Received: from x by y\r\n".repeat(4);
    let got = h.feed(format!("{hops}\r\nbody\r\n.\r\n").as_bytes());
    assert_eq!(
        got,
        "554 too many hops: 4 Received header lines (mail loop?)\r\n"
    );
    assert!(h.stored.is_empty());
    assert!(h
        .log()
        .contains(&"warning: message refused: 4 Received lines, more than 3: a mail loop?".into()));
    // At the limit, and with more in the body, a message goes through.
    h.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    let text = "Received: a\r\n".repeat(3) + "\r\n" + &"Received: b\r\n".repeat(9);
    let got = h.feed(format!("{text}.\r\n").as_bytes());
    assert_eq!(got, "250 message processed\r\n");
    assert_eq!(h.stored, vec![text.into_bytes()]);
}

#[test]
fn the_hop_limit_applies_to_bdat_and_zero_turns_it_off() {
    let mut h = Harness::new(ServerConfig {
        max_hops: 1,
        max_size: 0,
        ..chunking_config()
    });
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    // The second Received line is split across the two chunks.
    let got = h.feed(b"BDAT 17\r\nReceived: a\r\nReceBDAT 9 LAST\r\nived: b\r\n");
    assert_eq!(
        got,
        "250 17 bytes received\r\n554 too many hops: 2 Received header lines (mail loop?)\r\n"
    );
    let mut h = Harness::new(ServerConfig {
        max_hops: 0,
        ..relay_config()
    });
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    let got = h.feed(format!("{}\r\n.\r\n", "Received: x\r\n".repeat(500)).as_bytes());
    assert_eq!(got, "250 message processed\r\n");
}

#[test]
fn a_declared_size_the_spool_cannot_take_is_refused_for_now() {
    let mut h = Harness::new(relay_config());
    h.session.set_free_space(Some(1000));
    h.feed(b"EHLO vm\r\n");
    let got = h.feed(b"MAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b> SIZE=1000\r\n");
    assert_eq!(
        got,
        "452 insufficient system storage\r\n250 sender <a@b> OK\r\n"
    );
    // Unknown space, or no SIZE=: no check.
    h.feed(b"RSET\r\n");
    h.session.set_free_space(None);
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b> SIZE=99999999\r\n"),
        "250 sender <a@b> OK\r\n"
    );
}
