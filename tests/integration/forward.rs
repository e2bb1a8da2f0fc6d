//! Forwarding: to Postfix's smtp-sink, to peers that refuse (5xx to `.bad`
//! with the reason, 4xx kept), an E-MailRelay-written spool, `--as-client`,
//! proxy mode, and the admin interface.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::harness::{free_port, program, run, wait_until, Client, Relay, Sink, RELAY};

#[test]
fn forward_on_disconnect_delivers_to_smtp_sink_and_empties_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let relay = Relay::start(
        dir.path(),
        &["--forward-on-disconnect", "--forward-to", &sink.address()],
    );
    let (code, out, _) = run(
        Command::new(program("swaks"))
            .args([
                "--server",
                &format!("127.0.0.1:{}", relay.port),
                "--from",
                "a@example.com",
                "--to",
                "b@example.org",
            ])
            .args(["--body", "line1\n.hidden\n..two"]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        wait_until(Duration::from_secs(20), || sink.messages().len() == 1
            && relay.files("").is_empty()),
        "{}",
        relay.log_text()
    );
    let message = &sink.messages()[0];
    assert!(message.contains("Received: from "), "{message}");
    // smtp-sink stores un-stuffed text with LF line ends.
    assert!(
        message.contains("\n\nline1\n.hidden\n..two\n"),
        "{message:?}"
    );
    assert!(
        relay.files("").is_empty(),
        "spool not empty: {:?}",
        relay.files("")
    );
    let log = relay.log_text();
    assert!(log.contains(&format!(
        "emailrelay: info: smtp connection to {}",
        sink.address()
    )));
    assert!(log.contains("emailrelay: info: tx>>: \"MAIL FROM:<a@example.com>\""));
}

/// Runs the relay once over `spool` (as root, so no privilege drop) with
/// `args`, to its exit; returns the exit code, stdout and stderr.
fn forward_once(spool: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    run(
        Command::new(RELAY)
            .args(args)
            .args(["--user", "root", "--spool-dir"])
            .arg(spool),
        Duration::from_secs(60),
    )
}

/// An SMTP peer on `bind` that refuses every RCPT with `rcpt_reply` unless
/// the address contains "good", and records the text of what it accepts.
fn peer_on(
    bind: &str,
    rcpt_reply: &'static str,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind(bind).unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = std::sync::Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4).flatten() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut writer = stream.try_clone().unwrap();
            let _ = writer.write_all(b"220 peer ready\r\n");
            let (mut in_data, mut text) = (false, String::new());
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if in_data {
                    if line == "." {
                        in_data = false;
                        store.lock().unwrap().push(std::mem::take(&mut text));
                        let _ = writer.write_all(b"250 queued\r\n");
                    } else {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    continue;
                }
                let reply = match line
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase()
                    .as_str()
                {
                    "EHLO" => "250-peer\r\n250 PIPELINING\r\n",
                    "RCPT" if line.contains("good") => "250 ok\r\n",
                    "RCPT" => rcpt_reply,
                    "DATA" => {
                        in_data = true;
                        "354 go ahead\r\n"
                    }
                    "QUIT" => "221 bye\r\n",
                    _ => "250 ok\r\n",
                };
                let _ = writer.write_all(reply.as_bytes());
            }
        }
    });
    (port, received)
}

fn refusing_peer(rcpt_reply: &'static str) -> u16 {
    peer_on("127.0.0.1:0", rcpt_reply).0
}

#[test]
fn forward_to_some_delivers_to_the_accepted_and_fails_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (port, received) = peer_on("127.0.0.1:0", "550 5.1.1 no such user\r\n");
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--forward-to-some",
            "--forward-to",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let mut c = Client::connect(relay.port);
    c.reply();
    assert_eq!(
        c.send_message(
            "a@b.c",
            &["good@y.z", "bad@y.z"],
            "Subject: some\r\n\r\nhi\r\n"
        ),
        "250 message processed"
    );
    c.command("QUIT");
    assert!(
        wait_until(Duration::from_secs(20), || relay
            .files(".envelope.bad")
            .len()
            == 1),
        "{}",
        relay.log_text()
    );
    assert_eq!(received.lock().unwrap().len(), 1);
    let bad = std::fs::read_to_string(relay.spool.join(&relay.files(".envelope.bad")[0])).unwrap();
    assert!(
        bad.contains("X-MailRelay-ToCount: 1\r\nX-MailRelay-To-Remote: bad@y.z\r\n"),
        "{bad}"
    );
    assert!(bad.ends_with(
        "X-MailRelay-Reason: one or more recipients rejected\r\nX-MailRelay-ReasonCode: 550\r\n"
    ));
}

