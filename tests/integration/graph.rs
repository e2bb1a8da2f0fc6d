//! Microsoft Graph as a way out (issue 26), against a strict stand-in
//! (graph_standin.py: Python's http.server over TLS, with a CA openssl
//! makes here) for Microsoft's token endpoint, Graph's sendMail and
//! Google's token endpoint. The stand-in checks every request against
//! the contract and records each deviation; every test asserts there
//! were none. Messages come in with swaks or emailrelay-submit.
//!
//! The app certificate is made to expire in 20 days, so the relay's
//! 30-day expiry warning is checked on the way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client_auth::forward_once;
use crate::harness::{program, run, submit_to, wait_until, Proc, Relay};

pub(crate) const MAILBOX: &str = "printer@contoso.example";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const TENANT: &str = "contoso.example";

/// The test's CA, the stand-in's server certificate and the app's
/// certificate and key, made by openssl.
pub(crate) fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let (code, out, err) = run(
            Command::new(program("openssl")).current_dir(dir).args(args),
            Duration::from_secs(60),
        );
        assert_eq!(code, 0, "openssl {args:?}: {out}{err}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=Graph test CA",
        "-days",
        "2",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "app.key",
        "-out",
        "app.crt",
        "-subj",
        "/CN=emailrelay app",
        "-days",
        "20",
    ]);
}

/// A running stand-in and what it wrote.
pub(crate) struct StandIn {
    _proc: Proc,
    pub(crate) port: u16,
    dir: PathBuf,
}

impl StandIn {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> StandIn {
        // A directory of its own for each stand-in a test starts.
        let state = (1..)
            .map(|n| dir.join(format!("standin-{n}")))
            .find(|d| !d.exists())
            .unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/graph_standin.py");
        let proc = Proc::spawn(
            Command::new(program("python3"))
                .arg(script)
                .arg("--dir")
                .arg(&state)
                .arg("--cert")
                .arg(dir.join("server.crt"))
                .arg("--key")
                .arg(dir.join("server.key"))
                .arg("--app-cert")
                .arg(dir.join("app.crt"))
                .args([
                    "--tenant",
                    TENANT,
                    "--client-id",
                    CLIENT_ID,
                    "--mailbox",
                    MAILBOX,
                ])
                .args(extra),
        );
        let port_file = state.join("port");
        assert!(
            wait_until(Duration::from_secs(20), || port_file.exists()),
            "the stand-in did not start"
        );
        let port = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        StandIn {
            _proc: proc,
            port,
            dir: state,
        }
    }

