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
    assert!(
        code != 0 && out.contains("<** 554 too many hops: 3 Received"),
        "{out}"
    );
}

#[test]
fn a_relay_forwarding_to_itself_stops_the_loop_at_the_hop_limit() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let own = format!("127.0.0.1:{port}");
    let relay = Relay::start_on(
        dir.path(),
        port,
        &[
            "--forward-to",
            &own,
            "--forward-on-disconnect",
            "--max-hops",
            "10",
        ],
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
        envelope.contains(
            "X-MailRelay-Reason: too many hops: 11 Received header lines (mail loop?)\r\n"
        ),
        "{envelope}"
    );
    assert!(
        envelope.contains("X-MailRelay-ReasonCode: 554\r\n"),
        "{envelope}"
    );
    let content = bad[0].replace(".envelope.bad", ".content");
    let text = std::fs::read_to_string(relay.spool.join(content)).unwrap();
    let header = text.split("\r\n\r\n").next().unwrap();
    let received = header
        .lines()
        .filter(|l| l.starts_with("Received: "))
        .count();
    assert_eq!(received, 11, "{header}");
    // Nothing else is left circulating.
    std::thread::sleep(Duration::from_millis(500));
    assert!(spool_files(&relay.spool, ".envelope").is_empty());
}

/// Runs `emailrelay --as-client` once over `spool`.
fn forward_once(spool: &std::path::Path, to: &str) -> (i32, String) {
    let log = spool.with_extension("client.log");
    let (code, _, err) = run(
        Command::new(crate::harness::RELAY)
            .args(["--as-client", to, "--user", "root", "--log-file"])
            .arg(&log)
            .arg("--spool-dir")
            .arg(spool),
        Duration::from_secs(60),
    );
    (
        code,
        std::fs::read_to_string(&log).unwrap_or_default() + &err,
    )
}

/// One message submitted into `spool`; returns its envelope's path.
fn submitted(spool: &std::path::Path) -> std::path::PathBuf {
    let before = spool_files(spool, ".envelope");
    crate::harness::submit_one(spool);
    let after = spool_files(spool, ".envelope");
    let name = after.iter().find(|n| !before.contains(n)).unwrap();
    spool.join(name)
}

#[test]
fn edited_envelopes_never_become_upstream_commands() {
    let dir = tempfile::tempdir().unwrap();
    let sink = crate::harness::Sink::start(dir.path());
    let spool = dir.path().join("spool");
    let long = format!("{}@example.com", "x".repeat(100_000));
    type Edit = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|e| e.replace("To-Remote: x@y.z", "To-Remote: x@y.z\rRCPT TO:<evil@example.com>")),
            "envelope file has an invalid To-Remote address: control character, space or misplaced @",
        ),
        (
            Box::new(|e| e.replace("To-Remote: x@y.z", "To-Remote: x@y.z NOTIFY=NEVER")),
            "envelope file has an invalid To-Remote address: control character, space or misplaced @",
        ),
        (
            Box::new(|e| e.replace("From: ", "From: a\0b@example.com")),
            "envelope file has an invalid From address: control character, space or misplaced @",
        ),
        (
            Box::new(move |e| e.replace("To-Remote: x@y.z", &format!("To-Remote: {long}"))),
            "envelope file has an invalid To-Remote address: too long",
        ),
        (
            Box::new(|e| e.replace("X-MailRelay-ToCount", "X-MailRelay-From: b@example.com\r\nX-MailRelay-ToCount")),
            "envelope file has more than one From field",
        ),
        (
            Box::new(|e| e.replace("ToCount: 1", "ToCount: 2")),
            "envelope file says ToCount 2 but has 1 recipients",
        ),
    ];
    let mut expected = Vec::new();
    for (edit, reason) in &cases {
        let path = submitted(&spool);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = edit(&text);
        assert_ne!(edited, text, "the edit applies");
        std::fs::write(&path, edited).unwrap();
        expected.push((path, *reason));
    }
    // And an envelope whose content file is gone.
    let orphan = submitted(&spool);
    std::fs::remove_file(orphan.to_string_lossy().replace(".envelope", ".content")).unwrap();

    let (code, log) = forward_once(&spool, &sink.address());
    assert_eq!(code, 0, "{log}");
    for (path, reason) in expected {
        let bad = format!("{}.bad", path.display());
        let envelope = std::fs::read(&bad).unwrap_or_else(|e| panic!("{bad}: {e}\n{log}"));
        let envelope = String::from_utf8_lossy(&envelope);
        assert!(
            envelope.contains(&format!("X-MailRelay-Reason: {reason}\r\n")),
            "{reason}: {envelope}"
        );
    }
    let bad = std::fs::read_to_string(format!("{}.bad", orphan.display())).unwrap();
    assert!(
        bad.contains("X-MailRelay-Reason: cannot read content file: No such file or directory (os error 2)\r\n"),
        "{bad}"
    );
    assert!(sink.messages().is_empty(), "nothing reached the sink");
    assert!(spool_files(&spool, ".envelope").is_empty());
    assert!(spool_files(&spool, ".envelope.busy").is_empty());
}

