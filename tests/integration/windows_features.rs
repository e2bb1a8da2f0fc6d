//! The rest of the relay on Windows (issue 23, item 8): the Windows build
//! under Wine, driven by real programs on Linux over loopback.
//!
//! - TLS both ways: swaks `--tls` checking our STARTTLS server against the
//!   test CA, our STARTTLS client verifying Postfix (and showing it a client
//!   certificate), implicit TLS to `openssl s_server`, and
//!   `--client-tls-verify <default>`, which on Windows means the system's
//!   ROOT store: refused until the test CA is added to the user's ROOT store
//!   (see [`trust_for_this_user`] for why the user's and not the machine's).
//! - OAuth 2.0: the access token fetched over HTTPS from a Python token
//!   endpoint (trusted through the same store), XOAUTH2 upstream.
//! - The admin interface, POP (Python's poplib), the HTTP endpoint (curl),
//!   named instances with a JScript filter, `emailrelay-submit.exe` and
//!   `emailrelay-passwd.exe`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{
    free_port, greets, program, run, run_with_input, spool_files, submit_to, wait_until, Client,
    Proc, Sink,
};
use crate::tls::{postfix_with_tls, Pki, SServer};
use crate::wine::{windows_bin, winpath, Wine};

/// `emailrelay.exe` running under Wine, logging verbosely to its own file.
struct WinRelay {
    proc: Proc,
    log: PathBuf,
}

