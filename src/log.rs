//! E-MailRelay-compatible logging, to standard error (or `--log-file`)
//! and to syslog. A line is
//!
//! ```text
//! emailrelay: [<time>: ]<level>: [[<unit>] ][<address>; |<address>;<port>: ][(<msgid>) ]<text>
//! ```
//!
//! where the time comes with `--log-time`, the unit (instance name) with
//! `--log-format=unit`, the client address with `--log-address` and the
//! message id with `--log-format=msgid`. Admins point fail2ban and log
//! watchers at these lines (E-MailRelay's own fail2ban filter matches
//! `emailrelay: warning: <HOST>; failed authentication`), so the shape is
//! part of the compatibility contract.
//!
//! The context (unit, client address, message id) travels with the task
//! that logs, in a task-local [`Context`], so that every line a session
//! writes carries it without being passed around.
//!
//! Must never panic or block for long: a failed write is dropped, not retried.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::platform::syslog::{Severity, SystemLog};

/// How and where to log; built by `config`.
#[derive(Clone, Debug, Default)]
pub struct LogSettings {
    /// `--log`: info lines (otherwise warnings and errors only).
    pub enabled: bool,
    /// `--verbose`: protocol traces and more detail.
    pub verbose: bool,
    /// `--debug`.
    pub debug: bool,
    /// `--log-time` or `--log-format=time`.
    pub time: bool,
    /// `--log-address` or `--log-format=address`.
    pub address: bool,
    /// `--log-format=port`.
    pub port: bool,
    /// `--log-format=unit`: the instance name.
    pub unit: bool,
    /// `--log-format=msgid`: the message id in forwarding lines.
    pub msgid: bool,
    /// `--log-file`, with `%d` for the date and `%h` for the hour.
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

/// What a line is about, shown as `--log-format` asks.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The instance name, when there are several.
    pub unit: Option<Arc<str>>,
    /// The client of a server session.
    pub peer: Option<SocketAddr>,
    /// The message a forwarding task is on (`--log-format=msgid`), set as
    /// the task moves from message to message; `None` outside forwarding.
    pub msgid: Option<MsgIdSlot>,
    /// A load balancer's health check (a PROXY protocol `LOCAL`
    /// connection): its info and verbose lines are not written, so that a
    /// check every few seconds does not fill the log. Warnings still are.
    pub quiet: bool,
}

/// Where a forwarding task keeps the id of its current message. E-MailRelay
/// compatibility: 2.6.1 goes on showing the last message's id on the
/// lines that follow it (the pass's last words, the QUIT), until the next.
pub type MsgIdSlot = Arc<Mutex<Option<Arc<str>>>>;

impl Context {
    /// This context with a message-id slot of its own, for a forwarding task.
    pub fn with_msgid_slot(mut self) -> Context {
        self.msgid = Some(MsgIdSlot::default());
        self
    }
}

/// Says which message the current forwarding task is on: its lines show
/// `(<pid>.<time>.<sequence>)` with `--log-format=msgid`.
pub fn set_msgid(id: &str) {
    let shown: Arc<str> = Arc::from(id.strip_prefix("emailrelay.").unwrap_or(id));
    let _ = CONTEXT.try_with(|context| {
        if let Some(Ok(mut slot)) = context.msgid.as_ref().map(|s| s.lock()) {
            *slot = Some(shown);
        }
    });
}

tokio::task_local! {
    static CONTEXT: Context;
}

/// Runs `future` with `context` for every line it logs.
pub fn scope<F: Future>(context: Context, future: F) -> impl Future<Output = F::Output> {
    // Not an `async fn`: one would hold `future` twice (as its argument
    // and inside the scope it awaits), doubling every task's size.
    CONTEXT.scope(context, future)
}

/// Runs `f` with the current context less the client's address.
pub fn without_peer<R>(f: impl FnOnce() -> R) -> R {
    let mut context = context();
    context.peer = None;
    CONTEXT.sync_scope(context, f)
}

/// The context of the current task, for a task it spawns.
pub fn context() -> Context {
    CONTEXT.try_with(Context::clone).unwrap_or_default()
}

/// Errors in setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file cannot be opened for appending.
    /// (E-MailRelay's words.)
    #[error("cannot open log file: {path}")]
    File {
        path: String,
        reason: std::io::Error,
    },
}

/// Sets up logging once; later calls are ignored. The log file is opened
/// now, so that a file that cannot be written is a startup error rather
/// than lost lines.
pub fn init(settings: LogSettings, program: &str) -> Result<(), LogError> {
    let syslog = settings
        .syslog
        .as_deref()
        .and_then(facility_code)
        .map(|f| Mutex::new(SystemLog::open(f)));
    // E-MailRelay compatibility: 2.6.1 for Windows registers its Event
    // Log source at a start without --log too (not with --no-syslog).
    if !settings.enabled {
        SystemLog::announce();
    }
    let file = match &settings.file {
        None => None,
        Some(pattern) => {
            let path = expand(pattern, &chrono::Local::now());
            let file = open_append(&path).map_err(|reason| LogError::File {
                path: path.clone(),
                reason,
            })?;
            Some((path, file))
        }
    };
    let _ = LOGGER.set(Logger {
        settings,
        program: program.to_string(),
        stderr: AtomicBool::new(true),
        file: Mutex::new(file),
        syslog,
    });
    Ok(())
}

/// Done with the system log, at the end of the process (on Windows the
/// Event Log source is deregistered, as 2.6.1 does on its way out).
pub fn close() {
    if let Some(Ok(mut syslog)) = LOGGER
        .get()
        .and_then(|l| l.syslog.as_ref())
        .map(|s| s.lock())
    {
        syslog.close();
    }
}