#[test]
fn forwarding_to_an_ipv6_address() {
    let dir = tempfile::tempdir().unwrap();
    let (port, received) = peer_on("[::1]:0", "550 no\r\n");
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--forward-to",
            &format!("[::1]:{port}"),
        ],
    );
    assert_eq!(
        crate::harness::send_one(
            relay.port,
            "a@b.c",
            &["good@y.z"],
            "Subject: v6\r\n\r\nhi\r\n"
        ),
        "250 message processed"
    );
    assert!(
        wait_until(Duration::from_secs(20), || received.lock().unwrap().len()
            == 1),
        "{}",
        relay.log_text()
    );
    assert!(received.lock().unwrap()[0].contains("Subject: v6\n"));
}

#[test]
fn a_5xx_fails_the_message_to_bad_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let peer = refusing_peer("550 5.1.1 no such user\r\n");
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--forward-to",
            &format!("127.0.0.1:{peer}"),
        ],
    );
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("HELO vm");
    assert_eq!(
        c.send_message("a@b.c", &["x@y.z"], "hi\r\n"),
        "250 message processed"
    );
    c.command("QUIT");
    assert!(
        wait_until(Duration::from_secs(20), || relay
            .files(".envelope.bad")
            .len()
            == 1),
        "{}",
        relay.log_text()
    );
    let bad_name = relay.files(".envelope.bad")[0].clone();
    let id = bad_name.trim_end_matches(".envelope.bad").to_string();
    let bad = std::fs::read_to_string(relay.spool.join(&bad_name)).unwrap();
    assert!(bad.ends_with("X-MailRelay-End: 1\r\nX-MailRelay-Reason: one or more recipients rejected\r\nX-MailRelay-ReasonCode: 550\r\n"), "{bad}");
    let log = relay.log_text();
    assert!(
        log.contains(&format!(
            "emailrelay: info: failing envelope [{id}.envelope.busy] -> [{id}.envelope.bad]\n"
        )) && log.contains(&format!("emailrelay: info: forwarding [{id}]\n")),
        "{log}"
    );
    assert_eq!(
        relay.files(".content").len(),
        1,
        "content is kept for the failed message"
    );
}

#[test]
fn a_4xx_keeps_the_message_for_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let peer = refusing_peer("450 4.2.0 try later\r\n");
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--forward-to",
            &format!("127.0.0.1:{peer}"),
        ],
    );
    let mut c = Client::connect(relay.port);
    c.reply();
    assert_eq!(
        c.send_message("a@b.c", &["x@y.z"], "hi\r\n"),
        "250 message processed"
    );
    c.command("QUIT");
    assert!(
        wait_until(Duration::from_secs(20), || relay
            .log_text()
            .contains("deferred")),
        "{}",
        relay.log_text()
    );
    assert!(wait_until(Duration::from_secs(5), || relay
        .files(".envelope")
        .len()
        == 1));
    assert!(relay.files(".bad").is_empty() && relay.files(".busy").is_empty());
}

#[test]
fn an_emailrelay_written_spool_forwards_unchanged_with_as_client() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    // As E-MailRelay 2.6.1 writes them, plus a .busy left by a crash.
    for (id, suffix) in [
        ("emailrelay.31241.1795530688.1", ".envelope"),
        ("emailrelay.31241.1795530688.2", ".envelope.busy"),
    ] {
        let envelope = "X-MailRelay-Format: #2821.8\r\nX-MailRelay-Content: 8bit\r\nX-MailRelay-From: alice@example.com\r\n\
            X-MailRelay-ToCount: 1\r\nX-MailRelay-To-Remote: bob@example.org\r\nX-MailRelay-Authentication: \r\n\
            X-MailRelay-Client: 127.0.0.1\r\nX-MailRelay-ClientCertificate: \r\nX-MailRelay-MailFromAuthIn: \r\n\
            X-MailRelay-MailFromAuthOut: \r\nX-MailRelay-ForwardTo: \r\nX-MailRelay-ForwardToAddress: \r\n\
            X-MailRelay-ClientAccountSelector: \r\nX-MailRelay-Utf8MailboxNames: 0\r\nX-MailRelay-End: 1\r\n";
        std::fs::write(spool.join(format!("{id}{suffix}")), envelope).unwrap();
        std::fs::write(
            spool.join(format!("{id}.content")),
            format!("Subject: {id}\r\n\r\nbody\r\n"),
        )
        .unwrap();
    }
    let (code, _, err) = forward_once(&spool, &["--as-client", &sink.address()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("recovered 1 message(s) left locked by a previous run"),
        "{err}"
    );
    assert!(wait_until(Duration::from_secs(10), || sink
        .messages()
        .len()
        == 2));
    assert!(crate::harness::spool_files(&spool, "").is_empty());
}

