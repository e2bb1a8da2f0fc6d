//! TLS both ways, and SOCKS 4a. Certificates are made by the openssl
//! command at test time. Our server is checked with openssl s_client
//! (STARTTLS and implicit TLS) and swaks; our client with Postfix (STARTTLS,
//! wrapper mode, client certificates) and openssl s_server driven line by
//! line. The injection tests use raw sockets and rustls in the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::harness::{
    free_port, program, run, run_with_input, send_one, spool_files, submit_one, submit_to,
    wait_until, Client, Postfix, Proc, Relay, Sink, RELAY,
};

/// A test PKI: a CA with a server certificate (localhost, 127.0.0.1) and a
/// client certificate, and a second, untrusted CA with one of each.
pub(crate) struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub(crate) fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.ca("ca");
        pki.ca("rogue");
        pki.leaf("server", "ca", "serverAuth", "DNS:localhost,IP:127.0.0.1");
        pki.leaf("client", "ca", "clientAuth", "DNS:client.example.com");
        pki.leaf(
            "rogueserver",
            "rogue",
            "serverAuth",
            "DNS:localhost,IP:127.0.0.1",
        );
        pki.leaf(
            "rogueclient",
            "rogue",
            "clientAuth",
            "DNS:client.example.com",
        );
        // One file with the key and the chain, as --server-tls-certificate takes it.
        let all: String = ["server.key", "server.pem", "ca.pem"]
            .iter()
            .map(|f| std::fs::read_to_string(pki.dir.join(f)).unwrap())
            .collect();
        std::fs::write(pki.dir.join("server-all.pem"), all).unwrap();
        pki
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let (code, _, err) = run(
            Command::new("openssl").current_dir(&self.dir).args(args),
            Duration::from_secs(30),
        );
        assert_eq!(code, 0, "openssl {args:?}: {err}");
    }

    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ]);
    }

    fn leaf(&self, name: &str, ca: &str, usage: &str, alt_names: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        std::fs::write(
            self.dir.join(format!("{name}.ext")),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
                 extendedKeyUsage={usage}\nsubjectAltName={alt_names}\n"
            ),
        )
        .unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn rustls_client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.dir.join("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }

    fn rustls_server(&self) -> Arc<rustls::ServerConfig> {
        let chain = CertificateDer::pem_file_iter(self.dir.join("server.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(self.dir.join("server.key")).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
        )
    }
}

/// The SMTP session s_client types after its own EHLO and STARTTLS.
const SESSION: &str = "EHLO client.example.com\r\nMAIL FROM:<a@example.com>\r\n\
    RCPT TO:<b@example.org>\r\nDATA\r\nSubject: tls\r\n\r\nsecret\r\n.\r\nQUIT\r\n";

/// Runs `openssl s_client` with `args` and `input`; returns (code, stdout
/// with LF line ends, stderr).
fn s_client(args: &[&str], input: &str) -> (i32, String, String) {
    let (code, out, err) = run_with_input(
        Command::new("openssl")
            .arg("s_client")
            .args(["-brief", "-ign_eof"])
            .args(args),
        Some(input.as_bytes()),
        Duration::from_secs(30),
    );
    (code, out.replace("\r\n", "\n"), err)
}

/// The one envelope in the spool.
fn the_envelope(relay: &Relay) -> String {
    let names = relay.files(".envelope");
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::read_to_string(relay.spool.join(&names[0])).unwrap()
}

/// The one content file in the spool.
fn the_content(relay: &Relay) -> String {
    let names = relay.files(".content");
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::read_to_string(relay.spool.join(&names[0])).unwrap()
}

/// A PEM certificate as the envelope's folded `ClientCertificate` field holds it.
fn folded(pem: &str) -> String {
    format!(
        "X-MailRelay-ClientCertificate: {}\r\n",
        pem.trim_end().replace('\n', "\r\n ")
    )
}

/// A relay offering STARTTLS that checks client certificates against the
/// test CA.
fn verifying_relay(dir: &Path, pki: &Pki) -> Relay {
    Relay::start(
        dir,
        &[
            "--server-tls",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
            "--server-tls-verify",
            &pki.path("ca.pem"),
        ],
    )
}

#[test]
fn starttls_with_s_client_checks_the_client_certificate_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = verifying_relay(dir.path(), &pki);
    let address = format!("127.0.0.1:{}", relay.port);
    let (code, out, err) = s_client(
        &[
            "-starttls",
            "smtp",
            "-connect",
            &address,
            "-CAfile",
            &pki.path("ca.pem"),
            "-verify_return_error",
            "-cert",
            &pki.path("client.pem"),
            "-key",
            &pki.path("client.key"),
        ],
        SESSION,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("Verification: OK"), "{err}");
    assert!(err.contains("Protocol version: TLSv1.3"), "{err}");
    // Once encrypted, STARTTLS is no longer offered.
    assert!(out.starts_with("250-"), "{out}");
    assert!(!out.contains("STARTTLS"), "{out}");
    assert!(out.contains("250 message processed\n221 OK\n"), "{out}");
    let log = relay.wait_log("smtp connection closed");
    assert!(
        log.contains("emailrelay: info: tx>>: \"250 STARTTLS\"\n"),
        "{log}"
    );
    assert!(log.contains("emailrelay: info: tx>>: \"220 ready to start TLS\"\n"));
    assert!(log.contains("emailrelay: info: tls session established: TLSv1.3 TLS13_"));
    let client_pem = std::fs::read_to_string(pki.dir.join("client.pem")).unwrap();
    let envelope = the_envelope(&relay);
    assert!(envelope.contains(&folded(&client_pem)), "{envelope}");
    assert!(the_content(&relay).contains(" with ESMTPS ;"));
}

