//! argv and config file -> [`Args`]: the options of each instance, as
//! E-MailRelay 2.6.1 parses them.
//!
//! The syntax is `getopt`'s (2.6.1's `G::GetOpt` rules: spellings, flag
//! values, duplicates, the end of the options), parsed by it; this adds
//! what only the relay has:
//!
//! - The config file is the last argument. Its lines hold an option name
//!   and a value separated by spaces, tabs or `=`, with `#` lines skipped
//!   and one pair of double quotes taken off the value; they are appended
//!   to the command line, so a duplicate there is a duplicate here too.
//! - `--<name>-spool-dir` starts an instance called `<name>`, and
//!   `--<name>-<option>` configures it; options without a prefix belong to
//!   the first instance. Each instance parses every word, skipping the
//!   others' options; the errors of all are listed once each, in the
//!   order of their bytes, as 2.6.1 lists them.
//!
//! Must not interpret values: that is the settings builders' job.

use std::path::{Path, PathBuf};

use super::options::{find_long, find_short, OptionSpec};
use super::ConfigError;
use crate::getopt::{self, Known, Name, Parsed};

/// The options given to one instance.
#[derive(Clone, Debug, Default)]
pub struct Instance {
    /// The instance's name (the option prefix); empty for the unnamed one.
    pub name: String,
    options: Parsed,
    /// The executable's directory, for `@app` in file names.
    app_dir: PathBuf,
    /// The working directory at startup, for relative file names.
    base_dir: PathBuf,
}

/// The parsed command line and config file.
#[derive(Clone, Debug)]
pub struct Args {
    /// One entry per instance, the first one first; never empty.
    pub instances: Vec<Instance>,
    /// The config file, if one was given.
    pub config_file: Option<PathBuf>,
}

impl Args {
    /// Parses the command line (without argv\[0\]), as bytes, which need
    /// not be UTF-8: errors give them back as they are, and values that
    /// are not UTF-8 reach the settings with U+FFFD in their place.
    pub fn parse_bytes(argv: &[Vec<u8>], app_dir: &Path) -> Result<Args, ConfigError> {
        match Args::parse_command_line(argv, app_dir)? {
            (_, Some(usage)) => Err(usage),
            (args, None) => Ok(args),
        }
    }

    /// Parses the command line (without argv\[0\]) and then any config file.
    pub fn parse(argv: &[String], app_dir: &Path) -> Result<Args, ConfigError> {
        let argv: Vec<Vec<u8>> = argv.iter().map(|w| w.as_bytes().to_vec()).collect();
        Args::parse_bytes(&argv, app_dir)
    }

    /// As [`parse_bytes`](Self::parse_bytes), but the command line's
    /// usage errors (syntax, too many arguments) come with what was
    /// understood: E-MailRelay compatibility, `--help` is shown even when
    /// the command line has errors, and `--version` despite too many
    /// arguments. An unreadable config file is still an error.
    pub fn parse_command_line(
        argv: &[Vec<u8>],
        app_dir: &Path,
    ) -> Result<(Args, Option<ConfigError>), ConfigError> {
        let config_file = survey(argv)
            .and_then(|s| s.first_arg)
            .map(|word| crate::platform::files::bytes_to_path(&word));
        let mut words = argv.to_vec();
        if let Some(path) = &config_file {
            // E-MailRelay compatibility: the config file is taken to be the
            // last argument, whatever it is.
            words.pop();
            words.extend(read_config_file(&expand_app(path, app_dir))?);
        }
        let mut prefixes = survey(&words).map_or_else(Vec::new, |s| s.prefixes);
        if prefixes.is_empty() {
            prefixes.push(None);
        }
        let base_dir = std::env::current_dir().unwrap_or_default();
        let mut errors = Vec::new();
        let mut stray = false;
        let mut instances = Vec::new();
        for (i, prefix) in prefixes.iter().enumerate() {
            let mut options = getopt::parse_with(&words, |name| lookup(name, i, &prefixes));
            errors.append(&mut options.errors);
            stray |= !std::mem::take(&mut options.args).is_empty();
            instances.push(Instance {
                name: String::from_utf8_lossy(prefix.as_deref().unwrap_or_default()).into_owned(),
                options,
                app_dir: app_dir.to_path_buf(),
                base_dir: base_dir.clone(),
            });
        }
        // In the order of their bytes, as 2.6.1 lists them, each text once
        // (`-a-` and `--=x` both say `invalid option: "--"`).
        errors.sort();
        errors.dedup();
        let usage = if !errors.is_empty() {
            Some(ConfigError::Usage(errors))
        } else if stray {
            Some(ConfigError::TooManyArgs)
        } else {
            None
        };
        let args = Args {
            instances,
            config_file,
        };
        Ok((args, usage))
    }

