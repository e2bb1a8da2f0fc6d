//! E-MailRelay-compatible logging: `emailrelay: [time: ][address: ]level: text`
//! to standard error (or `--log-file`, `%d` daily) and to syslog.
//!
//! Admins point fail2ban and log watchers at these lines, so their shape
//! is part of the compatibility contract (shared/compat.md). Must never
//! panic or block for long: a failed write is dropped, not retried.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// How and where to log; built by `config`.
#[derive(Clone, Debug, Default)]
pub struct LogSettings {
    /// `--log`: info lines (otherwise warnings and errors only).
    pub enabled: bool,
    /// `--verbose`: protocol traces and more detail.
    pub verbose: bool,
    /// `--debug`.
    pub debug: bool,
    /// `--log-time`.
    pub time: bool,
    /// `--log-address`.
    pub address: bool,
    /// `--log-file`, with `%d` for the date.
    pub file: Option<String>,
    /// The syslog facility, if syslog is on.
    pub syslog: Option<String>,
}

/// Severity of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Info,
    Verbose,
    Debug,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info | Level::Verbose => "info",
            Level::Debug => "debug",
        }
    }

    fn syslog_severity(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info | Level::Verbose => 6,
            Level::Debug => 7,
        }
    }
}

struct Logger {
    settings: LogSettings,
    program: String,
    stderr: AtomicBool,
    file: Mutex<Option<(String, File)>>,
    syslog: Option<(UnixDatagram, u8)>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging once; later calls are ignored.
pub fn init(settings: LogSettings, program: &str) {
    let syslog = settings.syslog.as_deref().and_then(|facility| {
        let socket = UnixDatagram::unbound().ok()?;
        socket.connect("/dev/log").ok()?;
        Some((socket, facility_code(facility)?))
    });
    let _ = LOGGER.set(Logger {
        settings,
        program: program.to_string(),
        stderr: AtomicBool::new(true),
        file: Mutex::new(None),
        syslog,
    });
}

/// Stops writing to standard error (`--close-stderr`); a log file is unaffected.
pub fn close_stderr() {
    if let Some(logger) = LOGGER.get() {
        logger.stderr.store(false, Ordering::Relaxed);
    }
}

/// True if lines of this level are written.
pub fn enabled(level: Level) -> bool {
    match LOGGER.get() {
        None => level <= Level::Warning,
        Some(l) => match level {
            Level::Error | Level::Warning => true,
            Level::Info => l.settings.enabled,
            Level::Verbose => l.settings.enabled && l.settings.verbose,
            Level::Debug => l.settings.debug,
        },
    }
}

/// Writes one line; `address` is shown with `--log-address`.
pub fn write(level: Level, address: Option<&str>, text: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let Some(logger) = LOGGER.get() else {
        eprintln!("emailrelay: {}: {text}", level.label());
        return;
    };
    let mut line = format!("{}: ", logger.program);
    let now = chrono::Local::now();
    if logger.settings.time {
        line.push_str(&now.format("%Y%m%d.%H%M%S%.3f: ").to_string());
    }
    if let (true, Some(address)) = (logger.settings.address, address) {
        line.push_str(&format!("{address}: "));
    }
    let body_start = line.len();
    line.push_str(&format!("{}: {text}", level.label()));
    if let Some((socket, facility)) = &logger.syslog {
        let pri = facility * 8 + level.syslog_severity();
        let msg = format!(
            "<{pri}>{}[{}]: {}",
            logger.program,
            std::process::id(),
            &line[body_start..]
        );
        let _ = socket.send(msg.as_bytes());
    }
    line.push('\n');
    if let Some(pattern) = &logger.settings.file {
        logger.write_file(pattern, &now.format("%Y%m%d").to_string(), &line);
    } else if logger.stderr.load(Ordering::Relaxed) {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

impl Logger {
    fn write_file(&self, pattern: &str, date: &str, line: &str) {
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        let path = pattern.replace("%d", date);
        if guard.as_ref().is_none_or(|(open, _)| *open != path) {
            *guard = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .ok()
                .map(|f| (path, f));
        }
        if let Some((_, file)) = guard.as_mut() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// True for a syslog facility name we know.
pub fn is_facility(name: &str) -> bool {
    facility_code(name).is_some()
}

fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

/// `info:` line (shown with `--log`).
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, None, format_args!($($t)*)) } }
/// `info:` line shown only with `--log --verbose`.
#[macro_export]
macro_rules! verbose { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Verbose, None, format_args!($($t)*)) } }
/// `debug:` line (shown with `--debug`).
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Debug, None, format_args!($($t)*)) } }
/// `warning:` line.
#[macro_export]
macro_rules! warning { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warning, None, format_args!($($t)*)) } }
/// `error:` line.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, None, format_args!($($t)*)) } }
