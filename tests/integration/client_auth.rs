//! SMTP AUTH on our client: relay to relay with E-MailRelay secrets and
//! account selection by envelope field; to Postfix authenticating through
//! Dovecot SASL; failures (5xx fails the message, 4xx keeps it); and OAuth
//! 2.0: a token endpoint served here on loopback (refresh-token, client
//! credentials and device-code grants) and an upstream that accepts only
//! the token the endpoint issued last.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::secrets;
use crate::harness::{
    program, run, spool_files, submit_to, wait_until, Postfix, Proc, Relay, RELAY,
};

/// Sets a header field of every envelope in `spool` whose recipient
/// contains `to`.
fn set_field(spool: &Path, to: &str, field: &str, value: &str) {
    for name in spool_files(spool, ".envelope") {
        let path = spool.join(&name);
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains(to) {
            let prefix = format!("X-MailRelay-{field}:");
            let edited: String = text
                .split_inclusive("\r\n")
                .map(|l| {
                    if l.starts_with(&prefix) {
                        format!("{prefix} {value}\r\n")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            std::fs::write(&path, edited).unwrap();
        }
    }
}

/// Forwards `spool` once with `--as-client` and these options; returns the
/// log. The exit code must be 0 if every message went, 1 if any failed.
fn forward_once(dir: &Path, spool: &Path, target: &str, extra: &[&str], code: i32) -> String {
    let log = dir.join("client.log");
    let (exit, out, err) = run(
        Command::new(RELAY)
            .args(["--as-client", target, "--spool-dir"])
            .arg(spool)
            .args([
                "--log-file",
                log.to_str().unwrap(),
                "--verbose",
                "--user",
                "root",
            ])
            .args(extra),
        Duration::from_secs(60),
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(exit, code, "{out}{err}{log}");
    log
}

fn read(spool: &Path, name: &str) -> String {
    std::fs::read_to_string(spool.join(name)).unwrap()
}

#[test]
fn relay_to_relay_with_accounts_chosen_by_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let upstream_secrets = secrets(
        dir.path(),
        "upstream.auth",
        "server plain bob password123\nserver plain alice e+3Dmc2\n",
    );
    let upstream = Relay::start(
        dir.path(),
        &["--server-auth", upstream_secrets.to_str().unwrap()],
    );
    let client_secrets = secrets(
        dir.path(),
        "client.auth",
        "client md5 bob 9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=\n\
         client plain:b YWxpY2U= ZT1tYzI= use_alice\n\
         client plain:b = = noauth\n",
    );
    let spool = dir.path().join("outgoing");
    std::fs::create_dir_all(&spool).unwrap();
    for to in [
        "default@example.org",
        "alice@example.org",
        "none@example.org",
        "nosuch@example.org",
        "override@example.org",
        "anonymous@example.org",
    ] {
        submit_to(&spool, to);
    }
    // MailFromAuthOut: a name sent as given, and <> for none.
    set_field(&spool, "override@", "MailFromAuthOut", "carol+2Bx");
    set_field(&spool, "anonymous@", "MailFromAuthOut", "<>");
    set_field(&spool, "alice@", "ClientAccountSelector", "use_alice");
    set_field(&spool, "none@", "ClientAccountSelector", "noauth");
    set_field(&spool, "nosuch@", "ClientAccountSelector", "nosuch");
    let log = forward_once(
        dir.path(),
        &spool,
        &format!("127.0.0.1:{}", upstream.port),
        &["--client-auth", client_secrets.to_str().unwrap()],
        1,
    );

    // Upstream: bob by CRAM-MD5 from the stored hash, alice by CRAM-MD5 too
    // (a plain password prefers the challenge-response mechanism), each
    // passed on as the MAIL AUTH= identity.
    let stored: Vec<String> = upstream
        .files(".envelope")
        .iter()
        .map(|n| read(&upstream.spool, n))
        .collect();
    assert_eq!(stored.len(), 4, "{log}");
    for (to, name, auth_in) in [
        ("default@", "bob", "bob"),
        ("alice@", "alice", "alice"),
        ("override@", "bob", "carol+2Bx"),
        ("anonymous@", "bob", "<>"),
    ] {
        let envelope = stored.iter().find(|e| e.contains(to)).unwrap();
        assert!(
            envelope.contains(&format!("X-MailRelay-Authentication: {name}\r\n")),
            "{envelope}"
        );
        assert!(
            envelope.contains(&format!("X-MailRelay-MailFromAuthIn: {auth_in}\r\n")),
            "{envelope}"
        );
    }
    assert!(log.contains("tx>>: \"AUTH CRAM-MD5\""), "{log}");
    assert!(
        log.contains("smtp client authenticated as \"bob\""),
        "{log}"
    );
    assert!(
        log.contains("smtp client authenticated as \"alice\""),
        "{log}"
    );
    assert!(
        !log.contains("password123") && !log.contains("e=mc2"),
        "{log}"
    );

    // No authentication for "noauth": the upstream refuses; an unknown
    // selector fails before connecting.
    let bad: Vec<String> = spool_files(&spool, ".envelope.bad")
        .iter()
        .map(|n| read(&spool, n))
        .collect();
    assert_eq!(bad.len(), 2, "{log}");
    let none = bad.iter().find(|e| e.contains("none@")).unwrap();
    assert!(
        none.contains("X-MailRelay-Reason: authentication required\r\n"),
        "{none}"
    );
    assert!(none.contains("X-MailRelay-ReasonCode: 530\r\n"), "{none}");
    let nosuch = bad.iter().find(|e| e.contains("nosuch@")).unwrap();
    assert!(
        nosuch.contains("X-MailRelay-Reason: no client account for selector \"nosuch\"\r\n"),
        "{nosuch}"
    );
}

#[test]
fn a_wrong_password_fails_the_message_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let upstream_secrets = secrets(
        dir.path(),
        "upstream.auth",
        "server plain bob password123\n",
    );
    let upstream = Relay::start(
        dir.path(),
        &["--server-auth", upstream_secrets.to_str().unwrap()],
    );
    let spool = dir.path().join("outgoing");
    std::fs::create_dir_all(&spool).unwrap();
    submit_to(&spool, "x@example.org");
    // The command-line form, base64 of "bob" and "wrong", and PLAIN forced.
    forward_once(
        dir.path(),
        &spool,
        &format!("127.0.0.1:{}", upstream.port),
        &[
            "--client-auth",
            "plain:Ym9i:d3Jvbmc=",
            "--client-auth-config",
            "m:plain",
        ],
        1,
    );
    let bad = spool_files(&spool, ".envelope.bad");
    assert_eq!(bad.len(), 1);
    let envelope = read(&spool, &bad[0]);
    assert!(
        envelope.contains(
            "X-MailRelay-Reason: authentication failed (PLAIN): authentication failed\r\n"
        ),
        "{envelope}"
    );
    assert!(
        envelope.contains("X-MailRelay-ReasonCode: 535\r\n"),
        "{envelope}"
    );
}

/// Dovecot as Postfix's SASL service, with one passwd-file account.
struct Dovecot {
    _proc: Proc,
    socket: String,
}

impl Dovecot {
    fn start(dir: &Path, user: &str, password: &str) -> Dovecot {
        let base = dir.join("dovecot");
        std::fs::create_dir_all(&base).unwrap();
        let b = base.display();
        std::fs::write(base.join("users"), format!("{user}:{{PLAIN}}{password}\n")).unwrap();
        let socket = format!("{b}/auth-postfix");
        std::fs::write(
            base.join("dovecot.conf"),
            format!(
                "base_dir = {b}/run\nstate_dir = {b}/state\nlog_path = {b}/dovecot.log\n\
                 protocols =\nssl = no\ndisable_plaintext_auth = no\n\
                 auth_mechanisms = plain login cram-md5\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {b}/users\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}}\n\
                 service auth {{\n  unix_listener {socket} {{\n    mode = 0666\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let proc = Proc::spawn(
            Command::new(program("dovecot"))
                .args(["-F", "-c"])
                .arg(base.join("dovecot.conf")),
        );
        assert!(
            wait_until(Duration::from_secs(20), || Path::new(&socket).exists()),
            "dovecot did not start: {}",
            std::fs::read_to_string(base.join("dovecot.log")).unwrap_or_default()
        );
        Dovecot {
            _proc: proc,
            socket,
        }
    }
}

#[test]
fn postfix_with_dovecot_sasl_accepts_our_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(dir.path(), "bob", "password123");
    let postfix = Postfix::start_with(
        dir.path(),
        &format!(
            "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = {}\n\
             smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n",
            dovecot.socket
        ),
        "",
    );
    let spool = dir.path().join("outgoing");
    std::fs::create_dir_all(&spool).unwrap();
    submit_to(&spool, "one@example.org");
    // Without authentication Postfix refuses the recipient.
    forward_once(dir.path(), &spool, &postfix.address(), &[], 1);
    let bad = spool_files(&spool, ".envelope.bad");
    assert_eq!(bad.len(), 1);
    let envelope = read(&spool, &bad[0]);
    assert!(
        envelope.contains("X-MailRelay-ReasonCode: 550\r\n"),
        "{envelope}"
    );

    submit_to(&spool, "two@example.org");
    let file = secrets(dir.path(), "client.auth", "client plain bob password123\n");
    let log = forward_once(
        dir.path(),
        &spool,
        &postfix.address(),
        &["--client-auth", file.to_str().unwrap()],
        0,
    );
    assert!(
        log.contains("smtp client authenticated as \"bob\""),
        "{log}"
    );
    assert!(wait_until(Duration::from_secs(20), || postfix
        .delivered()
        .len()
        == 1));
    assert!(postfix.delivered()[0].contains("two@example.org"));
    let postfix_log = postfix.log_text();
    assert!(
        postfix_log.contains("sasl_method=CRAM-MD5, sasl_username=bob"),
        "{postfix_log}"
    );
}

// ---- a token endpoint and an XOAUTH2 upstream, served here ----

/// A token endpoint on loopback: issues `at-N`/`rt-N` pairs, rotating the
/// refresh token, and checks every grant's parameters.
struct TokenServer {
    port: u16,
    /// The access token issued last: the only one the upstream accepts.
    current: Arc<Mutex<String>>,
    issued: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    /// Bodies of the requests received.
    requests: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    fn start(lifetime: u64) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = TokenServer {
            port: listener.local_addr().unwrap().port(),
            current: Arc::new(Mutex::new(String::new())),
            issued: Arc::new(AtomicUsize::new(0)),
            failing: Arc::new(AtomicBool::new(false)),
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        let (current, issued, failing, requests) = (
            Arc::clone(&server.current),
            Arc::clone(&server.issued),
            Arc::clone(&server.failing),
            Arc::clone(&server.requests),
        );
        std::thread::spawn(move || {
            let pending = AtomicUsize::new(0);
            for stream in listener.incoming().flatten() {
                let (path, body) = read_http(&stream);
                requests.lock().unwrap().push(body.clone());
                let form = |key: &str| form_value(&body, key);
                let last_refresh = format!("rt-{}", issued.load(Ordering::SeqCst));
                let (status, json) = if failing.load(Ordering::SeqCst) {
                    (400, r#"{"error":"invalid_grant","error_description":"AADSTS70008: the refresh token has expired"}"#.to_string())
                } else if path == "/devicecode" {
                    (200, r#"{"device_code":"dev-1","user_code":"WDJB-MJHT","verification_uri":"http://127.0.0.1/device","expires_in":30,"interval":1}"#.to_string())
                } else if form("grant_type").contains("device_code")
                    && pending.fetch_add(1, Ordering::SeqCst) == 0
                {
                    (400, r#"{"error":"authorization_pending"}"#.to_string())
                } else {
                    let valid = match form("grant_type").as_str() {
                        "refresh_token" => form("refresh_token") == last_refresh,
                        "client_credentials" => form("client_secret") == "app-secret",
                        grant => grant.contains("device_code") && form("device_code") == "dev-1",
                    };
                    if valid && form("client_id") == "cid" {
                        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                        *current.lock().unwrap() = format!("at-{n}");
                        (
                            200,
                            format!(
                                r#"{{"token_type":"Bearer","access_token":"at-{n}","expires_in":{lifetime},"refresh_token":"rt-{n}"}}"#
                            ),
                        )
                    } else {
                        (400, r#"{"error":"invalid_request"}"#.to_string())
                    }
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = (&stream).write_all(reply.as_bytes());
            }
        });
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn read_http(stream: &TcpStream) -> (String, String) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    (path, String::from_utf8_lossy(&body).into_owned())
}

/// A form field, percent-decoded.
fn form_value(body: &str, key: &str) -> String {
    let raw = body
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or("");
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
            out.push(u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An upstream that offers only XOAUTH2 and accepts `user` with the token
/// `valid()` returns at that moment; counts the messages it takes.
fn xoauth2_upstream(
    user: &'static str,
    valid: Arc<dyn Fn() -> String + Send + Sync>,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&taken);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut out = &stream;
            let mut reader = BufReader::new(&stream);
            let _ = out.write_all(b"220 upstream ESMTP\r\n");
            let mut authenticated = false;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                let command = line.trim_end().to_string();
                line.clear();
                let reply = if command.starts_with("EHLO") {
                    "250-upstream\r\n250 AUTH XOAUTH2\r\n".to_string()
                } else if let Some(response) = command.strip_prefix("AUTH XOAUTH2 ") {
                    use base64::Engine;
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(response)
                        .unwrap_or_default();
                    let expected = format!("user={user}\x01auth=Bearer {}\x01\x01", valid());
                    if decoded == expected.as_bytes() {
                        authenticated = true;
                        "235 2.7.0 Accepted\r\n".to_string()
                    } else {
                        let _ = out.write_all(b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n");
                        let _ = reader.read_line(&mut line);
                        line.clear();
                        "535 5.7.8 Username and Password not accepted\r\n".to_string()
                    }
                } else if command.starts_with("MAIL") && !authenticated {
                    "530 5.7.0 Authentication Required\r\n".to_string()
                } else if command == "DATA" {
                    let _ = out.write_all(b"354 go\r\n");
                    let mut text = String::new();
                    while reader.read_line(&mut text).unwrap_or(0) > 0
                        && !text.ends_with("\r\n.\r\n")
                    {}
                    count.fetch_add(1, Ordering::SeqCst);
                    "250 2.0.0 OK\r\n".to_string()
                } else if command == "QUIT" {
                    let _ = out.write_all(b"221 bye\r\n");
                    break;
                } else {
                    "250 OK\r\n".to_string()
                };
                let _ = out.write_all(reply.as_bytes());
            }
        }
    });
    (port, taken)
}

#[test]
fn oauth2_tokens_are_renewed_ahead_of_expiry_and_a_failed_renewal_keeps_mail() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(4);
    let account = dir.path().join("bob.oauth2");
    std::fs::write(
        &account,
        format!(
            "# bob at the test provider\ntoken-url = {}\nclient-id = cid\nrefresh-token = rt-0\n",
            tokens.url("/token")
        ),
    )
    .unwrap();
    let file = secrets(
        dir.path(),
        "client.auth",
        "client oauth2 bob@example.com bob.oauth2\n",
    );
    let current = Arc::clone(&tokens.current);
    let (upstream, taken) = xoauth2_upstream(
        "bob@example.com",
        Arc::new(move || current.lock().unwrap().clone()),
    );
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            &format!("127.0.0.1:{upstream}"),
            "--forward-on-disconnect",
            "--poll",
            "1",
            "--client-auth",
            file.to_str().unwrap(),
        ],
    );
    crate::harness::send_one(
        relay.port,
        "a@example.com",
        &["x@example.org"],
        "Subject: 1\r\n\r\nhi\r\n",
    );
    assert!(
        wait_until(Duration::from_secs(20), || taken.load(Ordering::SeqCst)
            == 1),
        "{}",
        relay.log_text()
    );
    // With a 4-second lifetime the relay renews at 3.2 s, unprompted,
    // rotating the refresh token into the account file each time.
    assert!(wait_until(Duration::from_secs(20), || tokens
        .issued
        .load(Ordering::SeqCst)
        >= 3));
    let issued = tokens.issued.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&account)
            .unwrap()
            .ends_with(&format!("refresh-token = rt-{issued}\n"))),
        "{}",
        std::fs::read_to_string(&account).unwrap()
    );
    assert!(std::fs::read_to_string(&account)
        .unwrap()
        .starts_with("# bob at the test provider\n"));
    assert_eq!(
        std::fs::metadata(&account).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(tokens
        .requests
        .lock()
        .unwrap()
        .iter()
        .all(|b| b.contains("grant_type=refresh_token")));

    // The provider stops renewing: once the token expires, mail waits in
    // the spool and the log has one error, however many polls go by.
    tokens.failing.store(true, Ordering::SeqCst);
    relay.expect_log("oauth2: cannot get an access token for bob@example.com");
    std::thread::sleep(Duration::from_secs(5));
    crate::harness::send_one(
        relay.port,
        "a@example.com",
        &["y@example.org"],
        "Subject: 2\r\n\r\nhi\r\n",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(taken.load(Ordering::SeqCst), 1);
    assert_eq!(relay.files(".envelope").len(), 1);
    assert!(relay.files(".bad").is_empty());
    let log = relay.log_text();
    let errors = log
        .matches("error: oauth2: cannot get an access token")
        .count();
    assert_eq!(errors, 1, "{log}");
    assert!(log.contains("HTTP 400: invalid_grant: AADSTS70008: the refresh token has expired: mail for this account stays in the spool"), "{log}");
    assert!(
        !log.contains("at-1") && !log.contains("rt-1"),
        "a token in the log:\n{log}"
    );
}

#[test]
fn oauth2_client_credentials_and_e_mailrelay_static_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(3600);
    std::fs::write(
        dir.path().join("app.oauth2"),
        format!(
            "token-url = {}\nclient-id = cid\nclient-secret = app-secret\ngrant = client_credentials\nscope = https://outlook.office365.com/.default\n",
            tokens.url("/token")
        ),
    )
    .unwrap();
    let file = secrets(
        dir.path(),
        "client.auth",
        "client oauth2 app@example.com app.oauth2\nclient oauth bob@example.com static+2Dtoken legacy\n",
    );
    let current = Arc::clone(&tokens.current);
    let valid = Arc::new(move || {
        let issued = current.lock().unwrap().clone();
        if issued.is_empty() {
            "static-token".to_string()
        } else {
            issued
        }
    });
    let spool = dir.path().join("outgoing");
    std::fs::create_dir_all(&spool).unwrap();
    // E-MailRelay's own oauth line: the token as given.
    let (upstream, taken) = xoauth2_upstream("bob@example.com", valid.clone());
    submit_to(&spool, "legacy@example.org");
    set_field(&spool, "legacy@", "ClientAccountSelector", "legacy");
    forward_once(
        dir.path(),
        &spool,
        &format!("127.0.0.1:{upstream}"),
        &["--client-auth", file.to_str().unwrap()],
        0,
    );
    assert_eq!(taken.load(Ordering::SeqCst), 1);
    // The renewing account, by the client-credentials grant.
    let (upstream, taken) = xoauth2_upstream("app@example.com", valid);
    submit_to(&spool, "app@example.org");
    let log = forward_once(
        dir.path(),
        &spool,
        &format!("127.0.0.1:{upstream}"),
        &["--client-auth", file.to_str().unwrap()],
        0,
    );
    assert_eq!(taken.load(Ordering::SeqCst), 1, "{log}");
    assert!(spool_files(&spool, ".envelope").is_empty());
    let request = tokens.requests.lock().unwrap()[0].clone();
    assert!(
        request.contains("grant_type=client_credentials"),
        "{request}"
    );
    assert!(
        request.contains("scope=https%3A%2F%2Foutlook.office365.com%2F.default"),
        "{request}"
    );
    assert!(
        log.contains("tx>>: \"AUTH XOAUTH2 [response not logged]\""),
        "{log}"
    );
}

#[test]
fn emailrelay_passwd_oauth_does_the_device_code_consent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(3600);
    let account = dir.path().join("carol.oauth2");
    std::fs::write(
        &account,
        format!(
            "token-url = {}\ndevice-url = {}\nclient-id = cid\nscope = https://mail.google.com/\n",
            tokens.url("/token"),
            tokens.url("/devicecode")
        ),
    )
    .unwrap();
    let (code, out, err) = run(
        Command::new(env!("CARGO_BIN_EXE_emailrelay-passwd"))
            .arg("--oauth")
            .arg(&account),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("open\n\n    http://127.0.0.1/device\n\nand enter the code WDJB-MJHT"),
        "{out}"
    );
    let text = std::fs::read_to_string(&account).unwrap();
    assert!(text.ends_with("refresh-token = rt-1\n"), "{text}");
    assert_eq!(
        std::fs::metadata(&account).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The first poll was answered "authorization_pending", the second with tokens.
    let requests = tokens.requests.lock().unwrap();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests[1].contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code")
    );
}
