//! How a filter or address-verifier program is started and ended:
//!
//! - Unix: executed directly (no shell), with `PATH` and `IFS` only, in a
//!   process group of its own; ended with its whole group.
//! - Windows, as E-MailRelay 2.6.1 dispatches: `.exe` and `.bat`/`.cmd`
//!   directly, `.ps1` through `powershell.exe -NoLogo -File`, anything else
//!   (`.js`, `.vbs`, ...) through `cscript.exe //nologo //B`; with the few
//!   variables a script host needs (`SystemRoot`, `WINDIR`, `PATHEXT`,
//!   `PATH`, `TEMP`, `TMP`, `ComSpec`), no window; in a Job Object, so
//!   that a timed-out program is ended with everything it started.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
