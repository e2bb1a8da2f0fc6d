//! Hostile input, hostile upstreams, hostile files (issue 18): each test
//! reproduces one probe finding against our binary with a real tool or a
//! raw socket, and asserts the exact reply, file state or log line.

use std::process::Command;
use std::time::Duration;

use crate::harness::{program, run, spool_files, wait_until, Relay};

/// Swaks with these extra header lines; returns its exit code and output.
fn swaks_with_headers(port: u16, headers: &[String]) -> (i32, String) {
    let mut cmd = Command::new(program("swaks"));
    cmd.args(["--server", &format!("127.0.0.1:{port}"), "--helo", "vm"])
        .args(["--from", "a@example.com", "--to", "b@example.com"])
        .args(["--body", "hello"]);
    for header in headers {
        cmd.args(["--add-header", header]);
    }
    let (code, out, err) = run(&mut cmd, Duration::from_secs(30));
    (code, out + &err)
}

#[test]
fn a_message_with_more_received_lines_than_max_hops_gets_554() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let hops: Vec<String> = (0..101)
        .map(|n| format!("Received: from hop{n} by relay{n}"))
        .collect();
    let (code, out) = swaks_with_headers(relay.port, &hops);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("<** 554 too many hops: 101 Received header lines (mail loop?)"),
        "{out}"
    );
    relay.expect_log(
        "emailrelay: warning: message refused: 101 Received lines, more than 50: a mail loop?",
    );
    assert!(relay.files(".envelope").is_empty());
    assert!(relay.files(".content").is_empty());
    // Fifty are allowed, and --max-hops moves the limit.
    let (code, out) = swaks_with_headers(relay.port, &hops[..50]);
    assert_eq!(code, 0, "{out}");
    std::fs::create_dir(dir.path().join("strict")).unwrap();
    let strict = Relay::start(&dir.path().join("strict"), &["--max-hops", "2"]);
    let (code, out) = swaks_with_headers(strict.port, &hops[..3]);
    assert!(code != 0 && out.contains("<** 554 too many hops: 3 Received"), "{out}");
}

#[test]
fn a_relay_forwarding_to_itself_stops_the_loop_at_the_hop_limit() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let own = format!("127.0.0.1:{port}");
    let relay = Relay::start_on(
        dir.path(),
        port,
        &["--forward-to", &own, "--forward-on-disconnect", "--max-hops", "10"],
    );
    let (code, out) = swaks_with_headers(port, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        wait_until(Duration::from_secs(60), || !relay
            .files(".envelope.bad")
            .is_empty()),
        "no message failed: {}",
        relay.log_text()
    );
    let bad = relay.files(".envelope.bad");
    assert_eq!(bad.len(), 1, "{bad:?}");
    let envelope = std::fs::read_to_string(relay.spool.join(&bad[0])).unwrap();
    assert!(
        envelope.contains("X-MailRelay-Reason: too many hops: 11 Received header lines (mail loop?)\r\n"),
        "{envelope}"
    );
    assert!(envelope.contains("X-MailRelay-ReasonCode: 554\r\n"), "{envelope}");
    let content = bad[0].replace(".envelope.bad", ".content");
    let text = std::fs::read_to_string(relay.spool.join(content)).unwrap();
    let header = text.split("\r\n\r\n").next().unwrap();
    let received = header.lines().filter(|l| l.starts_with("Received: ")).count();
    assert_eq!(received, 11, "{header}");
    // Nothing else is left circulating.
    std::thread::sleep(Duration::from_millis(500));
    assert!(spool_files(&relay.spool, ".envelope").is_empty());
}