#[test]
fn server_tls_verify_refuses_missing_and_foreign_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = verifying_relay(dir.path(), &pki);
    let address = format!("127.0.0.1:{}", relay.port);
    let base = [
        "-starttls",
        "smtp",
        "-connect",
        &address,
        "-CAfile",
        &pki.path("ca.pem"),
    ];
    let (_, out, _) = s_client(&base, SESSION);
    assert!(!out.contains("250 message processed"), "{out}");
    relay.expect_log("peer sent no certificates");
    let (cert, key) = (pki.path("rogueclient.pem"), pki.path("rogueclient.key"));
    let rogue = [&base[..], &["-cert", &cert, "-key", &key]].concat();
    let (_, out, _) = s_client(&rogue, SESSION);
    assert!(!out.contains("250 message processed"), "{out}");
    let log = relay.wait_log("invalid peer certificate: UnknownIssuer");
    assert!(
        log.contains(
            "emailrelay: warning: tls handshake failed: peer sent no certificates: 127.0.0.1:"
        ),
        "{log}"
    );
    assert!(
        log.contains("emailrelay: warning: tls handshake failed: invalid peer certificate: UnknownIssuer: 127.0.0.1:"),
        "{log}"
    );
    assert!(relay.files("").is_empty(), "{:?}", relay.files(""));
    // The relay carries on: a plain client still gets its mail in.
    assert!(send_one(
        relay.port,
        "a@example.com",
        &["b@example.org"],
        "Subject: x\r\n\r\ny\r\n"
    )
    .starts_with("250"));
    assert!(the_envelope(&relay).contains("X-MailRelay-ClientCertificate: \r\n"));
}

