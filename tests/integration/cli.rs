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
    let (code, out, err) = relay(&["--help"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.starts_with("E-MailRelay-rs V"));
    assert!(out.contains("\nabbreviated usage: emailrelay [-dvhlrV] [--as-client=<host:port>]\n"));
    assert!(out.contains("\n  -s, --spool-dir=<dir>       "));
    assert!(!out.contains("--client-smtp-config"));
    let (code, out, _) = relay(&["-h", "-v"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\nusage: emailrelay [-dvhlrVQjbgxf1LtXnBJGKem] [--as-client=<host:port>]\n")
    );
    for option in [
        "\nSMTP client options\n  -c, --client-smtp-config=<config>       ",
        "      --forward-to-some ",
        "      --idle-timeout=<time> ",
        "      --server-tls-certificate=<pem-file> ",
        "      --log-format=<value> ",
        "  -A, --anonymous[=<scope>] ",
        "  -k, --syslog[=<facility>] ",
    ] {
        assert!(out.contains(option), "{option} missing from verbose help");
    }
}

/// What 2.6.1's `--help` printed on standard output in a golden scenario.
fn recorded_help(scenario: &str) -> String {
    let path = format!(
        "{}/tests/golden/cli/{scenario}.golden",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let block = text
        .split("\nstdout\n")
        .nth(1)
        .and_then(|rest| rest.split("\nstderr").next())
        .unwrap();
    let bytes: Vec<u8> = block
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .flat_map(unescape)
        .collect();
    String::from_utf8(bytes).unwrap()
}

/// Undoes the fixture escapes (tests/golden/README.md): `\\`, `\r`, `\n`,
/// `\t`, `\xHH`.
fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let hex = std::str::from_utf8(&hex).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
            }
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    out
}

/// Help with the descriptions taken out: each option's syntax where it
/// starts, the indents of the wrapped description lines (which say where
/// the description column is), and the lines around the option list
/// whole. Also checks that no wrapped line of several words is wider
/// than `width`.
fn help_layout(text: &str, width: usize) -> (Vec<String>, std::collections::BTreeSet<usize>) {
    let mut in_options = false;
    let (mut layout, mut indents) = (Vec::new(), std::collections::BTreeSet::new());
    for line in text.lines() {
        // The summary and the options are wrapped (a word longer than the
        // room it has stays whole, as in 2.6.1); the closing lines are not.
        let wrapped = line.starts_with(' ') || line.contains("usage: ");
        let one_word = !line.trim().contains(' ');
        assert!(
            !wrapped || line.len() <= width || one_word,
            "wider than {width}: [{line}]"
        );
        if line.starts_with("  -") || line.starts_with("      --") {
            in_options = true;
            let body = &line[2..];
            let lead = body.len() - body.trim_start().len();
            let tokens: Vec<&str> = body.split_whitespace().collect();
            let n = if tokens[0].starts_with("--") { 1 } else { 2 };
            let syntax = tokens[..n].join(" ");
            layout.push(format!("option {syntax}"));
            // The description starts at the column (or a space after a
            // longer syntax; on the next line when squeezed).
            let end = 2 + lead + syntax.len();
            let rest = &line[end..];
            if !rest.trim().is_empty() {
                indents.insert(end + rest.len() - rest.trim_start().len());
            }
        } else if in_options && line.starts_with("   ") {
            indents.insert(line.len() - line.trim_start().len());
        } else {
            in_options = false;
            layout.push(line.to_string());
        }
    }
    (layout, indents)
}

