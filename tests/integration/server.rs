//! The SMTP server against real clients (swaks, Python smtplib, raw
//! sockets), the spool files it writes, byte for byte, and the log lines
//! E-MailRelay 2.6.1 writes for the same dialogue.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::harness::{program, run, Client, Relay};

#[test]
fn swaks_submission_writes_emailrelay_spool_files() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let (code, out, _) = run(
        Command::new(program("swaks"))
            .args([
                "--server",
                &format!("127.0.0.1:{}", relay.port),
                "--helo",
                "vm",
            ])
            .args([
                "--from",
                "alice@example.com",
                "--to",
                "bob@example.org,carol@example.net",
                "--body",
                "hello",
            ]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<-  220 relay.example.com -- E-MailRelay-rs V"));
    assert!(out.contains("<-  250 sender <alice@example.com> OK"));
    assert!(out.contains("<-  250 recipient <carol@example.net> OK"));
    assert!(out.contains("<-  354 start mail input -- end with <CRLF>.<CRLF>"));
    assert!(out.contains("<-  250 message processed"));
    assert!(out.contains("<-  221 OK"));

    let envelopes = relay.files(".envelope");
    assert_eq!(envelopes.len(), 1);
    let name = &envelopes[0];
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(
        (parts[0], parts[4], parts.len()),
        ("emailrelay", "envelope", 5),
        "{name}"
    );
    assert_eq!(parts[1], relay.proc.pid().to_string());
    assert_eq!(parts[3], "1");
    let envelope = std::fs::read_to_string(relay.spool.join(name)).unwrap();
    assert_eq!(
        envelope,
        "X-MailRelay-Format: #2821.8\r\nX-MailRelay-Content: unknown\r\nX-MailRelay-From: alice@example.com\r\n\
         X-MailRelay-ToCount: 2\r\nX-MailRelay-To-Remote: bob@example.org\r\nX-MailRelay-To-Remote: carol@example.net\r\n\
         X-MailRelay-Authentication: \r\nX-MailRelay-Client: 127.0.0.1\r\nX-MailRelay-ClientCertificate: \r\n\
         X-MailRelay-MailFromAuthIn: \r\nX-MailRelay-MailFromAuthOut: \r\nX-MailRelay-ForwardTo: \r\n\
         X-MailRelay-ForwardToAddress: \r\nX-MailRelay-ClientAccountSelector: \r\nX-MailRelay-Utf8MailboxNames: 0\r\n\
         X-MailRelay-End: 1\r\n"
    );
    let content_name = name.replace(".envelope", ".content");
    let content = std::fs::read_to_string(relay.spool.join(&content_name)).unwrap();
    assert!(
        content.starts_with("Received: from vm ([127.0.0.1]) by relay.example.com with ESMTP ; "),
        "{content}"
    );
    assert!(content.contains("\r\n\r\nhello\r\n"));
    let mode = std::fs::metadata(relay.spool.join(&content_name))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    assert!(relay.files(".new").is_empty());
    let log = relay.wait_log("smtp protocol done");
    // E-MailRelay 2.6.1: the content file is made when MAIL is accepted.
    assert!(
        log.contains(&format!(
            "emailrelay: info: rx<<: \"MAIL FROM:<alice@example.com>\"\n\
             emailrelay: info: tx>>: \"250 sender <alice@example.com> OK\"\n\
             emailrelay: info: new content file [{content_name}]\n"
        )),
        "{log}"
    );
    assert!(log.contains(
        "emailrelay: info: rx<<: [message content not logged]\n\
         emailrelay: info: rx<<: \".\"\n\
         emailrelay: info: new envelope file ["
    ));
    assert!(
        log.contains("emailrelay: info: smtp connection closed: smtp protocol done: 127.0.0.1:")
    );
}

#[test]
fn python_smtplib_sends_several_messages_in_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--size", "100000"]);
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, local_hostname="py", timeout=20)
code, text = s.ehlo()
assert code == 250, (code, text)
assert s.has_extn("pipelining") and s.has_extn("8bitmime") and s.has_extn("size")
assert s.esmtp_features["size"] == "100000"
for i in range(3):
    refused = s.sendmail("a@example.com", ["b@example.org"], "Subject: %d\r\n\r\nbody %d\r\n.dot line\r\n" % (i, i))
    assert refused == {{}}
try:
    s.sendmail("a@example.com", ["b@example.org"], "x" * 200000)
    raise SystemExit("oversized message accepted")
except smtplib.SMTPSenderRefused as e:
    assert e.smtp_code == 552, e