#[test]
fn implicit_tls_with_key_and_certificate_given_separately() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-tls-connection",
            "--server-tls-certificate",
            &pki.path("server.key"),
            "--server-tls-certificate",
            &pki.path("server.pem"),
        ],
    );
    let address = format!("127.0.0.1:{}", relay.port);
    let (code, out, err) = s_client(
        &[
            "-connect",
            &address,
            "-CAfile",
            &pki.path("ca.pem"),
            "-verify_return_error",
        ],
        SESSION,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("220 "), "{out}");
    assert!(!out.contains("STARTTLS"), "{out}");
    assert!(out.contains("250 message processed\n221 OK\n"), "{out}");
    assert!(the_content(&relay).contains(" with ESMTPS ;"));
    // A client that speaks plain SMTP to the TLS port gets nothing, is
    // logged, and does not harm the next one.
    let mut plain = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    plain.write_all(b"EHLO plain\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(!reply.starts_with(b"220"), "{reply:?}");
    relay.expect_log("emailrelay: warning: tls handshake failed: ");
    let (code, out, err) = s_client(
        &[
            "-connect",
            &address,
            "-CAfile",
            &pki.path("ca.pem"),
            "-verify_return_error",
        ],
        "QUIT\r\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("221 OK"), "{out}");
}

#[test]
fn swaks_tls_submits_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-tls",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
        ],
    );
    let (code, out, err) = run(
        Command::new(program("swaks")).args([
            "--tls",
            "--server",
            &format!("127.0.0.1:{}", relay.port),
            "--from",
            "a@example.com",
            "--to",
            "b@example.org",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("<-  220 ready to start TLS"), "{out}");
    assert!(
        out.contains("=== TLS started with cipher TLSv1.3:"),
        "{out}"
    );
    assert!(out.contains("<~  250 message processed"), "{out}");
    assert!(the_content(&relay).contains(" with ESMTPS ;"));
}

#[test]
fn tls_config_sets_the_minimum_version_and_refuses_what_rustls_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-tls-connection",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
            "--tls-config",
            "tlsv1.3",
        ],
    );
    let address = format!("127.0.0.1:{}", relay.port);
    let (code, out, _) = s_client(&["-connect", &address, "-tls1_2"], "QUIT\r\n");
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("220 "), "{out}");
    relay.expect_log("emailrelay: warning: tls handshake failed: peer is incompatible: ");
    let (code, out, _) = s_client(&["-connect", &address, "-tls1_3"], "QUIT\r\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("221 OK"), "{out}");

    let (code, _, err) = run(
        Command::new(RELAY)
            .args([
                "--as-client",
                "127.0.0.1:1",
                "--client-tls",
                "--tls-config",
                "tlsv1.1",
                "--spool-dir",
            ])
            .arg(dir.path()),
        Duration::from_secs(10),
    );
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: error: invalid --tls-config keyword [tlsv1.1]: rustls speaks only TLS 1.2 \
         and 1.3; TLS 1.0 and 1.1 are obsolete (RFC 8996) and not supported\n"
    );
}

#[test]
fn server_tls_required_refuses_mail_in_clear_with_530() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-tls",
            "--server-tls-required",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
        ],
    );
    let mut client = Client::connect(relay.port);
    client.reply();
    assert!(client.command("EHLO me").ends_with("250 STARTTLS"));
    assert_eq!(
        client.command("MAIL FROM:<a@example.com>"),
        "530 must issue a STARTTLS command first"
    );
    // Encrypted, the same client may send.
    let (code, out, err) = s_client(
        &[
            "-starttls",
            "smtp",
            "-connect",
            &format!("127.0.0.1:{}", relay.port),
        ],
        SESSION,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("250 message processed"), "{out}");
}

/// Reads one SMTP reply (all its lines) from `reader`.
fn read_reply(reader: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return all;
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

#[test]
fn commands_pipelined_behind_starttls_are_discarded_not_run_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-tls",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
        ],
    );
    let tcp = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reader = BufReader::new(tcp);
    assert!(read_reply(&mut reader).starts_with("220 "));
    reader.get_mut().write_all(b"EHLO me\r\n").unwrap();
    read_reply(&mut reader);
    // One packet: the STARTTLS and a command an attacker slipped in behind it.
    reader
        .get_mut()
        .write_all(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut reader), "220 ready to start TLS\r\n");
    assert!(reader.buffer().is_empty(), "{:?}", reader.buffer());
    let tcp = reader.into_inner();
    let conn = rustls::ClientConnection::new(
        pki.rustls_client(),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    tls.get_mut().write_all(b"EHLO me\r\n").unwrap();
    let ehlo = read_reply(&mut tls);
    assert!(
        ehlo.starts_with("250-") && ehlo.ends_with("250 8BITMIME\r\n"),
        "{ehlo}"
    );
    // Had the injected MAIL run, this RCPT would be accepted.
    tls.get_mut()
        .write_all(b"RCPT TO:<b@example.org>\r\n")
        .unwrap();
    assert_eq!(
        read_reply(&mut tls),
        "503 command out of sequence -- use RSET to resynchronise\r\n"
    );
    let log = relay.log_text();
    assert!(!log.contains("injected"), "{log}");
}