/// Issue 24: plain `--help` lists 2.6.1's options, in its order, in its
/// layout (the usage summary wrapped as its, one blank line, the option
/// syntax and the description column where its are, the wrapped lines so
/// indented, within `$COLUMNS` or 79), with our descriptions; we end
/// without 2.6.1's copyright line (docs/compatibility.md).
#[test]
fn plain_help_has_2_6_1s_options_in_2_6_1s_layout() {
    for (scenario, args, columns) in [
        ("help", &["--help"][..], None),
        ("help-short", &["-h"][..], None),
        ("help-columns-40", &["--help"][..], Some(40)),
    ] {
        let mut theirs = recorded_help(scenario);
        let copyright = "\nCopyright (C) 2026 Graeme Walker\n";
        assert!(theirs.ends_with(copyright), "{theirs}");
        theirs.truncate(theirs.len() - copyright.len());
        let mut cmd = Command::new(RELAY);
        cmd.args(args).env_remove("COLUMNS");
        if let Some(columns) = columns {
            cmd.env("COLUMNS", columns.to_string());
        }
        let (code, ours, err) = run(&mut cmd, Duration::from_secs(20));
        assert_eq!((code, err.as_str()), (0, ""));
        let ours = ours.replacen(
            &format!("E-MailRelay-rs V{}", env!("CARGO_PKG_VERSION")),
            "{VERSION-STRING}",
            1,
        );
        let width = columns.unwrap_or(79);
        assert_eq!(
            help_layout(&ours, width),
            help_layout(&theirs, width),
            "{scenario}:\n{ours}"
        );
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
    assert!(out.lines().any(|l| l == "POP server: enabled"));
    assert!(out.lines().any(|l| l == "Admin server: enabled"));
    assert!(out.lines().any(|l| l.starts_with("HTTP endpoint: enabled")));
}

/// The try-line E-MailRelay prints after a command-line syntax error.
const TRY: &str = "            try \"emailrelay --help --verbose\" for more information\n";

#[test]
fn unknown_options_and_bad_values_are_errors() {
    // Syntax errors in E-MailRelay 2.6.1's words, with its pointer to the help.
    let usage: &[(&[&str], &str)] = &[
        (&["--no-such-option"], "emailrelay: error: invalid option: \"--no-such-option\"\n"),
        (&["-%"], "emailrelay: error: invalid option: \"-%\"\n"),
        (&["--port"], "emailrelay: error: no value supplied for \"--port\"\n"),
        (
            &["-p25"],
            "emailrelay: error: invalid option: \"-2\"\nemailrelay: error: invalid option: \"-5\"\nemailrelay: error: no value supplied for -p\n",
        ),
        (
            &["--no-daemon=sometimes"],
            "emailrelay: error: cannot give a value with \"--no-daemon\" (sometimes)\n",
        ),
        (&["--port", "1", "-p", "2"], "emailrelay: error: duplicate use of \"-p\"\n"),
        (&["--log=no", "--log"], "emailrelay: error: conflicting values: \"--log\"\n"),
        (
            &["--port", "-25"],
            "emailrelay: error: \"--port -25\" is probably a mistake, use \"--port=... -25\" or \"--port=-25\"\n",
        ),
        (&["--in-port", "25"], "emailrelay: error: invalid option: \"--in-port\"\n"),
    ];
    for (args, expected) in usage {
        let (code, _, err) = relay(args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(err, format!("{expected}{TRY}"), "{args:?}");
    }
    let other: &[(&[&str], &str)] = &[
        (
            &["--port", "x25"],
            "emailrelay: error: invalid value for --port: [x25]: expecting a port number 0-65535\n",
        ),
        (
            &["--anonymous=bogus"],
            "emailrelay: error: invalid value for --anonymous: [bogus]: expecting vrfy, server, content or client\n",
        ),
        (&["--forward"], "emailrelay: usage error: --forward requires --forward-to\n"),
        (
            &["/no/such/file.conf"],
            "emailrelay: error: error reading configuration file: /no/such/file.conf\n",
        ),
        (&["a.conf", "b.conf"], "emailrelay: error: error reading configuration file: a.conf\n"),
    ];
    for (args, expected) in other {
        let (code, _, err) = relay(args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(err, *expected, "{args:?}");
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
        fields[2], "usage error: the --server-tls option requires --server-tls-certificate",
        "{err}"
    );
}

#[test]
fn later_features_are_refused_by_name() {
    let (code, _, err) = relay(&["--localedir", "x"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the --localedir option is not supported by this build"),
        "{err}"
    );
}

#[test]
fn every_spelling_of_an_option_works() {
    let dir = tempfile::tempdir().unwrap();
    for spelling in [&["--port", "P"][..], &["--port=P"], &["-p", "P"]] {
        let port = free_port().to_string();
        let args: Vec<String> = spelling.iter().map(|s| s.replace('P', &port)).collect();
        let mut cmd = Command::new(RELAY);
        cmd.args(["-t", "-u", "root", "--interface=127.0.0.1", "--spool-dir"])
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
            "# emailrelay.conf\r\nno-daemon\nlog=yes\n#verbose # commented out\nspool-dir = {}\nport={port}\n  interface\t127.0.0.1\nuser root\ndomain \"conf.example.com\"\n",
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
        err.ends_with("emailrelay: error: socket bind error: address already in use\n"),
        "{err}"
    );
}

#[test]
fn daemon_mode_forks_returns_once_ready_and_removes_the_pid_file_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // Twenty starts: the parent must never return before the pid file
    // is there and the port listens (E-MailRelay's forking unit relies on it).
    for _ in 0..20 {
        let port = free_port();
        let pid_file = dir.path().join("run").join("emailrelay.pid");
        let (code, out, err) = relay(&[
            "--as-server",
            "--user",
            "root",
            "--interface",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--spool-dir",
            spool.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ]);
        // As 2.6.1: standard error is closed before the listening lines,
        // so the terminal hears nothing.
        assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
        let text = std::fs::read_to_string(&pid_file).expect("the pid file exists on return");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let pid = nix::unistd::Pid::from_raw(text.trim().parse().unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(crate::harness::wait_until(Duration::from_secs(10), || {
            nix::sys::signal::kill(pid, None).is_err()
        }));
        assert!(
            !pid_file.exists(),
            "the pid file is removed at a clean exit"
        );
    }
}

#[test]
fn with_user_the_pid_file_has_its_group_and_goes_at_exit() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    // A directory only root may write, as 2.6.1's test suite makes it.
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let pid_file = run_dir.join("pid");
    let port = free_port();
    let mut cmd = Command::new(RELAY);
    cmd.args([
        "--no-daemon",
        "--user",
        "nobody",
        "--interface",
        "127.0.0.1",
    ])
    .args(["--port", &port.to_string(), "--spool-dir"])
    .arg(&spool)
    .arg("--pid-file")
    .arg(&pid_file);
    let mut proc = crate::harness::Proc::spawn(&mut cmd);
    assert!(crate::harness::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let meta = std::fs::metadata(&pid_file).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, nobody.gid.as_raw()));
    assert_eq!(meta.mode() & 0o777, 0o644);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", proc.pid())
    );
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proc.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!pid_file.exists());
}

