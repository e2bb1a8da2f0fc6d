//! Windows: console events (Ctrl-C, Ctrl-Break, the console window closed,
//! the system shutting down) and the named stop event the service wrapper
//! sets. There is no "reopen the log" event.

use std::io;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
use windows_sys::Win32::System::Threading::{
    CreateEventW, SetEvent, WaitForSingleObject, INFINITE,
};

use super::StopEvent;
use crate::platform::files::wide;

/// Nothing to hold: console events go to handlers only once installed,
/// and until then end the process as Windows decides.
pub fn hold_stop_signals() -> io::Result<()> {
    Ok(())
}

/// Nothing to release (see [`hold_stop_signals`]).
pub fn release_stop_signals() -> io::Result<()> {
    Ok(())
}

/// The console events and the named stop event.
pub struct StopEvents {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    shutdown: tokio::signal::windows::CtrlShutdown,
    named: tokio::sync::oneshot::Receiver<()>,
}

impl StopEvents {
    /// Registers the console handlers and creates this process's stop
    /// event (inside the runtime).
    pub fn install() -> io::Result<StopEvents> {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
        let name = wide(&super::stop_event_name(std::process::id()));
        // SAFETY: a null security descriptor and a NUL-terminated name;
        // the handle is checked and owned by the waiting thread below.
        let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, name.as_ptr()) };
        if event.is_null() {
            return Err(io::Error::last_os_error());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let raw = event as usize;
        std::thread::Builder::new()
            .name("stop-event".into())
            .spawn(move || {
                let event = raw as HANDLE;
                // SAFETY: the handle stays open for the life of the process.
                if unsafe { WaitForSingleObject(event, INFINITE) } == WAIT_OBJECT_0 {
                    let _ = tx.send(());
                }
            })?;
        Ok(StopEvents {
            c: ctrl_c()?,
            brk: ctrl_break()?,
            close: ctrl_close()?,
            shutdown: ctrl_shutdown()?,
            named: rx,
        })
    }

    /// The next event: always a stop on Windows.
    pub async fn next(&mut self) -> StopEvent {
        tokio::select! {
            _ = self.c.recv() => {}
            _ = self.brk.recv() => {}
            _ = self.close.recv() => {}
            _ = self.shutdown.recv() => {}
            Ok(()) = &mut self.named => {}
        }
        StopEvent::Stop
    }
}

/// Asks relay process `pid` to stop by setting its stop event; false if it
/// has none (not started yet, or gone).
pub fn request_stop(pid: u32) -> bool {
    use windows_sys::Win32::System::Threading::{OpenEventW, EVENT_MODIFY_STATE};
    let name = wide(&super::stop_event_name(pid));
    // SAFETY: a NUL-terminated name; the handle is closed below.
    let event = unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, name.as_ptr()) };
    if event.is_null() {
        return false;
    }
    // SAFETY: an event handle we opened with EVENT_MODIFY_STATE.
    let set = unsafe { SetEvent(event) } != 0;
    // SAFETY: closed once.
    unsafe { CloseHandle(event) };
    set
}

type Cleanup = Box<dyn FnOnce() + Send>;

static CLEANUP: Mutex<Option<Cleanup>> = Mutex::new(None);

/// Runs `cleanup` on Ctrl-C, Ctrl-Break or the console closing, and then
/// lets the event end the process as it would have.
pub fn on_interrupt(cleanup: impl FnOnce() + Send + 'static) -> io::Result<()> {
    *CLEANUP.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(cleanup));
    // SAFETY: `handler` has the signature the system calls; it stays
    // valid for the life of the process.
    if unsafe { SetConsoleCtrlHandler(Some(handler), 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

unsafe extern "system" fn handler(_event: u32) -> i32 {
    let cleanup = CLEANUP.lock().ok().and_then(|mut c| c.take());
    if let Some(cleanup) = cleanup {
        cleanup();
    }
    // Not handled: the next handler (the system's) ends the process.
    0
}
