//! The command line of the three programs, parsed by the rules of
//! E-MailRelay 2.6.1's `G::GetOpt` (the relay's `config::args` adds its
//! config file and named instances on top, through [`parse_with`]), and
//! `--help` laid out as its `G::OptionsUsage` lays it out (`usage`).
//!
//! The rules:
//!
//! - `--name value`, `--name=value`, `-x value`; a run of letters `-dtF`
//!   sets flags only (a letter that needs a value is an error there);
//!   `--flag=yes|no` (also y/n, t/f, true/false, 1/0, on/off, in any case,
//!   with ASCII spaces, tabs, CRs and LFs around) turns a flag on or off,
//!   and `--flag=` turns it on; `--name -v` is refused as probably a
//!   mistake, while `-x -v` takes `-v` as the value. Letters are bytes:
//!   `-é` is two unknown letters.
//! - A single-valued option given twice is an error unless the value is
//!   the same; the many-valued ones accumulate; flags may repeat. A flag
//!   spelling stands for the value `yes` in this check, a turned-off flag
//!   for `no`: a flag spelling after a value is fine (`--anonymous=vrfy
//!   -A`), a value after a flag spelling only if it is `yes`.
//! - Options end at `--` or at the first word that is not an option: the
//!   rest, options or not, are arguments.
//! - Errors are collected in the order met, and every one is reported.
//!
//! Works on bytes: an argument need not be UTF-8. Must not interpret
//! values: the tools do that.

mod usage;

pub use usage::{help_width, option_help, summary, usage, usage_at, HelpLayout};

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takes {
    /// A flag.
    Nothing,
    /// `--opt value`, `--opt=value` or `-o value`.
    Value,
    /// Only `--opt=value`; `--opt` and `-o` alone are allowed too.
    OptionalValue,
}

/// One row of a tool's option table.
#[derive(Debug)]
pub struct ToolOption {
    pub letter: Option<u8>,
    pub name: &'static str,
    pub takes: Takes,
    /// Accumulates values instead of refusing a second one.
    pub many: bool,
    /// Help level: 1 for plain `--help`, more for `--help --verbose`,
    /// 0 for options that are never listed.
    pub level: u8,
    /// The `<...>` in `--name=<...>`.
    pub value_name: &'static str,
    /// Our description, for the help.
    pub help: &'static str,
}

/// An option as the command line names it, for a table to look up.
#[derive(Clone, Copy, Debug)]
pub enum Name<'a> {
    /// `--<name>` (without `=value`).
    Long(&'a [u8]),
    /// `-<letter>`.
    Letter(u8),
}

/// What a table knows of an option.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    /// Its name, as uses and messages give it.
    pub name: &'static str,
    pub takes: Takes,
    pub many: bool,
    /// False for an option that is someone else's (the relay's other
    /// instances): its value word is taken, but nothing is kept and no
    /// error reported.
    pub kept: bool,
}

/// What the command line held.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// Per option use, in the order given (E-MailRelay keeps a multimap).
    entries: Vec<(&'static str, Entry)>,
    /// The words after the options.
    pub args: Vec<Vec<u8>>,
    /// Syntax errors, without the program name, in the order met.
    pub errors: Vec<Vec<u8>>,
}

/// One use of an option.
#[derive(Clone, Debug)]
struct Entry {
    value: Vec<u8>,
    /// Set by a flag spelling (`-v`, `--verbose`, `--verbose=no`), rather
    /// than by a value.
    flag: bool,
}

impl Entry {
    fn is_on(&self) -> bool {
        self.flag && is_positive(&self.value)
    }

    fn is_off(&self) -> bool {
        self.flag && is_negative(&self.value)
    }
}

/// The value a flag spelling stores, as E-MailRelay stores it: this is
/// what `-I` alone gives `--content-message-id`.
const ON: &[u8] = b"yes";
const OFF: &[u8] = b"no";

