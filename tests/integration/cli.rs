//! Command line and config file: every option spelling, help/version,
//! refusals with exit code 1, and exit code 2 for a port in use.

use std::process::Command;
use std::time::Duration;

use crate::harness::{free_port, run, Relay, RELAY};

fn relay(args: &[&str]) -> (i32, String, String) {
    run(Command::new(RELAY).args(args), Duration::from_secs(20))
}

#[test]
fn help_lists_basic_options_and_verbose_help_lists_all() {
    let (code, out, _) = relay(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("usage: emailrelay [<option> [<option> ...]] [<config-file>]"));
    assert!(out.contains("-s, --spool-dir <dir>"));
    assert!(!out.contains("--client-smtp-config"));
    let (code, out, _) = relay(&["-h", "-v"]);
    assert_eq!(code, 0);
    for option in [
        "--client-smtp-config",
        "--forward-to-some",
        "--idle-timeout",
        "--server-tls-certificate",
        "--log-format",
        "--anonymous[=<scope>]",
    ] {
        assert!(out.contains(option), "{option} missing from verbose help");
    }
}

#[test]
fn version_verbose_lists_features_one_per_line() {
    let (code, out, _) = relay(&["--version"]);
    assert_eq!((code, out.lines().count()), (0, 1));
    assert!(out.starts_with("E-MailRelay-rs V"));
    let (_, out, _) = relay(&["-V", "--verbose"]);
    // E-MailRelay compatibility: OpenSSL's own version text, the library
    // the relay runs with as `openssl version` names it.
    let (_, openssl, _) = run(
        Command::new("openssl").arg("version"),
        Duration::from_secs(10),
    );
    let library = openssl
        .split("(Library: ")
        .nth(1)
        .map_or(openssl.trim(), |l| l.trim().trim_end_matches(')'));
    assert!(library.starts_with("OpenSSL 3."), "{openssl}");
    let wanted = format!("TLS library: {library}");
    assert!(out.lines().any(|l| l == wanted), "{out}");
    assert!(out.lines().any(|l| l == "POP server: disabled"));
    assert!(out.lines().any(|l| l == "Admin server: enabled"));
}

#[test]
fn unknown_options_and_bad_values_are_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--no-such-option"],
            "emailrelay: error: invalid option: --no-such-option",
        ),
        (&["-%"], "emailrelay: error: invalid option: -%"),
        (
            &["--port"],
            "emailrelay: error: the --port option requires a value",
        ),
        (
            &["--port", "x25"],
            "emailrelay: error: invalid value for --port: [x25]: expecting a port number 0-65535",
        ),
        (
            &["--port=70000"],
            "emailrelay: error: invalid value for --port: [70000]",
        ),
        (
            &["--no-daemon=1"],
            "emailrelay: error: the --no-daemon option does not take a value",
        ),
        (
            &["--port", "1", "-p", "2"],
            "emailrelay: error: the --port option is given more than once",
        ),
        (
            &["--anonymous=bogus"],
            "emailrelay: error: invalid value for --anonymous: [bogus]",
        ),
        (
            &["--forward"],
            "emailrelay: error: forwarding options need --forward-to",
        ),
        (
            &["a.conf", "b.conf"],
            "emailrelay: error: too many non-option arguments: b.conf",
        ),
        (
            &["/no/such/file.conf"],
            "emailrelay: error: cannot read config file [/no/such/file.conf]",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, err) = relay(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.starts_with(expected), "{args:?}: {err}");
    }
}

#[test]
fn startup_errors_carry_the_time_with_log_time() {
    let (code, _, err) = relay(&["--log-time", "--server-tls"]);
    assert_eq!(code, 1);
    let fields: Vec<&str> = err.trim().splitn(3, ": ").collect();
    assert_eq!(fields[0], "emailrelay");
    assert!(
        fields[1].len() == 19 && fields[1].as_bytes()[8] == b'.',
        "{err}"
    );
    assert_eq!(
        fields[2], "error: --server-tls and --server-tls-connection need --server-tls-certificate",
        "{err}"
    );
}

