//! Process-wide settings: logging, daemon, pid file, user. Read from the
//! first instance only: E-MailRelay ignores them with another prefix.

use std::path::PathBuf;

use super::values::keywords;
use super::{ConfigError, Instance, Support, System};
use crate::log::LogSettings;

/// What the process as a whole does, whatever its instances.
#[derive(Clone, Debug)]
pub struct ProcessSettings {
    /// Runs in the background (not `--no-daemon` or `--as-client`).
    pub daemon: bool,
    pub pid_file: Option<PathBuf>,
    /// `--close-stderr`, implied by `--as-server` and `--as-proxy`.
    pub close_stderr: bool,
    /// `--drain-delay`: how long a stop keeps accepting while the health
    /// checks fail, before the listeners close.
    pub drain_delay: std::time::Duration,
    /// The account to switch to when started as root; `None` for `--user root`.
    pub user: Option<String>,
    pub log: LogSettings,
    /// Options accepted but meaningless here, for a startup warning.
    pub ignored: Vec<&'static str>,
    /// Other startup warnings (options that have no effect as given).
    pub warnings: Vec<String>,
}

impl ProcessSettings {
    /// Builds the process settings from the first instance's options.
    pub fn build(args: &Instance) -> Result<ProcessSettings, ConfigError> {
        let ignored = check_support(args)?;
        let mode = Mode::of(args)?;
        let mut warnings = Vec::new();
        let daemon = !(args.has("no-daemon") || mode == Mode::Client);
        let pid_files: Vec<PathBuf> = args
            .values("pid-file")
            .iter()
            .map(|v| args.absolute(&args.expand_app(v), daemon))
            .collect();
        if pid_files.len() > 1 {
            warnings.push("more than one --pid-file: using the first".to_string());
        }
        let close_stderr = args.has("close-stderr") || matches!(mode, Mode::Server | Mode::Proxy);
        let log = log_settings(args, mode, daemon, &mut warnings)?;
        if log.enabled && close_stderr && log.file.is_none() && log.syslog.is_none() {
            let option = if args.has("close-stderr") {
                "--close-stderr"
            } else if mode == Mode::Server {
                "--as-server"
            } else {
                "--as-proxy"
            };
            warnings.push(format!(
                "logging will stop because {option} closes the standard error stream soon after startup"
            ));
        }
        let user = match args.value("user").as_deref() {
            Some("root") => None,
            Some(name) => Some(name.to_string()),
            // No accounts to switch to on Windows (`--user` is Unix-only).
            None if System::HERE == System::Windows => None,
            None => Some("daemon".to_string()),
        };
        Ok(ProcessSettings {
            drain_delay: super::values::seconds(args, "drain-delay", 0)?,
            daemon,
            pid_file: pid_files.into_iter().next(),
            close_stderr,
            user,
            log,
            ignored,
            warnings,
        })
    }
}

/// Which of `--as-client`, `--as-proxy` and `--as-server` was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Client,
    Proxy,
    Server,
}

impl Mode {
    /// The mode of an instance's options; more than one is a conflict.
    pub fn of(args: &Instance) -> Result<Mode, ConfigError> {
        let given: Vec<Mode> = [
            ("as-client", Mode::Client),
            ("as-proxy", Mode::Proxy),
            ("as-server", Mode::Server),
        ]
        .into_iter()
        .filter(|(name, _)| args.has(name))
        .map(|(_, mode)| mode)
        .collect();
        match given.as_slice() {
            [] => Ok(Mode::Plain),
            [mode] => Ok(*mode),
            _ => Err(ConfigError::Conflict(
                "use only one of --as-client, --as-proxy and --as-server".into(),
            )),
        }
    }
}

/// Refuses options that need a later feature; lists the Windows-only ones.
fn check_support(args: &Instance) -> Result<Vec<&'static str>, ConfigError> {
    let mut ignored = Vec::new();
    for name in args.names() {
        let Some(spec) = super::find_long(name) else {
            continue;
        };
        match spec.support {
            Support::Yes => {}
            Support::Later(feature) => {
                return Err(ConfigError::NotYet {
                    option: spec.name,
                    feature,
                })
            }
            Support::WindowsOnly if System::HERE == System::Unix => ignored.push(spec.name),
            Support::WindowsOnly => {}
        }
    }
    Ok(ignored)
}

fn log_settings(
    args: &Instance,
    mode: Mode,
    daemon: bool,
    warnings: &mut Vec<String>,
) -> Result<LogSettings, ConfigError> {
    let enabled = args.has("log") || mode != Mode::Plain;
    let mut time = args.has("log-time");
    let mut address = args.has("log-address");
    let (mut port, mut unit, mut msgid) = (false, false, false);
    for field in keywords(args, "log-format") {
        match field.as_str() {
            "time" => time = true,
            "address" => address = true,
            "port" => port = true,
            "unit" => unit = true,
            "msgid" => msgid = true,
            // E-MailRelay compatibility: 2.6.1 ignores what it does not
            // know; a wrong field loses no mail, so it is a warning here.
            other => warnings.push(format!("unknown --log-format field ignored: [{other}]")),
        }
    }
    let syslog_wanted =
        (enabled && !args.has("no-syslog") && mode != Mode::Client) || args.has("syslog");
    // `--syslog`, `-k` and `--syslog=yes` name no facility (the value is
    // checked by `checks::check_logging`).
    let facility = args
        .value("syslog")
        .filter(|f| !f.is_empty() && f != "yes")
        .unwrap_or_else(|| "mail".to_string());
    Ok(LogSettings {
        enabled,
        verbose: args.has("verbose"),
        debug: args.has("debug"),
        time,
        address,
        port,
        unit,
        msgid,
        file: args
            .path("log-file", daemon)
            .map(|p| p.display().to_string()),
        syslog: syslog_wanted.then_some(facility),
    })
}
