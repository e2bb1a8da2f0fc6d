//! POP3 session transcripts: the E-MailRelay 2.6.1 dialogue recorded in
//! tests/golden/pop (texts, CAPA order, -ERR forms), authentication in
//! every form, byte-stuffing, STLS, limits and the UPDATE state, all in
//! memory.
//!
//! A transcript is a list of `C:` (client sends, CRLF added) and `S:`
//! (exact expected server line) entries. The driver stand-in has two
//! accounts and a maildrop of three messages, and records what it was
//! asked to delete.

use emailrelay_proto::pop::{AuthMethod, Event, MessageInfo, PopConfig, PopSession};
use emailrelay_proto::sasl::{
    apop_digest, base64_encode, hex, AuthResult, Credentials, HmacMd5Key, Mechanism,
};

const MESSAGES: [&[u8]; 3] = [
    b"Subject: one\r\n\r\nline1\r\n.dotline\r\nline3\r\n..two\r\n.\r\nlast-no-crlf",
    b"Subject: two\r\n\r\nbody\r\n",
    b"Subject: three\r\nX: y\r\n\r\n1\r\n2\r\n3\r\n",
];
const CHALLENGE: &str = "<1896.697170952@relay.example.com>";

struct Harness {
    session: PopSession,
    closed: bool,
    deleted: Option<Vec<usize>>,
    /// Whether the stand-in manages to delete.
    removable: bool,
    checked: Vec<(AuthMethod, String)>,
}

fn config() -> PopConfig {
    PopConfig {
        stls: false,
        implicit_tls: false,
        tls_required: false,
        clear: vec![Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login],
        secure: vec![Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login],
        apop_challenge: Some(CHALLENGE.into()),
        max_failures: 3,
        max_bad_commands: 10,
        trace: true,
    }
}

fn password_of(user: &str) -> Option<&'static str> {
    match user {
        "alice" => Some("secret1"),
        "carol" => Some("my password"),
        _ => None,
    }
}

impl Harness {
    fn new(config: PopConfig) -> Harness {
        Harness {
            session: PopSession::new(config),
            closed: false,
            deleted: None,
            removable: true,
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

    fn check(credentials: &Credentials) -> bool {
        let Some(password) = password_of(credentials.user()) else {
            return false;
        };
        match credentials {
            Credentials::Password { password: p, .. } => p == password,
            Credentials::CramMd5 {
                challenge, digest, ..
            } => HmacMd5Key::new(password.as_bytes()).mac(challenge.as_bytes()) == digest[..],
            Credentials::Apop {
                challenge, digest, ..
            } => apop_digest(challenge, password.as_bytes()) == digest[..],
        }
    }

    fn drive(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::AuthNonce => self
                    .session
                    .answer_auth_nonce("4f1c9a.1795530688", "relay.example.com"),
                Event::Authenticate {
                    method,
                    credentials,
                } => {
                    self.checked.push((method, credentials.user().to_string()));
                    let result = if Harness::check(&credentials) {
                        AuthResult::Accepted {
                            name: credentials.user().to_string(),
                        }
                    } else {
                        AuthResult::Rejected
                    };
                    self.session.answer_auth(result);
                }
                Event::Maildrop { user } if user == "carol" => {
                    self.session.answer_maildrop(Err("invalid mailbox".into()))
                }
                Event::Maildrop { .. } => self.session.answer_maildrop(Ok(MESSAGES
                    .iter()
                    .enumerate()
                    .map(|(i, m)| MessageInfo {
                        size: m.len() as u64,
                        uid: format!("emailrelay.1.1000.{}.content", i + 1),
                    })
                    .collect())),
                Event::Retrieve { index, .. } => {
                    self.session.answer_retrieve(true);
                    // Odd-sized chunks, to cross line ends.
                    let mut more = true;
                    for chunk in MESSAGES[index].chunks(5) {
                        more = self.session.write_content(chunk);
                        if !more {
                            break;
                        }
                    }
                    if more {
                        self.session.finish_content();
                    }
                }
                Event::Update { deleted } => {
                    self.deleted = Some(deleted);
                    self.session.answer_update(self.removable);
                }
                Event::StartTls => self.session.tls_started(),
                Event::Close => self.closed = true,
            }
        }
    }
}

