//! Unix: execve with a reduced environment, process groups, signals.

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

/// The command that runs `program` with `args` (words, never shell text),
/// stdin and stderr on the null device, stdout piped.
pub fn command(program: &Path, args: &[&OsStr]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("IFS", " \t\n")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// True for the error a freshly written script gives while a process
/// forked elsewhere still holds it open for writing (ETXTBSY): worth a
/// second try in a moment.
pub fn is_busy_program(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ETXTBSY)
}

/// The signal that ended a program, if one did.
pub fn signal_of(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

/// A started program and everything it starts (its process group).
#[derive(Debug)]
pub struct Tree(Option<i32>);

impl Tree {
    /// The tree of the program just spawned as `child`.
    pub fn of(child: &tokio::process::Child) -> Tree {
        Tree(child.id().and_then(|pid| i32::try_from(pid).ok()))
    }

    /// Ends the whole tree now.
    pub fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Leaves what the program left running alone.
    pub fn release(&mut self) {
        self.0 = None;
    }
}