    /// The decoded messages it accepted, in order.
    pub(crate) fn mail(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.join("mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("requests"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Fails the test if the relay broke the contract anywhere.
    pub(crate) fn assert_no_violations(&self) {
        let text = std::fs::read_to_string(self.dir.join("violations")).unwrap();
        assert!(
            text.is_empty(),
            "the stand-in saw contract violations:\n{text}"
        );
    }

    fn max_in_flight(&self) -> usize {
        std::fs::read_to_string(self.dir.join("max-in-flight"))
            .map(|t| t.trim().parse().unwrap())
            .unwrap_or(0)
    }

    pub(crate) fn statuses(&self) -> Vec<u64> {
        self.requests()
            .iter()
            .filter(|r| r["path"] == "sendMail")
            .map(|r| r["status"].as_u64().unwrap())
            .collect()
    }
}

/// The secrets file naming a Graph account file for the stand-in.
pub(crate) fn graph_account(dir: &Path, standin: &StandIn) -> PathBuf {
    let port = standin.port;
    let account = dir.join("printer.oauth2");
    std::fs::write(
        &account,
        format!(
            "# Graph with a certificate, the stand-in in Microsoft's place\n\
             provider = microsoft\n\
             tenant = {TENANT}\n\
             token-url = https://127.0.0.1:{port}/{TENANT}/oauth2/v2.0/token\n\
             client-id = {CLIENT_ID}\n\
             grant = client_credentials\n\
             client-certificate = app.crt\n\
             client-key = app.key\n\
             transport = graph\n\
             graph-url = https://127.0.0.1:{port}\n\
             mailbox = {MAILBOX}\n\
             ca-file = ca.crt\n"
        ),
    )
    .unwrap();
    secrets_file(
        dir,
        &format!("client oauth2 {MAILBOX} {}\n", account.display()),
    )
}

fn secrets_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("client.auth");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

/// swaks into the relay; asserts it was accepted.
fn swaks(port: u16, to: &[&str], extra: &[&str]) {
    let mut cmd = Command::new(program("swaks"));
    cmd.args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", "scanner@contoso.example"]);
    cmd.args(["--to", &to.join(",")]);
    let (code, out, err) = run(cmd.args(extra), Duration::from_secs(30));
    assert_eq!(code, 0, "swaks: {out}{err}");
}

/// The spool's content files, by name.
fn contents(spool: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = crate::harness::spool_files(spool, ".content")
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(spool.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Forwards the spool once through Graph (`--as-client`).
fn forward(dir: &Path, spool: &Path, secrets: &Path, extra: &[&str], code: i32) -> String {
    let mut args = vec!["--client-auth", secrets.to_str().unwrap()];
    args.extend_from_slice(extra);
    forward_once(dir, spool, "graph.microsoft.com:443", &args, code)
}

#[test]
fn swaks_mail_arrives_through_graph_byte_identical_with_a_bcc_for_hidden_recipients() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(dir.path(), &[]);
    let secrets = graph_account(dir.path(), &standin);
    let relay = Relay::start(dir.path(), &[]);
    swaks(
        relay.port,
        &["bob@contoso.example"],
        &["--header", "Subject: plain", "--body", "one\r\n.dot\r\n"],
    );
    // carol is only in the envelope: Graph would never hear of her
    // without the Bcc field.
    swaks(
        relay.port,
        &["bob@contoso.example", "Carol@Fabrikam.example"],
        &[
            "--header",
            "To: Bob <bob@contoso.example>",
            "--header",
            "Subject: hidden",
        ],
    );
    // The message has a Bcc field of its own: erin goes into it, not
    // into a second one.
    swaks(
        relay.port,
        &[
            "bob@contoso.example",
            "dave@contoso.example",
            "erin@contoso.example",
        ],
        &[
            "--header",
            "To: Bob <bob@contoso.example>",
            "--header",
            "Bcc: dave@contoso.example",
            "--header",
            "Subject: merged",
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || relay
        .files(".envelope")
        .len()
        == 3));
    drop(relay);
    let spooled = contents(&dir.path().join("spool"));
    assert_eq!(spooled.len(), 3);
    let log = forward(dir.path(), &dir.path().join("spool"), &secrets, &[], 0);
    let mail = standin.mail();
    assert_eq!(mail.len(), 3, "{log}");
    let merged = &spooled
        .iter()
        .find(|(_, c)| find(c, b"Subject: merged"))
        .unwrap()
        .1;
    let merged_text = String::from_utf8_lossy(merged).replace(
        "Bcc: dave@contoso.example\r\n",
        "Bcc: dave@contoso.example,\r\n erin@contoso.example\r\n",
    );
    assert!(
        mail.contains(&merged_text.into_bytes()),
        "the third message did not arrive with erin in its own Bcc field"
    );
    let plain = spooled
        .iter()
        .find(|(_, c)| find(c, b"Subject: plain"))
        .unwrap();
    let hidden = spooled
        .iter()
        .find(|(_, c)| find(c, b"Subject: hidden"))
        .unwrap();
    assert!(mail.contains(&plain.1), "the first message arrived changed");
    let mut with_bcc = b"Bcc: Carol@Fabrikam.example\r\n".to_vec();
    with_bcc.extend_from_slice(&hidden.1);
    assert!(
        mail.contains(&with_bcc),
        "the second message did not arrive as Bcc + spooled content:\n{}",
        String::from_utf8_lossy(&mail.concat())
    );
    assert!(crate::harness::spool_files(&dir.path().join("spool"), "").is_empty());
    assert_eq!(standin.statuses(), [202, 202, 202]);
    assert!(
        log.contains(&format!("graph connection to 127.0.0.1:{}", standin.port)),
        "{log}"
    );
    // One line per message, as SMTP's, with Graph's address.
    let line = format!("info: graph connection to 127.0.0.1:{}\n", standin.port);
    assert_eq!(log.matches(&line).count(), 3, "{log}");
    assert!(!log.contains("smtp connection"), "{log}");
    assert!(log.contains("deleting content"), "{log}");
    // The app certificate expires in 20 days: the 30-day warning.
    assert!(
        log.contains(&format!("warning: oauth2: the certificate of {MAILBOX} ("))
            && log.contains("expires in 20 day(s)"),
        "{log}"
    );
    standin.assert_no_violations();
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_400_fails_the_message_to_bad_with_graphs_code_and_the_rest_go() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(dir.path(), &[]);
    let secrets = graph_account(dir.path(), &standin);
    let relay = Relay::start(dir.path(), &[]);
    swaks(
        relay.port,
        &["bob@contoso.example"],
        &["--header", "Subject: BAD400"],
    );
    swaks(
        relay.port,
        &["bob@contoso.example"],
        &["--header", "Subject: good"],
    );
    assert!(wait_until(Duration::from_secs(10), || relay
        .files(".envelope")
        .len()
        == 2));
    drop(relay);
    let spool = dir.path().join("spool");
    let log = forward(dir.path(), &spool, &secrets, &[], 0);
    assert_eq!(standin.mail().len(), 1, "{log}");
    let bad = crate::harness::spool_files(&spool, ".envelope.bad");
    assert_eq!(bad.len(), 1, "{log}");
    let envelope = std::fs::read_to_string(spool.join(&bad[0])).unwrap();
    assert!(
        envelope.contains(
            "X-MailRelay-Reason: 5.0.0 graph: HTTP 400: ErrorInvalidRecipients: At least one recipient is not valid."
        ),
        "{envelope}"
    );
    assert!(
        envelope.contains("X-MailRelay-ReasonCode: 554"),
        "{envelope}"
    );
    assert!(log.contains("failing envelope"), "{log}");
    standin.assert_no_violations();
}

#[test]
fn a_429_storm_slows_the_route_to_retry_after_without_losing_or_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(dir.path(), &["--storm", "3", "--retry-after", "2"]);
    let secrets = graph_account(dir.path(), &standin);
    let relay = Relay::start(
        dir.path(),
        &graph_args(&secrets, &["--client-connections", "1"]),
    );
    let started = Instant::now();
    for n in 0..6 {
        let subject = format!("Subject: storm {n}");
        swaks(
            relay.port,
            &["bob@contoso.example"],
            &["--header", &subject],
        );
    }
    assert!(
        wait_until(Duration::from_secs(60), || standin.mail().len() >= 6
            && relay.files(".envelope").is_empty()),
        "{}",
        relay.log_text()
    );
    // No duplicates: six distinct subjects, each once.
    std::thread::sleep(Duration::from_secs(2));
    let mail = standin.mail();
    let mut subjects: Vec<String> = mail
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m);
            text.lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap()
                .to_string()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!((mail.len(), subjects.len()), (6, 6), "{subjects:?}");
    // After each 429 the route waited the 2 seconds Graph asked for.
    let sends: Vec<(f64, u64)> = standin
        .requests()
        .iter()
        .filter(|r| r["path"] == "sendMail")
        .map(|r| (r["t"].as_f64().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(sends.iter().filter(|s| s.1 == 429).count(), 3);
    for pair in sends.windows(2) {
        if pair[0].1 == 429 {
            let gap = pair[1].0 - pair[0].0;
            assert!(gap >= 1.9, "only {gap:.2}s after a 429: {sends:?}");
            // Not the backoff's minute either.
            assert!(gap < 10.0, "{gap:.2}s after a 429: {sends:?}");
        }
    }
    assert!(started.elapsed() >= Duration::from_secs(6));
    let log = relay.log_text();
    assert!(
        log.contains("slowed down: the server is throttling: 421 4.7.0 graph: HTTP 429: ApplicationThrottled")
            && log.contains("next attempt in 2s"),
        "{log}"
    );
    standin.assert_no_violations();
}

#[test]
fn a_token_refused_mid_queue_is_renewed_once_and_the_queue_flows() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    // Tokens said to last an hour are refused after a second: the relay
    // hears 401 mid-queue, renews once, and goes on.
    let standin = StandIn::start(dir.path(), &["--token-accept", "1", "--delay", "100"]);
    let secrets = graph_account(dir.path(), &standin);
    let spool = dir.path().join("spool");
    for _ in 0..30 {
        submit_to(&spool, "bob@contoso.example");
    }
    let log = forward(
        dir.path(),
        &spool,
        &secrets,
        &["--client-connections", "1"],
        0,
    );
    assert_eq!(standin.mail().len(), 30, "{log}");
    let tokens = standin
        .requests()
        .iter()
        .filter(|r| r["path"] == "token")
        .count();
    let refusals = standin.statuses().iter().filter(|s| **s == 401).count();
    assert!(tokens >= 3, "{tokens} tokens");
    assert_eq!(refusals, tokens - 1, "one 401 per token after the first");
    assert!(
        log.contains("access token refused: getting a new one"),
        "{log}"
    );
    assert!(!log.contains("paused"), "{log}");
    assert!(crate::harness::spool_files(&spool, ".envelope").is_empty());
    standin.assert_no_violations();
}

#[test]
fn a_hundred_messages_go_with_at_most_four_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    // Short tokens too: renewed ahead of expiry, never refused.
    let standin = StandIn::start(
        dir.path(),
        &["--delay", "120", "--expires-in", "3", "--token-accept", "3"],
    );
    let secrets = graph_account(dir.path(), &standin);
    let spool = dir.path().join("spool");
    for _ in 0..100 {
        submit_to(&spool, "bob@contoso.example");
    }
    let log = forward(
        dir.path(),
        &spool,
        &secrets,
        &["--client-connections", "8"],
        0,
    );
    assert_eq!(standin.mail().len(), 100, "{log}");
    // At most 4 (the stand-in also records a violation past 4); more
    // than one shows the eight connections did work at once.
    let most = standin.max_in_flight();
    eprintln!("graph: at most {most} sendMail requests in flight");
    assert!((2..=4).contains(&most), "{most} requests in flight at most");
    assert!(crate::harness::spool_files(&spool, ".envelope").is_empty());
    standin.assert_no_violations();
}

impl StandIn {
    /// The most requests it saw at once for each mailbox (message trace's
    /// look-ups apart, under "(tenant)").
    fn max_in_flight_by_mailbox(&self) -> serde_json::Value {
        std::fs::read_to_string(self.dir.join("max-in-flight-by-mailbox"))
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_default()
    }
}

/// Sends `count` messages in one SMTP session with Python's smtplib,
/// each with the Message-ID `<n.bulk@contoso.example>`.
fn smtplib_bulk(port: u16, count: usize) {
    let script = r#"
import smtplib, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
for n in range(count):
    m = ("From: scanner@contoso.example\r\nTo: bob@contoso.example\r\n"
         "Subject: bulk %d\r\nMessage-ID: <%d.bulk@contoso.example>\r\n\r\nscan %d\r\n" % (n, n, n))
    s.sendmail("scanner@contoso.example", ["bob@contoso.example"], m)
s.quit()
"#;
    let (code, out, err) = run(
        Command::new(program("python3")).args([
            "-c",
            script,
            &port.to_string(),
            &count.to_string(),
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "smtplib: {out}{err}");
}

#[test]
fn a_thousand_messages_go_exactly_once_with_at_most_four_requests_in_flight_per_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    // 20 ms per sendMail, so that requests overlap and the peak shows
    // how many the relay runs at once.
    let standin = StandIn::start(dir.path(), &["--delay", "20"]);
    let secrets = graph_account(dir.path(), &standin);
    let spool = dir.path().join("spool");
    {
        // A relay that only stores: 999 by smtplib in one session, one by swaks.
        let relay = Relay::start(dir.path(), &[]);
        smtplib_bulk(relay.port, 999);
        swaks(
            relay.port,
            &["bob@contoso.example"],
            &["--header", "Subject: by swaks"],
        );
    }
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 1000);
    let started = Instant::now();
    let log = forward(
        dir.path(),
        &spool,
        &secrets,
        &["--client-connections", "8"],
        0,
    );
    eprintln!(
        "graph: 1000 messages forwarded in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let mail = standin.mail();
    assert_eq!(mail.len(), 1000, "{log}");
    let mut ids: Vec<String> = mail.iter().map(|m| message_id_of(m)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "a message arrived twice");
    for n in 0..999 {
        let id = format!("<{n}.bulk@contoso.example>");
        assert!(ids.binary_search(&id).is_ok(), "{id} did not arrive");
    }
    let swaked = mail
        .iter()
        .filter(|m| find(m, b"Subject: by swaks"))
        .count();
    assert_eq!(swaked, 1);
    // Eight connections, four requests at once for the mailbox: the
    // stand-in records a violation past four; exactly four shows the
    // relay does use all four.
    let peaks = standin.max_in_flight_by_mailbox();
    eprintln!("graph: peak requests in flight per mailbox: {peaks}");
    assert_eq!(peaks[MAILBOX].as_u64(), Some(4), "{peaks}");
    assert!(crate::harness::spool_files(&spool, ".envelope").is_empty());
    assert!(crate::harness::spool_files(&spool, ".content").is_empty());
    assert!(crate::harness::spool_files(&spool, ".bad").is_empty());
    standin.assert_no_violations();
}

#[test]
fn a_revoked_certificate_pauses_the_route_and_keeps_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(dir.path(), &["--revoked"]);
    let secrets = graph_account(dir.path(), &standin);
    let spool = dir.path().join("spool");
    submit_to(&spool, "bob@contoso.example");
    let log = forward(dir.path(), &spool, &secrets, &[], 0);
    assert!(
        log.contains("AADSTS7000274: Key was found, but the certificate has been revoked.: mail for this account stays in the spool"),
        "{log}"
    );
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 1);
    assert!(standin.mail().is_empty());
    assert_eq!(
        standin.statuses(),
        Vec::<u64>::new(),
        "no sendMail without a token"
    );
    standin.assert_no_violations();
}

