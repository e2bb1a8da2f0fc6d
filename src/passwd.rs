//! `emailrelay-passwd`: E-MailRelay 2.6.1's password hasher, option for
//! option. The password (first line of standard input, or `--password`)
//! becomes the HMAC-MD5 key state of an `md5` secrets-file line (base64,
//! or `--dotted` for the old dotted-decimal form), or with `--hash=none`
//! plain xtext. Ours also has `--oauth <account-file>`, the device-code
//! sign-in of an OAuth 2.0 account (see `auth::oauth`), and `--check
//! <account-file>`, which tells whether an account file works.
//!
//! Must not write anything but the result to standard output: scripts
//! paste it into secrets files.

use std::io::Write;

use emailrelay_proto::sasl::HmacMd5Key;

use crate::codec::{base64_decode_strict, xtext_encode};
use crate::getopt::{self, HelpLayout, Takes, ToolOption};

/// The options, as 2.6.1 has them (levels included), then ours.
pub static OPTIONS: &[ToolOption] = &[
    opt(Some(b'h'), "help", Takes::Nothing, 1, "", "prints this help and exits"),
    opt(Some(b'H'), "hash", Takes::Value, 1, "function",
        "the hash: MD5 (the default), or NONE for the password xtext-encoded"),
    opt(Some(b'p'), "password", Takes::Value, 2, "pwd",
        "the password, instead of reading it from standard input (beware: others can see command lines)"),
    opt(Some(b'b'), "base64", Takes::Nothing, 2, "", "the password given is base64-encoded"),
    opt(Some(b'd'), "dotted", Takes::Nothing, 2, "",
        "prints the old dotted-decimal form that early E-MailRelay versions read"),
    opt(Some(b'v'), "verbose", Takes::Nothing, 0, "", "more help with --help"),
    opt(Some(b't'), "tls", Takes::Nothing, 0, "", "hashes with the TLS library"),
    opt(Some(b'T'), "tls-config", Takes::Value, 0, "config", "TLS library configuration"),
    opt(None, "oauth", Takes::Value, 2, "account-file",
        "signs in to the OAuth 2.0 account described in the file (device code flow) and saves its refresh token there"),
    opt(None, "check", Takes::Value, 2, "account-file",
        "checks that the OAuth 2.0 account file works: gets a token and, for Microsoft Graph, checks the Mail.Send permission and the mailbox without sending anything"),
];

const fn opt(
    letter: Option<u8>,
    name: &'static str,
    takes: Takes,
    level: u8,
    value_name: &'static str,
    help: &'static str,
) -> ToolOption {
    ToolOption {
        letter,
        name,
        takes,
        many: false,
        level,
        value_name,
        help,
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Print the help (`verbose`: every option).
    Help { verbose: bool },
    /// Hash a password.
    Hash(HashRequest),
    /// Our `--oauth <account-file>`.
    OAuth(std::path::PathBuf),
    /// Our `--check <account-file>`.
    Check(std::path::PathBuf),
}

/// How to hash.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HashRequest {
    /// Upper case, as given to `--hash` (default `MD5`).
    pub function: String,
    pub dotted: bool,
    pub base64: bool,
    /// `--tls`: hash with the TLS library's digester.
    pub tls: bool,
    /// `--password`; `None` to read standard input.
    pub password: Option<Vec<u8>>,
}

/// Why the command line or the hashing failed; each is printed after the
/// program name and exits 1.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswdError {
    /// Option syntax errors, one line each (`error: ...`).
    #[error("option errors")]
    Usage(Vec<Vec<u8>>),
    /// Words that are not options.
    #[error("too many command-line arguments (the password is read from the standard input)")]
    TooManyArgs,
    /// A `--hash` this build cannot use.
    #[error("exception: invalid hash function")]
    InvalidHash,
    /// A hash 2.6.1's TLS libraries know but cannot use for CRAM keys
    /// (their digesters cannot export an intermediate state); 2.6.1 says
    /// the same.
    #[error("exception: tls error: hash state restoration not implemented for {0}")]
    NoHashState(String),
    /// `--dotted` with another hash.
    #[error("exception: --dotted only works for md5")]
    DottedNotMd5,
    /// An empty password.
    #[error("invalid password")]
    EmptyPassword,
    /// `--base64` and the password is not base64.
    #[error("exception: base64 encoding error")]
    Base64,
}

