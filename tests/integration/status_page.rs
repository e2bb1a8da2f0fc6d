//! The status page at `/` (issue 29) in Debian's headless Chromium,
//! driven through Selenium and chromedriver (Debian's python3-selenium
//! and chromium-driver) by status_page.py, one browser for every case:
//! a healthy route with a chart that moves as swaks sends mail, the
//! failures view with headers on request, retry, delete and unfail from
//! the page with the spool checked after each; a route smtp-sink
//! throttles with 432; a route paused because the upstream relay refused
//! our password; a same-origin POST without the page's token and a
//! cross-site form post, both refused; a phone-sized screen; and a spool
//! of 200,000 messages paged and searched while the relay's resident
//! memory stays within a bound. Screenshots go to
//! target/status-screenshots.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{free_port, program, run, send_one, wait_until, Proc, Relay, Sink};

/// Debian's python3, which has the packaged Selenium.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// Messages in the big spool.
const BIG: usize = 200_000;

/// How much the relay's resident memory may grow while the big spool is
/// paged and searched (loading every envelope would take hundreds of MB).
const RSS_GROWTH_KB: u64 = 24 * 1024;

const ENVELOPE_HEAD: &str = "X-MailRelay-Format: #2821.8\r\nX-MailRelay-Content: 7bit\r\n";