#[test]
fn a_google_service_account_signs_for_the_mailbox_and_sends_by_xoauth2() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let key = std::fs::read_to_string(dir.path().join("app.key")).unwrap();
    let sa = serde_json::json!({
        "type": "service_account",
        "project_id": "relay-test",
        "private_key_id": "0123456789abcdef",
        "private_key": key,
        "client_email": "relay@relay-test.iam.gserviceaccount.com",
        "client_id": "123456789",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(dir.path().join("sa.json"), sa.to_string()).unwrap();
    let standin = StandIn::start(
        dir.path(),
        &["--google-key", dir.path().join("sa.json").to_str().unwrap()],
    );
    let token_file = standin.dir.join("last-token");
    let valid: Arc<dyn Fn() -> String + Send + Sync> =
        Arc::new(move || std::fs::read_to_string(&token_file).unwrap_or_default());
    let (upstream, taken) = crate::oauth::xoauth2_upstream(MAILBOX, valid);
    let account = dir.path().join("gmail.oauth2");
    std::fs::write(
        &account,
        format!(
            "provider = google\nservice-account = sa.json\nmailbox = {MAILBOX}\n\
             token-url = https://127.0.0.1:{}/google/token\nca-file = ca.crt\n",
            standin.port
        ),
    )
    .unwrap();
    let secrets = secrets_file(
        dir.path(),
        &format!("client oauth2 {MAILBOX} {}\n", account.display()),
    );
    let spool = dir.path().join("spool");
    submit_to(&spool, "bob@contoso.example");
    let log = forward_once(
        dir.path(),
        &spool,
        &format!("127.0.0.1:{upstream}"),
        &["--client-auth", secrets.to_str().unwrap()],
        0,
    );
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 1, "{log}");
    assert_eq!(
        standin
            .requests()
            .iter()
            .filter(|r| r["path"] == "google-token")
            .count(),
        1
    );
    standin.assert_no_violations();
}

