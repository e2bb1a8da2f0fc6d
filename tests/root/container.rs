//! The scratch container image (packaging/container, issue 28), built
//! with Debian's podman from the release binary and its libraries,
//! nothing pulled. Needs root: rootful podman, and chroot to run the
//! image's root filesystem as its user.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RELAY: &str = env!("CARGO_BIN_EXE_emailrelay");

/// Runs `cmd` within `limit`; (exit code, stdout, stderr).
fn run(cmd: &mut Command, limit: Duration) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn podman(args: &[&str]) -> String {
    let (code, out, err) = run(Command::new("podman").args(args), Duration::from_secs(120));
    assert_eq!(code, 0, "podman {args:?}: {out}{err}");
    out.trim().to_string()
}

fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

fn greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut code = [0u8; 3];
    stream.read_exact(&mut code).is_ok() && &code == b"220"
}

/// Builds the image; checks its user, entrypoint and volume; runs the
/// entrypoint from the image's root filesystem under chroot as the
/// image's user (this sandbox's crun cannot start a container: it
/// refuses the default RLIMIT_NOFILE and then "cgroups in hybrid mode");
/// swaks sends a message; SIGTERM drains and ends it with status 0.
pub fn the_image_builds_and_its_root_filesystem_serves() {
    let tag = format!("localhost/emailrelay-test:{}", std::process::id());
    let (code, out, err) = run(
        Command::new("packaging/container/build").args([RELAY, &tag]),
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{out}{err}");
    let inspect = |format: &str| podman(&["image", "inspect", "--format", format, &tag]);
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    let entry: Vec<String> = serde_json::from_str(&inspect("{{json .Config.Entrypoint}}")).unwrap();
    assert_eq!(entry[0], "/usr/sbin/emailrelay");
    assert!(inspect("{{json .Config.Volumes}}").contains("/var/spool/emailrelay"));
    assert_eq!(inspect("{{.Config.StopSignal}}"), "SIGTERM");

    let container = podman(&["create", &tag]);
    let root = podman(&["mount", &container]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(&root)
        .args(&entry)
        .args(["--port", &port.to_string(), "--interface", "127.0.0.1"])
        .stdin(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let served = wait_until(Duration::from_secs(10), || greets(port));
    let (code, out, _) = if served {
        run(
            Command::new("swaks").args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--from",
                "alice@example.com",
                "--to",
                "bob@example.org",
            ]),
            Duration::from_secs(30),
        )
    } else {
        (-1, String::new(), String::new())
    };
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let exited = wait_until(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    let spool = Path::new(&root).join("var/spool/emailrelay");
    let mut envelopes: Vec<std::fs::DirEntry> = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".envelope"))
        .collect();
    let owner = envelopes
        .pop()
        .map(|e| std::os::unix::fs::MetadataExt::uid(&e.metadata().unwrap()));
    podman(&["umount", &container]);
    podman(&["rm", &container]);
    podman(&["rmi", &tag]);

    assert!(served, "{text}");
    assert_eq!(code, 0, "{out}");
    assert!(exited && status.success(), "{status:?}: {text}");
    assert!(
        text.contains(&format!(
            "emailrelay: info: smtp server on 127.0.0.1:{port}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("smtp connection closed: smtp protocol done: 127.0.0.1:"),
        "{text}"
    );
    assert!(!text.contains("warning"), "{text}");
    assert!(envelopes.is_empty(), "one message only");
    assert_eq!(owner, Some(65532));
}
