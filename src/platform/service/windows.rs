//! Windows: the service manager through the `windows-service` crate
//! (CreateService, DeleteService, the dispatcher, the control handler,
//! SetServiceStatus), the relay as a child process with no console
//! window, and the stop request through the relay's named stop event.

use std::ffi::OsString;
use std::io;
use std::os::windows::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use windows_service::service::{
    Service, ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl,
    ServiceExitCode, ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};
use windows_sys::Win32::System::Threading::CREATE_NO_WINDOW;

use super::{Control, Exit, Install, ScmError, Status};
use crate::platform::files::wide;

const ERROR_INVALID_NAME: u32 = 123;
const ERROR_INVALID_PARAMETER: u32 = 87;
const ERROR_SERVICE_EXISTS: u32 = 1073;

/// The wait hint of every report but a stop in progress: 2.6.1's, which
/// `sc query` shows.
const WAIT_HINT: Duration = Duration::from_millis(8000);

/// How long [`install`] and [`remove`] wait for a running service of that
/// name to stop (it drains its relay first: see `crate::service`).
const STOP_WAIT: Duration = Duration::from_secs(30);

/// True: the service manager is here.
pub fn available() -> bool {
    true
}

/// Creates the service: its own process, started automatically, as
/// LocalSystem, running the wrapper without arguments. A service of that
/// name already installed is stopped, removed and created again (as
/// 2.6.1 does, so installing twice succeeds).
pub fn install(install: &Install<'_>) -> Result<(), ScmError> {
    if install.name.is_empty() || install.display_name.is_empty() {
        return Err(ScmError::Call {
            what: "invalid zero-length service name",
            code: ERROR_INVALID_NAME,
        });
    }
    let manager = manager()?;
    let info = ServiceInfo {
        name: install.name.into(),
        display_name: install.display_name.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: install.program.into(),
        launch_arguments: Vec::new(),
        dependencies: Vec::new(),
        account_name: None,
        account_password: None,
    };
    let service = match manager.create_service(&info, ServiceAccess::ALL_ACCESS) {
        Ok(service) => service,
        Err(e) if code_of(&e) == ERROR_SERVICE_EXISTS => {
            let old = open(&manager, install.name)?;
            stop_and_wait(&old);
            let _ = old.delete();
            drop(old);
            manager
                .create_service(&info, ServiceAccess::ALL_ACCESS)
                .map_err(call("cannot create service"))?
        }
        Err(e) => return Err(call("cannot create service")(e)),
    };
    // E-MailRelay compatibility: a description that cannot be set is no
    // reason to fail the installation.
    let _ = service.set_description(install.description);
    Ok(())
}

/// Stops the service if it runs (waiting for its relay to drain) and
/// deletes it.
pub fn remove(name: &str) -> Result<(), ScmError> {
    let manager = manager()?;
    let service = open(&manager, name)?;
    stop_and_wait(&service);
    service.delete().map_err(call("cannot remove the service"))
}

/// Hands this thread to the service manager until the service has
/// stopped; `main` runs the service. Fails at once when the program was
/// not started by the service manager.
pub fn dispatch(main: fn(Session)) -> Result<(), ScmError> {
    let _ = MAIN.set(main);
    service_dispatcher::start("", ffi_service_main)
        .map_err(|e| ScmError::Dispatcher { code: code_of(&e) })
}

/// Batch files are text in the OEM code page (as `cmd.exe` reads them).
pub fn decode_oem(bytes: &[u8]) -> String {
    use windows_sys::Win32::Globalization::{MultiByteToWideChar, CP_OEMCP};
    let Ok(len) = i32::try_from(bytes.len()) else {
        return String::from_utf8_lossy(bytes).into_owned();
    };
    if len == 0 {
        return String::new();
    }
    // SAFETY: `bytes` is valid for `len` bytes; a null output asks for
    // the length.
    let need =
        unsafe { MultiByteToWideChar(CP_OEMCP, 0, bytes.as_ptr(), len, std::ptr::null_mut(), 0) };
    if need <= 0 {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut text = vec![0u16; need as usize];
    // SAFETY: as above, into a buffer of `need` UTF-16 units.
    let got =
        unsafe { MultiByteToWideChar(CP_OEMCP, 0, bytes.as_ptr(), len, text.as_mut_ptr(), need) };
    text.truncate(got.max(0) as usize);
    String::from_utf16_lossy(&text)
}

/// The diagnostic log file named by the registry value
/// `HKLM\SOFTWARE\<program stem>\logfile`, if set (as 2.6.1's wrapper).
pub fn diagnostic_log_path(program_stem: &str) -> Option<String> {
    use windows_sys::Win32::System::Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ};
    let key = wide(&format!("SOFTWARE\\{program_stem}"));
    let value = wide("logfile");
    let mut buffer = vec![0u16; 1024];
    let mut size = (buffer.len() * 2) as u32;
    // SAFETY: NUL-terminated names, a buffer of `size` bytes, and
    // out-parameters for the size; no type wanted.
    let rc = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            value.as_ptr(),
            RRF_RT_REG_SZ,
            std::ptr::null_mut(),
            buffer.as_mut_ptr().cast(),
            &mut size,
        )
    };
    if rc != 0 {
        return None;
    }
    buffer.truncate(size as usize / 2);
    let path = String::from_utf16_lossy(&buffer);
    let path = path.trim_end_matches('\0');
    (!path.is_empty()).then(|| path.to_string())
}

