//! Relays behind Debian's real HAProxy (issue 28): `send-proxy-v2` and
//! `send-proxy` in front of two relays with `--proxy-protocol`, HAProxy's
//! own backend connections from 127.0.0.4 (the listed balancer), clients
//! bound to 127.0.0.2 and 127.0.0.3 (Python smtplib `source_address`).
//! Their addresses must be what the relays see: the `Received` line, the
//! envelope, the address verifier's arguments, the log, the trusted
//! address of the secrets file. Refusals (a balancer without a header, a
//! header from an unlisted address) and the remote-clients decision by the
//! carried address use raw headers from Python. HAProxy's `option smtpchk`
//! with `check-send-proxy` arrives as `LOCAL` and is one verbose line.
//! Then a relay is SIGKILLed and restarted while clients keep sending:
//! every acknowledged message reaches smtp-sink, and HAProxy's stats
//! socket shows the relay taken out and brought back. (The container
//! image's test needs root: tests/root/container.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{free_port, program, run_with_input, wait_until, Proc, Relay, Sink};

const BALANCER: &str = "127.0.0.4";

/// An HAProxy in TCP mode on a free port in front of `relays`.
struct Haproxy {
    _proc: Proc,
    port: u16,
    stats: PathBuf,
}

impl Haproxy {
    fn start(dir: &Path, relays: &[u16], send_proxy: &str) -> Haproxy {
        let port = free_port();
        let stats = dir.join("haproxy.sock");
        let mut servers = String::new();
        for (i, relay) in relays.iter().enumerate() {
            servers.push_str(&format!(
                "    server relay{i} 127.0.0.1:{relay} {send_proxy} check check-send-proxy inter 200ms fall 2 rise 2\n"
            ));
        }
        let config = format!(
            "global\n    stats socket {} mode 600 level admin\n    maxconn 100\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 20s\n    timeout server 20s\n    retries 3\n    option redispatch\n\
             frontend smtp\n    bind 127.0.0.1:{port}\n    default_backend relays\n\
             backend relays\n    balance roundrobin\n    option smtpchk EHLO balancer.example\n    source {BALANCER}\n{servers}",
            stats.display()
        );
        let file = dir.join(format!("haproxy-{port}.cfg"));
        std::fs::write(&file, config).unwrap();
        let mut cmd = Command::new(program("haproxy"));
        cmd.arg("-db").arg("-f").arg(&file);
        let proc = Proc::spawn(&mut cmd);
        let haproxy = Haproxy {
            _proc: proc,
            port,
            stats,
        };
        assert!(
            wait_until(Duration::from_secs(10), || haproxy.up().len()
                == relays.len()),
            "haproxy did not see the relays up: {:?}",
            haproxy.show_stat()
        );
        haproxy
    }

    /// `show stat` on the stats socket: (server name, status) of each.
    fn show_stat(&self) -> Vec<(String, String)> {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(2)\ns.connect({:?})\n\
             s.sendall(b'show stat\\n')\nd=b''\nwhile True:\n    b=s.recv(65536)\n    if not b: break\n    d+=b\nprint(d.decode())\n",
            self.stats.display().to_string()
        );
        let (_, out, _) = run_with_input(
            Command::new("python3").arg("-c").arg(script),
            None,
            Duration::from_secs(5),
        );
        out.lines()
            .filter(|l| l.starts_with("relays,relay"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[1].to_string(),
                    f.get(17).copied().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn up(&self) -> Vec<String> {
        self.show_stat()
            .into_iter()
            .filter(|(_, status)| status == "UP")
            .map(|(name, _)| name)
            .collect()
    }
}

/// Runs Python with `script`; (exit code, stdout, stderr).
fn python(script: &str) -> (i32, String, String) {
    run_with_input(
        Command::new("python3").arg("-c").arg(script),
        None,
        Duration::from_secs(60),
    )
}

/// A Python snippet sending one message through `port` from `source`,
/// with AUTH PLAIN if `user` is given; prints `ok <n>` on a 250.
fn smtplib_send(port: u16, source: &str, user: Option<&str>, n: usize) -> String {
    let login = user
        .map(|u| format!("    s.login({u:?}, 'secret')\n"))
        .unwrap_or_default();
    format!(
        "import smtplib\ntry:\n    s=smtplib.SMTP('127.0.0.1', {port}, source_address=({source:?}, 0), timeout=10)\n    s.ehlo('client.example')\n{login}    s.sendmail('alice@example.com', ['bob@example.org'], 'Subject: msg {n}\\r\\nX-N: {n}\\r\\n\\r\\nbody {n}\\r\\n')\n    s.quit()\n    print('ok {n}')\nexcept Exception as e:\n    print('fail {n}', repr(e))\n"
    )
}

fn relay_args<'a>(secrets: &'a str, verifier: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--proxy-protocol",
        "127.0.0.4/32",
        "--server-auth",
        secrets,
        "--address-verifier",
        verifier,
    ];
    args.extend_from_slice(extra);
    args
}

