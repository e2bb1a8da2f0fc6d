//! The Windows release: scripts/windows-release's zip and installer
//! (packaging/windows), driven from Linux under Wine.
//!
//! - The zip: its exact contents, CRLF text files, emailrelay-start.bat as
//!   2.6.1's setup writes it, the same bytes when made again, and its three
//!   example filters run by Wine's `cscript.exe //nologo //B` with the
//!   arguments 2.6.1 gives a filter (content path, envelope path).
//! - The installer, silent, into a fresh Wine prefix: the files and
//!   registry entries where 2.6.1's setup puts them, the config template
//!   with the folders filled in, then (after an administrator's edit and a
//!   reinstall that keeps it) the service installed and running, mail
//!   through the installed relay and its filters to Postfix's smtp-sink,
//!   mail held while the smarthost is down, the silent uninstall (service,
//!   program folder and registry entries gone, the data folder kept with
//!   the held message), a reinstall that sends the held mail on, an
//!   uninstall that removes the then empty data folder, and /DATA=, /D=,
//!   /NOSERVICE and /NOMENU with spaces in the folders.
//!
//! Wine, makensis and the MinGW tool chain must be installed (the build
//! runs here, through the script): without them these tests fail. Each
//! test has its own prefix, killed with `wineserver -k` at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{free_port, greets, run, wait_until, Client, Sink};
use crate::wine::{winpath, Wine};

const PROGRAMS: &str = "Program Files/E-MailRelay";
const DATA: &str = "ProgramData/E-MailRelay";
const START_BAT: &str = "start \"emailrelay\" \"C:\\Program Files\\E-MailRelay\\emailrelay.exe\" \
                         C:\\ProgramData\\E-MailRelay\\emailrelay.cfg\r\n";

/// What scripts/windows-release made.
struct Release {
    zip: PathBuf,
    setup: PathBuf,
}