/// Our relay forwarding through Postfix with TLS, the smarthost asking for
/// a client certificate: Postfix logs whether it trusted ours.
fn postfix_with_tls(dir: &Path, pki: &Pki, smtpd_options: &str) -> Postfix {
    Postfix::start_with(
        dir,
        &format!(
            "smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {key}, {cert}\n\
             smtpd_tls_loglevel = 1\nsmtpd_tls_ask_ccert = yes\nsmtpd_tls_CAfile = {ca}\n",
            key = pki.path("server.key"),
            cert = pki.path("server.pem"),
            ca = pki.path("ca.pem"),
        ),
        smtpd_options,
    )
}

#[test]
fn client_starttls_to_postfix_with_a_verified_server_and_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let postfix = postfix_with_tls(dir.path(), &pki, "");
    let spool = dir.path().join("spool");
    submit_to(&spool, "b@example.org");
    let (code, _, err) = run(
        Command::new(RELAY)
            .args([
                "--as-client",
                &postfix.address(),
                "--user",
                "root",
                "--log",
                "--verbose",
            ])
            .args(["--client-tls", "--client-tls-verify", &pki.path("ca.pem")])
            .args(["--client-tls-verify-name", "localhost"])
            .args(["--client-tls-certificate", &pki.path("client.key")])
            .args(["--client-tls-certificate", &pki.path("client.pem")])
            .arg("--spool-dir")
            .arg(&spool),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("emailrelay: info: tx>>: \"STARTTLS\"\n"),
        "{err}"
    );
    assert!(
        err.contains("emailrelay: info: tls session established: TLSv1.3 "),
        "{err}"
    );
    // EHLO again, encrypted, before the envelope.
    let after = err.split("tls session established").nth(1).unwrap();
    assert!(
        after
            .trim_start()
            .lines()
            .nth(1)
            .unwrap()
            .contains("tx>>: \"EHLO "),
        "{err}"
    );
    assert!(wait_until(Duration::from_secs(20), || postfix
        .delivered()
        .len()
        == 1));
    assert!(spool_files(&spool, "").is_empty());
    let maillog = postfix.log_text();
    assert!(
        maillog.contains("Trusted TLS connection established from localhost[127.0.0.1]: TLSv1.3"),
        "{maillog}"
    );
}

#[test]
fn client_refuses_a_postfix_whose_certificate_names_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let postfix = postfix_with_tls(dir.path(), &pki, "");
    let spool = dir.path().join("spool");
    submit_to(&spool, "b@example.org");
    let (code, _, err) = run(
        Command::new(RELAY)
            .args(["--as-client", &postfix.address(), "--user", "root", "--log"])
            .args([
                "--client-tls-required",
                "--client-tls-verify",
                &pki.path("ca.pem"),
            ])
            .args(["--client-tls-verify-name", "smarthost.example.net"])
            .arg("--spool-dir")
            .arg(&spool),
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("tls handshake failed: invalid peer certificate: certificate not valid for name \"smarthost.example.net\""),
        "{err}"
    );
    // Kept for another attempt, never sent in clear.
    assert_eq!(spool_files(&spool, ".envelope").len(), 1);
    assert!(postfix.delivered().is_empty());
}

#[test]
fn client_tls_connection_to_postfix_in_wrapper_mode() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let postfix = postfix_with_tls(
        dir.path(),
        &pki,
        "-o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt",
    );
    let spool = dir.path().join("spool");
    submit_to(&spool, "b@example.org");
    let (code, _, err) = run(
        Command::new(RELAY)
            .args([
                "--as-client",
                &postfix.address(),
                "--user",
                "root",
                "--log",
                "--verbose",
            ])
            .args([
                "--client-tls-connection",
                "--client-tls-verify",
                &pki.path("ca.pem"),
            ])
            .arg("--spool-dir")
            .arg(&spool),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("STARTTLS"), "{err}");
    assert!(wait_until(Duration::from_secs(20), || postfix
        .delivered()
        .len()
        == 1));
    assert!(postfix
        .log_text()
        .contains("Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3"));
}