/// Stops writing to standard error (`--close-stderr`); a log file is unaffected.
pub fn close_stderr() {
    if let Some(logger) = LOGGER.get() {
        logger.stderr.store(false, Ordering::Relaxed);
    }
}

/// Opens the log file again (SIGHUP, after logrotate moved it away).
pub fn reopen() {
    let Some(logger) = LOGGER.get() else { return };
    let (Some(pattern), Ok(mut guard)) = (&logger.settings.file, logger.file.lock()) else {
        return;
    };
    let path = expand(pattern, &chrono::Local::now());
    match open_append(&path) {
        Ok(file) => *guard = Some((path, file)),
        Err(e) => {
            drop(guard);
            crate::error!("cannot open log file [{path}]: {e}");
        }
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

/// Writes one line.
pub fn write(level: Level, text: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    if matches!(level, Level::Info | Level::Verbose)
        && CONTEXT.try_with(|c| c.quiet).unwrap_or(false)
    {
        return;
    }
    let Some(logger) = LOGGER.get() else {
        crate::stderrln!("emailrelay: {}: {text}", level.label());
        return;
    };
    let now = chrono::Local::now();
    let mut line = format!("{}: ", logger.program);
    if logger.settings.time {
        line.push_str(&now.format("%Y%m%d.%H%M%S%.3f: ").to_string());
    }
    let body_start = line.len();
    line.push_str(level.label());
    line.push_str(": ");
    logger.push_context(&mut line);
    use fmt::Write as _;
    let start = line.len();
    let _ = write!(line, "{text}");
    // Whatever a peer or a file put into the text, a log line stays one
    // line: control characters become escapes (as E-MailRelay writes them).
    if line[start..].contains(|c: char| c.is_control()) {
        let escaped = emailrelay_proto::printable::printable(&line.as_bytes()[start..]);
        line.truncate(start);
        line.push_str(&escaped);
    }
    if let Some(syslog) = &logger.syslog {
        if let Ok(mut syslog) = syslog.lock() {
            syslog.send(level.severity(), &logger.program, &line[body_start..]);
        }
    }
    if logger.settings.file.is_some() {
        // E-MailRelay compatibility: log files end their lines as text
        // files do on the system (CRLF on Windows).
        line.push_str(crate::platform::files::LINE_END);
        logger.write_file(&now, &line);
    } else if logger.stderr.load(Ordering::Relaxed) {
        line.push_str(crate::platform::files::LINE_END);
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

struct Logger {
    settings: LogSettings,
    program: String,
    stderr: AtomicBool,
    /// The open log file and the path it was opened as.
    file: Mutex<Option<(String, File)>>,
    syslog: Option<Mutex<SystemLog>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

impl Logger {
    fn push_context(&self, line: &mut String) {
        let Ok(context) = CONTEXT.try_with(Context::clone) else {
            return;
        };
        let s = &self.settings;
        if let (true, Some(unit)) = (s.unit, &context.unit) {
            line.push_str(&format!("[{unit}] "));
        }
        if let Some(peer) = context.peer {
            match (s.address, s.port) {
                (true, true) => line.push_str(&format!("{};{}: ", peer.ip(), peer.port())),
                (true, false) => line.push_str(&format!("{}; ", peer.ip())),
                (false, true) => line.push_str(&format!("{}: ", peer.port())),
                (false, false) => {}
            }
        }
        let msgid = (context.msgid.as_ref())
            .filter(|_| s.msgid)
            .and_then(|slot| slot.lock().ok().and_then(|id| id.clone()));
        if let Some(id) = msgid {
            line.push_str(&format!("({id}) "));
        }
    }

    /// Appends to the log file, moving to a new file when `%d` or `%h`
    /// expand differently.
    fn write_file(&self, now: &chrono::DateTime<chrono::Local>, line: &str) {
        let (Some(pattern), Ok(mut guard)) = (&self.settings.file, self.file.lock()) else {
            return;
        };
        let path = expand(pattern, now);
        if guard.as_ref().is_none_or(|(open, _)| *open != path) {
            if let Ok(file) = open_append(&path) {
                *guard = Some((path, file));
            }
        }
        if let Some((_, file)) = guard.as_mut() {
            let _ = file.write_all(line.as_bytes());
        }
    }
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

    fn severity(self) -> Severity {
        match self {
            Level::Error => Severity::Error,
            Level::Warning => Severity::Warning,
            Level::Info => Severity::Info,
            Level::Verbose => Severity::Verbose,
            Level::Debug => Severity::Debug,
        }
    }
}

/// `%d` -> `YYYYMMDD`, `%h` -> `HH`, in local time.
fn expand(pattern: &str, now: &chrono::DateTime<chrono::Local>) -> String {
    pattern
        .replace("%d", &now.format("%Y%m%d").to_string())
        .replace("%h", &now.format("%H").to_string())
}

fn open_append(path: &str) -> std::io::Result<File> {
    crate::platform::files::open_append(Path::new(path), 0o660)
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
macro_rules! info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } }
/// `info:` line shown only with `--log --verbose`.
#[macro_export]
macro_rules! verbose { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Verbose, format_args!($($t)*)) } }
/// `debug:` line (shown with `--debug`).
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } }
/// `warning:` line.
#[macro_export]
macro_rules! warning { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($t)*)) } }
/// `error:` line.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } }

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn log_file_patterns_expand_date_and_hour() {
        let t = chrono::Local
            .with_ymd_and_hms(2026, 11, 26, 7, 5, 0)
            .single()
            .expect("a valid local time");
        assert_eq!(
            expand("/var/log/e-%d.%h.log", &t),
            "/var/log/e-20261126.07.log"
        );
        assert_eq!(expand("/var/log/e.log", &t), "/var/log/e.log");
    }
}
