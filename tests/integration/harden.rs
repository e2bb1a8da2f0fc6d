//! Hardening, second round (issue 25): each probe finding reproduced with
//! a real client (a trickling raw-socket client, swaks, Python's smtplib
//! and poplib, curl) against our binary, asserting the exact reply, the
//! log line, and that nothing outside the spool was read or changed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{program, run, Relay};

/// Names in `dir` other than the spool and the relay's logs: what a test
/// must find empty to say nothing outside the spool was written.
fn strays(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "spool" && !(n.starts_with("relay") && n.ends_with(".log")))
        .collect();
    names.sort();
    names
}

/// Opens `n` SMTP sessions, takes each into its message content (DATA, or
/// for the last `bdat` of them BDAT with a chunk far larger than what
/// follows), prints `ready` and waits for a line on stdin; then sends each
/// one octet every two seconds for at most `limit` seconds. Prints one
/// line per session: the seconds from the start of its content to the
/// relay's close, or `open` if it was still open at the end.
const TRICKLE: &str = r#"
import select, socket, sys, time
port, n, bdat, limit = (int(a) for a in sys.argv[1:5])
def reply(s):
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        chunk = s.recv(4096)
        if not chunk: raise SystemExit("closed early: %r" % data)
        data += chunk
    return data
socks, started = [], []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert reply(s).startswith(b"220 "), "greeting"
    for line in [b"EHLO trickle", b"MAIL FROM:<t@example.com>", b"RCPT TO:<r@example.com>"]:
        s.sendall(line + b"\r\n")
        assert reply(s).startswith(b"250"), line
    if i >= n - bdat:
        s.sendall(b"BDAT 100000 LAST\r\n")
    else:
        s.sendall(b"DATA\r\n")
        assert reply(s).startswith(b"354"), "DATA"
    s.setblocking(False)
    socks.append(s)
    started.append(time.monotonic())
print("ready", flush=True)
sys.stdin.readline()
closed = [None] * n
end = time.monotonic() + limit
while time.monotonic() < end and None in closed:
    for i, s in enumerate(socks):
        if closed[i] is not None: continue
        try:
            s.send(b"x")
        except OSError:
            closed[i] = time.monotonic() - started[i]
    wait = min(end, time.monotonic() + 2)
    while time.monotonic() < wait:
        live = [s for i, s in enumerate(socks) if closed[i] is None]
        if not live: break
        readable, _, _ = select.select(live, [], [], max(0.0, wait - time.monotonic()))
        for s in readable:
            i = socks.index(s)
            try:
                gone = s.recv(4096) == b""
            except OSError:
                gone = True
            if gone: closed[i] = time.monotonic() - started[i]
for c in closed:
    print("open" if c is None else "%.1f" % c)
"#;

/// Runs the trickle client; `between` runs while every session is inside
/// its content. How long each session lasted (None: still open).
fn trickle(
    port: u16,
    n: usize,
    bdat: usize,
    limit: u32,
    between: impl FnOnce(),
) -> Vec<Option<f64>> {
    use std::io::{BufRead, Write};
    let mut proc = crate::harness::Proc {
        child: Command::new("python3")
            .args(["-c", TRICKLE, &port.to_string(), &n.to_string()])
            .args([bdat.to_string(), limit.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    };
    let mut out = std::io::BufReader::new(proc.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    between();
    let mut stdin = proc.child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    let lasted: Vec<Option<f64>> = out.lines().map(|l| l.unwrap().parse().ok()).collect();
    assert_eq!(proc.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(lasted.len(), n);
    lasted
}

/// A relay whose open-file limit leaves room for exactly 200 sessions
/// ((832 - 32) / 4), with a three-second idle timeout and BDAT.
fn relay_for_200(dir: &Path, extra: &[&str]) -> Relay {
    let port = crate::harness::free_port();
    let mut args = vec!["--idle-timeout", "3", "--server-smtp-config", "chunking"];
    args.extend_from_slice(extra);
    Relay::launch_under(
        &["sh", "-c", "ulimit -n 832 && exec \"$0\" \"$@\""],
        &dir.join("spool"),
        &dir.join("relay.log"),
        port,
        &args,
    )
}

fn swaks(port: u16) -> (i32, String) {
    let mut cmd = Command::new(program("swaks"));
    cmd.args(["--server", &format!("127.0.0.1:{port}"), "--helo", "vm"])
        .args(["--from", "a@example.com", "--to", "b@example.com"])
        .args(["--body", "hello"]);
    let (code, out, err) = run(&mut cmd, Duration::from_secs(30));
    (code, out + &err)
}

const CUT: &str = "timeout: message content slower than --min-data-rate=500 bytes a second";

#[test]
fn two_hundred_tricklers_lose_their_sessions_after_the_grace_and_free_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_for_200(dir.path(), &[]);
    let port = relay.port;
    // 100 in DATA and 100 in BDAT: every session the cap allows, so the
    // next client is refused while they hold them.
    let lasted = trickle(port, 200, 100, 30, || {
        let mut c = crate::harness::Client::connect(port);
        assert_eq!(
            c.reply(),
            "421 relay.example.com too many connections: try again later\r\n"
        );
    });
    // A byte every 2 s where 500 a second are wanted: each session ends
    // once its three-second grace is over, not after the hour.
    for l in &lasted {
        let l = l.unwrap_or_else(|| panic!("a trickler kept its session: {lasted:?}"));
        assert!((2.5..8.0).contains(&l), "{lasted:?}");
    }
    let log = relay.expect_log(CUT);
    let line = format!("emailrelay: info: smtp connection closed: {CUT}: 127.0.0.1:");
    assert_eq!(log.matches(&line).count(), 200);
    // The cap is free again: swaks is served, and its message is the only
    // one in the spool (each trickler's partial content was removed).
    let (code, out) = swaks(port);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<-  250 message processed"), "{out}");
    assert_eq!(relay.files(".content").len(), 1);
    assert_eq!(relay.files("").len(), 2, "{:?}", relay.files(""));
    assert_eq!(strays(dir.path()), Vec::<String>::new());
}

#[test]
fn without_a_minimum_data_rate_a_trickler_keeps_its_session() {
    // The control: `--min-data-rate 0` leaves only the hour, so the same
    // trickle is still connected after ten seconds.
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_for_200(dir.path(), &["--min-data-rate", "0"]);
    let lasted = trickle(relay.port, 4, 2, 10, || ());
    assert_eq!(lasted, vec![None; 4]);
    assert!(!relay.log_text().contains("timeout: message content"));
}