#[test]
fn client_tls_required_keeps_the_message_when_the_upstream_offers_no_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let (code, _, err) = run(
        Command::new(RELAY)
            .args([
                "--as-client",
                &sink.address(),
                "--user",
                "root",
                "--log",
                "--verbose",
            ])
            .arg("--client-tls-required")
            .arg("--spool-dir")
            .arg(&spool),
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("454 TLS is required but not available: the server does not offer STARTTLS"),
        "{err}"
    );
    // No STRIPTLS: the envelope never went out in clear.
    assert!(!err.contains("MAIL FROM"), "{err}");
    assert_eq!(spool_files(&spool, ".envelope").len(), 1, "{err}");
    assert!(sink.messages().is_empty());
}

/// openssl s_server as the upstream, on implicit TLS, answering each SMTP
/// line our client sends; records what it received.
struct SServer {
    _proc: Proc,
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
}

impl SServer {
    fn start(pki: &Pki, cert: &str, extra: &[&str]) -> SServer {
        let port = free_port();
        let mut cmd = Command::new("openssl");
        cmd.args(["s_server", "-quiet", "-naccept", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", &pki.path(&format!("{cert}.pem"))])
            .args(["-key", &pki.path(&format!("{cert}.key"))])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut proc = Proc {
            child: cmd.stdin(Stdio::piped()).spawn().unwrap(),
        };
        let mut stdin = proc.child.stdin.take().unwrap();
        let stdout = proc.child.stdout.take().unwrap();
        // Sent once a client has connected and the handshake is done.
        stdin.write_all(b"220 s_server ESMTP\r\n").unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut in_data = false;
            for line in BufReader::new(stdout).lines().take(1000) {
                let Ok(line) = line else { break };
                let line = line.trim_end_matches('\r').to_string();
                let reply: &[u8] = if in_data {
                    if line == "." {
                        in_data = false;
                        b"250 queued\r\n"
                    } else {
                        b""
                    }
                } else if line.starts_with("EHLO") {
                    b"250-s_server\r\n250 8BITMIME\r\n"
                } else if line == "DATA" {
                    in_data = true;
                    b"354 go ahead\r\n"
                } else if line == "QUIT" {
                    b"221 bye\r\n"
                } else {
                    b"250 ok\r\n"
                };
                log.lock().unwrap().push(line);
                if stdin.write_all(reply).and_then(|_| stdin.flush()).is_err() {
                    break;
                }
            }
        });
        // Not probed by connecting: s_server takes one connection only.
        assert!(wait_until(Duration::from_secs(10), || listening(port)));
        SServer {
            _proc: proc,
            port,
            received,
        }
    }
}

/// True if a socket listens on 127.0.0.1:`port` (read from /proc, so that
/// checking does not use up a one-shot server's only connection).
fn listening(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        })
}

/// Forwards the spool once with `--client-tls-connection` and `args`.
fn forward_tls_once(spool: &Path, port: u16, args: &[&str]) -> (i32, String) {
    let (code, _, err) = run(
        Command::new(RELAY)
            .args(["--as-client", &format!("127.0.0.1:{port}")])
            .args([
                "--user",
                "root",
                "--log",
                "--verbose",
                "--client-tls-connection",
            ])
            .args(args)
            .arg("--spool-dir")
            .arg(spool),
        Duration::from_secs(60),
    );
    (code, err)
}

