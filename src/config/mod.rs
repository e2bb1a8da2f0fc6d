//! Command line and config file: argv -> [`Args`] (options keyed by
//! instance) -> [`Config`]: one [`ProcessSettings`] and one
//! [`InstanceSettings`] per instance, each built by per-subsystem builders.
//!
//! Must not start anything: it only builds plain settings structs, which
//! the subsystems define, so each subsystem can be tested without it.

mod args;
mod checks;
mod client;
mod help;
mod instance;
mod options;
mod process;
mod server;
mod values;

use std::path::PathBuf;

pub use args::{Args, Instance};
pub use help::help_text;
pub use instance::InstanceSettings;
pub use options::{find_long, find_short, OptionSpec, Section, Support, System, Systems, OPTIONS};
pub use process::ProcessSettings;

/// Errors in the command line, config file or option values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Syntax errors in the options, in E-MailRelay's words, sorted (as
    /// bytes: an unknown option letter need not be UTF-8 on its own).
    #[error("{}", join(.0))]
    Usage(Vec<Vec<u8>>),
    /// Words left after the config file.
    #[error("usage error: too many non-option arguments")]
    TooManyArgs,
    /// The config file could not be read.
    #[error("error reading configuration file: {}", .0.display())]
    ConfigFile(PathBuf),
    /// A NUL byte in the config file.
    #[error("invalid character in configuration file: {}", .0.display())]
    ConfigFileNul(PathBuf),
    /// A value that does not parse.
    #[error("invalid value for --{option}: [{value}]: {why}")]
    BadValue {
        option: &'static str,
        value: String,
        why: String,
    },
    /// Valid, but needs a feature not built yet.
    #[error("the --{option} option is not supported by this build: {feature} not yet implemented")]
    NotYet {
        option: &'static str,
        feature: &'static str,
    },
    /// Options that do not make sense together.
    #[error("{0}")]
    Conflict(String),
    /// A `--filter` or `--client-filter` value that cannot be used.
    #[error("{0}")]
    Filter(#[from] crate::filter::FilterError),
    /// An `--address-verifier` value that cannot be used.
    #[error("{0}")]
    Verifier(#[from] crate::verify::VerifierError),
    /// A TLS file or setting is unusable.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A secrets file, PAM or OAuth account is unusable.
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    /// An error in one of several named instances.
    #[error("[{instance}] {source}")]
    InInstance {
        instance: String,
        source: Box<ConfigError>,
    },
}

/// Usage errors as one line, `; ` between them.
fn join(errors: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&errors.join(&b"; "[..])).into_owned()
}

impl ConfigError {
    /// True for errors about the command line's syntax, which E-MailRelay
    /// follows with a line pointing at `--help --verbose`.
    pub fn is_usage(&self) -> bool {
        matches!(self, ConfigError::Usage(_) | ConfigError::TooManyArgs)
    }

    /// True for errors E-MailRelay's command-line parser reports (syntax,
    /// too many arguments, options that do not go together), which name
    /// the program without the `.exe` typed on Windows; the rest name it
    /// as typed (`platform::console::name_as_typed`).
    pub fn from_parser(&self) -> bool {
        match self {
            ConfigError::Usage(_) | ConfigError::TooManyArgs | ConfigError::Conflict(_) => true,
            ConfigError::InInstance { source, .. } => source.from_parser(),
            _ => false,
        }
    }

    /// As [`lines`](Self::lines), as bytes: an unknown option letter is
    /// a byte of the argument, which need not be UTF-8 on its own.
    pub fn line_bytes(&self) -> Vec<Vec<u8>> {
        match self {
            ConfigError::Usage(errors) => errors
                .iter()
                .map(|e| [&b"error: "[..], e].concat())
                .collect(),
            // The file's name as given, which need not be UTF-8.
            ConfigError::ConfigFile(path) => vec![[
                &b"error: error reading configuration file: "[..],
                crate::platform::files::os_str_bytes(path.as_os_str()),
            ]
            .concat()],
            ConfigError::ConfigFileNul(path) => vec![[
                &b"error: invalid character in configuration file: "[..],
                crate::platform::files::os_str_bytes(path.as_os_str()),
            ]
            .concat()],
            other => other.lines().into_iter().map(String::into_bytes).collect(),
        }
    }

    /// The error's lines as E-MailRelay prints them, without the program
    /// name: one per usage error.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Usage(errors) => errors
                .iter()
                .map(|e| format!("error: {}", String::from_utf8_lossy(e)))
                .collect(),
            ConfigError::TooManyArgs => vec![self.to_string()],
            // E-MailRelay's words for options that do not go together.
            ConfigError::Conflict(text) => vec![format!("usage error: {text}")],
            // 2.6.1 does not say which instance; the tag is the one the
            // instance's startup log lines carry.
            ConfigError::InInstance { instance, source } => source
                .lines()
                .into_iter()
                .map(|line| match line.split_once(": ") {
                    Some((kind, text)) => format!("{kind}: [{instance}] {text}"),
                    None => format!("[{instance}] {line}"),
                })
                .collect(),
            other => vec![format!("error: {other}")],
        }
    }
}

/// Everything `run` needs, typed.
#[derive(Clone, Debug)]
pub struct Config {
    pub process: ProcessSettings,
    /// At least one; the first one is the one without a name, or the first
    /// named one.
    pub instances: Vec<InstanceSettings>,
}

impl Config {
    /// Builds the settings; `default_domain` is called only if some
    /// instance has no `--domain`.
    pub fn build(args: &Args, default_domain: impl Fn() -> String) -> Result<Config, ConfigError> {
        checks::check_logging(args.first())?;
        let process = ProcessSettings::build(args.first())?;
        let named = args.instances.len() > 1;
        let mut instances = Vec::new();
        for (i, options) in args.instances.iter().enumerate() {
            // E-MailRelay compatibility: 2.6.1 checks the logging options
            // of every instance, so `--out-verbose` alone is refused even
            // though it would be ignored.
            let logging = match i {
                0 => Ok(()),
                _ => checks::check_logging(options),
            };
            let built = logging
                .and_then(|()| checks::check_combinations(options))
                .and_then(|()| InstanceSettings::build(options, &default_domain, &process));
            match built {
                Ok(settings) => instances.push(settings),
                Err(e) if named => {
                    return Err(ConfigError::InInstance {
                        instance: options.name.clone(),
                        source: Box::new(e),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Config { process, instances })
    }
}
