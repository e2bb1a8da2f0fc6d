//! The system log: syslog on Unix (`/dev/log`, with a facility), the
//! Event Log on Windows (source `emailrelay`, Application log, event ids
//! 1001 information, 1002 warning and 1003 error from the message table
//! built into the programs, verbose and debug lines kept out), as
//! E-MailRelay 2.6.1 writes to each.
//!
//! Sends never block and never fail loudly: a system log that is slow or
//! gone must not stop the mail (the lines still go to the log file and
//! standard error).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// How serious a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Info,
    /// `--verbose` detail: an info line to syslog, kept out of the Event Log.
    Verbose,
    Debug,
}