/// The program's arguments as bytes, without argv\[0\].
pub fn args_os() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut all = std::env::args_os().map(crate::platform::files::os_to_bytes);
    let program = all.next().unwrap_or_default();
    (program, all.collect())
}

/// E-MailRelay's name for the program in its messages: argv\[0\]'s last
/// component (by the system's separators) without its extension.
pub fn program_name(argv0: &[u8], fallback: &str) -> String {
    let last = argv0
        .rsplit(|&b| crate::platform::files::is_separator(b))
        .next()
        .unwrap_or(&[]);
    let text = String::from_utf8_lossy(last);
    let base = text.as_ref();
    let stem = match base.rfind('.') {
        Some(dot) if dot > 0 => &base[..dot],
        _ => base,
    };
    if stem.is_empty() {
        fallback.to_string()
    } else {
        stem.to_string()
    }
}

/// Parses `argv` (without argv\[0\]) against `table`.
pub fn parse(table: &'static [ToolOption], argv: &[Vec<u8>]) -> Parsed {
    parse_with(argv, |name| {
        let option = table.iter().find(|o| match name {
            Name::Long(n) => o.name.as_bytes() == n,
            Name::Letter(c) => o.letter == Some(c),
        })?;
        Some(Known {
            name: option.name,
            takes: option.takes,
            many: option.many,
            kept: true,
        })
    })
}

/// Parses `argv` (without argv\[0\]), looking each option up with
/// `lookup` (`None`: no such option), once per use, in order.
pub fn parse_with(argv: &[Vec<u8>], lookup: impl FnMut(Name) -> Option<Known>) -> Parsed {
    let mut parser = Parser {
        lookup,
        kept: true,
        out: Parsed::default(),
    };
    let mut i = 0;
    while i < argv.len() {
        let word = &argv[i];
        i += 1;
        if word == b"--" {
            break;
        }
        if word.len() > 2 && word.starts_with(b"--") {
            parser.long(&word[2..], argv, &mut i);
        } else if word.len() > 2 && word[0] == b'-' {
            for &letter in &word[1..] {
                parser.letter_on(letter);
            }
        } else if word.len() == 2 && word[0] == b'-' {
            parser.letter(word[1], argv, &mut i);
        } else {
            i -= 1;
            break;
        }
    }
    parser.out.args = argv[i..].to_vec();
    parser.out
}

impl Parsed {
    /// True if the option was given and not turned off.
    pub fn contains(&self, name: &str) -> bool {
        self.uses(name).any(|e| !e.is_off())
    }

    /// The option's value, a many-valued option's values joined with
    /// commas; `default` if it was not given or was turned off.
    pub fn value(&self, name: &str, default: &[u8]) -> Vec<u8> {
        let mut joined = Vec::new();
        let mut any = false;
        for entry in self.uses(name) {
            if any {
                joined.push(b',');
            }
            any = true;
            if entry.is_on() {
                return entry.value.clone();
            }
            if entry.is_off() {
                return default.to_vec();
            }
            joined.extend_from_slice(&entry.value);
        }
        if any {
            joined
        } else {
            default.to_vec()
        }
    }

    /// The values given, one per use (none for a flag spelling); `None`
    /// if the option was not given or was turned off.
    pub fn values<'a>(&'a self, name: &'a str) -> Option<Vec<&'a [u8]>> {
        if !self.contains(name) {
            return None;
        }
        let given = self.uses(name).filter(|e| !e.flag);
        Some(given.map(|e| e.value.as_slice()).collect())
    }

    /// Every option given and not turned off, once each, in order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (name, entry) in &self.entries {
            if !entry.is_off() && !names.contains(name) {
                names.push(*name);
            }
        }
        names
    }

    fn uses<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, e)| e)
    }

    fn first<'a>(&'a self, name: &'a str) -> Option<&'a Entry> {
        self.uses(name).next()
    }
}

struct Parser<F> {
    lookup: F,
    /// False while parsing an option that is not [`Known::kept`].
    kept: bool,
    out: Parsed,
}

