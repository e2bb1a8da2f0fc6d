//! The operator HTTP endpoint (`--http-port`): curl against `/metrics`,
//! parsed by Python's `prometheus_client` (Debian's
//! python3-prometheus-client, so Debian's python3) and checked against
//! the spool; `/healthz` turning 503 while the upstream is down and back;
//! `/queue` listing, retry and delete; the status codes of mistakes; and
//! the access rules: loopback by default, the queue for local peers only.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    free_port, program, run, run_with_input, wait_until, Relay, RemoteHost, Sink,
};

/// Debian's python3, which has the packaged prometheus_client (the one
/// first on PATH may be another).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// One HTTP exchange with curl: (status, content type, body).
fn http(method: &str, url: &str) -> (u16, String, String) {
    let (code, out, err) = run(
        Command::new(program("curl"))
            .args(["-s", "-S", "--max-time", "10", "-X", method])
            .args(["-w", "\n%{http_code} %{content_type}", url]),
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "curl {method} {url}: {err}");
    let (body, tail) = out.rsplit_once('\n').unwrap();
    let (status, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
    (
        status.parse().unwrap(),
        content_type.to_string(),
        body.to_string(),
    )
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// A scrape, as Prometheus's Python parser reads it: sample name and
/// sorted labels to value.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn take(port: u16) -> Scrape {
        let (status, content_type, text) = http("GET", &url(port, "/metrics"));
        assert_eq!(status, 200, "{text}");
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let script = "import sys, json\n\
            from prometheus_client.parser import text_string_to_metric_families\n\
            print(json.dumps([[s.name, sorted(s.labels.items()), s.value]\n\
                for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))";
        let (code, out, err) = run_with_input(
            Command::new(DEBIAN_PYTHON).args(["-c", script]),
            Some(text.as_bytes()),
            Duration::from_secs(20),
        );
        assert_eq!(code, 0, "the parser refused the scrape: {err}\n{text}");
        let samples: Vec<Sample> = serde_json::from_str(&out).unwrap();
        Scrape(
            samples
                .into_iter()
                .map(|(name, labels, value)| (key(&name, &labels), value))
                .collect(),
        )
    }

    /// A sample's value; the test fails if there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = key(name, &labels);
        *self
            .0
            .get(&key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.0))
    }
}

/// One sample as the parser prints it: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

fn key(name: &str, labels: &[(String, String)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Sends `count` messages over one connection with Python's smtplib,
/// logging in first if `login` is given.
fn send_with_smtplib(port: u16, count: usize, login: Option<(&str, &str)>) {
    let login = login.map_or(String::new(), |(u, p)| format!("s.login('{u}', '{p}')\n"));
    let script = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=20)\n\
         s.ehlo('client.example')\n{login}\
         for i in range({count}):\n    \
             s.sendmail('a@example.com', ['b@example.org', 'c@example.org'], 'Subject: %d\\r\\n\\r\\nbody\\r\\n' % i)\n\
         s.quit()\n"
    );
    let (code, _, err) = run(
        Command::new(DEBIAN_PYTHON).args(["-c", &script]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "smtplib: {err}");
}

fn id_of(envelope_file: &str) -> String {
    envelope_file.split(".envelope").next().unwrap().to_string()
}

#[test]
fn metrics_show_the_spool_and_the_counters() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = crate::auth::secrets(dir.path(), "secrets", "server plain alice secret\n");
    let upstream = format!("127.0.0.1:{}", free_port());
    let http_port = free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            &upstream,
            "--http-port",
            &http_port.to_string(),
            "--server-auth",
            secrets.to_str().unwrap(),
        ],
    );
    relay.expect_log(&format!(
        "emailrelay: info: http server on 127.0.0.1:{http_port}"
    ));
    let (code, out, _) = run(
        Command::new(program("swaks")).args([
            "--server",
            &format!("127.0.0.1:{}", relay.port),
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "wrong",
            "--to",
            "b@example.org",
        ]),
        Duration::from_secs(30),
    );
    assert_ne!(code, 0, "{out}");
    send_with_smtplib(relay.port, 3, Some(("alice", "secret")));
    let scrape = Scrape::take(http_port);
    assert_eq!(relay.files(".envelope").len(), 3);
    assert_eq!(scrape.get("emailrelay_queued_messages", &[]), 3.0);
    assert_eq!(scrape.get("emailrelay_failed_messages", &[]), 0.0);
    assert_eq!(scrape.get("emailrelay_messages_received_total", &[]), 3.0);
    assert_eq!(
        scrape.get("emailrelay_auth_failures_total", &[("direction", "in")]),
        1.0
    );
    let age = scrape.get("emailrelay_oldest_queued_message_age_seconds", &[]);
    assert!((0.0..60.0).contains(&age), "{age}");
    let route = [("upstream", upstream.as_str())];
    assert_eq!(
        scrape.get("emailrelay_messages_deferred_total", &route),
        0.0
    );
    assert_eq!(scrape.get("emailrelay_route_paused", &route), 0.0);
    // HTTP connections are not counted: the scraper is not in its numbers.
    assert_eq!(
        scrape.get("emailrelay_open_connections", &[("direction", "in")]),
        0.0
    );
    assert_eq!(
        scrape.get("emailrelay_open_connections", &[("direction", "out")]),
        0.0
    );
    // A retry forces a pass: the closed upstream defers the message tried
    // (the others are skipped for the rest of the pass, and stay).
    let id = id_of(&relay.files(".envelope")[0]);
    let (status, _, body) = http("POST", &url(http_port, &format!("/queue/{id}/retry")));
    assert_eq!(status, 202, "{body}");
    relay.expect_log(&format!("cannot connect to {upstream}"));
    assert!(wait_until(Duration::from_secs(10), || {
        Scrape::take(http_port).get("emailrelay_messages_deferred_total", &route) >= 1.0
    }));
    let scrape = Scrape::take(http_port);
    assert_eq!(scrape.get("emailrelay_queued_messages", &[]), 3.0);
    assert_eq!(
        scrape.get("emailrelay_messages_forwarded_total", &route),
        0.0
    );
    assert_eq!(
        scrape.get(
            "emailrelay_auth_failures_total",
            &[("direction", "out"), ("upstream", &upstream)]
        ),
        0.0
    );
}

