//! `emailrelay-service`: the Windows service wrapper, a successor to
//! E-MailRelay 2.6.1's, reading the same files and saying the same
//! things, so that an installed 2.6.1 keeps working when its programs
//! are swapped for ours.
//!
//! ```text
//! emailrelay-service --install [<name> [<display-name>]]   also -install, /install
//! emailrelay-service --remove [<name>]                     also -remove, /remove
//! emailrelay-service --help                                also /?, -?, -h
//! emailrelay-service                                       (run by the service manager)
//! ```
//!
//! The name defaults to `emailrelay` and the display name to
//! `E-MailRelay`. Which files the service reads and what it runs:
//! [`locate`]; the batch file: [`batch`]; starting, watching and
//! stopping the relay (which drains on stop, where 2.6.1 terminates it):
//! [`supervise`]. The service manager itself is
//! `crate::platform::service`; on other systems the wrapper says so and
//! points at systemd.
//!
//! The wrapper's own log: as 2.6.1's, a file named by the registry value
//! `HKLM\SOFTWARE\<program stem>\logfile` (our own lines); warnings and
//! errors also go to the Event Log, as source `emailrelay-service` (the
//! program's file stem).

pub mod batch;
pub mod locate;
pub mod supervise;

use std::io::Write;
use std::time::Duration;

use thiserror::Error;

use crate::platform::service::{self as scm, Control, Exit, Install, ScmError, Session, Status};
use crate::platform::syslog::{Severity, SystemLog};
use batch::BatchProblem;
use locate::{Files, Launch};
use supervise::{Host, Level};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Help,
    Install {
        name: String,
        display_name: String,
    },
    Remove {
        name: String,
    },
    /// Anything else: run as the service.
    Run,
}

impl Request {
    /// E-MailRelay compatibility: only the first argument is looked at
    /// (in three spellings), then a name and a display name; anything
    /// else runs the service dispatcher.
    pub fn parse(argv: &[String]) -> Request {
        let word = |i: usize| argv.get(i).map(String::as_str);
        let name = word(1).unwrap_or("emailrelay").to_string();
        match word(0) {
            Some("--help" | "/?" | "-?" | "-h") => Request::Help,
            Some("--install" | "-install" | "/install") => Request::Install {
                name,
                display_name: word(2).unwrap_or("E-MailRelay").to_string(),
            },
            Some("--remove" | "-remove" | "/remove") => Request::Remove { name },
            _ => Request::Run,
        }
    }
}

/// Why the wrapper could not do what it was asked.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// Neither the batch file nor the config file is there (error 2,
    /// file not found, as 2.6.1 reports it).
    #[error("cannot read \"{batch_file}\" or \"{config_file}\": 2")]
    Missing {
        batch_file: String,
        config_file: String,
    },
    /// The batch file gives no command.
    #[error("batch file error: {problem}: {path}")]
    Batch { path: String, problem: BatchProblem },
    /// A call to the service manager failed.
    #[error("{}", scm_message(.0))]
    Scm(ScmError),
}

impl ServiceError {
    /// How a service that could not start because of this ends.
    fn exit(&self) -> Exit {
        match self {
            // E-MailRelay compatibility: ERROR_FILE_NOT_FOUND as the
            // service's error; other failures service-specific error 1.
            ServiceError::Missing { .. } => Exit::Win32(2),
            _ => Exit::Specific(1),
        }
    }
}

/// Runs the wrapper: `program` is its name for messages, `argv` its
/// arguments; answers the exit code.
pub fn main(program: &str, argv: &[String]) -> u8 {
    let request = Request::parse(argv);
    if request == Request::Help {
        crate::stdoutln!(
            "usage: {program} [{{--help|--install|--remove}}] [<name> [<display-name>]]"
        );
        return 0;
    }
    if !scm::available() {
        crate::stderrln!(
            "{program}: error: the Windows service wrapper is not available on this system: use systemd (packaging/systemd)"
        );
        return 1;
    }
    let result = match request {
        Request::Install { name, display_name } => install(&name, &display_name),
        Request::Remove { name } => remove(&name),
        _ => scm::dispatch(serve).map_err(ServiceError::Scm),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            // E-MailRelay compatibility: the wrapper's one error form.
            crate::stderrln!("exception: {e}");
            1
        }
    }
}

