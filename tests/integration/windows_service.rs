//! `emailrelay-service.exe` under Wine: our Windows build driven from
//! Linux, each test in its own copy of the template Wine prefix
//! (`wine::Wine`, made by scripts/wine/prefix).
//!
//! - 2.6.1's service transcripts (tests/golden/windows/service) replayed
//!   against our wrapper and relay: every command's exit code, standard
//!   output and error (`--help`, `--install`, `--remove`, `reg query`,
//!   `net start/stop`, `sc query`), and the wrapper's own runs. The SMTP
//!   dialogues and the relay's files in those transcripts are the relay's
//!   business, covered elsewhere, and are not replayed here.
//! - An install as 2.6.1's installer leaves it (programs in `C:\Program
//!   Files\E-MailRelay` with `emailrelay-service.cfg` pointing at
//!   `C:\ProgramData\E-MailRelay`, which holds `emailrelay-start.bat`,
//!   `emailrelay.cfg` and the spool): `--install`, `net start`, swaks
//!   through the relay to Postfix's smtp-sink, `sc query` RUNNING, then
//!   `net stop` while a message is inside DATA: the service reports
//!   STOP_PENDING, the message still gets its 250, the log has the
//!   drained session's lines, no `.busy` is left, and `--remove` works.
//! - A batch file naming a program without our stop event (what 2.6.1's
//!   relay is): the stop terminates it after a short grace, logged.
//!
//! The Windows programs are the ones scripts/test builds (see
//! `wine::windows_bin`). Missing Wine, MinGW or the Windows build is a
//! failure, never a skip. Every wait is bounded; the prefix's wineserver is ended with
//! `wineserver -k`, and smtp-sink by its pid.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{free_port, greets, program, wait_until, Client, Sink};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The directory of our Windows programs (built by scripts/test; see
/// `wine::windows_bin`).
fn windows_bins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let service = crate::wine::windows_bin("emailrelay-service.exe");
        crate::wine::windows_bin("emailrelay.exe");
        service.parent().expect("a directory").to_path_buf()
    })
}

/// Runs `cmd` with its output in files beside `log` (never a pipe: Wine's
/// helpers would keep it open), bounded in time; the exit code (`None`
/// after a timeout, the process then killed by its pid), stdout, stderr.
fn run_logged(cmd: &mut Command, log: &Path, limit: Duration) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let out_path = log.with_extension("out");
    let err_path = log.to_path_buf();
    let out = std::fs::File::create(&out_path).unwrap();
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let end = Instant::now() + limit;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read(&out_path).unwrap_or_default();
    let stderr = std::fs::read(&err_path).unwrap_or_default();
    (code, stdout, stderr)
}

/// The test's Wine prefix (a copy of the template, `wine::Wine`, its
/// wineserver ended on drop), numbering the commands run in it.
struct Wine {
    wine: crate::wine::Wine,
    runs: std::cell::Cell<u32>,
}

impl Wine {
    fn new() -> Wine {
        // MinGW builds the stand-in for 2.6.1's relay.
        program("x86_64-w64-mingw32-gcc");
        Wine {
            wine: crate::wine::Wine::new(),
            runs: std::cell::Cell::new(0),
        }
    }

    /// The test's own directory beside the prefix.
    fn root(&self) -> &Path {
        self.wine.home()
    }

    /// `wine ARGS...` in `cwd`, to completion (30 s at most).
    fn run(&self, args: &[&str], cwd: &Path) -> (Option<i32>, Vec<u8>, Vec<u8>) {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let log = self.root().join(format!("run-{n}.err"));
        let (program, rest) = args.split_first().expect("a program");
        run_logged(
            self.wine
                .command(Path::new(program))
                .args(rest)
                .env("HOME", self.root())
                .env("TZ", "UTC")
                .env("LANG", "C")
                .current_dir(cwd),
            &log,
            Duration::from_secs(30),
        )
    }

