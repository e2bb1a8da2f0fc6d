//! Postfix as the real smarthost: what it delivers is checked at its end,
//! and what it refuses ends up in `.bad` with Postfix's own reason.

use std::time::Duration;

use crate::harness::{wait_until, Client, Postfix, Relay};

#[test]
fn postfix_receives_what_the_relay_forwards_and_refuses_unrelayable_mail() {
    let dir = tempfile::tempdir().unwrap();
    let postfix = Postfix::start(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--forward-to",
            &postfix.address(),
        ],
    );
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO scanner");
    let body = "Subject: scan 42\r\n\r\nfirst line\r\n..leading dot\r\nlast line\r\n";
    assert_eq!(
        c.send_message("scanner@lan.example.com", &["bob@example.org"], body),
        "250 message processed"
    );
    assert_eq!(
        c.send_message(
            "scanner@lan.example.com",
            &["eve@elsewhere.example"],
            "Subject: no\r\n\r\nx\r\n"
        ),
        "250 message processed"
    );
    c.command("QUIT");
    assert!(
        wait_until(Duration::from_secs(60), || postfix.delivered().len() == 1),
        "{}",
        relay.log_text()
    );
    let delivered = &postfix.delivered()[0];
    assert!(
        delivered
            .contains("Received: from scanner ([127.0.0.1]) by relay.example.com with ESMTP ; "),
        "{delivered}"
    );
    assert!(
        delivered.contains("by smarthost.example.net (Postfix) with ESMTP"),
        "{delivered}"
    );
    assert!(delivered.contains("\nSubject: scan 42\n"), "{delivered:?}");
    assert!(
        delivered.ends_with("\n\nfirst line\n.leading dot\nlast line\n"),
        "{delivered:?}"
    );
    assert!(wait_until(Duration::from_secs(30), || relay
        .files(".envelope.bad")
        .len()
        == 1
        && relay.files(".busy").is_empty()));
    let bad = std::fs::read_to_string(relay.spool.join(&relay.files(".envelope.bad")[0])).unwrap();
    assert!(
        bad.contains("X-MailRelay-To-Remote: eve@elsewhere.example\r\n"),
        "{bad}"
    );
    assert!(bad.ends_with("X-MailRelay-Reason: one or more recipients rejected\r\nX-MailRelay-ReasonCode: 550\r\n"), "{bad}");
    assert_eq!(
        relay.files(".envelope").len(),
        0,
        "the delivered message is gone from the spool"
    );
}
