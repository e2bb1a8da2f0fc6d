//! The client session against the server session, in memory: pipelining,
//! dot-stuffing end to end, refusals and their outcomes, HELO fallback,
//! and AUTH with every mechanism both sides speak.

use emailrelay_proto::sasl::{ClientSecret, Credentials, HmacMd5Key, Mechanism, MechanismPolicy};
use emailrelay_proto::smtp::{AuthConfig, AuthResult, ClientAuth};
use emailrelay_proto::smtp::{
    ClientConfig, ClientEvent, ClientSession, DotStuffer, Event, MessageResult, OutgoingMessage,
    Reply, SendOutcome, ServerConfig, ServerSession, VerifyResult,
};
use emailrelay_proto::smtp::{Strictness, TlsPolicy};

/// Runs both sessions until neither has anything to say; returns what the
/// server stored and the client's events.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    stored: Vec<Vec<u8>>,
    current: Vec<u8>,
    content: Vec<u8>,
    client_events: Vec<ClientEvent>,
    refuse: fn(&str) -> Option<Reply>,
    round_trips: usize,
    /// The server has said 220 to STARTTLS and waits for the handshake.
    server_handshake: bool,
    /// Every command line the server received.
    commands: Vec<String>,
}

impl Pair {
    fn new(server: ServerConfig, client: ClientConfig) -> Pair {
        Pair {
            client: ClientSession::new(client),
            server: ServerSession::new(server),
            stored: Vec::new(),
            current: Vec::new(),
            content: Vec::new(),
            client_events: Vec::new(),
            refuse: |_| None,
            round_trips: 0,
            server_handshake: false,
            commands: Vec::new(),
        }
    }

    fn pump(&mut self) {
        for _ in 0..100 {
            let mut to_client = Vec::new();
            self.server.poll_output(&mut to_client);
            let mut to_server = Vec::new();
            self.client.poll_output(&mut to_server);
            if to_client.is_empty() && to_server.is_empty() {
                return;
            }
            if !to_client.is_empty() {
                self.round_trips += 1;
                self.client.handle_input(&to_client);
            }
            while let Some(event) = self.client.poll_event() {
                if event == ClientEvent::SendContent {
                    let mut stuffed = Vec::new();
                    let mut stuffer = DotStuffer::default();
                    stuffer.stuff(&self.content, &mut stuffed);
                    stuffer.finish(&mut stuffed);
                    to_server.extend_from_slice(&stuffed);
                    self.client.content_sent(1);
                    self.client.poll_output(&mut to_server);
                }
                if event == ClientEvent::StartTls {
                    // The in-memory handshake: both ends agreed, it succeeds.
                    assert!(self.server_handshake, "client began TLS alone");
                    self.server.tls_started();
                    self.server_handshake = false;
                    self.client.tls_started();
                    self.client.poll_output(&mut to_server);
                }
                self.client_events.push(event);
            }
            let text = String::from_utf8_lossy(&to_server).into_owned();
            self.commands
                .extend(text.split_terminator("\r\n").map(str::to_string));
            self.server.handle_input(&to_server);
            while let Some(event) = self.server.poll_event() {
                match event {
                    Event::Verify { address, .. } => {
                        let result = match (self.refuse)(&address) {
                            Some(reply) => VerifyResult::Reject(reply),
                            None => VerifyResult::Remote(address),
                        };
                        self.server.answer_verify(result)
                    }
                    Event::MessageOpen => self.server.answer_message_open(),
                    Event::MessageStart => self.server.answer_message_start(Ok(0)),
                    Event::MessageData(d) => self.current.extend_from_slice(&d),
                    Event::MessageEnd => {
                        self.stored.push(std::mem::take(&mut self.current));
                        self.server.answer_message(MessageResult::Accepted)
                    }
                    Event::MessageAbort => self.current.clear(),
                    Event::Close => {}
                    Event::StartTls => self.server_handshake = true,
                    Event::AuthNonce => self.server.answer_auth_nonce("77.1795530688"),
                    Event::Authenticate { credentials, .. } => {
                        let result = if check(&credentials) {
                            AuthResult::Accepted {
                                name: credentials.user().to_string(),
                            }
                        } else {
                            AuthResult::Rejected
                        };
                        self.server.answer_auth(result)
                    }
                }
            }
        }
        panic!("the sessions did not settle");
    }

