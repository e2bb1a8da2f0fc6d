//! Server session transcripts: the E-MailRelay 2.6.1 dialogue of
//! shared/compat.md, pipelining, DATA edge cases and limits, all in memory.
//!
//! A transcript is a list of `C:` (client sends, CRLF added) and `S:`
//! (exact expected server reply line) entries. The driver stand-in accepts
//! every recipient and stores every message in a Vec.

use emailrelay_proto::sasl::{base64_encode, Credentials, HmacMd5Key, Mechanism};
use emailrelay_proto::smtp::{
    AuthConfig, AuthResult, Event, MessageResult, Reply, ServerConfig, ServerSession, VerifyResult,
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
        }
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
            match event {
                Event::Verify { address, .. } => {
                    let result = (self.verify)(&address);
                    self.session.answer_verify(result)
                }
                Event::MessageStart => {
                    self.current.clear();
                    self.session.answer_message_start(Ok(()))
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
    h.run(
        "S: 220 relay.example.com -- Service ready
         C: HELO vm
         S: 250 hello
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: VRFY bob
         S: 502 command not implemented",
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
    for piece in [&b"abc\r"[..], b"\n", b".", b"\r", b"\n"] {
        let got = h.feed(piece);
        if piece == b"\n" && h.stored.len() == 1 {
            assert_eq!(got, "250 message processed\r\n");
        }
    }
    assert_eq!(h.stored, vec![b"abc\r\n".to_vec()]);
}

#[test]
fn overlong_command_lines_get_500_and_the_session_goes_on() {
    let mut h = Harness::new(relay_config());
    h.output();
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(600));
    assert_eq!(h.feed(long.as_bytes()), "500 line too long\r\n250 noop\r\n");
}

#[test]
fn text_lines_over_1000_octets_pass_through_unchanged() {
    // E-MailRelay compatibility: old devices send unwrapped HTML and long
    // base64; 2.6.1 accepts them, and so do we, a byte at a time or whole.
    for step in [1, 7, 4096] {
        let mut h = Harness::new(relay_config());
        h.output();
        h.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
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
fn sequence_errors_and_the_bad_command_cap() {
    let mut h = Harness::new(ServerConfig {
        max_bad_commands: 3,
        ..relay_config()
    });
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: RCPT TO:<a@b>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: MAIL FROM:<a@b>
         S: 250 sender <a@b> OK
         C: DATA
         S: 503 no recipients
         C: MAIL FROM:<a b@c>
         S: 501 invalid character in address
         C: FOO
         S: 500 command unrecognized
         S: 421 relay.example.com too many errors -- closing connection",
    );
    assert!(h.closed);
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
fn bdat_chunks_are_consumed_as_data_not_commands() {
    let mut h = Harness::new(relay_config());
    h.feed(b"HELO vm\r\n");
    let got = h.feed(b"BDAT 20 LAST\r\nMAIL FROM:<evil@x>\r\nNOOP\r\n");
    assert_eq!(got, "500 command unrecognized\r\n250 noop\r\n");
}

#[test]
fn mail_parameters_are_recorded() {
    let mut h = Harness::new(relay_config());
    h.feed(b"EHLO vm\r\nMAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8 AUTH=bob\r\n");
    let t = h.session.transaction();
    assert!(t.esmtp);
    assert_eq!(t.helo, "vm");
    assert!(t.params.smtputf8 && t.is_utf8());
    assert_eq!(t.params.auth.as_deref(), Some("bob"));
    assert_eq!(t.params.body.envelope_keyword(), "8bit");
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
    let trace = h.session.poll_trace().join("\n");
    assert!(trace.contains("rx<<: \"HELO vm\""));
    assert!(trace.contains("tx>>: \"250 message processed\""));
    assert!(trace.contains("rx<<: [message content not logged]"));
    assert!(!trace.contains("secret"));
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
    // The 10 octets "MAIL FROM:" are the chunk; the NOOP after them is a command.
    let got = h.feed(b"BDAT 10 LAST\r\nMAIL FROM:NOOP\r\n");
    assert_eq!(
        got,
        "503 command out of sequence -- use RSET to resynchronise\r\n250 noop\r\n"
    );
    h.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1\r\nx");
    assert_eq!(
        h.feed(b"DATA\r\n"),
        "503 command out of sequence -- use RSET to resynchronise\r\n"
    );
    assert_eq!(h.feed(b"RSET\r\n"), "250 state reset\r\n");
    assert_eq!(h.feed(b"BDAT x\r\n"), "501 invalid BDAT size\r\n");
    assert!(h.stored.is_empty());
}

#[test]
fn smtputf8_strict_refuses_utf8_addresses_without_the_parameter() {
    let mut h = Harness::new(ServerConfig {
        smtputf8: true,
        smtputf8_strict: true,
        ..relay_config()
    });
    h.feed(b"EHLO vm\r\n");
    assert_eq!(
        h.feed("MAIL FROM:<jörg@example.com>\r\n".as_bytes()),
        "553 mailbox name not allowed: SMTPUTF8 required\r\n"
    );
    assert_eq!(h.feed(b"MAIL FROM:<a@b>\r\n"), "250 sender <a@b> OK\r\n");
    assert_eq!(
        h.feed("RCPT TO:<zoë@example.com>\r\n".as_bytes()),
        "553 mailbox name not allowed: SMTPUTF8 required\r\n"
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
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-STARTTLS
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: STARTTLS now
         S: 501 unexpected argument
         C: MAIL FROM:<a@b>
         S: 250 sender <a@b> OK
         C: STARTTLS
         S: 503 command out of sequence -- use RSET to resynchronise
         C: RSET
         S: 250 state reset
         C: STARTTLS
         S: 220 ready to start TLS
         C: RCPT TO:<c@d>
         S: 503 command out of sequence -- use RSET to resynchronise
         C: EHLO vm
         S: 250-relay.example.com says hello
         S: 250-VRFY
         S: 250-PIPELINING
         S: 250 8BITMIME
         C: STARTTLS
         S: 503 TLS already active",
    );
    assert!(h.session.is_secure());
    assert_eq!(h.session.transaction().helo, "vm");
}

#[test]
fn plaintext_pipelined_behind_starttls_is_never_executed() {
    let mut h = Harness::new(tls_config());
    h.output();
    assert!(h.feed(b"EHLO vm\r\n").contains("250-STARTTLS\r\n"));
    // One packet: STARTTLS plus an injected envelope (CVE-2011-0411).
    let reply = h.feed(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<x@y>\r\n");
    assert_eq!(reply, "220 ready to start TLS\r\n");
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
        out.ends_with("250 8BITMIME\r\n220 ready to start TLS\r\n"),
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
    h.run(
        "S: 220 relay.example.com -- E-MailRelay-rs V0.1.0 -- Service ready
         C: HELO vm
         S: 250 hello
         C: MAIL FROM:<a@b>
         S: 530 must issue a STARTTLS command first
         C: STARTTLS
         S: 220 ready to start TLS
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
         S: 503 TLS already active
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
         S: 502 command not implemented",
    );
}

// ---- SMTP AUTH (RFC 4954) ----

fn auth_config(trusted: bool) -> ServerConfig {
    ServerConfig {
        auth: Some(AuthConfig {
            clear: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            secure: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            trusted,
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
         S: 503 already authenticated
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
         S: 220 ready to start TLS
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
        Some("530 must issue a STARTTLS command first")
    );
    assert!(!got.contains("AUTH"), "{got}");
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
}

#[test]
fn the_trace_never_shows_a_response() {
    let mut h = Harness::new(auth_config(false));
    h.feed(format!("EHLO vm\r\nAUTH PLAIN {}\r\n", b64("\0alice\0e=mc2")).as_bytes());
    let mut trace = h.session.poll_trace().join("\n");
    let mut h = Harness::new(auth_config(false));
    h.feed(format!("EHLO vm\r\nAUTH LOGIN\r\n{}\r\n", b64("carol")).as_bytes());
    trace.push('\n');
    trace.push_str(&h.session.poll_trace().join("\n"));
    assert!(
        trace.contains("rx<<: \"AUTH PLAIN [response not logged]\""),
        "{trace}"
    );
    assert!(
        trace.contains(
            "rx<<: \"AUTH LOGIN\"\ntx>>: \"334 VXNlcm5hbWU6\"\nrx<<: [response not logged]"
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
    h.feed(b"EHLO vm\r\n");
    assert_eq!(h.feed(b"AUTH PLAIN\r\n"), "502 command not implemented\r\n");
}

// ---- hostile input (issue 18) ----

#[test]
fn addresses_with_invalid_utf8_or_control_characters_get_553() {
    let mut h = Harness::new(relay_config());
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
    let trace = h.session.poll_trace();
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
    assert_eq!(h.feed(b"BDAT 0\r\n"), "501 invalid argument\r\n");
    assert_eq!(h.feed(b"BDAT 3 LAST\r\nabc"), "250 message processed\r\n");
    assert_eq!(h.stored, [b"abc".to_vec()]);
}