/// Runs a transcript; panics at the first difference. `<SP>` at the end
/// of an entry stands for a trailing space.
fn transcript(harness: &mut Harness, script: &str) {
    let mut expected: Vec<String> = Vec::new();
    let mut got = harness.output();
    for entry in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let entry = entry.replace("<SP>", " ");
        let entry = entry.as_str();
        if let Some(text) = entry.strip_prefix("C:") {
            compare(&got, &expected);
            expected.clear();
            let text = text.strip_prefix(' ').unwrap_or(text);
            got = harness.feed(format!("{text}\r\n").as_bytes());
        } else if let Some(text) = entry.strip_prefix("S:") {
            expected.push(text.strip_prefix(' ').unwrap_or(text).to_string());
        } else {
            panic!("bad transcript line {entry:?}");
        }
    }
    compare(&got, &expected);
}

fn compare(got: &str, expected: &[String]) {
    let got: Vec<&str> = got.split_terminator("\r\n").collect();
    assert_eq!(got, expected, "server said {got:#?}");
}

fn b64(s: &str) -> String {
    base64_encode(s.as_bytes())
}

#[test]
fn greeting_capa_and_the_errors_of_the_authorization_state() {
    let mut h = Harness::new(config());
    transcript(
        &mut h,
        "S: +OK POP3 server ready <1896.697170952@relay.example.com>
         C: CAPA
         S: +OK capability list follows
         S: USER
         S: CAPA
         S: TOP
         S: UIDL
         S: SASL CRAM-MD5 PLAIN LOGIN
         S: .
         C: STAT
         S: -ERR
         C: NOOP
         S: -ERR
         C: PASS secret1
         S: -ERR
         C: STLS
         S: -ERR
         C: AUTH
         S: +OK
         S: CRAM-MD5
         S: PLAIN
         S: LOGIN
         S: .
         C: AUTH XYZ
         S: -ERR invalid mechanism
         C: QUIT
         S: +OK signing off",
    );
    assert!(h.closed);
    assert_eq!(h.deleted, None, "QUIT before login deletes nothing");
}

#[test]
fn user_pass_then_every_transaction_command() {
    let mut h = Harness::new(config());
    transcript(
        &mut h,
        "S: +OK POP3 server ready <1896.697170952@relay.example.com>
         C: USER alice
         S: +OK user: alice
         C: PASS wrong
         S: -ERR
         C: user alice
         S: +OK user: alice
         C: pass secret1
         S: +OK
         C: STAT
         S: +OK 3 117
         C: LIST
         S: +OK 3 message(s)
         S: 1 62
         S: 2 22
         S: 3 33
         S: .
         C: LIST 2
         S: +OK 2 22
         C: LIST 4
         S: -ERR invalid id
         C: LIST x
         S: -ERR invalid id
         C: UIDL
         S: +OK 3 message(s)
         S: 1 emailrelay.1.1000.1.content
         S: 2 emailrelay.1.1000.2.content
         S: 3 emailrelay.1.1000.3.content
         S: .
         C: UIDL 3
         S: +OK 3 emailrelay.1.1000.3.content
         C: NOOP
         S: +OK
         C: USER bob
         S: -ERR
         C: DELE 2
         S: +OK
         C: DELE 2
         S: -ERR
         C: RETR 2
         S: -ERR
         C: STAT
         S: +OK 2 95
         C: LIST
         S: +OK 2 message(s)
         S: 1 62
         S: 3 33
         S: .
         C: RSET
         S: +OK
         C: STAT
         S: +OK 3 117
         C: DELE 1
         S: +OK
         C: DELE 3 extra
         S: +OK
         C: QUIT
         S: +OK signing off",
    );
    assert_eq!(h.deleted, Some(vec![0, 2]));
    assert_eq!(
        h.checked,
        [
            (AuthMethod::UserPass, "alice".into()),
            (AuthMethod::UserPass, "alice".into())
        ]
    );
}

#[test]
fn retr_and_top_stuff_dots_and_count_body_lines() {
    let mut h = Harness::new(config());
    transcript(
        &mut h,
        "S: +OK POP3 server ready <1896.697170952@relay.example.com>
         C: USER alice
         S: +OK user: alice
         C: PASS secret1
         S: +OK
         C: RETR 1
         S: +OK 62 octets
         S: Subject: one
         S:
         S: line1
         S: ..dotline
         S: line3
         S: ...two
         S: ..
         S: last-no-crlf
         S: .
         C: TOP 1 0
         S: +OK
         S: Subject: one
         S:
         S: .
         C: TOP 1 2
         S: +OK
         S: Subject: one
         S:
         S: line1
         S: ..dotline
         S: .
         C: TOP 3 1
         S: +OK
         S: Subject: three
         S: X: y
         S:
         S: 1
         S: .
         C: TOP 1
         S: -ERR
         C: TOP 1 -1
         S: -ERR
         C: TOP 9 1
         S: -ERR
         C: RETR
         S: -ERR
         C: RETR 0
         S: -ERR",
    );
}