impl WinRelay {
    /// Starts `emailrelay.exe` with `args` (after `--log --verbose
    /// --log-file <dir>/relay.log`); waits until the log has every line of
    /// `ready` and every port of `greeting` greets.
    fn start(wine: &Wine, dir: &Path, args: &[&str], ready: &[String], greeting: &[u16]) -> Self {
        let log = dir.join("relay.log");
        let stderr = std::fs::File::create(dir.join("relay-stderr.txt")).unwrap();
        let proc = Proc::spawn(
            wine.command(&windows_bin("emailrelay.exe"))
                .args(["--log", "--verbose", "--log-file"])
                .arg(winpath(&log))
                .args(args)
                .stdout(Stdio::null())
                .stderr(stderr),
        );
        let relay = WinRelay { proc, log };
        let up = wait_until(Duration::from_secs(60), || {
            let text = relay.log_text();
            ready.iter().all(|line| text.contains(line.as_str()))
                && greeting.iter().all(|port| greets(*port))
        });
        assert!(
            up,
            "emailrelay.exe did not start under Wine: {}{}",
            relay.log_text(),
            std::fs::read_to_string(dir.join("relay-stderr.txt")).unwrap_or_default()
        );
        relay
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (20 s at most) for `line` in the log, failing the test without it.
    fn expect_log(&self, line: &str) -> String {
        wait_until(Duration::from_secs(20), || self.log_text().contains(line));
        let log = self.log_text();
        assert!(log.contains(line), "no [{line}] in the log:\n{log}");
        log
    }
}

/// Runs one of our Windows programs to completion under Wine with `input`
/// on its standard input; (exit code, stdout, stderr).
fn run_exe(wine: &Wine, exe: &str, args: &[&str], input: Option<&[u8]>) -> (i32, String, String) {
    run_with_input(
        wine.command(&windows_bin(exe)).args(args),
        input,
        Duration::from_secs(90),
    )
}

/// `emailrelay.exe --as-client` forwarding `spool` once to `target`,
/// with `args`; (exit code, the relay's own lines on stderr, LF ends).
fn forward_once(wine: &Wine, spool: &Path, target: &str, args: &[&str]) -> (i32, String) {
    let spool = winpath(spool);
    let mut all = vec![
        "--as-client",
        target,
        "--log",
        "--verbose",
        "--spool-dir",
        &spool,
    ];
    all.extend_from_slice(args);
    let (code, _, err) = run_exe(wine, "emailrelay.exe", &all, None);
    (code, relay_lines(&err))
}

/// The lines a Windows program of ours wrote (`emailrelay...: `), LF ended:
/// the `wine` command's own notices left out.
fn relay_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("emailrelay"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Adds the CA certificate `ca_pem` to the current user's trusted root
/// store in the Wine prefix, as the Certificates snap-in or `certutil -user
/// -addstore Root` would on Windows: the registry key
/// `HKCU\Software\Microsoft\SystemCertificates\Root\Certificates\<SHA-1>`
/// whose `Blob` is the certificate as a serialized store element (property
/// 32, CERT_CERT_PROP_ID: the DER encoding), written with `regedit /S`.
///
/// Not the machine's store (`HKLM\...\Root`, where `certutil -addstore
/// Root` puts it on Windows): Wine keeps that key in step with the host's
/// CA list (/etc/ssl/certs) and, on each process's first use of the store,
/// deletes every entry the host list lacks (crypt32's
/// `sync_trusted_roots_from_known_locations`), so a certificate written
/// there is gone before our relay reads it. The user's store is left alone
/// and is part of the `ROOT` system store the relay opens.
fn trust_for_this_user(wine: &Wine, dir: &Path, ca_pem: &str) {
    let cert = openssl::x509::X509::from_pem(&std::fs::read(ca_pem).unwrap()).unwrap();
    let der = cert.to_der().unwrap();
    let sha1: String = openssl::sha::sha1(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let mut blob = Vec::new();
    for word in [32u32, 1, der.len() as u32] {
        blob.extend_from_slice(&word.to_le_bytes());
    }
    blob.extend_from_slice(&der);
    let hex: Vec<String> = blob.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!(
        "HKEY_CURRENT_USER\\Software\\Microsoft\\SystemCertificates\\Root\\Certificates\\{sha1}"
    );
    let reg = dir.join("trust.reg");
    std::fs::write(
        &reg,
        format!(
            "REGEDIT4\r\n\r\n[{key}]\r\n\"Blob\"=hex:{}\r\n",
            hex.join(",")
        ),
    )
    .unwrap();
    let (code, out, err) = run(
        wine.command(Path::new("regedit"))
            .arg("/S")
            .arg(winpath(&reg)),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "regedit: {out}{err}");
    let (code, out, err) = run(
        wine.command(Path::new("reg")).args(["query", &key]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "reg query: {out}{err}");
    assert!(out.contains("Blob    REG_BINARY    "), "{out}");
}

/// The reason and reason code of the one failed envelope in `spool`, CRLF
/// between them.
fn failure_reason(spool: &Path) -> String {
    let bad = spool_files(spool, ".envelope.bad");
    assert_eq!(bad.len(), 1, "{:?}", spool_files(spool, ""));
    let text = std::fs::read_to_string(spool.join(&bad[0])).unwrap();
    let value = |key: &str| {
        text.split("\r\n")
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_default()
            .to_string()
    };
    format!(
        "{}\r\n{}",
        value("X-MailRelay-Reason: "),
        value("X-MailRelay-ReasonCode: ")
    )
}

/// Sends `count` messages over one connection with Python's smtplib.
fn send_with_smtplib(port: u16, count: usize) {
    let script = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=30)\n\
         for i in range({count}):\n    \
             s.sendmail('a@example.com', ['b@example.org'], 'Subject: n-%d\\r\\n\\r\\nbody %d\\r\\n' % (i, i))\n\
         s.quit()\n"
    );
    let (code, _, err) = run(
        Command::new("python3").args(["-c", &script]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "smtplib: {err}");
}

/// Message ids (envelope names less `.envelope`) in `spool`, sorted.
fn ids(spool: &Path) -> Vec<String> {
    spool_files(spool, ".envelope")
        .iter()
        .map(|n| n.trim_end_matches(".envelope").to_string())
        .collect()
}

#[test]
fn starttls_both_ways_checked_by_swaks_and_postfix_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d);
    let postfix = postfix_with_tls(d, &pki, "");
    std::fs::create_dir(d.join("spool")).unwrap();
    let port = free_port();
    let win = |name: &str| winpath(Path::new(&pki.path(name)));
    let (cert, ca, client_key, client_pem) = (
        win("server-all.pem"),
        win("ca.pem"),
        win("client.key"),
        win("client.pem"),
    );
    let (spool, port_text, upstream) = (
        winpath(&d.join("spool")),
        port.to_string(),
        postfix.address(),
    );
    let relay = WinRelay::start(
        &wine,
        d,
        &[
            "--interface",
            "127.0.0.1",
            "--port",
            &port_text,
            "--spool-dir",
            &spool,
            "--server-tls",
            "--server-tls-certificate",
            &cert,
            "--forward-to",
            &upstream,
            "--forward-on-disconnect",
            "--client-tls",
            "--client-tls-verify",
            &ca,
            "--client-tls-verify-name",
            "localhost",
            "--client-tls-certificate",
            &client_key,
            "--client-tls-certificate",
            &client_pem,
        ],
        &[format!("smtp server on 127.0.0.1:{port}")],
        &[port],
    );
    // swaks: STARTTLS, our certificate checked against the test CA.
    let (code, out, err) = run(
        Command::new(program("swaks"))
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args([
                "--tls",
                "--tls-verify",
                "--tls-ca-path",
                &pki.path("ca.pem"),
            ])
            .args(["--from", "alice@example.com", "--to", "bob@example.org"])
            .args(["--header", "Subject: tls both ways", "--body", "secret"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "<-  220 ready to start tls\n",
        "=== TLS started with cipher TLSv1.3:TLS_AES_256_GCM_SHA384:256\n",
        "=== TLS peer DN=\"/CN=server\"\n",
        "<~  250 message processed\n",
    ] {
        assert!(out.contains(line), "no [{line}] in:\n{out}");
    }
    // Forwarded on disconnect over STARTTLS to Postfix, which trusted our
    // client certificate; we checked its certificate and name.
    assert!(
        wait_until(Duration::from_secs(30), || postfix.delivered().len() == 1),
        "{}\n{}",
        relay.log_text(),
        postfix.log_text()
    );
    let delivered = &postfix.delivered()[0];
    assert!(
        delivered.contains("\nSubject: tls both ways\n"),
        "{delivered}"
    );
    assert!(delivered.contains("\nsecret\n"), "{delivered}");
    let maillog = postfix.log_text();
    assert!(
        maillog.contains("Trusted TLS connection established from localhost[127.0.0.1]: TLSv1.3"),
        "{maillog}"
    );
    let log = relay.expect_log("emailrelay: info: forwarding: no more messages to send\r\n");
    assert!(
        log.contains("emailrelay: info: tx>>: \"STARTTLS\"\r\n"),
        "{log}"
    );
    assert_eq!(
        log.matches("emailrelay: info: tls session established: TLSv1.3 ")
            .count(),
        2,
        "one each way:\n{log}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || spool_files(
            &d.join("spool"),
            ""
        )
        .is_empty()),
        "{:?}",
        spool_files(&d.join("spool"), "")
    );
}

#[test]
fn implicit_tls_and_default_roots_from_the_windows_root_store() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d);
    let spool = d.join("spool");
    let ca = winpath(Path::new(&pki.path("ca.pem")));

    // Implicit TLS (--client-tls-connection) to s_server, verified
    // against a CA file.
    submit_to(&spool, "x@y.z");
    let server = SServer::start(&pki, "server", &[]);
    let target = format!("127.0.0.1:{}", server.port);
    let (code, err) = forward_once(
        &wine,
        &spool,
        &target,
        &["--client-tls-connection", "--client-tls-verify", &ca],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "emailrelay: info: smtp connection to {target}\n\
             emailrelay: info: tls session established: TLSv1.3 TLS_AES_256_GCM_SHA384\n\
             emailrelay: info: rx<<: \"220 s_server ESMTP\"\n"
        )),
        "{err}"
    );
    let received = server.received.lock().unwrap().clone();
    assert!(received[0].starts_with("EHLO "), "{received:?}");
    assert_eq!(
        received[1..],
        [
            "MAIL FROM:<anonymous>",
            "RCPT TO:<x@y.z>",
            "DATA",
            "Subject: help",
            "",
            ".",
            "QUIT"
        ],
        "{received:?}"
    );
    assert!(spool_files(&spool, "").is_empty(), "{err}");

    // <default>: the system's ROOT store, which does not have the test CA.
    submit_to(&spool, "y@y.z");
    let server = SServer::start(&pki, "server", &[]);
    let target = format!("127.0.0.1:{}", server.port);
    let default = [
        "--client-tls-connection",
        "--client-tls-verify",
        "<default>",
    ];
    let (code, err) = forward_once(&wine, &spool, &target, &default);
    assert_eq!(code, 1, "{err}");
    let reason = "tls error: server [127.0.0.1] certificate [CN=server] issued by [CN=ca] \
                  refused: unable to get local issuer certificate: its issuer is not in the CA \
                  list of --client-tls-verify";
    assert!(
        err.contains(&format!(
            "emailrelay: warning: smtp client error: {reason}\n"
        )),
        "{err}"
    );
    assert_eq!(failure_reason(&spool), format!("{reason}\r\n554"));
    assert!(!server
        .received
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("MAIL")));

    // The test CA in the user's ROOT store: now <default> trusts it.
    trust_for_this_user(&wine, d, &pki.path("ca.pem"));
    submit_to(&spool, "z@y.z");
    let server = SServer::start(&pki, "server", &[]);
    let target = format!("127.0.0.1:{}", server.port);
    let (code, err) = forward_once(&wine, &spool, &target, &default);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("emailrelay: info: tls session established: TLSv1.3 TLS_AES_256_GCM_SHA384\n"),
        "{err}"
    );
    let received = server.received.lock().unwrap().clone();
    assert_eq!(received[2], "RCPT TO:<z@y.z>", "{received:?}");
    assert_eq!(received.last().unwrap(), "QUIT", "{received:?}");
    // Only the message refused before is left, failed.
    assert_eq!(spool_files(&spool, "").len(), 2, "{err}");
    assert_eq!(spool_files(&spool, ".envelope.bad").len(), 1);
}

