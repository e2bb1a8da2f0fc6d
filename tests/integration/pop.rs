//! The POP3 server (`--pop`) against real clients (2.6.1's dialogue is in
//! the golden transcripts, tests/golden/pop): Python poplib with STLS and
//! AUTH, mpop and fetchmail collecting into mailboxes,
//! `openssl s_client -starttls pop3`, `--pop-by-name` with `copy:pop`,
//! and the safety rules (locked messages, user names, failed logins,
//! plaintext behind STLS, idle timeout).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{free_port, program, run, run_with_input, send_one, wait_until, Relay};
use crate::tls::Pki;

/// A relay with `--pop` on its own port and the given POP secrets.
struct PopRelay {
    relay: Relay,
    pop_port: u16,
}

impl PopRelay {
    fn start(dir: &Path, secrets: &Path, extra: &[&str]) -> PopRelay {
        let pop_port = free_port();
        let port = pop_port.to_string();
        let secrets = secrets.display().to_string();
        let mut args = vec!["--pop", "--pop-port", &port, "--pop-auth", &secrets];
        args.extend_from_slice(extra);
        let relay = Relay::start(dir, &args);
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                pop_port
            ))
            .is_ok()),
            "no POP listener"
        );
        PopRelay { relay, pop_port }
    }

    fn connect(&self) -> Pop {
        let stream = TcpStream::connect(("127.0.0.1", self.pop_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Pop {
            stream: BufReader::new(stream),
        }
    }

    /// Waits for the end of the `n`th POP connection in the log.
    fn wait_closed(&self, n: usize) {
        let closed = || {
            self.relay
                .log_text()
                .matches("pop connection closed")
                .count()
                >= n
        };
        assert!(
            wait_until(Duration::from_secs(10), closed),
            "{}",
            self.relay.log_text()
        );
    }
}

/// A raw POP3 connection.
struct Pop {
    stream: BufReader<TcpStream>,
}

impl Pop {
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).unwrap_or(0);
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    fn send(&mut self, text: &str) {
        self.stream
            .get_mut()
            .write_all(format!("{text}\r\n").as_bytes())
            .unwrap();
    }

    fn command(&mut self, text: &str) -> String {
        self.send(text);
        self.line()
    }
}

/// Every file and directory (with a trailing /) under `spool`, sorted.
fn spool_tree(spool: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let rel = entry
                .path()
                .strip_prefix(base)
                .unwrap()
                .display()
                .to_string();
            if entry.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &entry.path(), out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(spool, spool, &mut out);
    out.sort();
    out
}

/// Holds an flock on a file, as a live forwarder holds a `.busy` envelope,
/// so that our startup recovery leaves it alone.
fn hold_lock(path: &Path) -> nix::fcntl::Flock<std::fs::File> {
    let file = std::fs::File::open(path).unwrap();
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap()
}

fn secrets(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pop.auth");
    std::fs::write(&path, text).unwrap();
    path
}

/// A message as SMTP carries it: its ".leading dot" line dot-stuffed.
const SMALL: &str = "Subject: hello\r\n\r\n..leading dot\r\nbody\r\n";

/// Python's poplib: STLS, then USER/PASS, STAT, RETR (un-stuffed) and
/// DELE; then AUTH PLAIN over STLS. The message is gone afterwards.
#[test]
fn poplib_with_stls_user_pass_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let cert = pki.path("server-all.pem");
    let auth = secrets(dir.path(), "server plain alice secret1\n");
    let relay = PopRelay::start(
        dir.path(),
        &auth,
        &["--server-tls", "--server-tls-certificate", &cert],
    );
    for _ in 0..2 {
        assert!(
            send_one(relay.relay.port, "a@example.com", &["b@example.com"], SMALL)
                .starts_with("250")
        );
    }
    let script = r#"