#[test]
fn commands_pipelined_behind_retr_wait_for_the_content() {
    let mut h = Harness::new(config());
    h.feed(b"USER alice\r\nPASS secret1\r\n");
    let out = h.feed(b"RETR 2\r\nSTAT\r\nQUIT\r\n");
    assert_eq!(
        out,
        "+OK 22 octets\r\nSubject: two\r\n\r\nbody\r\n.\r\n+OK 3 117\r\n+OK signing off\r\n"
    );
}

#[test]
fn sasl_plain_login_and_cram_md5() {
    let mut h = Harness::new(config());
    let plain = b64("\0alice\0secret1");
    transcript(
        &mut h,
        &format!(
            "S: +OK POP3 server ready <1896.697170952@relay.example.com>
             C: AUTH PLAIN
             S: +<SP>
             C: *
             S: -ERR
             C: AUTH PLAIN =
             S: +<SP>
             C: {plain}
             S: +OK
             C: AUTH PLAIN
             S: -ERR"
        ),
    );
    let mut h = Harness::new(config());
    transcript(
        &mut h,
        &format!(
            "S: +OK POP3 server ready <1896.697170952@relay.example.com>
             C: AUTH LOGIN
             S: + VXNlcm5hbWU6
             C: {}
             S: + UGFzc3dvcmQ6
             C: {}
             S: -ERR invalid mailbox",
            b64("carol"),
            b64("my password")
        ),
    );
    assert_eq!(
        h.checked,
        [(AuthMethod::Sasl(Mechanism::Login), "carol".into())]
    );
    assert!(
        !h.closed,
        "a maildrop that cannot be opened is -ERR, not the end"
    );

    let mut h = Harness::new(config());
    let challenge = "<4f1c9a.1795530688@relay.example.com>";
    let digest = hex(&HmacMd5Key::new(b"secret1").mac(challenge.as_bytes()));
    transcript(
        &mut h,
        &format!(
            "S: +OK POP3 server ready <1896.697170952@relay.example.com>
             C: AUTH CRAM-MD5 abc
             S: -ERR invalid initial response
             C: AUTH CRAM-MD5
             S: + {}
             C: {}
             S: +OK
             C: STAT
             S: +OK 3 117",
            b64(challenge),
            b64(&format!("alice {digest}"))
        ),
    );
}

#[test]
fn a_maildrop_that_cannot_be_opened_leaves_the_client_unauthenticated() {
    let mut h = Harness::new(config());
    transcript(
        &mut h,
        "S: +OK POP3 server ready <1896.697170952@relay.example.com>
         C: USER carol
         S: +OK user: carol
         C: PASS my password
         S: -ERR invalid mailbox
         C: STAT
         S: -ERR",
    );
    assert_eq!(h.session.user(), None);
}

#[test]
fn apop_uses_the_greeting_challenge() {
    let mut h = Harness::new(config());
    let good = hex(&apop_digest(CHALLENGE, b"secret1"));
    let bad = hex(&apop_digest(CHALLENGE, b"secret2"));
    transcript(
        &mut h,
        &format!(
            "S: +OK POP3 server ready <1896.697170952@relay.example.com>
             C: APOP alice {bad}
             S: -ERR
             C: APOP alice nothex
             S: -ERR
             C: APOP alice {good}
             S: +OK"
        ),
    );
    let mut config = config();
    config.apop_challenge = None;
    let mut h = Harness::new(config);
    transcript(
        &mut h,
        &format!(
            "S: +OK POP3 server ready
             C: APOP alice {good}
             S: -ERR"
        ),
    );
    assert!(h.checked.is_empty());
}

#[test]
fn the_third_failed_login_ends_the_session() {
    let mut h = Harness::new(config());
    transcript(
        &mut h,
        "S: +OK POP3 server ready <1896.697170952@relay.example.com>
         C: USER alice
         S: +OK user: alice
         C: PASS a
         S: -ERR
         C: PASS b
         S: -ERR
         C: PASS c
         S: -ERR too many authentication failures -- closing connection",
    );
    assert!(h.closed);
    assert_eq!(h.feed(b"PASS secret1\r\n"), "", "nothing after the close");
}