#[test]
fn s_server_demanding_a_client_certificate_gets_ours() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = SServer::start(
        &pki,
        "server",
        &["-Verify", "1", "-CAfile", &pki.path("ca.pem")],
    );
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let (code, err) = forward_tls_once(
        &spool,
        server.port,
        &[
            "--client-tls-certificate",
            &pki.path("client.key"),
            "--client-tls-certificate",
            &pki.path("client.pem"),
            "--client-tls-verify",
            &pki.path("ca.pem"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(spool_files(&spool, "").is_empty(), "{err}");
    let received = server.received.lock().unwrap().clone();
    assert!(received[0].starts_with("EHLO "), "{received:?}");
    assert_eq!(received[1], "MAIL FROM:<>", "{received:?}");
    assert_eq!(received[2], "RCPT TO:<x@y.z>", "{received:?}");
    assert_eq!(received.last().unwrap(), "QUIT", "{received:?}");
}

#[test]
fn s_server_demanding_a_client_certificate_refuses_a_client_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = SServer::start(
        &pki,
        "server",
        &["-Verify", "1", "-CAfile", &pki.path("ca.pem")],
    );
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let (code, err) = forward_tls_once(&spool, server.port, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("emailrelay: warning: cannot forward ["),
        "{err}"
    );
    assert!(
        err.contains("]: received fatal alert: CertificateRequired\n"),
        "{err}"
    );
    assert_eq!(spool_files(&spool, ".envelope").len(), 1, "{err}");
    assert!(!server
        .received
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("MAIL")));
}

#[test]
fn client_tls_verify_refuses_a_server_certificate_from_an_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = SServer::start(&pki, "rogueserver", &[]);
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let (code, err) = forward_tls_once(
        &spool,
        server.port,
        &["--client-tls-verify", &pki.path("ca.pem")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("tls handshake failed: invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    assert_eq!(spool_files(&spool, ".envelope").len(), 1, "{err}");
    assert!(server.received.lock().unwrap().is_empty());
}

/// An upstream that sends a forged reply in the same packet as its 220 to
/// STARTTLS, then speaks SMTP over rustls in lock step; returns its port
/// and what it received after the handshake.
fn forging_upstream(pki: &Pki) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let config = pki.rustls_server();
    std::thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut plain = BufReader::new(tcp);
        let mut line = String::new();
        plain
            .get_mut()
            .write_all(b"220 upstream ESMTP\r\n")
            .unwrap();
        plain.read_line(&mut line).unwrap();
        plain
            .get_mut()
            .write_all(b"250-upstream\r\n250 STARTTLS\r\n")
            .unwrap();
        line.clear();
        plain.read_line(&mut line).unwrap();
        assert_eq!(line, "STARTTLS\r\n");
        plain
            .get_mut()
            .write_all(b"220 go ahead\r\n250-upstream\r\n250 forged\r\n")
            .unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = BufReader::new(rustls::StreamOwned::new(conn, plain.into_inner()));
        let mut in_data = false;
        for _ in 0..1000 {
            let mut line = String::new();
            if tls.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end().to_string();
            if log.lock().unwrap().is_empty() {
                // The name our client asked for (SNI), once the handshake is done.
                let sni = tls.get_ref().conn.server_name().unwrap_or("none");
                log.lock().unwrap().push(format!("SNI {sni}"));
            }
            let reply: &[u8] = match line.as_str() {
                "." if in_data => {
                    in_data = false;
                    b"250 queued\r\n"
                }
                _ if in_data => b"",
                l if l.starts_with("EHLO") => b"250-upstream\r\n250 8BITMIME\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go ahead\r\n"
                }
                "QUIT" => b"221 bye\r\n",
                _ => b"250 ok\r\n",
            };
            log.lock().unwrap().push(line.clone());
            if tls.get_mut().write_all(reply).is_err() || line == "QUIT" {
                break;
            }
        }
    });
    (port, received)
}

#[test]
fn upstream_replies_sent_before_the_handshake_are_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (port, received) = forging_upstream(&pki);
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let (code, _, err) = run(
        Command::new(RELAY)
            .args(["--as-client", &format!("127.0.0.1:{port}")])
            .args(["--user", "root", "--log", "--verbose", "--client-tls"])
            .args([
                "--client-tls-verify",
                &pki.path("ca.pem"),
                "--client-tls-server-name",
                "upstream.example.net",
            ])
            .arg("--spool-dir")
            .arg(&spool),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("forged"), "{err}");
    let received = received.lock().unwrap().clone();
    // In lock step: had the forged 250 counted as the reply to the second
    // EHLO, MAIL would have gone out before the real reply and the rest of
    // the dialogue would be one reply out of step.
    assert_eq!(received.len(), 8, "{received:?}");
    assert_eq!(received[0], "SNI upstream.example.net");
    assert!(received[1].starts_with("EHLO "));
    assert_eq!(&received[2..5], ["MAIL FROM:<>", "RCPT TO:<x@y.z>", "DATA"]);
    assert_eq!(&received[5..], ["Subject: help", ".", "QUIT"]);
    assert!(spool_files(&spool, "").is_empty());
}

