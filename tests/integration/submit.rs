//! `emailrelay-submit` beyond what the golden transcripts of 2.6.1 show
//! (tests/golden/submit and tests/golden/passwd, replayed by the golden
//! test): the `--bcc-split` and content options together, file modes under
//! any umask, signals mid-message. (A set-group-id install needs root: it
//! is in the `root` test target.)

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::SUBMIT;

/// Bytes as a string, one character each.
fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// Runs `cmd` with `input` on its standard input; (exit code, stdout,
/// stderr). Killed after 20 seconds.
fn run_bytes(cmd: &mut Command, input: &[u8]) -> (i64, Vec<u8>, Vec<u8>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = writer.join();
    let out = child.wait_with_output().unwrap();
    (
        i64::from(out.status.code().unwrap_or(-1)),
        out.stdout,
        out.stderr,
    )
}

/// Content and envelope names in `spool`, sorted.
fn names(spool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn submit_in(dir: &Path, args: &[&str], input: &str) -> (i64, String, String) {
    let mut cmd = Command::new(SUBMIT);
    cmd.args(args).current_dir(dir);
    let (code, out, err) = run_bytes(&mut cmd, input.as_bytes());
    (code, latin1(&out), latin1(&err))
}

#[test]
fn bcc_split_and_content_lines_as_2_6_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("s")).unwrap();
    let message = "From: Alice <alice@example.com>\nTo: bob@example.org\nBcc: <carol@example.net>, dave@example.net\nSubject: s\n\nbody\n";
    let (code, out, err) = submit_in(dir.path(), &["-s", "s", "--bcc-split", "-n"], message);
    assert_eq!((code, err.as_str()), (0, ""));
    let ids: Vec<&str> = out
        .lines()
        .map(|l| l.trim_end_matches(".content"))
        .collect();
    assert_eq!(ids.len(), 3, "{out}");
    let read = |id: &str, suffix: &str| {
        std::fs::read_to_string(dir.path().join("s").join(format!("{id}{suffix}"))).unwrap()
    };
    let recipients = |id: &str| -> Vec<String> {
        read(id, ".envelope")
            .lines()
            .filter_map(|l| l.strip_prefix("X-MailRelay-To-Remote: "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(recipients(ids[0]), ["bob@example.org"]);
    assert_eq!(recipients(ids[1]), ["carol@example.net"]);
    assert_eq!(recipients(ids[2]), ["dave@example.net"]);
    assert_eq!(
        read(ids[0], ".content"),
        "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: s\r\n\r\nbody\r\n"
    );
    assert_eq!(
        read(ids[2], ".content"),
        "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nbcc: dave@example.net\r\nSubject: s\r\n\r\nbody\r\n"
    );
    // -dtFN: Date, To and From fields, and standard input not read.
    let (code, out, _) = submit_in(
        dir.path(),
        &[
            "-s",
            "s",
            "-dtFNv",
            "--from",
            "me@example.com",
            "-C",
            "U3ViamVjdDogaGVscA",
            "--content=",
            "--content=ZXJyb3I",
            "you@example.com",
        ],
        "not read\n",
    );
    assert_eq!(code, 0);
    let content = std::fs::read_to_string(dir.path().join(out.trim())).unwrap();
    let lines: Vec<&str> = content.split("\r\n").collect();
    assert_eq!(lines[..2], ["To: you@example.com", "From: me@example.com"]);
    assert!(lines[2].starts_with("Date: "), "{content}");
    assert_eq!(lines[3..], ["Subject: help", "", "error", ""]);
}

/// Content and envelope files are rw-rw---- whatever the umask, copies
/// made by `--copy` too (the content stays, the envelope goes to each
/// sub-directory).
#[test]
fn files_are_rw_rw_under_any_umask() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("s");
    std::fs::create_dir_all(spool.join("sub")).unwrap();
    for umask in ["077", "000", "027"] {
        let (code, _, err) = run_bytes(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "umask {umask}; exec \"$0\" -s s -N -c -C U3ViamVjdDogaGVscA r@x"
                ))
                .arg(SUBMIT)
                .current_dir(dir.path()),
            b"",
        );
        assert_eq!((code, latin1(&err)), (0, String::new()), "umask {umask}");
    }
    let modes = |dir: &Path| -> Vec<(String, u32)> {
        names(dir)
            .into_iter()
            .filter(|n| n != "sub")
            .map(|n| {
                let mode = std::fs::metadata(dir.join(&n))
                    .unwrap()
                    .permissions()
                    .mode();
                (n, mode & 0o7777)
            })
            .collect()
    };
    let (top, sub) = (modes(&spool), modes(&spool.join("sub")));
    assert_eq!(top.len(), 3, "a content file per run: {top:?}");
    assert_eq!(sub.len(), 3, "an envelope per run: {sub:?}");
    assert!(top.iter().all(|(n, _)| n.ends_with(".content")), "{top:?}");
    assert!(sub.iter().all(|(n, _)| n.ends_with(".envelope")), "{sub:?}");
    for (name, mode) in top.iter().chain(&sub) {
        assert_eq!(*mode, 0o660, "{name}");
    }
}

#[test]
fn a_signal_mid_message_leaves_nothing_behind() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("s");
        std::fs::create_dir(&spool).unwrap();
        let mut command = Command::new(SUBMIT);
        command
            .arg("-s")
            .arg(&spool)
            .arg("r@x")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A test run in the background of a script ignores SIGINT, and
        // the child would inherit that (see the next test): here each
        // signal has its default action.
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        #[allow(unsafe_code)]
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl)
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"Subject: s\n\nfirst line\n").unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while names(&spool).is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(names(&spool).len(), 1, "the content file is being written");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = wait_bounded(&mut child);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(signal as i32),
            "ended by the signal itself"
        );
        assert!(
            names(&spool).is_empty(),
            "{:?} left {:?}",
            signal,
            names(&spool)
        );
        drop(stdin);
    }
}

/// Waits up to 20 s for `child`, then kills it and fails.
fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the child did not end within 20 s");
}

/// Under `nohup`, or in the background of a script, SIGINT is ignored
/// from the start: it stays so (nothing is removed under a message still
/// being written), and the message is submitted when its input ends.
#[test]
fn an_ignored_sigint_stays_ignored_and_the_message_goes_in() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("s");
    std::fs::create_dir(&spool).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' INT; exec {SUBMIT} -s \"$0\" r@x"))
        .arg(&spool)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Subject: s\n\nfirst line\n").unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while names(&spool).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(names(&spool).len(), 1, "the content file is still there");
    stdin.write_all(b"second line\n").unwrap();
    drop(stdin);
    let status = wait_bounded(&mut child);
    assert_eq!(status.code(), Some(0));
    let mut names = names(&spool);
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with(".content") && names[1].ends_with(".envelope"),
        "{names:?}"
    );
    let content = std::fs::read_to_string(spool.join(&names[0])).unwrap();
    assert!(
        content.contains("first line") && content.contains("second line"),
        "{content}"
    );
}