    fn send(&mut self, to: &[&str], content: &[u8]) -> SendOutcome {
        self.content = content.to_vec();
        self.client_events.clear();
        self.client.send_message(OutgoingMessage {
            from: "a@example.com".into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            ..OutgoingMessage::default()
        });
        self.pump();
        match self.client_events.iter().find_map(|e| {
            if let ClientEvent::Done(o) = e {
                Some(o.clone())
            } else {
                None
            }
        }) {
            Some(outcome) => outcome,
            None => panic!("no outcome: {:?}", self.client_events),
        }
    }
}

/// A client past the greeting and EHLO (`replies` holds both), with its
/// output so far drained.
fn ready_client(config: ClientConfig, replies: &[u8]) -> ClientSession {
    let mut client = ClientSession::new(config);
    client.handle_input(replies);
    assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
    client.poll_output(&mut Vec::new());
    client
}

fn client_config() -> ClientConfig {
    ClientConfig {
        strict: Strictness::default(),
        helo_domain: "relay.example.com".into(),
        pipelining: true,
        forward_to_some: false,
        trace: false,
        ..ClientConfig::default()
    }
}

fn verifying_server() -> ServerConfig {
    ServerConfig {
        verify_recipients: true,
        ..ServerConfig::default()
    }
}

#[test]
fn a_message_goes_through_with_its_dots_and_line_endings_intact() {
    let mut pair = Pair::new(ServerConfig::default(), client_config());
    pair.pump();
    assert_eq!(pair.client_events, vec![ClientEvent::Ready]);
    assert!(pair.client.capabilities().pipelining);
    let content = b"Subject: x\r\n\r\n.one\r\n..two\r\n.\r\nend";
    assert_eq!(
        pair.send(&["b@example.org"], content),
        SendOutcome::Sent { rejected: vec![] }
    );
    assert_eq!(
        pair.stored,
        vec![b"Subject: x\r\n\r\n.one\r\n..two\r\n.\r\nend\r\n".to_vec()]
    );
}

#[test]
fn pipelining_saves_round_trips() {
    let mut with = Pair::new(ServerConfig::default(), client_config());
    with.pump();
    with.round_trips = 0;
    with.send(&["1@x", "2@x", "3@x"], b"hi\r\n");
    let mut without = Pair::new(
        ServerConfig::default(),
        ClientConfig {
            pipelining: false,
            ..client_config()
        },
    );
    without.pump();
    without.round_trips = 0;
    without.send(&["1@x", "2@x", "3@x"], b"hi\r\n");
    assert_eq!(with.round_trips, 3, "MAIL+RCPTs, DATA, text");
    assert_eq!(without.round_trips, 6, "MAIL, 3 x RCPT, DATA, text");
}

#[test]
fn a_refused_recipient_fails_the_message_and_sends_no_data() {
    let mut pair = Pair::new(verifying_server(), client_config());
    pair.refuse = |a| (a == "bad@x").then(|| Reply::new(550, "no such user"));
    pair.pump();
    let outcome = pair.send(&["good@x", "bad@x"], b"hi\r\n");
    assert_eq!(
        outcome,
        SendOutcome::Failed(Reply::new(550, "one or more recipients rejected"))
    );
    assert!(pair.stored.is_empty(), "no DATA after a refused recipient");
    // The session is usable afterwards.
    assert_eq!(
        pair.send(&["good@x"], b"again\r\n"),
        SendOutcome::Sent { rejected: vec![] }
    );
}

#[test]
fn forward_to_some_sends_to_the_accepted_and_reports_the_rest() {
    let mut pair = Pair::new(
        verifying_server(),
        ClientConfig {
            forward_to_some: true,
            ..client_config()
        },
    );
    pair.refuse = |a| (a == "bad@x").then(|| Reply::new(550, "no such user"));
    pair.pump();
    let outcome = pair.send(&["good@x", "bad@x"], b"hi\r\n");
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            rejected: vec![("bad@x".into(), Reply::new(550, "no such user"))]
        }
    );
    assert_eq!(pair.stored.len(), 1);
}