#[test]
fn as_client_with_nothing_listening_keeps_mail_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    crate::harness::submit_one(&spool);
    let dead = free_port();
    let (code, _, err) = forward_once(
        &spool,
        &[
            "--as-client",
            &format!("127.0.0.1:{dead}"),
            "--connection-timeout",
            "5",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("emailrelay: warning: smtp client error: connect failure: cannot connect to 127.0.0.1:{dead}\n")),
        "{err}"
    );
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 1);
}

#[test]
fn proxy_mode_passes_the_upstream_verdict_back() {
    let dir = tempfile::tempdir().unwrap();
    let peer = refusing_peer("550 5.1.1 no such user\r\n");
    let relay = Relay::start(
        dir.path(),
        &["--immediate", "--forward-to", &format!("127.0.0.1:{peer}")],
    );
    let mut c = Client::connect(relay.port);
    c.reply();
    assert_eq!(
        c.send_message("a@b.c", &["x@y.z"], "hi\r\n"),
        "550 one or more recipients rejected"
    );
    let sink = Sink::start(dir.path());
    std::fs::create_dir(dir.path().join("second")).unwrap();
    let relay2 = Relay::start(
        &dir.path().join("second"),
        &["--immediate", "--forward-to", &sink.address()],
    );
    let mut c = Client::connect(relay2.port);
    c.reply();
    assert_eq!(
        c.send_message("a@b.c", &["x@y.z"], "hi\r\n"),
        "250 message processed"
    );
    assert_eq!(sink.messages().len(), 1, "forwarded before the 250");
    assert!(relay2.files(".content").is_empty());
}

#[test]
fn admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let admin = free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--admin",
            &admin.to_string(),
            "--forward-to",
            &sink.address(),
        ],
    );
    // E-MailRelay 2.6.1's dialogue: no prompt until the first command.
    let mut a = Client::connect(admin);
    let mut ask = |cmd: &str| {
        a.send(&format!("{cmd}\r\n"));
        a.read_until("E-MailRelay> ")
            .trim_end_matches("E-MailRelay> ")
            .to_string()
    };
    assert_eq!(ask("help"), "commands: dnsbl, failures, flush, forward, help, info, list, notify, pid, quit, smtp, status, unfail-all\r\n");
    assert_eq!(ask("list"), "<none>\r\n");
    assert_eq!(ask("failures"), "<none>\r\n");
    assert_eq!(ask("flush"), "error: no messages to send\r\n");
    assert_eq!(ask("pid"), format!("{}\r\n", relay.proc.pid()));
    assert_eq!(ask("terminate"), "error: unrecognised command\r\n");
    assert_eq!(ask(""), "");
    assert_eq!(ask("smtp"), "usage: smtp {disable|enable}\r\n");
    assert_eq!(ask("smtp disable"), "OK\r\n");
    // E-MailRelay 2.6.1: the greeting is 421 and the session stays open.
    let mut disabled = Client::connect(relay.port);
    assert_eq!(disabled.reply(), "421 service not available\r\n");
    assert_eq!(ask("smtp enable"), "OK\r\n");
    let mut c = Client::connect(relay.port);
    c.reply();
    assert_eq!(
        c.send_message("a@b.c", &["x@y.z"], "hi\r\n"),
        "250 message processed"
    );
    c.command("QUIT");
    let listed = ask("list");
    assert!(
        listed.starts_with("emailrelay.")
            && listed.ends_with(".1\r\n")
            && listed.matches('\n').count() == 1,
        "{listed}"
    );
    // The report's lines end CR CR LF, as 2.6.1's do; it lists this admin
    // connection and the disabled session, still open. (The session that
    // said QUIT may take a moment to be counted as finished.)
    let mut status = String::new();
    for _ in 0..50 {
        status = ask("status");
        if status.contains("IN finished: 2\r") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        status.starts_with(&format!("LISTEN: 127.0.0.1:{}\r\r\nLISTEN: 127.0.0.1:{admin}\r\r\nOUT started: 0\r\r\nOUT finished: 0\r\r\nIN started: 4\r\r\nIN finished: 2\r\r\nIN: 127.0.0.1:{admin} <- 127.0.0.1:", relay.port)),
        "{status:?}"
    );
    drop(disabled);
    assert_eq!(ask("flush"), "OK\r\n");
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(ask("list"), "<none>\r\n");
    assert_eq!(ask("forward"), "OK\r\n");
    assert_eq!(ask("xyzzy"), "error: unrecognised command\r\n");
    assert_eq!(
        ask("info"),
        "usage: info {copyright|credit|version|warranty}\r\n"
    );
    // notify has no answer; events follow as things happen. (The empty
    // line's prompt shows that notify has been taken.)
    assert_eq!(ask("notify\r\n"), "");
    let mut c = Client::connect(relay.port);
    c.reply();
    assert_eq!(
        c.send_message("a@b.c", &["x@y.z"], "hi\r\n"),
        "250 message processed"
    );
    c.command("QUIT");
    a.send("forward\r\n");
    let answer = a.read_until("EVENT: client: forward: end  ");
    for event in [
        "\r\nEVENT: network: in: start  ",
        "\r\nEVENT: network: in: stop  ",
        "OK\r\nE-MailRelay> ",
        "\r\nEVENT: client: forward: start: admin  ",
        "\r\nEVENT: network: out: start  ",
        &format!("\r\nEVENT: client: connecting: {}  ", sink.address()),
        "\r\nEVENT: client: sending: emailrelay.",
        &format!("\r\nEVENT: client: connected: {}  ", sink.address()),
        "\r\nEVENT: client: sent: emailrelay.",
        "\r\nEVENT: network: out: stop  ",
    ] {
        assert!(answer.contains(event), "{event:?} in {answer:?}");
    }
}