    /// As [`Wine::run`], expecting exit 0; stdout as text.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args, self.root());
        assert_eq!(
            code,
            Some(0),
            "wine {args:?}: {}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Starts the prefix's session again with `debug` as the system
    /// processes' WINEDEBUG (services inherit it), their output going to
    /// the file answered.
    fn restart_session(&self, debug: &str) -> PathBuf {
        let log = self.root().join("session.log");
        for flag in ["-k", "-w", "-p"] {
            let (code, _, _) = run_logged(
                Command::new("wineserver")
                    .arg(flag)
                    .env("WINEPREFIX", self.wine.prefix()),
                &self.root().join("wineserver.log"),
                Duration::from_secs(30),
            );
            assert!(code.is_some(), "wineserver {flag} timed out");
        }
        let (code, _, _) = run_logged(
            self.wine
                .debug_command(Path::new("cmd"), debug)
                .args(["/c", "exit", "0"]),
            &log,
            Duration::from_secs(120),
        );
        assert_eq!(code, Some(0), "the Wine session did not start again");
        log
    }

    /// The Linux path of a `C:\` path in the prefix.
    fn c_drive(&self, wpath: &str) -> PathBuf {
        self.wine.unix_path(wpath)
    }

    /// `sc query NAME` until it shows `state` (15 s at most); the output.
    fn wait_state(&self, name: &str, state: &str) -> String {
        let mut last = String::new();
        let found = wait_until(Duration::from_secs(15), || {
            last = self.ok(&["sc", "query", name]);
            last.contains(state)
        });
        assert!(found, "sc query {name}: not {state}:\n{last}");
        last
    }
}

/// Windows' view of a Linux path (Wine's `Z:` drive).
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

fn copy_program(name: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(windows_bins().join(format!("{name}.exe")), to).unwrap();
}

// ---- 2.6.1's transcripts --------------------------------------------------

#[test]
fn service_transcripts_of_2_6_1_replayed() {
    let bins = windows_bins();
    let wine = Wine::new();
    let dir = Path::new(REPO).join("tests/golden/windows/service");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "golden"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    let mut failures = Vec::new();
    for path in &names {
        let scenario = Scenario::parse(&std::fs::read_to_string(path).unwrap());
        if let Err(e) = scenario.replay(&wine, bins) {
            failures.push(format!("{}: {e}", scenario.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One transcript, the parts this replay uses.
#[derive(Default, Debug)]
struct Scenario {
    name: String,
    program: Option<String>,
    exes: Vec<String>,
    args: Vec<String>,
    ports: Vec<String>,
    mkdirs: Vec<String>,
    reg_deletes: Vec<String>,
    inputs: Vec<(String, Vec<u8>)>,
    steps: Vec<Step>,
    exit: Option<i32>,
    stdout: Option<Vec<u8>>,
    stderr: Option<Vec<u8>>,
}

#[derive(Debug)]
enum Step {
    Command {
        args: Vec<String>,
        exit: Option<i32>,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    WaitListen(String),
    WaitClosed(String),
    Sleep(u64),
}

/// Where the data lines that follow a header go.
enum Target {
    Input,
    CommandOut,
    CommandErr,
    Stdout,
    Stderr,
    Ignored,
}

impl Scenario {
    fn parse(text: &str) -> Scenario {
        let mut s = Scenario::default();
        let mut target = Target::Ignored;
        for line in text.lines() {
            if let Some(data) = line.strip_prefix("| ") {
                let data = crate::fixture::unescape(data).expect("a well-formed fixture line");
                match target {
                    Target::Input => s.inputs.last_mut().unwrap().1.extend(data),
                    Target::CommandOut | Target::CommandErr => {
                        if let Some(Step::Command { stdout, stderr, .. }) = s.steps.last_mut() {
                            match target {
                                Target::CommandOut => stdout.extend(data),
                                _ => stderr.extend(data),
                            }
                        }
                    }
                    Target::Stdout => s.stdout.get_or_insert_with(Vec::new).extend(data),
                    Target::Stderr => s.stderr.get_or_insert_with(Vec::new).extend(data),
                    Target::Ignored => {}
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let text = || {
                String::from_utf8_lossy(
                    &crate::fixture::unescape(rest).expect("a well-formed fixture line"),
                )
                .into_owned()
            };
            target = Target::Ignored;
            match word {
                "scenario" => s.name = rest.to_string(),
                "program" => s.program = Some(rest.to_string()),
                "exe" => s.exes.push(rest.to_string()),
                "arg" => s.args.push(text()),
                "port" => s.ports.push(rest.to_string()),
                "mkdir" => s.mkdirs.push(rest.to_string()),
                "reg-delete" => s.reg_deletes.push(text()),
                "input" => {
                    let path = rest.split(' ').next().unwrap().to_string();
                    s.inputs.push((path, Vec::new()));
                    target = Target::Input;
                }
                "command" => s.steps.push(Step::Command {
                    args: rest
                        .split(' ')
                        .map(|a| {
                            String::from_utf8_lossy(
                                &crate::fixture::unescape(a).expect("a well-formed fixture line"),
                            )
                            .into_owned()
                        })
                        .collect(),
                    exit: None,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                }),
                "command-exit" => {
                    if let Some(Step::Command { exit, .. }) = s.steps.last_mut() {
                        *exit = rest.parse().ok();
                    }
                }
                "command-stdout" => target = Target::CommandOut,
                "command-stderr" => target = Target::CommandErr,
                "wait-listen" => s.steps.push(Step::WaitListen(rest.to_string())),
                "wait-closed" => s.steps.push(Step::WaitClosed(rest.to_string())),
                "sleep" => s.steps.push(Step::Sleep(rest.parse().unwrap())),
                "exit" => s.exit = rest.parse().ok(),
                "stdout" => target = Target::Stdout,
                "stderr" => target = Target::Stderr,
                // The SMTP dialogue, the relay's files, notes: not replayed.
                _ => {}
            }
        }
        s
    }

    fn replay(&self, wine: &Wine, bins: &Path) -> Result<(), String> {
        let dir = tempfile::Builder::new()
            .prefix("golden-")
            .tempdir()
            .unwrap();
        let wdir = windows_path(dir.path());
        let mut values: Vec<(String, String)> = vec![("WDIR".into(), wdir.clone())];
        for port in &self.ports {
            values.push((port.clone(), free_port().to_string()));
        }
        let program = self.program.iter().chain(&self.exes);
        for name in program {
            let ours = name.replace("emailrelay-textmode", "emailrelay");
            std::fs::copy(
                bins.join(format!("{ours}.exe")),
                dir.path().join(format!("{name}.exe")),
            )
            .map_err(|e| format!("{name}: {e}"))?;
        }
        for d in &self.mkdirs {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for key in &self.reg_deletes {
            let key = key.replace("{PROGRAM}", "emailrelay");
            let _ = wine.run(&["reg", "delete", &key, "/f"], dir.path());
        }
        for (path, data) in &self.inputs {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, substitute(data, &values)).unwrap();
        }
        let _busy = values.iter().find(|(k, _)| k == "BUSY").map(|(_, port)| {
            TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap()
        });
        if let Some(program) = &self.program {
            let exe = format!("{wdir}\\{program}.exe");
            let mut args = vec![exe.as_str()];
            args.extend(self.args.iter().map(String::as_str));
            let (code, out, err) = wine.run(&args, dir.path());
            expect("exit", &self.exit, &code)?;
            compare(
                "stdout",
                self.stdout.as_deref().unwrap_or(b""),
                &out,
                &values,
            )?;
            compare(
                "stderr",
                self.stderr.as_deref().unwrap_or(b""),
                &err,
                &values,
            )?;
        }
        // Every step runs, whatever an earlier one said, so that the
        // scenario's own clean-up (`--remove`) still happens.
        let mut failures = Vec::new();
        for step in &self.steps {
            if let Err(e) = self.step(step, wine, dir.path(), &values) {
                failures.push(e);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }

    fn step(
        &self,
        step: &Step,
        wine: &Wine,
        dir: &Path,
        values: &[(String, String)],
    ) -> Result<(), String> {
        let port = |name: &str| -> u16 {
            values
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.parse().unwrap())
                .unwrap()
        };
        match step {
            Step::Command {
                args,
                exit,
                stdout,
                stderr,
            } => {
                let args: Vec<String> = args
                    .iter()
                    .map(|a| {
                        String::from_utf8_lossy(&substitute(a.as_bytes(), values)).into_owned()
                    })
                    .collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let stdout = ours_on_purpose(&self.name, &args, stdout);
                // The service manager's view settles: a drained service
                // reports STOPPED a moment after its relay has closed its
                // port.
                let settles = args.first() == Some(&"sc");
                let end = Instant::now() + Duration::from_secs(if settles { 15 } else { 0 });
                loop {
                    let (code, out, err) = wine.run(&args, dir);
                    let result = expect(&format!("{args:?} exit"), exit, &code)
                        .and_then(|_| compare(&format!("{args:?} stdout"), &stdout, &out, values))
                        .and_then(|_| compare(&format!("{args:?} stderr"), stderr, &err, values));
                    match result {
                        Err(_) if Instant::now() < end => {
                            std::thread::sleep(Duration::from_millis(200))
                        }
                        other => return other,
                    }
                }
            }
            Step::WaitListen(name) => {
                if !wait_until(Duration::from_secs(15), || greets(port(name))) {
                    return Err(format!("nothing listens on {name}"));
                }
                Ok(())
            }
            Step::WaitClosed(name) => {
                let p = port(name);
                if !wait_until(Duration::from_secs(15), || {
                    std::net::TcpStream::connect(("127.0.0.1", p)).is_err()
                }) {
                    return Err(format!("{name} still listens"));
                }
                Ok(())
            }
            Step::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(*ms));
                Ok(())
            }
        }
    }
}

/// What ours says where it differs from 2.6.1 on purpose
/// (docs/compatibility.md): a service whose relay could not start
/// (exit code 2, port in use) stays stopped with that code as its
/// service-specific error. 2.6.1 sets that status and then, on its way
/// out, reports STOPPED again without an error, so the manager shows 0.
fn ours_on_purpose(scenario: &str, args: &[&str], stdout: &[u8]) -> Vec<u8> {
    if scenario != "service/port-in-use" || args != ["sc", "query", "emailrelay"] {
        return stdout.to_vec();
    }
    let text = String::from_utf8_lossy(stdout);
    let zero = "        WIN32_EXIT_CODE    : 0  (0x0)\r\n        SERVICE_EXIT_CODE  : 0  (0x0)\r\n";
    assert!(text.contains(zero), "the transcript changed: {text}");
    text.replace(
        zero,
        "        WIN32_EXIT_CODE    : 1066  (0x42a)\r\n        SERVICE_EXIT_CODE  : 2  (0x2)\r\n",
    )
    .into_bytes()
}

/// `{NAME}` placeholders to their values.
fn substitute(data: &[u8], values: &[(String, String)]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(data).into_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text.into_bytes()
}

/// Our output with the run's values back to their placeholders (the
/// scenario directory in either case of its drive letter).
fn normalise(data: &[u8], values: &[(String, String)]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(data).into_owned();
    for (name, value) in values {
        if name == "WDIR" {
            text = text.replace(value, "{WDIR}");
            text = text.replace(&value.replacen("Z:", "z:", 1), "{WDIR}");
        } else {
            text = text.replace(value, &format!("{{{name}}}"));
        }
    }
    text.into_bytes()
}

fn expect(what: &str, want: &Option<i32>, got: &Option<i32>) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        Err(format!("{what}: 2.6.1 {want:?}, ours {got:?}"))
    }
}

fn compare(what: &str, want: &[u8], got: &[u8], values: &[(String, String)]) -> Result<(), String> {
    let got = normalise(got, values);
    if want == got.as_slice() {
        Ok(())
    } else {
        Err(format!(
            "{what}:\n--- 2.6.1\n{}\n--- ours\n{}",
            String::from_utf8_lossy(want).escape_debug(),
            String::from_utf8_lossy(&got).escape_debug()
        ))
    }
}

// ---- an installed service, as 2.6.1's installer leaves it ----------------

const PROGRAMS: &str = "C:\\Program Files\\E-MailRelay";
const DATA: &str = "C:\\ProgramData\\E-MailRelay";

/// 2.6.1's installer layout in `wine`'s C: drive, with the relay on
/// `port` forwarding to `sink`; `relay` is the program the batch file
/// starts (ours, unless a test says otherwise).
fn install_layout(wine: &Wine, port: u16, sink: &str, relay: &str) {
    copy_program(
        "emailrelay",
        &wine.c_drive(&format!("{PROGRAMS}\\emailrelay.exe")),
    );
    copy_program(
        "emailrelay-service",
        &wine.c_drive(&format!("{PROGRAMS}\\emailrelay-service.exe")),
    );
    std::fs::write(
        wine.c_drive(&format!("{PROGRAMS}\\emailrelay-service.cfg")),
        format!("dir-config={DATA}\r\n"),
    )
    .unwrap();
    std::fs::create_dir_all(wine.c_drive(&format!("{DATA}\\spool"))).unwrap();
    std::fs::write(
        wine.c_drive(&format!("{DATA}\\emailrelay.cfg")),
        format!(
            "interface 127.0.0.1\r\nport {port}\r\ndomain relay.example.com\r\nlog\r\nverbose\r\n\
             spool-dir {DATA}\\spool\r\nlog-file {DATA}\\log.txt\r\nforward-on-disconnect\r\n\
             forward-to {sink}\r\n"
        ),
    )
    .unwrap();
    std::fs::write(
        wine.c_drive(&format!("{DATA}\\emailrelay-start.bat")),
        format!("start \"emailrelay\" \"{relay}\" \"{DATA}\\emailrelay.cfg\"\r\n"),
    )
    .unwrap();
    // The wrapper's diagnostic log, switched on as 2.6.1's is.
    wine.ok(&[
        "reg",
        "add",
        "HKLM\\SOFTWARE\\emailrelay-service",
        "/v",
        "logfile",
        "/d",
        &format!("{DATA}\\service.log"),
        "/f",
    ]);
}

fn install(wine: &Wine) {
    let wrapper = format!("{PROGRAMS}\\emailrelay-service.exe");
    let (code, out, err) = wine.run(&[&wrapper, "--install"], wine.root());
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("installing service \"emailrelay\": [\"{wrapper}\"]\r\n")
    );
    assert_eq!(err, b"");
    let key = wine.ok(&[
        "reg",
        "query",
        "HKLM\\SYSTEM\\CurrentControlSet\\Services\\emailrelay",
    ]);
    for line in [
        format!(
            "    Description    REG_SZ    E-MailRelay service (reads {DATA}\\emailrelay-start.bat at service start time)\r\n"
        ),
        "    DisplayName    REG_SZ    E-MailRelay\r\n".to_string(),
        format!("    ImagePath    REG_SZ    \"{wrapper}\"\r\n"),
        "    ObjectName    REG_SZ    LocalSystem\r\n".to_string(),
        "    Start    REG_DWORD    0x2\r\n".to_string(),
    ] {
        assert!(key.contains(&line), "{line:?} not in:\n{key}");
    }
}

fn remove(wine: &Wine) {
    let wrapper = format!("{PROGRAMS}\\emailrelay-service.exe");
    let (code, out, _) = wine.run(&[&wrapper, "--remove"], wine.root());
    assert_eq!(code, Some(0));
    assert_eq!(out, b"removing service \"emailrelay\"\r\n");
    let (code, _, _) = wine.run(
        &[
            "reg",
            "query",
            "HKLM\\SYSTEM\\CurrentControlSet\\Services\\emailrelay",
        ],
        wine.root(),
    );
    assert_eq!(code, Some(1), "the service's key is still there");
}

fn read_text(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

fn spool_names(wine: &Wine) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(wine.c_drive(&format!("{DATA}\\spool")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn installed_service_relays_mail_and_drains_on_stop() {
    windows_bins();
    let wine = Wine::new();
    let work = tempfile::tempdir().unwrap();
    let sink = Sink::start(work.path());
    let port = free_port();
    install_layout(
        &wine,
        port,
        &sink.address(),
        &format!("{PROGRAMS}\\emailrelay.exe"),
    );
    install(&wine);

    assert_eq!(
        wine.ok(&["net", "start", "emailrelay"]),
        "The E-MailRelay service is starting.\r\nThe E-MailRelay service was started successfully.\r\n"
    );
    assert!(
        wait_until(Duration::from_secs(30), || greets(port)),
        "the relay does not answer on {port}: {}",
        read_text(&wine.c_drive(&format!("{DATA}\\service.log")))
    );
    let query = wine.wait_state("emailrelay", "STATE              : 4  RUNNING");
    assert!(query.contains("WIN32_EXIT_CODE    : 0  (0x0)"), "{query}");

    // A message through the service to smtp-sink.
    let (code, out, err) = crate::harness::run(
        Command::new(program("swaks"))
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args(["--from", "alice@example.com", "--to", "bob@example.org"])
            .args(["--header", "Subject: through the service"]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("<-  250 message processed"), "{out}");
    // smtp-sink writes its file as the message comes: wait for the whole.
    assert!(
        wait_until(Duration::from_secs(20), || sink.messages().len() == 1
            && sink.messages()[0].contains("This is a test mailing")),
        "nothing whole reached smtp-sink: {:?}",
        sink.messages()
    );
    assert!(sink.messages()[0].contains("Subject: through the service"));

    // A session inside DATA, and an idle one, when the stop comes.
    let mut busy = Client::connect(port);
    busy.reply();
    busy.command("EHLO busy.example");
    assert!(busy
        .command("MAIL FROM:<carol@example.com>")
        .starts_with("250"));
    assert!(busy
        .command("RCPT TO:<dave@example.org>")
        .starts_with("250"));
    assert!(busy.command("DATA").starts_with("354"));
    busy.send("Subject: in flight\r\n\r\nfirst half\r\n");
    let mut idle = Client::connect(port);
    idle.reply();
    assert!(idle.command("EHLO idle.example").starts_with("250"));
    let (code, out, _) = wine.run(&["net", "stop", "emailrelay"], wine.root());
    assert_eq!(code, Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "The E-MailRelay service is stopping.\r\nThe E-MailRelay service was stopped successfully.\r\n"
    );
    // Draining: new connections refused, the idle session told so, the
    // service stop-pending with a wait hint while DATA goes on.
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_err()),
        "the relay still listens after the stop"
    );
    let bye = idle.reply();
    assert!(bye.starts_with("421 "), "{bye:?}");
    let pending = wine.wait_state("emailrelay", "STATE              : 3  STOP_PENDING");
    assert!(
        !pending.contains("WAIT_HINT          : 0x0\r\n"),
        "{pending}"
    );
    busy.send("second half\r\n");
    assert_eq!(busy.command("."), "250 message processed");
    let query = wine.wait_state("emailrelay", "STATE              : 1  STOPPED");
    assert!(query.contains("WIN32_EXIT_CODE    : 0  (0x0)"), "{query}");

    // The relay's log: the idle session sent away, the drained message
    // accepted after that, and its session closed; nothing went wrong.
    let log = read_text(&wine.c_drive(&format!("{DATA}\\log.txt")));
    let shutdown = "emailrelay: info: tx>>: \"421 relay.example.com service shutting down\"\r\n";
    let after = log
        .split(shutdown)
        .nth(1)
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        after.contains("emailrelay: info: tx>>: \"250 message processed\"\r\n"),
        "{log}"
    );
    assert!(
        log.contains("emailrelay: info: rx<<: \"MAIL FROM:<carol@example.com>\"\r\n"),
        "{log}"
    );
    let accepted = log
        .split("rx<<: \"MAIL FROM:<carol@example.com>\"")
        .nth(1)
        .unwrap();
    assert!(
        accepted.contains("emailrelay: info: tx>>: \"250 message processed\"\r\n"),
        "{log}"
    );
    assert!(
        !log.contains("warning:") && !log.contains("error:"),
        "{log}"
    );
    // The spool: the drained message whole (or already forwarded), no
    // .busy or .new left behind.
    let names = spool_names(&wine);
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".content") || n.ends_with(".envelope")),
        "{names:?}"
    );
    let forwarded = sink
        .messages()
        .iter()
        .any(|m| m.contains("Subject: in flight"));
    assert_eq!(names.len(), if forwarded { 0 } else { 2 }, "{names:?}");
    // The wrapper's own log: asked, drained, never terminated.
    let service_log = read_text(&wine.c_drive(&format!("{DATA}\\service.log")));
    assert!(
        service_log.contains("info: asked the relay (pid "),
        "{service_log}"
    );
    assert!(
        service_log.contains(") has stopped with exit code 0 after "),
        "{service_log}"
    );
    assert!(!service_log.contains("terminating"), "{service_log}");

    remove(&wine);
}

/// A Windows program that runs until it is killed and has no stop event
/// (as 2.6.1's relay has none), built with MinGW: it writes `started`
/// into the directory it is given, then sleeps.
fn build_sleeper(out: &Path) {
    let source = out.with_extension("c");
    std::fs::write(
        &source,
        "#include <windows.h>\n#include <stdio.h>\n\
         int main(int argc, char **argv) {\n\
           char path[1024]; FILE *f;\n\
           snprintf(path, sizeof path, \"%s\\\\started\", argc > 2 ? argv[2] : \".\");\n\
           f = fopen(path, \"w\"); if (f) { fputs(argv[1], f); fclose(f); }\n\
           for (;;) Sleep(1000);\n\
         }\n",
    )
    .unwrap();
    let (code, _, err) = crate::harness::run(
        Command::new(program("x86_64-w64-mingw32-gcc"))
            .arg("-O2")
            .arg("-o")
            .arg(out)
            .arg(&source),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_relay_without_a_stop_event_is_terminated_after_a_grace() {
    windows_bins();
    let wine = Wine::new();
    let sleeper = format!("{PROGRAMS}\\sleeper.exe");
    install_layout(&wine, free_port(), "127.0.0.1:9", &sleeper);
    build_sleeper(&wine.c_drive(&sleeper));
    // The batch file's arguments: the config file, here the directory
    // to mark.
    std::fs::write(
        wine.c_drive(&format!("{DATA}\\emailrelay-start.bat")),
        format!("@echo off\r\nrem not ours\r\nstart \"emailrelay\" \"{sleeper}\" {DATA}\r\n"),
    )
    .unwrap();
    // Wine's Event Log is a stub: its calls show on the eventlog channel.
    // (Before the install: a new session starts auto-start services.)
    let session = wine.restart_session("-all,warn+eventlog");
    install(&wine);
    wine.ok(&["net", "start", "emailrelay"]);
    let started = wine.c_drive(&format!("{DATA}\\started"));
    assert!(wait_until(Duration::from_secs(20), || started.exists()));
    // ` --hidden` went in after the program.
    assert_eq!(read_text(&started), "--hidden");
    wine.wait_state("emailrelay", "STATE              : 4  RUNNING");
    let stop = Instant::now();
    wine.ok(&["net", "stop", "emailrelay"]);
    let query = wine.wait_state("emailrelay", "STATE              : 1  STOPPED");
    assert!(query.contains("WIN32_EXIT_CODE    : 0  (0x0)"), "{query}");
    let took = stop.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let service_log = read_text(&wine.c_drive(&format!("{DATA}\\service.log")));
    assert!(
        service_log.contains(") has no stop event: terminating it\r\n"),
        "{service_log}"
    );
    assert!(
        service_log.contains(&format!(
            "info: starting [\"{sleeper}\" --hidden {DATA}]\r\n"
        )),
        "{service_log}"
    );
    // The warning reached the Event Log, as source emailrelay-service.
    let events = read_text(&session);
    assert!(
        events.lines().any(|l| l.contains("ReportEventW")
            && l.contains("emailrelay-service: warning: the relay (pid ")
            && l.contains(") has no stop event: terminating it")),
        "{events}"
    );
    remove(&wine);
}

#[test]
fn a_relay_that_cannot_start_stops_the_service_with_its_exit_code() {
    // The relay exits 2 (its port is in use): the service stops with
    // service-specific error 2, as 2.6.1's doc/windows.md says (2.6.1
    // itself then reports STOPPED again without the error, see
    // service/port-in-use), and the wrapper's log says why.
    windows_bins();
    let wine = Wine::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    install_layout(
        &wine,
        port,
        "127.0.0.1:9",
        &format!("{PROGRAMS}\\emailrelay.exe"),
    );
    install(&wine);
    wine.ok(&["net", "start", "emailrelay"]);
    let query = wine.wait_state("emailrelay", "STATE              : 1  STOPPED");
    assert!(
        query.contains("WIN32_EXIT_CODE    : 1066  (0x42a)\r\n"),
        "{query}"
    );
    assert!(
        query.contains("SERVICE_EXIT_CODE  : 2  (0x2)\r\n"),
        "{query}"
    );
    let service_log = read_text(&wine.c_drive(&format!("{DATA}\\service.log")));
    assert!(
        service_log.contains(") has ended with exit code 2\r\n"),
        "{service_log}"
    );
    remove(&wine);
    drop(busy);
}

#[test]
fn on_linux_the_wrapper_gives_its_usage_and_points_at_systemd() {
    let wrapper = env!("CARGO_BIN_EXE_emailrelay-service");
    let (code, out, err) =
        crate::harness::run(Command::new(wrapper).arg("--help"), Duration::from_secs(10));
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "usage: emailrelay-service [{--help|--install|--remove}] [<name> [<display-name>]]\n"
    );
    for args in [&["--install"][..], &["--remove", "relay2"], &[]] {
        let (code, out, err) =
            crate::harness::run(Command::new(wrapper).args(args), Duration::from_secs(10));
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}");
        assert_eq!(
            err,
            "emailrelay-service: error: the Windows service wrapper is not available on this \
             system: use systemd (packaging/systemd)\n",
            "{args:?}"
        );
    }
}