/// The target name (or address) and port of one SOCKS request.
type SocksRequest = (String, u16);

/// A SOCKS 4a proxy: records each request's (name, port) and joins the
/// client to that target, resolving the name itself.
fn socks4a_proxy() -> (u16, Arc<Mutex<Vec<SocksRequest>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    std::thread::spawn(move || {
        for _ in 0..4 {
            let Ok((mut client, _)) = listener.accept() else {
                return;
            };
            client
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut head = [0u8; 8];
            client.read_exact(&mut head).unwrap();
            assert_eq!(&head[..2], [4, 1], "not a SOCKS 4 CONNECT");
            let read_string = |c: &mut TcpStream| {
                let mut text = Vec::new();
                let mut byte = [0u8; 1];
                while c.read_exact(&mut byte).is_ok() && byte[0] != 0 && text.len() < 256 {
                    text.push(byte[0]);
                }
                String::from_utf8_lossy(&text).into_owned()
            };
            let _user = read_string(&mut client);
            let dst_port = u16::from_be_bytes([head[2], head[3]]);
            let name = if head[4..7] == [0, 0, 0] && head[7] != 0 {
                read_string(&mut client)
            } else {
                std::net::Ipv4Addr::new(head[4], head[5], head[6], head[7]).to_string()
            };
            log.lock().unwrap().push((name.clone(), dst_port));
            let Ok(upstream) = TcpStream::connect((name.as_str(), dst_port)) else {
                let _ = client.write_all(&[0, 91, 0, 0, 0, 0, 0, 0]);
                continue;
            };
            client.write_all(&[0, 90, 0, 0, 0, 0, 0, 0]).unwrap();
            let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let (mut c1, mut u1) = (client, upstream);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut u1);
                let _ = u1.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, requests)
}

#[test]
fn forward_to_through_a_socks4a_proxy_leaves_the_name_to_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let (proxy, requests) = socks4a_proxy();
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--forward-to",
            &format!("localhost:{}@127.0.0.1:{proxy}", sink.port),
        ],
    );
    assert!(send_one(
        relay.port,
        "a@example.com",
        &["b@example.org"],
        "Subject: tor\r\n\r\nhi\r\n"
    )
    .starts_with("250"));
    assert!(
        wait_until(Duration::from_secs(20), || sink.messages().len() == 1),
        "{}",
        relay.log_text()
    );
    assert_eq!(
        requests.lock().unwrap().as_slice(),
        [("localhost".to_string(), sink.port)]
    );
    assert!(wait_until(Duration::from_secs(10), || relay
        .files("")
        .is_empty()));
}

#[test]
fn forward_to_address_through_a_socks4a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let (proxy, requests) = socks4a_proxy();
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let envelope = spool.join(&spool_files(&spool, ".envelope")[0]);
    let text = std::fs::read_to_string(&envelope).unwrap();
    std::fs::write(
        &envelope,
        text.replace(
            "X-MailRelay-ForwardToAddress: \r\n",
            &format!(
                "X-MailRelay-ForwardToAddress: localhost:{}@127.0.0.1:{proxy}\r\n",
                sink.port
            ),
        ),
    )
    .unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run(
        Command::new(RELAY)
            .args(["--as-client", &dead, "--user", "root", "--spool-dir"])
            .arg(&spool),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    assert!(wait_until(Duration::from_secs(10), || sink
        .messages()
        .len()
        == 1));
    assert_eq!(
        requests.lock().unwrap().as_slice(),
        [("localhost".to_string(), sink.port)]
    );
}
