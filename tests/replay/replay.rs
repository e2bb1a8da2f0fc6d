//! Replaying one fixture: the same inputs into our binary (same arguments,
//! files, bytes on the same kind of connection), and what it said, part
//! by part, beside what 2.6.1 said.
//!
//! Each part (`start`, `exit`, `dialog`, `stdout`, `stderr`, `log`,
//! `files`, `sink`) is observed as two views: lines in the fixture's own
//! syntax (a header, then `| ` data lines), one rendered from the fixture
//! and one from what ours did at the same steps. The part matches when the
//! two views are equal; otherwise their line diff is the difference.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{data_lines, escape, Captured, Fixture, Step, WineCommand};
use crate::normalise::{date_and_hour, is_debug_line, replace, Normaliser, WindowsNames};
use crate::sink::{SinkConns, SinkServer};
use crate::wine::{self, Wine};

/// The parts, in the order they are reported. `commands` (what the
/// `command` steps' programs said) and `wine-debug` (Wine's debug lines)
/// are Windows scenarios' only.
pub const PARTS: [&str; 10] = [
    "start",
    "exit",
    "dialog",
    "commands",
    "stdout",
    "stderr",
    "wine-debug",
    "log",
    "files",
    "sink",
];

/// One part as 2.6.1 showed it (from the fixture) and as ours did.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Views {
    pub fixture: Vec<String>,
    pub ours: Vec<String>,
}

/// Every observed part of a scenario.
pub type Observed = BTreeMap<&'static str, Views>;

/// Which binaries to replay against.
pub struct Target {
    /// `None`: ours; `Some(dir)`: the programs in that directory.
    pub bin_dir: Option<String>,
    /// Their version number (normalised to `{VERSION}`).
    pub version: String,
}

/// Files whose path has a component starting with `log` are the `log` part.
const PARTS_OF_FILES: &str = "log";

impl Target {
    /// True when replaying other binaries than ours (`GOLDEN_BIN_DIR`).
    pub fn reference(&self) -> bool {
        self.bin_dir.is_some()
    }

    /// The name `{PROGRAM}` stands for in a Windows fixture: the console
    /// program, 2.6.1's `emailrelay-textmode`, ours `emailrelay`.
    pub fn windows_console(&self) -> &'static str {
        if self.reference() {
            "emailrelay-textmode"
        } else {
            "emailrelay"
        }
    }

    /// A Windows fixture's program: the name it gets in the scenario
    /// directory (without `.exe`) and the file it is copied from. Ours has
    /// one program for 2.6.1's two builds (`emailrelay-textmode`, the
    /// console one, and `emailrelay`, the GUI one): `emailrelay.exe`.
    fn windows_program(&self, name: &str) -> (String, PathBuf) {
        if let Some(dir) = &self.bin_dir {
            return (name.to_string(), Path::new(dir).join(format!("{name}.exe")));
        }
        let ours = match name {
            "emailrelay-textmode" => "emailrelay",
            other => other,
        };
        let file = wine::windows_bin_dir().join(format!("{ours}.exe"));
        (ours.to_string(), file)
    }
}

/// A Windows scenario's own: its Wine prefix (ended when this drops) and
/// the programs copied into the scenario directory.
struct Windows {
    wine: Wine,
    /// The file names of the programs copied in (`emailrelay.exe`...).
    programs: Vec<String>,
}

pub struct Replay<'a> {
    fixture: &'a Fixture,
    target: &'a Target,
    dir: tempfile::TempDir,
    capdir: tempfile::TempDir,
    values: BTreeMap<String, String>,
    norm: Normaliser,
    child: Option<Child>,
    daemon_pid: Option<i32>,
    conns: BTreeMap<String, Option<TcpStream>>,
    /// Per connection, the raw bytes of its first reply (a POP greeting
    /// with its APOP timestamp) and of its last one (a SASL challenge).
    said: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
    sinks: BTreeMap<String, SinkServer>,
    _busy: Option<TcpListener>,
    _locks: Vec<nix::fcntl::Flock<std::fs::File>>,
    views: Observed,
    /// A Windows scenario's prefix and programs (dropped last: its
    /// wineserver ends every Windows process of the scenario).
    windows: Option<Windows>,
}