#[test]
fn temporary_refusals_mean_retry() {
    let mut pair = Pair::new(verifying_server(), client_config());
    pair.refuse = |_| Some(Reply::new(450, "mailbox busy"));
    pair.pump();
    assert_eq!(
        pair.send(&["a@x", "b@x"], b"hi\r\n"),
        SendOutcome::Retry(Reply::new(450, "one or more recipients rejected"))
    );
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let mut client = ClientSession::new(client_config());
    client.handle_input(b"220 old server\r\n");
    let mut out = Vec::new();
    client.poll_output(&mut out);
    assert_eq!(out, b"EHLO relay.example.com\r\n");
    client.handle_input(b"500 what\r\n");
    out.clear();
    client.poll_output(&mut out);
    assert_eq!(out, b"HELO relay.example.com\r\n");
    client.handle_input(b"250 ok\r\n");
    assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
    assert!(!client.capabilities().pipelining);
}

#[test]
fn a_bad_greeting_or_garbage_fails_the_session() {
    let mut client = ClientSession::new(client_config());
    client.handle_input(b"554 go away\r\n");
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Failed(Reply::new(554, "go away")))
    );
    let mut client = ClientSession::new(client_config());
    client.handle_input(b"HTTP/1.1 400 Bad Request\r\n");
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Failed(Reply::new(
            421,
            "invalid response from server"
        )))
    );
}

#[test]
fn an_unsolicited_positive_reply_is_a_transient_protocol_error() {
    let mut client = ClientSession::new(client_config());
    client.handle_input(b"220 x\r\n250 x\r\n");
    assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
    // Nothing was asked: a reply now means the server is out of step.
    client.handle_input(b"250 ok\r\n");
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Failed(Reply::new(
            451,
            "protocol error: unexpected reply from the server: 250 ok"
        )))
    );
}

#[test]
fn a_missing_greeting_is_skipped_after_the_prompt_timeout() {
    let mut client = ClientSession::new(client_config());
    client.handle_prompt_timeout();
    let mut out = Vec::new();
    client.poll_output(&mut out);
    assert_eq!(out, b"EHLO relay.example.com\r\n");
}

#[test]
fn mail_parameters_follow_the_server_capabilities() {
    let mut client = ready_client(
        client_config(),
        b"220 x\r\n250-x\r\n250-8BITMIME\r\n250-SIZE 1000\r\n250-AUTH CRAM-MD5\r\n250 SMTPUTF8\r\n",
    );
    let mut out = Vec::new();
    client.send_message(OutgoingMessage {
        from: "a@b".into(),
        to: vec!["c@d".into()],
        body: emailrelay_proto::smtp::Body::EightBitMime,
        size: Some(10),
        smtputf8: true,
        auth: Some("<>".into()),
    });
    client.poll_output(&mut out);
    assert_eq!(
        out,
        b"MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 AUTH=<>\r\n"
    );
}

#[test]
fn strict_keywords_fail_what_the_server_cannot_take_without_sending_it() {
    let strict = Strictness {
        eightbit: true,
        smtputf8: true,
        binarymime: false,
    };
    let config = ClientConfig {
        strict,
        ..client_config()
    };
    let mut client = ready_client(config, b"220 x\r\n250-x\r\n250 PIPELINING\r\n");
    let mut out = Vec::new();
    let message = OutgoingMessage {
        from: "a@b".into(),
        to: vec!["c@d".into()],
        body: emailrelay_proto::smtp::Body::EightBitMime,
        ..OutgoingMessage::default()
    };
    client.send_message(message.clone());
    client.poll_output(&mut out);
    assert!(out.is_empty(), "nothing is sent");
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Done(SendOutcome::Unsendable(
            "cannot send 8-bit message to 7-bit server"
        )))
    );
    client.send_message(OutgoingMessage {
        body: Default::default(),
        smtputf8: true,
        ..message.clone()
    });
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Done(SendOutcome::Unsendable(
            "cannot send utf8 message to non-smtputf8 server"
        )))
    );
}