/// A token endpoint over HTTPS (Python's http.server with the test PKI's
/// server certificate): takes the refresh-token grant for client `cid`
/// with refresh token `rt-0` and answers `at-1`/`rt-1`, anything else
/// 400; prints its port, then each request's path and body.
const HTTPS_TOKEN_ENDPOINT: &str = r#"
import http.server, json, ssl, sys, urllib.parse
class Endpoint(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        print(self.path, body, flush=True)
        form = dict(urllib.parse.parse_qsl(body))
        if form == {"grant_type": "refresh_token", "refresh_token": "rt-0", "client_id": "cid"}:
            status, reply = 200, {"access_token": "at-1", "refresh_token": "rt-1",
                                  "expires_in": 3600, "token_type": "Bearer"}
        else:
            status, reply = 400, {"error": "invalid_grant"}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Endpoint)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

#[test]
fn oauth2_token_over_https_and_xoauth2_forwarding_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new(d);
    let mut endpoint = Proc {
        child: Command::new("python3")
            .args(["-c", HTTPS_TOKEN_ENDPOINT])
            .args([pki.path("server.pem"), pki.path("server.key")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let mut lines = BufReader::new(endpoint.child.stdout.take().unwrap()).lines();
    let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for line in lines.take(100).map_while(Result::ok) {
            seen.lock().unwrap().push(line);
        }
    });
    std::fs::write(
        d.join("bob.oauth2"),
        format!(
            "token-url = https://localhost:{port}/token\nclient-id = cid\nrefresh-token = rt-0\n"
        ),
    )
    .unwrap();
    let secrets = d.join("client.auth");
    std::fs::write(&secrets, "client oauth2 bob@example.com bob.oauth2\n").unwrap();
    let secrets = winpath(&secrets);
    let (upstream, taken) =
        crate::oauth::xoauth2_upstream("bob@example.com", Arc::new(|| "at-1".to_string()));
    let upstream = format!("127.0.0.1:{upstream}");
    let spool = d.join("spool");
    submit_to(&spool, "carol@example.org");

    // The endpoint's certificate is from a CA Windows does not trust yet:
    // no token, the message stays (not failed), and nothing was asked.
    let (code, err) = forward_once(&wine, &spool, &upstream, &["--client-auth", &secrets]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "emailrelay: error: oauth2: cannot get an access token for bob@example.com from \
             https://localhost:{port}/token: tls error: certificate of the server \
             [localhost] refused: unable to get local issuer certificate: mail for this \
             account stays in the spool\n\
             emailrelay: info: forwarding: no more messages to send\n"
        )),
        "{err}"
    );
    assert_eq!(taken.load(Ordering::SeqCst), 0);
    assert_eq!(spool_files(&spool, ".envelope").len(), 1, "{err}");
    assert!(requests.lock().unwrap().is_empty());

    // Trusted: the token comes over HTTPS and XOAUTH2 takes it.
    trust_for_this_user(&wine, d, &pki.path("ca.pem"));
    let (code, err) = forward_once(&wine, &spool, &upstream, &["--client-auth", &secrets]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(taken.load(Ordering::SeqCst), 1, "{err}");
    assert!(
        err.contains("emailrelay: info: tx>>: \"AUTH XOAUTH2 [not logged]\"\n"),
        "{err}"
    );
    assert!(!err.contains("at-1") && !err.contains("rt-"), "{err}");
    assert!(spool_files(&spool, "").is_empty(), "{err}");
    assert_eq!(
        *requests.lock().unwrap(),
        ["/token client_id=cid&grant_type=refresh_token&refresh_token=rt-0"]
    );
    // The rotated refresh token is kept in the account file.
    let account = std::fs::read_to_string(d.join("bob.oauth2")).unwrap();
    assert!(account.ends_with("refresh-token = rt-1\n"), "{account:?}");
}