fn setup(dir: &Path) -> (String, String, PathBuf) {
    let secrets = dir.join("secrets");
    std::fs::write(
        &secrets,
        "server none 127.0.0.3 trusted\nserver plain alice secret\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let args_file = dir.join("verifier.args");
    let verifier = dir.join("verifier.sh");
    std::fs::write(
        &verifier,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\necho \"$1\"\necho \"$1\"\nexit 1\n",
            args_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &verifier,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    (
        secrets.display().to_string(),
        verifier.display().to_string(),
        args_file,
    )
}

fn spool_texts(relays: &[&Relay], suffix: &str) -> Vec<String> {
    relays
        .iter()
        .flat_map(|r| {
            r.files(suffix)
                .into_iter()
                .map(|f| std::fs::read_to_string(r.spool.join(f)).unwrap())
        })
        .collect()
}

#[test]
fn haproxy_passes_the_client_address_v2_and_v1() {
    for send_proxy in ["send-proxy-v2", "send-proxy"] {
        let dir = tempfile::tempdir().unwrap();
        let (secrets, verifier, args_file) = setup(dir.path());
        let a = Relay::launch(
            &dir.path().join("a-spool"),
            &dir.path().join("a.log"),
            free_port(),
            &relay_args(&secrets, &verifier, &["--remote-clients"]),
        );
        let b = Relay::launch(
            &dir.path().join("b-spool"),
            &dir.path().join("b.log"),
            free_port(),
            &relay_args(&secrets, &verifier, &[]),
        );
        let haproxy = Haproxy::start(dir.path(), &[a.port, b.port], send_proxy);

        // Two from each client: round robin puts one of each on each relay.
        let mut script = String::new();
        // Round robin: a gets 0 and 11, b gets 10 and 1.
        script.push_str(&smtplib_send(haproxy.port, "127.0.0.2", Some("alice"), 0));
        script.push_str(&smtplib_send(haproxy.port, "127.0.0.3", None, 10));
        script.push_str(&smtplib_send(haproxy.port, "127.0.0.3", None, 11));
        script.push_str(&smtplib_send(haproxy.port, "127.0.0.2", Some("alice"), 1));
        // Not trusted and not authenticated: refused by the carried address.
        script.push_str(&smtplib_send(haproxy.port, "127.0.0.2", None, 99));
        let (code, out, err) = python(&script);
        assert_eq!(code, 0, "{send_proxy}: {out}{err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>()[..4],
            ["ok 0", "ok 10", "ok 11", "ok 1"],
            "{send_proxy}: {out}"
        );
        assert!(
            out.lines()
                .nth(4)
                .unwrap()
                .starts_with("fail 99 SMTPSenderRefused(530"),
            "{send_proxy}: {out}"
        );

        let envelopes = spool_texts(&[&a, &b], ".envelope");
        assert_eq!(envelopes.len(), 4, "{send_proxy}");
        let from = |ip: &str| {
            envelopes
                .iter()
                .filter(|e| e.contains(&format!("X-MailRelay-Client: {ip}\r\n")))
                .count()
        };
        assert_eq!(
            (from("127.0.0.2"), from("127.0.0.3")),
            (2, 2),
            "{send_proxy}"
        );
        let contents = spool_texts(&[&a, &b], ".content");
        let received = |ip: &str| {
            contents
                .iter()
                .filter(|c| c.starts_with(&format!("Received: from client.example ([{ip}])")))
                .count()
        };
        assert_eq!(
            (received("127.0.0.2"), received("127.0.0.3")),
            (2, 2),
            "{contents:?}"
        );
        // Each relay got one of each client.
        for relay in [&a, &b] {
            let log = relay.log_text();
            for ip in ["127.0.0.2", "127.0.0.3"] {
                assert!(
                    log.contains(&format!("info: smtp connection from {ip}:")),
                    "{log}"
                );
            }
            assert!(
                log.contains("info: trusting [127.0.0.3]: matched [127.0.0.3] from line 1"),
                "{log}"
            );
            assert!(!log.contains("smtp connection from 127.0.0.4"), "{log}");
            assert!(
                log.contains(&format!("info: proxy protocol: {BALANCER}:")),
                "{log}"
            );
        }
        // The verifier's arguments: the client's address, not the balancer's.
        let args = std::fs::read_to_string(&args_file).unwrap();
        let calls: Vec<&str> = args.lines().collect();
        assert_eq!(calls.len(), 4, "{args}");
        assert_eq!(
            calls.iter().filter(|c| c.contains(" 127.0.0.2:")).count(),
            2,
            "{args}"
        );
        assert_eq!(
            calls.iter().filter(|c| c.contains(" 127.0.0.3:")).count(),
            2,
            "{args}"
        );
        assert!(!args.contains("127.0.0.4"), "{args}");

        // HAProxy's health checks: LOCAL (v2) or a header of its own (v1),
        // one verbose line each and no session lines.
        let checks = |r: &Relay| {
            r.log_text()
                .matches("proxy protocol: health check from 127.0.0.4:")
                .count()
        };
        assert!(checks(&a) >= 1 && checks(&b) >= 1, "{}", a.log_text());
        for relay in [&a, &b] {
            let log = relay.log_text();
            let sessions = log.matches("smtp connection from").count();
            // The harness's readiness probe and the five clients; the
            // health checks add none.
            assert!(sessions <= 4, "{sessions}: {log}");
        }
        drop(haproxy);

        // Raw headers: the remote-clients decision by the carried
        // address (a has --remote-clients, b has not) ...
        let raw = |port: u16, source: &str, header: &str| {
            format!(
                "import socket\ns=socket.create_connection(('127.0.0.1',{port}),timeout=10,source_address=({source:?},0))\n\
                 s.sendall({header})\nd=b''\ntry:\n    while True:\n        b=s.recv(1000)\n        if not b: break\n        d+=b\n        if d.endswith(b'\\r\\n'): break\nexcept Exception as e:\n    d+=repr(e).encode()\nprint(d.decode(errors='replace').strip())\n"
            )
        };
        let v2_remote = "b'\\r\\n\\r\\n\\x00\\r\\nQUIT\\n\\x21\\x11\\x00\\x0c\\xc0\\x00\\x02\\x07\\x7f\\x00\\x00\\x01\\x9c\\x40\\x00\\x19'";
        let (_, out, _) = python(&raw(a.port, BALANCER, v2_remote));
        assert!(out.starts_with("220 "), "{out}");
        let (_, out, _) = python(&raw(b.port, BALANCER, v2_remote));
        assert_eq!(
            out.trim_end(),
            "554 connection refused: remote clients not allowed"
        );
        b.expect_log("warning: smtp connection rejected from 192.0.2.7:40000: not a local address");
        // ... a listed balancer without a header, and a header from an
        // unlisted address.
        let (_, out, _) = python(&raw(a.port, BALANCER, "b'EHLO x\\r\\n'"));
        assert!(!out.starts_with("220"), "{out}");
        a.expect_log("warning: proxy protocol: connection from balancer 127.0.0.4:");
        assert!(a.log_text().contains("refused: no PROXY protocol header\n"));
        let (_, out, _) = python(&raw(
            a.port,
            "127.0.0.5",
            "b'PROXY TCP4 192.0.2.9 127.0.0.1 1 25\\r\\n'",
        ));
        assert!(out.starts_with("220 "), "the greeting comes first: {out}");
        a.expect_log("warning: proxy protocol: connection from unlisted address 127.0.0.5:");
        assert!(!a.log_text().contains("192.0.2.9"), "{}", a.log_text());
    }
}

/// The recipients smtp-source (`-v`, one session at a time) saw
/// acknowledged: each `RCPT TO:<n...>` whose `.` got a `250`.
fn acknowledged_by(verbose: &str) -> Vec<String> {
    let (mut rcpt, mut sent_dot, mut acked) = (None, false, Vec::new());
    for line in verbose.lines() {
        let Some((_, said)) = line.split_once(": ") else {
            continue;
        };
        if let Some(to) = said.strip_prefix("RCPT TO:<") {
            rcpt = Some(to.trim_end_matches('>').to_string());
            sent_dot = false;
        } else if said == "." {
            sent_dot = true;
        } else if sent_dot && said.starts_with("<<< 250") {
            acked.extend(rcpt.take());
            sent_dot = false;
        } else if said.starts_with("<<< ") {
            sent_dot = false;
        }
    }
    acked
}

#[test]
fn a_relay_killed_behind_haproxy_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let args = [
        "--proxy-protocol",
        BALANCER,
        "--forward-to",
        &sink.address(),
        "--poll",
        "1",
        "--forward-on-disconnect",
    ];
    let (a_spool, a_log, a_port) = (
        dir.path().join("a-spool"),
        dir.path().join("a.log"),
        free_port(),
    );
    let mut a = Relay::launch(&a_spool, &a_log, a_port, &args);
    let b = Relay::launch(
        &dir.path().join("b-spool"),
        &dir.path().join("b.log"),
        free_port(),
        &args,
    );
    let haproxy = Haproxy::start(dir.path(), &[a.port, b.port], "send-proxy-v2");

    // 20 sessions: four smtp-source processes, five messages each, one
    // session per message, a second apart; relay a is SIGKILLed after
    // 1.5 s and started again on its spool once haproxy has it down.
    let outputs: Vec<PathBuf> = (0..4)
        .map(|i| dir.path().join(format!("source-{i}.out")))
        .collect();
    let sources: Vec<Proc> = outputs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            let mut cmd = Command::new(program("smtp-source"));
            cmd.args([
                "-v",
                "-N",
                "-s",
                "1",
                "-m",
                "5",
                "-w",
                "1",
                "-f",
                "alice@example.com",
            ])
            .args(["-t", &format!("bob@p{i}.example")])
            .arg(format!("127.0.0.1:{}", haproxy.port))
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(std::fs::File::create(out.with_extension("err")).unwrap());
            Proc::spawn(&mut cmd)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    a.proc.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(wait_until(Duration::from_secs(5), || matches!(
        a.proc.child.try_wait(),
        Ok(Some(_))
    )));
    let saw_down = wait_until(Duration::from_secs(10), || haproxy.up() == ["relay1"]);
    a = Relay::launch(&a_spool, &a_log, a_port, &args);
    let saw_up = wait_until(Duration::from_secs(10), || haproxy.up().len() == 2);
    for mut source in sources {
        assert!(
            wait_until(Duration::from_secs(60), || matches!(
                source.child.try_wait(),
                Ok(Some(_))
            )),
            "smtp-source did not finish"
        );
    }
    assert!(saw_down, "haproxy never took the killed relay out");
    assert!(
        saw_up,
        "haproxy never brought the relay back: {:?}",
        haproxy.show_stat()
    );

    let mut acknowledged: Vec<String> = outputs
        .iter()
        .flat_map(|out| {
            let text = std::fs::read_to_string(out).unwrap_or_default()
                + &std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
            acknowledged_by(&text)
        })
        .collect();
    acknowledged.sort();
    // Only a session cut by the kill may fail: with redispatch, at most
    // the four that were open at that moment.
    assert!(acknowledged.len() >= 16, "{acknowledged:?}");
    let delivered = |sink: &Sink| -> Vec<String> {
        let mut got: Vec<String> = sink
            .messages()
            .iter()
            .flat_map(|m| {
                m.lines()
                    .filter_map(|l| l.strip_prefix("X-Rcpt-Args: <"))
                    .map(|r| r.split('>').next().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        got.sort();
        got
    };
    let started = Instant::now();
    wait_until(Duration::from_secs(30), || {
        let got = delivered(&sink);
        acknowledged.iter().all(|n| got.contains(n))
    });
    let got = delivered(&sink);
    for n in &acknowledged {
        assert!(
            got.contains(n),
            "{n} acknowledged but not delivered: {got:?}"
        );
    }
    // Duplicates only where the kill cut a session after its 250 was
    // sent (RFC 1047): at most one per open session.
    let mut unique = got.clone();
    unique.dedup();
    assert!(got.len() - unique.len() <= 4, "{got:?}");
    eprintln!(
        "proxy failover: {} acknowledged of 20, {} delivered ({} distinct), drained {:.1}s after the last session",
        acknowledged.len(),
        got.len(),
        unique.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(a.log_text().contains("proxy protocol: 127.0.0.4:"));
}

/// `curl` the relay's `/healthz`: (status, body).
fn healthz(port: u16) -> (String, String) {
    let (_, out, _) = run_with_input(
        Command::new(program("curl"))
            .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}/healthz")),
        None,
        Duration::from_secs(10),
    );
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.to_string(), body.to_string())
}

#[test]
fn a_stop_with_drain_delay_fails_the_checks_before_the_listeners_close() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let http_text = http.to_string();
    let relay = Relay::start(
        dir.path(),
        &[
            "--http-port",
            &http_text,
            "--drain-delay",
            "3",
            "--proxy-protocol",
            BALANCER,
        ],
    );
    assert_eq!(healthz(http), ("200".into(), "OK\n".into()));
    let stopped = Instant::now();
    relay.proc.signal(nix::sys::signal::Signal::SIGTERM);
    relay.expect_log("info: draining: health checks fail for 3s before the listeners close");
    // Draining: /healthz says so, a client is still served, a balancer's
    // LOCAL health check is held off with 421.
    assert_eq!(healthz(http), ("503".into(), "shutting down\n".into()));
    assert!(crate::harness::greets(relay.port));
    let check = format!(
        "import socket\ns=socket.create_connection(('127.0.0.1',{}),timeout=5,source_address=({BALANCER:?},0))\n\
         s.sendall(b'\\r\\n\\r\\n\\x00\\r\\nQUIT\\n\\x20\\x00\\x00\\x00')\nprint(s.recv(100).decode().strip())\n",
        relay.port
    );
    let (_, out, _) = python(&check);
    assert!(out.starts_with("421 "), "{out}");
    let mut relay = relay;
    let end = relay.proc.wait_exit(Duration::from_secs(15));
    assert_eq!(end, Some(0));
    let took = stopped.elapsed();
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(!crate::harness::greets(relay.port));
}

/// The POP listener reads the header too: a v1 header from the balancer,
/// then a POP dialogue (Python's socket: poplib cannot send a header).
#[test]
fn the_pop_server_takes_the_client_address_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let (secrets, _, _) = setup(dir.path());
    let pop_port = free_port();
    let pop = pop_port.to_string();
    let relay = Relay::start(
        dir.path(),
        &[
            "--pop",
            "--pop-port",
            &pop,
            "--pop-auth",
            &secrets,
            "--proxy-protocol",
            BALANCER,
        ],
    );
    let script = format!(
        "import socket\ns=socket.create_connection(('127.0.0.1',{pop_port}),timeout=10,source_address=({BALANCER:?},0))\n\
         s.sendall(b'PROXY TCP4 127.0.0.2 127.0.0.1 40110 110\\r\\n')\nf=s.makefile('rb')\nprint(f.readline().decode().strip())\n\
         for c in [b'USER alice', b'PASS secret', b'STAT', b'QUIT']:\n    s.sendall(c+b'\\r\\n')\n    print(f.readline().decode().strip())\n"
    );
    let (code, out, err) = python(&script);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("+OK")), "{out}");
    assert_eq!(lines[3], "+OK 0 0");
    let log = relay.expect_log("info: pop connection from 127.0.0.2:40110\n");
    assert!(log.contains("info: proxy protocol: 127.0.0.4:"), "{log}");
    assert!(!log.contains("pop connection from 127.0.0.4"), "{log}");
}