print(s.verify("bob"))
s.quit()
"#,
        port = relay.port
    );
    let (code, out, err) = run(
        Command::new("python3").args(["-c", &script]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "(252, b'cannot verify but will accept: bob')");
    let contents = relay.files(".content");
    assert_eq!(contents.len(), 3);
    let text = std::fs::read_to_string(relay.spool.join(&contents[0])).unwrap();
    assert!(
        text.ends_with("Subject: 0\r\n\r\nbody 0\r\n.dot line\r\n"),
        "{text}"
    );
}

#[test]
fn raw_dialogue_limits_and_bare_lf() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let mut c = Client::connect(relay.port);
    c.reply();
    assert_eq!(
        c.command("MAIL FROM:<a@b>"),
        "503 command out of sequence -- use RSET to resynchronise"
    );
    c.command("EHLO vm");
    // E-MailRelay 2.6.1: a long command line is fine, with a warning.
    assert_eq!(c.command(&format!("NOOP {}", "x".repeat(2000))), "250 noop");
    assert_eq!(
        c.command("RCPT TO:<a@b>"),
        "503 command out of sequence -- use RSET to resynchronise"
    );
    assert_eq!(c.command("MAIL FROM:<a@b>"), "250 sender <a@b> OK");
    assert_eq!(c.command("DATA"), "554 no valid recipients");
    assert_eq!(c.command("MAIL FROM:<a@b>"), "250 sender <a@b> OK");
    assert_eq!(c.command("RCPT TO:<c@d>"), "250 recipient <c@d> OK");
    assert_eq!(
        c.command("DATA"),
        "354 start mail input -- end with <CRLF>.<CRLF>"
    );
    c.send("line one\n.\nQUIT\n\r\n");
    assert_eq!(c.command("."), "250 message processed");
    assert_eq!(c.command("QUIT now"), "221 OK");
    let content = std::fs::read_to_string(relay.spool.join(&relay.files(".content")[0])).unwrap();
    assert!(content.ends_with("line one\n.\nQUIT\n\r\n"), "{content:?}");
    let log = relay.wait_log("smtp protocol done");
    assert_eq!(
        log.matches("emailrelay: warning: very long line detected: 2005 > 1000\n")
            .count(),
        1,
        "{log}"
    );
    // The trace of the long line is cut as 2.6.1's logger cuts it.
    let traced = log.lines().find(|l| l.contains("rx<<: \"NOOP x")).unwrap();
    assert_eq!(
        traced.len(),
        "emailrelay: info: ".len() + 999 + " ...".len()
    );
    assert!(traced.ends_with("xxx ..."), "{traced}");
}

#[test]
fn a_huge_command_line_ends_the_session_silently() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.send(&format!("NOOP {}", "n".repeat(100_000)));
    // E-MailRelay 2.6.1: no reply, just the close.
    assert_eq!(c.reply(), "");
    assert!(relay.wait_log("server protocol overflow").contains(
        "emailrelay: info: smtp connection closed: server protocol overflow: 127.0.0.1:"
    ));
}

#[test]
fn the_eighth_protocol_error_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let mut c = Client::connect(relay.port);
    c.reply();
    for i in 0..7 {
        assert_eq!(c.command(&format!("XYZZY{i}")), "500 command unrecognized");
    }
    // Syntax errors in arguments are not counted.
    assert_eq!(c.command("EHLO"), "501 parameter required");
    assert_eq!(
        c.command("DATA"),
        "503 command out of sequence -- use RSET to resynchronise"
    );
    assert_eq!(c.reply(), "");
    assert!(relay.wait_log("too many protocol errors").contains(
        "emailrelay: info: smtp connection closed: smtp protocol done: \
         too many protocol errors from the client: 127.0.0.1:"
    ));
}

#[test]
fn silent_clients_are_cut_off_without_a_reply() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--idle-timeout", "1"]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO vm");
    let started = std::time::Instant::now();
    // E-MailRelay 2.6.1: the connection just closes.
    assert_eq!(c.reply(), "");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(relay
        .wait_log("idle timeout")
        .contains("smtp connection closed: idle timeout: no activity after 1s: 127.0.0.1:"));
}

#[test]
fn a_trickled_command_must_be_complete_within_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--idle-timeout", "1"]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.send("NO");
    std::thread::sleep(Duration::from_millis(600));
    c.send("O");
    assert_eq!(c.reply(), "");
    assert!(relay
        .wait_log("command not complete")
        .contains("smtp connection closed: timeout: command not complete after 1s: 127.0.0.1:"));
}