#[test]
fn addresses_that_are_not_utf8_are_set_aside_not_rewritten() {
    // Issue 25: a To-Remote of `b\xe9b@...` went upstream as
    // `RCPT TO:<b\xef\xbf\xbdb@...>`. The file is malformed, like any
    // other envelope that would not make a valid SMTP command.
    let dir = tempfile::tempdir().unwrap();
    let sink = crate::harness::Sink::start(dir.path());
    let spool = dir.path().join("spool");
    let cases: [(&[u8], &[u8], &str); 3] = [
        (b"To-Remote: x@y.z", b"To-Remote: b\xe9b@y.z", "To-Remote"),
        (b"From: ", b"From: \xff\xfe@example.com", "From"),
        (
            b"ToCount: 1\r\n",
            b"ToCount: 2\r\nX-MailRelay-To-Local: m\xfcller\r\n",
            "To-Local",
        ),
    ];
    let mut expected = Vec::new();
    for (from, to, field) in cases {
        let path = submitted(&spool);
        let bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("the edit applies");
        let edited = [&bytes[..at], to, &bytes[at + from.len()..]].concat();
        std::fs::write(&path, &edited).unwrap();
        expected.push((path, edited, field));
    }
    let (code, log) = forward_once(&spool, &sink.address());
    assert_eq!(code, 0, "{log}");
    for (path, edited, field) in expected {
        let reason = format!("envelope file has an invalid {field} address: not valid UTF-8");
        let bad = std::fs::read(format!("{}.bad", path.display()))
            .unwrap_or_else(|e| panic!("{}: {e}\n{log}", path.display()));
        // The file as it was, the bytes untouched, and the reason after it.
        let tail = format!("X-MailRelay-Reason: {reason}\r\nX-MailRelay-ReasonCode: \r\n");
        assert_eq!(bad, [&edited[..], tail.as_bytes()].concat(), "{log}");
        let busy = format!("{}.busy", path.display());
        assert!(
            log.contains(&format!(
                "emailrelay: error: invalid envelope [{busy}]: {reason}"
            )),
            "{log}"
        );
    }
    assert!(sink.messages().is_empty(), "nothing reached the sink");
    assert!(spool_files(&spool, ".envelope").is_empty());
    assert!(spool_files(&spool, ".envelope.busy").is_empty());
}

