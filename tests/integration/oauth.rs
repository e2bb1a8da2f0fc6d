//! OAuth 2.0 on our client: a token endpoint served here on loopback
//! (refresh-token, client-credentials and device-code grants, rotating
//! refresh tokens, failures) and an XOAUTH2 upstream that accepts only the
//! token the endpoint issued last.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::secrets;
use crate::client_auth::{forward_once, set_field};
use crate::harness::{run, spool_files, submit_to, wait_until, Relay};

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
pub(crate) fn xoauth2_upstream(
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

    // The token endpoint recovers: at the account's next renewal attempt
    // (30 s after the failure) the route resumes by itself and the
    // waiting message goes.
    tokens.failing.store(false, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(45), || taken.load(Ordering::SeqCst)
            == 2),
        "{}",
        relay.log_text()
    );
    let log = relay.expect_log(&format!("forwarding to 127.0.0.1:{upstream} resumed"));
    assert!(
        log.contains("oauth2: access token for bob@example.com renewed again"),
        "{log}"
    );
    assert!(relay.files(".envelope").is_empty());
    assert!(relay.files(".bad").is_empty());
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
    assert!(log.contains("tx>>: \"AUTH XOAUTH2 [not logged]\""), "{log}");
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