impl<F: FnMut(Name) -> Option<Known>> Parser<F> {
    fn find(&mut self, name: Name) -> Option<Known> {
        let known = (self.lookup)(name);
        self.kept = known.is_none_or(|k| k.kept);
        known
    }

    /// `--name`, `--name=value` or `--name value`.
    fn long(&mut self, text: &[u8], argv: &[Vec<u8>], i: &mut usize) {
        let (key, inline) = split_eq(text);
        let Some(spec) = self.find(Name::Long(key)) else {
            return self.error(&[b"invalid option: \"--", key, b"\""]);
        };
        let n = spec.name.as_bytes();
        match (spec.takes, inline) {
            (Takes::Nothing, Some(v)) if is_positive(v) => self.flag(spec, ON),
            (Takes::Nothing, Some(v)) if is_negative(v) => self.flag(spec, OFF),
            (_, Some(v)) => self.value(spec, v, Spelling::Long(false)),
            (Takes::OptionalValue, None) => self.value(spec, b"", Spelling::Long(false)),
            (Takes::Value, None) => match argv.get(*i) {
                None => self.error(&[b"no value supplied for \"--", n, b"\""]),
                Some(v) => {
                    *i += 1;
                    self.value(spec, v, Spelling::Long(true));
                }
            },
            (Takes::Nothing, None) => self.flag(spec, ON),
        }
    }

    /// `-x` on its own, perhaps followed by its value.
    fn letter(&mut self, letter: u8, argv: &[Vec<u8>], i: &mut usize) {
        match self.find(Name::Letter(letter)) {
            Some(spec) if spec.takes == Takes::Value => match argv.get(*i) {
                None => self.error(&[b"no value supplied for -", &[letter]]),
                Some(v) => {
                    *i += 1;
                    self.value(spec, v, Spelling::Letter(letter));
                }
            },
            known => self.letter_as_flag(letter, known),
        }
    }

    /// A letter in a run of letters.
    fn letter_on(&mut self, letter: u8) {
        let known = self.find(Name::Letter(letter));
        self.letter_as_flag(letter, known);
    }

    /// A letter used as a flag, alone or in a run.
    fn letter_as_flag(&mut self, letter: u8, known: Option<Known>) {
        match known {
            None => self.error(&[b"invalid option: \"-", &[letter], b"\""]),
            Some(spec) if spec.takes == Takes::Value => {
                self.error(&[b"no value supplied for -", &[letter]])
            }
            Some(spec) => self.flag(spec, ON),
        }
    }

    fn flag(&mut self, spec: Known, value: &[u8]) {
        let turning_off = value == OFF;
        match self.out.first(spec.name) {
            Some(e) if e.is_off() != turning_off => {
                self.error(&[b"conflicting values: \"--", spec.name.as_bytes(), b"\""])
            }
            Some(_) => {}
            None => self.push(spec, value, true),
        }
    }

    fn value(&mut self, spec: Known, value: &[u8], spelling: Spelling) {
        let (n, v) = (spec.name.as_bytes(), value);
        if spelling == Spelling::Long(true) && value.first() == Some(&b'-') {
            return self.error(&[
                b"\"--",
                n,
                b" ",
                v,
                b"\" is probably a mistake, use \"--",
                n,
                b"=... ",
                v,
                b"\" or \"--",
                n,
                b"=",
                v,
                b"\"",
            ]);
        }
        if spec.takes == Takes::Nothing && !value.is_empty() {
            return self.error(&[b"cannot give a value with \"--", n, b"\" (", v, b")"]);
        }
        if spec.many {
            return self.push(spec, value, false);
        }
        match self.out.first(spec.name) {
            Some(e) if e.value != value => match spelling {
                Spelling::Letter(c) => self.error(&[b"duplicate use of \"-", &[c], b"\""]),
                Spelling::Long(_) => self.error(&[b"duplicate use of \"--", n, b"\""]),
            },
            Some(_) => {}
            None => self.push(spec, value, false),
        }
    }