/// Issue 24: refused POP logins count in the `in` direction of
/// `emailrelay_auth_failures_total`, as its description says: USER/PASS,
/// AUTH PLAIN and APOP with wrong passwords (Python's poplib), not the
/// login that succeeds.
#[test]
fn metrics_count_refused_pop_logins() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = crate::auth::secrets(dir.path(), "secrets", "server plain alice secret\n");
    let (http_port, pop_port) = (free_port(), free_port());
    let relay = Relay::start(
        dir.path(),
        &[
            "--http-port",
            &http_port.to_string(),
            "--pop",
            "--pop-port",
            &pop_port.to_string(),
            "--pop-auth",
            secrets.to_str().unwrap(),
        ],
    );
    relay.expect_log(&format!(
        "emailrelay: info: http server on 127.0.0.1:{http_port}"
    ));
    let in_failures =
        || Scrape::take(http_port).get("emailrelay_auth_failures_total", &[("direction", "in")]);
    assert_eq!(in_failures(), 0.0);
    let script = r#"
import poplib, sys, base64
port = int(sys.argv[1])
def attempt(f):
    try:
        print(f())
    except poplib.error_proto as e:
        print(e)
p = poplib.POP3("127.0.0.1", port, timeout=20)
p.user("alice")
attempt(lambda: p.pass_("wrong"))
attempt(lambda: p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()))
attempt(lambda: p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0secret").decode()))
print(p.quit())
p = poplib.POP3("127.0.0.1", port, timeout=20)
attempt(lambda: p.apop("alice", "wrong"))
print(p.quit())
"#;
    let (code, out, err) = run(
        Command::new(DEBIAN_PYTHON).args(["-c", script, &pop_port.to_string()]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "b'-ERR'",
            "b'-ERR'",
            "b'+OK'",
            "b'+OK signing off'",
            "b'-ERR'",
            "b'+OK signing off'"
        ],
        "{err}"
    );
    assert_eq!(in_failures(), 3.0, "{}", relay.log_text());
}

#[test]
fn metrics_count_forwarded_and_failed_per_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = Sink::start_on(dir.path(), port, &[]);
    let http_port = free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--forward-to",
            &sink.address(),
            "--http-port",
            &http_port.to_string(),
        ],
    );
    send_with_smtplib(relay.port, 2, None);
    assert!(wait_until(Duration::from_secs(20), || sink
        .messages()
        .len()
        == 2
        && relay.files("").is_empty()));
    drop(sink);
    let _refusing = Sink::start_on(dir.path(), port, &["-f", "RCPT"]);
    send_with_smtplib(relay.port, 1, None);
    assert!(
        wait_until(Duration::from_secs(20), || relay
            .files(".envelope.bad")
            .len()
            == 1),
        "{}",
        relay.log_text()
    );
    let scrape = Scrape::take(http_port);
    let route = [("upstream", &*format!("127.0.0.1:{port}"))];
    assert_eq!(scrape.get("emailrelay_messages_received_total", &[]), 3.0);
    assert_eq!(
        scrape.get("emailrelay_messages_forwarded_total", &route),
        2.0
    );
    assert_eq!(scrape.get("emailrelay_messages_failed_total", &route), 1.0);
    assert_eq!(scrape.get("emailrelay_failed_messages", &[]), 1.0);
    assert_eq!(scrape.get("emailrelay_queued_messages", &[]), 0.0);
    assert_eq!(
        scrape.get("emailrelay_oldest_queued_message_age_seconds", &[]),
        0.0
    );
}