#[test]
fn as_proxy_forwards_when_the_client_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    // A name, resolved at connect time; every address it has is tried.
    let relay = Relay::start(
        dir.path(),
        &["--as-proxy", &format!("localhost:{}", sink.port)],
    );
    let mut c = Client::connect(relay.port);
    c.reply();
    assert_eq!(
        c.send_message("a@b.c", &["x@y.z"], "hi\r\n"),
        "250 message processed"
    );
    c.command("QUIT");
    assert!(wait_until(Duration::from_secs(20), || sink
        .messages()
        .len()
        == 1
        && relay.files("").is_empty()));
}

#[test]
fn forward_to_address_in_the_envelope_overrides_forward_to() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let spool = dir.path().join("spool");
    crate::harness::submit_one(&spool);
    let envelope = spool.join(&crate::harness::spool_files(&spool, ".envelope")[0]);
    let text = std::fs::read_to_string(&envelope).unwrap();
    std::fs::write(
        &envelope,
        text.replace(
            "X-MailRelay-ForwardToAddress: \r\n",
            &format!("X-MailRelay-ForwardToAddress: {}\r\n", sink.address()),
        ),
    )
    .unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = forward_once(&spool, &["--as-client", &dead]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("smtp connection to {}", sink.address())),
        "{err}"
    );
    assert!(wait_until(Duration::from_secs(10), || sink
        .messages()
        .len()
        == 1));
}

#[test]
fn a_server_that_never_greets_is_talked_to_after_the_prompt_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let reply = if line.starts_with("EHLO") {
                "250 silent\r\n"
            } else if line == "." {
                "250 queued\r\n"
            } else if line == "DATA" {
                "354 go\r\n"
            } else {
                "250 ok\r\n"
            };
            if line.starts_with("EHLO")
                || line.starts_with("MAIL")
                || line.starts_with("RCPT")
                || line == "DATA"
                || line == "."
                || line == "QUIT"
            {
                let _ = writer.write_all(reply.as_bytes());
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    crate::harness::submit_one(&spool);
    let started = std::time::Instant::now();
    let (code, _, err) = forward_once(
        &spool,
        &[
            "--as-client",
            &format!("127.0.0.1:{port}"),
            "--prompt-timeout",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(crate::harness::spool_files(&spool, "").is_empty());
}

#[test]
fn a_server_that_stops_answering_hits_the_response_timeout_and_the_message_stays() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let _ = writer.write_all(b"220 hi\r\n");
        let mut lines = BufReader::new(stream).lines();
        let _ = lines.next();
        let _ = writer.write_all(b"250 hello\r\n");
        std::thread::sleep(Duration::from_secs(10));
    });
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    crate::harness::submit_one(&spool);
    let (code, _, err) = forward_once(
        &spool,
        &[
            "--as-client",
            &format!("127.0.0.1:{port}"),
            "--response-timeout",
            "1",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("response timeout"), "{err}");
    assert_eq!(
        crate::harness::spool_files(&spool, ".envelope").len(),
        1,
        "kept for the next attempt"
    );
}