/// A running service: its name, its status handle, the controls the
/// manager sends, and the relay process.
pub struct Session {
    name: String,
    status: service_control_handler::ServiceStatusHandle,
    controls: mpsc::Receiver<Control>,
    child: Option<Child>,
    started: Instant,
}

impl Session {
    /// The service's name (the manager's first service argument).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reports `status` to the service manager.
    pub fn set_status(&mut self, status: Status) {
        let running = ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN;
        let (current_state, controls_accepted, checkpoint, wait_hint, exit_code) = match status {
            Status::StartPending => (ServiceState::StartPending, running, 0, WAIT_HINT, ok()),
            Status::Running => (ServiceState::Running, running, 0, WAIT_HINT, ok()),
            Status::StopPending {
                checkpoint,
                wait_hint,
            } => (
                ServiceState::StopPending,
                ServiceControlAccept::empty(),
                checkpoint,
                wait_hint,
                ok(),
            ),
            Status::Stopped(exit) => (
                ServiceState::Stopped,
                ServiceControlAccept::empty(),
                0,
                WAIT_HINT,
                match exit {
                    Exit::Ok => ok(),
                    Exit::Win32(code) => ServiceExitCode::Win32(code),
                    Exit::Specific(code) => ServiceExitCode::ServiceSpecific(code),
                },
            ),
        };
        let _ = self.status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state,
            controls_accepted,
            exit_code,
            checkpoint,
            wait_hint,
            process_id: None,
        });
    }

    /// The next control, waiting at most `wait`.
    pub fn next_control(&mut self, wait: Duration) -> Option<Control> {
        match self.controls.recv_timeout(wait) {
            Ok(control) => Some(control),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(wait);
                None
            }
        }
    }

    /// Time since the service started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Starts the relay: `program` with the command-line tail `args`
    /// passed as they are, with no console window and no standard
    /// handles; answers its process id.
    pub fn spawn(&mut self, program: &str, args: &str) -> io::Result<u32> {
        let child = Command::new(program)
            .raw_arg(args)
            .creation_flags(CREATE_NO_WINDOW)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        self.child = Some(child);
        Ok(pid)
    }

    /// The relay's exit code once it has ended.
    pub fn child_exit(&mut self) -> Option<u32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code().map_or(1, |c| c as u32)),
            _ => None,
        }
    }

    /// Sets the relay's stop event; false if it has none (yet).
    pub fn request_stop(&mut self) -> bool {
        self.child
            .as_ref()
            .is_some_and(|child| crate::platform::signals::request_stop(child.id()))
    }

    /// Ends the relay at once (TerminateProcess).
    pub fn terminate(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
    }
}

static MAIN: OnceLock<fn(Session)> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Called by the dispatcher on its own thread: registers the control
/// handler and runs the service.
fn service_main(arguments: Vec<OsString>) {
    let name = arguments
        .first()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tx, rx) = mpsc::channel();
    let handler = move |control| match control {
        ServiceControl::Stop => {
            let _ = tx.send(Control::Stop);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Shutdown => {
            let _ = tx.send(Control::Shutdown);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(status) = service_control_handler::register(&name, handler) else {
        return;
    };
    if let Some(main) = MAIN.get() {
        main(Session {
            name,
            status,
            controls: rx,
            child: None,
            started: Instant::now(),
        });
    }
}

fn manager() -> Result<ServiceManager, ScmError> {
    ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::ALL_ACCESS)
        .map_err(call("cannot open service control manager"))
}

fn open(manager: &ServiceManager, name: &str) -> Result<Service, ScmError> {
    let access = ServiceAccess::DELETE
        | ServiceAccess::STOP
        | ServiceAccess::QUERY_STATUS
        | ServiceAccess::START;
    manager
        .open_service(name, access)
        .map_err(call("cannot open service"))
}

/// Asks a running service to stop and waits, a bounded time, until it
/// has (2.6.1 waits one second: its relay is killed, ours drains).
fn stop_and_wait(service: &Service) {
    if service.stop().is_err() {
        return;
    }
    let end = Instant::now() + STOP_WAIT;
    while Instant::now() < end {
        match service.query_status() {
            Ok(status) if status.current_state != ServiceState::Stopped => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => return,
        }
    }
}

fn ok() -> ServiceExitCode {
    ServiceExitCode::NO_ERROR
}

fn code_of(e: &windows_service::Error) -> u32 {
    match e {
        windows_service::Error::Winapi(e) => e.raw_os_error().map_or(0, |c| c as u32),
        _ => ERROR_INVALID_PARAMETER,
    }
}

fn call(what: &'static str) -> impl Fn(windows_service::Error) -> ScmError {
    move |e| ScmError::Call {
        what,
        code: code_of(&e),
    }
}