    fn push(&mut self, spec: Known, value: &[u8], flag: bool) {
        if self.kept {
            let value = value.to_vec();
            self.out.entries.push((spec.name, Entry { value, flag }));
        }
    }

    fn error(&mut self, parts: &[&[u8]]) {
        if self.kept {
            self.out.errors.push(parts.concat());
        }
    }
}

/// How an option with a value was spelt: a letter, or a long name with the
/// value in the next word (`true`) or after `=`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spelling {
    Letter(u8),
    Long(bool),
}

/// `name=value` -> (`name`, `Some(value)`), where a name is made of
/// lower-case letters, digits, `-` and `_`; otherwise the whole word.
fn split_eq(text: &[u8]) -> (&[u8], Option<&[u8]>) {
    let is_name = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_');
    match text.iter().position(|c| !is_name(c)) {
        Some(p) if text[p] == b'=' => (&text[..p], Some(&text[p + 1..])),
        _ => (text, None),
    }
}

fn trimmed(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .trim_matches([' ', '\t', '\r', '\n'])
        .to_ascii_lowercase()
}

/// True for `y`, `yes`, `t`, `true`, `1` or `on` in any case, with ASCII
/// spaces, tabs, CRs and LFs around (and no other white space): 2.6.1's
/// rule for a flag's `--flag=value`.
fn is_positive(v: &[u8]) -> bool {
    matches!(trimmed(v).as_str(), "y" | "yes" | "t" | "true" | "1" | "on")
}

