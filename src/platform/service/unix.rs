//! Unix: no Windows service manager; systemd runs the relay instead
//! (packaging/systemd).

use std::io;
use std::time::Duration;

use super::{Control, Install, ScmError, Status};

/// False: there is no Windows service manager here.
pub fn available() -> bool {
    false
}

/// Fails: see [`available`].
pub fn install(_install: &Install<'_>) -> Result<(), ScmError> {
    Err(ScmError::Unavailable)
}

/// Fails: see [`available`].
pub fn remove(_name: &str) -> Result<(), ScmError> {
    Err(ScmError::Unavailable)
}

/// Fails: see [`available`].
pub fn dispatch(_main: fn(Session)) -> Result<(), ScmError> {
    Err(ScmError::Unavailable)
}

/// Batch files are text in the OEM code page on Windows; UTF-8 here.
pub fn decode_oem(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// No registry: no diagnostic log.
pub fn diagnostic_log_path(_program_stem: &str) -> Option<String> {
    None
}

/// A running service: never exists on Unix (nothing makes one).
#[derive(Debug)]
pub struct Session {
    // Boxed so that code holding a session is not itself unreachable.
    never: Box<Never>,
}

#[derive(Debug)]
enum Never {}

impl Session {
    pub fn name(&self) -> &str {
        match *self.never {}
    }

    pub fn set_status(&mut self, _status: Status) {
        match *self.never {}
    }

    pub fn next_control(&mut self, _wait: Duration) -> Option<Control> {
        match *self.never {}
    }

    pub fn elapsed(&self) -> Duration {
        match *self.never {}
    }

    pub fn spawn(&mut self, _program: &str, _args: &str) -> io::Result<u32> {
        match *self.never {}
    }

    pub fn child_exit(&mut self) -> Option<u32> {
        match *self.never {}
    }

    pub fn request_stop(&mut self) -> bool {
        match *self.never {}
    }

    pub fn terminate(&mut self) {
        match *self.never {}
    }
}
