//! Arbitrary client bytes, split at arbitrary points, into a POP3 session
//! whose stand-in driver logs anyone in and serves a maildrop made from
//! the input itself: it must never panic or loop, every reply must be
//! CRLF lines, and every RETR/TOP reply must end at its own "." line with
//! no bare "." line inside (byte-stuffing holds for any content).
#![no_main]
use emailrelay_proto::pop::{ContentEncoder, Event, MessageInfo, PopConfig, PopSession};
use emailrelay_proto::sasl::{AuthResult, Mechanism};
use libfuzzer_sys::fuzz_target;

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
    assert!(out.ends_with(b".\r\n"));
    let body = &out[..out.len() - 3];
    assert!(body.is_empty() || body.ends_with(b"\r\n"));
    for line in body.split(|&b| b == b'\n') {
        assert_ne!(line, b".\r", "an unstuffed dot line");
    }
}

fuzz_target!(|data: &[u8]| {
    let config = PopConfig {
        stls: true,
        tls_required: data.first() == Some(&b'R'),
        clear: vec![Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login],
        secure: vec![Mechanism::Plain],
        apop_challenge: Some("<1.2@fuzz>".into()),
        max_failures: 3,
        max_bad_commands: 10,
        trace: true,
        ..PopConfig::default()
    };
    check_content(data, None);
    check_content(data, data.get(1).map(|&n| u64::from(n % 8)));
    let mut session = PopSession::new(config);
    let mut out = Vec::new();
    for piece in data.chunks(37) {
        session.handle_input(piece);
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
                    MessageInfo { size: data.len() as u64, uid: "a".into() },
                    MessageInfo { size: 0, uid: "b".into() },
                ])),
                Event::Retrieve { .. } => {
                    session.answer_retrieve(true);
                    for piece in data.chunks(11) {
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
        session.poll_output(&mut out);
        let _ = session.poll_trace();
    }
    assert!(out.is_empty() || out.ends_with(b"\r\n"));
});