/// An envelope as 2.6.1 writes it; with a reason it is a failed one's.
fn envelope(from: &str, to: &str, reason: Option<&str>) -> String {
    let mut text = format!(
        "{ENVELOPE_HEAD}X-MailRelay-From: {from}\r\nX-MailRelay-ToCount: 1\r\nX-MailRelay-To-Remote: {to}\r\n\
         X-MailRelay-Authentication: \r\nX-MailRelay-Client: 127.0.0.1\r\nX-MailRelay-ClientCertificate: \r\n\
         X-MailRelay-MailFromAuthIn: \r\nX-MailRelay-MailFromAuthOut: \r\nX-MailRelay-ForwardTo: \r\n\
         X-MailRelay-ForwardToAddress: \r\nX-MailRelay-ClientAccountSelector: \r\n\
         X-MailRelay-Utf8MailboxNames: 0\r\nX-MailRelay-End: 1\r\n"
    );
    if let Some(reason) = reason {
        text.push_str(&format!(
            "X-MailRelay-Reason: {reason}\r\nX-MailRelay-ReasonCode: 550\r\n"
        ));
    }
    text
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes message `n` (id `emailrelay.4242.<secs>.<n>`) into `spool`.
fn write_message(
    spool: &Path,
    secs: u64,
    n: usize,
    subject: &str,
    envelope: &str,
    suffix: &str,
) -> String {
    let id = format!("emailrelay.4242.{secs}.{n}");
    let content = format!(
        "From: device@example.com\r\nTo: admin@example.org\r\nSubject: {subject}\r\n\r\nBODY-SECRET {n}\r\n"
    );
    std::fs::write(spool.join(format!("{id}.content")), content).unwrap();
    std::fs::write(spool.join(format!("{id}{suffix}")), envelope).unwrap();
    id
}

/// Fills `spool` with [`BIG`] waiting messages, every hundredth from
/// scanner@example.com: hard links to four files written once (the relay
/// reads spool files, never writes them in place), so that writing and
/// removing them costs two links a message, not two files' blocks.
fn fill_big(dir: &Path, spool: &Path, secs: u64) {
    let originals = dir.join("originals");
    std::fs::create_dir_all(&originals).unwrap();
    let content = originals.join("content");
    std::fs::write(
        &content,
        "From: device@example.com\r\nTo: admin@example.org\r\nSubject: Queued\r\n\r\nBODY-SECRET\r\n",
    )
    .unwrap();
    let plain = originals.join("plain");
    std::fs::write(
        &plain,
        envelope("device@example.com", "admin@example.org", None),
    )
    .unwrap();
    let scanner = originals.join("scanner");
    std::fs::write(
        &scanner,
        envelope("scanner@example.com", "admin@example.org", None),
    )
    .unwrap();
    for n in 1..=BIG {
        let id = format!("emailrelay.4242.{secs}.{n}");
        let envelope = if n % 100 == 0 { &scanner } else { &plain };
        std::fs::hard_link(&content, spool.join(format!("{id}.content"))).unwrap();
        std::fs::hard_link(envelope, spool.join(format!("{id}.envelope"))).unwrap();
    }
}

/// A smtp-sink that answers every message with Microsoft 365's 432.
fn throttling_sink(port: u16) -> Proc {
    let mut cmd = Command::new(program("smtp-sink"));
    cmd.args(["-u", "nobody", "-r", ".", "-b"])
        .arg("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")
        .arg(format!("127.0.0.1:{port}"))
        .arg("64");
    let proc = Proc::spawn(&mut cmd);
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    proc
}

#[test]
fn the_status_page_in_chromium() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let secs = now_secs() - 120;

    // A healthy route, with three failed messages to act on.
    let h = root.join("healthy");
    let h_spool = h.join("spool");
    std::fs::create_dir_all(&h_spool).unwrap();
    let sink = Sink::start(&h);
    let failed = envelope(
        "device@example.com",
        "admin@example.org",
        Some("550 mailbox unavailable"),
    );
    let toner = write_message(&h_spool, secs, 1, "Toner low", &failed, ".envelope.bad");
    let jam = write_message(&h_spool, secs, 2, "Paper jam", &failed, ".envelope.bad");
    let scan = write_message(&h_spool, secs, 3, "Scan to mail", &failed, ".envelope.bad");
    let h_http = free_port();
    let healthy = Relay::start(
        &h,
        &[
            "--forward-to",
            &sink.address(),
            "--poll",
            "1",
            "--http-port",
            &h_http.to_string(),
        ],
    );

    // A route throttled by smtp-sink's 432, with two messages waiting.
    let t = root.join("throttled");
    let t_spool = t.join("spool");
    std::fs::create_dir_all(&t_spool).unwrap();
    let queued = envelope("device@example.com", "admin@example.org", None);
    let t_ids: Vec<String> = (1..=2)
        .map(|n| write_message(&t_spool, secs, n, "Waiting", &queued, ".envelope"))
        .collect();
    let t_upstream = free_port();
    let _throttling = throttling_sink(t_upstream);
    let t_http = free_port();
    let throttled = Relay::start(
        &t,
        &[
            "--forward-to",
            &format!("127.0.0.1:{t_upstream}"),
            "--poll",
            "1",
            "--client-connections",
            "1",
            "--http-port",
            &t_http.to_string(),
        ],
    );

    // A route paused: the upstream relay refuses our password.
    let p = root.join("paused");
    let upstream_dir = p.join("upstream");
    std::fs::create_dir_all(&upstream_dir).unwrap();
    let upstream_secrets = crate::auth::secrets(
        &upstream_dir,
        "upstream.auth",
        "server plain bob password123\n",
    );
    let p_upstream = free_port();
    let _upstream = Relay::start_on(
        &upstream_dir,
        p_upstream,
        &["--server-auth", upstream_secrets.to_str().unwrap()],
    );
    let p_http = free_port();
    let paused = Relay::start(
        &p,
        &[
            "--forward-to",
            &format!("127.0.0.1:{p_upstream}"),
            "--forward-on-disconnect",
            "--client-auth",
            "plain:Ym9i:d3Jvbmc=",
            "--client-auth-config",
            "m:plain",
            "--http-port",
            &p_http.to_string(),
        ],
    );
    assert_eq!(
        send_one(
            paused.port,
            "a@example.com",
            &["x@example.org"],
            "Subject: s\r\n\r\nx\r\n"
        ),
        "250 message processed"
    );

    // 200,000 messages waiting (no --forward-to: they stay).
    // On tmpfs where there is one: removing 400,000 names from a disk's
    // directory took minutes on a busy machine, from memory a second.
    let shm = Path::new("/dev/shm");
    let big_dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let b = big_dir.path().to_path_buf();
    let b_spool = b.join("spool");
    std::fs::create_dir_all(&b_spool).unwrap();
    let filling = Instant::now();
    fill_big(&b, &b_spool, secs);
    let fill_time = filling.elapsed();
    let b_http = free_port();
    let big = Relay::start(&b, &["--http-port", &b_http.to_string()]);

    throttled.wait_log("slowed down: the server is throttling: 432 4.3.2");
    paused.wait_log("paused: the server refused our authentication: 535");

    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let config = json!({
        "screenshots": screenshots,
        "healthy": {
            "http": h_http, "smtp": healthy.port, "spool": h_spool, "sink": sink.dir,
            "ids": { "toner": toner, "jam": jam, "scan": scan },
        },
        "throttled": { "http": t_http, "upstream": t_upstream, "spool": t_spool, "ids": t_ids },
        "paused": { "http": p_http, "upstream": p_upstream },
        "big": { "http": b_http, "pid": big.proc.pid(), "count": BIG, "rss_growth_kb": RSS_GROWTH_KB },
    });
    let driver = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/status_page.py"
    );
    let browsing = Instant::now();
    let (code, out, err) = run(
        Command::new(DEBIAN_PYTHON).args([driver, &config.to_string()]),
        Duration::from_secs(400),
    );
    assert_eq!(
        code, 0,
        "the status page failed in Chromium:\n{err}\n{out}\nhealthy:\n{}\nthrottled:\n{}\npaused:\n{}\nbig:\n{}",
        healthy.log_text(),
        throttled.log_text(),
        paused.log_text(),
        big.log_text()
    );
    eprintln!(
        "status page: spool of {BIG} written in {:.1}s, browser cases {:.1}s, whole test {:.1}s: {}",
        fill_time.as_secs_f64(),
        browsing.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        out.trim()
    );

    // What the relays said about the page's acts.
    healthy.expect_log(&format!("deleted by the operator: [{jam}]"));
    healthy.expect_log(&format!("unfailed by the operator: [{scan}]"));
    let log = healthy.log_text();
    for (id, action) in [(&toner, "retry"), (&jam, "delete"), (&scan, "unfail")] {
        let line = format!(": POST /status/message/{id}/{action}: 200");
        assert!(
            log.lines().any(
                |l| l.starts_with("emailrelay: info: http request from 127.0.0.1:")
                    && l.ends_with(&line)
            ),
            "no{line} in\n{log}"
        );
    }
    let log = throttled.log_text();
    assert!(
        log.lines().any(|l| l
            .starts_with("emailrelay: warning: http request rejected from 127.0.0.1:")
            && l.ends_with(": the status page's token is missing or wrong")),
        "{log}"
    );
    throttled.expect_log("warning: http request rejected: POST from another origin: ");
    for id in &t_ids {
        assert!(t_spool.join(format!("{id}.envelope")).exists(), "{id}");
    }
    for name in [
        "overview",
        "failures",
        "phone",
        "throttled",
        "paused",
        "big-spool",
    ] {
        let png = screenshots.join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "no screenshot {}",
            png.display()
        );
    }
}

