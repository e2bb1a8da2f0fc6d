//! SMTP AUTH on our server, checked with real clients: swaks with PLAIN,
//! LOGIN and CRAM-MD5 against E-MailRelay secrets files (plain and md5),
//! trusted addresses, mechanisms offered only under TLS, the brute-force
//! cap, PAM with a real pam_unix service and account, and what never
//! reaches the log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{program, run, run_with_input, Client, Relay};
use crate::tls::Pki;

/// Writes a secrets file.
/// A secrets file, readable by its owner only, as one should be (others
/// reading it get a startup warning).
pub fn secrets(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

const SERVER_SECRETS: &str = "# emailrelay secrets file\n\
    server plain alice e+3Dmc2\n\
    server md5 carol x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw= # 'my password'\n";

/// swaks against the relay; returns (exit code, transcript).
fn swaks(port: u16, extra: &[&str]) -> (i32, String) {
    let (code, out, err) = run(
        Command::new(program("swaks"))
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args(["--from", "a@example.com", "--to", "b@example.org"])
            .args(extra),
        Duration::from_secs(30),
    );
    (code, format!("{out}{err}"))
}

fn envelopes(relay: &Relay) -> Vec<String> {
    relay
        .files(".envelope")
        .iter()
        .map(|n| std::fs::read_to_string(relay.spool.join(n)).unwrap())
        .collect()
}

#[test]
fn swaks_authenticates_with_plain_login_and_cram_md5() {
    let dir = tempfile::tempdir().unwrap();
    let file = secrets(dir.path(), "server.auth", SERVER_SECRETS);
    let relay = Relay::start(dir.path(), &["--server-auth", file.to_str().unwrap()]);
    for mechanism in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let (code, out) = swaks(
            relay.port,
            &[
                "--auth",
                mechanism,
                "--auth-user",
                "alice",
                "--auth-password",
                "e=mc2",
            ],
        );
        assert_eq!(code, 0, "{mechanism}: {out}");
        // E-MailRelay's order: AUTH first after the greeting, CRAM-MD5 first.
        assert!(out.contains("<-  250-AUTH CRAM-MD5 PLAIN LOGIN"), "{out}");
        assert!(out.contains("<-  235 authentication successful"), "{out}");
    }
    // An md5 secret from emailrelay-passwd serves CRAM-MD5, and only that.
    let md5 = ["--auth-user", "carol", "--auth-password", "my password"];
    let (code, out) = swaks(relay.port, &[&["--auth", "CRAM-MD5"][..], &md5].concat());
    assert_eq!(code, 0, "{out}");
    let (code, out) = swaks(relay.port, &[&["--auth", "PLAIN"][..], &md5].concat());
    assert_ne!(code, 0);
    assert!(out.contains("<** 535 authentication failed"), "{out}");
    let (code, out) = swaks(relay.port, &[]);
    assert_ne!(code, 0);
    assert!(out.contains("<** 530 authentication required"), "{out}");

    let envelopes = envelopes(&relay);
    assert_eq!(envelopes.len(), 4);
    let named = |name: &str| {
        let line = format!("X-MailRelay-Authentication: {name}\r\n");
        envelopes.iter().filter(|e| e.contains(&line)).count()
    };
    assert_eq!((named("alice"), named("carol")), (3, 1));
    let content = std::fs::read_to_string(relay.spool.join(&relay.files(".content")[0])).unwrap();
    assert!(content.contains(" with ESMTPA ;"), "{content}");

    let log = relay.expect_log(
        "info: successful authentication of remote client using mechanism [cram-md5] and md5 secret for [carol] from line 3\n",
    );
    assert!(
        log.contains("rx<<: \"AUTH PLAIN [response not logged]\""),
        "{log}"
    );
    assert!(log.contains("rx<<: \"AUTH LOGIN\""), "{log}");
    assert!(
        log.contains("rx<<: [authentication response not logged]"),
        "{log}"
    );
    // Neither the passwords nor their base64 (alone or in a PLAIN response).
    for secret in [
        "e=mc2",
        "ZT1tYzI=",
        "AGFsaWNlAGU9bWMy",
        "my password",
        "bXkgcGFzc3dvcmQ=",
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn repeated_failures_are_slowed_then_disconnected_with_421() {
    let dir = tempfile::tempdir().unwrap();
    let file = secrets(dir.path(), "server.auth", SERVER_SECRETS);
    let relay = Relay::start(dir.path(), &["--server-auth", file.to_str().unwrap()]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO me");
    let started = Instant::now();
    // "\0alice\0wrong"
    let wrong = "AUTH PLAIN AGFsaWNlAHdyb25n";
    assert_eq!(c.command(wrong), "535 authentication failed");
    assert_eq!(c.command(wrong), "535 authentication failed");
    assert_eq!(
        c.command(wrong),
        "421 relay.example.com too many authentication failures -- closing connection"
    );
    // Each failure is answered after a pause (a lower bound, never flaky).
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(c.reply(), "", "the connection should be closed");
    relay.expect_log("smtp authentication: too many failures from 127.0.0.1:");
    relay.expect_log(
        "warning: failed authentication of remote client using mechanism [plain] and plaintext secret for [alice] from line 2\n",
    );
}

#[test]
fn trusted_addresses_need_no_auth_and_reach_the_verifier_with_their_keyword() {
    let dir = tempfile::tempdir().unwrap();
    let file = secrets(
        dir.path(),
        "server.auth",
        "server none 127.0.0.0/8 loopback4\nserver none ::1 loopback6\nserver plain alice e+3Dmc2\n",
    );
    let record = dir.path().join("verifier.args");
    let verifier = dir.path().join("verifier");
    std::fs::write(
        &verifier,
        format!(
            "#!/bin/sh\necho \"$5|$6\" >> {}\necho\necho \"$1\"\nexit 1\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &verifier,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-auth",
            file.to_str().unwrap(),
            "--address-verifier",
            verifier.to_str().unwrap(),
            "--interface",
            "::1",
        ],
    );
    let (code, out) = swaks(relay.port, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = run(
        Command::new(program("swaks"))
            .args(["--server", "::1", "--port", &relay.port.to_string()])
            .args(["--from", "a@example.com", "--to", "c@example.org"]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    // Authenticated, from a trusted address: the AUTH identity wins.
    let (code, out) = swaks(
        relay.port,
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "e=mc2",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        // E-MailRelay 2.6.1 passes the mechanism in lower case.
        "none|loopback4\nnone|loopback6\nplain|alice\n"
    );
    // As 2.6.1 writes them: the trusted keyword (of a range, and of a
    // single address) where the client did not authenticate (issue 24).
    let mut recorded: Vec<String> = envelopes(&relay)
        .iter()
        .map(|e| {
            let line = e
                .lines()
                .find(|l| l.starts_with("X-MailRelay-Authentication:"))
                .unwrap();
            let to = e
                .lines()
                .find(|l| l.starts_with("X-MailRelay-To-Remote:"))
                .unwrap();
            format!("{to} {line}")
        })
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            "X-MailRelay-To-Remote: b@example.org X-MailRelay-Authentication: alice",
            "X-MailRelay-To-Remote: b@example.org X-MailRelay-Authentication: loopback4",
            "X-MailRelay-To-Remote: c@example.org X-MailRelay-Authentication: loopback6",
        ]
    );
}

#[test]
fn an_untrusted_address_must_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let file = secrets(
        dir.path(),
        "server.auth",
        "server none 192.168.0.* lan\nserver none fc00::/7 ula\nserver plain alice e+3Dmc2\n",
    );
    let relay = Relay::start(dir.path(), &["--server-auth", file.to_str().unwrap()]);
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO me");
    assert_eq!(
        c.command("MAIL FROM:<a@b.c>"),
        "530 authentication required"
    );
}

/// Issue 24: `--server-auth` with a secrets file of only `client` lines
/// failed open (a warning, then mail from anyone). As 2.6.1: no AUTH in
/// clear (504 with its warning), 530 to MAIL and VRFY, PLAIN under TLS
/// only, which no one can pass; POP starts and refuses every login.
/// Python's smtplib and poplib, the exact replies and log lines.
#[test]
fn a_secrets_file_without_server_lines_lets_nobody_relay() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let file = secrets(dir.path(), "client.auth", "client plain alice secret\n");
    let pop_port = crate::harness::free_port().to_string();
    let file = file.to_str().unwrap();
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-auth",
            file,
            "--server-tls",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
            "--pop",
            "--pop-port",
            &pop_port,
            "--pop-auth",
            file,
        ],
    );
    let script = r#"
import smtplib, poplib, ssl, sys
port, pop_port = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
print(s.ehlo("client.example")[1].decode().split("\n")[1:])
print(s.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA=="))
print(s.docmd("MAIL", "FROM:<a@example.com>"))
print(s.docmd("RCPT", "TO:<b@example.com>"))
print(s.docmd("VRFY", "b@example.com"))
print(s.starttls(context=ctx)[0])
print(s.ehlo("client.example")[1].decode().split("\n")[1:])
print(s.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA=="))
print(s.docmd("MAIL", "FROM:<a@example.com>"))
s.quit()
p = poplib.POP3("127.0.0.1", pop_port, timeout=20)
print(sorted(p.capa()))
for line in ("USER alice", "PASS secret", "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "STAT"):
    try:
        print(p._shortcmd(line))
    except poplib.error_proto as e:
        print(e)
print(p.quit())
"#;
    let (code, out, err) = run(
        Command::new("python3").args(["-c", script, &relay.port.to_string(), &pop_port]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "['STARTTLS', 'VRFY', 'PIPELINING', '8BITMIME']",
            "(504, b'unsupported authentication mechanism: use starttls')",
            "(530, b'authentication required')",
            "(503, b'command out of sequence -- use RSET to resynchronise')",
            "(530, b'authentication required')",
            "220",
            "['AUTH PLAIN', 'VRFY', 'PIPELINING', '8BITMIME']",
            "(535, b'authentication failed')",
            "(530, b'authentication required')",
            "['CAPA', 'STLS', 'TOP', 'UIDL']",
            "b'-ERR no SASL PLAIN mechanism to do USER/PASS authentication'",
            "b'-ERR'",
            "b'-ERR must use STLS before authentication'",
            "b'-ERR'",
            "b'+OK signing off'",
        ],
        "{err}"
    );
    let log = relay.expect_log("emailrelay: info: pop connection closed");
    // 2.6.1's lines, in 2.6.1's order (its log, recorded the same way).
    let wanted = [
        "emailrelay: info: rx<<: \"AUTH PLAIN [response not logged]\"\n\
         emailrelay: warning: rejecting authentication attempt without encryption\n\
         emailrelay: info: tx>>: \"504 unsupported authentication mechanism: use starttls\"\n\
         emailrelay: info: rx<<: \"MAIL FROM:<a@example.com>\"\n\
         emailrelay: info: server authentication enabled but not a trusted address: 127.0.0.1\n\
         emailrelay: info: tx>>: \"530 authentication required\"\n",
        "emailrelay: info: rx<<: \"AUTH PLAIN [response not logged]\"\n\
         emailrelay: warning: failed authentication of remote client using mechanism [plain] and missing secret for [alice]\n\
         emailrelay: info: tx>>: \"535 authentication failed\"\n",
        "emailrelay: info: rx<<: \"USER alice\"\n\
         emailrelay: info: tx>>: \"-ERR no SASL PLAIN mechanism to do USER/PASS authentication\"\n",
    ];
    for text in wanted {
        assert!(log.contains(text), "no\n{text}\nin\n{log}");
    }
    assert!(!log.contains("warning: secrets file"), "{log}");
    assert!(relay.files(".envelope").is_empty());
    assert!(relay.files(".content").is_empty());
}

#[test]
fn mechanisms_can_be_offered_only_under_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let file = secrets(dir.path(), "server.auth", SERVER_SECRETS);
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-auth",
            file.to_str().unwrap(),
            "--server-auth-config",
            "m:;a:plain",
            "--server-tls",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
        ],
    );
    let alice = ["--auth-user", "alice", "--auth-password", "e=mc2"];
    let (code, out) = swaks(relay.port, &[&["--auth", "PLAIN"][..], &alice].concat());
    assert_ne!(code, 0);
    assert!(!out.contains("250-AUTH"), "AUTH offered in clear: {out}");
    let (code, out) = swaks(
        relay.port,
        &[&["--tls", "--auth", "PLAIN"][..], &alice].concat(),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<~  250-AUTH PLAIN"), "{out}");
    assert!(out.contains("<~  235 authentication successful"), "{out}");
    let mut c = Client::connect(relay.port);
    c.reply();
    c.command("EHLO me");
    assert_eq!(
        c.command("AUTH PLAIN AGFsaWNlAGU9bWMy"),
        "504 unsupported authentication mechanism: use starttls"
    );
    // E-MailRelay 2.6.1: nothing is offered in clear, whatever is asked for.
    assert_eq!(
        c.command("AUTH LOGIN"),
        "504 unsupported authentication mechanism: use starttls"
    );
}

#[test]
fn malformed_secrets_stop_the_start_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = secrets(
        dir.path(),
        "bad.auth",
        "server plain alice e+3Dmc2\nserver md5 bob notahash\n",
    );
    let (code, _, err) = run(
        Command::new(crate::harness::RELAY).args([
            "--no-daemon",
            "--port",
            "0",
            "--spool-dir",
            dir.path().to_str().unwrap(),
            "--server-auth",
            file.to_str().unwrap(),
        ]),
        Duration::from_secs(10),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "secrets file {} line 2: the md5 password is not a 44-character hash from emailrelay-passwd",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn emailrelay_passwd_prints_e_mailrelays_hash() {
    let passwd = env!("CARGO_BIN_EXE_emailrelay-passwd");
    // The hashes in E-MailRelay's reference guide for these passwords.
    for (password, hash) in [
        (
            "password123\n",
            "9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=\n",
        ),
        ("e=mc2\n", "v1HOpuLIbbvgoJjhueeoqwfvtIp2C+gMA285ke+xxow=\n"),
    ] {
        let (code, out, err) = run_with_input(
            &mut Command::new(passwd),
            Some(password.as_bytes()),
            Duration::from_secs(10),
        );
        assert_eq!((code, out.as_str()), (0, hash), "{err}");
    }
}

/// A PAM service `emailrelay` using pam_unix, and a system account with a
/// known password, both removed on drop.
struct PamAccount {
    user: &'static str,
    created_service: bool,
}

const PAM_SERVICE: &str = "/etc/pam.d/emailrelay";
const PAM_MARK: &str = "# written by the emailrelay-rs tests\n";

impl PamAccount {
    fn create(user: &'static str, password: &str) -> PamAccount {
        let existing = std::fs::read_to_string(PAM_SERVICE).ok();
        let created_service = existing.is_none();
        match existing {
            None => std::fs::write(
                PAM_SERVICE,
                format!("{PAM_MARK}auth required pam_unix.so\naccount required pam_unix.so\n"),
            )
            .expect("writing /etc/pam.d/emailrelay needs root"),
            Some(text) => assert!(
                text.starts_with(PAM_MARK),
                "{PAM_SERVICE} exists and is not ours"
            ),
        }
        let _ = run(
            Command::new(program("userdel")).arg(user),
            Duration::from_secs(10),
        );
        let (code, _, err) = run(
            Command::new(program("useradd")).args([
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ]),
            Duration::from_secs(10),
        );
        assert_eq!(code, 0, "useradd: {err}");
        let (code, _, err) = run_with_input(
            &mut Command::new(program("chpasswd")),
            Some(format!("{user}:{password}\n").as_bytes()),
            Duration::from_secs(10),
        );
        assert_eq!(code, 0, "chpasswd: {err}");
        PamAccount {
            user,
            created_service,
        }
    }
}

impl Drop for PamAccount {
    fn drop(&mut self) {
        let _ = run(
            Command::new(program("userdel")).arg(self.user),
            Duration::from_secs(10),
        );
        if self.created_service {
            let _ = std::fs::remove_file(PAM_SERVICE);
        }
    }
}

#[test]
fn pam_authenticates_system_accounts_through_the_emailrelay_service() {
    let dir = tempfile::tempdir().unwrap();
    let _account = PamAccount::create("erpamtest", "S3cret pam pw");
    let relay = Relay::start(dir.path(), &["--server-auth", "pam:"]);
    let user = ["--auth-user", "erpamtest"];
    for mechanism in ["PLAIN", "LOGIN"] {
        let (code, out) = swaks(
            relay.port,
            &[
                &["--auth", mechanism, "--auth-password", "S3cret pam pw"][..],
                &user,
            ]
            .concat(),
        );
        assert_eq!(code, 0, "{mechanism}: {out}");
        assert!(out.contains("<-  250-AUTH PLAIN LOGIN"), "{out}");
        assert!(out.contains("<-  235 authentication successful"), "{out}");
    }
    let (code, out) = swaks(
        relay.port,
        &[&["--auth", "PLAIN", "--auth-password", "wrong"][..], &user].concat(),
    );
    assert_ne!(code, 0);
    assert!(out.contains("<** 535 authentication failed"), "{out}");
    let envelopes = envelopes(&relay);
    assert_eq!(envelopes.len(), 2);
    assert!(envelopes
        .iter()
        .all(|e| e.contains("X-MailRelay-Authentication: erpamtest\r\n")));
    relay.expect_log(
        "info: successful authentication of remote client using mechanism [login] and pam service [emailrelay] for [erpamtest]\n",
    );
}

#[test]
fn cram_md5_challenges_are_random_and_never_repeat() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let file = secrets(dir.path(), "server.auth", SERVER_SECRETS);
    let relay = Relay::start(dir.path(), &["--server-auth", file.to_str().unwrap()]);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(relay.port);
        c.reply();
        c.command("EHLO me");
        let reply = c.command("AUTH CRAM-MD5");
        let text = reply
            .strip_prefix("334 ")
            .unwrap_or_else(|| panic!("{reply}"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let challenge = String::from_utf8(decoded).unwrap();
        // <128 random bits in decimal.unix-time@domain>, E-MailRelay's shape
        let inner = challenge
            .strip_prefix('<')
            .and_then(|c| c.strip_suffix("@relay.example.com>"))
            .unwrap_or_else(|| panic!("{challenge}"));
        let (random, time) = inner.split_once('.').unwrap();
        assert!(
            random.len() >= 20 && random.bytes().all(|b| b.is_ascii_digit()),
            "{challenge}"
        );
        assert!(time.parse::<u64>().is_ok(), "{challenge}");
        assert!(!seen.contains(&random.to_string()), "repeated: {challenge}");
        seen.push(random.to_string());
        assert_eq!(c.command("*"), "501 authentication cancelled");
    }
}