#[test]
fn healthz_fails_while_the_upstream_is_down_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = Sink::start_on(dir.path(), port, &[]);
    let http_port = free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            &sink.address(),
            "--poll",
            "1",
            "--http-port",
            &http_port.to_string(),
            "--http-max-queue-age",
            "2",
        ],
    );
    let health = || http("GET", &url(http_port, "/healthz"));
    assert_eq!(
        health(),
        (200, "text/plain; charset=utf-8".into(), "OK\n".into())
    );
    drop(sink);
    send_with_smtplib(relay.port, 1, None);
    assert!(
        wait_until(Duration::from_secs(15), || health().0 == 503),
        "{}",
        relay.log_text()
    );
    let (_, _, reason) = health();
    assert!(
        reason.starts_with("oldest queued message is ")
            && reason.ends_with("s old (--http-max-queue-age is 2s)\n"),
        "{reason}"
    );
    assert_eq!(relay.files(".envelope").len(), 1, "the message waits");
    let sink = Sink::start_on(dir.path(), port, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || health().0 == 200),
        "{}",
        relay.log_text()
    );
    assert_eq!(sink.messages().len(), 1);
    assert!(relay.files("").is_empty());
}

#[test]
fn queue_lists_retries_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let refusing = Sink::start_on(dir.path(), port, &["-f", "RCPT"]);
    let http_port = free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            &refusing.address(),
            "--http-port",
            &http_port.to_string(),
        ],
    );
    send_with_smtplib(relay.port, 1, None);
    let first = id_of(&relay.files(".envelope")[0]);
    let listing = || {
        let (status, content_type, body) = http("GET", &url(http_port, "/queue"));
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/json"),
            "{body}"
        );
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let queue = listing();
    assert_eq!(
        (queue["queued"].as_u64(), queue["failed"].as_u64()),
        (Some(1), Some(0))
    );
    let message = &queue["messages"][0];
    let size = std::fs::metadata(relay.spool.join(format!("{first}.content")))
        .unwrap()
        .len();
    assert_eq!(message["id"], first.as_str());
    assert_eq!(message["state"], "queued");
    assert_eq!(message["from"], "a@example.com");
    assert_eq!(
        message["to"],
        serde_json::json!(["b@example.org", "c@example.org"])
    );
    assert_eq!(message["size"].as_u64(), Some(size));
    assert!(
        message["age_seconds"].as_u64().is_some_and(|a| a < 60),
        "{message}"
    );
    assert_eq!(message["attempts"], 0);
    // A retry of a queued message forwards it now: the 5xx fails it.
    let retry = url(http_port, &format!("/queue/{first}/retry"));
    assert_eq!(http("POST", &retry).0, 202);
    assert!(wait_until(Duration::from_secs(20), || relay
        .files(".envelope.bad")
        .len()
        == 1));
    let failed = &listing()["messages"][0];
    assert_eq!(
        (&failed["id"], &failed["state"]),
        (&first.as_str().into(), &"failed".into())
    );
    assert!(
        failed["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    // A second message, deleted: its files go.
    drop(refusing);
    let sink = Sink::start_on(dir.path(), port, &[]);
    send_with_smtplib(relay.port, 1, None);
    let second = id_of(&relay.files(".envelope")[0]);
    let message = url(http_port, &format!("/queue/{second}"));
    let (status, _, body) = http("DELETE", &message);
    assert_eq!(status, 200, "{body}");
    assert!(relay.files(&format!("{second}.envelope")).is_empty());
    assert!(!relay.spool.join(format!("{second}.content")).exists());
    assert_eq!(http("DELETE", &message).0, 404);
    // The failed one, retried: back in the queue, and forwarded.
    assert_eq!(http("POST", &retry).0, 202);
    assert!(
        wait_until(Duration::from_secs(20), || sink.messages().len() == 1
            && relay.files("").is_empty()),
        "{}",
        relay.log_text()
    );
    relay.expect_log("http request from 127.0.0.1:");
    relay.expect_log(&format!(": POST /queue/{first}/retry: 202"));
}

#[test]
fn mistakes_get_their_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let _relay = Relay::start(dir.path(), &["--http-port", &http_port.to_string()]);
    let unknown = "/queue/emailrelay.1.1700000000.1";
    for (method, path, status) in [
        ("POST", "/queue/nonsense/retry", 400),
        ("DELETE", "/queue/nonsense", 400),
        ("DELETE", "/queue/.hidden", 400),
        ("DELETE", unknown, 404),
        ("GET", "/nowhere", 404),
        ("GET", "/queue/x/y", 404),
        ("GET", unknown, 405),
        ("GET", "/queue/x/retry", 405),
        ("POST", "/metrics", 405),
        ("DELETE", "/healthz", 405),
        ("PUT", "/queue", 405),
    ] {
        let (got, _, body) = http(method, &url(http_port, path));
        assert_eq!(got, status, "{method} {path}: {body}");
    }
    // Retrying needs somewhere to forward to.
    let (status, _, body) = http("POST", &url(http_port, &format!("{unknown}/retry")));
    assert_eq!(
        (status, body.as_str()),
        (
            409,
            "{\"error\":\"no remote server configured: use --forward-to\"}\n"
        )
    );
    let (code, out, _) = run(
        Command::new(program("curl")).args(["-s", "-i", "-X", "POST", &url(http_port, "/metrics")]),
        Duration::from_secs(20),
    );
    assert_eq!(code, 0);
    assert!(
        out.to_ascii_lowercase().contains("\nallow: get, head\r\n"),
        "{out}"
    );
}

