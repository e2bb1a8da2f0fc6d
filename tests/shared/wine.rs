//! Running Windows programs under Wine from a Linux test binary, shared by
//! the `integration` and `golden` targets: a prefix per test, copied from
//! one template made once by scripts/wine/prefix (the large, unchanging
//! files hard-linked, the registry and the rest copied), with its own
//! persistent wineserver, ended with `wineserver -k` when the guard drops;
//! Windows paths for Linux ones; and where the Windows build's programs are
//! (built by scripts/test; a missing one is an error, never a skip).
//!
//! Never pipe a wine command's output while Wine's own services may start
//! (the first command of a session starts them, and they inherit its
//! standard streams): [`Wine::new`] starts them with none.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The build's target directory (`$CARGO_TARGET_DIR`, else `target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The directory of the Windows build's programs: `EMAILRELAY_WINDOWS_BIN`,
/// else the target directory's x86_64-pc-windows-gnu/release.
pub fn windows_bin_dir() -> PathBuf {
    std::env::var_os("EMAILRELAY_WINDOWS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("x86_64-pc-windows-gnu/release"))
}

/// How to get the Windows programs, for messages.
pub const BUILD_HINT: &str = "build the Windows programs first (scripts/test does: cargo build \
     --release --target x86_64-pc-windows-gnu --features vendored-openssl --bins)";

/// One of the Windows build's programs (`emailrelay.exe`...); panics,
/// failing the test, when it is missing.
pub fn windows_bin(name: &str) -> PathBuf {
    let path = windows_bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: {BUILD_HINT}",
        path.display()
    );
    path
}

/// A Linux path as Windows programs under Wine see it (`Z:\...`).
pub fn winpath(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// Runs a command to completion with no standard streams (a Wine helper
/// it starts cannot hold a pipe of ours); its output goes to a file, read
/// back for messages. Ends it after `limit`.
pub fn run_quiet(cmd: &mut Command, limit: Duration) -> Result<(i32, String), String> {
    let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let out = log.reopen().map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    let end = Instant::now() + limit;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code().unwrap_or(-1),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{:?} did not finish within {limit:?}",
                    cmd.get_program()
                ));
            }
        }
    };
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    Ok((code, text))
}

/// The prefix every test's copy starts from: made once per process (kept
/// in the target directory, so later runs only check it), its server
/// ended. A lock file keeps two test processes from making it at once.
pub fn template() -> Result<&'static Path, String> {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = target_dir().join("wine-template");
            std::fs::create_dir_all(target_dir()).map_err(|e| e.to_string())?;
            let _lock = lock(&target_dir().join("wine-template.lock"), true)?;
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wine/prefix");
            let (code, out) = run_quiet(Command::new(&script).arg(&dir), Duration::from_secs(300))?;
            if code != 0 {
                return Err(format!("scripts/wine/prefix {}: {out}", dir.display()));
            }
            // The template's own server is not needed once it is written out.
            kill_server(&dir);
            Ok(dir)
        })
        .as_ref()
        .map(|p| p.as_path())
        .map_err(|e| e.clone())
}

/// An advisory lock on `path` (exclusive or shared), held while the value lives.
fn lock(path: &Path, exclusive: bool) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let arg = if exclusive {
        nix::fcntl::FlockArg::LockExclusive
    } else {
        nix::fcntl::FlockArg::LockShared
    };
    nix::fcntl::Flock::lock(file, arg).map_err(|(_, e)| format!("{}: {e}", path.display()))
}

fn kill_server(prefix: &Path) {
    for flag in ["-k", "-w"] {
        let _ = run_quiet(
            Command::new("wineserver")
                .arg(flag)
                .env("WINEPREFIX", prefix),
            Duration::from_secs(30),
        );
    }
}

/// Files that Wine reads and never writes (programs, libraries, code
/// pages): hard-linked from the template instead of copied, which makes a
/// copy of the 700 MB prefix take milliseconds.
fn shared_file(name: &str) -> bool {
    const EXTENSIONS: [&str; 14] = [
        "dll", "exe", "drv", "sys", "nls", "ocx", "acm", "cpl", "tlb", "ax", "ds", "msstyles",
        "com", "mui",
    ];
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// Copies the prefix `from` to the new directory `to`: directories and
/// symbolic links made afresh, [`shared_file`]s hard-linked (copied where
/// that fails), everything else copied.
fn copy_prefix(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    std::fs::create_dir(to)?;
    std::fs::set_permissions(to, meta.permissions())?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_prefix(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(shared_file(&name) && std::fs::hard_link(&src, &dst).is_ok()) {
                std::fs::copy(&src, &dst)?;
            }
        }
        // Sockets and the like (none in a prefix at rest) are left out.
    }
    Ok(())
}