#[test]
fn a_second_401_after_renewal_pauses_the_route_as_a_refused_password() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    // Every token is refused the moment it is issued.
    let standin = StandIn::start(dir.path(), &["--token-accept", "0"]);
    let secrets = graph_account(dir.path(), &standin);
    let spool = dir.path().join("spool");
    submit_to(&spool, "bob@contoso.example");
    submit_to(&spool, "carol@contoso.example");
    let log = forward(
        dir.path(),
        &spool,
        &secrets,
        &["--client-connections", "1"],
        1,
    );
    // One renewal, then no more requests: the route waits.
    assert_eq!(standin.statuses(), [401, 401], "{log}");
    let tokens = standin
        .requests()
        .iter()
        .filter(|r| r["path"] == "token")
        .count();
    assert_eq!(tokens, 2);
    assert!(
        log.contains(
            "error: forwarding to graph.microsoft.com:443 paused: the server refused our authentication: \
             535 5.7.8 graph: HTTP 401: InvalidAuthenticationToken: Lifetime validation failed, the token is expired.: mail stays queued"
        ),
        "{log}"
    );
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 2);
    assert!(standin.mail().is_empty());
    standin.assert_no_violations();
}

/// `emailrelay-passwd --check <file>`: (exit code, stdout, stderr).
fn check(file: &Path) -> (i32, String, String) {
    run(
        Command::new(env!("CARGO_BIN_EXE_emailrelay-passwd"))
            .arg("--check")
            .arg(file),
        Duration::from_secs(60),
    )
}

#[test]
fn passwd_check_says_whether_an_account_file_works_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(dir.path(), &[]);
    graph_account(dir.path(), &standin);
    let account = dir.path().join("printer.oauth2");
    let (code, out, err) = check(&account);
    let port = standin.port;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(
        lines[0],
        format!("token: obtained from https://127.0.0.1:{port}/{TENANT}/oauth2/v2.0/token (valid for 3600s)")
    );
    assert!(
        lines[1].starts_with("certificate: expires on 20")
            && lines[1].ends_with("UTC (in 20 day(s))"),
        "{out}"
    );
    assert_eq!(lines[2], "permission: Mail.Send (application) is granted");
    assert_eq!(
        lines[3],
        "permission: Mail.ReadWrite is granted: messages over 3 MB can go by draft"
    );
    assert_eq!(
        lines[4],
        format!("mailbox: {MAILBOX} found, and the app may send as it")
    );
    assert_eq!(lines[5], format!("ok: {} works", account.display()));
    // The log's warning, as the relay gives it.
    assert!(
        err.starts_with(&format!(
            "emailrelay: warning: oauth2: the certificate of {MAILBOX} ("
        )) && err.ends_with("expires in 20 day(s)")
            || err.contains("expires in 20 day(s), on "),
        "{err}"
    );
    // The probe sent nothing: Graph refused its empty body.
    assert_eq!(standin.statuses(), [400]);
    assert!(standin.mail().is_empty());
    // A mailbox the tenant does not have.
    let text = std::fs::read_to_string(&account).unwrap();
    let wrong = dir.path().join("wrong.oauth2");
    std::fs::write(&wrong, text.replace(MAILBOX, "nobody@contoso.example")).unwrap();
    let (code, out, err) = check(&wrong);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("permission: Mail.Send (application) is granted"),
        "{out}"
    );
    assert!(
        err.ends_with(
            "emailrelay-passwd: error: there is no mailbox nobody@contoso.example in the tenant\n  \
             (graph: HTTP 404: ErrorInvalidUser: The requested user 'nobody@contoso.example' is invalid.)\n"
        ),
        "{err}"
    );
    standin.assert_no_violations();
    drop(standin);

    // Mail.Send without Mail.ReadWrite: the check says large messages
    // will fail, and one does, to .bad with Graph's error for the draft.
    let standin = StandIn::start(dir.path(), &["--roles", "Mail.Send"]);
    let secrets = graph_account(dir.path(), &standin);
    let (code, out, err) = check(&account);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("\npermission: Mail.ReadWrite is not granted: messages over 3 MB will fail (add it for drafts and upload sessions)\n"),
        "{out}"
    );
    let spool = dir.path().join("spool");
    let pdf = random_file(&dir.path().join("r.pdf"), 3_500_000);
    submit_content(&spool, &mime_with_attachments("large", &[("r.pdf", &pdf)]));
    let log = forward(dir.path(), &spool, &secrets, &[], 0);
    let bad = crate::harness::spool_files(&spool, ".envelope.bad");
    assert_eq!(bad.len(), 1, "{log}");
    let envelope = std::fs::read_to_string(spool.join(&bad[0])).unwrap();
    assert!(
        envelope.contains(
            "X-MailRelay-Reason: 5.0.0 graph: HTTP 403: ErrorAccessDenied: Access is denied."
        ),
        "{envelope}"
    );
    assert!(standin.mail().is_empty());
    standin.assert_no_violations();
    drop(standin);

    // A token without Mail.Send (no admin consent).
    let standin = StandIn::start(dir.path(), &["--roles", ""]);
    std::fs::write(
        &account,
        text.replace(&port.to_string(), &standin.port.to_string()),
    )
    .unwrap();
    let (code, _, err) = check(&account);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not carry the Mail.Send application permission (roles: none): add it under API permissions and grant admin consent"),
        "{err}"
    );
    standin.assert_no_violations();
    drop(standin);

    // A revoked certificate: Microsoft's error, explained.
    let standin = StandIn::start(dir.path(), &["--revoked"]);
    std::fs::write(
        &account,
        text.replace(&port.to_string(), &standin.port.to_string()),
    )
    .unwrap();
    let (code, out, err) = check(&account);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("emailrelay-passwd: error: the certificate has been revoked: upload a new one\n  (oauth2: cannot get an access token")
            && err.contains("AADSTS7000274"),
        "{err}"
    );
    standin.assert_no_violations();
}