/// At the default log level HAProxy's checks write nothing: a relay with
/// `--log` only, checked every 100 ms for a second, logs its startup line
/// and the one real session, no more.
#[test]
fn health_checks_write_nothing_at_the_default_level() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("quiet.log");
    let mut cmd = Command::new(crate::harness::RELAY);
    cmd.args([
        "--no-daemon",
        "--log",
        "--no-syslog",
        "--user",
        "root",
        "--interface",
        "127.0.0.1",
    ])
    .args(["--port", &port.to_string(), "--proxy-protocol", BALANCER])
    .arg("--spool-dir")
    .arg(dir.path().join("spool"))
    .arg("--log-file")
    .arg(&log);
    let _relay = Proc::spawn(&mut cmd);
    assert!(wait_until(Duration::from_secs(20), || {
        crate::harness::greets(port)
    }));
    let haproxy = Haproxy::start(dir.path(), &[port], "send-proxy-v2");
    // Ten checks or more (inter 200ms), then one real session.
    std::thread::sleep(Duration::from_secs(2));
    let (_, out, _) = python(&smtplib_send(haproxy.port, "127.0.0.2", None, 1));
    assert_eq!(out.trim(), "ok 1");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("emailrelay: info: smtp server on 127.0.0.1:{port}"),
        "{text}"
    );
    // The harness's readiness probe, then the client, each from/closed.
    let rest: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.split(':').take(3).collect::<Vec<_>>().join(":"))
        .collect();
    assert_eq!(
        rest,
        [
            "emailrelay: info: smtp connection from 127.0.0.1",
            "emailrelay: info: smtp connection closed",
            "emailrelay: info: smtp connection from 127.0.0.2",
            "emailrelay: info: smtp connection closed",
        ],
        "{text}"
    );
}