#[test]
fn admin_interface_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("spool")).unwrap();
    let sink = Sink::start(d);
    let (port, admin) = (free_port(), free_port());
    let (spool, pid_file) = (winpath(&d.join("spool")), winpath(&d.join("relay.pid")));
    let (port_text, admin_text, upstream) = (port.to_string(), admin.to_string(), sink.address());
    let mut relay = WinRelay::start(
        &wine,
        d,
        &[
            "--interface",
            "127.0.0.1",
            "--port",
            &port_text,
            "--spool-dir",
            &spool,
            "--admin",
            &admin_text,
            "--admin-terminate",
            "--forward-to",
            &upstream,
            "--pid-file",
            &pid_file,
        ],
        &[format!("admin server on 127.0.0.1:{admin}")],
        &[port],
    );
    let mut a = Client::connect(admin);
    let mut ask = |cmd: &str| {
        a.send(&format!("{cmd}\r\n"));
        a.read_until("E-MailRelay> ")
            .trim_end_matches("E-MailRelay> ")
            .to_string()
    };
    assert_eq!(
        ask("help"),
        "commands: dnsbl, failures, flush, forward, help, info, list, notify, pid, quit, smtp, \
         status, terminate, unfail-all\r\n"
    );
    assert_eq!(ask("list"), "<none>\r\n");
    assert_eq!(ask("flush"), "error: no messages to send\r\n");
    // The Windows process id, as the pid file has it.
    let pid = std::fs::read_to_string(d.join("relay.pid")).unwrap();
    assert_eq!(ask("pid"), format!("{}\r\n", pid.trim_end()));
    assert_eq!(ask("smtp disable"), "OK\r\n");
    let mut disabled = Client::connect(port);
    assert_eq!(disabled.reply(), "421 service not available\r\n");
    assert_eq!(ask("smtp enable"), "OK\r\n");
    send_with_smtplib(port, 1);
    let listed = ask("list");
    assert_eq!(listed, format!("{}\r\n", ids(&d.join("spool"))[0]));
    let mut status = String::new();
    for _ in 0..50 {
        status = ask("status");
        if status.contains("IN finished: 2\r") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        status.starts_with(&format!(
            "LISTEN: 127.0.0.1:{port}\r\r\nLISTEN: 127.0.0.1:{admin}\r\r\nOUT started: 0\r\r\n\
             OUT finished: 0\r\r\nIN started: 4\r\r\nIN finished: 2\r\r\n\
             IN: 127.0.0.1:{admin} <- 127.0.0.1:"
        )),
        "{status:?}"
    );
    drop(disabled);
    assert_eq!(ask("flush"), "OK\r\n");
    assert_eq!(sink.messages().len(), 1);
    assert!(sink.messages()[0].contains("\nSubject: n-0\n"));
    assert_eq!(ask("list"), "<none>\r\n");
    assert!(spool_files(&d.join("spool"), "").is_empty());
    // forward: a pass in the background, which finds nothing to send.
    send_with_smtplib(port, 1);
    assert_eq!(ask("forward"), "OK\r\n");
    assert!(
        wait_until(Duration::from_secs(20), || sink.messages().len() == 2
            && spool_files(&d.join("spool"), "").is_empty()),
        "{}",
        relay.log_text()
    );
    // terminate: the connection closes and the relay exits, status 0.
    a.send("terminate\r\n");
    assert_eq!(a.read_until("E-MailRelay> "), "");
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(30)), Some(0));
    let log = relay.log_text();
    assert!(
        log.contains("emailrelay: info: received a terminate command from 127.0.0.1:"),
        "{log}"
    );
}