#[test]
fn a_certificate_signs_for_exchange_smtp_xoauth2_too() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    // An app token for Exchange Online's SMTP: the .default scope of
    // outlook.office365.com, the same client assertion as for Graph.
    let standin = StandIn::start(
        dir.path(),
        &["--scope", "https://outlook.office365.com/.default"],
    );
    let token_file = standin.dir.join("last-token");
    let valid: Arc<dyn Fn() -> String + Send + Sync> =
        Arc::new(move || std::fs::read_to_string(&token_file).unwrap_or_default());
    let (upstream, taken) = crate::oauth::xoauth2_upstream(MAILBOX, valid);
    let account = dir.path().join("smtp.oauth2");
    std::fs::write(
        &account,
        format!(
            "provider = microsoft\ntenant = {TENANT}\nclient-id = {CLIENT_ID}\n\
             grant = client_credentials\nclient-certificate = app.crt\nclient-key = app.key\n\
             token-url = https://127.0.0.1:{}/{TENANT}/oauth2/v2.0/token\nca-file = ca.crt\n",
            standin.port
        ),
    )
    .unwrap();
    let secrets = secrets_file(
        dir.path(),
        &format!("client oauth2 {MAILBOX} {}\n", account.display()),
    );
    let spool = dir.path().join("spool");
    submit_to(&spool, "bob@contoso.example");
    let log = forward_once(
        dir.path(),
        &spool,
        &format!("127.0.0.1:{upstream}"),
        &["--client-auth", secrets.to_str().unwrap()],
        0,
    );
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 1, "{log}");
    assert!(
        log.contains("using mechanism [xoauth2] and oauth2 secret"),
        "{log}"
    );
    standin.assert_no_violations();
}

/// A file of `size` octets that no compression or pattern shortcuts.
fn random_file(path: &Path, size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

/// The relay's peak resident memory so far, in KiB (`VmHWM`).
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

impl StandIn {
    /// The attachments of the `n`th message sent through a draft (from 1):
    /// the stand-in's listing and each one's bytes as reassembled.
    fn attachments(&self, n: usize) -> Vec<(serde_json::Value, Vec<u8>)> {
        let dir = self.dir.join("attachments");
        let listing: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{n:05}.json"))).unwrap(),
        )
        .unwrap();
        listing
            .into_iter()
            .enumerate()
            .map(|(k, item)| {
                let bytes = std::fs::read(dir.join(format!("{n:05}-{k}"))).unwrap();
                (item, bytes)
            })
            .collect()
    }

    fn paths(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn a_20_mb_attachment_goes_by_draft_and_upload_session_byte_identical_and_memory_stays_flat_to_100_mb(
) {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(dir.path(), &[]);
    let secrets = graph_account(dir.path(), &standin);
    let relay = Relay::start(dir.path(), &graph_args(&secrets, &[]));
    // A small message first: the relay's memory with every path warm.
    swaks(
        relay.port,
        &["bob@contoso.example"],
        &["--header", "Subject: small"],
    );
    assert!(
        wait_until(Duration::from_secs(30), || standin.mail().len() == 1
            && relay.files(".envelope").is_empty()),
        "{}",
        relay.log_text()
    );
    let before = peak_rss_kib(relay.proc.pid());
    let size = 20 * 1024 * 1024;
    let original = random_file(&dir.path().join("big.bin"), size);
    let started = Instant::now();
    // carol only in the envelope: the draft's Bcc names her.
    swaks(
        relay.port,
        &["bob@contoso.example", "carol@contoso.example"],
        &[
            "--header",
            "To: bob@contoso.example",
            "--header",
            "Subject: big",
            "--attach-type",
            "application/octet-stream",
            "--attach-name",
            "big.bin",
            "--attach",
            &format!("@{}", dir.path().join("big.bin").display()),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(60), || standin.mail().len() == 2
            && relay.files(".envelope").is_empty()),
        "{}",
        relay.log_text()
    );
    let elapsed = started.elapsed();
    let after = peak_rss_kib(relay.proc.pid());
    eprintln!(
        "graph: 20 MB attachment in {:.1}s; relay peak RSS {before} KiB before, {after} KiB after (+{} KiB)",
        elapsed.as_secs_f64(),
        after - before
    );
    // The attachment, as the upload session reassembled it: the same bytes.
    let attachments = standin.attachments(2);
    assert_eq!(attachments.len(), 1);
    let (item, bytes) = &attachments[0];
    assert_eq!(bytes.len(), original.len());
    assert!(bytes == &original, "the attachment arrived changed");
    assert_eq!(item["name"], "big.bin");
    assert_eq!(item["contentType"], "application/octet-stream");
    assert_eq!(item["how"], "upload");
    // The draft: the message without the attachment, carol in its Bcc.
    let draft = &standin.mail()[1];
    assert!(draft.len() < 3 * 1024 * 1024, "{} octets", draft.len());
    let text = String::from_utf8_lossy(draft);
    assert!(text.starts_with("Bcc: carol@contoso.example\r\n"), "{text}");
    assert!(text.contains("Subject: big\r\n"), "{text}");
    assert!(!text.contains("big.bin"), "{text}");
    // The requests: draft, session, 7 PUTs of at most 3,276,800 octets in
    // order, send.
    let mut paths = standin.paths();
    paths.retain(|p| p != "token");
    let mut expected = vec!["sendMail", "createDraft", "createUploadSession"];
    expected.extend(["PUT upload"; 7]);
    expected.push("sendDraft");
    assert_eq!(paths, expected);
    let puts: Vec<u64> = standin
        .requests()
        .iter()
        .filter(|r| r["path"] == "PUT upload")
        .map(|r| r["length"].as_u64().unwrap())
        .collect();
    assert_eq!(puts.iter().sum::<u64>(), size as u64);
    assert!(puts.iter().all(|&l| l <= 3_276_800), "{puts:?}");
    // Memory: the relay never held the message (27 MB as spooled, 37 MB
    // as one base64 body) nor the attachment (20 MB): it grew by a few
    // copies of one 3.2 MB range (read, hyper's write buffer, TLS).
    assert!(
        after - before < 20 * 1024,
        "peak RSS grew by {} KiB for a 20 MB attachment",
        after - before
    );

    // A 100 MB message (a 75 MB attachment), put into the spool as
    // emailrelay-submit would: the peak stays where the 20 MB one left it.
    let stage = dir.path().join("stage");
    let huge = random_file(&dir.path().join("huge.pdf"), 75 * 1024 * 1024);
    let content = submit_content(
        &stage,
        &mime_with_attachments("huge", &[("huge.pdf", &huge)]),
    );
    let spooled = std::fs::metadata(stage.join(&content)).unwrap().len();
    let started = Instant::now();
    let envelope = content.replace(".content", ".envelope");
    std::fs::rename(stage.join(&content), relay.spool.join(&content)).unwrap();
    std::fs::rename(stage.join(&envelope), relay.spool.join(&envelope)).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || standin.mail().len() == 3
            && relay.files(".envelope").is_empty()),
        "{}",
        relay.log_text()
    );
    let last = peak_rss_kib(relay.proc.pid());
    eprintln!(
        "graph: {spooled} octets ({} MB attachment) in {:.1}s; relay peak RSS {last} KiB (+{} KiB over the 20 MB one's)",
        huge.len() >> 20,
        started.elapsed().as_secs_f64(),
        last - after
    );
    let attachments = standin.attachments(3);
    assert!(attachments.len() == 1 && attachments[0].1 == huge);
    assert!(
        last - before < 20 * 1024,
        "peak RSS grew by {} KiB for a {spooled}-octet message",
        last - before
    );
    standin.assert_no_violations();
}

