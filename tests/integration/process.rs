//! Process and log options: signals, `--user`, log line shapes, `%d` log
//! files, IPv6 listening, `--anonymous`, `--client-interface`.

use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use crate::harness::{free_port, run, wait_until, Client, Proc, Relay, RemoteHost, Sink, RELAY};

#[test]
fn sigterm_shuts_down_cleanly_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(dir.path(), &[]);
    relay.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(10)), Some(0));
    // As E-MailRelay 2.6.1: no line of its own for the shutdown, and
    // no warning or error on the way out.
    let log = relay.log_text();
    assert!(
        !log.lines().any(|l| l == "emailrelay: info: shutting down"),
        "{log}"
    );
    assert!(
        !log.contains("warning:") && !log.contains("error:"),
        "{log}"
    );
}

#[test]
fn user_drops_root_and_new_files_belong_to_that_user() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let log = dir.path().join("log");
    // Filters and verifiers run as the --user account too.
    let record = dir.path().join("ids");
    let script = dir.path().join("record-id.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$(id -u)\" >> {}\ncase \"$2\" in *.envelope.new) exit 0 ;; esac\necho; echo \"$1\"; exit 1\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.display().to_string();
    let mut cmd = Command::new(RELAY);
    cmd.args([
        "--address-verifier",
        &script,
        "--filter",
        &format!("{script},exit:0"),
    ]);
    cmd.args([
        "--no-daemon",
        "--log",
        "--user",
        "nobody",
        "--interface",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--spool-dir",
    ])
    .arg(&spool)
    .arg("--log-file")
    .arg(&log);
    let relay = Proc::spawn(&mut cmd);
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
        ("127.0.0.1", port)
    )
    .is_ok()));
    let mut c = Client::connect(port);
    c.reply();
    assert_eq!(
        c.send_message("a@b.c", &["d@e.f"], "x\r\n"),
        "250 message processed"
    );
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    // The verifier (exit 1: valid remote) and the filter both ran as nobody.
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        format!("{nobody}\n{nobody}\n")
    );
    let content = crate::harness::spool_files(&spool, ".content");
    assert_eq!(
        std::fs::metadata(spool.join(&content[0])).unwrap().uid(),
        nobody
    );
    // The process started (the pid file's) keeps E-MailRelay's identity:
    // real user root, effective user nobody (real, effective, saved, fs).
    let ids = |pid: i32, field: &str| -> Vec<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    let n = nobody.to_string();
    assert_eq!(ids(relay.pid(), "Uid:"), ["0", n.as_str(), "0", n.as_str()]);
    // The relay itself, its only child, is nobody through and through.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", relay.pid())).unwrap();
    let worker: i32 = children.trim().parse().unwrap();
    assert_eq!(ids(worker, "Uid:"), [n.as_str(); 4]);
}

#[test]
fn user_without_write_access_to_the_spool_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let (code, _, err) = run(
        Command::new(RELAY)
            .args([
                "--no-daemon",
                "--user",
                "nobody",
                "--interface",
                "127.0.0.1",
                "--port",
                &free_port().to_string(),
                "--spool-dir",
            ])
            .arg(&spool),
        Duration::from_secs(10),
    );
    assert_eq!(code, 1);
    assert!(err.contains("is not writable by user nobody"), "{err}");
}

