//! Test harness: starts our binaries and real third-party programs on
//! loopback, each stopped by PID when its guard drops; raw SMTP and admin
//! dialogues over std sockets. Every wait is bounded in time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const RELAY: &str = env!("CARGO_BIN_EXE_emailrelay");
pub const SUBMIT: &str = env!("CARGO_BIN_EXE_emailrelay-submit");

/// Held by tests that change machine-wide state another test reads (the
/// default spool directory, installed packages).
pub fn machine_lock() -> std::sync::MutexGuard<'static, ()> {
    static MACHINE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    MACHINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A free loopback port (bound and released; fine for tests on one machine).
/// Never the same port twice in one test process: two ports picked before
/// either is bound could otherwise coincide (a golden replay once got its
/// relay's port as its "nothing listens here" port).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
        std::sync::Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(Default::default);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no fresh loopback port after 1000 tries");
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// True once something on `port` answers with an SMTP greeting (or refusal):
/// then the relay's runtime is up, not just its listening socket.
pub fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut code = [0u8; 3];
    (&stream).read_exact(&mut code).is_ok() && matches!(&code, b"220" | b"554" | b"421")
}

/// Finds a program on PATH or in /usr/sbin (Postfix's tools live there).
pub fn program(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
    ]) {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is not installed: run scripts/test, which installs it");
}

/// A child process, killed by PID when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc {
            child: cmd
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Waits up to `limit` for the exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// A running relay with its own spool directory and log file.
pub struct Relay {
    pub proc: Proc,
    pub port: u16,
    pub spool: PathBuf,
    pub log: PathBuf,
}

impl Relay {
    /// Starts `emailrelay --no-daemon` on a free port with `extra` options.
    pub fn start(dir: &Path, extra: &[&str]) -> Relay {
        Self::start_on(dir, free_port(), extra)
    }

    pub fn start_on(dir: &Path, port: u16, extra: &[&str]) -> Relay {
        Self::launch(
            &dir.join("spool"),
            &dir.join(format!("relay-{port}.log")),
            port,
            extra,
        )
    }

    /// Starts a relay with this spool and log file (`%d` allowed in the
    /// log file name: then `log_text` reads nothing and the test reads the
    /// dated file itself).
    pub fn launch(spool: &Path, log: &Path, port: u16, extra: &[&str]) -> Relay {
        Self::launch_under(&[], spool, log, port, extra)
    }