/// As [`is_positive`], for `n`, `no`, `f`, `false`, `0` or `off`.
fn is_negative(v: &[u8]) -> bool {
    matches!(
        trimmed(v).as_str(),
        "n" | "no" | "f" | "false" | "0" | "off"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) static TABLE: &[ToolOption] = &[
        ToolOption {
            letter: Some(b'v'),
            name: "verbose",
            takes: Takes::Nothing,
            many: false,
            level: 1,
            value_name: "",
            help: "says more",
        },
        ToolOption {
            letter: Some(b'f'),
            name: "from",
            takes: Takes::Value,
            many: false,
            level: 1,
            value_name: "address",
            help: "the sender",
        },
        ToolOption {
            letter: None,
            name: "to",
            takes: Takes::Value,
            many: true,
            level: 2,
            value_name: "address",
            help: "a recipient",
        },
        ToolOption {
            letter: Some(b'I'),
            name: "message-id",
            takes: Takes::OptionalValue,
            many: false,
            level: 2,
            value_name: "domain",
            help: "adds a Message-ID",
        },
        ToolOption {
            letter: None,
            name: "hidden",
            takes: Takes::Nothing,
            many: false,
            level: 0,
            value_name: "",
            help: "never listed",
        },
    ];

    fn run(words: &[&str]) -> Parsed {
        let argv: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        parse(TABLE, &argv)
    }

    fn errors(words: &[&str]) -> Vec<String> {
        run(words)
            .errors
            .iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    }

    #[test]
    fn spellings_values_and_arguments() {
        let p = run(&[
            "-f", "-x", "--to", "a,b", "--to=c", "-v", "r1", "--from", "r2",
        ]);
        assert!(p.errors.is_empty());
        assert_eq!(p.value("from", b""), b"-x");
        assert_eq!(p.value("to", b""), b"a,b,c");
        assert!(p.contains("verbose"));
        assert_eq!(p.args, [b"r1".to_vec(), b"--from".to_vec(), b"r2".to_vec()]);
        let p = run(&["--", "-v"]);
        assert!(!p.contains("verbose"));
        assert_eq!(p.args, [b"-v".to_vec()]);
        let p = run(&["-", "x"]);
        assert_eq!(p.args.len(), 2);
    }

    #[test]
    fn flags_yes_no_and_optional_values() {
        assert!(run(&["--verbose=yes"]).contains("verbose"));
        assert!(run(&["--verbose="]).contains("verbose"));
        assert!(!run(&["--verbose=off"]).contains("verbose"));
        assert!(run(&["-v", "-v", "--verbose"]).errors.is_empty());
        assert_eq!(run(&["-I"]).value("message-id", b"local"), b"yes");
        assert_eq!(run(&["--message-id"]).value("message-id", b"local"), b"");
        assert_eq!(run(&[]).value("message-id", b"local"), b"local");
        assert_eq!(
            run(&["--message-id=x", "-I"]).value("message-id", b"local"),
            b"x"
        );
    }

    #[test]
    fn errors_in_e_mailrelays_words_and_order() {
        assert_eq!(
            errors(&["--nosuch", "-z", "-vf", "--from"]),
            [
                "invalid option: \"--nosuch\"",
                "invalid option: \"-z\"",
                "no value supplied for -f",
                "no value supplied for \"--from\""
            ]
        );
        assert_eq!(errors(&["-f"]), ["no value supplied for -f"]);
        assert_eq!(
            errors(&["--from", "-x"]),
            ["\"--from -x\" is probably a mistake, use \"--from=... -x\" or \"--from=-x\""]
        );
        assert_eq!(
            errors(&["-f", "a", "--from=b", "-f", "c"]),
            ["duplicate use of \"--from\"", "duplicate use of \"-f\""]
        );
        assert!(errors(&["-f", "a", "--from=a"]).is_empty());
        assert_eq!(
            errors(&["--verbose=maybe"]),
            ["cannot give a value with \"--verbose\" (maybe)"]
        );
        assert_eq!(
            errors(&["--verbose=no", "-v"]),
            ["conflicting values: \"--verbose\""]
        );
        assert_eq!(errors(&["--From=x"]), ["invalid option: \"--From=x\""]);
    }

    #[test]
    fn options_not_kept_take_their_values_and_say_nothing() {
        let argv: Vec<Vec<u8>> = ["--other", "-x", "--nosuch", "-ob", "-o", "v", "r"]
            .iter()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        let mut looked_up = Vec::new();
        let p = parse_with(&argv, |name| {
            looked_up.push(format!("{name:?}"));
            let other = matches!(name, Name::Long(b"other") | Name::Letter(b'o'));
            other.then_some(Known {
                name: "other",
                takes: Takes::Value,
                many: false,
                kept: false,
            })
        });
        assert_eq!(
            p.errors,
            [
                &b"invalid option: \"--nosuch\""[..],
                b"invalid option: \"-b\""
            ]
        );
        assert_eq!(p.args, [b"r".to_vec()]);
        assert!(!p.contains("other") && p.names().is_empty());
        // Once per use, in order.
        assert_eq!(
            looked_up,
            [
                "Long([111, 116, 104, 101, 114])",
                "Long([110, 111, 115, 117, 99, 104])",
                "Letter(111)",
                "Letter(98)",
                "Letter(111)"
            ]
        );
    }

    #[test]
    fn values_and_names_as_given() {
        let p = run(&["--to=a", "-v", "--to", "b", "--from=c", "-f", "c"]);
        assert_eq!(p.values("to"), Some(vec![&b"a"[..], b"b"]));
        assert_eq!(p.values("verbose"), Some(vec![]));
        assert_eq!(p.values("from"), Some(vec![&b"c"[..]]));
        assert_eq!(p.values("message-id"), None);
        assert_eq!(run(&["--verbose=no"]).values("verbose"), None);
        assert_eq!(p.names(), ["to", "verbose", "from"]);
    }

    #[test]
    fn program_names_lose_directory_and_extension() {
        assert_eq!(
            program_name(b"/usr/sbin/emailrelay-submit", "x"),
            "emailrelay-submit"
        );
        assert_eq!(program_name(b"/tmp/submit.123.tmp", "x"), "submit.123");
        assert_eq!(program_name(b"", "fallback"), "fallback");
    }
}
