//! Named instances: several relays in one process (`--in-spool-dir`,
//! `--out-port`, ... and `in-spool-dir` lines in a config file).
//!
//! Covers: an `in` instance that filters and forwards over loopback to an
//! `out` instance, which relays to smtp-sink; each spool holding only its
//! own files, with ids unique across them; SIGKILL in the middle of that
//! flow losing nothing acknowledged; one instance's dead upstream not
//! stalling the other; prefixed options mixed on the command line and in
//! the file; an unknown prefix; a process-wide option under the second
//! prefix; two instances on one port. What 2.6.1 says for the same
//! configurations is in tests/golden/config/instances-*.golden.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    free_port, greets, program, run, spool_files, wait_until, Client, Proc, Sink, RELAY,
};

/// A relay process running the config file `relay.conf` in `dir`, with
/// `extra` options before the file on the command line.
struct Instances {
    proc: Proc,
    log: std::path::PathBuf,
}

impl Instances {
    /// Writes `conf` (with the log options added) and starts the relay;
    /// waits until every port in `ports` greets.
    fn start(dir: &Path, conf: &str, extra: &[&str], ports: &[u16]) -> Instances {
        let log = dir.join("relay.log");
        let conf_path = dir.join("relay.conf");
        let text = format!(
            "no-daemon\nuser root\nlog\nverbose\nno-syslog\nlog-file {}\n{conf}",
            log.display()
        );
        std::fs::write(&conf_path, text).unwrap();
        let proc = Proc::spawn(Command::new(RELAY).args(extra).arg(&conf_path));
        let instances = Instances { proc, log };
        let up = wait_until(Duration::from_secs(20), || ports.iter().all(|p| greets(*p)));
        assert!(up, "relay did not start: {}", instances.log_text());
        instances
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's lines, without the `emailrelay: ` program name.
    fn log_lines(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .map(|l| l.trim_start_matches("emailrelay: ").to_string())
            .collect()
    }
}

/// A filter that adds a header to the content file and accepts.
fn header_filter(dir: &Path) -> String {
    let path = dir.join("add-header.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         { printf 'X-Filtered: by-in\\r\\n'; cat \"$1\"; } > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\n\
         exit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The `Subject: n-<n>` numbers of the messages the sink holds.
fn delivered(sink: &Sink) -> Vec<usize> {
    sink.messages()
        .iter()
        .filter_map(|m| {
            let tail = m.split("Subject: n-").nth(1)?;
            let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Message ids (file names less `.envelope`) in a spool.
fn ids(spool: &Path) -> BTreeSet<String> {
    spool_files(spool, ".envelope")
        .iter()
        .map(|n| n.trim_end_matches(".envelope").to_string())
        .collect()
}

/// An admin command's answer, without the prompt.
fn admin(port: u16, command: &str) -> String {
    let mut a = Client::connect(port);
    a.send(&format!("{command}\r\n"));
    let answer = a.read_until("E-MailRelay> ");
    a.send("quit\r\n");
    answer.trim_end_matches("E-MailRelay> ").to_string()
}

/// The `in` -> `out` -> sink chain as config file lines.
fn chain_conf(dir: &Path, in_port: u16, out_port: u16, sink: &str) -> String {
    format!(
        "log-format unit\n\
         in-spool-dir {dir}/in\nin-port {in_port}\nin-interface 127.0.0.1\n\
         in-domain in.example.com\nin-filter {filter}\n\
         in-forward-to 127.0.0.1:{out_port}\nin-forward-on-disconnect\nin-poll 1\n\
         out-spool-dir {dir}/out\nout-port {out_port}\nout-interface 127.0.0.1\n\
         out-domain out.example.com\n\
         out-forward-to {sink}\nout-forward-on-disconnect\nout-poll 1\n",
        dir = dir.display(),
        filter = header_filter(dir),
    )
}

#[test]
fn in_filters_and_forwards_to_out_which_relays_to_smtp_sink() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sink = Sink::start(d);
    let (in_port, out_port) = (free_port(), free_port());
    let relay = Instances::start(
        d,
        &chain_conf(d, in_port, out_port, &sink.address()),
        &[],
        &[in_port, out_port],
    );
    let (code, out, err) = run(
        Command::new(program("swaks"))
            .args(["--server", &format!("127.0.0.1:{in_port}")])
            .args(["--from", "alice@example.com", "--to", "bob@example.org"])
            .args(["--header", "Subject: n-1", "--body", "hello"]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("<-  250 message processed"), "{out}");
    assert!(
        wait_until(Duration::from_secs(30), || delivered(&sink) == [1]),
        "not delivered: {:?}\n{}",
        delivered(&sink),
        relay.log_text()
    );
    let message = &sink.messages()[0];
    assert!(message.contains("X-Filtered: by-in"), "{message}");
    // Each spool is empty once its messages are sent on.
    assert!(wait_until(Duration::from_secs(10), || {
        spool_files(&d.join("in"), "").is_empty() && spool_files(&d.join("out"), "").is_empty()
    }));
    let lines = relay.log_lines();
    let expect = [
        format!("info: [in] smtp server on 127.0.0.1:{in_port}"),
        format!("info: [in] forwarding to 127.0.0.1:{out_port}"),
        format!("info: [out] smtp server on 127.0.0.1:{out_port}"),
        format!("info: [out] forwarding to {}", sink.address()),
    ];
    assert_eq!(lines[..4], expect, "{lines:#?}");
    // With --log-format=unit, every session line says whose it is: the
    // client's session on `in`, and `in`'s forwarding session on `out`.
    let has = |prefix: &str, text: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(text))
    };
    assert!(
        has("info: [in] ", "smtp connection from 127.0.0.1:"),
        "{lines:#?}"
    );
    assert!(
        has("info: [in] ", "rx<<: \"MAIL FROM:<alice@example.com>"),
        "{lines:#?}"
    );
    assert!(
        has("info: [out] ", "smtp connection from 127.0.0.1:"),
        "{lines:#?}"
    );
    // Forwarding lines too, as 2.6.1 tags them.
    assert!(has("info: [in] ", "forwarding [emailrelay."), "{lines:#?}");
    assert!(has("info: [out] ", "forwarding [emailrelay."), "{lines:#?}");
    assert!(
        has("info: [out] ", "rx<<: \"MAIL FROM:<alice@example.com>"),
        "{lines:#?}"
    );
    drop(relay);
}

#[test]
fn each_spool_holds_only_its_own_messages_and_ids_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (in_port, out_port) = (free_port(), free_port());
    let (in_admin, out_admin) = (free_port(), free_port());
    let conf = format!(
        "in-spool-dir {d}/in\nin-port {in_port}\nin-interface 127.0.0.1\nin-admin {in_admin}\n\
         out-spool-dir {d}/out\nout-port {out_port}\nout-interface 127.0.0.1\nout-admin {out_admin}\n",
        d = d.display()
    );
    let relay = Instances::start(d, &conf, &[], &[in_port, out_port]);
    for (port, count) in [(in_port, 2), (out_port, 3), (in_port, 1)] {
        let mut c = Client::connect(port);
        c.reply();
        for n in 0..count {
            let body = format!("Subject: n-{n}\r\n\r\nhi\r\n");
            assert_eq!(
                c.send_message("a@example.com", &["b@example.org"], &body),
                "250 message processed"
            );
        }
        assert_eq!(c.command("QUIT"), "221 OK");
    }
    let (inn, out) = (ids(&d.join("in")), ids(&d.join("out")));
    assert_eq!((inn.len(), out.len()), (3, 3), "{inn:?} {out:?}");
    assert!(inn.is_disjoint(&out), "{inn:?} {out:?}");
    for (spool, set) in [("in", &inn), ("out", &out)] {
        let contents = spool_files(&d.join(spool), ".content");
        let expect: Vec<String> = set.iter().map(|id| format!("{id}.content")).collect();
        assert_eq!(contents, expect, "{spool}");
    }
    // Each admin interface lists its own instance's spool.
    let listed = |port: u16| -> BTreeSet<String> {
        admin(port, "list")
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(listed(in_admin), inn);
    assert_eq!(listed(out_admin), out);
    drop(relay);
}

#[test]
fn sigkill_in_the_middle_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sink = Sink::start(d);
    let (in_port, out_port) = (free_port(), free_port());
    // First `out`'s upstream is down, so mail piles up on the way.
    let dead = format!("127.0.0.1:{}", free_port());
    let conf = chain_conf(d, in_port, out_port, &dead);
    let mut relay = Instances::start(d, &conf, &[], &[in_port, out_port]);
    let mut acked = Vec::new();
    for n in 0..20 {
        let mut c = Client::connect(in_port);
        c.reply();
        let body = format!("Subject: n-{n}\r\n\r\nhi\r\n");
        if c.send_message("a@example.com", &["b@example.org"], &body) == "250 message processed" {
            acked.push(n);
        }
        c.command("QUIT");
    }
    assert_eq!(acked.len(), 20);
    // Killed while messages are in `in`, on the way to `out`, or in `out`.
    let held = || {
        spool_files(&d.join("in"), ".content").len() + spool_files(&d.join("out"), ".content").len()
    };
    assert!(held() >= 20, "{}", relay.log_text());
    relay.proc.signal(nix::sys::signal::Signal::SIGKILL);
    relay.proc.wait_exit(Duration::from_secs(5));
    assert!(sink.messages().is_empty());
    let conf = chain_conf(d, in_port, out_port, &sink.address());
    let relay = Instances::start(d, &conf, &[], &[in_port, out_port]);
    let all_there = wait_until(Duration::from_secs(60), || {
        let got: BTreeSet<usize> = delivered(&sink).into_iter().collect();
        acked.iter().all(|n| got.contains(n))
    });
    let got: BTreeSet<usize> = delivered(&sink).into_iter().collect();
    assert!(
        all_there,
        "missing {:?}\n{}",
        acked
            .iter()
            .filter(|n| !got.contains(n))
            .collect::<Vec<_>>(),
        relay.log_text()
    );
    assert!(sink
        .messages()
        .iter()
        .all(|m| m.contains("X-Filtered: by-in")));
    drop(relay);
}

#[test]
fn a_dead_upstream_of_one_instance_does_not_stall_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sink = Sink::start(d);
    // `stuck`'s upstream takes connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (stuck_port, ok_port) = (free_port(), free_port());
    let conf = format!(
        "stuck-spool-dir {d}/stuck\nstuck-port {stuck_port}\nstuck-interface 127.0.0.1\n\
         stuck-forward-to {silent_addr}\nstuck-forward-on-disconnect\n\
         ok-spool-dir {d}/ok\nok-port {ok_port}\nok-interface 127.0.0.1\n\
         ok-forward-to {sink}\nok-forward-on-disconnect\n",
        d = d.display(),
        sink = sink.address()
    );
    let relay = Instances::start(d, &conf, &[], &[stuck_port, ok_port]);
    for (n, port) in [(1, stuck_port), (2, ok_port), (3, stuck_port), (4, ok_port)] {
        let mut c = Client::connect(port);
        c.reply();
        let body = format!("Subject: n-{n}\r\n\r\nhi\r\n");
        assert_eq!(
            c.send_message("a@example.com", &["b@example.org"], &body),
            "250 message processed"
        );
        assert_eq!(c.command("QUIT"), "221 OK");
    }
    let arrived = wait_until(Duration::from_secs(20), || {
        let mut got = delivered(&sink);
        got.sort();
        got == [2, 4]
    });
    assert!(arrived, "{:?}\n{}", delivered(&sink), relay.log_text());
    // `stuck` still holds both of its messages (one of them locked while
    // its forwarding waits), and nothing of `ok`'s.
    assert_eq!(spool_files(&d.join("stuck"), ".content").len(), 2);
    assert!(spool_files(&d.join("ok"), ".envelope").is_empty());
    drop(relay);
    drop(silent);
}

#[test]
fn prefixed_options_mix_on_the_command_line_and_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (in_port, out_port) = (free_port(), free_port());
    let conf = format!(
        "in-spool-dir {d}/in\nin-port {in_port}\nin-interface 127.0.0.1\n\
         out-interface 127.0.0.1\nout-domain file.example.com\n",
        d = d.display()
    );
    let out_spool = format!("--out-spool-dir={}/out", d.display());
    let relay = Instances::start(
        d,
        &conf,
        &[
            &out_spool,
            "--out-port",
            &out_port.to_string(),
            "--in-domain",
            "cmdline.example.com",
        ],
        &[in_port, out_port],
    );
    let greeting = |port| Client::connect(port).reply();
    assert!(greeting(in_port).starts_with("220 cmdline.example.com -- "));
    assert!(greeting(out_port).starts_with("220 file.example.com -- "));
    // As in 2.6.1, the instances go in the order their spool directories
    // come, and the command line comes before the file: `out` is first.
    let lines = relay.log_lines();
    assert_eq!(
        lines[..2],
        [
            format!("info: [out] smtp server on 127.0.0.1:{out_port}"),
            format!("info: [in] smtp server on 127.0.0.1:{in_port}"),
        ],
        "{lines:#?}"
    );
    // The same option for the same instance in both places is a duplicate.
    let other = in_port.wrapping_add(1).to_string();
    let conf_path = d.join("relay.conf");
    let (code, _, err) = run(
        Command::new(RELAY)
            .args([&out_spool, "--in-port", &other])
            .arg(&conf_path),
        Duration::from_secs(10),
    );
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: error: duplicate use of \"--port\"\n            \
         try \"emailrelay --help --verbose\" for more information\n"
    );
}

