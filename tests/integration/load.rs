//! Load: Postfix's smtp-source pushes a few thousand messages over 20
//! sessions into the relay, which forwards them to smtp-sink; none may be
//! missing. Timing goals live in scripts/bench, not here.

use std::process::Command;
use std::time::Duration;

use crate::harness::{program, run, wait_until, Relay, Sink};

#[test]
fn smtp_source_to_smtp_sink_loses_nothing() {
    const MESSAGES: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--poll",
            "1",
            "--forward-to",
            &sink.address(),
        ],
    );
    let (code, out, err) = run(
        Command::new(program("smtp-source"))
            .args([
                "-s",
                "20",
                "-m",
                &MESSAGES.to_string(),
                "-l",
                "2000",
                "-f",
                "load@example.com",
                "-t",
                "sink@example.org",
            ])
            .arg(format!("127.0.0.1:{}", relay.port)),
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{out}{err}");
    let done = wait_until(Duration::from_secs(240), || {
        sink.messages().len() >= MESSAGES && relay.files("").is_empty()
    });
    assert!(
        done,
        "sink has {} of {MESSAGES}; spool has {}",
        sink.messages().len(),
        relay.files(".content").len()
    );
    assert_eq!(sink.messages().len(), MESSAGES);
    assert!(relay.files("").is_empty(), "{:?}", relay.files(""));
}

#[test]
fn a_burst_of_1000_simultaneous_connections_is_all_greeted() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let streams: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", relay.port)).expect("connect"))
        .collect();
    for mut s in streams {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut code = [0u8; 4];
        s.read_exact(&mut code).unwrap();
        assert_eq!(&code, b"220 ");
    }
}

/// The relay's resident memory in KB.
fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn floods_without_line_ends_do_not_grow_memory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--size", "1000000"]);
    let before = rss_kb(relay.proc.pid());
    let mut c = crate::harness::Client::connect(relay.port);
    c.reply();
    // 20 MB of command text with no line end: as E-MailRelay 2.6.1 does,
    // the relay holds 80000 octets of it at most, then hangs up.
    let raw = std::net::TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    let mut writer = raw.try_clone().unwrap();
    let mut client = crate::harness::Client::from_stream(raw);
    assert!(client.reply().starts_with("220 "));
    let block = vec![b'x'; 1 << 20];
    let sent = (0..20)
        .take_while(|_| writer.write_all(&block).is_ok())
        .count();
    assert!(sent < 20, "the relay read all 20 MB");
    assert_eq!(client.reply(), "");
    assert!(relay.wait_log("server protocol overflow").contains(
        "emailrelay: info: smtp connection closed: server protocol overflow: 127.0.0.1:"
    ));
    // And 20 MB of message text in one line, over --size.
    c.command("EHLO vm");
    assert_eq!(c.command("MAIL FROM:<a@b.c>"), "250 sender <a@b.c> OK");
    assert_eq!(c.command("RCPT TO:<d@e.f>"), "250 recipient <d@e.f> OK");
    assert_eq!(
        c.command("DATA"),
        "354 start mail input -- end with <CRLF>.<CRLF>"
    );
    for _ in 0..20 {
        c.send(std::str::from_utf8(&block).unwrap());
    }
    assert_eq!(
        c.command("\r\n."),
        "552 message size exceeds fixed maximum message size"
    );
    let after = rss_kb(relay.proc.pid());
    assert!(
        after < before + 4096,
        "RSS grew from {before} KB to {after} KB"
    );
    assert!(
        relay.files(".content").is_empty(),
        "the refused message left nothing behind"
    );
}