/// A multipart message with these attachments (name, bytes), base64 in
/// lines of 76 as mail programs write them.
fn mime_with_attachments(subject: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    use base64::Engine;
    let mut m = format!(
        "From: scanner@contoso.example\r\nTo: bob@contoso.example\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=-b\"\r\n\r\n\
         --=-b\r\nContent-Type: text/plain\r\n\r\nScanned.\r\n"
    )
    .into_bytes();
    for (name, bytes) in files {
        m.extend_from_slice(
            format!(
                "--=-b\r\nContent-Type: application/pdf; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            )
            .as_bytes(),
        );
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        for line in text.as_bytes().chunks(76) {
            m.extend_from_slice(line);
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"--=-b--\r\n");
    m
}

/// Submits a message for bob into `spool` with this content.
fn submit_content(spool: &Path, content: &[u8]) -> String {
    let before = crate::harness::spool_files(spool, ".content");
    submit_to(spool, "bob@contoso.example");
    let name = crate::harness::spool_files(spool, ".content")
        .into_iter()
        .find(|n| !before.contains(n))
        .unwrap();
    std::fs::write(spool.join(&name), content).unwrap();
    name
}

#[test]
fn small_and_session_attachments_a_failed_put_deletes_the_draft_and_over_150_mb_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    // The second PUT of all is answered 503.
    let standin = StandIn::start(dir.path(), &["--fail-put", "2"]);
    let secrets = graph_account(dir.path(), &standin);
    let spool = dir.path().join("spool");
    let four = random_file(&dir.path().join("four.pdf"), 4_000_000);
    let a = random_file(&dir.path().join("a.pdf"), 2_500_000);
    let b = random_file(&dir.path().join("b.pdf"), 2_400_000);
    submit_content(
        &spool,
        &mime_with_attachments("session", &[("four.pdf", &four)]),
    );
    let log = forward(dir.path(), &spool, &secrets, &[], 0);
    // The 503 deferred it: the draft was deleted, the message kept.
    assert!(standin.mail().is_empty(), "{log}");
    assert_eq!(
        standin.paths()[1..],
        [
            "createDraft",
            "createUploadSession",
            "PUT upload",
            "PUT upload",
            "deleteDraft"
        ],
        "{log}"
    );
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 1);
    // Two attachments under 3 MB that only fit the draft's 3 MB apart
    // (3.4 MB of base64 each): each by one POST.
    submit_content(
        &spool,
        &mime_with_attachments("small", &[("a.pdf", &a), ("b.pdf", &b)]),
    );
    // Over Exchange's 150 MB (a sparse file): never sent.
    let huge = submit_content(&spool, b"Subject: huge\r\n\r\n");
    std::fs::OpenOptions::new()
        .write(true)
        .open(spool.join(&huge))
        .unwrap()
        .set_len(150 * 1024 * 1024 + 1)
        .unwrap();
    let log = forward(dir.path(), &spool, &secrets, &[], 0);
    let mail = standin.mail();
    assert_eq!(mail.len(), 2, "{log}");
    // Each sent once, with its attachments as they were.
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    for n in 1..=2 {
        for (item, bytes) in standin.attachments(n) {
            sent.push((
                format!(
                    "{} {}",
                    item["name"].as_str().unwrap(),
                    item["how"].as_str().unwrap()
                ),
                bytes,
            ));
        }
    }
    sent.sort();
    assert_eq!(
        sent.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["a.pdf post", "b.pdf post", "four.pdf upload"]
    );
    assert!(sent[0].1 == a && sent[1].1 == b && sent[2].1 == four);
    let bad = crate::harness::spool_files(&spool, ".envelope.bad");
    assert_eq!(bad.len(), 1, "{log}");
    let envelope = std::fs::read_to_string(spool.join(&bad[0])).unwrap();
    assert!(
        envelope.contains(
            "X-MailRelay-Reason: 5.3.4 message too large for graph: 157286401 octets, over Exchange Online's maximum of 157286400 (150 MB)"
        ),
        "{envelope}"
    );
    assert_eq!(crate::harness::spool_files(&spool, ".envelope").len(), 0);
    standin.assert_no_violations();
}

/// The `Message-Id` of a message as sent.
fn message_id_of(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_string())
        })
        .unwrap()
}