impl<'a> Replay<'a> {
    /// Runs the fixture; returns every part observed, or why it could
    /// not run at all (a Windows scenario without Wine).
    pub fn run(fixture: &'a Fixture, target: &'a Target) -> Result<Observed, String> {
        // 2.6.1's GUI build needs a display: the caller's (an Xvfb), when
        // replaying 2.6.1 itself.
        let display = std::env::var_os("DISPLAY").filter(|_| target.reference());
        let windows = match fixture.windows {
            true => Some(Windows {
                wine: Wine::with_display(display).map_err(|e| format!("Wine: {e}"))?,
                programs: Vec::new(),
            }),
            false => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("golden-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let capdir = tempfile::Builder::new()
            .prefix("golden-cap-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_string_lossy().into_owned();
        let real = std::fs::canonicalize(dir.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| path.clone());
        let program = program_path(target, &fixture.program);
        let app_dir = match &windows {
            // Windows programs run from the scenario directory.
            Some(_) => real.clone(),
            None => std::fs::canonicalize(&program)
                .ok()
                .and_then(|p| p.parent().map(|d| d.to_string_lossy().into_owned()))
                .unwrap_or_default(),
        };
        let mut values = BTreeMap::from([("DIR".to_string(), path.clone())]);
        if windows.is_some() {
            let wdir = wine::winpath(Path::new(&path));
            values.insert("WDIRF".to_string(), wdir.replace('\\', "/"));
            values.insert("WDIR".to_string(), wdir);
        }
        let windows_names = windows.as_ref().map(|w| WindowsNames {
            dirs: vec![real.clone(), path.clone()],
            prefix: w.wine.prefix().to_string_lossy().into_owned(),
        });
        let mut replay = Replay {
            fixture,
            target,
            capdir,
            values,
            norm: Normaliser {
                windows: windows_names,
                dirs: vec![real, path],
                app_dir,
                version: target.version.clone(),
                numbers: BTreeMap::new(),
                started: date_and_hour(),
                hostname: nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
            dir,
            child: None,
            daemon_pid: None,
            conns: BTreeMap::new(),
            said: BTreeMap::new(),
            sinks: BTreeMap::new(),
            _busy: None,
            _locks: Vec::new(),
            views: Observed::new(),
            windows,
        };
        replay.play();
        replay.stop();
        Ok(std::mem::take(&mut replay.views))
    }

    fn fixture_side(&mut self, part: &'static str, lines: Vec<String>) {
        self.views.entry(part).or_default().fixture.extend(lines);
    }

    fn ours_side(&mut self, part: &'static str, lines: Vec<String>) {
        self.views.entry(part).or_default().ours.extend(lines);
    }

    fn both(&mut self, part: &'static str, lines: Vec<String>) {
        let views = self.views.entry(part).or_default();
        views.fixture.extend(lines.iter().cloned());
        views.ours.extend(lines);
    }

    fn subst(&self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for (name, value) in &self.values {
            out = replace(&out, format!("{{{name}}}").as_bytes(), value.as_bytes());
        }
        out
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn play(&mut self) {
        let f = self.fixture;
        for name in &f.ports {
            let port = crate::run::free_port();
            self.values.insert(name.clone(), port.to_string());
            self.norm
                .numbers
                .insert(port.to_string(), format!("{{{name}}}"));
        }
        for d in &f.mkdirs {
            std::fs::create_dir_all(self.path(d)).unwrap();
        }
        for (rel, mode, data) in &f.inputs {
            let full = self.path(rel);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, self.subst(data)).unwrap();
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        for (rel, target) in &f.symlinks {
            std::os::unix::fs::symlink(target, self.path(rel)).unwrap();
        }
        for rel in &f.locks {
            let file = std::fs::File::open(self.path(rel))
                .unwrap_or_else(|e| panic!("{}: lock {rel}: {e}", f.name));
            let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
                .unwrap_or_else(|(_, e)| panic!("{}: lock {rel}: {e}", f.name));
            self._locks.push(lock);
        }
        if let Some(port) = self.values.get("BUSY") {
            self._busy =
                Some(TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap());
        }
        for (name, port, behaviour, reply) in &f.sinks {
            let port: u16 = self.values[port].parse().unwrap();
            self.sinks
                .insert(name.clone(), SinkServer::start(port, behaviour, reply));
        }
        // A Windows scenario with no program line has only `command` steps.
        let no_program = f.windows && f.program.is_empty();
        let start_line = match &f.start {
            _ if no_program => None,
            Some(ports) => Some(format!("start {}", ports.join(" "))),
            None => Some(format!("run {}", f.run_limit)),
        };
        if f.windows {
            if let Err(e) = self.prepare_windows() {
                self.fixture_side("start", start_line.into_iter().collect());
                self.ours_side("start", vec![e]);
                return;
            }
        }
        if !no_program && !self.start(start_line.unwrap_or_default()) {
            return;
        }
        let skip_first_exit = f.start.is_none() && !no_program;
        for (n, step) in f.steps.iter().enumerate() {
            if n == 0 && skip_first_exit && matches!(step, Step::Exit(_)) {
                continue;
            }
            if let Step::Settle = step {
                // What the next capture expects tells when the logs are complete.
                let next = f.steps[n..].iter().find_map(|s| match s {
                    Step::Capture(items) => Some(items.as_slice()),
                    _ => None,
                });
                self.settle(next.unwrap_or(&[]));
                continue;
            }
            // 2.6.1 has one event loop and acts on what one connection sent
            // before it accepts the next; ours serves connections in
            // parallel. A moment's pause lets a command sent just before a
            // new connection (an admin `notify`, say) take effect first, as
            // any client that waits for it would see.
            if n > 0 && matches!(step, Step::Connect { .. }) {
                if let Some(Step::Send { .. }) = f.steps.get(n - 1) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            self.step(step);
        }
    }

    /// Starts the program and waits for it as the fixture says: until it
    /// listens (`start`), or until it exits (`run`). False if it did not
    /// start as 2.6.1 did (the difference is then in the `start` part).
    fn start(&mut self, start_line: String) -> bool {
        let f = self.fixture;
        if let Err(e) = self.spawn() {
            self.fixture_side("start", vec![start_line]);
            self.ours_side("start", vec![e]);
            return false;
        }
        match &f.start {
            None => {
                self.feed_stdin();
                let expected = match f.steps.first() {
                    Some(Step::Exit(expected)) => expected.clone(),
                    _ => String::new(),
                };
                // 2.6.1 still ran after run_limit seconds, or exited before.
                // (Under Wine, a program may take longer: 2.6.1's service
                // wrapper started from a console gives up after 10 s.)
                let limit = match expected.as_str() {
                    "timeout" => f.run_limit,
                    _ if f.windows => f.run_limit,
                    _ => f.run_limit.min(8),
                };
                let got = self.wait_exit(Duration::from_secs(limit));
                self.fixture_side("exit", vec![format!("exit {expected}")]);
                self.ours_side("exit", vec![format!("exit {got}")]);
            }
            Some(ports) => {
                if let Some(mut stdin) = self.child.as_mut().and_then(|c| c.stdin.take()) {
                    let _ = stdin.flush();
                }
                let ports: Vec<u16> = ports
                    .iter()
                    .map(|p| self.values[p].parse().unwrap())
                    .collect();
                // Wine takes a moment more to start a program.
                let wait = if f.windows { 20 } else { 10 };
                let limit = Instant::now() + Duration::from_secs(wait);
                let mut seen_listening = None;
                loop {
                    // Listening counts once it lasts: a relay that binds
                    // its ports and then gives up on a later check (the
                    // spool's permissions, say) has not started.
                    if ports.iter().all(|&p| listening(p)) {
                        let since = *seen_listening.get_or_insert_with(Instant::now);
                        if since.elapsed() >= Duration::from_millis(100) {
                            break;
                        }
                    }
                    let exited = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    if exited.is_some() || Instant::now() > limit {
                        let what = match exited {
                            Some(status) => format!("exited at startup ({status})"),
                            None => format!("not listening within {wait} s"),
                        };
                        let (err, _) = self.our_stderr();
                        let log = std::fs::read(self.path("log")).unwrap_or_default();
                        let mut ours = vec![what, "stderr".to_string()];
                        ours.extend(data_lines(&self.norm.normalise(&err)));
                        ours.push("log".to_string());
                        ours.extend(data_lines(&self.norm.normalise(&log)));
                        self.fixture_side("start", vec![start_line]);
                        self.ours_side("start", ours);
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                self.both("start", vec![start_line]);
            }
        }
        true
    }

    /// A Windows scenario's set-up (README.md, Windows scenarios): its
    /// programs copied into the scenario directory, the watched
    /// directories of the prefix removed and `wmkdir`s made, `reg-delete`
    /// keys deleted. Errs, naming them, when programs are missing.
    fn prepare_windows(&mut self) -> Result<(), String> {
        let f = self.fixture;
        let names = std::iter::once(&f.program)
            .filter(|p| !p.is_empty())
            .chain(&f.exes);
        let mut missing = Vec::new();
        let mut programs = Vec::new();
        for name in names {
            let (ours, from) = self.target.windows_program(name);
            if !from.is_file() {
                missing.push(format!("{ours}.exe"));
                continue;
            }
            let file = format!("{ours}.exe");
            std::fs::copy(&from, self.path(&file))
                .map_err(|e| format!("copying {}: {e}", from.display()))?;
            programs.push(file);
        }
        if !missing.is_empty() {
            // (No directory here: the pins hold this line. The runner says
            // where it looked.)
            return Err(format!("not in the Windows build: {}", missing.join(", ")));
        }
        let windows = self.windows.as_mut().expect("a Windows scenario's prefix");
        windows.programs = programs;
        for w in &f.watch {
            let _ = std::fs::remove_dir_all(windows.wine.unix_path(w));
        }
        for w in &f.wmkdirs {
            std::fs::create_dir_all(windows.wine.unix_path(w)).unwrap();
        }
        for key in &f.reg_deletes {
            let mut cmd = self.windows_command("reg");
            cmd.args(["delete", key, "/f"]);
            let _ = wine::run_quiet(&mut cmd, Duration::from_secs(30));
        }
        Ok(())
    }

    /// `wine <program>` in the scenario's prefix and directory, with the
    /// environment of README.md's Windows scenarios (and the fixture's
    /// `env` lines).
    fn windows_command(&self, program: &str) -> Command {
        let windows = self.windows.as_ref().expect("a Windows scenario's prefix");
        let mut cmd = Command::new("wine");
        cmd.arg(program)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("TZ", "UTC")
            .env("LANG", "C")
            .env("WINEPREFIX", windows.wine.prefix())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("HOME", windows.wine.home());
        if let Some(display) = windows.wine.display() {
            cmd.env("DISPLAY", display);
        }
        cmd.envs(self.fixture.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        cmd
    }

    /// Our program's standard error, and Wine's debug lines taken out of
    /// it (a Windows scenario's `wine-debug`).
    fn our_stderr(&self) -> (Vec<u8>, Vec<u8>) {
        let data = std::fs::read(self.capdir.path().join("stderr")).unwrap_or_default();
        if !self.fixture.windows {
            return (data, Vec::new());
        }
        let (mut rest, mut debug) = (Vec::new(), Vec::new());
        for line in data.split_inclusive(|&b| b == b'\n') {
            if is_debug_line(line) {
                debug.extend(line);
            } else {
                rest.extend(line);
            }
        }
        (rest, debug)
    }

    /// A `command` step: `wine ARGS...` to completion (30 s at most).
    fn command(&mut self, c: &WineCommand) {
        let render = |exit: &str, out: &[u8], err: &[u8]| {
            let mut lines = vec![
                format!("command {}", c.line),
                format!("command-exit {exit}"),
                "command-stdout".to_string(),
            ];
            lines.extend(data_lines(out));
            lines.push("command-stderr".to_string());
            lines.extend(data_lines(err));
            lines
        };
        self.fixture_side("commands", render(&c.exit, &c.stdout, &c.stderr));
        let args: Vec<OsString> = c
            .args
            .iter()
            .map(|a| OsString::from_vec(self.subst(a)))
            .collect();
        let out = self.capdir.path().join("command.out");
        let err = self.capdir.path().join("command.err");
        let mut cmd = self.windows_command(&args[0].to_string_lossy());
        cmd.args(&args[1..])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let exit = match cmd.spawn() {
            Err(e) => format!("cannot start wine: {e}"),
            Ok(mut child) => {
                let end = Instant::now() + Duration::from_secs(30);
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            break status
                                .code()
                                .map_or("signal".to_string(), |c| c.to_string())
                        }
                        Ok(None) if Instant::now() < end => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break "timeout".to_string();
                        }
                    }
                }
            }
        };
        let out = self.norm.normalise(&std::fs::read(out).unwrap_or_default());
        let err = self.norm.normalise(&std::fs::read(err).unwrap_or_default());
        self.ours_side("commands", render(&exit, &out, &err));
        if let [net, stop, name] = &args[..] {
            if net == "net" && stop == "stop" {
                self.wait_service_stopped(&name.to_string_lossy());
            }
        }
    }

    /// Waits (20 s at most) until the service `name` has stopped, as
    /// Windows' `net stop` does before it says so; Wine's says so at once.
    /// (2.6.1's wrapper kills its server and has stopped by then; ours
    /// lets the relay drain first.)
    fn wait_service_stopped(&self, name: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let query = self.capdir.path().join("sc-query.out");
            let mut cmd = self.windows_command("sc");
            cmd.args(["query", name])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&query).unwrap())
                .stderr(Stdio::null());
            let Ok(mut child) = cmd.spawn() else { return };
            let limit = Instant::now() + Duration::from_secs(10);
            while Instant::now() < limit && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&query).unwrap_or_default();
            if !text.contains("STATE") || text.contains("STOPPED") {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let f = self.fixture;
        let stdout = std::fs::File::create(self.capdir.path().join("stdout")).unwrap();
        let stderr = std::fs::File::create(self.capdir.path().join("stderr")).unwrap();
        let (program, mut cmd) = if f.windows {
            // As the recorder: `wine {WDIR}\<program>.exe ARGS...`.
            let (name, _) = self.target.windows_program(&f.program);
            let program = format!("{}\\{name}.exe", self.values["WDIR"]);
            let cmd = self.windows_command(&program);
            (format!("wine {program}"), cmd)
        } else {
            let program = program_path(self.target, &f.program);
            let mut cmd = Command::new(&program);
            cmd.current_dir(self.dir.path())
                .env_clear()
                .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
                .env("TZ", "UTC")
                .env("LANG", "C")
                .envs(f.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            (program, cmd)
        };
        cmd.args(f.args.iter().map(|a| OsString::from_vec(self.subst(a))))
            .stdin(if f.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(stdout)
            .stderr(stderr);
        // SIGINT and SIGQUIT as a terminal leaves them: a background job of
        // a non-interactive shell (a CI step) inherits them ignored.
        // SAFETY: the closure only calls signal(2), which is
        // async-signal-safe, between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                use nix::sys::signal::{signal, SigHandler, Signal};
                let _ = signal(Signal::SIGINT, SigHandler::SigDfl);
                let _ = signal(Signal::SIGQUIT, SigHandler::SigDfl);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        // (Wine's Linux pid is not the Windows program's.)
        if !f.windows {
            self.norm
                .numbers
                .insert(child.id().to_string(), "{PID}".to_string());
        }
        self.child = Some(child);
        Ok(())
    }

    fn feed_stdin(&mut self) {
        let input = self.fixture.stdin.clone();
        if let (Some(input), Some(mut stdin)) =
            (input, self.child.as_mut().and_then(|c| c.stdin.take()))
        {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
    }

    /// Waits for our process to exit: "0", "signal 15" or "timeout".
    fn wait_exit(&mut self, limit: Duration) -> String {
        let Some(child) = self.child.as_mut() else {
            return "timeout".to_string();
        };
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                return match (status.code(), status.signal()) {
                    (Some(code), _) => code.to_string(),
                    (None, Some(sig)) => format!("signal {sig}"),
                    _ => "unknown".to_string(),
                };
            }
            if Instant::now() > end {
                return "timeout".to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Exit(expected) => {
                let got = self.wait_exit(Duration::from_secs(10));
                self.fixture_side("exit", vec![format!("exit {expected}")]);
                self.ours_side("exit", vec![format!("exit {got}")]);
            }
            Step::Connect { c, port, cport } => {
                let number: u16 = self.values[port].parse().unwrap();
                let line = format!("connect {c} {port}");
                match TcpStream::connect(("127.0.0.1", number)) {
                    Ok(stream) => {
                        let local = stream.local_addr().unwrap().port();
                        self.norm
                            .numbers
                            .insert(local.to_string(), format!("{{{cport}}}"));
                        self.conns.insert(c.clone(), Some(stream));
                        self.both("dialog", vec![line]);
                    }
                    Err(e) => {
                        self.conns.insert(c.clone(), None);
                        self.fixture_side("dialog", vec![line.clone()]);
                        self.ours_side("dialog", vec![format!("{line}: {e}")]);
                    }
                }
                self.said.remove(c);
            }
            Step::Send { c, data } => {
                let mut lines = vec![format!("C {c}")];
                lines.extend(data_lines(data));
                self.both("dialog", lines);
                let bytes = self.subst(&self.sasl_answers(c, data));
                if let Some(Some(stream)) = self.conns.get_mut(c) {
                    let _ = stream.write_all(&bytes);
                }
            }
            Step::Expect { c, data } => self.expect(c, data),
            Step::Eof(c) => self.expect_eof(c),
            Step::Close(c) => {
                let mut ours = Vec::new();
                if let Some(Some(mut stream)) = self.conns.insert(c.clone(), None) {
                    let (extra, _) = read_for(&mut stream, Duration::from_millis(300));
                    if !extra.is_empty() {
                        ours.push(format!("S {c}"));
                        ours.extend(data_lines(&self.norm.normalise(&extra)));
                    }
                }
                ours.push(format!("close {c}"));
                self.fixture_side("dialog", vec![format!("close {c}")]);
                self.ours_side("dialog", ours);
            }
            Step::Settle => self.settle(&[]),
            Step::WaitLog(text) => {
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end && !self.watched_text().contains(text.as_str()) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::WaitGone(pattern) => {
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end && !self.glob(pattern).is_empty() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::WaitExists(pattern) => {
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end && self.glob(pattern).is_empty() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Step::Signal(name) => {
                use nix::sys::signal::Signal;
                let sig = match name.as_str() {
                    "TERM" => Signal::SIGTERM,
                    "INT" => Signal::SIGINT,
                    "HUP" => Signal::SIGHUP,
                    "USR1" => Signal::SIGUSR1,
                    other => panic!("{}: unknown signal {other}", self.fixture.name),
                };
                if let Some(child) = &self.child {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
                }
            }
            Step::StopPidfile(rel) => self.stop_pidfile(rel),
            Step::Capture(items) => self.capture(items),
            Step::Command(c) => self.command(c),
            Step::WaitListen(port) | Step::WaitClosed(port) => {
                let want = matches!(step, Step::WaitListen(_));
                let number: u16 = self.values[port].parse().unwrap();
                let end = Instant::now() + Duration::from_secs(15);
                while Instant::now() < end && listening(number) != want {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// The client's bytes with their SASL placeholders computed from what
    /// the server said on this connection: `{APOP:<password>}` is the APOP
    /// digest of the greeting's timestamp, `{CRAM-MD5:<user>:<password>}`
    /// the base64 answer to the last `+ ` or `334 ` challenge.
    fn sasl_answers(&self, c: &str, data: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(data);
        if !text.contains("{APOP:") && !text.contains("{CRAM-MD5:") {
            return data.to_vec();
        }
        let (first, last) = self.said.get(c).cloned().unwrap_or_default();
        let mut out = text.into_owned();
        while let Some(at) = out.find("{APOP:") {
            let end = at + out[at..].find('}').expect("an unclosed {APOP:");
            let password = &out[at + 6..end];
            let greeting = String::from_utf8_lossy(&first);
            let stamp = greeting
                .find('<')
                .and_then(|s| greeting[s..].find('>').map(|e| &greeting[s..=s + e]))
                .unwrap_or("");
            let digest = md5_hex(format!("{stamp}{password}").as_bytes());
            out.replace_range(at..=end, &digest);
        }
        while let Some(at) = out.find("{CRAM-MD5:") {
            let end = at + out[at..].find('}').expect("an unclosed {CRAM-MD5:");
            let (user, password) = out[at + 10..end]
                .split_once(':')
                .expect("{CRAM-MD5:<user>:<password>}");
            let said = String::from_utf8_lossy(&last);
            let challenge = said
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("+ ").or_else(|| l.strip_prefix("334 ")))
                .unwrap_or("")
                .trim();
            let answer = cram_md5_answer(user, password, challenge);
            out.replace_range(at..=end, &answer);
        }
        out.into_bytes()
    }

    fn expect(&mut self, c: &str, expected: &[u8]) {
        let mut want = vec![format!("S {c}")];
        want.extend(data_lines(expected));
        self.fixture_side("dialog", want);
        let Some(Some(stream)) = self.conns.get_mut(c) else {
            return;
        };
        let norm = &self.norm;
        let normalise = |buf: &[u8]| norm.normalise(buf);
        let mut buf = Vec::new();
        let start = Instant::now();
        let mut eof = false;
        // Windows scenarios: as their recorder did, a complete reply is
        // followed by 0.15 s of quiet before the client goes on (2.6.1's
        // transcripts show what it did in that time, a rescan's forwarding
        // pass say, before the next command).
        let mut quiet = !self.fixture.windows;
        loop {
            let got = normalise(&buf);
            if got == expected && quiet {
                break;
            }
            if got == expected {
                quiet = true;
                let (more, closed) = read_some(stream, Duration::from_millis(150));
                eof = closed;
                if more.is_empty() {
                    break;
                }
                buf.extend(more);
                continue;
            }
            let wait = if !expected.starts_with(&got) {
                Duration::from_millis(150)
            } else if buf.is_empty() {
                Duration::from_secs(5)
            } else {
                Duration::from_millis(1500)
            };
            if start.elapsed() > Duration::from_secs(10) {
                break;
            }
            let (more, closed) = read_some(stream, wait);
            if more.is_empty() {
                eof = closed;
                break;
            }
            buf.extend(more);
        }
        let mut ours = vec![format!("S {c}")];
        ours.extend(data_lines(&normalise(&buf)));
        if eof {
            ours.push(format!("eof {c}"));
            self.conns.insert(c.to_string(), None);
        }
        self.ours_side("dialog", ours);
        let said = self.said.entry(c.to_string()).or_default();
        if said.0.is_empty() {
            said.0 = buf.clone();
        }
        said.1 = buf;
    }

    fn expect_eof(&mut self, c: &str) {
        self.fixture_side("dialog", vec![format!("eof {c}")]);
        let Some(Some(mut stream)) = self.conns.insert(c.to_string(), None) else {
            return;
        };
        let (extra, closed) = read_for(&mut stream, Duration::from_secs(5));
        let mut ours = Vec::new();
        if !extra.is_empty() {
            ours.push(format!("S {c}"));
            ours.extend(data_lines(&self.norm.normalise(&extra)));
        }
        if closed {
            ours.push(format!("eof {c}"));
        } else {
            ours.push(format!("still open {c}"));
        }
        self.ours_side("dialog", ours);
    }

    fn watched(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.capdir.path().join("stderr")];
        walk(self.dir.path(), &mut |p, kind| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if kind == Kind::File && name.starts_with(PARTS_OF_FILES) {
                paths.push(p.to_path_buf());
            }
        });
        paths
    }

    fn watched_text(&self) -> String {
        self.watched()
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned())
            .collect()
    }

    /// Waits until stderr and the log files stay unchanged: for 0.1 s once
    /// they hold what `expected` (the next capture) says, else for 1 s; at
    /// most 8 s. (2.6.1's were recorded after 0.5 s of quiet.)
    fn settle(&self, expected: &[Captured]) {
        let state = || -> Vec<(PathBuf, u64)> {
            self.watched()
                .into_iter()
                .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
                .collect()
        };
        let complete = || {
            let root = self.dir.path();
            expected.iter().all(|item| match item {
                Captured::Stderr(want) => self.norm.normalise(&self.our_stderr().0) == *want,
                Captured::File { path, data, .. } if file_part(path) == "log" => {
                    self.watched().iter().any(|p| {
                        let rel = p
                            .strip_prefix(root)
                            .unwrap_or(p)
                            .to_string_lossy()
                            .into_owned();
                        self.norm.normalise_path(&rel) == *path
                            && self.norm.normalise(&std::fs::read(p).unwrap_or_default()) == *data
                    })
                }
                _ => true,
            })
        };
        let end = Instant::now() + Duration::from_secs(8);
        let (mut last, mut since) = (state(), Instant::now());
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            let now = state();
            if now != last {
                (last, since) = (now, Instant::now());
                continue;
            }
            let quiet = since.elapsed();
            if quiet >= Duration::from_millis(1000)
                || (quiet >= Duration::from_millis(100) && complete())
            {
                break;
            }
        }
    }

    /// Files matching a simple pattern: `dir/*suffix*` style, one `*` run per part.
    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let (dir, name) = pattern.rsplit_once('/').unwrap_or((".", pattern));
        let parts: Vec<&str> = name.split('*').collect();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.path(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = entry.file_name().to_string_lossy().into_owned();
            if wildcard(&parts, &n) {
                out.push(entry.path());
            }
        }
        out
    }

    fn stop_pidfile(&mut self, rel: &str) {
        let full = self.path(rel);
        let end = Instant::now() + Duration::from_secs(10);
        let mut pid = None;
        while Instant::now() < end {
            pid = std::fs::read_to_string(&full)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            if pid.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let Some(pid) = pid else {
            self.ours_side("files", vec![format!("no pid in {rel} within 10 s")]);
            return;
        };
        self.daemon_pid = Some(pid);
        self.norm
            .numbers
            .insert(pid.to_string(), "{DAEMONPID}".to_string());
        let target = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Renders one capture both ways: the fixture's items, and the same
    /// kinds of thing as ours left them.
    fn capture(&mut self, items: &[Captured]) {
        // A daemon's pid, from its pid file, is {DAEMONPID}.
        for step in &self.fixture.steps {
            if let Step::StopPidfile(rel) = step {
                if let Some(pid) = std::fs::read_to_string(self.path(rel))
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                {
                    self.norm
                        .numbers
                        .insert(pid.to_string(), "{DAEMONPID}".to_string());
                }
            }
        }
        let sink_conns: Vec<(String, SinkConns)> = self
            .sinks
            .iter()
            .map(|(n, s)| (n.clone(), s.conns.lock().unwrap().clone()))
            .collect();
        for (_, conns) in &sink_conns {
            for (i, (port, _)) in conns.iter().enumerate() {
                self.norm
                    .numbers
                    .insert(port.to_string(), format!("{{OPORT{}}}", i + 1));
            }
        }

        // 2.6.1's side.
        let mut entries: Vec<(&'static str, (String, u8), Vec<String>)> = Vec::new();
        for item in items {
            match item {
                Captured::Stdout(data) => {
                    let mut lines = vec!["stdout".to_string()];
                    lines.extend(data_lines(data));
                    self.fixture_side("stdout", lines);
                }
                Captured::Stderr(data) => {
                    let mut lines = vec!["stderr".to_string()];
                    lines.extend(data_lines(data));
                    self.fixture_side("stderr", lines);
                }
                Captured::File { path, meta, data } => {
                    let mut lines = vec![entry_line("file", path, meta)];
                    lines.extend(data_lines(data));
                    entries.push((file_part(path), (path.clone(), 1), lines));
                }
                Captured::Dir { path, meta } => {
                    let lines = vec![entry_line("dir", path, meta)];
                    entries.push((file_part(path), (path.clone(), 0), lines));
                }
                Captured::Absent(path) => {
                    entries.push(("files", (path.clone(), 4), vec![format!("absent {path}")]));
                }
                Captured::WineDebug(data) => {
                    let mut lines = vec!["wine-debug".to_string()];
                    lines.extend(data_lines(data));
                    self.fixture_side("wine-debug", lines);
                }
                Captured::Symlink { path, target } => {
                    let lines = vec![format!("symlink {path} {target}")];
                    entries.push((file_part(path), (path.clone(), 3), lines));
                }
                Captured::Gone(path) => {
                    entries.push(("files", (path.clone(), 2), vec![format!("gone {path}")]));
                }
                Captured::Sink { name, index, data } => {
                    let mut lines = vec![format!("sink-data {name} {index}")];
                    lines.extend(data_lines(data));
                    self.fixture_side("sink", lines);
                }
            }
        }
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        for (part, _, lines) in entries {
            self.fixture_side(part, lines);
        }

        // Ours: the same kinds of thing as the fixture's capture holds.
        let has = |want: fn(&Captured) -> bool| items.iter().any(want);
        if has(|i| matches!(i, Captured::Stdout(_))) {
            let data = std::fs::read(self.capdir.path().join("stdout")).unwrap_or_default();
            let mut lines = vec!["stdout".to_string()];
            lines.extend(data_lines(&self.norm.normalise(&data)));
            self.ours_side("stdout", lines);
        }
        let (stderr, debug) = self.our_stderr();
        if has(|i| matches!(i, Captured::Stderr(_))) {
            let mut lines = vec!["stderr".to_string()];
            lines.extend(data_lines(&self.norm.normalise(&stderr)));
            self.ours_side("stderr", lines);
        }
        if has(|i| matches!(i, Captured::WineDebug(_))) {
            let mut lines = vec!["wine-debug".to_string()];
            lines.extend(data_lines(&self.norm.normalise(&debug)));
            self.ours_side("wine-debug", lines);
        }
        let mut entries = self.our_files();
        entries.extend(self.watched_dirs());
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        for (part, _, lines) in entries {
            self.ours_side(part, lines);
        }
        for (name, conns) in &sink_conns {
            for (i, (_, data)) in conns.iter().enumerate() {
                let mut lines = vec![format!("sink-data {name} {}", i + 1)];
                lines.extend(data_lines(&self.norm.normalise(data)));
                self.ours_side("sink", lines);
            }
        }
    }

    /// Everything in the scenario directory that is not an unchanged input
    /// or a directory the fixture made, and the inputs that are gone:
    /// (part, sort key, lines), as `capture` renders the fixture's.
    fn our_files(&self) -> Vec<(&'static str, (String, u8), Vec<String>)> {
        let mut out = Vec::new();
        let root = self.dir.path().to_path_buf();
        let windows = self.fixture.windows;
        let programs = self
            .windows
            .as_ref()
            .map(|w| &w.programs[..])
            .unwrap_or(&[]);
        walk(&root, &mut |p, kind| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let Ok(meta) = std::fs::symlink_metadata(p) else {
                return;
            };
            // Windows: no mode or owner; the path escaped (the recorder's).
            let shape = match windows {
                true => String::new(),
                false => format!(
                    "{:04o} {}:{}",
                    meta.mode() & 0o7777,
                    user_name(meta.uid()),
                    group_name(meta.gid())
                ),
            };
            let key = match windows {
                true => escape(self.norm.normalise_path(&rel).as_bytes()),
                false => self.norm.normalise_path(&rel),
            };
            if windows && programs.contains(&rel) {
                return;
            }
            // Our spool journal's segments (see docs/compatibility.md,
            // "The spool journal"): 2.6.1 has none, and their bytes (each
            // message's records) are checked by the journal's own tests.
            if matches!(kind, Kind::File) && is_journal_segment(p) {
                return;
            }
            match kind {
                Kind::Dir => {
                    // Windows: nor a directory holding inputs.
                    let holds_input = windows
                        && (self.fixture.inputs.iter())
                            .any(|(r, _, _)| r.starts_with(&format!("{rel}/")));
                    if !self.fixture.mkdirs.contains(&rel) && !holds_input {
                        let line = entry_line("dir", &key, &shape);
                        out.push((file_part(&key), (key, 0), vec![line]));
                    }
                }
                Kind::Symlink => {
                    let target = std::fs::read_link(p)
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let input = self.fixture.symlinks.iter().find(|(r, _)| *r == rel);
                    if input.is_some_and(|(_, t)| *t == target) {
                        return;
                    }
                    let target = String::from_utf8_lossy(&self.norm.normalise(target.as_bytes()))
                        .into_owned();
                    let line = format!("symlink {key} {target}");
                    out.push((file_part(&key), (key, 3), vec![line]));
                }
                Kind::File => {
                    let data = std::fs::read(p).unwrap_or_default();
                    let input = self.fixture.inputs.iter().find(|(r, _, _)| *r == rel);
                    if let Some((_, _, want)) = input {
                        if data == self.subst(want) {
                            return;
                        }
                    }
                    let mut lines = vec![entry_line("file", &key, &shape)];
                    lines.extend(data_lines(&self.norm.normalise(&data)));
                    out.push((file_part(&key), (key, 1), lines));
                }
            }
        });
        let inputs = self.fixture.inputs.iter().map(|(r, _, _)| r);
        let links = self.fixture.symlinks.iter().map(|(r, _)| r);
        for rel in inputs.chain(links) {
            if std::fs::symlink_metadata(self.path(rel)).is_err() {
                out.push(("files", (rel.clone(), 2), vec![format!("gone {rel}")]));
            }
        }
        out
    }

    /// A Windows scenario's `watch` directories of the prefix as ours left
    /// them: their files and directories by Windows path (but for the
    /// `wmkdir`s), or `absent`.
    fn watched_dirs(&self) -> Vec<(&'static str, (String, u8), Vec<String>)> {
        let mut out = Vec::new();
        let Some(windows) = &self.windows else {
            return out;
        };
        for w in &self.fixture.watch {
            let top = windows.wine.unix_path(w);
            if !top.exists() {
                let path = escape(w.as_bytes());
                out.push(("files", (path.clone(), 4), vec![format!("absent {path}")]));
                continue;
            }
            walk(&top, &mut |p, kind| {
                let rel = p.strip_prefix(&top).unwrap().to_string_lossy();
                let wrel = format!("{w}\\{}", rel.replace('/', "\\"));
                if kind == Kind::Dir && self.fixture.wmkdirs.contains(&wrel) {
                    return;
                }
                // As in `our_files`: the spool journal's segments.
                if kind == Kind::File && is_journal_segment(p) {
                    return;
                }
                let key = escape(&self.norm.normalise(wrel.as_bytes()));
                if kind == Kind::Dir {
                    out.push(("files", (key.clone(), 0), vec![format!("dir {key}")]));
                } else {
                    let data = std::fs::read(p).unwrap_or_default();
                    let mut lines = vec![format!("file {key}")];
                    lines.extend(data_lines(&self.norm.normalise(&data)));
                    out.push(("files", (key, 1), lines));
                }
            });
        }
        out
    }

    fn stop(&mut self) {
        for (_, conn) in std::mem::take(&mut self.conns) {
            drop(conn);
        }
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let end = Instant::now() + Duration::from_secs(5);
                while Instant::now() < end && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        if let Some(pid) = self.daemon_pid.take() {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.sinks.clear();
    }
}

/// True for one of our spool journal's segments: `.emailrelay-journal.<n>`.
fn is_journal_segment(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.strip_prefix(".emailrelay-journal.")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The program a fixture runs: ours, or the one in the target directory.
fn program_path(target: &Target, name: &str) -> String {
    if let Some(dir) = &target.bin_dir {
        return format!("{dir}/{name}");
    }
    match name {
        "emailrelay" => env!("CARGO_BIN_EXE_emailrelay").to_string(),
        "emailrelay-submit" => env!("CARGO_BIN_EXE_emailrelay-submit").to_string(),
        "emailrelay-passwd" => env!("CARGO_BIN_EXE_emailrelay-passwd").to_string(),
        other => format!("(no such program: {other})"),
    }
}

/// A capture's `file` or `dir` line: Windows ones have no mode or owner.
fn entry_line(kind: &str, path: &str, meta: &str) -> String {
    match meta {
        "" => format!("{kind} {path}"),
        _ => format!("{kind} {path} {meta}"),
    }
}

/// MD5 as lower-case hex (OpenSSL's, not our own code's).
fn md5_hex(data: &[u8]) -> String {
    let digest = openssl::hash::hash(openssl::hash::MessageDigest::md5(), data).unwrap();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The CRAM-MD5 answer to a base64 challenge (OpenSSL's HMAC).
fn cram_md5_answer(user: &str, password: &str, challenge: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let text = engine.decode(challenge).unwrap_or_default();
    let key = openssl::pkey::PKey::hmac(password.as_bytes()).unwrap();
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::md5(), &key).unwrap();
    signer.update(&text).unwrap();
    let mac: String = signer
        .sign_to_vec()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    engine.encode(format!("{user} {mac}"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

/// The part a captured path belongs to: `log` for a path with a component
/// starting with `log`, else `files`.
fn file_part(path: &str) -> &'static str {
    if path.split('/').any(|c| c.starts_with(PARTS_OF_FILES)) {
        "log"
    } else {
        "files"
    }
}

/// Every entry under `dir`, sorted by name, depth first; symbolic links
/// are not followed.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, Kind)) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = match entry.file_type() {
            Ok(t) if t.is_symlink() => Kind::Symlink,
            Ok(t) if t.is_dir() => Kind::Dir,
            _ => Kind::File,
        };
        visit(&path, kind);
        if kind == Kind::Dir {
            walk(&path, visit);
        }
    }
}

fn wildcard(parts: &[&str], name: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return name.is_empty();
    };
    if !name.starts_with(first) {
        return false;
    }
    let mut pos = first.len();
    for (k, part) in rest.iter().enumerate() {
        if k == rest.len() - 1 {
            return name.len() >= pos + part.len() && name.ends_with(part);
        }
        match name[pos..].find(part) {
            Some(at) => pos += at + part.len(),
            None => return false,
        }
    }
    pos == name.len()
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or(uid.to_string(), |u| u.name)
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or(gid.to_string(), |g| g.name)
}

/// True if something listens on `port` (from /proc: no connection is made,
/// so the relay logs nothing).
fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|name| {
        std::fs::read_to_string(name)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3
                    && fields[3] == "0A"
                    && fields[1]
                        .rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                        == Some(port)
            })
    })
}

/// One read with a timeout: (bytes, closed).
fn read_some(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let _ = stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
    let mut chunk = [0u8; 65536];
    match stream.read(&mut chunk) {
        Ok(0) => (Vec::new(), true),
        Ok(n) => (chunk[..n].to_vec(), false),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            (Vec::new(), false)
        }
        Err(_) => (Vec::new(), true),
    }
}

/// Reads until the peer closes or nothing comes for `quiet`: (bytes, closed).
fn read_for(stream: &mut TcpStream, quiet: Duration) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let (more, closed) = read_some(stream, quiet);
        if closed {
            return (all, true);
        }
        if more.is_empty() {
            return (all, false);
        }
        all.extend(more);
    }
    (all, false)
}
