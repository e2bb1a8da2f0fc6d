//! SMTP AUTH on our client: relay to relay with E-MailRelay secrets and
//! account selection by envelope field; to Postfix authenticating through
//! Dovecot SASL; failures (5xx fails the message with the reason).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::auth::secrets;
use crate::harness::{
    program, run, spool_files, submit_to, wait_until, Postfix, Proc, Relay, RELAY,
};

/// Sets a header field of every envelope in `spool` whose recipient
/// contains `to`; at least one must have that field.
pub(crate) fn set_field(spool: &Path, to: &str, field: &str, value: &str) {
    let prefix = format!("X-MailRelay-{field}:");
    let mut edited_any = false;
    for name in spool_files(spool, ".envelope") {
        let path = spool.join(&name);
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains(to) {
            let mut found = false;
            let edited: String = text
                .split_inclusive("\r\n")
                .map(|l| {
                    if l.starts_with(&prefix) {
                        found = true;
                        format!("{prefix} {value}\r\n")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            assert!(found, "{name} has no {prefix} line:\n{text}");
            std::fs::write(&path, edited).unwrap();
            edited_any = true;
        }
    }
    assert!(edited_any, "no envelope in {} for {to}", spool.display());
}

/// Forwards `spool` once with `--as-client` and these options; returns the
/// log. The exit code must be `code`: as in E-MailRelay 2.6.1, 1 only
/// when a connection failed, not for messages the server refused.
pub(crate) fn forward_once(
    dir: &Path,
    spool: &Path,
    target: &str,
    extra: &[&str],
    code: i32,
) -> String {
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
    // An unknown selector ends the pass, as in 2.6.1, so it comes last.
    for to in [
        "default@example.org",
        "alice@example.org",
        "none@example.org",
        "override@example.org",
        "anonymous@example.org",
        "nosuch@example.org",
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
        log.contains("info: successful authentication with remote server using mechanism [cram-md5] and md5 secret for [bob] from line 1\n"),
        "{log}"
    );
    assert!(
        log.contains("info: successful authentication with remote server using mechanism [cram-md5] and plaintext secret for [alice] from line 2\n"),
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
        nosuch.contains(
            "X-MailRelay-Reason: no client authentication account: selector [nosuch]\r\n"
        ),
        "{nosuch}"
    );
}

#[test]
fn a_refused_password_pauses_the_route_keeps_the_mail_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let upstream_dir = dir.path().join("upstream");
    std::fs::create_dir_all(&upstream_dir).unwrap();
    let upstream_secrets = secrets(
        &upstream_dir,
        "upstream.auth",
        "server plain bob password123\n",
    );
    let upstream_port = crate::harness::free_port();
    let upstream = Relay::start_on(
        &upstream_dir,
        upstream_port,
        &["--server-auth", upstream_secrets.to_str().unwrap()],
    );
    // Our relay authenticates as bob with the password "wrong", PLAIN.
    let admin = crate::harness::free_port();
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-to",
            &format!("127.0.0.1:{upstream_port}"),
            "--forward-on-disconnect",
            "--client-auth",
            "plain:Ym9i:d3Jvbmc=",
            "--client-auth-config",
            "m:plain",
            "--admin",
            &admin.to_string(),
        ],
    );
    let reply = crate::harness::send_one(
        relay.port,
        "a@example.com",
        &["x@example.org"],
        "Subject: s\r\n\r\nx\r\n",
    );
    assert_eq!(reply, "250 message processed");
    relay.expect_log(&format!(
        "emailrelay: error: forwarding to 127.0.0.1:{upstream_port} paused: the server refused our authentication: \
         535 authentication failed (PLAIN): authentication failed: mail stays queued"
    ));
    // Nothing failed: the message waits, and a second try says no more.
    assert_eq!(relay.files(".envelope").len(), 1);
    assert!(relay.files(".envelope.bad").is_empty());
    let mut a = crate::harness::Client::connect(admin);
    a.send("forward\r\n");
    a.read_until("E-MailRelay> ");
    assert!(wait_until(Duration::from_secs(10), || relay
        .log_text()
        .matches("info: forwarding [emailrelay.")
        .count()
        == 2));
    assert_eq!(
        relay.log_text().matches("paused").count(),
        1,
        "{}",
        relay.log_text()
    );
    // The upstream now takes bob's "wrong": the route resumes by itself on
    // the next attempt, and the mail goes.
    drop(upstream);
    std::fs::write(&upstream_secrets, "server plain bob wrong\n").unwrap();
    let upstream = Relay::start_on(
        &upstream_dir,
        upstream_port,
        &["--server-auth", upstream_secrets.to_str().unwrap()],
    );
    a.send("forward\r\n");
    a.read_until("E-MailRelay> ");
    relay.expect_log(&format!(
        "emailrelay: info: forwarding to 127.0.0.1:{upstream_port} resumed: authentication accepted"
    ));
    // Sent: nothing of it is left here, not even the `.envelope.busy` of a
    // send still waiting for the upstream's 250 (a wait for no `.envelope`
    // alone ended there, and the upstream had not committed it yet).
    assert!(
        wait_until(Duration::from_secs(10), || relay.files("").is_empty()),
        "{}",
        relay.log_text()
    );
    assert_eq!(upstream.files(".envelope").len(), 1);
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
    // Without authentication Postfix refuses the recipient: the message
    // fails, which (as in 2.6.1) is no error of the run.
    forward_once(dir.path(), &spool, &postfix.address(), &[], 0);
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
        log.contains("and plaintext secret for [bob] from line 1\n"),
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

/// Issue 25: with a wrong password, 20 queued messages and `--poll 1`,
/// 2.6.1-style per-message retries made 24 refused logins in 20 s, which
/// locks a Microsoft 365 or Google account. Against Postfix with Dovecot
/// SASL, counting the refusals in Postfix's log: one login in the first
/// 15 s (the route's first wait is a minute less 20% at least), one line
/// saying the route is paused, and the mail all still queued.
#[test]
fn a_refused_password_is_tried_once_per_wait_not_once_per_message() {
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
    let spool = dir.path().join("spool");
    for n in 0..20 {
        submit_to(&spool, &format!("r{n}@example.org"));
    }
    let file = secrets(dir.path(), "client.auth", "client plain bob wrong\n");
    let relay = Relay::launch(
        &spool,
        &dir.path().join("relay.log"),
        crate::harness::free_port(),
        &[
            "--forward-to",
            &postfix.address(),
            "--forward",
            "--poll",
            "1",
            "--client-auth",
            file.to_str().unwrap(),
        ],
    );
    relay.expect_log(&format!(
        "emailrelay: error: forwarding to {} paused: the server refused our authentication: 535",
        postfix.address()
    ));
    let refusals = || {
        postfix
            .log_text()
            .matches("authentication failed: ")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || refusals() == 1),
        "{}",
        postfix.log_text()
    );
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(refusals(), 1, "{}", postfix.log_text());
    let log = relay.log_text();
    assert_eq!(log.matches("paused").count(), 1, "{log}");
    assert_eq!(relay.files(".envelope").len(), 20, "{log}");
    assert!(relay.files(".envelope.bad").is_empty(), "{log}");
    assert!(postfix.delivered().is_empty());
}