#[test]
fn bdat_with_chunking_on_stores_the_exact_octets() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &["--server-smtp-config", "chunking", "--anonymous=content"],
    );
    let mut c = Client::connect(relay.port);
    c.reply();
    c.send("EHLO vm\r\n");
    let ehlo = c.reply();
    assert!(
        ehlo.contains("250-CHUNKING\r\n") || ehlo.ends_with("250 CHUNKING\r\n"),
        "{ehlo}"
    );
    assert_eq!(c.command("MAIL FROM:<a@b.c>"), "250 sender <a@b.c> OK");
    assert_eq!(c.command("RCPT TO:<d@e.f>"), "250 recipient <d@e.f> OK");
    c.send("BDAT 19\r\nSubject: s\r\n\r\n.\r\nQU");
    assert_eq!(c.reply(), "250 19 bytes received\r\n");
    c.send("BDAT 7 LAST\r\nIT\r\nx\r\n");
    assert_eq!(c.reply(), "250 message processed\r\n");
    let content = std::fs::read(relay.spool.join(&relay.files(".content")[0])).unwrap();
    assert_eq!(content, b"Subject: s\r\n\r\n.\r\nQUIT\r\nx\r\n");
}

#[test]
fn mail_parameters_are_recorded_in_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--server-smtp-config", "smtputf8"]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO vm");
    assert_eq!(
        c.command("MAIL FROM:<a@b.c> BODY=8BITMIME SMTPUTF8 AUTH=bob+2Bsmith"),
        "250 sender <a@b.c> OK"
    );
    assert_eq!(c.command("RCPT TO:<d@e.f>"), "250 recipient <d@e.f> OK");
    assert_eq!(
        c.command("DATA"),
        "354 start mail input -- end with <CRLF>.<CRLF>"
    );
    assert_eq!(c.command("x\r\n."), "250 message processed");
    let envelope = std::fs::read_to_string(relay.spool.join(&relay.files(".envelope")[0])).unwrap();
    assert!(
        envelope.contains("X-MailRelay-Content: 8bit\r\n"),
        "{envelope}"
    );
    assert!(
        envelope.contains("X-MailRelay-MailFromAuthIn: bob+2Bsmith\r\n"),
        "{envelope}"
    );
    // E-MailRelay 2.6.1: the flag is about UTF-8 local parts, not the keyword.
    assert!(
        envelope.contains("X-MailRelay-Utf8MailboxNames: 0\r\n"),
        "{envelope}"
    );
}

#[test]
fn utf8_domains_are_stored_in_a_labels() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--server-smtp-config", "smtputf8"]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO vm");
    assert_eq!(
        c.command("MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8"),
        "250 sender <j\u{f6}rg@b\u{fc}cher.example> OK"
    );
    assert_eq!(
        c.command("RCPT TO:<bob@b\u{fc}cher.example>"),
        "250 recipient <bob@b\u{fc}cher.example> OK"
    );
    c.command("DATA");
    assert_eq!(c.command("x\r\n."), "250 message processed");
    let envelope = std::fs::read_to_string(relay.spool.join(&relay.files(".envelope")[0])).unwrap();
    assert!(
        envelope.contains(
            "X-MailRelay-From: j\u{f6}rg@xn--bcher-kva.example\r\n\
             X-MailRelay-ToCount: 1\r\nX-MailRelay-To-Remote: bob@xn--bcher-kva.example\r\n"
        ),
        "{envelope}"
    );
    assert!(envelope.contains("X-MailRelay-Utf8MailboxNames: 1\r\n"));
}

#[test]
fn paths_without_brackets_need_nostrictparsing() {
    let dir = tempfile::tempdir().unwrap();
    let strict = Relay::start(dir.path(), &[]);
    let mut c = Client::connect(strict.port);
    c.reply();
    c.command("EHLO vm");
    for _ in 0..2 {
        assert_eq!(
            c.command("MAIL FROM:a@b.c"),
            "553 mailbox name not allowed: missing angle brackets in mailbox name"
        );
    }
    assert_eq!(c.command("MAIL FROM: <a@b.c>"), "250 sender <a@b.c> OK");
    // The hint, once for the process.
    let hint = "emailrelay: warning: invalid smtp command syntax from remote client: \
                use --server-smtp-config=nostrictparsing to allow\n";
    assert_eq!(strict.wait_log("nostrictparsing").matches(hint).count(), 1);

    let dir = tempfile::tempdir().unwrap();
    let lenient = Relay::start(dir.path(), &["--server-smtp-config", "nostrictparsing"]);
    let mut c = Client::connect(lenient.port);
    c.reply();
    c.command("EHLO vm");
    assert_eq!(c.command("MAIL FROM:a@b.c"), "250 sender <a@b.c> OK");
    assert_eq!(c.command("RCPT TO:d@e.f"), "250 recipient <d@e.f> OK");
}

