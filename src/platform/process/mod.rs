//! The process itself: running in the background, the account it runs as
//! and its privileges, the open-file limit and the file-creation mask.
//!
//! On Unix, started as root with `--user`, the relay splits into a monitor
//! that keeps root (for the pid file) and a worker that drops it for good
//! (see `run`). On Windows there are no accounts to switch to (2.6.1 has no
//! `--user` there), no fork, and "in the background" is a service's job:
//! [`daemonise`] leaves the process where it is.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
