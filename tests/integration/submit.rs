//! `emailrelay-submit` and `emailrelay-passwd` against E-MailRelay 2.6.1:
//! the golden fixtures of tests/golden/submit (recorded from the real
//! 2.6.1 tools by scripts/record-golden-submit) replayed against our
//! binaries, byte for byte after the normalisations the recorder applies
//! (ids, times, version, program directory); and what the fixtures cannot
//! show: file modes under any umask, the group of a set-group-id install,
//! the scripts that ship with E-MailRelay, and signals mid-message.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::SUBMIT;

const PASSWD: &str = env!("CARGO_BIN_EXE_emailrelay-passwd");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/submit");

/// What a run showed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    exit: i64,
    stdout: String,
    stderr: String,
    /// (path under the spool directory, mode, content), sorted.
    files: Vec<(String, String, String)>,
}

#[test]
fn golden_fixtures_replay_against_our_tools() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(GOLDEN)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(names.len() > 80, "the fixtures are missing: {GOLDEN}");
    let mut failures = Vec::new();
    for path in &names {
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (expected, ours) = replay(&fixture);
        if expected != ours {
            failures.push(format!(
                "{}:\n  expected {expected:?}\n  ours     {ours:?}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs one fixture's scenario with our tool; returns (expected, ours),
/// both reduced as the fixture says.
fn replay(fixture: &Value) -> (Outcome, Outcome) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::create_dir(work.join("s")).unwrap();
    for d in list(&fixture["dirs"]) {
        std::fs::create_dir_all(work.join(d.as_str().unwrap())).unwrap();
    }
    if let Some(links) = fixture["links"].as_object() {
        for (path, target) in links {
            std::os::unix::fs::symlink(target.as_str().unwrap(), work.join(path)).unwrap();
        }
    }
    if let Some(files) = fixture["files"].as_object() {
        for (path, text) in files {
            std::fs::write(work.join(path), bytes(text)).unwrap();
        }
    }
    let tool = match fixture["tool"].as_str().unwrap() {
        "emailrelay-submit" => SUBMIT,
        _ => PASSWD,
    };
    let args: Vec<OsString> = list(&fixture["args"])
        .iter()
        .map(|a| OsString::from_vec(bytes(a)))
        .collect();
    let mut cmd = Command::new(tool);
    cmd.args(&args).current_dir(work).env_remove("COLUMNS");
    let (exit, stdout, stderr) = run_bytes(&mut cmd, &bytes(&fixture["stdin"]));
    let app_dir = Path::new(tool).canonicalize().unwrap();
    let app_dir = app_dir.parent().unwrap().to_string_lossy().into_owned();
    let norm = |b: &[u8]| normalise(&latin1(b), &app_dir);
    let mut ours = Outcome {
        exit,
        stdout: norm(&stdout),
        stderr: norm(&stderr),
        files: spool_files(&work.join("s"), &app_dir),
    };
    if args.first().is_some_and(|a| a == "--version" || a == "-V") {
        ours.stdout = ours.stdout.replace(env!("CARGO_PKG_VERSION"), "VERSION");
    }
    let reference = &fixture["reference"];
    let overrides = &fixture["ours"];
    let pick = |field: &str| {
        if overrides[field].is_null() {
            reference[field].clone()
        } else {
            overrides[field].clone()
        }
    };
    let mut expected = Outcome {
        exit: pick("exit").as_i64().unwrap(),
        stdout: pick("stdout").as_str().unwrap().to_string(),
        stderr: pick("stderr").as_str().unwrap().to_string(),
        files: list(&pick("files"))
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap().to_string();
                (s("path"), s("mode"), s("content"))
            })
            .collect(),
    };
    match fixture["compare"].as_str() {
        Some("help") => {
            expected.stdout = help_shape(&expected.stdout);
            ours.stdout = help_shape(&ours.stdout);
        }
        Some(head) if head.starts_with("stderr-head:") => {
            let n: usize = head["stderr-head:".len()..].parse().unwrap();
            let first = |s: &str| s.split_inclusive('\n').take(n).collect::<String>();
            expected.stderr = first(&expected.stderr);
            ours.stderr = first(&ours.stderr);
        }
        _ => {}
    }
    (expected, ours)
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// A fixture string: one character per byte.
fn bytes(v: &Value) -> Vec<u8> {
    v.as_str()
        .unwrap_or("")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 fixture string"))
        .collect()
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// Every file under `spool` (links not followed), sorted by path.
fn spool_files(spool: &Path, app_dir: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![spool.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(spool)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
                let content = latin1(&std::fs::read(&path).unwrap());
                out.push((
                    normalise(&rel, app_dir),
                    format!("{mode:o}"),
                    normalise(&content, app_dir),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The recorder's normalisations: message ids, the Date and Message-ID
/// fields submit writes, and the program's directory.
fn normalise(text: &str, app_dir: &str) -> String {
    let text = replace_shapes(
        text,
        "emailrelay.",
        &["9+", ".", "9+", "."],
        "emailrelay.PID.TIME.",
    );
    let text = replace_shapes(
        &text,
        "Message-ID: <",
        &["9+", ".", "999999", ".", "9+", "@"],
        "Message-ID: <TIME.PID@",
    );
    let text = replace_shapes(
        &text,
        "Date: ",
        &[
            "99", " ", "A", "a", "a", " ", "9999", " ", "99", ":", "99", ":", "99", " ", "+",
            "9999",
        ],
        "Date: DATE",
    );
    text.replace(app_dir, "<app>")
}

/// Replaces `start` followed by text of the given shape (`9` a digit,
/// `9+` digits, `A` an upper-case and `a` a lower-case letter, `+` a sign,
/// anything else itself) with `with`.
fn replace_shapes(text: &str, start: &str, shape: &[&str], with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(start) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + start.len()..];
        match match_shape(tail, shape) {
            Some(len) => {
                out.push_str(with);
                rest = &tail[len..];
            }
            None => {
                out.push_str(start);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

fn match_shape(text: &str, shape: &[&str]) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = 0;
    for part in shape {
        match *part {
            "9+" => {
                let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                if n == 0 {
                    return None;
                }
                i += n;
            }
            p if p.bytes().all(|c| c == b'9') => {
                for _ in 0..p.len() {
                    b.get(i).filter(|c| c.is_ascii_digit())?;
                    i += 1;
                }
            }
            "A" | "a" | "+" => {
                let c = *b.get(i)?;
                let ok = match *part {
                    "A" => c.is_ascii_uppercase(),
                    "a" => c.is_ascii_lowercase(),
                    _ => c == b'+' || c == b'-',
                };
                if !ok {
                    return None;
                }
                i += 1;
            }
            literal => {
                if !b[i..].starts_with(literal.as_bytes()) {
                    return None;
                }
                i += literal.len();
            }
        }
    }
    Some(i)
}

/// What a script sees of `--help`: the usage summary, and each option's
/// spelling in the left column (the descriptions are ours).
fn help_shape(text: &str) -> String {
    let mut lines = text.lines();
    let mut out: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for line in lines {
        let entry = (line.starts_with("  -") && !line.starts_with("   "))
            || (line.starts_with("      --") && !line.starts_with("       "));
        if !entry {
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let words: Vec<&str> = line.split_whitespace().collect();
        let syntax = if words[0].len() == 3 && words[0].ends_with(',') {
            format!("{indent}{} {}", words[0], words.get(1).unwrap_or(&""))
        } else {
            format!("{indent}{}", words[0])
        };
        out.push(syntax);
    }
    out.join("\n")
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

#[cfg(test)]
mod normalising {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            normalise("x/emailrelay.123.1795667620.12.content emailrelay.x", "/b"),
            "x/emailrelay.PID.TIME.12.content emailrelay.x"
        );
        assert_eq!(
            normalise(
                "Message-ID: <1795667620.907997.9969@yes>\r\nDate: 26 Nov 2026 04:33:40 +0000\r\n",
                "/b"
            ),
            "Message-ID: <TIME.PID@yes>\r\nDate: DATE\r\n"
        );
        assert_eq!(normalise("Date: yesterday", "/b"), "Date: yesterday");
        assert_eq!(
            help_shape("usage: x [-h]\n  [--y]\n\n  -h, --help   says\n                  -not this\n      --to=<a> adds\nEnd.\n"),
            "usage: x [-h]\n  [--y]\n  -h, --help\n      --to=<a>"
        );
    }
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

#[test]
fn files_are_rw_rw_under_any_umask() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("s")).unwrap();
    for umask in ["077", "000", "027"] {
        let (code, _, err) = run_bytes(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "umask {umask}; exec \"$0\" -s s -N -C U3ViamVjdDogaGVscA r@x -c"
                ))
                .arg(SUBMIT)
                .current_dir(dir.path()),
            b"",
        );
        assert_eq!((code, latin1(&err)), (0, String::new()));
    }
    std::fs::create_dir(dir.path().join("s/sub")).unwrap();
    for path in spool_files(&dir.path().join("s"), "") {
        assert_eq!(path.1, "660", "{path:?}");
    }
}

/// E-MailRelay's suite, testSubmitPermissions: a set-group-id copy run by
/// an ordinary user writes files that user owns, in the spool group,
/// rw-rw----; and root writing into a set-group-id spool directory gives
/// the files the directory's group. Needs root to set it up.
#[test]
fn set_group_id_installs_write_files_the_relay_can_read() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to make a set-group-id copy");
        return;
    }
    let group = nix::unistd::Group::from_name("daemon").unwrap().unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("submit");
    std::fs::copy(SUBMIT, &exe).unwrap();
    nix::unistd::chown(&exe, Some(nix::unistd::Uid::from_raw(1)), Some(group.gid)).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o2755)).unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, err) = run_bytes(
        Command::new("setpriv")
            .arg(format!("--reuid={}", nobody.uid))
            .arg(format!("--regid={}", nobody.gid))
            .arg("--clear-groups")
            .arg(&exe)
            .args(["--from", "me@here.localnet", "--spool-dir"])
            .arg(&spool)
            .arg("me@there.localnet"),
        b"Subject: s\n\nbody\n",
    );
    assert_eq!((code, latin1(&err)), (0, String::new()));
    let check = |owner: u32, group: u32| {
        let files = names(&spool);
        assert_eq!(files.len(), 2, "{files:?}");
        for name in files {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(spool.join(&name)).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (owner, group, 0o660),
                "{name}"
            );
            std::fs::remove_file(spool.join(name)).unwrap();
        }
    };
    check(nobody.uid.as_raw(), group.gid.as_raw());
    // The caller's own permissions for --input-file: a file only the spool
    // group may read is not read for them (2.6.1 reads it).
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "Subject: secret\n\n").unwrap();
    nix::unistd::chown(&secret, None, Some(group.gid)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, _, err) = run_bytes(
        Command::new("setpriv")
            .arg(format!("--reuid={}", nobody.uid))
            .arg(format!("--regid={}", nobody.gid))
            .arg("--clear-groups")
            .arg(&exe)
            .arg("-s")
            .arg(&spool)
            .arg("-x")
            .arg(&secret)
            .arg("r@x"),
        b"",
    );
    assert_eq!(
        (code, latin1(&err)),
        (
            1,
            format!("submit: cannot open input file [{}]\n", secret.display())
        )
    );
    assert!(names(&spool).is_empty());
    // Root, plain copy, set-group-id spool directory of the spool group.
    nix::unistd::chown(&spool, None, Some(group.gid)).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o2775)).unwrap();
    let mut cmd = Command::new(SUBMIT);
    cmd.arg("-s").arg(&spool).arg("r@x");
    assert_eq!(run_bytes(&mut cmd, b"").0, 0);
    check(0, group.gid.as_raw());
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