#[test]
fn binarymime_needs_binarymime_and_chunking_when_strict() {
    let strict = Strictness {
        binarymime: true,
        ..Strictness::default()
    };
    let config = ClientConfig {
        strict,
        ..client_config()
    };
    let message = OutgoingMessage {
        from: "a@b".into(),
        to: vec!["c@d".into()],
        body: emailrelay_proto::smtp::Body::BinaryMime,
        ..OutgoingMessage::default()
    };
    // BINARYMIME without CHUNKING is not enough (RFC 3030 section 3).
    let mut client = ready_client(config, b"220 x\r\n250-x\r\n250 BINARYMIME\r\n");
    client.send_message(message);
    let mut out = Vec::new();
    client.poll_output(&mut out);
    assert!(out.is_empty(), "nothing is sent");
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Done(SendOutcome::Unsendable(
            "cannot send binarymime message to a non-chunking server"
        )))
    );
}

#[test]
fn an_address_that_is_not_a_valid_path_never_becomes_a_command() {
    for (from, to) in [
        ("a@b\r\nRSET", "c@d"),
        ("a@b", "c@d\rDATA"),
        ("a@b", "c@d NOTIFY=NEVER"),
        ("a\0@b", "c@d"),
        ("a@b", ""),
    ] {
        let mut client = ready_client(client_config(), b"220 x\r\n250-x\r\n250 PIPELINING\r\n");
        client.send_message(OutgoingMessage {
            from: from.into(),
            to: vec![to.into()],
            ..OutgoingMessage::default()
        });
        let mut out = Vec::new();
        client.poll_output(&mut out);
        assert!(
            out.is_empty(),
            "{from:?} {to:?}: {}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(
            client.poll_event(),
            Some(ClientEvent::Done(SendOutcome::Unsendable(
                "invalid address in the envelope"
            )))
        );
    }
}

fn tls_server() -> ServerConfig {
    ServerConfig {
        starttls: true,
        ..ServerConfig::default()
    }
}

fn tls_client(tls: TlsPolicy) -> ClientConfig {
    ClientConfig {
        tls,
        ..client_config()
    }
}

fn failure(events: &[ClientEvent]) -> Option<Reply> {
    events.iter().find_map(|e| match e {
        ClientEvent::Failed(r) => Some(r.clone()),
        _ => None,
    })
}

#[test]
fn client_tls_uses_starttls_and_says_ehlo_again() {
    let mut pair = Pair::new(tls_server(), tls_client(TlsPolicy::Offered));
    pair.pump();
    assert!(pair.client.is_secure() && pair.server.is_secure());
    assert_eq!(
        &pair.commands[..3],
        [
            "EHLO relay.example.com",
            "STARTTLS",
            "EHLO relay.example.com"
        ]
    );
    let outcome = pair.send(&["bob@x"], b"secret\r\n");
    assert_eq!(outcome, SendOutcome::Sent { rejected: vec![] });
    assert_eq!(pair.stored, vec![b"secret\r\n".to_vec()]);
}

#[test]
fn client_tls_carries_on_in_clear_when_starttls_is_not_offered() {
    let mut pair = Pair::new(ServerConfig::default(), tls_client(TlsPolicy::Offered));
    pair.pump();
    assert!(!pair.client.is_secure());
    assert!(pair.client_events.contains(&ClientEvent::Ready));
    assert!(!pair.commands.iter().any(|c| c == "STARTTLS"));
}

#[test]
fn tls_required_never_sends_mail_in_clear() {
    let mut pair = Pair::new(ServerConfig::default(), tls_client(TlsPolicy::Required));
    pair.pump();
    assert_eq!(
        failure(&pair.client_events),
        Some(Reply::new(
            454,
            "TLS is required but not available: the server does not offer STARTTLS"
        ))
    );
    assert!(!pair.client_events.contains(&ClientEvent::Ready));
    // A message handed over anyway goes nowhere.
    pair.client.send_message(OutgoingMessage {
        from: "a@x".into(),
        to: vec!["b@x".into()],
        ..OutgoingMessage::default()
    });
    pair.pump();
    assert_eq!(pair.commands, ["EHLO relay.example.com"]);
}