/// A Wine prefix of the test's own, with a persistent wineserver.
pub struct Wine {
    root: tempfile::TempDir,
    prefix: PathBuf,
    /// The X display of the session (none unless given to [`Wine::with_display`]).
    display: Option<std::ffi::OsString>,
}

impl Wine {
    /// A fresh copy of the template prefix, its wineserver started and
    /// Wine's own services running; panics (failing the test) if Wine
    /// cannot.
    pub fn new() -> Wine {
        Wine::try_new().unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Wine::new`], with an error instead of a panic.
    pub fn try_new() -> Result<Wine, String> {
        Wine::with_display(None)
    }

    /// As [`Wine::try_new`], the session on X display `display` (2.6.1's
    /// GUI build cannot start without one; Wine's services, which start
    /// it as a service, keep the display the session started with).
    pub fn with_display(display: Option<std::ffi::OsString>) -> Result<Wine, String> {
        let template = template()?;
        // Beside the template, so that hard links work (one file system).
        let copies = template.with_file_name("wine-copies");
        std::fs::create_dir_all(&copies).map_err(|e| e.to_string())?;
        let root = tempfile::Builder::new()
            .prefix("wine-")
            .tempdir_in(&copies)
            .map_err(|e| format!("{}: {e}", copies.display()))?;
        let prefix = root.path().join("prefix");
        {
            let _lock = lock(&template.with_file_name("wine-template.lock"), false)?;
            copy_prefix(template, &prefix)
                .map_err(|e| format!("copying the Wine prefix {}: {e}", template.display()))?;
        }
        let wine = Wine {
            root,
            prefix,
            display,
        };
        let (code, out) = run_quiet(
            Command::new("wineserver")
                .arg("-p")
                .env("WINEPREFIX", &wine.prefix),
            Duration::from_secs(30),
        )?;
        if code != 0 && code != 2 {
            return Err(format!("wineserver -p: {code} {out}"));
        }
        // The first wine command starts Wine's own services, which inherit
        // its standard streams: started here with none, so that later
        // commands' pipes close when those commands end.
        // Under load Wine's first start now and then fails ("Application
        // could not be started": its services were not up in time); a
        // second start finds them. At most three tries, each bounded.
        let mut tries = Vec::new();
        for _ in 0..3 {
            let (code, out) = run_quiet(
                wine.command(Path::new("cmd.exe")).args(["/c", "exit", "0"]),
                Duration::from_secs(120),
            )?;
            if code == 0 {
                return Ok(wine);
            }
            tries.push(format!("{code} {out}"));
            std::thread::sleep(Duration::from_secs(1));
        }
        Err(format!("wine cmd.exe /c exit 0: {}", tries.join("; ")))
    }

    /// The session's X display, if it has one.
    pub fn display(&self) -> Option<&std::ffi::OsStr> {
        self.display.as_deref()
    }

    /// The prefix (`WINEPREFIX`).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// A directory of the test's own beside the prefix (a `HOME`).
    pub fn home(&self) -> &Path {
        self.root.path()
    }

    /// A `C:\...` path of the prefix as a Linux path.
    pub fn unix_path(&self, wpath: &str) -> PathBuf {
        let rest = wpath
            .get(2..)
            .unwrap_or("")
            .trim_start_matches('\\')
            .replace('\\', "/");
        assert!(
            wpath.len() >= 2 && wpath[..2].eq_ignore_ascii_case("c:"),
            "not a C: path: {wpath}"
        );
        self.prefix.join("drive_c").join(rest)
    }

    /// `wine <program>` in this prefix, quiet unless `debug` channels are
    /// added with [`Wine::debug_command`].
    pub fn command(&self, program: &Path) -> Command {
        self.debug_command(program, "-all")
    }

    /// As [`Wine::command`], with `WINEDEBUG` set to `channels`.
    pub fn debug_command(&self, program: &Path, channels: &str) -> Command {
        let mut cmd = Command::new("wine");
        cmd.arg(program)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", channels)
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        if let Some(display) = &self.display {
            cmd.env("DISPLAY", display);
        }
        cmd
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        kill_server(&self.prefix);
    }
}