#[test]
fn later_features_and_instances_are_refused_by_name() {
    for (args, name) in [
        (&["--pop-auth", "x"][..], "--pop-auth"),
        (&["--pop"], "--pop"),
    ] {
        let (code, _, err) = relay(args);
        assert_eq!(code, 1);
        assert!(
            err.contains(&format!("the {name} option is not supported by this build")),
            "{err}"
        );
    }
    let (code, _, err) = relay(&["--in-port", "25"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "emailrelay: error: multiple instances are not supported yet: --in-port"
    );
}

#[test]
fn every_spelling_of_an_option_works() {
    let dir = tempfile::tempdir().unwrap();
    for spelling in [&["--port", "P"][..], &["--port=P"], &["-p", "P"], &["-pP"]] {
        let port = free_port().to_string();
        let args: Vec<String> = spelling.iter().map(|s| s.replace('P', &port)).collect();
        let mut cmd = Command::new(RELAY);
        cmd.args(["-t", "-u", "root", "--interface=127.0.0.1", "-s"])
            .arg(dir.path().join("spool"))
            .args(&args);
        let _relay = crate::harness::Proc::spawn(&mut cmd);
        let ok = crate::harness::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok()
        });
        assert!(ok, "{args:?} did not listen on {port}");
    }
}

#[test]
fn a_config_file_gives_options_without_dashes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("emailrelay.conf");
    std::fs::write(
        &conf,
        format!(
            "# emailrelay.conf\nno-daemon\nlog\n#verbose # commented out\nspool-dir {}\nport {port}\n  interface 127.0.0.1\nuser root\ndomain conf.example.com\n",
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(RELAY);
    cmd.arg(&conf);
    let _relay = crate::harness::Proc::spawn(&mut cmd);
    assert!(crate::harness::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let mut client = crate::harness::Client::connect(port);
    assert!(client
        .reply()
        .starts_with("220 conf.example.com -- E-MailRelay-rs V"));
}

#[test]
fn app_is_replaced_by_the_program_directory() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("e.conf");
    std::fs::write(
        &conf,
        "pid-file @app/../no-such-dir-xyz/sub/pid\nno-daemon\nport 1\n",
    )
    .unwrap();
    let (code, _, err) = relay(&[
        "--interface",
        "127.0.0.1",
        "--user",
        "root",
        "--spool-dir",
        dir.path().to_str().unwrap(),
        conf.to_str().unwrap(),
    ]);
    let app = std::path::Path::new(RELAY)
        .parent()
        .unwrap()
        .display()
        .to_string();
    // The pid file's parent's parent does not exist, so writing fails and names the substituted path.
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{app}/../no-such-dir-xyz/sub/pid")),
        "{err}"
    );
}

#[test]
fn a_port_in_use_exits_with_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let first = Relay::start(dir.path(), &[]);
    let (code, _, err) = relay(&[
        "--no-daemon",
        "--user",
        "root",
        "--interface",
        "127.0.0.1",
        "--port",
        &first.port.to_string(),
        "--spool-dir",
        dir.path().join("spool").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: cannot bind the listening port 127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn daemon_mode_forks_and_writes_the_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pid_file = dir.path().join("run").join("emailrelay.pid");
    let (code, _, _) = relay(&[
        "--as-server",
        "--user",
        "root",
        "--interface",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--spool-dir",
        dir.path().join("spool").to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(crate::harness::wait_until(
        Duration::from_secs(10),
        || pid_file.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    ));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(crate::harness::wait_until(Duration::from_secs(10), || {
        nix::sys::signal::kill(pid, None).is_err()
    }));
}

#[test]
fn filter_and_verifier_programs_are_checked_at_startup() {
    let (code, _, err) = relay(&["--filter", "/nonexistent/filter.sh"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: error: invalid value for --filter: [/nonexistent/filter.sh]: No such file or directory (os error 2)\n"
    );
    let (code, _, err) = relay(&["--address-verifier", "/etc/passwd"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: error: invalid value for --address-verifier: [/etc/passwd]: not executable\n"
    );
    let (code, _, err) = relay(&["--filter", "exit:0,spam:"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: error: invalid filter [spam:]: no address\n"
    );
}