/// Runs the relay with two instances on loopback plus `extra`, for a
/// startup that is expected to fail; returns (code, stderr).
fn start_fails(dir: &Path, extra: &[&str]) -> (i32, String) {
    let (a, b) = (free_port().to_string(), free_port().to_string());
    let (in_spool, out_spool) = (dir.join("in"), dir.join("out"));
    let (code, _, err) = run(
        Command::new(RELAY)
            .args(["--no-daemon", "--user", "root", "--log", "--no-syslog"])
            .arg("--in-spool-dir")
            .arg(&in_spool)
            .args(["--in-port", &a, "--in-interface", "127.0.0.1"])
            .arg("--out-spool-dir")
            .arg(&out_spool)
            .args(["--out-port", &b, "--out-interface", "127.0.0.1"])
            .args(extra),
        Duration::from_secs(10),
    );
    (code, err)
}

#[test]
fn an_unknown_prefix_is_an_invalid_option() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = start_fails(dir.path(), &["--zz-port", "25"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: error: invalid option: \"--zz-port\"\n            \
         try \"emailrelay --help --verbose\" for more information\n"
    );
}

#[test]
fn process_wide_options_under_the_second_prefix_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (in_port, out_port) = (free_port(), free_port());
    let conf = format!(
        "in-spool-dir {d}/in\nin-port {in_port}\nin-interface 127.0.0.1\n\
         out-spool-dir {d}/out\nout-port {out_port}\nout-interface 127.0.0.1\n\
         out-log-file {d}/out.log\nout-pid-file {d}/out.pid\nout-user nosuchuser\n\
         out-log-format unit\nout-log-address\nout-close-stderr\n",
        d = d.display()
    );
    let relay = Instances::start(d, &conf, &[], &[in_port, out_port]);
    assert!(!d.join("out.log").exists());
    assert!(!d.join("out.pid").exists());
    // --out-log-format and --out-log-address change nothing: the out
    // session's lines carry no tag and no address.
    let mut c = Client::connect(out_port);
    c.reply();
    assert_eq!(c.command("QUIT"), "221 OK");
    let closed = "info: smtp connection closed: smtp protocol done: 127.0.0.1:";
    assert!(wait_until(Duration::from_secs(10), || relay
        .log_lines()
        .iter()
        .any(|l| l.starts_with(closed))));
    // 2.6.1 checks every instance's logging options, so --out-verbose
    // without --out-log is refused (though it would be ignored).
    let (code, err) = start_fails(d, &["--out-verbose"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: usage error: [out] the --verbose option must be used with --log, --help, \
         --as-client, --as-server or --as-proxy\n"
    );
}