#[test]
fn the_content_file_lives_from_mail_to_the_end_of_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--size", "200"]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO vm");
    assert_eq!(c.command("MAIL FROM:<a@b.c>"), "250 sender <a@b.c> OK");
    assert_eq!(relay.files(".content").len(), 1);
    assert_eq!(c.command("RSET"), "250 state reset");
    assert!(crate::harness::wait_until(Duration::from_secs(5), || relay
        .files("")
        .is_empty()));
    // --size counts the Received line too, as 2.6.1 counts it: 120 octets
    // of text do not fit in 200 with it.
    c.command("MAIL FROM:<a@b.c>");
    c.command("RCPT TO:<d@e.f>");
    c.command("DATA");
    let text = format!("{}\r\n.", "x".repeat(118));
    assert_eq!(
        c.command(&text),
        "552 message size exceeds fixed maximum message size"
    );
    assert!(relay
        .wait_log("message content too big")
        .contains("emailrelay: warning: message content too big\n"));
    assert!(relay.files("").is_empty());
    // A client that goes away mid-transaction leaves nothing either.
    assert_eq!(c.command("MAIL FROM:<a@b.c>"), "250 sender <a@b.c> OK");
    assert_eq!(relay.files(".content").len(), 1);
    drop(c);
    assert!(crate::harness::wait_until(Duration::from_secs(5), || relay
        .files("")
        .is_empty()));
}

#[test]
fn a_hostile_ehlo_name_never_becomes_a_header_or_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let sink = crate::harness::Sink::start(dir.path());
    let relay = Relay::start(
        dir.path(),
        &["--immediate", "--forward-to", &sink.address()],
    );
    let mut c = Client::connect(relay.port);
    c.reply();
    c.send("EHLO evil\rX-Spam-Flag: NO\0x\r\n");
    c.reply();
    assert_eq!(
        c.send_message("a@b.example", &["c@d.example"], "Subject: hi\r\n\r\nhi\r\n"),
        "250 message processed"
    );
    // 2.6.1's escaping: control bytes as \r and \0, spaces as dashes.
    let received = "Received: from evil\\rX-Spam-Flag:-NO\\0x ([127.0.0.1]) by relay.example.com with ESMTP ; ";
    let delivered = sink.messages();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].contains(received), "{}", delivered[0]);
    assert!(
        !delivered[0].contains("\r\nX-Spam-Flag"),
        "{}",
        delivered[0]
    );
    let log = relay.log_text();
    assert!(
        log.contains("emailrelay: info: rx<<: \"EHLO evil\\rX-Spam-Flag: NO\\0x\"\n"),
        "{log}"
    );
    assert!(!log.contains('\r') && !log.contains('\0'));
}

#[test]
fn addresses_that_are_not_utf8_or_hold_control_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO vm");
    c.send("MAIL FROM:<a\u{1}@b>\r\n");
    assert_eq!(
        c.reply(),
        "553 mailbox name not allowed: invalid character in mailbox name\r\n"
    );
    let mut raw = b"MAIL FROM:<a".to_vec();
    raw.extend_from_slice(b"\xff\xfe@b>\r\n");
    c.send_bytes(&raw);
    assert_eq!(
        c.reply(),
        "553 mailbox name not allowed: invalid character in mailbox name\r\n"
    );
    assert_eq!(c.command("MAIL FROM:<a@b>"), "250 sender <a@b> OK");
    c.send("RCPT TO:<c\td@e>\r\n");
    assert_eq!(c.reply(), "550 invalid character in mailbox name\r\n");
}

#[test]
fn a_client_that_stalls_inside_data_is_cut_off_at_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--idle-timeout", "2"]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO vm");
    c.command("MAIL FROM:<a@b>");
    c.command("RCPT TO:<c@d>");
    assert_eq!(
        c.command("DATA"),
        "354 start mail input -- end with <CRLF>.<CRLF>"
    );
    c.send("Subject: half a message\r\n");
    let started = std::time::Instant::now();
    // E-MailRelay 2.6.1: the connection just closes.
    assert_eq!(c.reply(), "");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(relay
        .wait_log("idle timeout")
        .contains("smtp connection closed: idle timeout: no activity after 2s: 127.0.0.1:"));
    // The half message is not left behind.
    assert!(crate::harness::wait_until(Duration::from_secs(5), || relay
        .files("")
        .is_empty()));
}
