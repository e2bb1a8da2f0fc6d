//! argv and config file -> [`Args`]: the options of each instance, as
//! E-MailRelay 2.6.1 parses them.
//!
//! The rules, observed from the reference binary:
//!
//! - `--name value`, `--name=value`, `-x value`; a run of letters `-ltv`
//!   sets flags only (a letter that needs a value is an error there);
//!   `--flag=yes|no` (also y/n, true/false, t/f, 1/0, on/off, in any case,
//!   with ASCII spaces, tabs, CRs and LFs around) turns a flag on or off,
//!   and `--flag=` turns it on; `--name -v` is refused as probably a
//!   mistake; `--` ends the options. Letters are bytes: `-é` is two
//!   unknown letters.
//! - A single-valued option given twice with different values is an error
//!   (`duplicate use of "--port"`), the same value twice is fine; the
//!   many-valued ones (`--filter`, `--interface`, ...) accumulate. A flag
//!   spelling (`-A`, `--log`) stands for the value `yes` in this check, a
//!   turned-off flag for `no`; a flag spelling after a value is fine
//!   (`--anonymous=vrfy -A`, `--log= --log`), a value after a flag
//!   spelling only if it is `yes` (`-A --anonymous` is a duplicate).
//! - The config file is the last argument. Its lines hold an option name
//!   and a value separated by spaces, tabs or `=`, with `#` lines skipped
//!   and one pair of double quotes taken off the value; they are appended
//!   to the command line, so a duplicate there is a duplicate here too.
//! - `--<name>-spool-dir` starts an instance called `<name>`, and
//!   `--<name>-<option>` configures it; options without a prefix belong to
//!   the first instance.
//!
//! Must not interpret values: that is the settings builders' job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::options::{find_long, find_short, Arg, OptionSpec};
use super::ConfigError;

/// The options given to one instance.
#[derive(Clone, Debug, Default)]
pub struct Instance {
    /// The instance's name (the option prefix); empty for the unnamed one.
    pub name: String,
    values: BTreeMap<&'static str, Value>,
    /// The executable's directory, for `@app` in file names.
    app_dir: PathBuf,
    /// The working directory at startup, for relative file names.
    base_dir: PathBuf,
}

/// What was given for one option.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    /// A flag spelling, on (`--log`, `--log=yes`, `-A`).
    On,
    /// A flag explicitly off (`--log=no`): as if not given.
    Off,
    /// One or more values, in order (`--log=` gives a flag the value
    /// `""`, which counts as on).
    Text(Vec<String>),
}

/// One syntax error in the options, in E-MailRelay 2.6.1's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// No such option (or an unknown instance prefix).
    #[error("invalid option: \"--{0}\"")]
    UnknownLong(String),
    /// A letter that is no option: one byte, as 2.6.1 reports them.
    #[error("invalid option: \"-{}\"", String::from_utf8_lossy(&[*.0]))]
    UnknownShort(u8),
    #[error("no value supplied for \"--{0}\"")]
    MissingLong(&'static str),
    /// A letter that needs a value given in a run of letters, or last.
    #[error("no value supplied for -{0}")]
    MissingShort(char),
    /// `--name -v`: the value looks like an option.
    #[error("\"--{name} {value}\" is probably a mistake, use \"--{name}=... {value}\" or \"--{name}={value}\"")]
    ValueLikeOption { name: &'static str, value: String },
    /// A flag turned both on and off, or a flag and a value for one option.
    #[error("conflicting values: \"--{0}\"")]
    Conflicting(&'static str),
    #[error("cannot give a value with \"--{name}\" ({value})")]
    ValueForFlag { name: &'static str, value: String },
    /// A single-valued option given twice with different values.
    #[error("duplicate use of \"--{0}\"")]
    DuplicateLong(&'static str),
    #[error("duplicate use of \"-{0}\"")]
    DuplicateShort(char),
}

impl OptionError {
    /// The message as bytes: as [`Display`](std::fmt::Display), but an
    /// unknown letter is its byte itself, which need not be UTF-8.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            OptionError::UnknownShort(b) => [&b"invalid option: \"-"[..], &[*b], b"\""].concat(),
            other => unescape(&other.to_string()),
        }
    }
}

/// The first of the 256 code points (U+10FF00 to U+10FFFF, private use)
/// that stand for the bytes of a word that are not UTF-8 (see [`escape`]).
const ESCAPE_BASE: u32 = 0x10_ff00;

/// A word or config file as text for the parser: valid UTF-8 as it is,
/// each other byte as a code point of its own (`ESCAPE_BASE + byte`),
/// so that messages can give the bytes back as 2.6.1 does
/// ([`unescape`]) and nothing panics on them.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.extend(char::from_u32(ESCAPE_BASE + u32::from(b)));
        }
    }
    out
}