    /// The first instance, which also holds the process-wide options.
    pub fn first(&self) -> &Instance {
        &self.instances[0]
    }

    /// True if the option is on (or has a value) in the first instance.
    pub fn has(&self, name: &str) -> bool {
        self.first().has(name)
    }
}

impl Instance {
    /// True if the option was given (and not turned off).
    pub fn has(&self, name: &str) -> bool {
        self.options.contains(name)
    }

    /// The value of an option; a many-valued option's values joined with
    /// commas, as E-MailRelay reads them. `Some("")` for a flag.
    pub fn value(&self, name: &str) -> Option<String> {
        self.options.values(name).map(|v| lossy(v).join(","))
    }

    /// The values of an option, one per use.
    pub fn values(&self, name: &str) -> Vec<String> {
        lossy(self.options.values(name).unwrap_or_default())
    }

    /// A file name option's value with `@app` replaced by the program's
    /// directory and, for a daemon (which works from `/`), made absolute.
    /// E-MailRelay compatibility: the special values `<none>`,
    /// `<default>`, `pam:` and `plain:...` are left alone.
    pub fn path(&self, name: &str, daemon: bool) -> Option<PathBuf> {
        let value = self.value(name)?;
        let special = (value.starts_with('<') && value.ends_with('>'))
            || (name.ends_with("-auth") && (value == "pam:" || value == "/pam"))
            || (name == "client-auth" && value.starts_with("plain:"));
        if special {
            return Some(PathBuf::from(value));
        }
        Some(self.absolute(&self.expand_app(&value), daemon))
    }

    /// `@app` replaced by the program's directory.
    pub fn expand_app(&self, text: &str) -> String {
        text.replace("@app", &self.app_dir.to_string_lossy())
    }

    /// A relative path made absolute against the startup directory when
    /// `daemon` (E-MailRelay's rule).
    pub fn absolute(&self, path: &str, daemon: bool) -> PathBuf {
        let path = PathBuf::from(path);
        if path.is_absolute() || !daemon {
            path
        } else {
            self.base_dir.join(path)
        }
    }

    /// Every option given, by name, in name order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = self.options.names();
        names.sort_unstable();
        names
    }
}

/// Values for the settings: bytes that are not UTF-8 as U+FFFD.
fn lossy(values: Vec<&[u8]>) -> Vec<String> {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    values.into_iter().map(text).collect()
}

/// An option for instance `index` of those with `prefixes` (`None` for
/// the unnamed one): its own, another's (skipped), or none.
fn lookup(name: Name, index: usize, prefixes: &[Option<Vec<u8>>]) -> Option<Known> {
    let (spec, prefix) = find(name)?;
    let own = match prefix {
        None => index == 0,
        Some(p) if prefixes[index].as_deref() == Some(p) => true,
        Some(p) if prefixes.iter().any(|n| n.as_deref() == Some(p)) => false,
        Some(_) => return None,
    };
    Some(known(spec, own))
}

/// An option by its letter, its name, or `<prefix>-<name>`.
fn find(name: Name<'_>) -> Option<(&'static OptionSpec, Option<&[u8]>)> {
    let key = match name {
        // The letters are all ASCII.
        Name::Letter(c) => {
            let spec = c.is_ascii().then(|| find_short(char::from(c)))??;
            return Some((spec, None));
        }
        Name::Long(key) => key,
    };
    let by_name = |n: &[u8]| std::str::from_utf8(n).ok().and_then(find_long);
    if let Some(spec) = by_name(key) {
        return Some((spec, None));
    }
    let dash = key.iter().position(|&b| b == b'-')?;
    by_name(&key[dash + 1..]).map(|spec| (spec, Some(&key[..dash])))
}

