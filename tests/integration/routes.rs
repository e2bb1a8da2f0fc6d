//! Forwarding that fits the big providers (issue 16): the connection
//! limit seen by an upstream that counts, smtp-sink's throttling answer
//! slowing the route, and a spool of many thousand messages drained with
//! memory flat while accepting slows down (not stops).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{free_port, machine_lock, program, wait_until, Client, Proc, Relay};

/// An upstream that takes every message, slowly (`delay` before each
/// 250), and counts connections open at once.
struct CountingUpstream {
    port: u16,
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    taken: Arc<AtomicUsize>,
}

impl CountingUpstream {
    fn start(delay: Duration) -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = CountingUpstream {
            port: listener.local_addr().unwrap().port(),
            open: Arc::default(),
            most: Arc::default(),
            taken: Arc::default(),
        };
        let (open, most, taken) = (
            Arc::clone(&upstream.open),
            Arc::clone(&upstream.most),
            Arc::clone(&upstream.taken),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().take(200).flatten() {
                let (open, most, taken) =
                    (Arc::clone(&open), Arc::clone(&most), Arc::clone(&taken));
                std::thread::spawn(move || {
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    serve(stream, delay, &taken);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        upstream
    }
}

/// One SMTP session that accepts everything.
fn serve(stream: TcpStream, delay: Duration, taken: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut out = stream.try_clone().unwrap();
    let _ = out.write_all(b"220 counting upstream\r\n");
    let mut in_data = false;
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if in_data {
            if line == "." {
                in_data = false;
                std::thread::sleep(delay);
                taken.fetch_add(1, Ordering::SeqCst);
                let _ = out.write_all(b"250 taken\r\n");
            }
            continue;
        }
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-counting\r\n250 PIPELINING\r\n",
            "DATA" => {
                in_data = true;
                b"354 go\r\n"
            }
            "QUIT" => {
                let _ = out.write_all(b"221 bye\r\n");
                return;
            }
            _ => b"250 ok\r\n",
        };
        let _ = out.write_all(reply);
    }
}

/// Writes `count` messages straight into `spool`, as E-MailRelay 2.6.1
/// writes them (no SMTP, no fsync: test data).
fn fill_spool(spool: &std::path::Path, count: usize) {
    std::fs::create_dir_all(spool).unwrap();
    let envelope = "X-MailRelay-Format: #2821.8\r\nX-MailRelay-Content: 7bit\r\nX-MailRelay-From: device@example.com\r\n\
        X-MailRelay-ToCount: 1\r\nX-MailRelay-To-Remote: admin@example.org\r\nX-MailRelay-Authentication: \r\n\
        X-MailRelay-Client: 127.0.0.1\r\nX-MailRelay-ClientCertificate: \r\nX-MailRelay-MailFromAuthIn: \r\n\
        X-MailRelay-MailFromAuthOut: \r\nX-MailRelay-ForwardTo: \r\nX-MailRelay-ForwardToAddress: \r\n\
        X-MailRelay-ClientAccountSelector: \r\nX-MailRelay-Utf8MailboxNames: 0\r\nX-MailRelay-End: 1\r\n";
    let content = format!("Subject: queued\r\n\r\n{}\r\n", "x".repeat(1000));
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    for n in 1..=count {
        let id = format!("emailrelay.4242.{secs}.{n}");
        std::fs::write(spool.join(format!("{id}.content")), &content).unwrap();
        std::fs::write(spool.join(format!("{id}.envelope")), envelope).unwrap();
    }
}

fn admin(port: u16, command: &str) -> String {
    let mut client = Client::from_stream(TcpStream::connect(("127.0.0.1", port)).unwrap());
    client.send(&format!("{command}\r\n"));
    client.read_until("E-MailRelay> ")
}

fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn connections_seen_with(limit: &str, messages: usize) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = CountingUpstream::start(Duration::from_millis(40));
    fill_spool(&dir.path().join("spool"), messages);
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward",
            "--forward-to",
            &format!("127.0.0.1:{}", upstream.port),
            "--client-connections",
            limit,
        ],
    );
    assert!(
        wait_until(Duration::from_secs(60), || upstream
            .taken
            .load(Ordering::SeqCst)
            == messages
            && relay.files(".envelope").is_empty()),
        "{}",
        relay.log_text()
    );
    (
        upstream.most.load(Ordering::SeqCst),
        upstream.taken.load(Ordering::SeqCst),
    )
}

#[test]
fn forty_queued_messages_never_open_more_connections_than_the_limit() {
    // The default is three (Exchange Online's limit per mailbox).
    assert_eq!(connections_seen_with("3", 40), (3, 40));
    assert_eq!(connections_seen_with("1", 40), (1, 40));
}