#[test]
fn stls_discards_pipelined_plaintext_and_is_offered_only_before_tls() {
    let mut config = config();
    config.stls = true;
    let mut h = Harness::new(config);
    h.output();
    h.session
        .handle_input(b"STLS\r\nUSER alice\r\nPASS secret1\r\n");
    let mut out = Vec::new();
    h.session.poll_output(&mut out);
    assert_eq!(out, b"+OK\r\n");
    assert_eq!(h.session.poll_event(), Some(Event::StartTls));
    h.session.handle_input(b"STAT\r\n");
    h.session.tls_started();
    assert!(h.session.is_secure());
    transcript(
        &mut h,
        "C: STAT
         S: -ERR
         C: CAPA
         S: +OK capability list follows
         S: USER
         S: CAPA
         S: TOP
         S: UIDL
         S: SASL CRAM-MD5 PLAIN LOGIN
         S: .
         C: STLS
         S: -ERR
         C: PASS secret1
         S: -ERR",
    );
    assert!(h.checked.is_empty(), "no plaintext login ran inside TLS");
}

#[test]
fn tls_required_hides_every_login_until_stls() {
    let mut config = config();
    config.stls = true;
    config.tls_required = true;
    config.clear = vec![];
    let mut h = Harness::new(config);
    transcript(
        &mut h,
        "S: +OK POP3 server ready <1896.697170952@relay.example.com>
         C: CAPA
         S: +OK capability list follows
         S: CAPA
         S: TOP
         S: UIDL
         S: STLS
         S: .
         C: USER alice
         S: -ERR must use STLS before authentication
         C: AUTH PLAIN
         S: -ERR must use STLS before authentication
         C: APOP alice 00000000000000000000000000000000
         S: -ERR must use STLS before authentication
         C: STLS
         S: +OK",
    );
    h.session.tls_started();
    transcript(
        &mut h,
        "C: USER alice
         S: +OK user: alice
         C: PASS secret1
         S: +OK",
    );
}

#[test]
fn no_plain_mechanism_means_no_user_command() {
    let mut config = config();
    config.clear = vec![Mechanism::CramMd5];
    let mut h = Harness::new(config);
    transcript(
        &mut h,
        "S: +OK POP3 server ready <1896.697170952@relay.example.com>
         C: USER alice
         S: -ERR no SASL PLAIN mechanism to do USER/PASS authentication
         C: AUTH PLAIN
         S: -ERR invalid mechanism",
    );
}

#[test]
fn disconnect_and_shutdown_delete_nothing() {
    let mut h = Harness::new(config());
    h.feed(b"USER alice\r\nPASS secret1\r\nDELE 1\r\n");
    h.output();
    h.session.shutdown();
    assert_eq!(h.output(), "", "autologout says nothing");
    h.drive();
    assert!(h.closed);
    assert_eq!(h.deleted, None);
}

#[test]
fn quit_reports_messages_that_could_not_be_removed() {
    let mut h = Harness::new(config());
    h.removable = false;
    h.feed(b"USER alice\r\nPASS secret1\r\nDELE 1\r\n");
    assert_eq!(
        h.feed(b"QUIT\r\n"),
        "-ERR some deleted messages not removed\r\n"
    );
    assert!(h.closed);
}

#[test]
fn user_names_with_control_characters_are_echoed_escaped() {
    let mut h = Harness::new(config());
    h.output();
    assert_eq!(h.feed(b"USER a\0b\r\n"), "+OK user: a\\0b\r\n");
    assert_eq!(
        h.feed(b"USER \x1b[2J\x1b]0;owned\x07x\r\n"),
        "+OK user: \\x1b[2J\\x1b]0;owned\\x07x\r\n"
    );
    // Backslashes and UTF-8 are names, not controls.
    assert_eq!(
        h.feed("USER DOM\\b\u{f6}b\r\n".as_bytes()),
        "+OK user: DOM\\b\u{f6}b\r\n"
    );
}