#[test]
fn a_daemon_that_fails_after_forking_makes_its_parent_exit_1() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pid_file = dir.path().join("pid");
    // The spool is found unwritable only once the relay has become nobody,
    // after the fork: the waiting parent must report it.
    let (code, _, err) = relay(&[
        "--as-server",
        "--user",
        "nobody",
        "--interface",
        "127.0.0.1",
        "--port",
        &free_port().to_string(),
        "--spool-dir",
        spool.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not writable by user nobody"), "{err}");
    assert!(crate::harness::wait_until(Duration::from_secs(10), || {
        !pid_file.exists()
    }));
}

#[test]
fn a_log_file_that_cannot_be_opened_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = relay(&[
        "--no-daemon",
        "--log",
        "--user",
        "root",
        "--port",
        &free_port().to_string(),
        "--spool-dir",
        dir.path().to_str().unwrap(),
        "--log-file",
        "/nonexistent/dir/emailrelay.log",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "emailrelay: error: cannot open log file: /nonexistent/dir/emailrelay.log\n"
    );
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
        "emailrelay: error: invalid filter specification: invalid host:service format\n"
    );
}

/// The manual pages (generated from the option tables, see src/man.rs)
/// pass groff's checks with every warning on, and render.
#[test]
fn manual_pages_render_with_groff_without_warnings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man");
    for page in ["emailrelay.1", "emailrelay-submit.1", "emailrelay-passwd.1"] {
        let path = dir.join(page);
        let (code, out, err) = crate::harness::run(
            Command::new(crate::harness::program("groff"))
                .args(["-man", "-Tascii", "-ww"])
                .arg(&path),
            Duration::from_secs(30),
        );
        assert_eq!((code, err.as_str()), (0, ""), "{page}");
        // Bold and underline are overstrikes (`X\x08X`): keep the last.
        let mut plain = String::new();
        for c in out.chars() {
            match c {
                '\x08' => {
                    plain.pop();
                }
                c => plain.push(c),
            }
        }
        let out = plain;
        let name = page.trim_end_matches(".1");
        assert!(out.contains(&format!("{name} - ")), "{page}: {out}");
        assert!(out.contains("--help"), "{page}: {out}");
    }
}