/// The release, made once for all the tests in this process.
fn release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| make_release(&root().join("target/windows"), false))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs scripts/windows-release into `out` (a cold build with OpenSSL takes
/// many minutes on two cores).
fn make_release(out: &Path, zip_only: bool) -> Release {
    let mut cmd = Command::new(root().join("scripts/windows-release"));
    cmd.arg("--out").arg(out);
    if zip_only {
        cmd.arg("--zip-only");
    }
    let (code, stdout, stderr) = run(&mut cmd, Duration::from_secs(2400));
    assert_eq!(
        code, 0,
        "scripts/windows-release failed:\n{stdout}\n{stderr}"
    );
    let made: Vec<PathBuf> = stdout
        .lines()
        .filter(|l| l.ends_with(" bytes"))
        .filter_map(|l| l.split(' ').next().map(PathBuf::from))
        .collect();
    let find = |suffix: &str| made.iter().find(|p| p.to_string_lossy().ends_with(suffix));
    let zip = find("-windows-x86_64.zip").expect("no zip made").clone();
    let setup = find("-windows-x86_64-setup.exe")
        .cloned()
        .unwrap_or_default();
    Release { zip, setup }
}

/// A Wine prefix of the test's own (`crate::wine`, made by
/// scripts/wine/prefix, killed on drop), and commands run in it with their
/// output in files.
struct Prefix {
    wine: Wine,
    drive_c: PathBuf,
    scratch: tempfile::TempDir,
}

impl Prefix {
    fn new() -> Prefix {
        let mut prefix = Prefix {
            wine: Wine::new(),
            drive_c: PathBuf::new(),
            scratch: tempfile::tempdir().unwrap(),
        };
        let (code, out, err) = prefix.run(&["winepath.exe", "-u", "C:\\"], Duration::from_secs(60));
        assert_eq!(code, 0, "winepath: {err}");
        prefix.drive_c = PathBuf::from(out.trim_end());
        assert!(prefix.drive_c.join("windows").is_dir(), "C: is {out:?}");
        prefix
    }

    /// Runs `wine <args>` to completion within `limit`, its output going
    /// through files (never a pipe that a program it starts could keep
    /// open), under one locale whatever the caller's (UTF-8 arguments and
    /// file names, OEM code page 437); returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str], limit: Duration) -> (i32, String, String) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let out = self.scratch.path().join(format!("{n}.out"));
        let err = self.scratch.path().join(format!("{n}.err"));
        let (program, args) = args.split_first().expect("a program");
        let mut child = self
            .wine
            .command(Path::new(program))
            .args(args)
            .env("LANG", "C.UTF-8")
            .env_remove("LC_ALL")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("cannot run wine: apt-get install wine wine64");
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("wine {program} {args:?} did not finish in {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        (status.code().unwrap_or(-1), read(&out), read(&err))
    }

    /// A path on the prefix's drive C:, from the Linux side.
    fn c(&self, path: &str) -> PathBuf {
        self.drive_c.join(path)
    }

    /// True while a copy of the uninstaller (`...\Un.exe`) runs in this
    /// prefix (Wine's tasklist lists nothing, so /proc is read).
    fn uninstaller_running(&self) -> bool {
        let prefix = self.drive_c.canonicalize().unwrap();
        let wanted = format!("WINEPREFIX={}", prefix.parent().unwrap().display());
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return false;
        };
        procs.filter_map(Result::ok).any(|p| {
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(p.path().join("environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("\\Un.exe")
                && environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes())
        })
    }

    /// `reg query <key>`: the exit code and the output.
    fn reg_query(&self, key: &str) -> (i32, String) {
        let (code, out, _) = self.run(&["reg", "query", key], Duration::from_secs(60));
        (code, out)
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    String::from_utf8(read(path)).unwrap()
}

/// The names in a folder, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every line feed has its carriage return.
fn is_crlf(text: &[u8]) -> bool {
    text.iter()
        .enumerate()
        .all(|(i, &b)| b != b'\n' || (i > 0 && text[i - 1] == b'\r'))
}

// ---------------------------------------------------------------- the zip

const CONTENT: &[u8] = b"From: device@lan.example\r\nTo: bob@example.org\r\n\
    Subject: scan ready\r\n\r\nA page, caf\xc3\xa9.\r\n";
const ENVELOPE: &[u8] = b"X-MailRelay-Format: #2821.8\r\nX-MailRelay-Content: 8bit\r\n\
    X-MailRelay-From: device@lan.example\r\nX-MailRelay-ToCount: 1\r\n\
    X-MailRelay-To-Remote: bob@example.org\r\nX-MailRelay-Authentication: \r\n\
    X-MailRelay-Client: 192.168.1.20\r\nX-MailRelay-End: 1\r\n";

/// One message's files in `dir`, as the relay hands them to a server filter.
fn message(dir: &Path, content: &[u8], envelope: &[u8]) -> (PathBuf, PathBuf) {
    let (c, e) = (
        dir.join("emailrelay.1.2.3.content"),
        dir.join("emailrelay.1.2.3.envelope.new"),
    );
    std::fs::write(&c, content).unwrap();
    std::fs::write(&e, envelope).unwrap();
    (c, e)
}

/// Runs a filter as 2.6.1 does: `cscript.exe //nologo //B <script>
/// <content> <envelope>`; returns (exit code, stdout).
fn cscript(wine: &Prefix, script: &Path, content: &Path, envelope: &Path) -> (i32, String) {
    let (script, content, envelope) = (winpath(script), winpath(content), winpath(envelope));
    let (code, out, err) = wine.run(
        &[
            "cscript.exe",
            "//nologo",
            "//B",
            &script,
            &content,
            &envelope,
        ],
        Duration::from_secs(60),
    );
    assert_eq!(err, "", "cscript's stderr");
    (code, out)
}

#[test]
fn the_release_zip_holds_the_programs_and_its_filters_work_under_wine() {
    let release = release();
    let dir = tempfile::tempdir().unwrap();
    let top = release
        .zip
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();

    let (code, listing, err) = run(
        Command::new("unzip").arg("-Z1").arg(&release.zip),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    let expected: Vec<String> = [
        "",
        "emailrelay-passwd.exe",
        "emailrelay-service.exe",
        "emailrelay-start.bat",
        "emailrelay-submit.exe",
        "emailrelay.auth",
        "emailrelay.cfg",
        "emailrelay.exe",
        "examples/",
        "examples/emailrelay-add-header.js",
        "examples/emailrelay-reject-subject.js",
        "examples/emailrelay-set-sender.js",
        "readme-windows.txt",
    ]
    .iter()
    .map(|n| format!("{top}/{n}"))
    .collect();
    let mut listed: Vec<String> = listing.lines().map(String::from).collect();
    listed.sort();
    assert_eq!(listed, expected);
    eprintln!(
        "{}: {} bytes",
        release.zip.display(),
        std::fs::metadata(&release.zip).unwrap().len()
    );

    let (code, _, err) = run(
        Command::new("unzip")
            .arg("-q")
            .arg(&release.zip)
            .arg("-d")
            .arg(dir.path()),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let files = dir.path().join(&top);
    for exe in [
        "emailrelay",
        "emailrelay-submit",
        "emailrelay-passwd",
        "emailrelay-service",
    ] {
        let bytes = read(&files.join(format!("{exe}.exe")));
        assert!(bytes.starts_with(b"MZ"), "{exe}.exe is no Windows program");
    }
    assert_eq!(read_text(&files.join("emailrelay-start.bat")), START_BAT);
    for text in [
        "readme-windows.txt",
        "emailrelay.cfg",
        "emailrelay.auth",
        "emailrelay-start.bat",
        "examples/emailrelay-add-header.js",
        "examples/emailrelay-reject-subject.js",
        "examples/emailrelay-set-sender.js",
    ] {
        assert!(
            is_crlf(&read(&files.join(text))),
            "{text} has bare LF line ends"
        );
    }
    let readme = read_text(&files.join("readme-windows.txt"));
    assert!(readme.starts_with(&format!(
        "E-MailRelay {} for Windows",
        env!("CARGO_PKG_VERSION")
    )));
    let cfg = read_text(&files.join("emailrelay.cfg"));
    for line in [
        "\r\nspool-dir C:\\ProgramData\\E-MailRelay\\spool\r\n",
        "\r\nforward-to smtp.example.com:587\r\n",
        "\r\nremote-clients\r\n",
    ] {
        assert!(cfg.contains(line), "emailrelay.cfg lacks {line:?}");
    }
    for script in ["add-header", "reject-subject", "set-sender"] {
        let text = read_text(&files.join(format!("examples/emailrelay-{script}.js")));
        for needed in [
            "WScript.Echo(",
            "WScript.Arguments",
            "\"Scripting.FileSystemObject\"",
            "WScript.Quit(",
        ] {
            assert!(
                text.contains(needed),
                "emailrelay-{script}.js has no {needed}"
            );
        }
    }

    // The same source makes the same bytes.
    let again = make_release(&dir.path().join("again"), true);
    assert!(
        read(&again.zip) == read(&release.zip),
        "a second zip differs from the first"
    );

    let wine = Prefix::new();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let example = |name: &str| files.join("examples").join(name);

    // Adding a header: the content gains one line, nothing else changes.
    let (content, envelope) = message(&work, CONTENT, ENVELOPE);
    let (code, out) = cscript(
        &wine,
        &example("emailrelay-add-header.js"),
        &content,
        &envelope,
    );
    assert_eq!((code, out.as_str()), (0, ""));
    let mut expected = b"X-Relayed-By: emailrelay\r\n".to_vec();
    expected.extend_from_slice(CONTENT);
    assert_eq!(read(&content), expected);
    assert_eq!(read(&envelope), ENVELOPE);
    assert_eq!(names(&work).len(), 2, "files left: {:?}", names(&work));

    // A content file that is not there: a <<reason>> and exit 1.
    std::fs::remove_file(&content).unwrap();
    let (code, out) = cscript(
        &wine,
        &example("emailrelay-add-header.js"),
        &content,
        &envelope,
    );
    assert_eq!(code, 1);
    assert!(
        out.starts_with("<<cannot add a header>>\r\n<<emailrelay-add-header.js: "),
        "{out:?}"
    );

    // Refusing by subject, also when the mark is on a folded line.
    let reject = example("emailrelay-reject-subject.js");
    let (content, envelope) = message(&work, CONTENT, ENVELOPE);
    assert_eq!(
        cscript(&wine, &reject, &content, &envelope),
        (0, String::new())
    );
    for subject in ["Subject: [SPAM] cheap", "subject: offer\r\n\t[spam] again"] {
        let text = format!("From: x@y.example\r\n{subject}\r\n\r\nbody\r\n");
        let (content, envelope) = message(&work, text.as_bytes(), ENVELOPE);
        assert_eq!(
            cscript(&wine, &reject, &content, &envelope),
            (
                1,
                "<<554 message refused: its subject is marked [SPAM]>>\r\n".to_string()
            ),
            "{subject:?}"
        );
        assert_eq!(
            read(&content),
            text.as_bytes(),
            "the filter changed the content"
        );
    }
    // "[SPAM]" in the body is not the subject.
    let text = b"Subject: hello\r\n\r\nSubject: [SPAM]\r\n";
    let (content, envelope) = message(&work, text, ENVELOPE);
    assert_eq!(
        cscript(&wine, &reject, &content, &envelope),
        (0, String::new())
    );

    // Editing the envelope: the sender line only; a bounce keeps <>.
    let set_sender = example("emailrelay-set-sender.js");
    let (content, envelope) = message(&work, CONTENT, ENVELOPE);
    assert_eq!(
        cscript(&wine, &set_sender, &content, &envelope),
        (0, String::new())
    );
    let edited = String::from_utf8(ENVELOPE.to_vec()).unwrap().replace(
        "X-MailRelay-From: device@lan.example\r\n",
        "X-MailRelay-From: relay@example.com\r\n",
    );
    assert_eq!(read_text(&envelope), edited);
    assert_eq!(read(&content), CONTENT);
    assert_eq!(names(&work).len(), 2, "files left: {:?}", names(&work));
    let bounce = String::from_utf8(ENVELOPE.to_vec())
        .unwrap()
        .replace("From: device@lan.example", "From: ");
    let (content, envelope) = message(&work, CONTENT, bounce.as_bytes());
    assert_eq!(
        cscript(&wine, &set_sender, &content, &envelope),
        (0, String::new())
    );
    assert_eq!(read_text(&envelope), bounce);
}

// ---------------------------------------------------------- the installer

/// Runs the installer with `args` and waits for it.
fn install(wine: &Prefix, setup: &Path, args: &[&str]) -> i32 {
    let setup = winpath(setup);
    let mut all = vec![setup.as_str()];
    all.extend_from_slice(args);
    let (code, out, err) = wine.run(&all, Duration::from_secs(300));
    eprintln!("setup {args:?}: exit {code}\n{out}{err}");
    code
}

/// Runs `<program folder>\uninstall.exe /S` and waits for it to finish:
/// its first process starts a copy of itself (`~nsu*.tmp\Un.exe`), which
/// does the work (removing the program folder among it), and ends.
fn uninstall(wine: &Prefix, program_dir: &str) {
    let uninstaller = format!("C:\\{}\\uninstall.exe", program_dir.replace('/', "\\"));
    let (code, out, err) = wine.run(&[&uninstaller, "/S"], Duration::from_secs(120));
    assert_eq!(code, 0, "uninstall.exe /S: {out}{err}");
    assert!(
        wait_until(Duration::from_secs(120), || {
            !wine.c(program_dir).exists() && !wine.uninstaller_running()
        }),
        "the uninstaller did not remove {program_dir} and end in 120 s"
    );
}

/// The service's state from `sc query`: RUNNING, STOPPED, ... or "" if
/// there is no such service.
fn service_state(wine: &Prefix) -> String {
    let (_, out, _) = wine.run(&["sc", "query", "emailrelay"], Duration::from_secs(60));
    out.lines()
        .find_map(|l| l.trim().strip_prefix("STATE"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("")
        .to_string()
}

/// An administrator's edit of the installed emailrelay.cfg: loopback, a
/// free port, the smarthost `sink`, a quick poll, the three example filters.
fn edit_config(text: &str, port: u16, sink: &str) -> String {
    let examples = "C:\\Program Files\\E-MailRelay\\examples\\emailrelay-";
    let filters = format!(
        "filter {examples}reject-subject.js,{examples}set-sender.js,{examples}add-header.js"
    );
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        let body = line.trim_end_matches("\r\n");
        let edited = match body {
            "port 25" => format!("port {port}\r\ninterface 127.0.0.1\r\ndomain relay.example.com"),
            "forward-to smtp.example.com:587" => format!("forward-to {sink}"),
            "poll 60" => "poll 1".to_string(),
            "#verbose" => "verbose".to_string(),
            _ if body.starts_with("#filter ") => filters.clone(),
            _ => body.to_string(),
        };
        out.push_str(&edited);
        out.push_str("\r\n");
    }
    for needed in [
        "port ",
        "forward-to 127.0.0.1",
        "poll 1",
        "\r\nverbose",
        "filter C:",
    ] {
        assert!(
            out.contains(needed),
            "the template changed: no {needed:?} after the edit"
        );
    }
    out
}

/// Sends one message through the relay on `port`; returns the final reply.
fn send(port: u16, subject: &str) -> String {
    let mut c = Client::connect(port);
    c.reply();
    let body = format!(
        "From: device@lan.example\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    );
    let reply = c.send_message("device@lan.example", &["bob@example.org"], &body);
    c.command("QUIT");
    reply
}

fn spool_entries(wine: &Prefix) -> Vec<String> {
    names(&wine.c(&format!("{DATA}/spool")))
}

#[test]
fn the_installer_sets_up_the_service_relays_mail_and_uninstalls_keeping_the_spool() {
    let release = release();
    assert!(
        release.setup.is_file(),
        "scripts/windows-release made no installer"
    );
    let dir = tempfile::tempdir().unwrap();
    let wine = Prefix::new();

    // 1. Silent, without the service: what goes where.
    assert_eq!(install(&wine, &release.setup, &["/S", "/NOSERVICE"]), 0);
    let programs = wine.c(PROGRAMS);
    assert_eq!(
        names(&programs),
        [
            "emailrelay-passwd.exe",
            "emailrelay-service.cfg",
            "emailrelay-service.exe",
            "emailrelay-submit.exe",
            "emailrelay.exe",
            "examples",
            "readme-windows.txt",
            "uninstall.exe"
        ]
    );
    assert_eq!(
        names(&programs.join("examples")),
        [
            "emailrelay-add-header.js",
            "emailrelay-reject-subject.js",
            "emailrelay-set-sender.js"
        ]
    );
    assert_eq!(
        read_text(&programs.join("emailrelay-service.cfg")),
        "dir-config=C:\\ProgramData\\E-MailRelay\r\n"
    );
    let data = wine.c(DATA);
    assert_eq!(
        names(&data),
        [
            "emailrelay-start.bat",
            "emailrelay.auth",
            "emailrelay.cfg",
            "spool"
        ]
    );
    assert_eq!(spool_entries(&wine), Vec::<String>::new());
    assert_eq!(read_text(&data.join("emailrelay-start.bat")), START_BAT);
    // With the default folders the config is the template itself.
    let zip_dir = dir.path().join("zip");
    let (code, _, err) = run(
        Command::new("unzip")
            .arg("-q")
            .arg(&release.zip)
            .arg("-d")
            .arg(&zip_dir),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    let template_dir = std::fs::read_dir(&zip_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        read(&data.join("emailrelay.cfg")),
        read(&template_dir.join("emailrelay.cfg"))
    );
    assert_eq!(
        read(&data.join("emailrelay.auth")),
        read(&template_dir.join("emailrelay.auth"))
    );
    assert_eq!(
        names(&wine.c("ProgramData/Microsoft/Windows/Start Menu/Programs/E-MailRelay")),
        [
            "Data folder.lnk",
            "E-MailRelay.lnk",
            "Edit emailrelay.cfg.lnk",
            "Read me.lnk",
            "Uninstall E-MailRelay.lnk"
        ]
    );
    let eventlog = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\emailrelay";
    let (code, out) = wine.reg_query(eventlog);
    assert_eq!(code, 0, "no Event Log source");
    for value in [
        "EventMessageFile    REG_SZ    C:\\Program Files\\E-MailRelay\\emailrelay.exe",
        "TypesSupported    REG_DWORD    0x7",
        "CategoryCount    REG_DWORD    0x1",
    ] {
        assert!(out.contains(value), "no {value:?} in:\n{out}");
    }
    let uninstall_key =
        "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\E-MailRelay";
    let (code, out) = wine.reg_query(uninstall_key);
    assert_eq!(code, 0);
    assert!(out.contains("QuietUninstallString    REG_SZ    \"C:\\Program Files\\E-MailRelay\\uninstall.exe\" /S"), "{out}");
    let service_key = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\emailrelay";
    assert_ne!(
        wine.reg_query(service_key).0,
        0,
        "/NOSERVICE installed a service"
    );

    // 2. An administrator edits emailrelay.cfg; a reinstall keeps it and
    // installs and starts the service.
    let sink = Sink::start(dir.path());
    let port = free_port();
    let cfg = edit_config(
        &read_text(&data.join("emailrelay.cfg")),
        port,
        &sink.address(),
    );
    std::fs::write(data.join("emailrelay.cfg"), &cfg).unwrap();
    assert_eq!(install(&wine, &release.setup, &["/S"]), 0);
    assert_eq!(
        read_text(&data.join("emailrelay.cfg")),
        cfg,
        "the reinstall changed emailrelay.cfg"
    );
    let (code, out) = wine.reg_query(service_key);
    assert_eq!(code, 0, "no service");
    for value in [
        // Quoted: an unquoted path with a space is a known hole.
        "ImagePath    REG_SZ    \"C:\\Program Files\\E-MailRelay\\emailrelay-service.exe\"",
        "Start    REG_DWORD    0x2",
    ] {
        assert!(out.contains(value), "no {value:?} in:\n{out}");
    }
    assert_eq!(service_state(&wine), "RUNNING");
    assert!(
        wait_until(Duration::from_secs(60), || greets(port)),
        "the service's relay does not answer on port {port}"
    );

    // 3. Mail through the installed relay and its three filters.
    assert_eq!(
        send(port, "[SPAM] offer"),
        "554 message refused: its subject is marked [SPAM]"
    );
    let reply = send(port, "scan ready");
    assert!(
        reply.starts_with("250 "),
        "{reply}; log:\n{}",
        log_text(&data)
    );
    let forwarded = received(&sink, "Subject: scan ready", &data);
    assert!(
        forwarded.contains("X-Mail-Args: <relay@example.com>"),
        "{forwarded}"
    );
    let header = forwarded.find("\nX-Relayed-By: emailrelay\n");
    let from = forwarded.find("\nFrom: device@lan.example\n");
    assert!(header.is_some() && header < from, "{forwarded}");
    assert!(forwarded.contains("Subject: scan ready"), "{forwarded}");
    assert!(
        wait_until(Duration::from_secs(30), || spool_entries(&wine).is_empty()),
        "the spool keeps {:?}",
        spool_entries(&wine)
    );

    // 4. The smarthost goes away: the next message waits in the spool.
    drop(sink);
    let reply = send(port, "held");
    assert!(
        reply.starts_with("250 "),
        "{reply}; log:\n{}",
        log_text(&data)
    );
    let held: Vec<String> = spool_entries(&wine)
        .into_iter()
        .filter(|n| n.ends_with(".content"))
        .collect();
    assert_eq!(held.len(), 1, "spool: {:?}", spool_entries(&wine));

    // 5. Uninstall: the service and the program folder go, the data
    // folder stays with the held mail, and says why.
    let note = data.join("emailrelay-uninstall.txt");
    uninstall(&wine, PROGRAMS);
    assert!(note.exists(), "no {}", note.display());
    assert_ne!(
        wine.reg_query(service_key).0,
        0,
        "the service is still there"
    );
    assert_eq!(service_state(&wine), "");
    assert!(!wine
        .c("ProgramData/Microsoft/Windows/Start Menu/Programs/E-MailRelay")
        .exists());
    assert_ne!(
        wine.reg_query(eventlog).0,
        0,
        "the Event Log source is still there"
    );
    assert_ne!(wine.reg_query(uninstall_key).0, 0);
    assert!(
        wait_until(Duration::from_secs(30), || !greets(port)),
        "a relay still answers on {port}"
    );
    let kept = spool_entries(&wine);
    let id = held[0].trim_end_matches(".content");
    assert!(
        kept.contains(&held[0])
            && kept
                .iter()
                .any(|n| n.starts_with(&format!("{id}.envelope"))),
        "the held message is not in the spool: {kept:?}"
    );
    assert_eq!(
        read_text(&note),
        format!(
            "E-MailRelay was uninstalled.\r\nThe spool C:\\ProgramData\\E-MailRelay\\spool still \
             holds mail ({} files), so the data folder C:\\ProgramData\\E-MailRelay was kept, with \
             its configuration. Reinstall E-MailRelay to send the mail on, or delete the folder \
             yourself.\r\n",
            kept.len()
        )
    );
    assert_eq!(read_text(&data.join("emailrelay.cfg")), cfg);

    // 6. Reinstalled with the smarthost back: the held mail goes on.
    let sink = Sink::start_on(&dir.path().join("second"), sink_port(&cfg), &[]);
    assert_eq!(install(&wine, &release.setup, &["/S"]), 0);
    assert_eq!(service_state(&wine), "RUNNING");
    received(&sink, "Subject: held", &data);
    assert_eq!(sink.messages().len(), 1);
    assert!(wait_until(Duration::from_secs(30), || spool_entries(&wine).is_empty()));

    // 7. Uninstalled with an empty spool: the data folder goes too.
    uninstall(&wine, PROGRAMS);
    assert!(!data.exists(), "the data folder of an empty spool was kept");
    assert_eq!(service_state(&wine), "");

    // 8. Other folders, with a space and an accent, and no service or
    // Start menu. The .cfg files are UTF-8 (as the relay reads them), the
    // batch file is in the OEM code page (as cmd reads it; 437 here).
    // A name the batch file cannot hold is refused before anything is
    // installed.
    let refused = ["/S", "/DATA=C:\\Relay 数据", "/D=C:\\Relay\\Programs"];
    assert_eq!(install(&wine, &release.setup, &refused), 2);
    assert!(!wine.c("Relay").exists() && !wine.c("Relay 数据").exists());
    assert_eq!(service_state(&wine), "");
    let args = [
        "/S",
        "/NOSERVICE",
        "/NOMENU",
        "/DATA=C:\\Relay Données",
        // NSIS takes /D= unquoted only, and Wine quotes an argument
        // with a space: the default folder has the space.
        "/D=C:\\Relay\\Programs",
    ];
    assert_eq!(install(&wine, &release.setup, &args), 0);
    let (programs, data) = (wine.c("Relay/Programs"), wine.c("Relay Données"));
    assert!(programs.join("emailrelay.exe").is_file());
    assert_eq!(
        String::from_utf8_lossy(&read(&data.join("emailrelay-start.bat"))),
        String::from_utf8_lossy(
            b"start \"emailrelay\" C:\\Relay\\Programs\\emailrelay.exe \"C:\\Relay Donn\x82es\\emailrelay.cfg\"\r\n"
        )
    );
    assert_eq!(
        read_text(&programs.join("emailrelay-service.cfg")),
        "dir-config=\"C:\\Relay Données\"\r\n"
    );
    let cfg = read_text(&data.join("emailrelay.cfg"));
    assert!(
        cfg.contains("\r\nspool-dir C:\\Relay Données\\spool\r\n"),
        "{cfg}"
    );
    assert!(cfg.contains("\r\n#filter C:\\Relay\\Programs\\examples\\emailrelay-add-header.js\r\n"));
    assert!(
        !cfg.contains("E-MailRelay\\"),
        "a default folder is left in:\n{cfg}"
    );
    assert!(!wine
        .c("ProgramData/Microsoft/Windows/Start Menu/Programs/E-MailRelay")
        .exists());
    assert_eq!(service_state(&wine), "");
    uninstall(&wine, "Relay/Programs");
    assert!(!data.exists(), "the data folder of an empty spool was kept");
}

/// The one message smtp-sink has received, once it holds `needle` and its
/// end (smtp-sink writes the file as the message arrives).
fn received(sink: &Sink, needle: &str, data: &Path) -> String {
    let complete = |m: &String| m.contains(needle) && m.contains("\nHello.\n");
    assert!(
        wait_until(Duration::from_secs(60), || sink
            .messages()
            .iter()
            .any(complete)),
        "no message with {needle:?} reached smtp-sink: {:?}; log:\n{}",
        sink.messages(),
        log_text(data)
    );
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages.into_iter().next().unwrap()
}

/// The port of `forward-to` in an edited config.
fn sink_port(cfg: &str) -> u16 {
    cfg.lines()
        .find_map(|l| l.strip_prefix("forward-to 127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("forward-to in the edited config")
}

/// The relay's log files in the data folder, for failure messages.
fn log_text(data: &Path) -> String {
    let mut text = String::new();
    for name in names(data) {
        if name.starts_with("log-") {
            text.push_str(&String::from_utf8_lossy(&read(&data.join(name))));
        }
    }
    text
}