#[test]
fn pop_with_poplib_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("spool")).unwrap();
    std::fs::write(d.join("pop.auth"), "server plain alice secret1\n").unwrap();
    let (port, pop) = (free_port(), free_port());
    let (spool, auth) = (winpath(&d.join("spool")), winpath(&d.join("pop.auth")));
    let (port_text, pop_text) = (port.to_string(), pop.to_string());
    let _relay = WinRelay::start(
        &wine,
        d,
        &[
            "--interface",
            "127.0.0.1",
            "--port",
            &port_text,
            "--spool-dir",
            &spool,
            "--pop",
            "--pop-port",
            &pop_text,
            "--pop-auth",
            &auth,
        ],
        &[format!("pop server on 127.0.0.1:{pop}")],
        &[port],
    );
    send_with_smtplib(port, 2);
    let before = ids(&d.join("spool"));
    assert_eq!(before.len(), 2);
    let script = r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
print(p.user("alice"))
print(p.pass_("secret1"))
print(p.stat()[0])
resp, lines, octets = p.retr(1)
print(resp.split()[0], [l for l in lines if l.startswith(b"Subject") or l.startswith(b"body")])
print(p.dele(1))
print(p.quit())
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
print(p.user("alice"))
print(p.pass_("wrong"))
"#;
    let (code, out, err) = run(
        Command::new("python3").args(["-c", script, &pop.to_string()]),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "b'+OK user: alice'",
            "b'+OK'",
            "2",
            "b'+OK' [b'Subject: n-0', b'body 0']",
            "b'+OK'",
            "b'+OK signing off'",
            "b'+OK user: alice'",
        ],
        "{err}"
    );
    assert_ne!(code, 0);
    assert!(err.ends_with("poplib.error_proto: b'-ERR'\n"), "{err}");
    // The first message's files are gone, the second's are left.
    assert_eq!(
        spool_files(&d.join("spool"), ""),
        [
            format!("{}.content", before[1]),
            format!("{}.envelope", before[1])
        ]
    );
}

/// `--pop-by-name` with the `copy:pop` filter: the envelope copied into
/// each user's directory, the content left in the spool and shared; each
/// user collects with poplib, and the content goes with the last envelope.
#[test]
fn pop_by_name_with_copy_pop_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spool = d.join("spool");
    for user in ["alice", "bob"] {
        std::fs::create_dir_all(spool.join(user)).unwrap();
    }
    std::fs::write(
        d.join("pop.auth"),
        "server plain alice secret1\nserver plain bob secret2\n",
    )
    .unwrap();
    let (port, pop) = (free_port(), free_port());
    let (spool_text, auth) = (winpath(&spool), winpath(&d.join("pop.auth")));
    let (port_text, pop_text) = (port.to_string(), pop.to_string());
    let _relay = WinRelay::start(
        &wine,
        d,
        &[
            "--interface",
            "127.0.0.1",
            "--port",
            &port_text,
            "--spool-dir",
            &spool_text,
            "--pop",
            "--pop-port",
            &pop_text,
            "--pop-auth",
            &auth,
            "--pop-by-name",
            "--filter",
            "copy:pop",
        ],
        &[format!("pop server on 127.0.0.1:{pop}")],
        &[port],
    );
    send_with_smtplib(port, 1);
    let contents = spool_files(&spool, ".content");
    assert_eq!(contents.len(), 1, "{:?}", spool_files(&spool, ""));
    assert!(spool_files(&spool, ".envelope").is_empty());
    let id = contents[0].trim_end_matches(".content").to_string();
    for user in ["alice", "bob"] {
        assert_eq!(
            spool_files(&spool.join(user), ""),
            [format!("{id}.envelope")]
        );
    }
    let script = r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