fn install(name: &str, display_name: &str) -> Result<(), ServiceError> {
    let wrapper = scm::wrapper_exe();
    crate::stdoutln!(
        "installing service \"{name}\": [{}]",
        locate::quoted(&wrapper)
    );
    let info = locate::service_info(name, display_name, &wrapper, &RealFiles)?;
    scm::install(&Install {
        name,
        display_name,
        program: &wrapper,
        description: &info.description,
    })
    .map_err(ServiceError::Scm)
}

fn remove(name: &str) -> Result<(), ServiceError> {
    crate::stdoutln!("removing service \"{name}\"");
    scm::remove(name).map_err(ServiceError::Scm)
}

/// The service, as the service manager runs it.
fn serve(session: Session) {
    let wrapper = scm::wrapper_exe();
    let mut host = Live::new(session, &wrapper);
    host.set_status(Status::StartPending);
    let name = host.session.name().to_string();
    match locate::service_info(&name, "", &wrapper, &RealFiles) {
        Ok(info) => supervise::run(&mut host, &info.launch),
        Err(e) => {
            host.log(
                Level::Error,
                &format!("cannot start service \"{name}\": {e}"),
            );
            host.set_status(Status::Stopped(e.exit()));
        }
    }
}

/// 2.6.1's two levels of error text: the service manager call's own
/// decoding, then the wrapper's.
fn scm_message(e: &ScmError) -> String {
    match e {
        ScmError::Call { what, code } => {
            format!("{what}: {}: {}", call_error(*code), wrapper_error(*code))
        }
        ScmError::Dispatcher { code } => format!("dispatcher error: {}", wrapper_error(*code)),
        ScmError::Unavailable => "there is no Windows service manager on this system".into(),
    }
}

/// E-MailRelay compatibility: the texts of the service-manager calls'
/// errors.
fn call_error(code: u32) -> String {
    match code {
        5 => "access denied".into(),
        6 => "invalid handle".into(),
        87 => "invalid parameter".into(),
        123 => "invalid name".into(),
        1057 => "invalid service account".into(),
        1059 => "circular dependency".into(),
        1060 => "no such service".into(),
        1065 => "service database does not exist".into(),
        1072 => "already marked for deletion".into(),
        1073 => "service already exists".into(),
        1078 => "duplicate service name".into(),
        _ => format!("error {code}"),
    }
}

/// E-MailRelay compatibility: the wrapper's texts for a few errors, the
/// number for the rest.
fn wrapper_error(code: u32) -> String {
    match code {
        6 => "invalid handle".into(),
        13 => "invalid data".into(),
        123 => "invalid name".into(),
        1056 => "already running".into(),
        1060 => "service does not exist".into(),
        1063 => "cannot connect".into(),
        _ => code.to_string(),
    }
}

/// The file system, for real.
struct RealFiles;

/// Bigger than any batch or map file the wrapper reads.
const MAX_FILE: u64 = 1 << 20;

impl RealFiles {
    fn read(path: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .ok()?
            .take(MAX_FILE)
            .read_to_end(&mut bytes)
            .ok()?;
        Some(bytes)
    }
}

impl Files for RealFiles {
    fn exists(&self, path: &str) -> bool {
        std::fs::metadata(path).is_ok()
    }
    fn read_config(&self, path: &str) -> Option<String> {
        Self::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
    }
    fn read_batch(&self, path: &str) -> Option<String> {
        Self::read(path).map(|b| scm::decode_oem(&b))
    }
}

/// The service manager's session with the wrapper's own log.
struct Live {
    session: Session,
    /// The wrapper's file stem, its Event Log source.
    program: String,
    diagnostics: Option<std::fs::File>,
    event_log: Option<SystemLog>,
}