#[test]
fn planted_symbolic_links_are_neither_unfailed_nor_sent() {
    let dir = tempfile::tempdir().unwrap();
    let sink = crate::harness::Sink::start(dir.path());
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    // A secret outside the spool, and a message whose files are links to it.
    let secret = dir.path().join("secret.txt");
    std::fs::write(
        &secret,
        "Subject: secret\r\n\r\nthe password is hunter2\r\n",
    )
    .unwrap();
    let real = submitted(&spool);
    let text = std::fs::read_to_string(&real).unwrap();
    let outside = dir.path().join("outside.envelope");
    std::fs::write(&outside, &text).unwrap();
    let planted = spool.join("emailrelay.1.2.3");
    std::os::unix::fs::symlink(&outside, format!("{}.envelope.bad", planted.display())).unwrap();
    std::os::unix::fs::symlink(&secret, format!("{}.content", planted.display())).unwrap();
    // A name that would forge a line of the admin answer.
    std::fs::write(
        spool.join("emailrelay.4.5.6\r\nemailrelay.forged.envelope"),
        &text,
    )
    .unwrap();
    std::fs::remove_file(&real).unwrap();

    let admin = crate::harness::free_port();
    let relay = Relay::launch(
        &spool,
        &dir.path().join("relay.log"),
        crate::harness::free_port(),
        &[
            "--admin",
            &admin.to_string(),
            "--forward-to",
            &sink.address(),
        ],
    );
    let mut a = crate::harness::Client::connect(admin);
    let mut ask = |cmd: &str| {
        a.send(&format!("{cmd}\r\n"));
        a.read_until("E-MailRelay> ")
            .trim_end_matches("E-MailRelay> ")
            .to_string()
    };
    assert_eq!(ask("unfail-all"), "");
    assert_eq!(ask("list"), "<none>\r\n");
    assert_eq!(ask("failures"), "emailrelay.1.2.3\r\n");
    assert_eq!(ask("flush"), "error: no messages to send\r\n");
    relay.expect_log(&format!(
        "emailrelay: warning: not a regular file: left failed: [{}.envelope.bad]",
        planted.display()
    ));
    assert!(sink.messages().is_empty());
    // Even renamed by hand, the link is not followed: it is failed again.
    std::fs::rename(
        format!("{}.envelope.bad", planted.display()),
        format!("{}.envelope", planted.display()),
    )
    .unwrap();
    assert_eq!(ask("flush"), "OK\r\n");
    let log = relay.expect_log("cannot open envelope");
    assert!(log.contains("a symbolic link, not a spool file"), "{log}");
    assert!(sink.messages().is_empty(), "the secret never left");
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        text,
        "the target is untouched"
    );
}

#[test]
fn deliver_refuses_mailboxes_and_maildirs_that_are_symbolic_links() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = dir.path().join("boxes");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&boxes).unwrap();
    // bob's mailbox is a link out of the delivery directory; alice's
    // maildir has a `new` that is one.
    std::os::unix::fs::symlink(&outside, boxes.join("bob")).unwrap();
    for sub in ["cur", "tmp"] {
        std::fs::create_dir_all(boxes.join("alice").join(sub)).unwrap();
    }
    std::os::unix::fs::symlink(&outside, boxes.join("alice").join("new")).unwrap();
    let verifier = crate::filter::script(
        dir.path(),
        "verify.sh",
        "case \"$1\" in alice@*|bob@*) echo Local; echo \"${1%@*}\"; exit 0 ;; esac; echo; echo \"$1\"; exit 1",
    );
    let boxes_arg = boxes.display().to_string();
    let relay = Relay::start(
        dir.path(),
        &[
            "--address-verifier",
            &verifier,
            "--filter",
            "deliver:",
            "--delivery-dir",
            &boxes_arg,
        ],
    );
    for (to, what) in [
        (
            "bob@example.com",
            format!(
                "mailbox [{}] is a symbolic link",
                boxes.join("bob").display()
            ),
        ),
        (
            "alice@example.com",
            format!(
                "maildir [{}] is a symbolic link",
                boxes.join("alice/new").display()
            ),
        ),
    ] {
        let reply = crate::harness::send_one(
            relay.port,
            "a@example.com",
            &[to],
            "Subject: s\r\n\r\nbody\r\n",
        );
        assert!(reply.starts_with("4"), "{to}: {reply}");
        relay.expect_log(&what);
    }
    assert!(
        spool_files(&outside, "").is_empty(),
        "nothing written through a link"
    );
}