import poplib, ssl, sys, base64
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
p = poplib.POP3("127.0.0.1", port, timeout=20)
print(sorted(p.capa()))
print(p.stls(context=ctx))
print(sorted(p.capa()))
print(p.user("alice"))
print(p.pass_("secret1"))
print(p.stat()[0])
resp, lines, octets = p.retr(1)
print(resp.split()[0], lines[-2:])
print(p.dele(1))
print(p.quit())
p = poplib.POP3("127.0.0.1", port, timeout=20)
p.stls(context=ctx)
print(p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0secret1").decode()))
print(p.stat()[0])
print(p.quit())
"#;
    let (code, out, err) = run(
        Command::new("python3")
            .args(["-c", script, &relay.pop_port.to_string()])
            .arg(pki.path("ca.pem")),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "['CAPA', 'SASL', 'STLS', 'TOP', 'UIDL', 'USER']",
            "b'+OK'",
            "['CAPA', 'SASL', 'TOP', 'UIDL', 'USER']",
            "b'+OK user: alice'",
            "b'+OK'",
            "2",
            "b'+OK' [b'.leading dot', b'body']",
            "b'+OK'",
            "b'+OK signing off'",
            "b'+OK'",
            "1",
            "b'+OK signing off'",
        ],
        "{err}"
    );
    relay.wait_closed(2);
    assert_eq!(
        relay.relay.files(".envelope").len(),
        1,
        "one deleted, one left"
    );
    relay.relay.expect_log("tls session established: TLSv1.3");
}

/// `openssl s_client -starttls pop3` logs in and lists over TLS.
#[test]
fn openssl_s_client_starttls_pop3() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let cert = pki.path("server-all.pem");
    let auth = secrets(dir.path(), "server plain alice secret1\n");
    let relay = PopRelay::start(
        dir.path(),
        &auth,
        &["--server-tls", "--server-tls-certificate", &cert],
    );
    assert!(
        send_one(relay.relay.port, "a@example.com", &["b@example.com"], SMALL).starts_with("250")
    );
    let (code, out, err) = run_with_input(
        Command::new("openssl").args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", relay.pop_port),
            "-starttls",
            "pop3",
            "-CAfile",
            &pki.path("ca.pem"),
            "-verify_return_error",
            "-quiet",
            "-crlf",
        ]),
        Some(b"USER alice\nPASS secret1\nLIST\nQUIT\n"),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    let size = std::fs::metadata(relay.relay.spool.join(format!(
        "{}.content",
        relay.relay.files(".envelope")[0].trim_end_matches(".envelope")
    )))
    .unwrap()
    .len();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "+OK user: alice",
            "+OK",
            "+OK 1 message(s)",
            &format!("1 {size}"),
            ".",
            "+OK signing off"
        ],
        "{err}"
    );
}

/// mpop collects over USER/PASS into an mbox; the spool is empty after,
/// or keeps everything with `--pop-no-delete`.
#[test]
fn mpop_collects_into_an_mbox_and_the_spool_empties() {
    for no_delete in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let auth = secrets(dir.path(), "server plain alice secret1\n");
        let extra: &[&str] = if no_delete { &["--pop-no-delete"] } else { &[] };
        let relay = PopRelay::start(dir.path(), &auth, extra);
        assert!(
            send_one(relay.relay.port, "a@example.com", &["b@example.com"], SMALL)
                .starts_with("250")
        );
        let mbox = dir.path().join("mbox");
        let (code, out, err) = run(
            Command::new(program("mpop")).args([
                "--host=127.0.0.1",
                &format!("--port={}", relay.pop_port),
                "--tls=off",
                "--auth=user",
                "--user=alice",
                "--passwordeval=echo secret1",
                &format!("--delivery=mbox,{}", mbox.display()),
                &format!("--uidls-file={}", dir.path().join("uidls").display()),
                "--keep=off",
                "--quiet",
            ]),
            Duration::from_secs(60),
        );
        assert_eq!(code, 0, "{out}{err}");
        let text = std::fs::read_to_string(&mbox).unwrap();
        assert_eq!(text.matches("\nSubject: hello\n").count(), 1, "{text}");
        assert!(text.contains("\n.leading dot\nbody\n"), "{text}");
        relay.wait_closed(1);
        let left = relay.relay.files(".envelope").len();
        assert_eq!(left, usize::from(no_delete), "no_delete={no_delete}");
    }
}