fn known(spec: &'static OptionSpec, kept: bool) -> Known {
    Known {
        name: spec.name,
        takes: spec.takes,
        many: spec.many,
        kept,
    }
}

/// What a pass over the words finds that knows every option under any
/// prefix: `None` if some option is no option at all, which means no
/// config file and no named instances.
struct Survey {
    /// The prefixes of the `spool-dir` options, in order, each once.
    prefixes: Vec<Option<Vec<u8>>>,
    /// The first word after the options.
    first_arg: Option<Vec<u8>>,
}

/// E-MailRelay compatibility: as in 2.6.1, the config file is the first
/// argument (after `--` or the first other word, whatever follows), and
/// the instances are found before the options are parsed, by a pass of
/// their own; if one of the options is unknown there is neither (so
/// `--in-spool-dir` is then an invalid option too).
fn survey(words: &[Vec<u8>]) -> Option<Survey> {
    let mut prefixes = Vec::new();
    let mut unknown = false;
    let parsed = getopt::parse_with(words, |name| {
        let Some((spec, prefix)) = find(name) else {
            unknown = true;
            return None;
        };
        let prefix = prefix.map(<[u8]>::to_vec);
        if spec.name == "spool-dir" && !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
        Some(known(spec, true))
    });
    (!unknown).then(|| Survey {
        prefixes,
        first_arg: parsed.args.into_iter().next(),
    })
}

/// Reads a config file into `--name[=value]` words.
fn read_config_file(path: &Path) -> Result<Vec<Vec<u8>>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|_| ConfigError::ConfigFile(path.to_path_buf()))?;
    if bytes.contains(&0) {
        return Err(ConfigError::ConfigFileNul(path.to_path_buf()));
    }
    let lines = bytes.split(|&b| b == b'\n');
    Ok(lines
        .filter_map(|line| config_line(trim_end(line, b"\r")))
        .collect())
}

/// One config file line as a `--name[=value]` word; `None` for blank and
/// comment lines.
fn config_line(line: &[u8]) -> Option<Vec<u8>> {
    let seps = b" =\t";
    let line = &line[line.iter().position(|c| !seps.contains(c))?..];
    let key_end = line
        .iter()
        .position(|c| seps.contains(c))
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(key_end);
    if key.starts_with(b"#") {
        return None;
    }
    let start = rest
        .iter()
        .position(|c| !seps.contains(c))
        .unwrap_or(rest.len());
    let mut value = trim_end(&rest[start..], b" \t");
    if value.len() >= 2 && value.starts_with(b"\"") && value.ends_with(b"\"") {
        value = &value[1..value.len() - 1];
    }
    Some(match value {
        [] => [b"--", key].concat(),
        _ => [b"--", key, b"=", value].concat(),
    })
}

/// `text` without the bytes of `set` at its end.
fn trim_end<'a>(text: &'a [u8], set: &[u8]) -> &'a [u8] {
    let end = text
        .iter()
        .rposition(|c| !set.contains(c))
        .map_or(0, |p| p + 1);
    &text[..end]
}