#[test]
fn http_listens_on_loopback_and_keeps_the_queue_from_remote_peers() {
    let remote = RemoteHost::create();
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let from_remote = |method: &str, path: &str| {
        let target = format!("http://{}:{http_port}{path}", remote.local_ip());
        let (code, out, err) = remote.exec(&[
            program("curl").to_str().unwrap(),
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            method,
            &target,
        ]);
        (code, format!("{out}{err}"))
    };
    // Loopback by default, whatever --interface says for the rest.
    let relay = Relay::start(
        dir.path(),
        &[
            "--interface",
            &remote.local_ip(),
            "--http-port",
            &http_port.to_string(),
        ],
    );
    let log = relay.expect_log(&format!("emailrelay: info: http server on ::1.{http_port}"));
    assert!(log.contains(&format!(
        "emailrelay: info: http server on 127.0.0.1:{http_port}\n"
    )));
    assert!(
        !log.contains(&format!("http server on {}", remote.local_ip())),
        "{log}"
    );
    assert_ne!(from_remote("GET", "/metrics").0, 0, "nothing listens there");
    drop(relay);
    // An http= address: metrics and health for anyone who reaches it,
    // the queue for local addresses only, as the admin port.
    let listen = format!("http={}", remote.local_ip());
    for sub in ["second", "third"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let relay = Relay::start(
        &dir.path().join("second"),
        &[
            "--interface",
            &listen,
            "--http-port",
            &http_port.to_string(),
        ],
    );
    assert_eq!(from_remote("GET", "/metrics"), (0, "200".into()));
    assert_eq!(from_remote("GET", "/healthz"), (0, "200".into()));
    assert_eq!(from_remote("GET", "/queue"), (0, "403".into()));
    assert_eq!(
        from_remote("DELETE", "/queue/emailrelay.1.1.1"),
        (0, "403".into())
    );
    relay.expect_log(&format!(
        "emailrelay: warning: http request rejected from {}:",
        remote.remote_ip()
    ));
    drop(relay);
    let _open = Relay::start(
        &dir.path().join("third"),
        &[
            "--interface",
            &listen,
            "--http-port",
            &http_port.to_string(),
            "--remote-clients",
        ],
    );
    assert_eq!(from_remote("GET", "/queue"), (0, "200".into()));
}

#[test]
fn http_options_are_checked() {
    let relay = |args: &[&str]| {
        run(
            Command::new(crate::harness::RELAY).args(args),
            Duration::from_secs(20),
        )
    };
    let (code, _, err) = relay(&["--http-max-queue-age", "5"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the --http-max-queue-age option requires --http-port"),
        "{err}"
    );
    let (code, _, err) = relay(&["--dont-serve", "--http-port", "8080"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the --http-port option cannot be used with --as-client or --dont-serve"),
        "{err}"
    );
    let (code, _, err) = relay(&[
        "--http-port",
        "8080",
        "--http-max-queue-age",
        "soon",
        "--no-daemon",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid value for --http-max-queue-age: [soon]"),
        "{err}"
    );
}
