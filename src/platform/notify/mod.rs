//! Telling the service manager how startup went: systemd's `NOTIFY_SOCKET`
//! on Unix. On Windows the service wrapper watches the relay process
//! itself, so there is nothing to tell.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