#[test]
fn log_time_address_and_daily_log_files() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pattern = dir.path().join("relay-%d.log");
    let _relay = Relay::launch(
        &dir.path().join("spool"),
        &pattern,
        port,
        &["--log-time", "--log-address"],
    );
    let mut c = Client::connect(port);
    c.reply();
    assert_eq!(
        c.send_message("a@b.c", &["d@e.f"], "x\r\n"),
        "250 message processed"
    );
    let today = chrono::Local::now().format("%Y%m%d").to_string();
    let log = std::fs::read_to_string(dir.path().join(format!("relay-{today}.log"))).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("new content file"))
        .unwrap();
    // E-MailRelay's shape, which its fail2ban filter matches:
    // `emailrelay: <time>: info: <address>; <text>`.
    let fields: Vec<&str> = line.splitn(4, ": ").collect();
    assert_eq!(fields[0], "emailrelay");
    let time = fields[1];
    assert!(
        time.len() == 19 && time.as_bytes()[8] == b'.' && time.as_bytes()[15] == b'.',
        "{line}"
    );
    assert_eq!(fields[2], "info", "{line}");
    assert!(
        fields[3].starts_with("127.0.0.1; new content file [emailrelay."),
        "{line}"
    );
    // 2.6.1 answers the end of the message outside the session's logging
    // context: that one line has no address.
    let reply = log
        .lines()
        .find(|l| l.contains("\"250 message processed\""))
        .unwrap();
    assert!(
        reply.ends_with(": info: tx>>: \"250 message processed\""),
        "{reply}"
    );
    assert!(
        log.lines()
            .any(|l| l.ends_with(&format!("info: smtp server on 127.0.0.1:{port}"))),
        "{log}"
    );
}

#[test]
fn ipv6_listening_and_the_emailrelay_address_display() {
    let dir = tempfile::tempdir().unwrap();
    let probe = TcpStream::connect("[::1]:1")
        .err()
        .and_then(|e| e.raw_os_error());
    assert_ne!(
        probe,
        Some(libc::EADDRNOTAVAIL),
        "this machine has no IPv6 loopback"
    );
    let relay = Relay::start(dir.path(), &["--interface", "::1"]);
    assert!(
        relay
            .wait_log(&format!("smtp server on ::1.{}", relay.port))
            .contains(&format!(
                "emailrelay: info: smtp server on ::1.{}",
                relay.port
            )),
        "{}",
        relay.log_text()
    );
    let stream = TcpStream::connect(("::1", relay.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = [0u8; 3];
    std::io::Read::read_exact(&mut &stream, &mut greeting).unwrap();
    assert_eq!(&greeting, b"220");
}

#[test]
fn anonymous_hides_identity_vrfy_and_received_lines() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--anonymous"]);
    let mut c = Client::connect(relay.port);
    // E-MailRelay 2.6.1's anonymous greeting and EHLO reply.
    assert_eq!(c.reply(), "220 greeting\r\n");
    c.send("EHLO vm\r\n");
    assert_eq!(
        c.reply(),
        "250-smtp says hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    );
    assert_eq!(c.command("VRFY bob"), "252 cannot vrfy");
    assert_eq!(
        c.send_message("a@b.c", &["d@e.f"], "Subject: s\r\n\r\nx\r\n"),
        "250 message processed"
    );
    let content = std::fs::read_to_string(relay.spool.join(&relay.files(".content")[0])).unwrap();
    assert_eq!(content, "Subject: s\r\n\r\nx\r\n");
}

#[test]
fn client_interface_binds_the_outgoing_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--client-interface",
            "127.0.0.1",
            "--forward-to",
            &sink.address(),
        ],
    );
    assert_eq!(
        crate::harness::send_one(relay.port, "a@b.c", &["d@e.f"], "x\r\n"),
        "250 message processed"
    );
    assert!(wait_until(Duration::from_secs(20), || sink
        .messages()
        .len()
        == 1));
}

#[test]
fn sigterm_during_data_lets_the_message_finish_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(dir.path(), &[]);
    let mut idle = Client::connect(relay.port);
    idle.reply();
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO vm");
    assert_eq!(c.command("MAIL FROM:<a@b.c>"), "250 sender <a@b.c> OK");
    assert_eq!(c.command("RCPT TO:<d@e.f>"), "250 recipient <d@e.f> OK");
    assert_eq!(
        c.command("DATA"),
        "354 start mail input -- end with <CRLF>.<CRLF>"
    );
    c.send("Subject: in flight\r\n\r\n");
    relay.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        idle.reply(),
        "421 relay.example.com service shutting down\r\n"
    );
    c.send("last line\r\n");
    assert_eq!(c.command("."), "250 message processed");
    assert_eq!(c.reply(), "421 relay.example.com service shutting down\r\n");
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(15)), Some(0));
    let content = std::fs::read_to_string(relay.spool.join(&relay.files(".content")[0])).unwrap();
    assert!(content.ends_with("Subject: in flight\r\n\r\nlast line\r\n"));
    assert_eq!(relay.files(".envelope").len(), 1);
}

