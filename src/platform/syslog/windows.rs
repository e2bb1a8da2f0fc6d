//! The Event Log: source `emailrelay`, ids 1001-1003 from the message
//! table in the program (`packaging/windows/messages.mc`).

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::EventLog::{
    RegisterEventSourceW, ReportEventW, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE,
    EVENTLOG_WARNING_TYPE,
};

use super::Severity;
use crate::platform::files::wide;

/// The event source name, as 2.6.1 registers it.
pub const SOURCE: &str = "emailrelay";

/// The message-table ids (severity bits included) that take the text as
/// their only insert: shown by Event Viewer as event ids 1001, 1002, 1003.
const INFO_ID: u32 = 0x4000_03E9;
const WARNING_ID: u32 = 0x8000_03EA;
const ERROR_ID: u32 = 0xC000_03EB;

/// A registered event source.
#[derive(Debug)]
pub struct SystemLog {
    source: usize,
}

impl SystemLog {
    /// Opens the Event Log (the facility means nothing on Windows).
    pub fn open(_facility: u8) -> SystemLog {
        let name = wide(SOURCE);
        // SAFETY: the local machine (null) and a NUL-terminated name.
        let handle: HANDLE = unsafe { RegisterEventSourceW(std::ptr::null(), name.as_ptr()) };
        SystemLog {
            source: handle as usize,
        }
    }

    /// Reports one line (`body` is the line after the program name);
    /// verbose and debug lines are not reported, as in 2.6.1.
    pub fn send(&mut self, severity: Severity, _program: &str, body: &str) {
        let (kind, id) = match severity {
            Severity::Error => (EVENTLOG_ERROR_TYPE, ERROR_ID),
            Severity::Warning => (EVENTLOG_WARNING_TYPE, WARNING_ID),
            Severity::Info => (EVENTLOG_INFORMATION_TYPE, INFO_ID),
            Severity::Verbose | Severity::Debug => return,
        };
        if self.source == 0 {
            return;
        }
        let text = wide(body);
        let strings = [text.as_ptr()];
        // SAFETY: our source handle, one NUL-terminated insert string, no data.
        unsafe {
            ReportEventW(
                self.source as HANDLE,
                kind,
                0,
                id,
                std::ptr::null_mut(),
                1,
                0,
                strings.as_ptr(),
                std::ptr::null(),
            );
        }
    }
}
