//! Command line and config file: argv -> [`Args`] -> [`Settings`].
//!
//! Options are known by long name and short letter, as `--opt value`,
//! `--opt=value`, `-p 25`, `-p25` or bundled flags (`-dt`). A config file
//! given as the last argument holds the same options without dashes, one
//! per line, `#` comments, `@app` standing for the executable's directory.
//! Options on the command line win over the same option in the file.
//!
//! Must not start anything: it only builds plain settings structs.

mod options;
mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use options::{find_long, find_short, Arg, OptionSpec, Support, OPTIONS};
pub use settings::Settings;

/// Errors in the command line, config file or option values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An option nobody knows.
    #[error("invalid option: {0}")]
    Unknown(String),
    /// A prefixed option of the multi-instance form.
    #[error("multiple instances are not supported yet: --{0}")]
    Instances(String),
    /// An option that needs a value got none.
    #[error("the --{0} option requires a value")]
    MissingValue(&'static str),
    /// A flag was given a value.
    #[error("the --{0} option does not take a value")]
    UnexpectedValue(&'static str),
    /// A single-valued option twice.
    #[error("the --{0} option is given more than once")]
    Repeated(&'static str),
    /// More than one non-option argument.
    #[error("too many non-option arguments: {0}")]
    TooManyArgs(String),
    /// The config file could not be read.
    #[error("cannot read config file [{path}]: {source}")]
    ConfigFile {
        path: PathBuf,
        source: std::io::Error,
    },
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
}

/// Options as given: name -> values (flags have one empty value per use).
#[derive(Clone, Debug, Default)]
pub struct Args {
    values: BTreeMap<&'static str, Vec<String>>,
    pub config_file: Option<PathBuf>,
}

impl Args {
    /// Parses the command line (without argv\[0\]) and then any config file.
    pub fn parse(argv: &[String], app_dir: &Path) -> Result<Args, ConfigError> {
        let mut args = Args::default();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < argv.len() {
            let word = &argv[i];
            i += 1;
            if let Some(long) = word.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                let spec = lookup_long(name)?;
                let value = match (spec.arg, inline) {
                    (Arg::None, Some(_)) => return Err(ConfigError::UnexpectedValue(spec.name)),
                    (Arg::None, None) | (Arg::Optional, None) => String::new(),
                    (_, Some(v)) => v,
                    (Arg::Required, None) => next_value(argv, &mut i, spec)?,
                };
                args.add(spec, value)?;
            } else if word.len() > 1 && word.starts_with('-') {
                args.parse_short_cluster(&word[1..], argv, &mut i)?;
            } else {
                positional.push(word.clone());
            }
        }
        match positional.as_slice() {
            [] => {}
            [file] => args.config_file = Some(PathBuf::from(file)),
            [_, extra @ ..] => return Err(ConfigError::TooManyArgs(extra.join(" "))),
        }
        if let Some(path) = args.config_file.clone() {
            args.merge_file(&path, app_dir)?;
        }
        Ok(args)
    }

    /// True if a flag (or any option) was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The value of a single-valued option.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// All values of a repeatable option.
    pub fn values(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every option given, for the "not supported yet" check.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.values.keys().copied()
    }

    fn add(&mut self, spec: &'static OptionSpec, value: String) -> Result<(), ConfigError> {
        let entry = self.values.entry(spec.name).or_default();
        if !entry.is_empty() && !spec.repeatable && spec.arg != Arg::None {
            return Err(ConfigError::Repeated(spec.name));
        }
        entry.push(value);
        Ok(())
    }

    fn parse_short_cluster(
        &mut self,
        cluster: &str,
        argv: &[String],
        i: &mut usize,
    ) -> Result<(), ConfigError> {
        for (pos, letter) in cluster.char_indices() {
            let spec =
                find_short(letter).ok_or_else(|| ConfigError::Unknown(format!("-{letter}")))?;
            let rest = &cluster[pos + letter.len_utf8()..];
            match spec.arg {
                Arg::None => self.add(spec, String::new())?,
                Arg::Optional => {
                    let value = rest.strip_prefix('=').unwrap_or(rest).to_string();
                    return self.add(spec, value);
                }
                Arg::Required if !rest.is_empty() => return self.add(spec, rest.to_string()),
                Arg::Required => {
                    let value = next_value(argv, i, spec)?;
                    return self.add(spec, value);
                }
            }
        }
        Ok(())
    }

    /// Reads `option value` lines; options already on the command line win.
    fn merge_file(&mut self, path: &Path, app_dir: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ConfigFile {
            path: path.to_path_buf(),
            source,
        })?;
        let from_command_line: Vec<&'static str> = self.values.keys().copied().collect();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = match line.split_once(char::is_whitespace) {
                Some((n, v)) => (n, v.trim()),
                None => (line, ""),
            };
            let spec = lookup_long(name)?;
            if from_command_line.contains(&spec.name) {
                continue;
            }
            let value = value.replace("@app", &app_dir.to_string_lossy());
            match spec.arg {
                Arg::None if !value.is_empty() => {
                    return Err(ConfigError::UnexpectedValue(spec.name))
                }
                Arg::Required if value.is_empty() => {
                    return Err(ConfigError::MissingValue(spec.name))
                }
                _ => self.add(spec, value)?,
            }
        }
        Ok(())
    }
}