/// fetchmail (AUTH CRAM-MD5, as it prefers) with `--pop-by-name` and
/// `copy:pop`: alice and bob each collect the message from their own
/// mailbox, and the shared content goes with the last envelope.
#[test]
fn fetchmail_with_pop_by_name_and_copy_pop() {
    let dir = tempfile::tempdir().unwrap();
    let auth = secrets(
        dir.path(),
        "server plain alice secret1\nserver plain bob secret2\n",
    );
    let spool = dir.path().join("spool");
    for user in ["alice", "bob"] {
        std::fs::create_dir_all(spool.join(user)).unwrap();
    }
    let relay = PopRelay::start(
        dir.path(),
        &auth,
        &["--pop-by-name", "--filter", "copy:pop"],
    );
    assert!(
        send_one(relay.relay.port, "a@example.com", &["b@example.com"], SMALL).starts_with("250")
    );
    // Mail for carol only, in a mailbox made after copy:pop ran: neither
    // alice nor bob sees it.
    std::fs::create_dir(spool.join("carol")).unwrap();
    std::fs::write(
        spool.join("carol/emailrelay.9.9.9.content"),
        "Subject: carol\r\n\r\nx\r\n",
    )
    .unwrap();
    std::fs::write(spool.join("carol/emailrelay.9.9.9.envelope"), "e").unwrap();
    let content = || {
        let mut names = crate::harness::spool_files(&spool, ".content");
        names.sort();
        names
    };
    assert_eq!(
        content().len(),
        1,
        "copy:pop leaves the content in the spool"
    );
    for (n, (user, password)) in [("alice", "secret1"), ("bob", "secret2")]
        .iter()
        .enumerate()
    {
        let mbox = dir.path().join(format!("{user}.mbox"));
        let rc = dir.path().join(format!("{user}.rc"));
        std::fs::write(
            &rc,
            format!(
                "poll 127.0.0.1 service {} protocol pop3 auth cram-md5 user \"{user}\" password \"{password}\" is root here sslproto '' mda \"cat >> {}\"\n",
                relay.pop_port,
                mbox.display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&rc).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&rc, perms).unwrap();
        let (code, out, err) = run(
            Command::new(program("fetchmail"))
                .arg("-f")
                .arg(&rc)
                .args(["--nosyslog", "--nokeep"])
                .arg("--pidfile")
                .arg(dir.path().join("fetchmail.pid"))
                .env("HOME", dir.path()),
            Duration::from_secs(60),
        );
        assert_eq!(code, 0, "{user}: {out}{err}");
        let text = std::fs::read_to_string(&mbox).unwrap();
        assert_eq!(text.matches("Subject: hello").count(), 1, "{user}: {text}");
        assert!(!text.contains("Subject: carol"), "{user}: {text}");
        relay.wait_closed(n + 1);
        assert!(crate::harness::spool_files(&spool.join(user), "").is_empty());
        let expected = if n == 0 { 1 } else { 0 };
        assert_eq!(
            content().len(),
            expected,
            "after {user}: {:?}",
            spool_tree(&spool)
        );
    }
    assert_eq!(
        crate::harness::spool_files(&spool.join("carol"), "").len(),
        2
    );
}

/// A message the forwarder has locked after the listing is not deleted,
/// in part or whole; QUIT says so.
#[test]
fn a_message_the_forwarder_holds_is_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let auth = secrets(dir.path(), "server plain alice secret1\n");
    let relay = PopRelay::start(dir.path(), &auth, &[]);
    for _ in 0..2 {
        assert!(
            send_one(relay.relay.port, "a@example.com", &["b@example.com"], SMALL)
                .starts_with("250")
        );
    }
    let ids: Vec<String> = relay
        .relay
        .files(".envelope")
        .iter()
        .map(|f| f.trim_end_matches(".envelope").to_string())
        .collect();
    let mut pop = relay.connect();
    pop.line();
    pop.command("USER alice");
    assert_eq!(pop.command("PASS secret1"), "+OK");
    assert_eq!(pop.command("DELE 1"), "+OK");
    assert_eq!(pop.command("DELE 2"), "+OK");
    let spool = &relay.relay.spool;
    let busy = spool.join(format!("{}.envelope.busy", ids[0]));
    std::fs::rename(spool.join(format!("{}.envelope", ids[0])), &busy).unwrap();
    let _lock = hold_lock(&busy);
    assert_eq!(
        pop.command("QUIT"),
        "-ERR some deleted messages not removed"
    );
    relay.wait_closed(1);
    assert!(busy.exists());
    assert!(
        spool.join(format!("{}.content", ids[0])).exists(),
        "never half-deleted"
    );
    assert!(!spool.join(format!("{}.content", ids[1])).exists());
    relay.relay.expect_log(&format!(
        "pop: [{}] not deleted: locked by another process",
        ids[0]
    ));
}

