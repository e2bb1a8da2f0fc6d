//! The events that stop the relay or reopen its log, and the interrupt
//! that a short-lived tool (`emailrelay-submit`) must clean up after.
//!
//! | event              | Unix                | Windows                              |
//! |--------------------|---------------------|--------------------------------------|
//! | stop (drain)       | SIGTERM, SIGINT     | Ctrl-C, Ctrl-Break, console close, shutdown, the service's stop event |
//! | reopen the log     | SIGHUP              | (none)                               |
//!
//! On Windows the service wrapper asks the relay to stop by setting a named
//! event, `Local\emailrelay-stop-<pid>` ([`stop_event_name`]), which the
//! relay creates at start: it then drains as on SIGTERM instead of being
//! killed outright (2.6.1's wrapper terminates its child).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// What the relay is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopEvent {
    /// Shut down: stop accepting, let sessions finish, exit.
    Stop,
    /// Open the log file again (logrotate moved it away).
    Reopen,
}

/// The name of the event that asks relay process `pid` to stop (Windows;
/// the service wrapper sets it).
pub fn stop_event_name(pid: u32) -> String {
    format!("Local\\emailrelay-stop-{pid}")
}
