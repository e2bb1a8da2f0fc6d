//! Properties over arbitrary input: the server session never panics, only
//! ever writes whole CRLF reply lines, and never lets stored content differ
//! from what the client meant; dot-stuffing round-trips through the server;
//! the DATA end-of-data detector agrees with a plain model of RFC 5321
//! section 4.5.2 wherever the chunks are cut; xtext and SASL base64
//! round-trip.

use emailrelay_proto::sasl::{base64_decode, base64_encode, Mechanism};
use emailrelay_proto::smtp::{
    xtext_decode, xtext_encode, AuthConfig, AuthResult, DotStuffer, Event, MessageResult,
    ServerConfig, ServerSession, VerifyResult,
};
use proptest::prelude::*;

fn drive(session: &mut ServerSession, stored: &mut Vec<Vec<u8>>, current: &mut Vec<u8>) {
    while let Some(event) = session.poll_event() {
        match event {
            Event::Verify { address, .. } => session.answer_verify(VerifyResult::Remote(address)),
            Event::MessageOpen => session.answer_message_open(),
            Event::MessageStart => {
                current.clear();
                session.answer_message_start(Ok(0))
            }
            Event::MessageData(d) => current.extend_from_slice(&d),
            Event::MessageEnd => {
                stored.push(std::mem::take(current));
                session.answer_message(MessageResult::Accepted)
            }
            Event::MessageAbort => current.clear(),
            Event::Close | Event::StartTls => {}
            Event::AuthNonce => session.answer_auth_nonce("n"),
            Event::Authenticate { credentials, .. } => {
                let result = if credentials.user() == "good" {
                    AuthResult::Accepted {
                        name: "good".into(),
                    }
                } else {
                    AuthResult::Rejected
                };
                session.answer_auth(result)
            }
        }
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        max_size: 5000,
        chunking: true,
        verify_recipients: true,
        // Trusted, so that arbitrary input reaches both AUTH and DATA.
        auth: Some(AuthConfig {
            clear: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            secure: vec![Mechanism::Plain],
            trusted: true,
            trust_note: String::new(),
            max_failures: 3,
        }),
        ..ServerConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_gives_only_well_formed_replies(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let mut session = ServerSession::new(config());
        let (mut stored, mut current) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        session.poll_output(&mut out);
        for chunk in &chunks {
            session.handle_input(chunk);
            drive(&mut session, &mut stored, &mut current);
            session.poll_output(&mut out);
        }
        let text = String::from_utf8_lossy(&out);
        prop_assert!(text.ends_with("\r\n"));
        for line in text.split_terminator("\r\n") {
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            prop_assert!((200..600).contains(&code), "bad reply line {:?}", line);
            prop_assert!(matches!(line.as_bytes().get(3), Some(b' ') | Some(b'-')), "bad separator {:?}", line);
        }
    }

    #[test]
    fn command_soup_with_auth_gives_well_formed_replies(picks in proptest::collection::vec((0usize..14, "[ -~]{0,40}"), 0..40)) {
        let vocabulary = [
            "EHLO x", "AUTH PLAIN", "AUTH LOGIN", "AUTH CRAM-MD5", "AUTH PLAIN AGdvb2QAcHc=",
            "AUTH PLAIN AGJhZABwdw==", "AUTH XOAUTH2 eA==", "*", "=", "Z29vZA==",
            "MAIL FROM:<a@b> AUTH=x", "RCPT TO:<c@d>", "DATA", "STARTTLS",
        ];
        let mut session = ServerSession::new(config());
        let (mut stored, mut current) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        session.poll_output(&mut out);
        for (pick, noise) in &picks {
            let line = if pick % 3 == 0 { noise.as_str() } else { vocabulary[*pick] };
            session.handle_input(format!("{line}\r\n").as_bytes());
            drive(&mut session, &mut stored, &mut current);
            session.poll_output(&mut out);
        }
        let text = String::from_utf8_lossy(&out);
        for line in text.split_terminator("\r\n") {
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            prop_assert!((200..600).contains(&code), "bad reply line {:?}", line);
        }
    }

    #[test]
    fn stuffed_content_arrives_as_sent(lines in proptest::collection::vec("[ -~]{0,80}", 0..40), split in 1usize..50) {
        let content: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        let mut wire = b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
        let mut stuffer = DotStuffer::default();
        stuffer.stuff(content.as_bytes(), &mut wire);
        stuffer.finish(&mut wire);
        let mut session = ServerSession::new(ServerConfig { max_size: 0, ..config() });
        let (mut stored, mut current) = (Vec::new(), Vec::new());
        for piece in wire.chunks(split) {
            session.handle_input(piece);
            drive(&mut session, &mut stored, &mut current);
        }
        prop_assert_eq!(stored, vec![content.into_bytes()]);
    }
}

/// The model of the DATA phase: `text` is what follows the `DATA` line.
/// The first line that is exactly `.` ends it (a line starts at the
/// beginning and after each CRLF; a bare CR or LF ends nothing); the
/// message is every line before it, each without a leading dot it has.
/// `None` if no such line.
fn model_message(text: &[u8]) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut start = 0;
    loop {
        let end = text[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| start + i + 2)?;
        let line = &text[start..end];
        if line == b".\r\n" {
            return Some(message);
        }
        message.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        start = end;
    }
}