/// With `--pop-by-name`, a user name that is not one plain directory name
/// opens nothing, even when the secrets file has it.
#[test]
fn user_names_cannot_leave_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let auth = secrets(
        dir.path(),
        "server plain .. x\nserver plain a/b x\nserver plain .hidden x\n",
    );
    let relay = PopRelay::start(dir.path(), &auth, &["--pop-by-name"]);
    assert!(
        send_one(relay.relay.port, "a@example.com", &["b@example.com"], SMALL).starts_with("250")
    );
    for user in ["..", "a/b", ".hidden"] {
        let mut pop = relay.connect();
        pop.line();
        pop.command(&format!("USER {user}"));
        assert_eq!(
            pop.command("PASS x"),
            format!("-ERR invalid mailbox name [{user}]")
        );
        assert_eq!(pop.command("STAT"), "-ERR");
    }
    assert!(!dir.path().join("spool/a").exists());
    assert_eq!(relay.relay.files(".envelope").len(), 1);
}

/// Every file under `dir` with its bytes, sorted by name.
fn files_with_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Issue 25: with `--pop-by-name`, a user directory that is a symbolic
/// link out of the spool is refused with a clear -ERR and a log line,
/// and nothing outside is read or removed (2.6.1 followed it: RETR
/// returned the file outside, DELE and QUIT deleted it); `.` is no
/// mailbox either (2.6.1 took it as the spool itself).
#[test]
fn poplib_cannot_follow_a_linked_user_directory_out_of_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let auth = secrets(
        dir.path(),
        "server plain alice secret1\nserver plain mallory secret2\nserver plain . secret3\n",
    );
    let relay = PopRelay::start(dir.path(), &auth, &["--pop-by-name"]);
    let spool = relay.relay.spool.clone();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for (d, text) in [
        (&outside, "the password is hunter2"),
        (&spool.join("alice"), "for alice"),
    ] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(
            d.join("emailrelay.1.2.3.envelope"),
            "X-MailRelay-Format: #2821.8\r\n",
        )
        .unwrap();
        std::fs::write(
            d.join("emailrelay.1.2.3.content"),
            format!("Subject: x\r\n\r\n{text}\r\n"),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(&outside, spool.join("mallory")).unwrap();
    let before = files_with_bytes(&outside);
    let script = r#"
import poplib, sys
port = int(sys.argv[1])
def login(user, password):
    p = poplib.POP3("127.0.0.1", port, timeout=20)
    p.user(user)
    try:
        print(p.pass_(password))
    except poplib.error_proto as e:
        print("refused", e)
    for command in ("STAT", "RETR 1", "DELE 1"):
        try:
            print(p._shortcmd(command))
        except poplib.error_proto as e:
            print(command, e)
    print(p.quit())
login("mallory", "secret2")
login(".", "secret3")
p = poplib.POP3("127.0.0.1", port, timeout=20)
p.user("alice")
p.pass_("secret1")
resp, lines, octets = p.retr(1)
print(lines[-1])
print(p.dele(1))
print(p.quit())
"#;
    let (code, out, err) = run(
        Command::new("python3").args(["-c", script, &relay.pop_port.to_string()]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "refused b'-ERR invalid mailbox [mallory]: a symbolic link, not followed out of the spool'",
            "STAT b'-ERR'",
            "RETR 1 b'-ERR'",
            "DELE 1 b'-ERR'",
            "b'+OK signing off'",
            "refused b'-ERR invalid mailbox name [.]'",
            "STAT b'-ERR'",
            "RETR 1 b'-ERR'",
            "DELE 1 b'-ERR'",
            "b'+OK signing off'",
            "b'for alice'",
            "b'+OK'",
            "b'+OK signing off'",
        ],
        "{err}"
    );
    relay.wait_closed(3);
    let log = relay.relay.expect_log(
        "emailrelay: warning: pop: invalid mailbox [mallory]: a symbolic link, not followed out of the spool: 127.0.0.1:",
    );
    assert!(
        log.contains("emailrelay: warning: pop: invalid mailbox name [.]: 127.0.0.1:"),
        "{log}"
    );
    assert_eq!(
        files_with_bytes(&outside),
        before,
        "nothing outside changed"
    );
    assert!(
        std::fs::symlink_metadata(spool.join("mallory"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is left as it is"
    );
    assert_eq!(
        files_with_bytes(&spool.join("alice")),
        vec![],
        "alice's went"
    );
}

/// Failed logins are answered after a pause, and the third ends the
/// connection, as on the SMTP side.
#[test]
fn failed_logins_are_slow_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let auth = secrets(dir.path(), "server plain alice secret1\n");
    let relay = PopRelay::start(dir.path(), &auth, &[]);
    let mut pop = relay.connect();
    pop.line();
    let start = Instant::now();
    pop.command("USER alice");
    assert_eq!(pop.command("PASS a"), "-ERR");
    assert_eq!(pop.command("PASS b"), "-ERR");
    assert_eq!(
        pop.command("PASS secret1"),
        "+OK",
        "the right password still works before the cap"
    );
    let mut pop = relay.connect();
    pop.line();
    pop.command("USER alice");
    for _ in 0..2 {
        assert_eq!(pop.command("PASS wrong"), "-ERR");
    }
    assert_eq!(
        pop.command("PASS wrong"),
        "-ERR too many authentication failures -- closing connection"
    );
    assert_eq!(pop.line(), "", "closed");
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    relay
        .relay
        .expect_log("warning: failed authentication of remote client using mechanism [plain] and plaintext secret for [alice] from line 1\n");
}

/// Commands pipelined in clear behind STLS are discarded, not run inside
/// TLS.
#[test]
fn plaintext_pipelined_behind_stls_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let cert = pki.path("server-all.pem");
    let auth = secrets(dir.path(), "server plain alice secret1\n");
    let relay = PopRelay::start(
        dir.path(),
        &auth,
        &["--server-tls", "--server-tls-certificate", &cert],
    );
    let script = r#"
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
f = s.makefile("rb")
f.readline()
s.sendall(b"STLS\r\nUSER alice\r\nPASS secret1\r\n")
print(f.readline())
t = ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(s, server_hostname="localhost")
g = t.makefile("rb")
t.sendall(b"STAT\r\n")
print(g.readline())
"#;
    let (code, out, err) = run(
        Command::new("python3")
            .args(["-c", script, &relay.pop_port.to_string()])
            .arg(pki.path("ca.pem")),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "b'+OK\\r\\n'\nb'-ERR\\r\\n'\n");
    assert!(!relay
        .relay
        .log_text()
        .contains("authentication of remote client"));
}

