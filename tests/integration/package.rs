//! The Debian package: built by cargo-deb from the release binaries these
//! tests run, inspected with dpkg-deb, checked by lintian (errors fail,
//! warnings are printed), then installed on this machine, run in the
//! foreground from its own config template, upgraded over an edited
//! config with mail in the spool, and purged.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    free_port, greets, program, run, send_one, spool_files, wait_until, Proc, RELAY,
};

const SPOOL: &str = "/var/spool/emailrelay";

/// `cargo deb` over the binaries already built; returns the .deb's path.
fn build_package(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        Path::new(RELAY),
        root.join("target/release/emailrelay"),
        "the package test packs the release build: run it with cargo test --release"
    );
    let deb = out.join("emailrelay.deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (code, stdout, stderr) = run(
        Command::new(cargo)
            .current_dir(root)
            .args(["deb", "--no-build", "--no-strip", "--output"])
            .arg(&deb),
        Duration::from_secs(300),
    );
    assert_eq!(
        code, 0,
        "cargo deb failed (scripts/test installs it):\n{stdout}{stderr}"
    );
    deb
}

fn dpkg(args: &[&str], deb: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new(program("dpkg"));
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(deb) = deb {
        cmd.arg(deb);
    }
    let (code, out, err) = run(&mut cmd, Duration::from_secs(300));
    (code, out + &err)
}