#[test]
fn smtp_sinks_throttling_answer_slows_the_route_and_admin_forward_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = |args: &[&str]| {
        let mut cmd = Command::new(program("smtp-sink"));
        cmd.args(["-u", "nobody"])
            .args(args)
            .arg(format!("127.0.0.1:{port}"))
            .arg("64");
        let proc = Proc::spawn(&mut cmd);
        assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
            ("127.0.0.1", port)
        )
        .is_ok()));
        proc
    };
    // Microsoft 365's answer to a fourth connection, at end of data.
    let throttling = sink(&[
        "-r",
        ".",
        "-b",
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
    ]);
    fill_spool(&dir.path().join("spool"), 5);
    let (admin_port, http_port) = (free_port(), free_port());
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            &format!("127.0.0.1:{port}"),
            "--poll",
            "1",
            "--admin",
            &admin_port.to_string(),
            "--http-port",
            &http_port.to_string(),
            "--client-connections",
            "1",
        ],
    );
    let throttled = format!("emailrelay_route_throttled{{upstream=\"127.0.0.1:{port}\"}} ");
    let log = relay.wait_log(": next attempt in ");
    assert!(
        log.contains(&format!(
            "warning: forwarding to 127.0.0.1:{port} slowed down: the server is throttling: 432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded: next attempt in "
        )),
        "{log}"
    );
    // Six polls later: still one attempt, not one per message per poll.
    std::thread::sleep(Duration::from_secs(6));
    let log = relay.log_text();
    assert_eq!(log.matches("deferred: 432 4.3.2").count(), 1, "{log}");
    assert_eq!(log.matches("slowed down").count(), 1, "{log}");
    assert_eq!(relay.files(".envelope").len(), 5);
    assert!(relay.files(".bad").is_empty());
    assert!(metrics(http_port).contains(&format!("{throttled}1\n")));
    // The upstream takes mail again; the operator does not wait.
    drop(throttling);
    let _sink = sink(&[]);
    assert!(admin(admin_port, "forward").contains("OK"));
    assert!(
        wait_until(Duration::from_secs(20), || relay.files("").is_empty()),
        "{}",
        relay.log_text()
    );
    relay.expect_log(&format!("forwarding to 127.0.0.1:{port} taking mail again"));
    assert!(metrics(http_port).contains(&format!("{throttled}0\n")));
}

/// `/metrics`, fetched with curl.
fn metrics(port: u16) -> String {
    let (code, out, err) = crate::harness::run(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{port}/metrics"),
        ]),
        Duration::from_secs(15),
    );
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn a_large_spool_drains_with_flat_memory_and_accepting_slows_but_goes_on() {
    let _alone = machine_lock();
    let count: usize = std::env::var("EMAILRELAY_OVERLOAD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let mut cmd = Command::new(program("smtp-sink"));
    cmd.args(["-u", "nobody"])
        .arg(format!("127.0.0.1:{sink_port}"))
        .arg("256");
    let _sink = Proc::spawn(&mut cmd);
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
        ("127.0.0.1", sink_port)
    )
    .is_ok()));
    let filled = Instant::now();
    fill_spool(&dir.path().join("spool"), count);
    eprintln!("spool of {count} written in {:?}", filled.elapsed());
    let admin_port = free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            &format!("127.0.0.1:{sink_port}"),
            "--poll",
            "3600",
            "--admin",
            &admin_port.to_string(),
        ],
    );
    relay.expect_log("admin server on");
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kb(relay.proc.pid());
    // A message before the drain: no delay to speak of.
    let quick = timed_message(relay.port);
    assert!(admin(admin_port, "forward").contains("OK"));
    let started = Instant::now();
    // Under a backlog twice the threshold and more, each 250 waits a
    // second: slower, not refused.
    relay.expect_log("forwarding [");
    std::thread::sleep(Duration::from_secs(1));
    let slowed = timed_message(relay.port);
    // Sampled once a second: listing a spool this size is work too.
    let mut most = idle;
    let mut drained = false;
    while !drained && started.elapsed() < Duration::from_secs(900) {
        std::thread::sleep(Duration::from_secs(1));
        most = most.max(rss_kb(relay.proc.pid()));
        drained = std::fs::read_dir(&relay.spool)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(".envelope"));
    }
    let took = started.elapsed();
    eprintln!(
        "{count} drained in {took:?}; RSS idle {idle} kB, most {most} kB; 250 after {quick:?} idle, {slowed:?} under the backlog"
    );
    assert!(drained, "not drained in {took:?}");
    assert!(quick < Duration::from_millis(900), "{quick:?}");
    assert!(slowed >= Duration::from_millis(900), "{slowed:?}");
    assert!(slowed < Duration::from_secs(10), "{slowed:?}");
    assert!(
        most < idle + 8 * 1024,
        "RSS grew from {idle} kB to {most} kB while draining {count} messages"
    );
    assert!(relay.files(".bad").is_empty());
}

/// Sends one message; returns the time from the end of data to its 250.
fn timed_message(port: u16) -> Duration {
    let mut client = Client::connect(port);
    client.reply();
    client.command("EHLO timer");
    client.command("MAIL FROM:<timer@example.com>");
    client.command("RCPT TO:<admin@example.org>");
    client.command("DATA");
    client.send("Subject: timed\r\n\r\nhi\r\n");
    let sent = Instant::now();
    let reply = client.command(".");
    let took = sent.elapsed();
    assert!(reply.starts_with("250 "), "{reply}");
    took
}