/// `@app` in a path is the directory of the executable.
pub fn expand_app(path: &Path, app_dir: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    if !text.contains("@app") {
        return path.to_path_buf();
    }
    PathBuf::from(text.replace("@app", &app_dir.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, ConfigError> {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Args::parse(&argv, Path::new("/opt/emailrelay"))
    }

    fn usage(args: &[&str]) -> Vec<String> {
        match parse(args) {
            Err(ConfigError::Usage(e)) => e
                .iter()
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect(),
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn long_short_and_inline_spellings() {
        let a = parse(&["--port", "1", "--spool-dir=/s", "-dt", "-D", "x.example"]).unwrap();
        let a = a.first();
        assert_eq!(a.value("port").as_deref(), Some("1"));
        assert_eq!(a.value("spool-dir").as_deref(), Some("/s"));
        assert!(a.has("as-server") && a.has("no-daemon"));
        assert_eq!(a.value("domain").as_deref(), Some("x.example"));
        let a = parse(&["--anonymous", "-k"]).unwrap();
        assert_eq!(a.first().value("anonymous").as_deref(), Some(""));
        assert_eq!(a.first().value("syslog").as_deref(), Some(""));
    }

    #[test]
    fn letters_in_a_run_are_flags_only() {
        assert_eq!(
            usage(&["-p25"]),
            [
                "invalid option: \"-2\"",
                "invalid option: \"-5\"",
                "no value supplied for -p"
            ]
        );
        assert_eq!(usage(&["-ltp"]), ["no value supplied for -p"]);
        // As in E-MailRelay, the word after the run is then the config file.
        assert!(matches!(
            parse(&["-ltp", "25"]),
            Err(ConfigError::ConfigFile(_))
        ));
        assert_eq!(usage(&["--nosuch", "25"]), ["invalid option: \"--nosuch\""]);
    }

    #[test]
    fn flags_take_yes_and_no() {
        let a = parse(&["--no-daemon=yes", "--log=no"]).unwrap();
        assert!(a.has("no-daemon") && !a.has("log"));
        assert_eq!(
            usage(&["--no-daemon=maybe"]),
            ["cannot give a value with \"--no-daemon\" (maybe)"]
        );
        assert_eq!(
            usage(&["--log=no", "--log"]),
            ["conflicting values: \"--log\""]
        );
    }

    #[test]
    fn flag_values_as_e_mailrelay_reads_them() {
        // An empty value is no value: the flag is on.
        assert!(parse(&["--log="]).unwrap().has("log"));
        assert!(parse(&["--log=", "--log", "--log="]).is_ok());
        assert_eq!(usage(&["--log", "--log="]), ["duplicate use of \"--log\""]);
        assert_eq!(
            usage(&["--log=no", "--log="]),
            ["duplicate use of \"--log\""]
        );
        assert_eq!(
            usage(&["--log=", "--log=no"]),
            ["conflicting values: \"--log\""]
        );
        // Only ASCII white space around yes and no, in any case.
        assert!(parse(&["--log= \tYes\r\n", "--verbose=OFF"]).is_ok());
        for odd in ["\u{a0}yes", "yes\u{a0}", "\u{b}yes", "\u{c}no"] {
            assert_eq!(
                usage(&[&format!("--log={odd}")]),
                [format!("cannot give a value with \"--log\" ({odd})")]
            );
        }
    }

    #[test]
    fn words_that_are_not_utf8() {
        let argv = |words: &[&[u8]]| -> Vec<Vec<u8>> { words.iter().map(|w| w.to_vec()).collect() };
        let errors = match Args::parse_bytes(
            &argv(&[b"-\xff", b"--log=\xfe", b"--\xfd", b"--port", b"-\xfc"]),
            Path::new("/"),
        ) {
            Err(ConfigError::Usage(e)) => e,
            other => panic!("expected a usage error, got {other:?}"),
        };
        assert_eq!(
            errors,
            [
                &b"\"--port -\xfc\" is probably a mistake, use \"--port=... -\xfc\" or \"--port=-\xfc\""[..],
                b"cannot give a value with \"--log\" (\xfe)",
                b"invalid option: \"--\xfd\"",
                b"invalid option: \"-\xff\"",
            ]
        );
        // A value reaches the settings with U+FFFD for such bytes.
        let a = Args::parse_bytes(
            &argv(&[b"--domain=a\xffb", b"--filter=\xfe"]),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(a.first().value("domain").as_deref(), Some("a\u{fffd}b"));
        assert_eq!(a.first().values("filter"), ["\u{fffd}"]);
        // Two different such values are two values.
        assert!(
            Args::parse_bytes(&argv(&[b"--domain=\xff", b"--domain=\xfe"]), Path::new("/"))
                .is_err()
        );
    }

    #[test]
    fn letters_are_bytes() {
        let e = match parse(&["-\u{e9}"]) {
            Err(ConfigError::Usage(e)) => e,
            other => panic!("expected a usage error, got {other:?}"),
        };
        assert_eq!(
            e,
            [
                &b"invalid option: \"-\xa9\""[..],
                b"invalid option: \"-\xc3\""
            ]
        );
    }

    #[test]
    fn flag_spellings_of_an_option_with_a_value() {
        // A flag spelling after a value is fine, and keeps the value.
        let a = parse(&["--anonymous=vrfy", "-A", "--anonymous=vrfy"]).unwrap();
        assert_eq!(a.first().value("anonymous").as_deref(), Some("vrfy"));
        assert!(parse(&["--anonymous", "-A", "-A"]).is_ok());
        // A value after a flag spelling must be `yes`.
        assert!(parse(&["-A", "--anonymous=yes"]).is_ok());
        assert_eq!(
            usage(&["-A", "--anonymous"]),
            ["duplicate use of \"--anonymous\""]
        );
        assert_eq!(
            usage(&["-A", "--anonymous=vrfy"]),
            ["duplicate use of \"--anonymous\""]
        );
        assert_eq!(
            parse(&["-A"])
                .unwrap()
                .first()
                .value("anonymous")
                .as_deref(),
            Some("")
        );
    }

    #[test]
    fn duplicates_many_valued_options_and_mistakes() {
        assert_eq!(
            usage(&["-p", "1", "--port=2"]),
            ["duplicate use of \"--port\""]
        );
        assert!(parse(&["--port=1", "--port", "1", "-v", "--verbose"]).is_ok());
        let a = parse(&["--filter", "exit:0", "-z", "/bin/f", "-I", "127.0.0.1"]).unwrap();
        assert_eq!(a.first().values("filter"), ["exit:0", "/bin/f"]);
        assert_eq!(a.first().value("filter").as_deref(), Some("exit:0,/bin/f"));
        assert_eq!(
            usage(&["--port", "-5"]),
            ["\"--port -5\" is probably a mistake, use \"--port=... -5\" or \"--port=-5\""]
        );
        assert!(parse(&["--port=-5"]).is_ok());
        assert_eq!(usage(&["--port"]), ["no value supplied for \"--port\""]);
        assert_eq!(usage(&["--nosuch"]), ["invalid option: \"--nosuch\""]);
        // Two errors with one text are one line, as 2.6.1 prints them.
        assert_eq!(usage(&["-Q-", "--=x"]), ["invalid option: \"--\""]);
        assert_eq!(
            usage(&["--in-port", "1"]),
            ["invalid option: \"--in-port\""]
        );
    }

    #[test]
    fn s_is_the_delivery_dir_as_in_e_mailrelay() {
        // E-MailRelay 2.6.1 lists -s for both; its parser picks --delivery-dir.
        let a = parse(&["-s", "/d"]).unwrap();
        assert_eq!(a.first().value("delivery-dir").as_deref(), Some("/d"));
        assert!(!a.has("spool-dir"));
    }

    #[test]
    fn config_file_line_forms() {
        let line = |l: &str| config_line(l.as_bytes()).map(|w| String::from_utf8(w).unwrap());
        assert_eq!(line("port 25").as_deref(), Some("--port=25"));
        assert_eq!(line("port=25").as_deref(), Some("--port=25"));
        assert_eq!(line("  port = 25  ").as_deref(), Some("--port=25"));
        assert_eq!(line("port\t\t25").as_deref(), Some("--port=25"));
        assert_eq!(line("domain \"a b\"").as_deref(), Some("--domain=a b"));
        assert_eq!(line("domain 'a'").as_deref(), Some("--domain='a'"));
        assert_eq!(
            line("filter /f.sh # not a comment").as_deref(),
            Some("--filter=/f.sh # not a comment")
        );
        assert_eq!(line("domain=a=b").as_deref(), Some("--domain=a=b"));
        assert_eq!(line("log").as_deref(), Some("--log"));
        assert_eq!(line("domain=").as_deref(), Some("--domain"));
        assert_eq!(line("# port 25"), None);
        assert_eq!(line("#port 25"), None);
        assert_eq!(line("   "), None);
    }

    #[test]
    fn config_file_joins_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.conf");
        std::fs::write(&file, "# c\r\n\r\nlog\r\nport=25\nspool-dir @app/spool\n").unwrap();
        let a = parse(&["--verbose", file.to_str().unwrap()]).unwrap();
        assert_eq!(a.first().value("port").as_deref(), Some("25"));
        assert_eq!(a.first().value("spool-dir").as_deref(), Some("@app/spool"));
        assert!(a.has("log") && a.has("verbose"));
        assert_eq!(a.config_file.as_deref(), Some(file.as_path()));
        assert_eq!(
            usage(&["--port", "10025", file.to_str().unwrap()]),
            ["duplicate use of \"--port\""]
        );
        std::fs::write(&file, "port\n").unwrap();
        assert_eq!(
            usage(&[file.to_str().unwrap()]),
            ["no value supplied for \"--port\""]
        );
        std::fs::write(&file, "log\0\n").unwrap();
        assert!(matches!(
            parse(&[file.to_str().unwrap()]),
            Err(ConfigError::ConfigFileNul(_))
        ));
        assert!(matches!(
            parse(&["/nonexistent/e.conf"]),
            Err(ConfigError::ConfigFile(_))
        ));
        assert!(matches!(
            parse(&["a.conf", "--log"]),
            Err(ConfigError::ConfigFile(p)) if p == Path::new("a.conf")
        ));
        // The options end at the first other word, whatever follows, or
        // at `--`.
        for argv in [
            &["a.conf", "--nosuch"][..],
            &["--", "a.conf", "b"],
            &["-l", "a.conf", "-\u{e9}"],
        ] {
            assert!(matches!(
                parse(argv),
                Err(ConfigError::ConfigFile(p)) if p == Path::new("a.conf")
            ));
        }
        assert!(matches!(
            parse(&["--", "-x"]),
            Err(ConfigError::ConfigFile(p)) if p == Path::new("-x")
        ));
        assert!(parse(&["--log", "--"]).is_ok());
        assert!(matches!(
            Args::parse_bytes(&[b"--".to_vec(), b"\xff.conf".to_vec()], Path::new("/")),
            Err(ConfigError::ConfigFile(p)) if p == crate::platform::files::bytes_to_path(b"\xff.conf")
        ));
        // The file's lines come after the `--`, so they are arguments.
        std::fs::write(&file, "log\n").unwrap();
        assert!(matches!(
            parse(&["--", file.to_str().unwrap()]),
            Err(ConfigError::TooManyArgs)
        ));
    }

    #[test]
    fn named_instances() {
        let a = parse(&[
            "--log",
            "--in-spool-dir=/in",
            "--in-port",
            "25",
            "--out-spool-dir",
            "/out",
            "--out-port=587",
            "--domain",
            "d.example",
            "--out-forward-to",
            "smarthost:25",
        ])
        .unwrap();
        let names: Vec<_> = a.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["in", "out"]);
        let (inn, out) = (&a.instances[0], &a.instances[1]);
        assert_eq!(inn.value("spool-dir").as_deref(), Some("/in"));
        assert_eq!(inn.value("port").as_deref(), Some("25"));
        assert!(inn.has("log") && inn.has("domain") && !inn.has("forward-to"));
        assert_eq!(out.value("port").as_deref(), Some("587"));
        assert_eq!(out.value("forward-to").as_deref(), Some("smarthost:25"));
        assert!(!out.has("log") && !out.has("domain"));
        assert_eq!(
            usage(&["--in-spool-dir=/in", "--other-port=1"]),
            ["invalid option: \"--other-port\""]
        );
        // No option at all: no named instances either, as in 2.6.1.
        assert_eq!(
            usage(&["--in-spool-dir=/in", "--in-nosuch"]),
            [
                "invalid option: \"--in-nosuch\"",
                "invalid option: \"--in-spool-dir\""
            ]
        );
        assert_eq!(
            usage(&["--in-spool-dir=/in", "-%"]),
            [
                "invalid option: \"-%\"",
                "invalid option: \"--in-spool-dir\""
            ]
        );
    }

    #[test]
    fn another_instances_option_without_a_value_at_the_end() {
        // Found by fuzz/fuzz_targets/config_file.rs: skipping the missing
        // value of another instance's option ran past the last word.
        assert_eq!(
            usage(&["--spool-dir=/s", "--in-spool-dir=/in", "--port"]),
            ["no value supplied for \"--port\""]
        );
        assert_eq!(
            usage(&["--in-spool-dir=/in", "--out-spool-dir=/out", "--out-port"]),
            ["no value supplied for \"--port\""]
        );
    }
}