print(p.user(sys.argv[2]))
print(p.pass_(sys.argv[3]))
print(p.stat()[0])
resp, lines, octets = p.retr(1)
print(resp.split()[0], [l for l in lines if l.startswith(b"Subject") or l.startswith(b"body")])
print(p.dele(1))
print(p.quit())
"#;
    for (user, password, content_left) in [("alice", "secret1", 1), ("bob", "secret2", 0)] {
        let (code, out, err) = run(
            Command::new("python3").args(["-c", script, &pop.to_string(), user, password]),
            Duration::from_secs(60),
        );
        assert_eq!(code, 0, "{user}: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                format!("b'+OK user: {user}'").as_str(),
                "b'+OK'",
                "1",
                "b'+OK' [b'Subject: n-0', b'body 0']",
                "b'+OK'",
                "b'+OK signing off'",
            ],
            "{user}: {err}"
        );
        // Removed at QUIT, before its reply: nothing to wait for.
        assert!(spool_files(&spool.join(user), "").is_empty(), "{user}");
        assert_eq!(
            spool_files(&spool, ".content").len(),
            content_left,
            "after {user}"
        );
    }
    assert_eq!(spool_files(&spool, ""), ["alice", "bob"]);
}

/// One HTTP exchange with curl: (status, content type, body).
fn curl(method: &str, url: &str) -> (u16, String, String) {
    let (code, out, err) = run(
        Command::new(program("curl"))
            .args(["-s", "-S", "--max-time", "20", "-X", method])
            .args(["-w", "\n%{http_code} %{content_type}", url]),
        Duration::from_secs(30),
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

#[test]
fn http_endpoint_with_curl_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("spool")).unwrap();
    let (port, http) = (free_port(), free_port());
    let spool = winpath(&d.join("spool"));
    let (port_text, http_text) = (port.to_string(), http.to_string());
    // Forwarding to a port where nothing listens, never tried unasked.
    let upstream = format!("127.0.0.1:{}", free_port());
    let relay = WinRelay::start(
        &wine,
        d,
        &[
            "--interface",
            "127.0.0.1",
            "--port",
            &port_text,
            "--spool-dir",
            &spool,
            "--forward-to",
            &upstream,
            "--http-port",
            &http_text,
        ],
        &[format!("http server on 127.0.0.1:{http}")],
        &[port],
    );
    let url = |path: &str| format!("http://127.0.0.1:{http}{path}");
    assert_eq!(
        curl("GET", &url("/healthz")),
        (200, "text/plain; charset=utf-8".into(), "OK\n".into())
    );
    send_with_smtplib(port, 2);
    let (status, content_type, metrics) = curl("GET", &url("/metrics"));
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/plain; version=0.0.4; charset=utf-8")
    );
    for line in [
        "\nemailrelay_queued_messages 2\n",
        "\nemailrelay_failed_messages 0\n",
        "\nemailrelay_messages_received_total 2\n",
        "\nemailrelay_open_connections{direction=\"in\"} 0\n",
        "\nemailrelay_open_connections{direction=\"out\"} 0\n",
    ] {
        assert!(metrics.contains(line), "no [{line}] in:\n{metrics}");
    }
    let (status, content_type, body) = curl("GET", &url("/queue"));
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let queue: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (queue["queued"].as_u64(), queue["failed"].as_u64()),
        (Some(2), Some(0)),
        "{queue}"
    );
    let spooled = ids(&d.join("spool"));
    let mut listed: Vec<String> = queue["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, spooled);
    let first = &queue["messages"][0];
    assert_eq!(first["state"], "queued");
    assert_eq!(first["from"], "a@example.com");
    assert_eq!(first["to"], serde_json::json!(["b@example.org"]));
    let id = first["id"].as_str().unwrap();
    let size = std::fs::metadata(d.join("spool").join(format!("{id}.content")))
        .unwrap()
        .len();
    assert_eq!(first["size"].as_u64(), Some(size));
    // Deleting one through the endpoint removes its files.
    let (status, _, body) = curl("DELETE", &url(&format!("/queue/{id}")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids(&d.join("spool")),
        spooled.into_iter().filter(|s| s != id).collect::<Vec<_>>()
    );
    assert!(!d.join("spool").join(format!("{id}.content")).exists());
    relay.expect_log(&format!(": DELETE /queue/{id}: 200"));
}

/// A JScript filter (run by `cscript.exe`) adding a header.
const HEADER_JS: &str = "var fs = new ActiveXObject(\"Scripting.FileSystemObject\");\r\n\
    var path = WScript.Arguments(0);\r\n\
    var file = fs.OpenTextFile(path, 1);\r\n\
    var text = file.ReadAll();\r\n\
    file.Close();\r\n\
    file = fs.OpenTextFile(path, 2);\r\n\
    file.Write(\"X-Filtered: by-in\\r\\n\" + text);\r\n\
    file.Close();\r\n\
    WScript.Quit(0);\r\n";

#[test]
fn named_instances_from_a_config_file_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sink = Sink::start(d);
    for spool in ["in", "out"] {
        std::fs::create_dir(d.join(spool)).unwrap();
    }
    std::fs::write(d.join("add-header.js"), HEADER_JS).unwrap();
    let (in_port, out_port) = (free_port(), free_port());
    let conf = format!(
        "log-format unit\r\n\
         in-spool-dir {in_spool}\r\nin-port {in_port}\r\nin-interface 127.0.0.1\r\n\
         in-domain in.example.com\r\nin-filter {filter}\r\n\
         in-forward-to 127.0.0.1:{out_port}\r\nin-forward-on-disconnect\r\n\
         out-spool-dir {out_spool}\r\nout-port {out_port}\r\nout-interface 127.0.0.1\r\n\
         out-domain out.example.com\r\n\
         out-forward-to {sink}\r\nout-forward-on-disconnect\r\n",
        in_spool = winpath(&d.join("in")),
        out_spool = winpath(&d.join("out")),
        filter = winpath(&d.join("add-header.js")),
        sink = sink.address(),
    );
    std::fs::write(d.join("emailrelay.cfg"), conf).unwrap();
    let cfg = winpath(&d.join("emailrelay.cfg"));
    let relay = WinRelay::start(
        &wine,
        d,
        &[&cfg],
        &[format!("[out] smtp server on 127.0.0.1:{out_port}")],
        &[in_port, out_port],
    );
    let (code, out, err) = run(
        Command::new(program("swaks"))
            .args(["--server", &format!("127.0.0.1:{in_port}")])
            .args(["--from", "alice@example.com", "--to", "bob@example.org"])
            .args(["--header", "Subject: n-1", "--body", "hello"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("<-  250 message processed"), "{out}");
    // Both spools empty: out has had smtp-sink's 250 for the message.
    assert!(
        wait_until(Duration::from_secs(60), || {
            spool_files(&d.join("in"), "").is_empty()
                && spool_files(&d.join("out"), "").is_empty()
                && sink.messages().len() == 1
        }),
        "{}",
        relay.log_text()
    );
    let message = &sink.messages()[0];
    assert!(message.contains("\nX-Filtered: by-in\n"), "{message}");
    assert!(message.contains("\nSubject: n-1\n"), "{message}");
    // Each instance put its own Received line on: out's above in's.
    let out_received = message.find("by out.example.com").unwrap();
    let in_received = message.find("by in.example.com").unwrap();
    assert!(out_received < in_received, "{message}");
    let log = relay.log_text();
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.trim_start_matches("emailrelay: "))
        .collect();
    assert_eq!(
        lines[..4],
        [
            format!("info: [in] smtp server on 127.0.0.1:{in_port}"),
            format!("info: [in] forwarding to 127.0.0.1:{out_port}"),
            format!("info: [out] smtp server on 127.0.0.1:{out_port}"),
            format!("info: [out] forwarding to {}", sink.address()),
        ],
        "{log}"
    );
    let has = |prefix: &str, text: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(text))
    };
    assert!(
        has("info: [in] ", "rx<<: \"MAIL FROM:<alice@example.com>"),
        "{log}"
    );
    assert!(has("info: [in] ", "forwarding [emailrelay."), "{log}");
    assert!(
        has("info: [out] ", "rx<<: \"MAIL FROM:<alice@example.com>"),
        "{log}"
    );
    assert!(has("info: [out] ", "forwarding [emailrelay."), "{log}");
}

