//! Arbitrary client bytes, split at arbitrary points, into a server session
//! that accepts everything (AUTH included): it must never panic or loop.
#![no_main]
use emailrelay_proto::sasl::Mechanism;
use emailrelay_proto::smtp::{
    AuthConfig, AuthResult, Event, MessageResult, ServerConfig, ServerSession, VerifyResult,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = ServerConfig { max_size: 10_000, chunking: true, verify_recipients: true, starttls: true, auth: Some(AuthConfig { clear: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5], secure: vec![Mechanism::Plain], trusted: data.first() == Some(&b'T'), trust_note: String::new(), max_failures: 3 }), ..ServerConfig::default() };
    let mut session = ServerSession::new(config);
    let mut out = Vec::new();
    for piece in data.chunks(37) {
        session.handle_input(piece);
        while let Some(event) = session.poll_event() {
            match event {
                Event::Verify { address, .. } => session.answer_verify(VerifyResult::Remote(address)),
                Event::MessageOpen => session.answer_message_open(),
                Event::MessageStart => session.answer_message_start(Ok(0)),
                Event::MessageEnd => session.answer_message(MessageResult::Accepted),
                Event::StartTls => session.tls_started(),
                Event::AuthNonce => session.answer_auth_nonce("0123.45"),
                Event::Authenticate { credentials, .. } => session.answer_auth(if credentials.user() == "ok" {
                    AuthResult::Accepted { name: "ok".into() }
                } else {
                    AuthResult::Rejected
                }),
                _ => {}
            }
        }
        session.poll_output(&mut out);
    }
});
