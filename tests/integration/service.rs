//! Running under systemd: the `Type=notify` protocol against a datagram
//! socket the test owns (READY=1 with STATUS=, STOPPING=1 on SIGTERM,
//! with and without `--user`), socket activation through `LISTEN_FDS`
//! with systemd's own `systemd-socket-activate`, and `systemd-analyze
//! verify` on the units in packaging/systemd.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{free_port, greets, program, run, submit_one, wait_until, Proc, Relay, RELAY};

/// A notification socket like systemd's, with a bounded wait per datagram.
fn notify_socket(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket
}

/// The next datagram, as text; fails the test after the socket's timeout.
fn next_state(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification from the relay: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notify_socket_hears_ready_with_the_queue_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = notify_socket(&path);
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let env = format!("NOTIFY_SOCKET={}", path.display());
    let mut relay = Relay::launch_under(
        &["env", &env],
        &spool,
        &dir.path().join("relay.log"),
        free_port(),
        &[],
    );
    // One datagram: ready, with what it is doing; no MAINPID= (the
    // process systemd started is the relay: --no-daemon).
    assert_eq!(
        next_state(&socket),
        "READY=1\nSTATUS=Accepting mail; 1 message queued"
    );
    relay.proc.signal(Signal::SIGTERM);
    assert_eq!(next_state(&socket), "STOPPING=1\nSTATUS=Shutting down");
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(10)), Some(0));
    // Said nothing about the socket: every datagram went through.
    let log = relay.log_text();
    assert!(!log.contains("warning:"), "{log}");
}

/// With `--user` the relay is the monitor's child: it notifies itself
/// (the unit's NotifyAccess=all lets systemd hear it), and the monitor
/// passes SIGTERM on to it.
#[test]
fn with_user_the_relay_child_notifies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("notify");
    let socket = notify_socket(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let mut cmd = Command::new(RELAY);
    cmd.env("NOTIFY_SOCKET", &path)
        .args(["--no-daemon", "--log", "--user", "nobody"])
        .args(["--interface", "127.0.0.1", "--port", &port.to_string()])
        .arg("--spool-dir")
        .arg(&spool)
        .arg("--log-file")
        .arg(dir.path().join("relay.log"));
    let mut relay = Proc::spawn(&mut cmd);
    assert_eq!(
        next_state(&socket),
        "READY=1\nSTATUS=Accepting mail; 0 messages queued"
    );
    assert!(wait_until(Duration::from_secs(10), || greets(port)));
    relay.signal(Signal::SIGTERM);
    assert_eq!(next_state(&socket), "STOPPING=1\nSTATUS=Shutting down");
    assert_eq!(relay.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn systemd_analyze_verifies_the_service_and_socket_units() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");
    let unit = units.join("emailrelay.service");
    // The unit's ExecStart names /usr/sbin/emailrelay, which need not be
    // installed here: verify a copy that names the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/sbin/emailrelay "), "{text}");
    let copy = dir.path().join("emailrelay.service");
    std::fs::write(
        &copy,
        text.replace("/usr/sbin/emailrelay ", &format!("{RELAY} ")),
    )
    .unwrap();
    let socket = dir.path().join("emailrelay.socket");
    std::fs::copy(units.join("emailrelay.socket"), &socket).unwrap();
    let (code, out, err) = run(
        Command::new(program("systemd-analyze"))
            .arg("verify")
            .arg("--man=no")
            .arg(&copy)
            .arg(&socket),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "systemd-analyze verify failed:\n{out}{err}");
    // Warnings about the unit itself fail the test too (not those about
    // the machine's own units, which verify also loads).
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("emailrelay.service") || l.contains("emailrelay.socket"))
        .collect();
    assert!(ours.is_empty(), "{err}");
}

/// systemd's own socket activator hands the relay a listening socket
/// through LISTEN_FDS (named smtp), and mail goes through it.
#[test]
fn socket_activation_through_listen_fds() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let log = dir.path().join("relay.log");
    let spool = dir.path().join("spool");
    let mut activator = crate::harness::Proc::spawn(
        Command::new(program("systemd-socket-activate"))
            .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=smtp", RELAY])
            .args(["--no-daemon", "--user", "root", "--log", "--log-file"])
            .arg(&log)
            .arg("--spool-dir")
            .arg(&spool),
    );
    assert!(crate::harness::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    // The first connection starts the relay, which greets on the socket.
    let reply = crate::harness::send_one(
        port,
        "a@example.com",
        &["b@example.com"],
        "Subject: s\r\n\r\nx\r\n",
    );
    assert_eq!(reply, "250 message processed");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("emailrelay: info: smtp server on fd#3\n"),
        "{text}"
    );
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 1);
    // The activator exec'd the relay: its PID is the relay's.
    activator.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(activator.wait_exit(Duration::from_secs(20)), Some(0));
}
