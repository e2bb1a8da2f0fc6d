//! The scratch container image (packaging/container, issue 28), built
//! with Debian's podman from the release binary and its libraries,
//! nothing pulled, and run with `podman run`. Needs root: rootful podman,
//! and (in some sandboxes) a cgroup mount, see `prepare_crun`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
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

/// crun refuses to start a container on a host that mounts the cgroup v1
/// controllers beside a cgroup2 `/sys/fs/cgroup/unified` that still owns
/// a controller ("cgroups in hybrid mode"; this sandbox leaves hugetlb
/// there). A controller lives in one hierarchy only, so mounting it as v1
/// takes it off the v2 list: done only while the list is non-empty, which
/// makes it idempotent (a second run finds the list empty). Hosts with a
/// pure cgroup2 or pure v1 tree have no such file or an empty one and are
/// left alone. The container then runs with `--cgroups=disabled`.
fn prepare_crun() {
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    let listed = std::fs::read_to_string(unified).unwrap_or_default();
    for controller in listed.split_whitespace() {
        let dir = format!("/sys/fs/cgroup/{controller}");
        std::fs::create_dir_all(&dir).unwrap();
        let (code, out, err) = run(
            Command::new("mount").args(["-t", "cgroup", "-o", controller, "cgroup", &dir]),
            Duration::from_secs(30),
        );
        assert_eq!(code, 0, "mount {controller} on {dir}: {out}{err}");
    }
    let left = std::fs::read_to_string(unified).unwrap_or_default();
    assert_eq!(left.trim(), "", "cgroup2 controllers left in {unified:?}");
}

/// `--ulimit` options: podman's defaults (nofile 1048576) exceed the hard
/// limits here and crun may not raise them; even setting nproc to this
/// process's own limit is refused here, so both are lowered to at most
/// 1024 (plenty for one test relay).
fn ulimits() -> Vec<String> {
    use nix::sys::resource::{getrlimit, Resource};
    [
        ("nofile", Resource::RLIMIT_NOFILE),
        ("nproc", Resource::RLIMIT_NPROC),
    ]
    .iter()
    .flat_map(|&(name, resource)| {
        let (soft, _) = getrlimit(resource).unwrap();
        let limit = soft.min(1024);
        ["--ulimit".to_string(), format!("{name}={limit}:{limit}")]
    })
    .collect()
}

/// Removes what the test made, pass or fail.
struct Cleanup {
    container: String,
    volume: String,
    tag: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = run(Command::new("podman").args(args), Duration::from_secs(60));
        };
        quiet(&["rm", "-f", "-t", "0", &self.container]);
        quiet(&["volume", "rm", "-f", &self.volume]);
        quiet(&["rmi", "-f", &self.tag]);
    }
}

/// Builds the image and checks its user, entrypoint and volume; runs it
/// detached with `podman run` (host network, so a loopback port; a named
/// volume for the spool); swaks sends a message; a second session waits
/// idle while `podman stop` sends SIGTERM: the relay drains (the idle
/// session gets 421) and exits 0, its log on standard error says so, and
/// the message is on the volume, owned by the image's user.
pub fn the_image_builds_and_runs_under_podman() {
    let id = std::process::id();
    let cleanup = Cleanup {
        container: format!("emailrelay-test-{id}"),
        volume: format!("emailrelay-test-spool-{id}"),
        tag: format!("localhost/emailrelay-test:{id}"),
    };
    let tag = cleanup.tag.as_str();
    let (code, out, err) = run(
        Command::new("packaging/container/build").args([RELAY, tag]),
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{out}{err}");
    let inspect = |format: &str| podman(&["image", "inspect", "--format", format, tag]);
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    let entry: Vec<String> = serde_json::from_str(&inspect("{{json .Config.Entrypoint}}")).unwrap();
    assert_eq!(entry[0], "/usr/sbin/emailrelay");
    assert!(inspect("{{json .Config.Volumes}}").contains("/var/spool/emailrelay"));
    assert_eq!(inspect("{{.Config.StopSignal}}"), "SIGTERM");

    prepare_crun();
    podman(&["volume", "create", &cleanup.volume]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_text = port.to_string();
    let spool = format!("{}:/var/spool/emailrelay", cleanup.volume);
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &cleanup.container,
        "--cgroups=disabled",
    ];
    let limits = ulimits();
    args.extend(limits.iter().map(String::as_str));
    args.extend(["--network", "host", "-v", &spool, tag]);
    args.extend(["--port", &port_text, "--interface", "127.0.0.1"]);
    args.extend(["--drain-delay", "1"]);
    podman(&args);
    let logs = || {
        let (code, out, err) = run(
            Command::new("podman").args(["logs", &cleanup.container]),
            Duration::from_secs(60),
        );
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(out, "", "nothing on standard output");
        err
    };
    assert!(
        wait_until(Duration::from_secs(20), || greets(port)),
        "{}",
        logs()
    );

    let (code, out, err) = run(
        Command::new("swaks").args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--from",
            "alice@example.com",
            "--to",
            "bob@example.org",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");

    // An idle session across the stop.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(idle.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line:?}");
    idle.write_all(b"HELO client.example.com\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("250 "), "{line:?}");

    let stopped = Instant::now();
    assert_eq!(
        podman(&["stop", "-t", "20", &cleanup.container]),
        cleanup.container
    );
    let took = stopped.elapsed();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.ends_with(" service shutting down\r\n"), "{line:?}");
    assert!(line.starts_with("421 "), "{line:?}");
    let state = podman(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        &cleanup.container,
    ]);
    let text = logs();
    assert_eq!(state, "exited 0", "{text}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("emailrelay: info: smtp server on 127.0.0.1:{port}"),
        "{text}"
    );
    let draining = lines
        .iter()
        .position(|l| {
            *l == "emailrelay: info: draining: health checks fail for 1s before the listeners close"
        })
        .unwrap_or_else(|| panic!("{text}"));
    // Both sessions closed cleanly, the idle one after the drain began.
    let closed: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l.starts_with(
                "emailrelay: info: smtp connection closed: smtp protocol done: 127.0.0.1:",
            )
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(closed.len(), 2, "{text}");
    assert!(closed[0] < draining && closed[1] > draining, "{text}");
    assert!(
        !text.contains("warning") && !text.contains("error"),
        "{text}"
    );

    // The message on the volume, the image user's.
    let mountpoint = podman(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &cleanup.volume,
    ]);
    let mut names: Vec<String> = std::fs::read_dir(&mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with(".content"), "{names:?}");
    assert_eq!(
        names[1],
        names[0].replace(".content", ".envelope"),
        "{names:?}"
    );
    for name in &names {
        let meta = std::fs::metadata(Path::new(&mountpoint).join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65532, 65532), "{name}");
    }
    let envelope = std::fs::read_to_string(Path::new(&mountpoint).join(&names[1])).unwrap();
    assert!(
        envelope.contains("X-MailRelay-From: alice@example.com\r\n"),
        "{envelope}"
    );
    assert!(
        envelope.contains("X-MailRelay-To-Remote: bob@example.org\r\n"),
        "{envelope}"
    );
}