    /// As `launch`, with the relay's command line appended to `wrapper`
    /// (a program that ends by exec'ing it, so the PID stays the relay's).
    pub fn launch_under(
        wrapper: &[&str],
        spool: &Path,
        log: &Path,
        port: u16,
        extra: &[&str],
    ) -> Relay {
        let (spool, log) = (spool.to_path_buf(), log.to_path_buf());
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(RELAY);
                cmd
            }
            None => Command::new(RELAY),
        };
        cmd.args([
            "--no-daemon",
            "--log",
            "--verbose",
            "--user",
            "root",
            "--interface",
            "127.0.0.1",
        ])
        .args(["--domain", "relay.example.com", "--port", &port.to_string()])
        .arg("--spool-dir")
        .arg(&spool)
        .arg("--log-file")
        .arg(&log)
        .args(extra);
        let relay = Relay {
            proc: Proc::spawn(&mut cmd),
            port,
            spool,
            log,
        };
        // Implicit TLS: no greeting in clear, so wait for the log line.
        let implicit_tls = extra.contains(&"--server-tls-connection");
        let ready = || {
            if implicit_tls {
                relay
                    .log_text()
                    .contains("emailrelay: info: smtp server on ")
            } else {
                greets(port)
            }
        };
        assert!(
            wait_until(Duration::from_secs(20), ready),
            "relay did not start: {}",
            relay.log_text()
        );
        relay
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`; returns the log.
    /// Log lines are written just after the event they report, so a test
    /// that has seen the event may have to wait a moment for the line.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_until(Duration::from_secs(10), || self.log_text().contains(needle));
        self.log_text()
    }

    /// As `wait_log`, failing the test if `needle` never appears.
    pub fn expect_log(&self, needle: &str) -> String {
        let log = self.wait_log(needle);
        assert!(log.contains(needle), "no [{needle}] in the log:\n{log}");
        log
    }

    /// Spool file names with this suffix.
    pub fn files(&self, suffix: &str) -> Vec<String> {
        spool_files(&self.spool, suffix)
    }
}

/// Spool file names with this suffix, sorted (the spool journal's segments
/// are not among them: see [`journal_segments`]).
pub fn spool_files(spool: &Path, suffix: &str) -> Vec<String> {
    let mut names = all_spool_files(spool);
    names.retain(|n| n.ends_with(suffix) && !n.starts_with(JOURNAL_PREFIX));
    names
}

/// The spool journal's segments (`.emailrelay-journal.<n>`), there while
/// messages received in the last seconds are not yet checkpointed.
pub fn journal_segments(spool: &Path) -> Vec<String> {
    let mut names = all_spool_files(spool);
    names.retain(|n| n.starts_with(JOURNAL_PREFIX));
    names
}

const JOURNAL_PREFIX: &str = ".emailrelay-journal.";

fn all_spool_files(spool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Postfix's smtp-sink, dumping each message into its own file.
pub struct Sink {
    pub _proc: Proc,
    pub port: u16,
    pub dir: PathBuf,
}

impl Sink {
    pub fn start(dir: &Path) -> Sink {
        Sink::start_on(dir, free_port(), &[])
    }

    /// smtp-sink on `port` with `extra` options (`-f RCPT`: a 5xx for
    /// every recipient), writing into `dir`/sink.
    pub fn start_on(dir: &Path, port: u16, extra: &[&str]) -> Sink {
        let sink_dir = dir.join("sink");
        std::fs::create_dir_all(&sink_dir).unwrap();
        std::fs::set_permissions(
            &sink_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let template = format!("{}/%M.", sink_dir.display());
        let mut cmd = Command::new(program("smtp-sink"));
        cmd.args(["-u", "nobody", "-d", &template])
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("256");
        let sink = Sink {
            _proc: Proc::spawn(&mut cmd),
            port,
            dir: sink_dir,
        };
        assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
            ("127.0.0.1", port)
        )
        .is_ok()));
        sink
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<String> {
        let mut names = spool_files(&self.dir, "");
        names.retain(|n| !n.starts_with('.'));
        names
            .iter()
            .filter_map(|n| std::fs::read_to_string(self.dir.join(n)).ok())
            .collect()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A raw SMTP or admin client: send lines, read replies.
pub struct Client {
    stream: BufReader<TcpStream>,
    /// HELO or EHLO has been sent: [`Client::send_message`] says EHLO
    /// first otherwise (the server, as E-MailRelay 2.6.1, wants it).
    greeted: bool,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::from_stream(TcpStream::connect(("127.0.0.1", port)).unwrap())
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream: BufReader::new(stream),
            greeted: false,
        }
    }

    pub fn send(&mut self, text: &str) {
        let verb = text.get(..4).unwrap_or("").to_ascii_uppercase();
        self.greeted |= verb == "EHLO" || verb == "HELO";
        self.stream.get_mut().write_all(text.as_bytes()).unwrap();
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).unwrap();
    }

    /// Reads one whole SMTP reply (all its lines).
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    /// Sends a command and returns the reply's first line, without CRLF.
    pub fn command(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.reply().lines().last().unwrap_or("").to_string()
    }

    /// Reads until `marker` appears (for the admin prompt).
    pub fn read_until(&mut self, marker: &str) -> String {
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&text).ends_with(marker) {
            match self.stream.read(&mut byte) {
                Ok(1) => text.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// A whole SMTP transaction; returns the final reply's first line.
    pub fn send_message(&mut self, from: &str, to: &[&str], body: &str) -> String {
        if !self.greeted {
            self.command("EHLO client.example");
        }
        let mut r = self.command(&format!("MAIL FROM:<{from}>"));
        for t in to {
            r = self.command(&format!("RCPT TO:<{t}>"));
        }
        if !r.starts_with("250") {
            return r;
        }
        let r = self.command("DATA");
        if !r.starts_with("354") {
            return r;
        }
        self.send(body);
        self.command(".")
    }
}

/// Connects, sends one message and says QUIT; returns the reply to the message.
pub fn send_one(port: u16, from: &str, to: &[&str], body: &str) -> String {
    let mut c = Client::connect(port);
    c.reply();
    let reply = c.send_message(from, to, body);
    c.command("QUIT");
    reply
}

/// Submits one small message into `spool` with emailrelay-submit.
pub fn submit_one(spool: &Path) {
    submit_to(spool, "x@y.z");
}

/// Submits one small message for `to` into `spool` (created if need be:
/// emailrelay-submit, like 2.6.1's, wants it to exist) with emailrelay-submit.
pub fn submit_to(spool: &Path, to: &str) {
    std::fs::create_dir_all(spool).unwrap();
    let (code, _, err) = run(
        Command::new(SUBMIT)
            .arg("-s")
            .arg(spool)
            .args(["--content", "U3ViamVjdDogaGVscA", to]),
        Duration::from_secs(10),
    );
    assert_eq!(code, 0, "emailrelay-submit failed: {err}");
}

/// Runs a command to completion with a time limit; returns (code, stdout, stderr).
pub fn run(cmd: &mut Command, limit: Duration) -> (i32, String, String) {
    run_with_input(cmd, None, limit)
}

/// As `run`, with `input` (if any) written to the command's stdin, which
/// is then closed.
pub fn run_with_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> (i32, String, String) {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    // Read in threads: a process the command leaves behind (a daemon, a
    // Wine server) may keep the pipes open, and must not hold the test.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{cmd:?} did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let collect = |reader: std::thread::JoinHandle<Vec<u8>>| {
        let grace = Instant::now() + Duration::from_secs(2);
        while !reader.is_finished() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(10));
        }
        match reader.is_finished() {
            true => String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned(),
            false => String::new(),
        }
    };
    (status.code().unwrap_or(-1), collect(out), collect(err))
}

/// A private Postfix instance on a loopback port, delivering example.org
/// into one maildir and refusing to relay anywhere else. Stopped on drop.
pub struct Postfix {
    etc: PathBuf,
    pub port: u16,
    pub maildir: PathBuf,
}

impl Postfix {
    pub fn start(dir: &Path) -> Postfix {
        Self::start_with(dir, "", "")
    }

    /// As `start`, with more main.cf lines and `-o` options for the smtpd
    /// service (e.g. TLS settings).
    pub fn start_with(dir: &Path, main_extra: &str, smtpd_options: &str) -> Postfix {
        let base = dir.join("postfix");
        let (etc, mail) = (base.join("etc"), base.join("mail"));
        for d in [&etc, &base.join("queue"), &base.join("data"), &mail] {
            std::fs::create_dir_all(d).unwrap();
        }
        // The postfix user must reach the mail base through our temp dirs.
        for d in [dir, &base] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let postfix_id = |flag: &str| {
            run(
                Command::new("id").args([flag, "postfix"]),
                Duration::from_secs(5),
            )
            .1
            .trim()
            .to_string()
        };
        let (uid, gid) = (postfix_id("-u"), postfix_id("-g"));
        for d in [&mail, &base.join("data")] {
            run(
                Command::new("chown").arg(format!("{uid}:{gid}")).arg(d),
                Duration::from_secs(5),
            );
        }
        let port = free_port();
        let b = base.display();
        std::fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {b}/queue\ndata_directory = {b}/data\n\
                 mail_owner = postfix\nsetgid_group = postdrop\nmyhostname = smarthost.example.net\nmydestination =\n\
                 inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks =\n\
                 smtpd_relay_restrictions = reject_unauth_destination\n\
                 virtual_mailbox_domains = example.org\nvirtual_mailbox_base = {b}/mail\n\
                 virtual_mailbox_maps = static:inbox/\nvirtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\n\
                 virtual_minimum_uid = 1\nmaillog_file_prefixes = {b}\nmaillog_file = {b}/maillog\nsmtputf8_enable = no\nbiff = no\n{main_extra}"
            ),
        )
        .unwrap();
        let master = std::fs::read_to_string("/etc/postfix/master.cf")
            .expect("Postfix is not installed: run scripts/test");
        let mut master: String = master
            .lines()
            .filter(|l| !l.starts_with("smtp      inet"))
            .map(|l| format!("{l}\n"))
            .collect();
        master.push_str(&format!(
            "127.0.0.1:{port} inet n - n - - smtpd {smtpd_options}\n"
        ));
        if !master.contains("\npostlog") {
            master.push_str("postlog unix-dgram n - n - 1 postlogd\n");
        }
        std::fs::write(etc.join("master.cf"), master).unwrap();
        let (code, out, err) = run(
            Command::new(program("postfix"))
                .arg("-c")
                .arg(&etc)
                .arg("start"),
            Duration::from_secs(30),
        );
        assert_eq!(code, 0, "postfix start failed: {out}{err}");
        assert!(
            wait_until(Duration::from_secs(20), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "postfix is not listening"
        );
        Postfix {
            etc,
            port,
            maildir: mail.join("inbox").join("new"),
        }
    }

    /// Messages delivered to the maildir.
    pub fn delivered(&self) -> Vec<String> {
        spool_files(&self.maildir, "")
            .iter()
            .filter_map(|n| std::fs::read_to_string(self.maildir.join(n)).ok())
            .collect()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Postfix's own log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.etc.parent().unwrap().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(program("postfix"))
            .arg("-c")
            .arg(&self.etc)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// SpamAssassin's spamd on a loopback port, local tests only (no network
/// rules), one child. Stopped by PID on drop.
pub struct Spamd {
    pub _proc: Proc,
    pub port: u16,
}

impl Spamd {
    pub fn start(dir: &Path) -> Spamd {
        let port = free_port();
        let mut cmd = Command::new(program("spamd"));
        cmd.arg(format!("--listen=127.0.0.1:{port}"))
            .args([
                "--username=nobody",
                "--nouser-config",
                "--local",
                "--max-children=1",
            ])
            .arg(format!("--pidfile={}", dir.join("spamd.pid").display()))
            .arg("--syslog=stderr")
            .stderr(Stdio::null());
        let spamd = Spamd {
            _proc: Proc::spawn(&mut cmd),
            port,
        };
        assert!(
            wait_until(Duration::from_secs(60), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "spamd did not start"
        );
        spamd
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A network namespace joined to this one by a veth pair: a "remote" host
/// at 198.18.N.2 (a benchmarking range, not a local one) that reaches us at
/// 198.18.N.1, N different for each one made. Removed on drop.
pub struct RemoteHost {
    name: String,
    link: String,
    subnet: u32,
}

impl RemoteHost {
    pub fn create() -> RemoteHost {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 10_000);
        let (name, link, peer) = (format!("errs{id}"), format!("er{id}h"), format!("er{id}p"));
        let host = RemoteHost {
            name: name.clone(),
            link: link.clone(),
            subnet: n % 250,
        };
        let (local, remote) = (
            format!("{}/30", host.local_ip()),
            format!("{}/30", host.remote_ip()),
        );
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &name],
            vec!["link", "add", &link, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &peer, "netns", &name],
            vec!["addr", "add", &local, "dev", &link],
            vec!["link", "set", &link, "up"],
            vec![
                "netns", "exec", &name, "ip", "addr", "add", &remote, "dev", &peer,
            ],
            vec!["netns", "exec", &name, "ip", "link", "set", &peer, "up"],
            vec!["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
        ];
        for step in steps {
            let (code, _, err) = run(
                Command::new(program("ip")).args(&step),
                Duration::from_secs(10),
            );
            assert_eq!(
                code, 0,
                "ip {step:?}: {err} (this test needs root and iproute2, as scripts/test provides)"
            );
        }
        host
    }

    /// Our address on the link.
    pub fn local_ip(&self) -> String {
        format!("198.18.{}.1", self.subnet)
    }

    /// The remote host's address.
    pub fn remote_ip(&self) -> String {
        format!("198.18.{}.2", self.subnet)
    }

    /// Runs a program on the remote host; returns (code, stdout, stderr).
    pub fn exec(&self, command: &[&str]) -> (i32, String, String) {
        run(
            Command::new(program("ip"))
                .args(["netns", "exec", &self.name])
                .args(command),
            Duration::from_secs(30),
        )
    }

    /// Connects from the remote host to us and returns the first line it
    /// is sent ("" if the connection is closed without a word).
    pub fn greeting_from(&self, port: u16) -> String {
        let script = format!(
            "import socket; s=socket.create_connection(('{}',{port}),timeout=10); print(s.recv(200).decode().strip())",
            self.local_ip()
        );
        let (code, out, err) = run(
            Command::new(program("ip"))
                .args(["netns", "exec", &self.name, "python3", "-c", &script]),
            Duration::from_secs(30),
        );
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        let ip = program("ip");
        let _ = Command::new(&ip).args(["link", "del", &self.link]).status();
        let _ = Command::new(&ip)
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// dnsmasq as a DNS server on a loopback port, answering from `records`
/// (dnsmasq options such as `--mx-host=...`) and NXDOMAIN for the rest of
/// the `local` domains. Stopped by PID on drop.
pub struct Dnsmasq {
    pub _proc: Proc,
    pub port: u16,
}

impl Dnsmasq {
    pub fn start(dir: &Path, local: &[&str], records: &[String]) -> Dnsmasq {
        let port = free_port();
        let log = dir.join(format!("dnsmasq-{port}.log"));
        let mut cmd = Command::new(program("dnsmasq"));
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
        ])
        .args(["--listen-address=127.0.0.1", "--user=root", "--log-queries"])
        .arg(format!("--port={port}"))
        .arg(format!(
            "--pid-file={}",
            dir.join(format!("dnsmasq-{port}.pid")).display()
        ))
        .arg(format!("--log-facility={}", log.display()))
        .args(local.iter().map(|d| format!("--local=/{d}/")))
        .args(records);
        let dnsmasq = Dnsmasq {
            _proc: Proc::spawn(&mut cmd),
            port,
        };
        assert!(
            wait_until(Duration::from_secs(20), || std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("started")),
            "dnsmasq did not start"
        );
        dnsmasq
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
