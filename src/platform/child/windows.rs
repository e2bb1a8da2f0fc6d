//! Windows: 2.6.1's dispatch by extension, a Job Object per program.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, TerminateJobObject,
};
use windows_sys::Win32::System::Threading::CREATE_NO_WINDOW;

/// The system directory (`%SystemRoot%`), `C:\Windows` if unset.
fn system_root() -> PathBuf {
    std::env::var_os("SystemRoot")
        .or_else(|| std::env::var_os("WINDIR"))
        .map_or_else(|| PathBuf::from("C:\\Windows"), PathBuf::from)
}

/// How 2.6.1 starts a program of this name: directly, or through which
/// host with which leading arguments.
fn host_for(program: &Path) -> Option<(PathBuf, &'static [&'static str])> {
    let extension = program
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let system32 = system_root().join("system32");
    match extension.as_deref() {
        Some("exe") | Some("bat") | Some("cmd") | Some("com") => None,
        Some("ps1") => Some((
            system32.join("WindowsPowerShell\\v1.0\\powershell.exe"),
            &["-NoLogo", "-File"],
        )),
        _ => Some((system32.join("cscript.exe"), &["//nologo", "//B"])),
    }
}

/// The command that runs `program` with `args`, dispatched by its
/// extension as 2.6.1 does, with no console window, stdin and stderr on
/// the null device, stdout piped.
pub fn command(program: &Path, args: &[&OsStr]) -> tokio::process::Command {
    let mut cmd = match host_for(program) {
        None => tokio::process::Command::new(program),
        Some((host, leading)) => {
            let mut cmd = tokio::process::Command::new(host);
            cmd.args(leading).arg(program);
            cmd
        }
    };
    let root = system_root();
    let system32 = root.join("system32");
    let mut path = std::ffi::OsString::from(&system32);
    path.push(";");
    path.push(&root);
    path.push(";");
    path.push(system32.join("Wbem"));
    cmd.args(args).env_clear();
    for (key, value) in [
        ("SystemRoot", root.clone().into_os_string()),
        ("WINDIR", root.into_os_string()),
        ("PATH", path),
        (
            "PATHEXT",
            ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH".into(),
        ),
        ("ComSpec", system32.join("cmd.exe").into_os_string()),
    ] {
        cmd.env(key, value);
    }
    for key in ["TEMP", "TMP", "SystemDrive", "ProgramData"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .creation_flags(CREATE_NO_WINDOW)
        .kill_on_drop(true);
    cmd
}

/// Never: Windows has no ETXTBSY.
pub fn is_busy_program(_e: &io::Error) -> bool {
    false
}

/// Never: Windows programs end with an exit code only.
pub fn signal_of(_status: &ExitStatus) -> Option<i32> {
    None
}

/// A started program and everything it starts: a Job Object.
#[derive(Debug)]
pub struct Tree(Option<usize>);

impl Tree {
    /// The tree of the program just spawned as `child`. (A process the
    /// program starts before it is put in the job escapes it: a moment's
    /// race that Windows leaves no cheap way to close.)
    pub fn of(child: &tokio::process::Child) -> Tree {
        let Some(process) = child.raw_handle() else {
            return Tree(None);
        };
        // SAFETY: an unnamed job with default security; checked for null.
        let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if job.is_null() {
            return Tree(None);
        }
        // SAFETY: both handles are valid; the job is ours.
        if unsafe { AssignProcessToJobObject(job, process as HANDLE) } == 0 {
            // SAFETY: closed once.
            unsafe { CloseHandle(job) };
            return Tree(None);
        }
        Tree(Some(job as usize))
    }

    /// Ends the whole tree now.
    pub fn kill(&mut self) {
        if let Some(job) = self.0.take() {
            // SAFETY: our job handle, closed once after the terminate.
            unsafe {
                TerminateJobObject(job as HANDLE, 1);
                CloseHandle(job as HANDLE);
            }
        }
    }

    /// Leaves what the program left running alone (the job is closed
    /// without ending anything in it).
    pub fn release(&mut self) {
        if let Some(job) = self.0.take() {
            // SAFETY: closed once.
            unsafe { CloseHandle(job as HANDLE) };
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.release();
    }
}
