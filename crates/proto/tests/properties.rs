//! Properties over arbitrary input: the server session never panics, only
//! ever writes whole CRLF reply lines, and never lets stored content differ
//! from what the client meant; dot-stuffing round-trips through the server.

use emailrelay_proto::sasl::Mechanism;
use emailrelay_proto::smtp::{
    AuthConfig, AuthResult, DotStuffer, Event, MessageResult, ServerConfig, ServerSession,
    VerifyResult,
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