#[test]
fn tls_required_fails_transiently_when_starttls_is_refused() {
    let mut client = ClientSession::new(tls_client(TlsPolicy::Required));
    client.handle_input(b"220 hi\r\n250-hi\r\n250 STARTTLS\r\n454 TLS not available now\r\n");
    let mut events = Vec::new();
    while let Some(e) = client.poll_event() {
        events.push(e);
    }
    let reply = failure(&events).expect("failed");
    assert_eq!(reply.code, 454);
    assert!(reply.is_transient());
    assert_eq!(
        reply.text(),
        "TLS is required but not available: the server refused STARTTLS: 454 TLS not available now"
    );
}

#[test]
fn replies_injected_before_the_client_handshake_are_discarded() {
    let mut client = ClientSession::new(tls_client(TlsPolicy::Required));
    let mut out = Vec::new();
    client.handle_input(b"220 hi\r\n250-hi\r\n250 STARTTLS\r\n");
    client.poll_output(&mut out);
    assert_eq!(out, b"EHLO relay.example.com\r\nSTARTTLS\r\n");
    // One packet: the 220 and a forged EHLO reply (no PIPELINING) sent in clear.
    client.handle_input(b"220 go ahead\r\n250 forged\r\n");
    assert_eq!(client.poll_event(), Some(ClientEvent::StartTls));
    client.handle_input(b"250 also forged\r\n");
    client.tls_started();
    out.clear();
    client.poll_output(&mut out);
    assert_eq!(out, b"EHLO relay.example.com\r\n");
    assert_eq!(client.poll_event(), None);
    client.handle_input(b"250-relay says hello\r\n250 PIPELINING\r\n");
    assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
    assert!(client.capabilities().pipelining);
    assert!(client.is_secure());
}

// ---- AUTH ----

/// The stand-in server's one account.
const USER: &str = "bob";
const PASSWORD: &str = "password123";

fn check(credentials: &Credentials) -> bool {
    match credentials {
        Credentials::Password { user, password, .. } => user == USER && password == PASSWORD,
        Credentials::CramMd5 {
            user,
            challenge,
            digest,
        } => {
            user == USER
                && HmacMd5Key::new(PASSWORD.as_bytes())
                    .mac(challenge.as_bytes())
                    .as_slice()
                    == digest
        }
        // SMTP has no APOP.
        Credentials::Apop { .. } => false,
    }
}

fn auth_server(mechanisms: &[Mechanism]) -> ServerConfig {
    ServerConfig {
        auth: Some(AuthConfig {
            clear: mechanisms.to_vec(),
            secure: mechanisms.to_vec(),
            trusted: false,
            trust_note: String::new(),
            max_failures: 3,
        }),
        ..ServerConfig::default()
    }
}

fn auth_client(secret: ClientSecret, policy: &str) -> ClientConfig {
    ClientConfig {
        auth: Some(ClientAuth {
            secret,
            policy: MechanismPolicy::parse(policy).unwrap(),
        }),
        trace: true,
        ..client_config()
    }
}

fn password(pw: &str) -> ClientSecret {
    ClientSecret::Password {
        user: USER.into(),
        password: pw.into(),
    }
}

/// The AUTH command the server saw and the name it accepted.
fn authenticate(server: ServerConfig, client: ClientConfig) -> (Pair, Option<String>) {
    let mut pair = Pair::new(server, client);
    pair.pump();
    let auth = pair
        .commands
        .iter()
        .find(|c| c.starts_with("AUTH"))
        .cloned();
    (pair, auth)
}

#[test]
fn each_mechanism_authenticates_and_mail_then_flows() {
    use Mechanism::*;
    let all = [Plain, Login, CramMd5];
    for (offered, policy, expected) in [
        (&all[..], "", "AUTH CRAM-MD5"),
        (&[Plain, Login][..], "", "AUTH PLAIN"),
        (&[Login][..], "", "AUTH LOGIN"),
        (&all[..], "m:login,plain", "AUTH LOGIN"),
    ] {
        let (mut pair, auth) = authenticate(
            auth_server(offered),
            auth_client(password(PASSWORD), policy),
        );
        assert!(auth.unwrap().starts_with(expected), "{offered:?} {policy}");
        assert_eq!(pair.client_events, vec![ClientEvent::Ready]);
        assert_eq!(pair.client.authenticated(), Some(USER));
        assert_eq!(pair.server.authentication().unwrap().name, USER);
        assert_eq!(
            pair.send(&["c@d"], b"hi\r\n"),
            SendOutcome::Sent { rejected: vec![] }
        );
    }
}

