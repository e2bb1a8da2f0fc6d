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

    /// A version-1 end-entity certificate signed by `ca` (a version-3 CA),
    /// as E-MailRelay's suite and countless how-tos make them: `openssl x509
    /// -req` without an extensions file.
    pub(crate) fn v1_leaf(&self, name: &str, cn: &str, ca: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ]);
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
            "-out",
            &format!("{name}.pem"),
        ]);
        assert_eq!(self.x509_version(name), 1);
    }

    /// A self-signed certificate made as E-MailRelay's reference guide
    /// shows (`openssl req -x509 -noenc -newkey rsa:2048`), key apart.
    pub(crate) fn self_signed(&self, name: &str, cn: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-noenc",
            "-subj",
            &format!("/CN={cn}"),
            "-newkey",
            "rsa:2048",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    /// The X.509 version of `{name}.pem`, as openssl prints it.
    fn x509_version(&self, name: &str) -> u32 {
        let (code, out, err) = run(
            Command::new("openssl").current_dir(&self.dir).args([
                "x509",
                "-noout",
                "-text",
                "-in",
                &format!("{name}.pem"),
            ]),
            Duration::from_secs(30),
        );
        assert_eq!(code, 0, "{err}");
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Version: "))
            .and_then(|v| v.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
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
        log.contains("emailrelay: info: tx>>: \"250-STARTTLS\"\n"),
        "{log}"
    );
    assert!(log.contains("emailrelay: info: tx>>: \"220 ready to start tls\"\n"));
    assert!(
        log.contains("emailrelay: info: tls session established: TLSv1.3 TLS_AES_256_GCM_SHA384\n")
    );
    let client_pem = std::fs::read_to_string(pki.dir.join("client.pem")).unwrap();
    let envelope = the_envelope(&relay);
    assert!(envelope.contains(&folded(&client_pem)), "{envelope}");
    // E-MailRelay 2.6.1's Received line names the cipher (RFC 8314 4.3).
    assert!(the_content(&relay).contains(" with ESMTPS tls TLS_"));
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
    relay.expect_log("the client sent no certificate");
    let (cert, key) = (pki.path("rogueclient.pem"), pki.path("rogueclient.key"));
    let rogue = [&base[..], &["-cert", &cert, "-key", &key]].concat();
    let (_, out, _) = s_client(&rogue, SESSION);
    assert!(!out.contains("250 message processed"), "{out}");
    let log = relay.wait_log("client certificate [CN=rogueclient]");
    assert!(
        log.contains(
            "emailrelay: warning: tls error: the client sent no certificate, and \
             --server-tls-verify requires one: 127.0.0.1:"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "emailrelay: warning: tls error: client certificate [CN=rogueclient] issued by \
             [CN=rogue] refused: unable to get local issuer certificate: its issuer is not in \
             the CA list of --server-tls-verify: 127.0.0.1:"
        ),
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
    // E-MailRelay 2.6.1's Received line names the cipher (RFC 8314 4.3).
    assert!(the_content(&relay).contains(" with ESMTPS tls TLS_"));
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
    relay.expect_log(
        "emailrelay: warning: tls error: the client does not speak TLS here: OpenSSL says \
         [wrong version number]: 127.0.0.1:",
    );
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
    assert!(out.contains("<-  220 ready to start tls"), "{out}");
    assert!(
        out.contains("=== TLS started with cipher TLSv1.3:"),
        "{out}"
    );
    assert!(out.contains("<~  250 message processed"), "{out}");
    // E-MailRelay 2.6.1's Received line names the cipher (RFC 8314 4.3).
    assert!(the_content(&relay).contains(" with ESMTPS tls TLS_"));
}

#[test]
fn tls_config_sets_the_minimum_version_and_a_maximum_can_leave_forwarding_nothing() {
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
    relay.expect_log(
        "emailrelay: warning: tls error: no TLS version in common with the client (see \
         --tls-config): OpenSSL says [unsupported protocol]: 127.0.0.1:",
    );
    let (code, out, _) = s_client(&["-connect", &address, "-tls1_3"], "QUIT\r\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("221 OK"), "{out}");

    // A maximum below TLS 1.2 leaves forwarding no version unless the
    // client-* keywords allow old ones upstream.
    let (code, _, err) = run(
        Command::new(RELAY)
            .args([
                "--as-client",
                "127.0.0.1:1",
                "--client-tls",
                // E-MailRelay's parser takes "--tls-config -tlsv1.1" for a mistake.
                "--tls-config=-tlsv1.1",
                "--spool-dir",
            ])
            .arg(dir.path()),
        Duration::from_secs(10),
    );
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: error: --tls-config leaves forwarding no TLS version: its maximum is older \
         than TLS 1.2, the oldest forwarding uses unless client-tlsv1.0 or client-tlsv1.1 is \
         given\n"
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
    assert!(client.command("EHLO me").ends_with("250 8BITMIME"));
    assert_eq!(
        client.command("MAIL FROM:<a@example.com>"),
        "530 encryption required: use starttls"
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
    assert_eq!(read_reply(&mut reader), "220 ready to start tls\r\n");
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
pub(crate) fn postfix_with_tls(dir: &Path, pki: &Pki, smtpd_options: &str) -> Postfix {
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
                "--client-tls",
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
    let reason = "tls error: server [127.0.0.1] certificate [CN=server] issued by [CN=ca] \
                  refused: it does not carry the name [smarthost.example.net]: see \
                  --client-tls-verify-name";
    assert!(
        err.contains(&format!(
            "emailrelay: warning: smtp client error: {reason}\n"
        )),
        "{err}"
    );
    // Failed as E-MailRelay fails it, kept in the spool, never sent in clear.
    assert_eq!(failure_reason(&spool), format!("{reason}\r\n554"));
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
            .args(["--client-tls", "--client-tls-required"])
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
pub(crate) struct SServer {
    _proc: Proc,
    pub(crate) port: u16,
    pub(crate) received: Arc<Mutex<Vec<String>>>,
}

impl SServer {
    pub(crate) fn start(pki: &Pki, cert: &str, extra: &[&str]) -> SServer {
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

/// The reason and reason code of the one failed envelope in `spool`,
/// CRLF between them.
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
    assert_eq!(received[1], "MAIL FROM:<anonymous>", "{received:?}");
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
    // Under TLS 1.3 the refusal comes after our side of the handshake.
    let reason = "tls error: the server [127.0.0.1] refused the handshake with alert \
                  [certificate required]: it wants a client certificate \
                  (--client-tls-certificate)";
    assert!(
        err.contains(&format!(
            "emailrelay: info: tls session established: TLSv1.3 TLS_AES_256_GCM_SHA384\n\
             emailrelay: warning: smtp client error: {reason}\n"
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
    let reason = "tls error: server [127.0.0.1] certificate [CN=rogueserver] issued by \
                  [CN=rogue] refused: unable to get local issuer certificate: its issuer is \
                  not in the CA list of --client-tls-verify";
    assert!(
        err.contains(&format!(
            "emailrelay: warning: smtp client error: {reason}\n"
        )),
        "{err}"
    );
    assert!(
        err.contains("emailrelay: info: failing envelope ["),
        "{err}"
    );
    assert_eq!(failure_reason(&spool), format!("{reason}\r\n554"));
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
    assert_eq!(received.len(), 9, "{received:?}");
    assert_eq!(received[0], "SNI upstream.example.net");
    assert!(received[1].starts_with("EHLO "));
    assert_eq!(
        &received[2..5],
        ["MAIL FROM:<anonymous>", "RCPT TO:<x@y.z>", "DATA"]
    );
    assert_eq!(&received[5..], ["Subject: help", "", ".", "QUIT"]);
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

// ---- E-MailRelay users' set-ups: old TLS versions, version-1 and
// self-signed certificates (issue 12) ----

/// The warning a listener configured for TLS 1.0 logs at startup.
const TLS10_WARNING: &str = "emailrelay: warning: --tls-config: the TLS listener accepts TLS 1.0 \
    and TLS 1.1: old, weak versions (RFC 8996) for devices that can do no better; OpenSSL's \
    security level is 0 there; forwarding stays at TLS 1.2 or later (keyword client-tlsv1.0 or \
    client-tlsv1.1 to change that)\n";

/// s_client options for an old device; Debian's OpenSSL needs security
/// level 0 for TLS 1.0 and 1.1.
fn old_device(version: &str) -> [&str; 3] {
    [version, "-cipher", "DEFAULT@SECLEVEL=0"]
}

#[test]
fn tls_1_0_and_1_1_devices_are_served_by_a_listener_configured_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-tls",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
            "--tls-config",
            "tlsv1.0",
        ],
    );
    assert!(
        relay.log_text().starts_with(TLS10_WARNING),
        "{}",
        relay.log_text()
    );
    let address = format!("127.0.0.1:{}", relay.port);
    for (flag, shown, logged) in [
        ("-tls1", "TLSv1\n", "TLSv1.0"),
        ("-tls1_1", "TLSv1.1\n", "TLSv1.1"),
    ] {
        let args = [
            &["-starttls", "smtp", "-connect", &address][..],
            &old_device(flag),
        ]
        .concat();
        let (code, out, err) = s_client(&args, SESSION);
        assert_eq!(code, 0, "{out}{err}");
        assert!(err.contains(&format!("Protocol version: {shown}")), "{err}");
        assert!(out.contains("250 message processed\n221 OK\n"), "{out}");
        relay.expect_log(&format!(
            "emailrelay: info: tls session established: {logged} ECDHE-ECDSA-AES256-SHA\n"
        ));
    }
    assert_eq!(relay.files(".envelope").len(), 2);
    assert!(
        !relay.log_text().contains("tls error"),
        "{}",
        relay.log_text()
    );
}

#[test]
fn implicit_tls_listener_takes_its_minimum_from_tls_config() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-tls-connection",
            "--server-tls-certificate",
            &pki.path("server-all.pem"),
            "--tls-config",
            "tlsv1.1",
        ],
    );
    let address = format!("127.0.0.1:{}", relay.port);
    let args = [&["-connect", &address][..], &old_device("-tls1_1")].concat();
    let (code, out, err) = s_client(&args, SESSION);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("220 "), "{out}");
    assert!(out.contains("250 message processed\n221 OK\n"), "{out}");
    // TLS 1.0 is below this listener's minimum.
    let args = [&["-connect", &address][..], &old_device("-tls1")].concat();
    let (code, out, _) = s_client(&args, SESSION);
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("220 "), "{out}");
    relay.expect_log(
        "emailrelay: warning: tls error: no TLS version in common with the client (see \
         --tls-config): OpenSSL says [unsupported protocol]: 127.0.0.1:",
    );
    assert_eq!(relay.files(".envelope").len(), 1);
}

#[test]
fn tls_1_0_and_1_1_devices_are_refused_by_a_default_listener() {
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
    let address = format!("127.0.0.1:{}", relay.port);
    for flag in ["-tls1", "-tls1_1"] {
        let args = [
            &["-starttls", "smtp", "-connect", &address][..],
            &old_device(flag),
        ]
        .concat();
        let (code, out, _) = s_client(&args, SESSION);
        assert_ne!(code, 0, "{out}");
        assert!(!out.contains("250 message processed"), "{out}");
    }
    let log = relay.log_text();
    let refused = "emailrelay: warning: tls error: no TLS version in common with the client (see \
                   --tls-config): OpenSSL says [unsupported protocol]: 127.0.0.1:";
    assert_eq!(log.matches(refused).count(), 2, "{log}");
    assert!(!log.contains("--tls-config:"), "{log}");
    assert!(relay.files("").is_empty());
}

/// A Python `ssl` client: STARTTLS with a client certificate, the server's
/// certificate checked against `ca` (not its name: a version-1 certificate
/// has no subjectAltName); prints each reply code.
const PYTHON_CLIENT: &str = r#"
import smtplib, ssl, sys
port, ca, cert, key = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.load_cert_chain(cert, key)
s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
s.ehlo("python.example.com")
print(s.starttls(context=ctx)[0])
print(s.sock.version(), dict(x[0] for x in s.sock.getpeercert()["subject"])["commonName"])
s.ehlo("python.example.com")
print(s.mail("a@example.com")[0])
print(s.rcpt("b@example.org")[0])
print(s.data(b"Subject: v1\r\n\r\nhello\r\n")[0])
print(s.quit()[0])
"#;

#[test]
fn version_1_certificates_serve_swaks_and_python_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    pki.v1_leaf("v1server", "relay.example.com", "ca");
    pki.v1_leaf("v1client", "device.example.com", "ca");
    let relay = Relay::start(
        dir.path(),
        &[
            "--server-tls",
            "--server-tls-certificate",
            &pki.path("v1server.key"),
            "--server-tls-certificate",
            &pki.path("v1server.pem"),
            "--server-tls-verify",
            &pki.path("ca.pem"),
        ],
    );
    let (code, out, err) = run(
        Command::new(program("swaks")).args([
            "--tls",
            "--tls-cert",
            &pki.path("v1client.pem"),
            "--tls-key",
            &pki.path("v1client.key"),
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
    assert!(
        out.contains("=== TLS started with cipher TLSv1.3:"),
        "{out}"
    );
    assert!(out.contains("<~  250 message processed"), "{out}");
    let (code, out, err) = run(
        Command::new("python3").args([
            "-c",
            PYTHON_CLIENT,
            &relay.port.to_string(),
            &pki.path("ca.pem"),
            &pki.path("v1client.pem"),
            &pki.path("v1client.key"),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "220\nTLSv1.3 relay.example.com\n250\n250\n250\n221\n");
    let log = relay.wait_log("smtp connection closed");
    assert_eq!(
        log.matches("emailrelay: info: tls session established: TLSv1.3 TLS_AES_256_GCM_SHA384\n")
            .count(),
        2,
        "{log}"
    );
    assert!(!log.contains("tls error"), "{log}");
    // Both messages carry the device's version-1 certificate.
    let client_pem = std::fs::read_to_string(pki.dir.join("v1client.pem")).unwrap();
    let envelopes = relay.files(".envelope");
    assert_eq!(envelopes.len(), 2, "{envelopes:?}");
    for name in envelopes {
        let envelope = std::fs::read_to_string(relay.spool.join(name)).unwrap();
        assert!(envelope.contains(&folded(&client_pem)), "{envelope}");
    }
}

#[test]
fn s_server_with_a_version_1_certificate_behind_a_ca_file_or_a_hashed_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    pki.v1_leaf("v1server", "smarthost.example.net", "ca");
    pki.v1_leaf("v1client", "relay.example.com", "ca");
    let hashed = dir.path().join("cadir");
    std::fs::create_dir(&hashed).unwrap();
    std::fs::copy(pki.dir.join("ca.pem"), hashed.join("ca.pem")).unwrap();
    let (code, _, err) = run(
        Command::new("openssl").arg("rehash").arg(&hashed),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    for ca in [pki.path("ca.pem"), hashed.display().to_string()] {
        let server = SServer::start(
            &pki,
            "v1server",
            &["-Verify", "1", "-CAfile", &pki.path("ca.pem")],
        );
        let spool = dir.path().join("spool");
        submit_one(&spool);
        let (code, err) = forward_tls_once(
            &spool,
            server.port,
            &[
                "--client-tls-certificate",
                &pki.path("v1client.key"),
                "--client-tls-certificate",
                &pki.path("v1client.pem"),
                "--client-tls-verify",
                &ca,
                // E-MailRelay compatibility: the subject's CN.
                "--client-tls-verify-name",
                "smarthost.example.net",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains("emailrelay: info: tls session established: TLSv1.3 "),
            "{err}"
        );
        assert!(spool_files(&spool, "").is_empty(), "{err}");
        let received = server.received.lock().unwrap().clone();
        assert_eq!(
            &received[1..3],
            ["MAIL FROM:<anonymous>", "RCPT TO:<x@y.z>"],
            "{received:?}"
        );
    }
}

#[test]
fn a_self_signed_smarthost_pinned_as_its_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    pki.self_signed("pinned", "smarthost.example.net");
    pki.self_signed("impostor", "smarthost.example.net");
    let pin = ["--client-tls-verify", &pki.path("pinned.pem")];
    let server = SServer::start(&pki, "pinned", &[]);
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let (code, err) = forward_tls_once(&spool, server.port, &pin);
    assert_eq!(code, 0, "{err}");
    assert!(spool_files(&spool, "").is_empty(), "{err}");
    assert_eq!(server.received.lock().unwrap()[1], "MAIL FROM:<anonymous>");

    // Another certificate with the same name is not the pinned one.
    let server = SServer::start(&pki, "impostor", &[]);
    submit_one(&spool);
    let (code, err) = forward_tls_once(&spool, server.port, &pin);
    assert_eq!(code, 1, "{err}");
    let reason = "tls error: server [127.0.0.1] certificate [CN=smarthost.example.net] issued \
                  by [CN=smarthost.example.net] refused: self-signed certificate: it is \
                  self-signed and not in the CA list of --client-tls-verify";
    assert!(
        err.contains(&format!(
            "emailrelay: warning: smtp client error: {reason}\n"
        )),
        "{err}"
    );
    assert_eq!(failure_reason(&spool), format!("{reason}\r\n554"));
    assert!(server.received.lock().unwrap().is_empty());
}

#[test]
fn noverify_keyword_forwards_whatever_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = SServer::start(&pki, "rogueserver", &[]);
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let (code, err) = forward_tls_once(
        &spool,
        server.port,
        &[
            "--client-tls-verify",
            &pki.path("ca.pem"),
            "--tls-config",
            "noverify",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(spool_files(&spool, "").is_empty(), "{err}");
}

#[test]
fn forwarding_uses_tls_1_0_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let old_smarthost = ["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"];
    // tlsv1.0 opens the listener to old devices, not forwarding.
    let server = SServer::start(&pki, "server", &old_smarthost);
    let spool = dir.path().join("spool");
    submit_one(&spool);
    let (code, err) = forward_tls_once(&spool, server.port, &["--tls-config", "tlsv1.0"]);
    assert_eq!(code, 1, "{err}");
    let reason = "tls error: the server [127.0.0.1] refused the handshake with alert [protocol \
                  version]: no TLS version in common (see --tls-config)";
    assert!(
        err.contains(&format!(
            "emailrelay: warning: smtp client error: {reason}\n"
        )),
        "{err}"
    );
    assert_eq!(failure_reason(&spool), format!("{reason}\r\n554"));

    let server = SServer::start(&pki, "server", &old_smarthost);
    let spool = dir.path().join("spool2");
    submit_one(&spool);
    let (code, err) = forward_tls_once(
        &spool,
        server.port,
        &["--tls-config", "tlsv1.0,client-tlsv1.0"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with(
            "emailrelay: warning: --tls-config: forwarding may use TLS 1.0 and TLS 1.1: old, \
             weak versions (RFC 8996) for smarthosts that can do no better; OpenSSL's security \
             level is 0 there\n"
        ),
        "{err}"
    );
    assert!(
        err.contains("emailrelay: info: tls session established: TLSv1.0 ECDHE-ECDSA-AES256-SHA\n"),
        "{err}"
    );
    assert!(spool_files(&spool, "").is_empty(), "{err}");
}

/// An HTTPS OAuth 2.0 endpoint (device code, then tokens) in Python, with
/// the test PKI's server certificate; prints its port.
const HTTPS_TOKEN_ENDPOINT: &str = r#"
import http.server, json, ssl, sys
class Endpoint(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/devicecode":
            body = {"device_code": "dev-1", "user_code": "WDJB-MJHT", "expires_in": 30,
                    "verification_uri": "https://localhost/device", "interval": 1}
        else:
            body = {"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600,
                    "token_type": "Bearer"}
        data = json.dumps(body).encode()
        self.send_response(200)
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
fn oauth_over_https_checks_the_endpoint_against_the_default_ca_paths() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut endpoint = Proc {
        child: Command::new("python3")
            .args(["-c", HTTPS_TOKEN_ENDPOINT])
            .args([pki.path("server.pem"), pki.path("server.key")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    };
    let mut line = String::new();
    BufReader::new(endpoint.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let account = dir.path().join("carol.oauth2");
    let passwd = |ca: &str| {
        std::fs::write(
            &account,
            format!(
                "token-url = https://localhost:{port}/token\n\
                 device-url = https://localhost:{port}/devicecode\n\
                 client-id = cid\nscope = https://mail.google.com/\n"
            ),
        )
        .unwrap();
        // OpenSSL's default paths honour SSL_CERT_FILE.
        run(
            Command::new(env!("CARGO_BIN_EXE_emailrelay-passwd"))
                .env("SSL_CERT_FILE", pki.path(ca))
                .arg("--oauth")
                .arg(&account),
            Duration::from_secs(30),
        )
    };
    let (code, out, err) = passwd("rogue.pem");
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains(
            "tls error: certificate of the server [localhost] refused: unable to get local \
             issuer certificate"
        ),
        "{out}{err}"
    );
    let (code, out, err) = passwd("ca.pem");
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&account).unwrap();
    assert!(text.ends_with("refresh-token = rt-1\n"), "{text}");
}
