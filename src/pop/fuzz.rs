//! Fuzzing the POP3 session (`scripts/fuzz pop <seconds>`): arbitrary
//! client bytes, cut at arbitrary points, into the sans-IO session with a
//! stand-in driver that logs `ok` in and serves a two-message maildrop.
//! Oracles: no panic or hang; every reply byte is printable or a CRLF
//! line end (control characters a client sends are never echoed raw);
//! the trace lines are printable too; RETR and TOP byte-stuff any content.

use emailrelay_proto::pop::{ContentEncoder, Event, MessageInfo, PopConfig, PopSession};
use emailrelay_proto::sasl::{AuthResult, Mechanism};

use crate::fuzzing::{self, feature, Rng, Target};

/// The maildrop's content: a dot at a line start, so that stuffing shows.
const CONTENT: &[u8] = b"Subject: fuzz\r\n\r\n.hello\r\n..\r\n.\r\nend\r\n";

const SEEDS: &[&[u8]] = &[
    b"CAPA\r\nUSER ok\r\nPASS x\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 1 0\r\nDELE 2\r\nRSET\r\nNOOP\r\nQUIT\r\n",
    b"APOP ok 0123456789abcdef0123456789abcdef\r\nLIST 1\r\nUIDL 2\r\nRETR 2\r\nQUIT\r\n",
    b"AUTH PLAIN\r\nAG9rAHg=\r\nSTAT\r\nTOP 1 3\r\nQUIT\r\n",
    b"AUTH LOGIN b2s=\r\neA==\r\nLIST\r\n",
    b"AUTH CRAM-MD5\r\nb2sgMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\r\n",
    b"STLS\r\nUSER ok\r\nPASS x\r\n",
    b"USER a\x00b\x1b[2Jc\r\nPASS\r\nAUTH\r\n*\r\n",
];

const DICTIONARY: &[&[u8]] = &[
    b"USER ",
    b"PASS ",
    b"APOP ",
    b"AUTH ",
    b"PLAIN",
    b"LOGIN",
    b"CRAM-MD5",
    b"XOAUTH2",
    b"STAT",
    b"LIST",
    b"UIDL",
    b"RETR ",
    b"TOP ",
    b"DELE ",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"CAPA",
    b"STLS",
    b"ok",
    b" 1",
    b" 2",
    b" 0",
    b" 4294967296",
    b" -1",
    b"*",
    b"=",
    b"AG9rAHg=",
    b"b2s=",
    b"\x00",
    b"\x1b",
    b"\xff\xfe",
];

fn config(first: Option<u8>) -> PopConfig {
    PopConfig {
        stls: true,
        tls_required: first == Some(b'R'),
        clear: vec![Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login],
        secure: vec![Mechanism::Plain],
        apop_challenge: Some("<1.2@fuzz>".into()),
        max_failures: 3,
        max_bad_commands: 10,
        trace: true,
        ..PopConfig::default()
    }
}

/// One input: the session's features, after the oracles.
fn check(data: &[u8], rng: &mut Rng) -> Vec<u64> {
    check_content(data, None);
    check_content(data, data.get(1).map(|&n| u64::from(n % 8)));
    let mut session = PopSession::new(config(data.first().copied()));
    let mut out = Vec::new();
    let mut trace = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (piece, after) = rest.split_at((1 + rng.below(64)).min(rest.len()));
        rest = after;
        session.handle_input(piece);
        drive(&mut session);
        session.poll_output(&mut out);
        trace.extend(session.poll_trace());
    }
    check_output(&out);
    for line in &trace {
        assert!(
            !line.chars().any(char::is_control),
            "a trace line with a control character: {line:?}"
        );
    }
    // Pairs of consecutive replies, each by its first words with digits
    // folded: the dialogue's shape, not its names and numbers.
    let shapes: Vec<Vec<u8>> = out
        .split(|&b| b == b'\n')
        .map(|line| {
            line.iter()
                .take(10)
                .map(|&b| if b.is_ascii_digit() { b'0' } else { b })
                .collect()
        })
        .collect();
    let mut features: Vec<u64> = shapes
        .windows(2)
        .map(|pair| feature(&pair.concat()))
        .collect();
    features.push(feature(&[u8::from(session.is_closed())]));
    features
}

/// The stand-in driver: `ok` is the one account; two messages.
fn drive(session: &mut PopSession) {
    while let Some(event) = session.poll_event() {
        match event {
            Event::AuthNonce => session.answer_auth_nonce("0123.45", "fuzz"),
            Event::Authenticate { credentials, .. } => {
                session.answer_auth(if credentials.user() == "ok" {
                    AuthResult::Accepted { name: "ok".into() }
                } else {
                    AuthResult::Rejected
                })
            }
            Event::Maildrop { .. } => session.answer_maildrop(Ok(vec![
                MessageInfo {
                    size: CONTENT.len() as u64,
                    uid: "a".into(),
                },
                MessageInfo {
                    size: 0,
                    uid: "b".into(),
                },
            ])),
            Event::Retrieve { .. } => {
                session.answer_retrieve(true);
                for piece in CONTENT.chunks(5) {
                    if !session.write_content(piece) {
                        break;
                    }
                }
                session.finish_content();
            }
            Event::Update { .. } => session.answer_update(true),
            Event::StartTls => session.tls_started(),
            Event::Close => {}
        }
    }
}

/// Replies are CRLF lines of printable text (the content served has
/// none other either).
fn check_output(out: &[u8]) {
    assert!(out.is_empty() || out.ends_with(b"\r\n"), "{out:?}");
    for (i, &b) in out.iter().enumerate() {
        let ok = match b {
            b'\r' => out.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && out[i - 1] == b'\r',
            _ => !b.is_ascii_control(),
        };
        assert!(
            ok,
            "a raw control octet {b:#04x} in the replies: {:?}",
            String::from_utf8_lossy(out)
        );
    }
}

/// RETR and TOP of any content: ends at its own "." line, no bare "."
/// line inside.
fn check_content(content: &[u8], lines: Option<u64>) {
    let mut encoder = match lines {
        Some(n) => ContentEncoder::top(n),
        None => ContentEncoder::retr(),
    };
    let mut out = Vec::new();
    let mut more = true;
    for piece in content.chunks(7) {
        more = encoder.encode(piece, &mut out);
        if !more {
            break;
        }
    }
    if more {
        encoder.finish(&mut out);
    }
    assert!(out.ends_with(b".\r\n"), "{out:?}");
    let body = &out[..out.len() - 3];
    assert!(body.is_empty() || body.ends_with(b"\r\n"), "{out:?}");
    for line in body.split(|&b| b == b'\n') {
        assert_ne!(line, b".\r", "an unstuffed dot line");
    }
}

#[test]
fn the_seeds_pass() {
    for seed in SEEDS {
        check(seed, &mut Rng::new(7));
    }
}

#[test]
#[ignore = "a fuzz run: scripts/fuzz pop <seconds>"]
fn fuzz_pop_session() {
    let target = Target {
        name: "pop",
        seeds: SEEDS,
        dictionary: DICTIONARY,
        max_len: 4096,
        check: &check,
    };
    let report = fuzzing::run(&target, fuzzing::budget());
    fuzzing::finish("pop", &report);
}