/// Python smtplib logins from `source` (an address on loopback), `n` at
/// once; prints one reply code per attempt, in order of the attempts.
const LOGINS: &str = r#"
import smtplib, sys, threading
port, source, user, password, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
codes = [None] * n
def login(i):
    s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=20)
    s.ehlo("probe")
    s.esmtp_features["auth"] = "PLAIN"  # one attempt per connection
    try:
        codes[i] = s.login(user, password)[0]
    except smtplib.SMTPAuthenticationError as e:
        codes[i] = e.smtp_code
    s.quit()
threads = [threading.Thread(target=login, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join(30)
print(" ".join(str(c) for c in codes))
"#;

fn logins(port: u16, source: &str, password: &str, n: usize) -> String {
    let (code, out, err) = run(
        Command::new("python3").args([
            "-c",
            LOGINS,
            &port.to_string(),
            source,
            "alice",
            password,
            &n.to_string(),
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

#[test]
fn an_address_that_fails_authentication_ten_times_is_locked_out_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("server.auth");
    std::fs::write(&secrets, "server plain alice e+3Dmc2\n").unwrap();
    let relay = Relay::start(dir.path(), &["--server-auth", secrets.to_str().unwrap()]);
    // Ten guesses from ten connections at once: each fails on its own.
    assert_eq!(
        logins(relay.port, "127.0.0.1", "guess", 10),
        ["535"; 10].join(" ")
    );
    relay.expect_log(
        "emailrelay: warning: authentication: too many failures from 127.0.0.1: all authentication from it refused for 900s",
    );
    // Now even the right password is refused from that address...
    assert_eq!(logins(relay.port, "127.0.0.1", "e=mc2", 1), "535");
    // ...but not from another.
    assert_eq!(logins(relay.port, "127.0.0.2", "e=mc2", 1), "235");
}

#[test]
fn a_connection_flood_under_a_low_file_limit_leaves_the_admin_port_and_new_clients_served() {
    let dir = tempfile::tempdir().unwrap();
    let admin = crate::harness::free_port();
    let port = crate::harness::free_port();
    let relay = Relay::launch_under(
        &["sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""],
        &dir.path().join("spool"),
        &dir.path().join("relay.log"),
        port,
        &["--admin", &admin.to_string()],
    );
    // 64 descriptors leave room for (64 - 32) / 4 = 8 sessions.
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..60 {
        let mut c = crate::harness::Client::connect(port);
        let greeting = c.reply();
        if greeting.starts_with("220 ") {
            flood.push(c);
        } else {
            assert_eq!(
                greeting,
                "421 relay.example.com too many connections: try again later\r\n"
            );
            refused += 1;
        }
    }
    assert_eq!((flood.len(), refused), (8, 52));
    relay.expect_log("emailrelay: warning: too many connections: 8 sessions open, the most the open-file limit allows: refusing 127.0.0.1:");
    // The admin port still answers, and so does a session in the flood.
    let mut a = crate::harness::Client::connect(admin);
    a.send("pid\r\n");
    assert!(a
        .read_until("E-MailRelay> ")
        .starts_with(&relay.proc.pid().to_string()));
    assert!(flood[0]
        .send_message(
            "a@example.com",
            &["b@example.com"],
            "Subject: s\r\n\r\nx\r\n"
        )
        .starts_with("250"));
    // When the flood ends, new clients are served again.
    drop(flood);
    assert!(wait_until(Duration::from_secs(10), || {
        let mut c = crate::harness::Client::connect(port);
        c.reply().starts_with("220 ")
    }));
    let reply = crate::harness::send_one(
        port,
        "a@example.com",
        &["b@example.com"],
        "Subject: s\r\n\r\nx\r\n",
    );
    assert!(reply.starts_with("250"), "{reply}");
}

#[test]
fn a_filter_and_what_it_started_do_not_outlive_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("background.pid");
    let filter = dir.path().join("filter.sh");
    std::fs::write(
        &filter,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nsleep 300\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&filter, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut relay = Relay::start(dir.path(), &["--filter", filter.to_str().unwrap()]);
    let port = relay.port;
    // The client waits for the reply to its message while the filter runs.
    let client = std::thread::spawn(move || {
        crate::harness::send_one(
            port,
            "a@example.com",
            &["b@example.com"],
            "Subject: s\r\n\r\nx\r\n",
        )
    });
    assert!(wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n'))
    }));
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    relay.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        relay.proc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        relay.log_text()
    );
    let gone = wait_until(Duration::from_secs(5), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.is_empty() || stat.contains(") Z ")
    });
    assert!(
        gone,
        "the filter's background child {pid} survived the relay"
    );
    let reply = client.join().unwrap();
    assert!(!reply.starts_with("250"), "{reply}");
    assert!(
        relay.files(".envelope").is_empty(),
        "nothing was acknowledged, nothing is kept"
    );
}

#[test]
fn an_open_relay_is_warned_about_at_startup() {
    const WARNING: &str = "emailrelay: warning: --remote-clients with neither --server-auth nor --address-verifier: any host that can connect can relay mail through this server";
    let dir = tempfile::tempdir().unwrap();
    let open = Relay::start(dir.path(), &["--remote-clients"]);
    open.expect_log(WARNING);
    let secrets = dir.path().join("server.auth");
    std::fs::write(&secrets, "server plain alice e+3Dmc2\n").unwrap();
    let closed = Relay::start(
        dir.path(),
        &[
            "--remote-clients",
            "--server-auth",
            secrets.to_str().unwrap(),
        ],
    );
    assert!(!closed.log_text().contains(WARNING));
    let local = Relay::start(dir.path(), &[]);
    assert!(!local.log_text().contains(WARNING));
}

#[test]
fn mail_size_beyond_the_free_space_of_the_spool_gets_452() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let mut c = crate::harness::Client::connect(relay.port);
    c.reply();
    c.command("EHLO client.example");
    // An exabyte does not fit on this machine's disk.
    assert_eq!(
        c.command("MAIL FROM:<a@example.com> SIZE=1000000000000000000"),
        "452 insufficient system storage"
    );
    assert_eq!(
        c.command("MAIL FROM:<a@example.com> SIZE=1000"),
        "250 sender <a@example.com> OK"
    );
    assert!(
        relay.files(".content").len() == 1,
        "the content file is made only for the second"
    );
}

#[test]
fn orphans_a_crash_left_are_swept_at_startup_and_fresh_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let name = |n: u32, suffix: &str| spool.join(format!("emailrelay.9.9.{n}{suffix}"));
    for path in [
        name(1, ".envelope.new"),
        name(1, ".content"),
        name(2, ".content"),
        name(3, ".content"),
    ] {
        std::fs::write(&path, "Subject: x\r\n\r\n").unwrap();
    }
    // 1 and 2 are two days old; 3 is fresh (a session may still own it).
    let (code, _, err) = run(
        Command::new("touch").args(["-d", "2 days ago"]).args([
            name(1, ".envelope.new"),
            name(1, ".content"),
            name(2, ".content"),
        ]),
        Duration::from_secs(10),
    );
    assert_eq!(code, 0, "{err}");
    let relay = Relay::launch(
        &spool,
        &dir.path().join("relay.log"),
        crate::harness::free_port(),
        &[],
    );
    let log = relay.expect_log(&format!(
        "emailrelay: warning: removed [{}]: left behind by an interrupted message and unchanged for 24h",
        name(2, ".content").display()
    ));
    for gone in [
        name(1, ".envelope.new"),
        name(1, ".content"),
        name(2, ".content"),
    ] {
        assert!(!gone.exists(), "{} survived:\n{log}", gone.display());
    }
    assert!(name(3, ".content").exists());
}