#[test]
fn submit_exe_spools_a_message_the_relay_forwards_and_passwd_exe_hashes_as_on_linux() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("spool")).unwrap();
    let spool = winpath(&d.join("spool"));
    let (code, out, err) = run_exe(
        &wine,
        "emailrelay-submit.exe",
        &[
            "--spool-dir",
            &spool,
            "--from",
            "alice@example.com",
            "bob@example.org",
        ],
        Some(b"Subject: from submit\r\n\r\nsubmitted under Wine\r\n"),
    );
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let names = spool_files(&d.join("spool"), "");
    assert_eq!(names.len(), 2, "{names:?}");
    let envelope = std::fs::read_to_string(d.join("spool").join(&names[1])).unwrap();
    for field in [
        "X-MailRelay-Format: #2821.8\r\n",
        "X-MailRelay-From: alice@example.com\r\n",
        "X-MailRelay-ToCount: 1\r\n",
        "X-MailRelay-To-Remote: bob@example.org\r\n",
        "X-MailRelay-End: 1\r\n",
    ] {
        assert!(envelope.contains(field), "no [{field}] in:\n{envelope}");
    }
    // The relay, also under Wine, forwards it to smtp-sink.
    let sink = Sink::start(d);
    let (code, err) = forward_once(&wine, &d.join("spool"), &sink.address(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("emailrelay: info: tx>>: \"RCPT TO:<bob@example.org>\"\n"),
        "{err}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || sink.messages().len() == 1),
        "{err}"
    );
    let message = &sink.messages()[0];
    assert!(message.contains("\nSubject: from submit\n"), "{message}");
    assert!(message.contains("\nsubmitted under Wine\n"), "{message}");
    assert!(spool_files(&d.join("spool"), "").is_empty());

    // emailrelay-passwd.exe: the Linux build's hash, line for line (CRLF
    // on Windows), for the default and the dotted form.
    let linux = env!("CARGO_BIN_EXE_emailrelay-passwd");
    for (args, password) in [
        (&[][..], "password123\n"),
        (&[][..], "e=mc2\r\n"),
        (&["--dotted"][..], "my password\n"),
    ] {
        let (code, expected, err) = run_with_input(
            Command::new(linux).args(args),
            Some(password.as_bytes()),
            Duration::from_secs(10),
        );
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = run_exe(
            &wine,
            "emailrelay-passwd.exe",
            args,
            Some(password.as_bytes()),
        );
        assert_eq!(
            (code, out),
            (0, expected.replace('\n', "\r\n")),
            "{args:?} {password:?}: {err}"
        );
    }
    let (_, out, _) = run_exe(&wine, "emailrelay-passwd.exe", &[], Some(b"password123\n"));
    assert_eq!(out, "9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=\r\n");
}

