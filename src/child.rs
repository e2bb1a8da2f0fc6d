//! Running the external programs that filters and address verifiers name:
//! started without a shell and without a PATH search of peer text, with a
//! reduced environment, stdin and stderr on the null device and stdout on
//! a pipe, in a process tree of their own so that a timeout kills
//! everything they started (how, on each system: `platform::child`).
//! Arguments are passed as separate words, so nothing a peer sent can
//! become shell syntax.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::platform::child::{self as platform, Tree};

use tokio::io::{AsyncRead, AsyncReadExt};

/// How much of a program's stdout is kept; the rest is read and dropped so
/// that a program that floods its stdout never blocks on a full pipe.
const KEPT_OUTPUT: usize = 8 * 1024;

/// How long stdout may stay open after the program exits (a child it left
/// behind may hold it): then it is closed.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// A program that ran to its exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    /// The first few kilobytes of stdout.
    pub output: String,
}

/// Why a program has no exit code to go by.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChildError {
    /// It could not be started.
    #[error("cannot run [{path}]: {reason}")]
    Spawn { path: String, reason: String },
    /// It ran past the time limit; its process group was killed.
    #[error("timed out after {0}s")]
    Timeout(u64),
    /// It was killed by a signal.
    #[error("killed by signal {0}")]
    Signal(i32),
    /// Waiting for it failed.
    #[error("wait failed: {0}")]
    Wait(String),
}

/// Runs `path` with `args` to its exit, within `timeout`.
pub async fn run(path: &Path, args: &[&OsStr], timeout: Duration) -> Result<Exit, ChildError> {
    let mut cmd = platform::command(path, args);
    let mut child = spawn(&mut cmd).await.map_err(|e| ChildError::Spawn {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    // Dropped before the program exits (a timeout, or the relay shutting
    // down with the session's task still waiting): the whole tree goes,
    // not only the program, so nothing it started outlives the relay.
    let mut guard = TreeGuard(Tree::of(&child));
    let reader = tokio::spawn(read_capped(child.stdout.take()));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(ChildError::Wait(e.to_string())),
        Err(_) => {
            guard.kill();
            let _ = child.wait().await;
            reader.abort();
            return Err(ChildError::Timeout(timeout.as_secs()));
        }
    };
    // E-MailRelay compatibility: what a program that exited by itself
    // left running in the background is its own business.
    guard.0.release();
    let output = match tokio::time::timeout(OUTPUT_GRACE, reader).await {
        Ok(Ok(output)) => output,
        _ => String::new(),
    };
    match (status.code(), platform::signal_of(&status)) {
        (Some(code), _) => Ok(Exit { code, output }),
        (None, signal) => Err(ChildError::Signal(signal.unwrap_or(0))),
    }
}

/// Starts the program, retrying briefly while it is busy: a script that
/// was just written (or is being replaced) can be held open for writing for
/// a moment by a process forked elsewhere before it execs.
async fn spawn(cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    for attempt in 1..=5 {
        match cmd.spawn() {
            Err(e) if platform::is_busy_program(&e) => {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await
            }
            other => return other,
        }
    }
    cmd.spawn()
}

/// Reads a pipe to its end, keeping the first [`KEPT_OUTPUT`] bytes.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = KEPT_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Kills the program's whole tree when dropped, unless released once the
/// program has exited by itself.
struct TreeGuard(Tree);

impl TreeGuard {
    fn kill(&mut self) {
        self.0.kill();
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

// Unix programs (shell scripts); the Windows dispatch is tested under
// Wine by tests/integration/windows.rs.
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str) -> (std::path::PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        crate::platform::files::make_executable(&path).unwrap();
        (path, dir)
    }

    #[tokio::test]
    async fn arguments_are_words_and_the_environment_is_reduced() {
        let (path, _dir) = sh("echo \"[$1] [$2]\"; env | sort; exit 7");
        let exit = run(
            &path,
            &[OsStr::new("a b;$(id)"), OsStr::new("")],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(exit.code, 7);
        let lines: Vec<&str> = exit.output.lines().collect();
        assert_eq!(lines[0], "[a b;$(id)] []");
        // PATH and IFS, and what the shell sets itself (PWD).
        assert!(
            lines.contains(&"PATH=/usr/local/bin:/usr/bin:/bin"),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("HOME=")), "{lines:?}");
    }

    #[tokio::test]
    async fn a_hanging_program_and_its_children_are_killed() {
        let (path, dir) = sh("sleep 30 & echo $! > \"$1\"; sleep 30");
        let pidfile = dir.path().join("child.pid");
        let result = run(&path, &[pidfile.as_os_str()], Duration::from_millis(500)).await;
        assert_eq!(result, Err(ChildError::Timeout(0)));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child went with the group (reaped by init or a zombie).
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty() || stat.contains(") Z ")
        });
        assert!(gone, "child {pid} still running");
    }

    /// Waits (bounded) for the pid in `pidfile` and then for it to be gone.
    fn gone_after_start(pidfile: &Path) -> bool {
        let mut pid = None;
        for _ in 0..250 {
            pid = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            if pid.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = pid.expect("the program wrote its child's pid");
        (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty() || stat.contains(") Z ")
        })
    }

    #[tokio::test]
    async fn abandoning_the_wait_kills_the_group_too() {
        let (path, dir) = sh("sleep 30 & echo $! > \"$1\"; sleep 30");
        let pidfile = dir.path().join("child.pid");
        let running = tokio::spawn({
            let (path, pidfile) = (path.clone(), pidfile.clone());
            async move { run(&path, &[pidfile.as_os_str()], Duration::from_secs(60)).await }
        });
        let started = pidfile.clone();
        let wait = tokio::task::spawn_blocking(move || {
            (0..250).any(|_| {
                std::thread::sleep(Duration::from_millis(20));
                started.exists()
            })
        });
        assert!(wait.await.unwrap());
        running.abort();
        let _ = running.await;
        assert!(
            tokio::task::spawn_blocking(move || gone_after_start(&pidfile))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn what_a_program_leaves_behind_when_it_exits_is_left_alone() {
        let (path, dir) = sh("sleep 2 & echo $! > \"$1\"; exit 0");
        let pidfile = dir.path().join("child.pid");
        // The background sleep holds stdout: the grace period ends the read.
        let exit = run(&path, &[pidfile.as_os_str()], Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(exit.code, 0);
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.contains(") S ") || stat.contains(") R "), "{stat}");
    }

    #[tokio::test]
    async fn a_flood_on_stdout_is_capped_and_does_not_block() {
        let (path, _dir) = sh("head -c 10000000 /dev/zero | tr '\\0' x; exit 0");
        let exit = run(&path, &[], Duration::from_secs(30)).await.unwrap();
        assert_eq!((exit.code, exit.output.len()), (0, KEPT_OUTPUT));
    }
}