#[test]
fn dont_serve_with_forward_sends_the_spool_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let spool = dir.path().join("spool");
    crate::harness::submit_one(&spool);
    crate::harness::submit_one(&spool);
    let (code, _, err) = forward_once(
        &spool,
        &[
            "--no-daemon",
            "--log",
            "--dont-serve",
            "--forward",
            "--forward-to",
            &sink.address(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.ends_with("emailrelay: info: forwarding: no more messages to send\n"),
        "{err}"
    );
    assert!(wait_until(Duration::from_secs(10), || sink
        .messages()
        .len()
        == 2));
}

/// A hostile upstream: greets, then answers EHLO with `after_ehlo`, one
/// write of `chunk` every `every`, for at most `limit`.
fn hostile_upstream(chunk: &'static [u8], every: Duration, limit: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.write_all(b"220 hostile\r\n");
        let mut ehlo = [0u8; 64];
        let _ = std::io::Read::read(&mut stream, &mut ehlo);
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end && stream.write_all(chunk).is_ok() {
            std::thread::sleep(every);
        }
    });
    port
}

#[test]
fn an_endless_multi_line_reply_is_given_up_and_the_message_kept() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    crate::harness::submit_to(&spool, "a@example.com");
    let port = hostile_upstream(
        b"250-more\r\n",
        Duration::from_millis(1),
        Duration::from_secs(20),
    );
    let started = std::time::Instant::now();
    let (code, _, err) = forward_once(
        &spool,
        &[
            "--as-client",
            &format!("127.0.0.1:{port}"),
            "--response-timeout",
            "5",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    assert!(
        err.contains("emailrelay: warning: smtp client error: 421 response from server too long\n"),
        "{err}"
    );
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 1);
}

#[test]
fn a_reply_trickled_a_byte_at_a_time_meets_the_response_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    crate::harness::submit_to(&spool, "a@example.com");
    let port = hostile_upstream(b"2", Duration::from_millis(500), Duration::from_secs(30));
    let started = std::time::Instant::now();
    let (code, _, err) = forward_once(
        &spool,
        &[
            "--as-client",
            &format!("127.0.0.1:{port}"),
            "--response-timeout",
            "2",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(
        err.contains(
            "emailrelay: warning: smtp client error: smtp error: response timeout after 2s\n"
        ),
        "{err}"
    );
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 1);
}

#[test]
fn log_format_msgid_marks_forwarding_lines_as_2_6_1_does() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let spool = dir.path().join("spool");
    crate::harness::submit_one(&spool);
    let id = crate::harness::spool_files(&spool, ".envelope")[0]
        .trim_end_matches(".envelope")
        .to_string();
    let shown = id.trim_start_matches("emailrelay.");
    let (code, _, err) = forward_once(
        &spool,
        &[
            "--as-client",
            &sink.address(),
            "--log-format=msgid,colour",
            "--verbose",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // E-MailRelay 2.6.1's lines (recorded by hand against its binary):
    // from the `forwarding [...]` line on, each carries the message's id,
    // to the pass's last words and the QUIT.
    for line in [
        "emailrelay: info: forwarding: [startup]\n".to_string(),
        format!("emailrelay: info: ({shown}) forwarding [{id}]\n"),
        format!(
            "emailrelay: info: ({shown}) smtp connection to {}\n",
            sink.address()
        ),
        format!("emailrelay: info: ({shown}) deleting envelope [{id}.envelope.busy]\n"),
        format!("emailrelay: info: ({shown}) forwarding: no more messages to send\n"),
        format!("emailrelay: info: ({shown}) tx>>: \"QUIT\"\n"),
    ] {
        assert!(err.contains(&line), "no [{line}] in:\n{err}");
    }
}

/// A deferred message waits for its retry time: polls every second do not
/// retry it (2.6.1 would fail it at once; a relay that retried on every
/// tick would hammer a throttling upstream), and the admin `forward`
/// forces an attempt now.
#[test]
fn a_deferred_message_waits_for_its_retry_time_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let peer = refusing_peer("450 4.7.0 throttled, try later\r\n");
    let admin = free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            &format!("127.0.0.1:{peer}"),
            "--poll",
            "1",
            "--admin",
            &admin.to_string(),
        ],
    );
    let reply = crate::harness::send_one(
        relay.port,
        "a@example.com",
        &["bob@example.com"],
        "Subject: s\r\n\r\nx\r\n",
    );
    assert_eq!(reply, "250 message processed");
    let attempts = || {
        relay
            .log_text()
            .matches("info: forwarding [emailrelay.")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || attempts() == 1),
        "{}",
        relay.log_text()
    );
    relay.expect_log("forwarding [emailrelay.");
    // Three poll ticks later: still one attempt (the first retry is a minute away).
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(attempts(), 1, "{}", relay.log_text());
    assert_eq!(relay.files(".envelope").len(), 1, "the message is kept");
    let mut a = Client::connect(admin);
    a.send("forward\r\n");
    a.read_until("E-MailRelay> ");
    assert!(
        wait_until(Duration::from_secs(10), || attempts() == 2),
        "{}",
        relay.log_text()
    );
}