#[test]
fn remote_clients_are_refused_unless_allowed() {
    let remote = RemoteHost::create();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--interface", &remote.local_ip()]);
    assert_eq!(
        remote.greeting_from(relay.port),
        "554 connection refused: remote clients not allowed"
    );
    assert!(
        relay
            .wait_log("smtp connection rejected")
            .contains(&format!(
                "emailrelay: warning: smtp connection rejected from {}:",
                remote.remote_ip()
            )),
        "{}",
        relay.log_text()
    );
    drop(relay);
    let open = Relay::start(
        &dir.path().join("spool"),
        &["--interface", &remote.local_ip(), "--remote-clients"],
    );
    assert!(remote
        .greeting_from(open.port)
        .starts_with("220 relay.example.com -- E-MailRelay-rs V"));
}

#[test]
fn unix_domain_sockets_for_listening_and_forwarding() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    // A first relay forwards to the sink; a second listens on a unix socket
    // and forwards to the first through its unix socket.
    let first_socket = dir.path().join("first.s");
    let first_dir = dir.path().join("first");
    std::fs::create_dir(&first_dir).unwrap();
    let _first = Relay::start(
        &first_dir,
        &[
            "--interface",
            &format!("smtp={}", first_socket.display()),
            "--forward-on-disconnect",
            "--forward-to",
            &sink.address(),
        ],
    );
    let second_socket = dir.path().join("second.s");
    let second = Relay::start(
        dir.path(),
        &[
            "--interface",
            &format!("smtp={}", second_socket.display()),
            "--forward-on-disconnect",
            "--forward-to",
            first_socket.to_str().unwrap(),
        ],
    );
    let needle = format!("smtp server on {}", second_socket.display());
    assert!(second.wait_log(&needle).contains(&needle));
    let stream = std::os::unix::net::UnixStream::connect(&second_socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut line = String::new();
    for command in [
        "",
        "HELO vm",
        "MAIL FROM:<a@b.c>",
        "RCPT TO:<d@e.f>",
        "DATA",
        "Subject: via unix\r\n\r\nhi\r\n.",
        "QUIT",
    ] {
        if !command.is_empty() {
            w.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        }
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    assert_eq!(line, "221 OK\r\n");
    assert!(
        wait_until(Duration::from_secs(20), || sink.messages().len() == 1),
        "{}",
        second.log_text()
    );
    assert!(sink.messages()[0].contains("Subject: via unix"));
}

/// A stand-in syslog socket at /dev/log, removed on drop.
struct FakeSyslog(std::os::unix::net::UnixDatagram);

impl Drop for FakeSyslog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file("/dev/log");
    }
}

#[test]
fn syslog_gets_the_same_lines_with_the_facility() {
    assert!(
        !std::path::Path::new("/dev/log").exists(),
        "a syslog daemon owns /dev/log here; this test needs the machine's usual state, without one"
    );
    let syslog = FakeSyslog(std::os::unix::net::UnixDatagram::bind("/dev/log").unwrap());
    syslog
        .0
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Read from the start, in the background: relays of other tests that
    // run meanwhile log here too, and the socket's queue is short.
    let reader = syslog.0.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(n) = reader.recv(&mut buf) else {
                continue;
            };
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    let hear = |wanted: String| {
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
            seen.push(line);
            if seen.last() == Some(&wanted) {
                break;
            }
        }
        assert!(seen.contains(&wanted), "{wanted}: {seen:?}");
    };
    // `--syslog=yes` and `-k` name no facility: mail (2), as in 2.6.1.
    let other = tempfile::tempdir().unwrap();
    let mail = Relay::start(other.path(), &["--syslog=yes", "-k"]);
    hear(format!(
        "<22>emailrelay[{}]: info: smtp server on 127.0.0.1:{}",
        mail.proc.pid(),
        mail.port
    ));
    drop(mail);
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &["--syslog=local3"]);
    hear(format!(
        "<158>emailrelay[{}]: info: smtp server on 127.0.0.1:{}",
        relay.proc.pid(),
        relay.port
    ));

    // The syslog daemon restarts: its socket goes and a new one comes. The
    // relay's next line fails on the old connection, and it connects again.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reading.join().unwrap();
    drop(syslog);
    let restarted = FakeSyslog(std::os::unix::net::UnixDatagram::bind("/dev/log").unwrap());
    restarted
        .0
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let wanted = format!(
        "<158>emailrelay[{}]: info: smtp connection from 127.0.0.1:",
        relay.proc.pid()
    );
    let mut buf = [0u8; 2048];
    let mut heard = false;
    for _ in 0..10 {
        // Each connection makes the relay log a line.
        drop(std::net::TcpStream::connect(("127.0.0.1", relay.port)));
        for _ in 0..50 {
            let Ok(n) = restarted.0.recv(&mut buf) else {
                break;
            };
            heard |= String::from_utf8_lossy(&buf[..n]).starts_with(&wanted);
        }
        if heard {
            break;
        }
    }
    assert!(heard, "no line reached the new syslog socket");
}