#[test]
fn the_debian_package_installs_runs_upgrades_and_purges_cleanly() {
    let _machine = crate::harness::machine_lock();
    // Files other tests left in the default spool are not ours to judge.
    let foreign = spool_files(Path::new(SPOOL), "");
    let dir = tempfile::tempdir().unwrap();
    let deb = build_package(dir.path());

    // What is in it.
    let (code, contents, err) = run(
        Command::new(program("dpkg-deb"))
            .arg("--contents")
            .arg(&deb),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    for path in [
        "./usr/sbin/emailrelay",
        "./usr/sbin/emailrelay-submit",
        "./usr/bin/emailrelay-passwd",
        "./etc/emailrelay.conf",
        "./etc/pam.d/emailrelay",
        "./etc/logrotate.d/emailrelay",
        "./usr/lib/systemd/system/emailrelay.service",
        "./usr/lib/systemd/system/emailrelay.socket",
        "./usr/share/man/man1/emailrelay.1.gz",
        "./usr/share/doc/emailrelay/examples/fail2ban-filter.conf",
    ] {
        assert!(contents.contains(path), "no {path} in:\n{contents}");
    }
    let (_, fields, _) = run(
        Command::new(program("dpkg-deb")).arg("--field").arg(&deb),
        Duration::from_secs(30),
    );
    assert!(fields.contains("Package: emailrelay\n"), "{fields}");
    assert!(fields.contains("adduser"), "{fields}");
    assert!(fields.contains("Section: mail\n"), "{fields}");

    // lintian: errors fail the test; warnings are shown for the record.
    let (code, out, err) = run(
        Command::new(program("lintian"))
            .args(["--fail-on", "error", "--no-tag-display-limit"])
            .arg(&deb),
        Duration::from_secs(600),
    );
    println!("lintian:\n{out}{err}");
    assert_eq!(code, 0, "lintian found errors:\n{out}{err}");

    // Install: the account, the spool, the files.
    let (code, out) = dpkg(&["--install"], Some(&deb));
    assert_eq!(code, 0, "{out}");
    let _purge = Purge;
    assert!(Path::new("/usr/sbin/emailrelay").exists());
    let (code, account, _) = run(
        Command::new("getent").args(["passwd", "emailrelay"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, 0, "no emailrelay account");
    let uid: u32 = account.split(':').nth(2).unwrap().parse().unwrap();
    let spool = std::fs::metadata(SPOOL).unwrap();
    assert_eq!((spool.uid(), spool.mode() & 0o7777), (uid, 0o770));

    // The template runs as it is (on a free port rather than 25, which
    // this machine may use): loopback only, mail into the spool as the
    // emailrelay account.
    let port = free_port();
    let template = std::fs::read_to_string("/etc/emailrelay.conf").unwrap();
    assert!(template.contains("\ninterface 127.0.0.1\n"), "{template}");
    let conf = dir.path().join("emailrelay.conf");
    std::fs::write(
        &conf,
        template.replace("\nport 25\n", &format!("\nport {port}\n")),
    )
    .unwrap();
    // First with forwarding switched on, as an administrator would: the
    // message reaches the smarthost (smtp-sink) and leaves the spool.
    let sink = crate::harness::Sink::start(dir.path());
    let forwarding = dir.path().join("forwarding.conf");
    std::fs::write(
        &forwarding,
        std::fs::read_to_string(&conf).unwrap()
            + &format!("forward-to {}\nforward-on-disconnect\n", sink.address()),
    )
    .unwrap();
    let (mut relay, log) = start_installed(&forwarding, port, dir.path());
    let reply = send_one(
        port,
        "a@example.com",
        &["b@example.com"],
        "Subject: forwarded\r\n\r\nx\r\n",
    );
    assert_eq!(reply, "250 message processed");
    assert!(
        wait_until(Duration::from_secs(20), || sink
            .messages()
            .iter()
            .any(|m| m.contains("Subject: forwarded"))),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    relay.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(relay.wait_exit(Duration::from_secs(20)), Some(0));
    let mut left = spool_files(Path::new(SPOOL), ".envelope");
    left.retain(|name| !foreign.contains(name));
    assert!(left.is_empty(), "{left:?}");

    // Then as installed: the message waits in the spool.
    let (mut relay, _log) = start_installed(&conf, port, dir.path());
    let reply = send_one(
        port,
        "a@example.com",
        &["b@example.com"],
        "Subject: packaged\r\n\r\nx\r\n",
    );
    assert_eq!(reply, "250 message processed");
    let mut envelopes = spool_files(Path::new(SPOOL), ".envelope");
    envelopes.retain(|name| !foreign.contains(name));
    assert_eq!(envelopes.len(), 1);
    let envelope = std::fs::metadata(Path::new(SPOOL).join(&envelopes[0])).unwrap();
    assert_eq!(
        envelope.uid(),
        uid,
        "spool files belong to the emailrelay account"
    );
    relay.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(relay.wait_exit(Duration::from_secs(20)), Some(0));

    // An upgrade (the same package again) keeps an edited config and the mail.
    let edited = format!("{template}forward-to smtp.example.com:25\n");
    std::fs::write("/etc/emailrelay.conf", &edited).unwrap();
    let (code, out) = dpkg(&["--install", "--force-confold"], Some(&deb));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string("/etc/emailrelay.conf").unwrap(),
        edited
    );
    let mail = || {
        let mut names = spool_files(Path::new(SPOOL), ".envelope");
        names.retain(|name| !foreign.contains(name));
        names
    };
    assert_eq!(mail(), envelopes);

    // Purge with mail waiting: everything goes but the mail.
    let (code, out) = dpkg(&["--purge", "emailrelay"], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("/var/spool/emailrelay is not empty and was left in place"),
        "{out}"
    );
    assert_eq!(spool_files(Path::new(SPOOL), ".envelope"), envelopes);
    for gone in [
        "/usr/sbin/emailrelay",
        "/etc/emailrelay.conf",
        "/etc/pam.d/emailrelay",
        "/usr/lib/systemd/system/emailrelay.service",
        "/var/log/emailrelay",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    // Once the mail is dealt with, a purge leaves nothing.
    for name in spool_files(Path::new(SPOOL), "") {
        std::fs::remove_file(Path::new(SPOOL).join(name)).unwrap();
    }
    let (code, out) = dpkg(&["--install"], Some(&deb));
    assert_eq!(code, 0, "{out}");
    let (code, out) = dpkg(&["--purge", "emailrelay"], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        !Path::new(SPOOL).exists(),
        "an empty spool goes with the purge"
    );
}

/// Starts the installed relay in the foreground with `conf`; returns it
/// once it greets on `port`, with its log file.
fn start_installed(conf: &Path, port: u16, dir: &Path) -> (Proc, PathBuf) {
    let log = dir.join(format!(
        "relay-{}.log",
        conf.file_stem().unwrap().to_string_lossy()
    ));
    let relay = Proc::spawn(
        Command::new("/usr/sbin/emailrelay")
            .args(["--no-daemon", "--log", "--log-file"])
            .arg(&log)
            .arg(conf),
    );
    assert!(
        wait_until(Duration::from_secs(20), || greets(port)),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (relay, log)
}

/// Purges the package if the test stops half-way, so that the machine is
/// left as it was found (but for the system account, as Debian keeps it).
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = dpkg(&["--purge", "emailrelay"], None);
    }
}