fn lookup_long(name: &str) -> Result<&'static OptionSpec, ConfigError> {
    if let Some(spec) = find_long(name) {
        return Ok(spec);
    }
    // E-MailRelay's multi-instance form: `in-port`, `out-spool-dir`...
    let prefixed = name
        .split_once('-')
        .is_some_and(|(_, rest)| find_long(rest).is_some());
    if prefixed {
        return Err(ConfigError::Instances(name.to_string()));
    }
    Err(ConfigError::Unknown(format!("--{name}")))
}

fn next_value(
    argv: &[String],
    i: &mut usize,
    spec: &'static OptionSpec,
) -> Result<String, ConfigError> {
    let value = argv.get(*i).ok_or(ConfigError::MissingValue(spec.name))?;
    *i += 1;
    Ok(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, ConfigError> {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Args::parse(&argv, Path::new("/opt/emailrelay"))
    }

    #[test]
    fn long_short_inline_and_bundled_spellings() {
        let a = parse(&[
            "--port",
            "1",
            "--spool-dir=/s",
            "-dt",
            "-D",
            "x.example",
            "-Ma100",
            "--anonymous",
        ])
        .unwrap();
        assert_eq!(a.value("port"), Some("1"));
        assert_eq!(a.value("spool-dir"), Some("/s"));
        assert!(a.has("as-server") && a.has("no-daemon") && a.has("anonymous"));
        assert_eq!(a.value("anonymous"), Some(""));
        assert_eq!(a.value("domain"), Some("x.example"));
        assert_eq!(
            a.value("size"),
            Some("a100"),
            "-M takes the rest of the cluster as its value"
        );
        let a = parse(&["--anonymous=vrfy,content", "-klocal0"]).unwrap();
        assert_eq!(a.value("anonymous"), Some("vrfy,content"));
        assert_eq!(a.value("syslog"), Some("local0"));
        assert!(matches!(
            parse(&["--syslog=local0", "-k"]),
            Err(ConfigError::Repeated("syslog"))
        ));
    }

    #[test]
    fn repeatable_options_accumulate_and_others_refuse_repeats() {
        let a = parse(&["-I", "127.0.0.1", "--interface=::1", "-v", "-v"]).unwrap();
        assert_eq!(a.values("interface"), ["127.0.0.1", "::1"]);
        assert!(matches!(
            parse(&["-p", "1", "--port=2"]),
            Err(ConfigError::Repeated("port"))
        ));
    }

    #[test]
    fn config_file_lines_with_comments_app_and_command_line_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.conf");
        std::fs::write(&file, "# comment\n\nlog\nport 25\nspool-dir @app/spool\n  verbose  \nfilter @app/f.sh # not a comment\n").unwrap();
        let a = parse(&["--port", "10025", file.to_str().unwrap()]).unwrap();
        assert_eq!(a.value("port"), Some("10025"));
        assert_eq!(a.value("spool-dir"), Some("/opt/emailrelay/spool"));
        assert!(a.has("log") && a.has("verbose"));
        assert_eq!(
            a.value("filter"),
            Some("/opt/emailrelay/f.sh # not a comment")
        );
        assert_eq!(a.config_file.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn config_file_errors_name_the_option() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.conf");
        std::fs::write(&file, "no-daemon yes\n").unwrap();
        assert!(matches!(
            parse(&[file.to_str().unwrap()]),
            Err(ConfigError::UnexpectedValue("no-daemon"))
        ));
        std::fs::write(&file, "port\n").unwrap();
        assert!(matches!(
            parse(&[file.to_str().unwrap()]),
            Err(ConfigError::MissingValue("port"))
        ));
        std::fs::write(&file, "out-port 25\n").unwrap();
        assert!(matches!(
            parse(&[file.to_str().unwrap()]),
            Err(ConfigError::Instances(_))
        ));
    }

    #[test]
    fn settings_apply_the_implied_bundles() {
        let a = parse(&["--as-client", "smarthost:25"]).unwrap();
        let s = Settings::build(&a, || "host.example".into()).unwrap();
        assert!(!s.daemon && s.smtp.is_none() && s.admin.is_none());
        assert!(s.log.enabled && s.log.syslog.is_none());
        assert!(s.forward.on_start && s.forward.exit_when_done);
        assert_eq!(s.forward.forward_to.as_deref(), Some("smarthost:25"));
        assert_eq!(s.forward.helo_domain, "host.example");

        let a = parse(&["--as-proxy", "smarthost:25", "--syslog=local3"]).unwrap();
        let s = Settings::build(&a, || "h".into()).unwrap();
        assert!(s.daemon && s.close_stderr && s.forward.on_disconnect && !s.forward.on_start);
        assert_eq!(s.log.syslog.as_deref(), Some("local3"));
        let smtp = s.smtp.unwrap();
        assert_eq!(smtp.listen.len(), 2);
        assert_eq!(smtp.idle_timeout.as_secs(), 60);

        let a = parse(&[
            "--as-server",
            "-p",
            "2525",
            "--user",
            "root",
            "--size",
            "1000",
            "--anonymous=server",
        ])
        .unwrap();
        let s = Settings::build(&a, || "h".into()).unwrap();
        assert!(s.close_stderr && s.user.is_none());
        let smtp = s.smtp.unwrap();
        assert_eq!(
            (smtp.max_size, smtp.anonymous.server, smtp.anonymous.vrfy),
            (1000, true, false)
        );
        assert_eq!(
            s.spool_dir,
            std::path::PathBuf::from("/var/spool/emailrelay")
        );
    }

    #[test]
    fn settings_refuse_conflicts_and_later_features() {
        let build =
            |args: &[&str]| Settings::build(&parse(args).unwrap(), || "h".into()).map(|_| ());
        assert!(matches!(
            build(&["--as-client", "a:1", "--as-server"]),
            Err(ConfigError::Conflict(_))
        ));
        assert!(matches!(
            build(&["--as-client", "a:1", "--forward-to", "b:2"]),
            Err(ConfigError::Conflict(_))
        ));
        assert!(matches!(
            build(&["--poll", "0", "--forward-to", "b:2"]),
            Err(ConfigError::BadValue { option: "poll", .. })
        ));
        assert!(matches!(
            build(&["--server-tls"]),
            Err(ConfigError::Conflict(_))
        ));
        assert!(matches!(
            build(&["--server-tls-required"]),
            Err(ConfigError::Conflict(_))
        ));
        assert!(matches!(
            build(&["--client-tls", "--tls-config", "-tlsv1.1"]),
            Err(ConfigError::Tls(_))
        ));
        assert!(matches!(
            build(&["--pop"]),
            Err(ConfigError::NotYet { option: "pop", .. })
        ));
        assert!(matches!(
            build(&["--dnsbl", "1,2"]),
            Err(ConfigError::BadValue {
                option: "dnsbl",
                ..
            })
        ));
        assert!(matches!(
            build(&["--filter", "exit:x"]),
            Err(ConfigError::Filter(_))
        ));
        assert!(matches!(
            build(&["--address-verifier", "net:"]),
            Err(ConfigError::Verifier(_))
        ));
        assert!(build(&["--server-smtp-config", "chunking,pipelining"]).is_ok());
        assert!(matches!(
            build(&["--server-smtp-config", "bogus"]),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            build(&["--client-interface", "nope"]),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            build(&["--syslog=nonsense"]),
            Err(ConfigError::BadValue {
                option: "syslog",
                ..
            })
        ));
        assert!(
            build(&["--hidden", "--show", "tray"]).is_ok(),
            "Windows-only options are ignored"
        );
    }
}