#[test]
fn sighup_reopens_the_log_file_that_logrotate_moved_away() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let rotated = relay.log.with_extension("log.1");
    std::fs::rename(&relay.log, &rotated).unwrap();
    relay.proc.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || relay.log.exists()));
    // The relay lives on, and writes to a new file of the old name.
    let reply = crate::harness::send_one(
        relay.port,
        "a@example.com",
        &["b@example.com"],
        "Subject: s\r\n\r\nx\r\n",
    );
    assert_eq!(reply, "250 message processed");
    let fresh = relay.expect_log("emailrelay: info: tx>>: \"250 message processed\"");
    assert!(!fresh.contains("smtp server on"), "{fresh}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("smtp server on"), "{old}");
    assert!(!old.contains("message processed"), "{old}");
}

#[test]
fn spool_files_the_relay_user_cannot_read_are_moved_aside_with_the_reason_logged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Two messages written by root: one readable by root only, and one
    // whose envelope is open to all but whose content is root's.
    crate::harness::submit_to(&spool, "a@example.org");
    crate::harness::submit_to(&spool, "b@example.org");
    let envelopes = crate::harness::spool_files(&spool, ".envelope");
    assert_eq!(envelopes.len(), 2);
    for name in crate::harness::spool_files(&spool, "") {
        std::fs::set_permissions(spool.join(&name), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    std::fs::set_permissions(
        spool.join(&envelopes[1]),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let sink = Sink::start(dir.path());
    let (code, _, err) = run(
        Command::new(RELAY)
            .args([
                "--as-client",
                &sink.address(),
                "--user",
                "nobody",
                "--spool-dir",
            ])
            .arg(&spool),
        Duration::from_secs(30),
    );
    // Failed messages are not a session error: exit 0, as 2.6.1's
    // --as-client after a failed message.
    assert_eq!(code, 0, "{err}");
    // Nothing is left stuck as .busy, nothing went out, and each is in the log.
    assert_eq!(
        crate::harness::spool_files(&spool, ".envelope.bad"),
        envelopes
            .iter()
            .map(|e| format!("{e}.bad"))
            .collect::<Vec<_>>(),
        "{err}"
    );
    assert!(crate::harness::spool_files(&spool, ".busy").is_empty());
    assert!(sink.messages().is_empty());
    let busy = spool.join(format!("{}.busy", envelopes[0]));
    let bad = spool.join(format!("{}.bad", envelopes[0]));
    assert!(
        err.contains(&format!(
            "emailrelay: error: cannot open envelope [{}]: Permission denied (os error 13): moved aside to [{}]\n",
            busy.display(),
            bad.display()
        )),
        "{err}"
    );
    let bad = std::fs::read_to_string(spool.join(format!("{}.bad", envelopes[1]))).unwrap();
    assert!(
        bad.ends_with("X-MailRelay-Reason: cannot read content file: Permission denied (os error 13)\r\nX-MailRelay-ReasonCode: 554\r\n"),
        "{bad}"
    );
}
