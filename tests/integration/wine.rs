//! Running our Windows programs under Wine from the Linux test binary: a
//! prefix per test (copied from one made once by scripts/wine/prefix, with
//! its own persistent wineserver, ended with `wineserver -k` when the
//! guard drops), Windows paths for Linux ones, and the Windows build's
//! programs (built by scripts/test; a missing one fails the test).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::run;

/// The build's target directory (`$CARGO_TARGET_DIR`, else `target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Where the Windows build's programs are: `EMAILRELAY_WINDOWS_BIN`, else
/// the target directory's x86_64-pc-windows-gnu/release.
pub fn windows_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("EMAILRELAY_WINDOWS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("x86_64-pc-windows-gnu/release"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the Windows programs first (scripts/test does: cargo build \
         --release --target x86_64-pc-windows-gnu --features vendored-openssl --bins)",
        path.display()
    );
    path
}

/// A Linux path as Windows programs under Wine see it (`Z:\...`).
pub fn winpath(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// The prefix every test's copy starts from: made once (kept in the
/// target directory, so later runs only check it), its server ended.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = target_dir().join("wine-template");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wine/prefix");
        let (code, out, err) = run(Command::new(&script).arg(&dir), Duration::from_secs(300));
        assert_eq!(code, 0, "scripts/wine/prefix failed: {out}{err}");
        // The template's own server is not needed once it is written out.
        kill_server(&dir);
        dir
    })
}

fn kill_server(prefix: &Path) {
    let _ = run(
        Command::new("wineserver")
            .arg("-k")
            .env("WINEPREFIX", prefix),
        Duration::from_secs(30),
    );
    let _ = run(
        Command::new("wineserver")
            .arg("-w")
            .env("WINEPREFIX", prefix),
        Duration::from_secs(30),
    );
}

/// A Wine prefix of the test's own, with a persistent wineserver.
pub struct Wine {
    prefix: tempfile::TempDir,
}

impl Wine {
    /// A fresh copy of the template prefix, its wineserver started.
    pub fn new() -> Wine {
        let prefix = tempfile::tempdir().expect("a temporary directory");
        let (code, out, err) = run(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", template().display()))
                .arg(prefix.path()),
            Duration::from_secs(120),
        );
        assert_eq!(code, 0, "copying the Wine prefix: {out}{err}");
        let wine = Wine { prefix };
        let (code, _, err) = run(
            Command::new("wineserver")
                .arg("-p")
                .env("WINEPREFIX", wine.prefix.path()),
            Duration::from_secs(30),
        );
        assert!(code == 0 || code == 2, "wineserver -p: {code} {err}");
        // The first wine command starts Wine's own services, which inherit
        // its standard streams: started here with none, so that later
        // commands' pipes close when those commands end.
        let status = wine
            .command(Path::new("cmd.exe"))
            .args(["/c", "exit", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("wine runs");
        assert!(status.success(), "wine cmd.exe: {status}");
        wine
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
            .env("WINEPREFIX", self.prefix.path())
            .env("WINEDEBUG", channels)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        cmd
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        kill_server(self.prefix.path());
    }
}
