//! Arbitrary server bytes into a client session sending one message.
#![no_main]
use emailrelay_proto::smtp::{
    ClientConfig, ClientEvent, ClientSession, OutgoingMessage, TlsPolicy,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = ClientConfig {
        helo_domain: "fuzz".into(),
        pipelining: true,
        forward_to_some: false,
        trace: true,
        tls: TlsPolicy::Offered,
        ..ClientConfig::default()
    };
    let mut client = ClientSession::new(config);
    let mut out = Vec::new();
    for piece in data.chunks(29) {
        client.handle_input(piece);
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Ready | ClientEvent::Done(_) => client.send_message(OutgoingMessage {
                    from: "a@b".into(),
                    to: vec!["c@d".into(), "e@f".into()],
                    ..OutgoingMessage::default()
                }),
                ClientEvent::SendContent => client.content_sent(1),
                ClientEvent::StartTls => client.tls_started(),
                ClientEvent::Failed(_) => {}
            }
        }
        client.poll_output(&mut out);
        client.poll_trace();
    }
});