/// The bytes an [`escape`]d text stands for.
fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u32::from(c).checked_sub(ESCAPE_BASE) {
            Some(b) => out.push(b as u8),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// An [`escape`]d value for the settings: bytes that are not UTF-8 as
/// U+FFFD.
fn unescape_lossy(text: &str) -> String {
    if text.chars().any(|c| u32::from(c) >= ESCAPE_BASE) {
        String::from_utf8_lossy(&unescape(text)).into_owned()
    } else {
        text.to_string()
    }
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
        let words: Vec<String> = argv.iter().map(|w| escape(w)).collect();
        Args::parse(&words, app_dir)
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
        let words: Vec<String> = argv.iter().map(|w| escape(w)).collect();
        Args::parse_all(&words, app_dir)
    }

    /// Parses the command line (without argv\[0\]) and then any config file.
    pub fn parse(argv: &[String], app_dir: &Path) -> Result<Args, ConfigError> {
        match Args::parse_all(argv, app_dir)? {
            (_, Some(usage)) => Err(usage),
            (args, None) => Ok(args),
        }
    }

    fn parse_all(
        argv: &[String],
        app_dir: &Path,
    ) -> Result<(Args, Option<ConfigError>), ConfigError> {
        let config_file = find_config_file(argv)
            .map(|word| crate::platform::files::bytes_to_path(&unescape(&word)));
        let mut words = argv.to_vec();
        if let Some(path) = &config_file {
            // E-MailRelay compatibility: the config file is taken to be the
            // last argument, whatever it is.
            words.pop();
            words.extend(read_config_file(&expand_app(path, app_dir))?);
        }
        let names = instance_names(&words);
        let base_dir = std::env::current_dir().unwrap_or_default();
        let mut errors = Vec::new();
        let mut instances = Vec::new();
        let mut stray = false;
        for (i, name) in names.iter().enumerate() {
            let mut instance = Instance {
                name: name.trim_end_matches('-').to_string(),
                values: BTreeMap::new(),
                app_dir: app_dir.to_path_buf(),
                base_dir: base_dir.clone(),
            };
            let resolve = |word: &str| resolve(word, i, &names);
            stray |= !instance
                .parse_words(&words, resolve, &mut errors)
                .is_empty();
            instances.push(instance);
        }
        // In the order of their texts' bytes, as 2.6.1 lists them, each
        // text once (`-a-` and `--=x` both say `invalid option: "--"`).
        errors.sort_by_cached_key(OptionError::to_bytes);
        errors.dedup_by(|a, b| a.to_bytes() == b.to_bytes());
        let usage = if !errors.is_empty() {
            Some(ConfigError::Usage(errors))
        } else if stray {
            Some(ConfigError::TooManyArgs)
        } else {
            None
        };
        for instance in &mut instances {
            for value in instance.values.values_mut() {
                if let Value::Text(list) = value {
                    list.iter_mut().for_each(|v| *v = unescape_lossy(v));
                }
            }
        }
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
        matches!(self.values.get(name), Some(Value::On | Value::Text(_)))
    }

    /// The value of an option; a many-valued option's values joined with
    /// commas, as E-MailRelay reads them. `Some("")` for a flag.
    pub fn value(&self, name: &str) -> Option<String> {
        match self.values.get(name)? {
            Value::On => Some(String::new()),
            Value::Off => None,
            Value::Text(v) => Some(v.join(",")),
        }
    }

    /// The values of an option, one per use.
    pub fn values(&self, name: &str) -> &[String] {
        match self.values.get(name) {
            Some(Value::Text(v)) => v,
            _ => &[],
        }
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

    /// Every option given, by name.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.values
            .iter()
            .filter(|(_, v)| **v != Value::Off)
            .map(|(k, _)| *k)
    }

    /// Parses `words` into this instance; returns the words left over
    /// after the first non-option.
    fn parse_words(
        &mut self,
        words: &[String],
        resolve: impl Fn(&str) -> Resolved,
        errors: &mut Vec<OptionError>,
    ) -> Vec<String> {
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            i += 1;
            if word == "--" {
                break;
            }
            if let Some(long) = word.strip_prefix("--").filter(|l| !l.is_empty()) {
                self.parse_long(long, words, &mut i, &resolve, errors);
            } else if word.len() > 1 && word.starts_with('-') {
                let letters = unescape(&word[1..]);
                self.parse_short(&letters, words, &mut i, &resolve, errors);
            } else {
                i -= 1;
                break;
            }
        }
        words[i..].to_vec()
    }

    fn parse_long(
        &mut self,
        long: &str,
        words: &[String],
        i: &mut usize,
        resolve: &impl Fn(&str) -> Resolved,
        errors: &mut Vec<OptionError>,
    ) {
        let (key, inline) = split_eq(long);
        let spec = match resolve(key) {
            Resolved::Unknown => return errors.push(OptionError::UnknownLong(key.to_string())),
            Resolved::Other(spec) => {
                // Another instance's option: skip its value too, if there
                // is one (that instance reports a missing one).
                if spec.arg == Arg::Required && inline.is_none() && *i < words.len() {
                    *i += 1;
                }
                return;
            }
            Resolved::Own(spec) => spec,
        };
        let result = match (spec.arg, inline) {
            (Arg::None, Some(v)) if is_positive(v) => self.set_flag(spec, Value::On),
            (Arg::None, Some(v)) if is_negative(v) => self.set_flag(spec, Value::Off),
            (_, Some(v)) => self.set_value(spec, v, Spelling::Long),
            (Arg::Optional, None) => self.set_value(spec, "", Spelling::Long),
            (Arg::Required, None) => match words.get(*i) {
                None => Err(OptionError::MissingLong(spec.name)),
                Some(v) if v.starts_with('-') => {
                    *i += 1;
                    Err(OptionError::ValueLikeOption {
                        name: spec.name,
                        value: v.clone(),
                    })
                }
                Some(v) => {
                    *i += 1;
                    self.set_value(spec, v, Spelling::Long)
                }
            },
            (Arg::None, None) => self.set_flag(spec, Value::On),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }

    fn parse_short(
        &mut self,
        letters: &[u8],
        words: &[String],
        i: &mut usize,
        resolve: &impl Fn(&str) -> Resolved,
        errors: &mut Vec<OptionError>,
    ) {
        // E-MailRelay compatibility: letters are bytes, so `-é` is two
        // unknown letters.
        let single = letters.len() == 1;
        for &byte in letters {
            let Some(spec) = short_spec(byte) else {
                errors.push(OptionError::UnknownShort(byte));
                continue;
            };
            let letter = char::from(byte);
            let own = match resolve(spec.name) {
                Resolved::Own(_) => true,
                Resolved::Other(_) => false,
                Resolved::Unknown => unreachable!("an option found by letter is known"),
            };
            let result = match spec.arg {
                // E-MailRelay compatibility: `-p25` and `-lp 25` are errors;
                // only a letter on its own takes the next word as its value.
                Arg::Required if !single => Err(OptionError::MissingShort(letter)),
                Arg::Required => match words.get(*i) {
                    None if own => Err(OptionError::MissingShort(letter)),
                    None => Ok(()),
                    Some(v) => {
                        *i += 1;
                        if own {
                            self.set_value(spec, v, Spelling::Short(letter))
                        } else {
                            Ok(())
                        }
                    }
                },
                _ if !own => Ok(()),
                // `-A` is a flag spelling of an option with an optional
                // value.
                Arg::Optional | Arg::None => self.set_flag(spec, Value::On),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
    }

    /// A flag spelling, turning the option on or off: a conflict if it
    /// was turned the other way before; a flag spelling after a value
    /// (`--anonymous=vrfy -A`, `--log= --log`) counts as on and is fine.
    fn set_flag(&mut self, spec: &'static OptionSpec, value: Value) -> Result<(), OptionError> {
        match (self.values.get(spec.name), &value) {
            (None, _) => {
                self.values.insert(spec.name, value);
                Ok(())
            }
            (Some(Value::Off), Value::Off) => Ok(()),
            (Some(Value::Off), _) | (Some(_), Value::Off) => {
                Err(OptionError::Conflicting(spec.name))
            }
            (Some(_), _) => Ok(()),
        }
    }

    fn set_value(
        &mut self,
        spec: &'static OptionSpec,
        value: &str,
        spelling: Spelling,
    ) -> Result<(), OptionError> {
        // E-MailRelay compatibility: an empty value is no value, so
        // `--log=` turns a flag on.
        if spec.arg == Arg::None && !value.is_empty() {
            return Err(OptionError::ValueForFlag {
                name: spec.name,
                value: value.to_string(),
            });
        }
        // The value seen before: a flag spelling stands for `yes` (on) or
        // `no` (off), as 2.6.1 stores them.
        let old = match self.values.get_mut(spec.name) {
            None => {
                self.values
                    .insert(spec.name, Value::Text(vec![value.to_string()]));
                return Ok(());
            }
            Some(Value::Text(list)) if spec.many => {
                list.push(value.to_string());
                return Ok(());
            }
            Some(Value::Text(list)) => list.first().map_or("", String::as_str),
            Some(Value::On) => "yes",
            Some(Value::Off) => "no",
        };
        if old == value {
            return Ok(());
        }
        Err(match spelling {
            Spelling::Long => OptionError::DuplicateLong(spec.name),
            Spelling::Short(c) => OptionError::DuplicateShort(c),
        })
    }
}

/// How an option was spelt, for the duplicate error.
#[derive(Clone, Copy)]
enum Spelling {
    Long,
    Short(char),
}

/// Whose option a word names, for the instance being parsed.
enum Resolved {
    /// This instance's.
    Own(&'static OptionSpec),
    /// A known option of another instance: skipped.
    Other(&'static OptionSpec),
    /// No such option (or an unknown prefix).
    Unknown,
}

/// Resolves `word` for instance `index` of `names` (the prefixes with
/// their dash, `""` for the unnamed instance).
fn resolve(word: &str, index: usize, names: &[String]) -> Resolved {
    let Some((spec, prefix)) = find_prefixed(word) else {
        return Resolved::Unknown;
    };
    match prefix {
        None if index == 0 => Resolved::Own(spec),
        None => Resolved::Other(spec),
        Some(p) if names[index].strip_suffix('-') == Some(p) => Resolved::Own(spec),
        Some(p) if names.iter().any(|n| n.strip_suffix('-') == Some(p)) => Resolved::Other(spec),
        Some(_) => Resolved::Unknown,
    }
}

/// An option by its name, or by `<prefix>-<name>`.
fn find_prefixed(word: &str) -> Option<(&'static OptionSpec, Option<&str>)> {
    if let Some(spec) = find_long(word) {
        return Some((spec, None));
    }
    let (prefix, tail) = word.split_once('-')?;
    find_long(tail).map(|spec| (spec, Some(prefix)))
}

/// The instances' prefixes (with their dash), in the order their
/// `spool-dir` options appear; `[""]` when there is none.
/// E-MailRelay compatibility: as in 2.6.1, the options are read up to `--`
/// or the first other word, and if one of them is no option at all there
/// are no named instances (so `--in-spool-dir` is then an invalid option
/// too).
fn instance_names(words: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if word == "--" {
            break;
        }
        let Some(long) = word.strip_prefix("--").filter(|l| !l.is_empty()) else {
            if word.len() < 2 || !word.starts_with('-') {
                break;
            }
            let letters = unescape(&word[1..]);
            if letters.iter().any(|&b| short_spec(b).is_none()) {
                return vec![String::new()];
            }
            // Skip a single letter's value.
            let needs = letters.len() == 1
                && short_spec(letters[0]).is_some_and(|s| s.arg == Arg::Required);
            i += usize::from(needs);
            continue;
        };
        let (key, inline) = split_eq(long);
        let Some((spec, prefix)) = find_prefixed(key) else {
            return vec![String::new()];
        };
        if spec.arg == Arg::Required && inline.is_none() {
            i += 1;
        }
        if spec.name == "spool-dir" {
            let name = prefix.map(|p| format!("{p}-")).unwrap_or_default();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        names.push(String::new());
    }
    names
}

/// The config file: the first argument after the options (which end at
/// `--` or at the first word that is not an option or an option's value,
/// whatever follows), provided the options before it are all known.
/// E-MailRelay compatibility: it is then taken off the end of the command
/// line, so it must be the last argument.
fn find_config_file(argv: &[String]) -> Option<String> {
    let takes_value = |spec: &OptionSpec| spec.arg == Arg::Required;
    let mut i = 0;
    while i < argv.len() {
        let word = &argv[i];
        i += 1;
        if word == "--" {
            return argv.get(i).cloned();
        }
        if let Some(long) = word.strip_prefix("--").filter(|l| !l.is_empty()) {
            let (key, inline) = split_eq(long);
            match find_prefixed(key) {
                Some((spec, _)) if takes_value(spec) && inline.is_none() => i += 1,
                Some(_) => {}
                None => return None,
            }
        } else if word.len() > 1 && word.starts_with('-') {
            let letters = &word.as_bytes()[1..];
            for &letter in letters {
                match short_spec(letter) {
                    Some(spec) if letters.len() == 1 && takes_value(spec) => i += 1,
                    Some(_) => {}
                    None => return None,
                }
            }
        } else {
            return Some(word.clone());
        }
    }
    None
}

/// Reads a config file into `--name[=value]` words.
fn read_config_file(path: &Path) -> Result<Vec<String>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|_| ConfigError::ConfigFile(path.to_path_buf()))?;
    let text = escape(&bytes);
    let mut words = Vec::new();
    for line in text.split('\n') {
        if line.contains('\0') {
            return Err(ConfigError::ConfigFileNul(path.to_path_buf()));
        }
        if let Some(word) = config_line(line.trim_end_matches('\r')) {
            words.push(word);
        }
    }
    Ok(words)
}

/// One config file line as a `--name[=value]` word; `None` for blank and
/// comment lines.
fn config_line(line: &str) -> Option<String> {
    let is_sep = |c: char| matches!(c, ' ' | '=' | '\t');
    let line = line.trim_start_matches(is_sep);
    let key_end = line.find(is_sep).unwrap_or(line.len());
    let key = &line[..key_end];
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    let mut value = line[key_end..]
        .trim_start_matches(is_sep)
        .trim_end_matches([' ', '\t']);
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        value = &value[1..value.len() - 1];
    }
    Some(if value.is_empty() {
        format!("--{key}")
    } else {
        format!("--{key}={value}")
    })
}

/// `@app` in a path is the directory of the executable.
pub fn expand_app(path: &Path, app_dir: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    if !text.contains("@app") {
        return path.to_path_buf();
    }
    PathBuf::from(text.replace("@app", &app_dir.to_string_lossy()))
}

/// `name=value` -> (`name`, `Some(value)`), where a name is made of
/// lower-case letters, digits, `-` and `_`.
fn split_eq(long: &str) -> (&str, Option<&str>) {
    let end = long
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
        .unwrap_or(long.len());
    match long[end..].strip_prefix('=') {
        Some(value) => (&long[..end], Some(value)),
        None => (long, None),
    }
}

/// An option letter by its byte (the letters are all ASCII).
fn short_spec(byte: u8) -> Option<&'static OptionSpec> {
    byte.is_ascii()
        .then(|| find_short(char::from(byte)))
        .flatten()
}