/// The AUTH lock-out counts by the carried address: twelve wrong
/// passwords from 127.0.0.2 (four sessions at once through HAProxy, each
/// trying three mechanisms) lock
/// 127.0.0.2 out, right password or not, while 127.0.0.3, behind the same
/// balancer address, logs in.
#[test]
fn the_auth_lock_out_is_per_client_behind_the_balancer() {
    let dir = tempfile::tempdir().unwrap();
    let (secrets, _, _) = setup(dir.path());
    let relay = Relay::start(
        dir.path(),
        &["--proxy-protocol", BALANCER, "--server-auth", &secrets],
    );
    let haproxy = Haproxy::start(dir.path(), &[relay.port], "send-proxy-v2");
    let script = format!(
        "import smtplib, threading\n\
         def login(source, password):\n    s=smtplib.SMTP('127.0.0.1', {port}, source_address=(source, 0), timeout=20)\n    s.ehlo('client.example')\n    \
         try:\n        s.login('alice', password)\n        return '235'\n    except smtplib.SMTPAuthenticationError as e:\n        return str(e.smtp_code)\n    finally:\n        s.close()\n\
         def wrong():\n    try:\n        login('127.0.0.2', 'wrong')\n    except Exception:\n        pass\n\
         ts=[threading.Thread(target=wrong) for _ in range(4)]\n[t.start() for t in ts]\n[t.join() for t in ts]\n\
         print(login('127.0.0.2', 'secret'), login('127.0.0.3', 'secret'))\n",
        port = haproxy.port
    );
    let (code, out, err) = python(&script);
    assert_eq!(code, 0, "{out}{err}");
    // smtplib tries CRAM-MD5, PLAIN and LOGIN in turn: three failures a
    // session, and the third is answered 421.
    assert!(matches!(out.trim(), "535 235" | "421 235"), "{out}");
    relay.expect_log(
        "warning: authentication: too many failures from 127.0.0.2: all authentication from it refused for 900s",
    );
    assert!(!relay.log_text().contains("failures from 127.0.0.4"));
}