/// Interprets the command line (without argv\[0\]).
pub fn request(argv: &[Vec<u8>]) -> Result<Request, PasswdError> {
    let parsed = getopt::parse(OPTIONS, argv);
    if !parsed.errors.is_empty() {
        return Err(PasswdError::Usage(parsed.errors));
    }
    if parsed.contains("help") {
        return Ok(Request::Help {
            verbose: parsed.contains("verbose"),
        });
    }
    if !parsed.args.is_empty() {
        return Err(PasswdError::TooManyArgs);
    }
    if parsed.contains("check") {
        let file = parsed.value("check", b"");
        let file = crate::platform::files::bytes_to_os(file);
        return Ok(Request::Check(file.into()));
    }
    if parsed.contains("oauth") {
        let file = parsed.value("oauth", b"");
        let file = crate::platform::files::bytes_to_os(file);
        return Ok(Request::OAuth(file.into()));
    }
    let function = String::from_utf8_lossy(&parsed.value("hash", b"MD5")).to_uppercase();
    let request = HashRequest {
        function,
        dotted: parsed.contains("dotted"),
        base64: parsed.contains("base64"),
        tls: parsed.contains("tls"),
        password: parsed
            .contains("password")
            .then(|| parsed.value("password", b"")),
    };
    check_function(&request)?;
    Ok(Request::Hash(request))
}

/// `--check <account-file>`: the lines to print, and whether it works.
pub async fn check_account(path: &std::path::Path) -> (Vec<String>, Option<String>) {
    match crate::forward::graph::check::check_account(path).await {
        Ok(said) => (said, None),
        Err((said, error)) => (said, Some(error)),
    }
}

/// 2.6.1's checks of `--hash`, `--tls` and `--dotted`, in its order.
fn check_function(request: &HashRequest) -> Result<(), PasswdError> {
    let function = request.function.as_str();
    let xtext = function == "NONE";
    let native = function == "MD5" || xtext;
    // The digesters 2.6.1's TLS libraries list: known, but unusable here.
    let listed = matches!(function, "MD5" | "SHA1" | "SHA256");
    if (!native || request.tls) && !xtext && !listed {
        return Err(PasswdError::InvalidHash);
    }
    if request.dotted && function != "MD5" {
        return Err(PasswdError::DottedNotMd5);
    }
    Ok(())
}

/// The line to print for a password read from `stdin` (its first line,
/// trimmed of spaces, tabs and line endings) or given on the command line.
pub fn hash(
    request: &HashRequest,
    stdin: &mut dyn std::io::BufRead,
) -> Result<String, PasswdError> {
    let mut password = match &request.password {
        Some(p) => p.clone(),
        None => {
            let mut line = Vec::new();
            // A read error is as good as no password: 2.6.1 reads the same way.
            let _ = stdin.read_until(b'\n', &mut line);
            trim(&line).to_vec()
        }
    };
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    if request.base64 {
        password = base64_decode_strict(&password).map_err(|_| PasswdError::Base64)?;
    }
    if request.dotted {
        return Ok(dotted(&key_state(&password)));
    }
    match request.function.as_str() {
        "NONE" => Ok(xtext_encode(&password)),
        "MD5" if !request.tls => Ok(HmacMd5Key::new(&password).to_base64()),
        other => Err(PasswdError::NoHashState(other.to_string())),
    }
}

/// The help text.
pub fn help_text(program: &str, verbose: bool) -> String {
    let layout = HelpLayout {
        level_max: if verbose { 99 } else { 1 },
        abbreviated: false,
    };
    let mut text = getopt::usage(OPTIONS, program, layout, "");
    text.push('\n');
    text.push_str(NOTICE);
    text
}