#[test]
fn delivery_trace_looks_each_sent_message_up_until_exchange_knows_its_fate() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(
        dir.path(),
        &[
            "--roles",
            "Mail.Send,Mail.ReadWrite,ExchangeMessageTrace.Read.All",
        ],
    );
    let secrets = graph_account(dir.path(), &standin);
    add_to_account(dir.path(), "delivery-trace = 1\n");
    let http_port = crate::harness::free_port();
    let http = http_port.to_string();
    let relay = Relay::start(dir.path(), &graph_args(&secrets, &["--http-port", &http]));
    swaks(
        relay.port,
        &["bob@contoso.example", "carol@contoso.example"],
        &[
            "--header",
            "To: bob@contoso.example",
            "--header",
            "Subject: fine",
        ],
    );
    swaks(
        relay.port,
        &["bob@contoso.example"],
        &["--header", "Subject: TRACEFAIL"],
    );
    assert!(
        wait_until(Duration::from_secs(30), || standin.mail().len() == 2),
        "{}",
        relay.log_text()
    );
    let mail = standin.mail();
    let fine = mail.iter().find(|m| find(m, b"Subject: fine")).unwrap();
    let failed = mail
        .iter()
        .find(|m| find(m, b"Subject: TRACEFAIL"))
        .unwrap();
    let (fine, failed) = (message_id_of(fine), message_id_of(failed));
    // Pending at the first look-up (after a second), final at the second
    // (two seconds later): carol, only in the envelope, is traced too.
    let lines = [
        format!("info: graph: message trace: {fine} to bob@contoso.example: delivered"),
        format!("info: graph: message trace: {fine} to carol@contoso.example: delivered"),
        format!("warning: graph: message trace: {failed} to bob@contoso.example: failed"),
    ];
    assert!(
        wait_until(Duration::from_secs(20), || {
            let log = relay.log_text();
            lines.iter().all(|l| log.contains(l.as_str()))
        }),
        "{}",
        relay.log_text()
    );
    let lookups: Vec<String> = standin
        .requests()
        .iter()
        .filter(|r| r["path"] == "messageTrace")
        .map(|r| r["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        lookups.iter().filter(|i| **i == fine).count(),
        2,
        "{lookups:?}"
    );
    assert_eq!(
        lookups.iter().filter(|i| **i == failed).count(),
        2,
        "{lookups:?}"
    );
    // Counted per account and status in /metrics (curl).
    let (code, metrics, err) = run(
        Command::new(program("curl"))
            .args(["-sS", &format!("http://127.0.0.1:{http_port}/metrics")]),
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{err}");
    for line in [
        format!("emailrelay_graph_delivery_trace_total{{account=\"{MAILBOX}\",status=\"delivered\"}} 2\n"),
        format!("emailrelay_graph_delivery_trace_total{{account=\"{MAILBOX}\",status=\"failed\"}} 1\n"),
    ] {
        assert!(metrics.contains(&line), "no {line:?} in:\n{metrics}");
    }
    standin.assert_no_violations();
}

/// Adds `lines` to the test's account file.
fn add_to_account(dir: &Path, lines: &str) {
    let account = dir.join("printer.oauth2");
    let mut text = std::fs::read_to_string(&account).unwrap();
    text.push_str(lines);
    std::fs::write(&account, text).unwrap();
}

/// A relay's arguments to forward through Graph with the account in
/// `secrets`, polling every second, then `extra`.
fn graph_args<'a>(secrets: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--forward-to",
        "graph.microsoft.com:443",
        "--client-auth",
        secrets.to_str().unwrap(),
        "--poll",
        "1",
    ];
    args.extend_from_slice(extra);
    args
}

/// The value of a header field of a message as sent.
fn field_of(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    header.split("\r\n").find_map(|l| {
        let (n, value) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

#[test]
fn a_message_trace_says_failed_and_a_report_goes_to_the_postmaster_once() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    // Mail to the postmaster fails too: the report about the message.
    let standin = StandIn::start(
        dir.path(),
        &[
            "--roles",
            "Mail.Send,Mail.ReadWrite,ExchangeMessageTrace.Read.All",
            "--trace-fail-to",
            "postmaster@contoso.example",
        ],
    );
    let secrets = graph_account(dir.path(), &standin);
    add_to_account(
        dir.path(),
        "delivery-trace = 1\ndelivery-trace-report = postmaster@contoso.example\n",
    );
    // No --poll: the message goes when swaks disconnects, and the report
    // when it has been written (a rescan), with no other pass to wait for.
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            "graph.microsoft.com:443",
            "--client-auth",
            secrets.to_str().unwrap(),
            "--forward-on-disconnect",
        ],
    );
    swaks(
        relay.port,
        &["bob@contoso.example"],
        &["--header", "Subject: TRACEFAIL scan"],
    );
    // The message, then (after a pending look-up and a failed one) the
    // report, written into the spool and forwarded at once.
    assert!(
        wait_until(Duration::from_secs(30), || standin.mail().len() == 2),
        "{}",
        relay.log_text()
    );
    let mail = standin.mail();
    let original = message_id_of(&mail[0]);
    let report = &mail[1];
    let text = String::from_utf8_lossy(report).to_string();
    assert_eq!(
        field_of(report, "To").as_deref(),
        Some("<postmaster@contoso.example>"),
        "{text}"
    );
    assert_eq!(
        field_of(report, "From").as_deref(),
        Some(format!("Mail relay <{MAILBOX}>").as_str())
    );
    assert_eq!(
        field_of(report, "Subject"),
        Some(format!("Not delivered (failed): {original}"))
    );
    assert_eq!(
        field_of(report, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    for line in [
        format!("Message-ID: {original}\r\nSubject: TRACEFAIL scan\r\n"),
        "bob@contoso.example: failed: Exchange could not deliver it.\r\n".to_string(),
    ] {
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
    let report_id = message_id_of(report);
    let log = relay.log_text();
    assert!(
        log.contains(&format!(
            "warning: graph: message trace: {original} to bob@contoso.example: failed"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "info: graph: message trace: {original}: reported to postmaster@contoso.example as ["
        )),
        "{log}"
    );
    assert!(log.contains("info: forwarding: [rescan]\n"), "{log}");
    // The report is traced too, and message trace says it failed as well
    // (--trace-fail-to): no report about the report.
    let traced =
        format!("warning: graph: message trace: {report_id} to postmaster@contoso.example: failed");
    assert!(
        wait_until(Duration::from_secs(20), || relay
            .log_text()
            .contains(&traced)),
        "{}",
        relay.log_text()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(standin.mail().len(), 2, "{}", relay.log_text());
    assert!(!relay.log_text().contains(&format!("{report_id}: reported")));
    assert!(relay.files(".envelope").is_empty());
    assert!(!relay.spool.join(".emailrelay-graph-traces").exists());
    standin.assert_no_violations();
}

#[test]
fn message_trace_look_ups_pending_at_a_stop_are_done_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(
        dir.path(),
        &[
            "--roles",
            "Mail.Send,Mail.ReadWrite,ExchangeMessageTrace.Read.All",
        ],
    );
    let secrets = graph_account(dir.path(), &standin);
    // Long enough for the stop to come first.
    add_to_account(
        dir.path(),
        "delivery-trace = 5\ndelivery-trace-report = postmaster@contoso.example\n",
    );
    let args = graph_args(&secrets, &[]);
    let port = crate::harness::free_port();
    let mut relay = Relay::start_on(dir.path(), port, &args);
    swaks(
        relay.port,
        &["bob@contoso.example"],
        &["--header", "Subject: QUARANTINE scan"],
    );
    assert!(
        wait_until(Duration::from_secs(20), || standin.mail().len() == 1),
        "{}",
        relay.log_text()
    );
    let id = message_id_of(&standin.mail()[0]);
    let pending = relay.spool.join(".emailrelay-graph-traces");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&pending)
            .is_ok_and(|t| t.contains(&id))),
        "no pending look-up kept"
    );
    relay.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(20)), Some(0));
    let lookups = || {
        standin
            .requests()
            .iter()
            .filter(|r| r["path"] == "messageTrace")
            .count()
    };
    assert_eq!(lookups(), 0, "stopped before the first look-up");
    assert!(std::fs::read_to_string(&pending).unwrap().contains(&id));
    drop(relay);
    // Started again (its own log file): the look-ups go on where they were.
    let relay = Relay::start(dir.path(), &args);
    let done = format!("warning: graph: message trace: {id} to bob@contoso.example: quarantined");
    assert!(
        wait_until(Duration::from_secs(30), || relay.log_text().contains(&done)),
        "{}",
        relay.log_text()
    );
    let log = relay.log_text();
    assert!(
        log.contains(&format!("info: graph: message trace for {id}: resumed")),
        "{log}"
    );
    assert_eq!(lookups(), 2, "pending, then quarantined");
    // Its report is still made.
    assert!(
        wait_until(Duration::from_secs(20), || standin.mail().len() == 2),
        "{}",
        relay.log_text()
    );
    assert_eq!(
        field_of(&standin.mail()[1], "Subject"),
        Some(format!("Not delivered (quarantined): {id}"))
    );
    standin.assert_no_violations();
}