/// Microsoft Graph from the Windows build (issue 26): `emailrelay.exe`
/// under Wine gets its token with the app certificate (a signed client
/// assertion), trusts the stand-in through the account file's `ca-file`,
/// and sends each spooled message by `sendMail`; the strict stand-in
/// (graph_standin.py, the one the Linux tests use) sees no deviation, and
/// the messages arrive as spooled, with a `Bcc` field for the recipient
/// only the envelope names.
#[test]
fn graph_sendmail_with_an_app_certificate_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::graph::make_certificates(d);
    let standin = crate::graph::StandIn::start(d, &[]);
    crate::graph::graph_account(d, &standin);
    // The account file by its Windows name; paths inside it are relative
    // to it.
    let secrets = d.join("client.auth");
    std::fs::write(
        &secrets,
        format!(
            "client oauth2 {} {}\n",
            crate::graph::MAILBOX,
            winpath(&d.join("printer.oauth2"))
        ),
    )
    .unwrap();
    let spool = d.join("spool");
    submit_to(&spool, "carol@fabrikam.example");
    submit_to(&spool, "dave@fabrikam.example");
    // What should arrive: the content names no recipient, so each message
    // goes as a Bcc field for its envelope's recipient + what was spooled.
    let mut expected: Vec<Vec<u8>> = spool_files(&spool, ".envelope")
        .iter()
        .map(|name| {
            let envelope = std::fs::read_to_string(spool.join(name)).unwrap();
            let to = envelope
                .lines()
                .find_map(|l| l.strip_prefix("X-MailRelay-To-Remote: "))
                .unwrap()
                .to_string();
            let content = name.replace(".envelope", ".content");
            let mut one = format!("Bcc: {to}\r\n").into_bytes();
            one.extend_from_slice(&std::fs::read(spool.join(content)).unwrap());
            one
        })
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 2);

    let (code, err) = forward_once(
        &wine,
        &spool,
        "graph.microsoft.com:443",
        &["--client-auth", &winpath(&secrets)],
    );
    assert_eq!(code, 0, "{err}");
    let line = format!(
        "emailrelay: info: graph connection to 127.0.0.1:{}\n",
        standin.port
    );
    assert_eq!(err.matches(&line).count(), 2, "{err}");
    assert!(!err.contains("smtp connection"), "{err}");
    assert!(spool_files(&spool, "").is_empty(), "{err}");
    assert_eq!(standin.statuses(), [202, 202]);
    let mut mail = standin.mail();
    mail.sort();
    assert_eq!(
        mail,
        expected,
        "{}",
        String::from_utf8_lossy(&mail.concat())
    );
    standin.assert_no_violations();
}