#[test]
fn two_instances_on_one_port_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port().to_string();
    let (code, _, err) = run(
        Command::new(RELAY)
            .args(["--no-daemon", "--user", "root", "--log", "--no-syslog"])
            .arg("--in-spool-dir")
            .arg(d.join("in"))
            .args(["--in-port", &port, "--in-interface", "127.0.0.1"])
            .arg("--out-spool-dir")
            .arg(d.join("out"))
            .args(["--out-port", &port, "--out-interface", "127.0.0.1"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!("emailrelay: error: [out] socket bind error: address already in use: 127.0.0.1:{port}\n")
    );
    // An error in one instance's options names it.
    let (code, err) = start_fails(d, &["--out-forward"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: usage error: [out] --forward requires --forward-to\n"
    );
}

#[test]
fn the_guides_in_out_example_runs_with_the_account_verifier() {
    // The reference guide's example, with test ports, spools and
    // smarthost, the listeners kept on loopback, and its `in-filter
    // account:` written as the address verifier it is meant to be (2.6.1
    // too has no such filter program; we refuse it at startup).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sink = Sink::start(d);
    let (in_port, out_port) = (free_port(), free_port());
    let conf = format!(
        "# in...\n\
         in-spool-dir {d}/in\n\
         in-port {in_port}\n\
         in-remote-clients\n\
         in-address-verifier account:\n\
         in-domain example.com\n\
         # out...\n\
         out-spool-dir {d}/out\n\
         out-port {out_port}\n\
         out-forward-on-disconnect\n\
         out-forward-to {sink}\n\
         in-interface 127.0.0.1\n\
         out-interface 127.0.0.1\n",
        d = d.display(),
        sink = sink.address(),
    );
    let relay = Instances::start(d, &conf, &[], &[in_port, out_port]);
    let lines = relay.log_lines();
    for wanted in [
        format!("info: [in] smtp server on 127.0.0.1:{in_port}"),
        format!("info: [out] smtp server on 127.0.0.1:{out_port}"),
    ] {
        assert!(lines.contains(&wanted), "{lines:#?}");
    }
    // `out` relays to the smarthost once the client disconnects.
    let mut c = Client::connect(out_port);
    c.reply();
    c.command("EHLO device.example");
    assert_eq!(
        c.send_message(
            "scanner@example.com",
            &["admin@example.net"],
            "Subject: scan\r\n\r\nx\r\n"
        ),
        "250 message processed"
    );
    assert_eq!(c.command("QUIT"), "221 OK");
    assert!(wait_until(Duration::from_secs(20), || sink
        .messages()
        .len()
        == 1));
    assert!(sink.messages()[0].contains("Subject: scan"));
    // `in` takes mail for system accounts only: `nobody` is outside the
    // uid range, so it is refused with 2.6.1's reply.
    let mut c = Client::connect(in_port);
    c.reply();
    c.command("EHLO mx.example");
    assert_eq!(
        c.command("MAIL FROM:<a@example.org>"),
        "250 sender <a@example.org> OK"
    );
    assert_eq!(c.command("RCPT TO:<nobody@example.com>"), "550 rejected");
    assert!(spool_files(&d.join("in"), ".envelope").is_empty());
}