/// curl over HTTPS against `--http-tls` with `--http-auth`: (status,
/// `WWW-Authenticate`, body).
fn curl_tls(ca: &str, url: &str, extra: &[&str]) -> (u16, String, String) {
    let (code, out, err) = run(
        Command::new(program("curl"))
            .args(["-s", "-S", "--max-time", "10", "--cacert", ca])
            .args(extra)
            .args(["-w", "\n%{http_code} %header{www-authenticate}", url]),
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "curl {url}: {err}");
    let (body, tail) = out.rsplit_once('\n').unwrap();
    let (status, challenge) = tail.split_once(' ').unwrap_or((tail, ""));
    (
        status.parse().unwrap(),
        challenge.to_string(),
        body.to_string(),
    )
}

#[test]
fn the_endpoint_over_tls_with_basic_and_bearer_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::tls::Pki::new(dir.path());
    let secrets = crate::auth::secrets(
        dir.path(),
        "http.auth",
        "server plain carol e+3Dmc2\nserver basic alice my+20password\nserver bearer prometheus tok3n\n",
    );
    let http = free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--http-port",
            &http.to_string(),
            "--http-auth",
            secrets.to_str().unwrap(),
            "--http-tls",
            "--server-tls",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
        ],
    );
    let ca = pki.path("ca.pem");
    let url = |path: &str| format!("https://127.0.0.1:{http}{path}");
    let (status, challenge, _) = curl_tls(&ca, &url("/"), &[]);
    assert_eq!(
        (status, challenge.as_str()),
        (401, "Basic realm=\"emailrelay\", charset=\"UTF-8\"")
    );
    let (status, _, body) = curl_tls(&ca, &url("/"), &["-u", "alice:my password"]);
    assert_eq!(status, 200);
    assert!(body.contains("<title>E-MailRelay status</title>"), "{body}");
    let (status, _, body) = curl_tls(
        &ca,
        &url("/status/queue"),
        &["-H", "Authorization: Bearer tok3n"],
    );
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "{\"messages\":[],\"next\":null,\"partial\":false,\"scanned\":0}\n"
        )
    );
    for wrong in [
        &["-u", "alice:wrong"][..],
        &["-u", "carol:e=mc2"],
        &["-H", "Authorization: Bearer tok"],
    ] {
        let (status, _, _) = curl_tls(&ca, &url("/metrics"), wrong);
        assert_eq!(status, 401, "{wrong:?}");
    }
    // Probes need no login.
    let (status, _, body) = curl_tls(&ca, &url("/healthz"), &[]);
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    relay.expect_log("warning: http request rejected: authentication failed");
    // Plain HTTP gets no answer from a TLS port.
    let (code, _, _) = run(
        Command::new(program("curl")).args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{http}/healthz"),
        ]),
        Duration::from_secs(20),
    );
    assert_ne!(code, 0);
}