/// The licence notice after the help.
pub const NOTICE: &str = "emailrelay-rs is free software under the GNU GPL version 3 or later,\n\
                          and comes with ABSOLUTELY NO WARRANTY.\n";

/// Prints a failure the way 2.6.1 does; returns the exit code.
pub fn report(program: &str, error: &PasswdError) -> u8 {
    let mut err = crate::platform::console::Text(std::io::stderr().lock());
    match error {
        PasswdError::Usage(lines) => {
            for line in lines {
                let _ = err.write_all(format!("{program}: error: ").as_bytes());
                let _ = err.write_all(line);
                let _ = err.write_all(b"\n");
            }
        }
        PasswdError::TooManyArgs => {
            let _ = write!(err, "{program}: {error}\nusage: {program}\n");
        }
        other => {
            let _ = writeln!(err, "{program}: {other}");
        }
    }
    1
}

/// The 32-octet inner+outer MD5 state that stands for the key.
fn key_state(password: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = HmacMd5Key::new(password).to_base64();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default()
}

/// The state as eight little-endian 32-bit words in decimal, dot-separated.
fn dotted(state: &[u8]) -> String {
    state
        .chunks(4)
        .map(|w| {
            let mut word = [0u8; 4];
            word[..w.len()].copy_from_slice(w);
            u32::from_le_bytes(word).to_string()
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn trim(line: &[u8]) -> &[u8] {
    let is_space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = line.iter().position(|c| !is_space(c)).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|c| !is_space(c))
        .map_or(start, |e| e + 1);
    &line[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn run(args: &[&str], input: &str) -> Result<String, PasswdError> {
        match request(&words(args))? {
            Request::Hash(r) => hash(&r, &mut input.as_bytes()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hashes_as_e_mailrelay_2_6_1() {
        // The values of 2.6.1's own test suite (testPasswd, testPasswdDotted).
        assert_eq!(
            run(&[], "foobar\n").unwrap(),
            "3pIN0aPbd5aN0S4ogKA3w2P3P9XH0hXchLP1W+adpQE="
        );
        assert_eq!(
            run(&["--dotted"], "foobar\n").unwrap(),
            "3507327710.2524437411.674156941.3275202688.3577739107.3692417735.1542828932.27631078"
        );
        assert_eq!(
            run(&["-p", "Zm9vYmFy", "-b"], "").unwrap(),
            run(&[], "foobar").unwrap()
        );
        assert_eq!(
            run(&["-H", "none"], " foo bar \t\r\n").unwrap(),
            "foo+20bar"
        );
        assert_eq!(
            run(&["-t", "-H", "NONE", "-p", "a=b"], "").unwrap(),
            "a+3Db"
        );
    }

    #[test]
    fn refusals_as_e_mailrelay_2_6_1() {
        assert_eq!(run(&[], "  \n"), Err(PasswdError::EmptyPassword));
        assert_eq!(run(&["-p", ""], "x\n"), Err(PasswdError::EmptyPassword));
        assert_eq!(run(&["-b", "-p", "Zm9vYmF"], ""), Err(PasswdError::Base64));
        assert_eq!(
            run(&["-H", "sha1"], "x"),
            Err(PasswdError::NoHashState("SHA1".into()))
        );
        assert_eq!(
            run(&["-t"], "x"),
            Err(PasswdError::NoHashState("MD5".into()))
        );
        assert_eq!(
            request(&words(&["-H", "sha512"])),
            Err(PasswdError::InvalidHash)
        );
        assert_eq!(
            request(&words(&["-d", "-H", "sha1"])),
            Err(PasswdError::DottedNotMd5)
        );
        assert_eq!(request(&words(&["x"])), Err(PasswdError::TooManyArgs));
        assert!(matches!(
            request(&words(&["-V"])),
            Err(PasswdError::Usage(_))
        ));
    }
}