/// `--max-age`: a message still deferred that long after it was received
/// (the time in its id) goes to `.bad` with the last reply; a young one
/// stays for the next attempt.
#[test]
fn max_age_fails_an_old_deferred_message_and_keeps_a_young_one() {
    let dir = tempfile::tempdir().unwrap();
    let peer = refusing_peer("450 4.2.2 mailbox full\r\n");
    let spool = dir.path().join("spool");
    crate::harness::submit_one(&spool);
    crate::harness::submit_one(&spool);
    let ids: Vec<String> = crate::harness::spool_files(&spool, ".envelope")
        .iter()
        .map(|n| n.trim_end_matches(".envelope").to_string())
        .collect();
    // The first was received two days ago (E-MailRelay ids carry the time).
    let old = "emailrelay.4242.1700000000.1";
    for suffix in [".envelope", ".content"] {
        std::fs::rename(
            spool.join(format!("{}{suffix}", ids[0])),
            spool.join(format!("{old}{suffix}")),
        )
        .unwrap();
    }
    let (code, _, err) = forward_once(
        &spool,
        &[
            "--as-client",
            &format!("127.0.0.1:{peer}"),
            "--max-age",
            "1d",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let bad = std::fs::read_to_string(spool.join(format!("{old}.envelope.bad"))).unwrap();
    assert!(
        bad.ends_with("X-MailRelay-Reason: not sent within --max-age=86400s: one or more recipients rejected\r\nX-MailRelay-ReasonCode: 450\r\n"),
        "{bad}"
    );
    assert!(
        err.contains(&format!(
            "warning: forwarding [{old}]: not sent within --max-age=86400s"
        )),
        "{err}"
    );
    assert!(
        spool.join(format!("{}.envelope", ids[1])).exists(),
        "the young one waits"
    );
    let (code, _, err) = run(
        Command::new(RELAY)
            .args([
                "--as-client",
                "127.0.0.1:1",
                "--max-age",
                "soon",
                "--spool-dir",
            ])
            .arg(&spool),
        Duration::from_secs(10),
    );
    assert_eq!(code, 1);
    assert!(err.contains("invalid value for --max-age: [soon]"), "{err}");
}

/// `--client-rate`: two a minute to one upstream; the third waits (and
/// says so), and a shutdown meanwhile loses nothing.
#[test]
fn client_rate_holds_the_third_message_of_the_minute() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let spool = dir.path().join("spool");
    for _ in 0..3 {
        crate::harness::submit_one(&spool);
    }
    let mut relay = Relay::start(
        dir.path(),
        &[
            "--forward",
            "--forward-to",
            &sink.address(),
            "--client-rate",
            "2",
        ],
    );
    relay.expect_log(&format!(
        "emailrelay: info: forwarding to {}: --client-rate of 2 a minute reached: waiting",
        sink.address()
    ));
    assert!(wait_until(Duration::from_secs(10), || sink
        .messages()
        .len()
        == 2));
    relay.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(30)), Some(0));
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(
        relay.files(".envelope").len(),
        1,
        "the third waits in the spool"
    );
}
