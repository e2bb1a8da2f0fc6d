//! The Event Log: a source named after the program's file (`emailrelay`
//! for `emailrelay.exe`), registered at every start as 2.6.1 does, ids
//! 1001-1003 from the message table built into the program
//! (`packaging/windows/messages.mc`, by build.rs).

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, RegisterEventSourceW, ReportEventW, EVENTLOG_ERROR_TYPE,
    EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE,
};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegSetValueExW, HKEY, HKEY_LOCAL_MACHINE, KEY_SET_VALUE,
    REG_DWORD, REG_OPTION_NON_VOLATILE, REG_SZ,
};

use super::Severity;
use crate::platform::files::wide;

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
    /// Opens the Event Log (the facility means nothing on Windows), as
    /// the source named after this program, registering it first.
    pub fn open(_facility: u8) -> SystemLog {
        let exe = std::env::current_exe().unwrap_or_default();
        let source = exe
            .file_stem()
            .map_or_else(|| "emailrelay".into(), |s| s.to_string_lossy().into_owned());
        register(&source, &exe.to_string_lossy());
        let name = wide(&source);
        // SAFETY: the local machine (null) and a NUL-terminated name.
        let handle: HANDLE = unsafe { RegisterEventSourceW(std::ptr::null(), name.as_ptr()) };
        SystemLog {
            source: handle as usize,
        }
    }

    /// Registers the source without reporting to it, as 2.6.1 does at
    /// every start without `--log` (its handle is kept to the end).
    pub fn announce() {
        let _kept = SystemLog::open(0);
    }

    /// Done with the Event Log, at the end of the process: the source is
    /// deregistered, as 2.6.1 does on its way out; later lines are not
    /// reported.
    pub fn close(&mut self) {
        if self.source != 0 {
            // SAFETY: our source handle, deregistered once (then zero).
            unsafe { DeregisterEventSource(self.source as HANDLE) };
            self.source = 0;
        }
    }

    /// Reports one line (`body` is the line after the program name);
    /// verbose and debug lines are not reported, as in 2.6.1.
    pub fn send(&mut self, severity: Severity, program: &str, body: &str) {
        let (kind, id) = match severity {
            Severity::Error => (EVENTLOG_ERROR_TYPE, ERROR_ID),
            Severity::Warning => (EVENTLOG_WARNING_TYPE, WARNING_ID),
            Severity::Info => (EVENTLOG_INFORMATION_TYPE, INFO_ID),
            Severity::Verbose | Severity::Debug => return,
        };
        if self.source == 0 {
            return;
        }
        // E-MailRelay compatibility: the whole line, program name too.
        let text = wide(&format!("{program}: {body}"));
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

/// Registers `source` in the Application log with `exe`'s message table
/// (what Event Viewer needs to show the text); quietly does nothing
/// without the right to (not an administrator).
fn register(source: &str, exe: &str) {
    let key = wide(&format!(
        "SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\{source}"
    ));
    let mut hkey: HKEY = std::ptr::null_mut();
    // SAFETY: a NUL-terminated key name and an out-parameter for the key.
    let rc = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            std::ptr::null(),
            &mut hkey,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return;
    }
    let path = wide(exe);
    let path_bytes = path.len() * 2;
    for name in ["EventMessageFile", "CategoryMessageFile"] {
        let name = wide(name);
        // SAFETY: an open key, a NUL-terminated name, and the value's bytes.
        unsafe {
            RegSetValueExW(
                hkey,
                name.as_ptr(),
                0,
                REG_SZ,
                path.as_ptr().cast(),
                path_bytes as u32,
            )
        };
    }
    for (name, value) in [("CategoryCount", 1u32), ("TypesSupported", 7u32)] {
        let name = wide(name);
        // SAFETY: as above, with a four-byte value.
        unsafe {
            RegSetValueExW(
                hkey,
                name.as_ptr(),
                0,
                REG_DWORD,
                (&value as *const u32).cast(),
                4,
            )
        };
    }
    // SAFETY: closed once.
    unsafe { RegCloseKey(hkey) };
}
