//! `emailrelay-submit` installed set-group-id (needs root to set up).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBMIT: &str = env!("CARGO_BIN_EXE_emailrelay-submit");

/// E-MailRelay's suite, testSubmitPermissions: a set-group-id copy run by
/// an ordinary user writes files that user owns, in the spool group,
/// rw-rw----; and root writing into a set-group-id spool directory gives
/// the files the directory's group.
pub fn set_group_id_installs_write_files_the_relay_can_read() {
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

/// Content and envelope names in `spool`, sorted.
fn names(spool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

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
