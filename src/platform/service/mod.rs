//! The Windows service manager, for `emailrelay-service` (the policy,
//! which files it reads and how it stops the relay, is `crate::service`):
//!
//! - [`install`] and [`remove`]: create (auto-start, LocalSystem, with a
//!   description) and delete a service whose program is the wrapper;
//! - [`dispatch`]: hand the process to the service manager, which calls
//!   back with a [`Session`]: the service's name, its status, the stop
//!   and shutdown controls, and the relay process it runs.
//!
//! Unix has none of this: every call answers [`ScmError::Unavailable`]
//! (systemd runs the relay there, see packaging/systemd), and a
//! [`Session`] can never exist.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

use std::time::Duration;

/// What the service tells the service manager about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Reading its files and starting the relay.
    StartPending,
    /// The relay is running.
    Running,
    /// Stopping: `checkpoint` goes up while the relay drains, and the
    /// manager may expect the next report within `wait_hint`.
    StopPending {
        checkpoint: u32,
        wait_hint: Duration,
    },
    /// Stopped, with how it ended.
    Stopped(Exit),
}

/// How the service ended, as the service manager records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Stopped as asked.
    Ok,
    /// A system error code (`WIN32_EXIT_CODE`).
    Win32(u32),
    /// ERROR_SERVICE_SPECIFIC_ERROR with this code (`SERVICE_EXIT_CODE`).
    Specific(u32),
}

/// A request from the service manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// `net stop`, `sc stop`, the Services console.
    Stop,
    /// The system is shutting down.
    Shutdown,
}

/// What to register with [`install`].
#[derive(Clone, Debug)]
pub struct Install<'a> {
    pub name: &'a str,
    pub display_name: &'a str,
    /// The wrapper's own path, unquoted.
    pub program: &'a str,
    pub description: &'a str,
}

/// A service-manager call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScmError {
    /// The call `what` failed with system error `code`.
    Call { what: &'static str, code: u32 },
    /// The dispatcher could not connect to the service manager (system
    /// error `code`): the program was not started by it.
    Dispatcher { code: u32 },
    /// There is no Windows service manager on this system.
    Unavailable,
}

/// The wrapper's own path (GetModuleFileName on Windows).
pub fn wrapper_exe() -> String {
    std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}