impl Live {
    fn new(session: Session, wrapper: &str) -> Live {
        let program = locate::stem(wrapper).to_string();
        let diagnostics = scm::diagnostic_log_path(&program).and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
        Live {
            session,
            program,
            diagnostics,
            event_log: None,
        }
    }
}

impl Host for Live {
    fn set_status(&mut self, status: Status) {
        self.session.set_status(status);
    }
    fn next_control(&mut self, wait: Duration) -> Option<Control> {
        self.session.next_control(wait)
    }
    fn elapsed(&self) -> Duration {
        self.session.elapsed()
    }
    fn spawn(&mut self, launch: &Launch) -> std::io::Result<u32> {
        self.session.spawn(&launch.program, &launch.args)
    }
    fn child_exit(&mut self) -> Option<u32> {
        self.session.child_exit()
    }
    fn request_stop(&mut self) -> bool {
        self.session.request_stop()
    }
    fn terminate(&mut self) {
        self.session.terminate();
    }
    fn log(&mut self, level: Level, text: &str) {
        let (severity, word) = match level {
            Level::Info => (Severity::Info, "info"),
            Level::Warning => (Severity::Warning, "warning"),
            Level::Error => (Severity::Error, "error"),
        };
        if let Some(file) = &mut self.diagnostics {
            let time = chrono::Local::now().format("%Y%m%d.%H%M%S%.3f");
            let _ = write!(file, "{time}: {word}: {text}\r\n");
        }
        if level != Level::Info {
            self.event_log
                .get_or_insert_with(|| SystemLog::open(0))
                .send(severity, &self.program, &format!("{word}: {text}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Request {
        Request::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn requests_in_every_spelling() {
        for help in ["--help", "/?", "-?", "-h"] {
            assert_eq!(parse(&[help]), Request::Help);
        }
        for install in ["--install", "-install", "/install"] {
            assert_eq!(
                parse(&[install]),
                Request::Install {
                    name: "emailrelay".into(),
                    display_name: "E-MailRelay".into()
                }
            );
        }
        assert_eq!(
            parse(&["--install", "relay2", "Relay Two", "ignored"]),
            Request::Install {
                name: "relay2".into(),
                display_name: "Relay Two".into()
            }
        );
        for remove in ["--remove", "-remove", "/remove"] {
            assert_eq!(
                parse(&[remove]),
                Request::Remove {
                    name: "emailrelay".into()
                }
            );
        }
        assert_eq!(
            parse(&["/remove", "relay2"]),
            Request::Remove {
                name: "relay2".into()
            }
        );
        assert_eq!(parse(&[]), Request::Run);
        assert_eq!(parse(&["--bogus"]), Request::Run);
        assert_eq!(parse(&["--HELP"]), Request::Run);
    }

    #[test]
    fn error_texts_as_2_6_1_words_them() {
        let e = ServiceError::Scm(ScmError::Call {
            what: "cannot open service",
            code: 1060,
        });
        assert_eq!(
            e.to_string(),
            "cannot open service: no such service: service does not exist"
        );
        let e = ServiceError::Scm(ScmError::Dispatcher { code: 1063 });
        assert_eq!(e.to_string(), "dispatcher error: cannot connect");
        let e = ServiceError::Scm(ScmError::Call {
            what: "cannot open service control manager",
            code: 5,
        });
        assert_eq!(
            e.to_string(),
            "cannot open service control manager: access denied: 5"
        );
        let e = ServiceError::Scm(ScmError::Call {
            what: "cannot create service",
            code: 1234,
        });
        assert_eq!(e.to_string(), "cannot create service: error 1234: 1234");
    }

    #[test]
    fn a_service_that_cannot_find_its_files_ends_as_2_6_1_s_does() {
        let missing = ServiceError::Missing {
            batch_file: "a".into(),
            config_file: "b".into(),
        };
        assert_eq!(missing.exit(), Exit::Win32(2));
        let batch = ServiceError::Batch {
            path: "a".into(),
            problem: BatchProblem::Empty,
        };
        assert_eq!(batch.exit(), Exit::Specific(1));
    }
}
