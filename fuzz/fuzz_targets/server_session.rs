//! Arbitrary client bytes, split at arbitrary points, into a server session
//! that accepts everything: it must never panic or loop.
#![no_main]
use emailrelay_proto::smtp::{Event, MessageResult, ServerConfig, ServerSession, VerifyResult};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = ServerConfig { max_size: 10_000, chunking: true, verify_recipients: true, starttls: true, ..ServerConfig::default() };
    let mut session = ServerSession::new(config);
    let mut out = Vec::new();
    for piece in data.chunks(37) {
        session.handle_input(piece);
        while let Some(event) = session.poll_event() {
            match event {
                Event::Verify { address, .. } => session.answer_verify(VerifyResult::Remote(address)),
                Event::MessageStart => session.answer_message_start(Ok(())),
                Event::MessageEnd => session.answer_message(MessageResult::Accepted),
                Event::StartTls => session.tls_started(),
                _ => {}
            }
        }
        session.poll_output(&mut out);
    }
});