/// A flag's value as `yes`, by 2.6.1's and `getopt`'s rule.
fn is_positive(v: &str) -> bool {
    crate::getopt::is_positive(v.as_bytes())
}

/// A flag's value as `no`, by 2.6.1's and `getopt`'s rule.
fn is_negative(v: &str) -> bool {
    crate::getopt::is_negative(v.as_bytes())
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
            Err(ConfigError::Usage(e)) => e.iter().map(ToString::to_string).collect(),
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
            Err(ConfigError::Usage(e)) => e.iter().map(OptionError::to_bytes).collect::<Vec<_>>(),
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
        let bytes: Vec<Vec<u8>> = e.iter().map(OptionError::to_bytes).collect();
        assert_eq!(
            bytes,
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
        assert_eq!(config_line("port 25").as_deref(), Some("--port=25"));
        assert_eq!(config_line("port=25").as_deref(), Some("--port=25"));
        assert_eq!(config_line("  port = 25  ").as_deref(), Some("--port=25"));
        assert_eq!(config_line("port\t\t25").as_deref(), Some("--port=25"));
        assert_eq!(
            config_line("domain \"a b\"").as_deref(),
            Some("--domain=a b")
        );
        assert_eq!(config_line("domain 'a'").as_deref(), Some("--domain='a'"));
        assert_eq!(
            config_line("filter /f.sh # not a comment").as_deref(),
            Some("--filter=/f.sh # not a comment")
        );
        assert_eq!(config_line("domain=a=b").as_deref(), Some("--domain=a=b"));
        assert_eq!(config_line("log").as_deref(), Some("--log"));
        assert_eq!(config_line("domain=").as_deref(), Some("--domain"));
        assert_eq!(config_line("# port 25"), None);
        assert_eq!(config_line("#port 25"), None);
        assert_eq!(config_line("   "), None);
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