#[test]
fn quoted_printable_attachments_leave_a_large_message_decoded_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(dir.path(), &[]);
    let secrets = graph_account(dir.path(), &standin);
    let spool = dir.path().join("spool");
    // 3.5 MB (an upload session) and 1.5 MB (one POST), each over twice
    // as large in quoted-printable: neither fits the draft.
    let big = random_file(&dir.path().join("big.bin"), 3_500_000);
    let small = random_file(&dir.path().join("small.bin"), 1_500_000);
    let mut m = b"From: scanner@contoso.example\r\nTo: bob@contoso.example\r\nSubject: qp\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=-b\"\r\n\r\n\
        --=-b\r\nContent-Type: text/plain\r\n\r\nScanned.\r\n"
        .to_vec();
    for (name, bytes) in [("big.bin", &big), ("small.bin", &small)] {
        m.extend_from_slice(
            format!(
                "--=-b\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            )
            .as_bytes(),
        );
        m.extend(super::quoted_printable::quoted_printable(bytes));
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--=-b--\r\n");
    submit_content(&spool, &m);
    let log = forward(dir.path(), &spool, &secrets, &[], 0);
    assert_eq!(standin.mail().len(), 1, "{log}");
    let mut sent: Vec<(String, Vec<u8>)> = standin
        .attachments(1)
        .into_iter()
        .map(|(item, bytes)| {
            (
                format!(
                    "{} {}",
                    item["name"].as_str().unwrap(),
                    item["how"].as_str().unwrap()
                ),
                bytes,
            )
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["big.bin upload", "small.bin post"]
    );
    assert!(sent[0].1 == big, "big.bin changed on the way");
    assert!(sent[1].1 == small, "small.bin changed on the way");
    // The draft kept the text part only.
    let draft = &standin.mail()[0];
    assert!(find(draft, b"Scanned.") && !find(draft, b"quoted-printable"));
    assert!(crate::harness::spool_files(&spool, ".envelope").is_empty());
    standin.assert_no_violations();
}

#[test]
fn an_attachment_inside_a_nested_multipart_leaves_a_large_message_byte_identical() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let standin = StandIn::start(dir.path(), &[]);
    let secrets = graph_account(dir.path(), &standin);
    let spool = dir.path().join("spool");
    // A forwarded message (multipart/mixed inside multipart/mixed) whose
    // 4 MB attachment is only in the inner one.
    let pdf = random_file(&dir.path().join("inner.pdf"), 4_000_000);
    let mut m = b"From: scanner@contoso.example\r\nTo: bob@contoso.example\r\nSubject: nested\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
        --outer\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
        --outer\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n\
        --inner\r\nContent-Type: text/plain\r\n\r\nThe scan.\r\n\
        --inner\r\nContent-Type: application/pdf; name=\"inner.pdf\"\r\n\
        Content-Disposition: attachment; filename=\"inner.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let text = base64::engine::general_purpose::STANDARD.encode(&pdf);
    for line in text.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--inner--\r\n\r\n--outer--\r\n");
    submit_content(&spool, &m);
    let log = forward(dir.path(), &spool, &secrets, &[], 0);
    assert_eq!(standin.mail().len(), 1, "{log}");
    let sent = standin.attachments(1);
    assert_eq!(sent.len(), 1, "{log}");
    assert_eq!(sent[0].0["name"], "inner.pdf");
    assert_eq!(sent[0].0["how"], "upload");
    assert!(sent[0].1 == pdf, "inner.pdf changed on the way");
    // The draft: both text parts and the inner multipart, now with the
    // text part only.
    let draft = String::from_utf8_lossy(&standin.mail()[0]).to_string();
    assert!(
        draft.ends_with(
            "--outer\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n\
             --inner\r\nContent-Type: text/plain\r\n\r\nThe scan.\r\n--inner--\r\n\r\n--outer--\r\n"
        ),
        "{draft}"
    );
    assert!(draft.contains("Forwarded.\r\n"));
    assert!(crate::harness::spool_files(&spool, ".envelope").is_empty());
    standin.assert_no_violations();
}