/// `--idle-timeout` bounds a whole command: a trickle does not extend it,
/// and the connection closes without deleting anything.
#[test]
fn the_idle_timeout_bounds_a_whole_command() {
    let dir = tempfile::tempdir().unwrap();
    let auth = secrets(dir.path(), "server plain alice secret1\n");
    let relay = PopRelay::start(dir.path(), &auth, &["--idle-timeout", "2"]);
    assert!(
        send_one(relay.relay.port, "a@example.com", &["b@example.com"], SMALL).starts_with("250")
    );
    let mut pop = relay.connect();
    pop.line();
    pop.command("USER alice");
    pop.command("PASS secret1");
    assert_eq!(pop.command("DELE 1"), "+OK");
    let start = Instant::now();
    let mut closed = false;
    for _ in 0..40 {
        if pop.stream.get_mut().write_all(b"N").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if relay
            .relay
            .log_text()
            .contains("pop connection closed: timeout")
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "{}", relay.relay.log_text());
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(relay.relay.files(".envelope").len(), 1, "nothing deleted");
}

/// `pop=` in `--interface` gives POP an address of its own.
#[test]
fn pop_prefixed_interfaces_listen_for_pop_only() {
    let dir = tempfile::tempdir().unwrap();
    let auth = secrets(dir.path(), "server plain alice secret1\n");
    let relay = PopRelay::start(dir.path(), &auth, &["--interface", "pop=127.0.0.2"]);
    let log = relay.relay.expect_log("pop server on 127.0.0.2:");
    assert!(!log.contains("smtp server on 127.0.0.2:"), "{log}");
    let stream = TcpStream::connect(("127.0.0.2", relay.pop_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut pop = Pop {
        stream: BufReader::new(stream),
    };
    assert!(pop.line().starts_with("+OK POP3 server ready <"));
    assert!(TcpStream::connect(("127.0.0.2", relay.relay.port)).is_err());
}