#[test]
fn a_stored_md5_secret_authenticates_with_cram_md5() {
    let secret = ClientSecret::Md5 {
        user: USER.into(),
        key: HmacMd5Key::from_base64("9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=").unwrap(),
    };
    let (pair, auth) = authenticate(
        auth_server(&[Mechanism::CramMd5, Mechanism::Plain]),
        auth_client(secret, ""),
    );
    assert_eq!(auth.as_deref(), Some("AUTH CRAM-MD5"));
    assert_eq!(pair.client.authenticated(), Some(USER));
}

#[test]
fn a_wrong_password_fails_the_session_with_the_servers_reason() {
    let (pair, _) = authenticate(
        auth_server(&[Mechanism::Plain]),
        auth_client(password("nope"), ""),
    );
    assert_eq!(
        pair.client_events,
        vec![ClientEvent::Failed(Reply::new(
            535,
            "authentication failed (PLAIN): authentication failed"
        ))]
    );
}

#[test]
fn no_usable_mechanism_fails_before_mail() {
    let md5 = ClientSecret::Md5 {
        user: USER.into(),
        key: HmacMd5Key::new(PASSWORD.as_bytes()),
    };
    let (pair, auth) = authenticate(auth_server(&[Mechanism::Plain]), auth_client(md5, ""));
    assert_eq!(auth, None);
    assert_eq!(
        pair.client_events,
        vec![ClientEvent::Failed(Reply::new(
            530,
            "cannot do authentication: the server offers AUTH PLAIN (without TLS), none usable with the client secret"
        ))]
    );
    let (pair, _) = authenticate(ServerConfig::default(), auth_client(password(PASSWORD), ""));
    assert!(
        matches!(&pair.client_events[..], [ClientEvent::Failed(r)] if r.text().contains("offers no AUTH"))
    );
}

#[test]
fn the_client_trace_masks_responses() {
    let (mut pair, _) = authenticate(
        auth_server(&[Mechanism::Login]),
        auth_client(password(PASSWORD), ""),
    );
    let trace = pair.client.poll_trace().join("\n");
    assert!(
        trace.contains(
            "tx>>: \"AUTH LOGIN Ym9i\"\nrx<<: \"334 UGFzc3dvcmQ6\"\ntx>>: [response not logged]"
        ),
        "{trace}"
    );
    assert!(!trace.contains("cGFzc3dvcmQxMjM="), "{trace}");
    let (mut pair, _) = authenticate(
        auth_server(&[Mechanism::Plain]),
        auth_client(password(PASSWORD), ""),
    );
    let trace = pair.client.poll_trace().join("\n");
    assert!(
        trace.contains("tx>>: \"AUTH PLAIN [not logged]\""),
        "{trace}"
    );
}

#[test]
fn the_auth_parameter_goes_only_to_servers_that_offer_auth() {
    let mut client = ready_client(client_config(), b"220 x\r\n250-x\r\n250 PIPELINING\r\n");
    let mut out = Vec::new();
    client.send_message(OutgoingMessage {
        from: "a@b".into(),
        to: vec!["c@d".into()],
        auth: Some("bob".into()),
        ..OutgoingMessage::default()
    });
    client.poll_output(&mut out);
    assert_eq!(out, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
}

#[test]
fn an_old_style_auth_capability_is_understood() {
    let mut client = ClientSession::new(auth_client(password(PASSWORD), ""));
    client.handle_input(b"220 x\r\n250-x\r\n250 AUTH=LOGIN\r\n");
    let mut out = Vec::new();
    client.poll_output(&mut out);
    assert_eq!(out, b"EHLO relay.example.com\r\nAUTH LOGIN Ym9i\r\n");
}