#[test]
fn command_lines_are_255_octets_at_most() {
    // RFC 2449 section 4: 255 octets, CRLF included.
    let mut h = Harness::new(config());
    h.output();
    let name = "n".repeat(255 - "USER \r\n".len());
    assert_eq!(
        h.feed(format!("USER {name}\r\n").as_bytes()),
        format!("+OK user: {name}\r\n")
    );
    // A bare LF ends a line too: 255 with it.
    let name = "n".repeat(255 - "USER \n".len());
    assert_eq!(
        h.feed(format!("USER {name}\n").as_bytes()),
        format!("+OK user: {name}\r\n")
    );
    let name = "n".repeat(256 - "USER \r\n".len());
    assert_eq!(
        h.feed(format!("USER {name}\r\nNOOP\r\n").as_bytes()),
        "-ERR line too long\r\n-ERR\r\n"
    );
    // Trickled in, the same.
    let trickled: String = format!("USER {name}\r\n")
        .bytes()
        .map(|b| h.feed(&[b]))
        .collect();
    assert_eq!(trickled, "-ERR line too long\r\n");
    // An AUTH response line may still be long (RFC 5034 sets no limit):
    // this one is read whole, and fails as a bad PLAIN response.
    let long = "A".repeat(1000);
    assert_eq!(h.feed(b"AUTH PLAIN\r\n"), "+ \r\n");
    assert_eq!(h.feed(format!("{long}\r\n").as_bytes()), "-ERR\r\n");
    let trace = h.session.poll_trace().join("\n");
    // Only the two command lines above were too long.
    assert_eq!(trace.matches("[line too long]").count(), 2, "{trace}");
}

#[test]
fn overlong_lines_are_refused_and_bad_commands_are_capped() {
    let mut h = Harness::new(config());
    h.output();
    let mut long = vec![b'N'; 5000];
    long.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(h.feed(&long), "-ERR line too long\r\n-ERR\r\n");
    for _ in 0..7 {
        assert_eq!(h.feed(b"XYZZY\r\n"), "-ERR\r\n");
    }
    assert_eq!(
        h.feed(b"XYZZY\r\n"),
        "-ERR too many bad commands -- closing connection\r\n"
    );
    assert!(h.closed);
}

#[test]
fn the_trace_never_shows_a_password() {
    let mut h = Harness::new(config());
    h.feed(b"USER alice\r\nPASS secret1\r\nAUTH PLAIN AGFsaWNlAHNlY3JldDE=\r\n");
    let trace = h.session.poll_trace().join("\n");
    assert!(
        trace.contains("rx<<: \"PASS [password not logged]\""),
        "{trace}"
    );
    assert!(!trace.contains("secret1"), "{trace}");
    assert!(!trace.contains("AGFsaWNl"), "{trace}");
    h.feed(b"RETR 1\r\n");
    let trace = h.session.poll_trace();
    assert_eq!(
        trace[trace.len() - 2..],
        ["tx>>: [8 line(s) of content]", "tx>>: \".\""]
    );
}

mod properties {
    //! Over arbitrary content and input: RETR's reply un-stuffs back to
    //! the content (line ends made CRLF), no bare "." line comes before the
    //! end, and the session only ever writes whole CRLF lines.

    use super::*;
    use emailrelay_proto::pop::ContentEncoder;
    use proptest::prelude::*;

    fn encode(content: &[u8], chunk: usize) -> Vec<u8> {
        let mut encoder = ContentEncoder::retr();
        let mut out = Vec::new();
        for piece in content.chunks(chunk.max(1)) {
            assert!(encoder.encode(piece, &mut out));
        }
        encoder.finish(&mut out);
        out
    }

    /// What a client gets back: lines un-stuffed, the "." dropped.
    fn unstuff(reply: &[u8]) -> Vec<u8> {
        let text = reply.strip_suffix(b".\r\n").expect("terminated");
        let mut out = Vec::new();
        for line in text.split_inclusive(|&b| b == b'\n') {
            assert!(line.ends_with(b"\r\n"), "{line:?}");
            assert_ne!(line, b".\r\n", "a bare dot line inside");
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    /// The content with every line ending made CRLF and a last line
    /// terminated.
    fn crlf_lines(content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in content.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = if line.ends_with(b"\n") {
                text.strip_suffix(b"\r").unwrap_or(text)
            } else {
                text
            };
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    proptest! {
        #[test]
        fn retr_round_trips_any_content(
            content in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
            chunk in 1usize..17,
        ) {
            let reply = encode(&content, chunk);
            prop_assert_eq!(unstuff(&reply), crlf_lines(&content));
        }

        #[test]
        fn the_session_writes_only_whole_lines(input in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut h = Harness::new(config());
            let mut all = h.output();
            h.feed(b"USER alice\r\nPASS secret1\r\n");
            for piece in input.chunks(13) {
                all.push_str(&h.feed(piece));
            }
            prop_assert!(all.is_empty() || all.ends_with("\r\n"));
        }
    }
}