/// Message text made of the pieces that matter to the detector: dots,
/// bare CRs and LFs, CRLFs, ordinary octets, and lines around the
/// 1000-octet text line limit (with and without a leading dot).
fn text_pieces() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => Just(b".".to_vec()),
        4 => Just(b"\r".to_vec()),
        4 => Just(b"\n".to_vec()),
        6 => Just(b"\r\n".to_vec()),
        2 => Just(b".\r\n".to_vec()),
        2 => Just(b"..".to_vec()),
        6 => proptest::collection::vec(any::<u8>(), 1..8),
        1 => (995usize..1005, any::<bool>()).prop_map(|(n, dot)| {
            let mut long = vec![b'x'; n];
            if dot {
                long[0] = b'.';
            }
            long
        }),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

/// Feeds `wire` to a session in chunks of the given sizes (cycled):
/// the messages stored and everything the session wrote.
fn feed_in_chunks(wire: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, String) {
    let mut session = ServerSession::new(ServerConfig {
        max_size: 0,
        max_hops: 0,
        ..config()
    });
    let (mut stored, mut current) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    let mut rest = wire;
    for &cut in cuts.iter().cycle() {
        if rest.is_empty() || session.is_closed() {
            break;
        }
        let (piece, after) = rest.split_at(cut.min(rest.len()));
        session.handle_input(piece);
        drive(&mut session, &mut stored, &mut current);
        session.poll_output(&mut out);
        rest = after;
    }
    (stored, String::from_utf8_lossy(&out).into_owned())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_end_of_data_detector_agrees_with_the_model(
        text in text_pieces(),
        cuts in proptest::collection::vec(1usize..1500, 1..8),
    ) {
        const HEAD: &[u8] = b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
        let mut wire = [HEAD, &text].concat();
        let terminated = model_message(&text).is_some();
        if !terminated {
            // Ended here, and what follows the dot is a command again.
            wire.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        }
        let expected = model_message(&wire[HEAD.len()..]).unwrap();
        let (stored, out) = feed_in_chunks(&wire, &cuts);
        prop_assert_eq!(stored, vec![expected]);
        if !terminated {
            // (A text that ends in a lone `.` line is ended by the CRLF
            // added here, and the added dot is then a bad command.)
            prop_assert_eq!(out.matches("250 message processed\r\n").count(), 1, "{:?}", out);
            prop_assert!(out.ends_with("\r\n221 OK\r\n"), "{:?}", out);
        }
    }

    #[test]
    fn xtext_round_trips_any_text_and_writes_only_xchars(text in "\\PC*|[\\x00-\\x7f]*") {
        let encoded = xtext_encode(&text);
        prop_assert!(encoded.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'='), "{:?}", encoded);
        prop_assert_eq!(xtext_decode(&encoded), text);
    }

    #[test]
    fn xtext_decoding_changes_only_plus_escapes(text in "[^+]{0,40}", junk in "[+0-9A-Fa-f\\PC]{0,40}") {
        // Text without `+` is its own decoding; anything at all decodes
        // without a panic.
        prop_assert_eq!(xtext_decode(&text), text);
        let _ = xtext_decode(&junk);
    }

    #[test]
    fn base64_round_trips_any_octets(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let encoded = base64_encode(&bytes);
        prop_assert_eq!(encoded.len() % 4, 0);
        prop_assert_eq!(base64_decode(&encoded), Some(bytes));
    }

    #[test]
    fn base64_takes_only_canonical_text(text in "[A-Za-z0-9+/=]{0,24}") {
        // What decodes is exactly what encoding it gives back: no second
        // spelling of the same octets gets through.
        if let Some(bytes) = base64_decode(&text) {
            prop_assert_eq!(base64_encode(&bytes), text);
        }
    }
}
