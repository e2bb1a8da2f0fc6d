//! Address verifiers (`--address-verifier`): a program, a `net:` server or
//! the built-in `account:` decides for each RCPT (and VRFY) whether the
//! address is a local mailbox, a remote address (possibly rewritten),
//! invalid (550), unavailable for now (450), or a reason to drop the
//! connection (E-MailRelay's reference, "Address verifiers").
//!
//! Requests and answers are read and written as E-MailRelay 2.6.1 does,
//! log lines included; the fifth field is the AUTH mechanism in lower case
//! (`none` when the client has not authenticated) and the sixth the AUTH
//! name, or the keyword of a trusted address.
//!
//! What comes back is checked before use: a mailbox name must be one plain
//! directory name, and a rewritten address must be a single SMTP path.

mod account;

use std::path::PathBuf;
use std::time::Duration;

use emailrelay_proto::smtp::{Reply, VerifyResult};

use crate::net::line::LineClient;

pub use account::AccountOptions;

/// A `--address-verifier` value that cannot be used, worded as 2.6.1
/// words it (`invalid verifier specification: ...`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifierError {
    /// `net:` without a `host:port` or path.
    #[error("invalid verifier specification: invalid host:service format{}", colon(.0))]
    Address(String),
    /// `exit:` without a number.
    #[error("invalid verifier specification: not a numeric exit code: {0}")]
    Exit(String),
    /// `account:` with a uid range that does not parse.
    #[error("invalid verifier specification: not a valid numeric range: {0}")]
    Range(String),
    /// `file:` with nothing after it.
    #[error("invalid verifier specification: empty file path")]
    EmptyPath,
}

/// `: <text>`, or nothing for an empty text.
fn colon(text: &str) -> String {
    match text.is_empty() {
        true => String::new(),
        false => format!(": {text}"),
    }
}

/// A parsed `--address-verifier`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifierSpec {
    Program(PathBuf),
    Net(String),
    Account(AccountOptions),
    /// `exit:<n>`: every address accepted as remote, as 2.6.1's internal
    /// verifier does.
    Exit(u32),
}

impl VerifierSpec {
    pub fn parse(text: &str) -> Result<VerifierSpec, VerifierError> {
        match text.split_once(':') {
            Some(("exit", code)) => code
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| code.parse().ok())
                .flatten()
                .map(VerifierSpec::Exit)
                .ok_or_else(|| VerifierError::Exit(code.to_string())),
            Some(("net", address)) => {
                let usable = address.starts_with('/')
                    || address
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && !p.is_empty());
                match usable {
                    true => Ok(VerifierSpec::Net(address.to_string())),
                    false => Err(VerifierError::Address(address.to_string())),
                }
            }
            Some(("account", params)) => AccountOptions::parse(params)
                .map(VerifierSpec::Account)
                .map_err(|range| VerifierError::Range(range.to_string())),
            Some(("file", "")) => Err(VerifierError::EmptyPath),
            Some(("file", path)) => Ok(program(path)),
            _ => Ok(program(text)),
        }
    }
}

fn program(path: &str) -> VerifierSpec {
    VerifierSpec::Program(std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path)))
}

/// One question for the verifier: E-MailRelay's six arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The recipient as the client gave it.
    pub address: String,
    /// MAIL FROM, or "" for VRFY.
    pub from: String,
    /// The client's address as 2.6.1 shows it (`ip:port`, or `ip.port`
    /// for IPv6).
    pub peer: String,
    /// Our domain (`--domain`).
    pub domain: String,
    /// The AUTH mechanism in lower case, `none` if not authenticated.
    pub mechanism: String,
    /// The AUTH name, or the trusted address's keyword.
    pub auth_name: String,
    /// A VRFY rather than a RCPT: refusals are not logged.
    pub vrfy: bool,
}

impl VerifyRequest {
    /// The six fields in E-MailRelay's order.
    fn fields(&self) -> [&str; 6] {
        [
            &self.address,
            &self.from,
            &self.peer,
            &self.domain,
            &self.mechanism,
            &self.auth_name,
        ]
    }
}

/// A verifier, ready to ask.
pub struct Verifier {
    kind: Kind,
    timeout: Duration,
}

enum Kind {
    Program(PathBuf),
    Net(LineClient),
    Account(AccountOptions),
    AcceptAll,
}

impl Verifier {
    pub fn new(spec: VerifierSpec, timeout: Duration) -> Verifier {
        let kind = match spec {
            VerifierSpec::Program(path) => Kind::Program(path),
            VerifierSpec::Net(address) => Kind::Net(LineClient::new(address)),
            VerifierSpec::Account(options) => Kind::Account(options),
            VerifierSpec::Exit(_) => Kind::AcceptAll,
        };
        Verifier { kind, timeout }
    }

    /// True for a `net:` verifier (2.6.1 logs its abort differently).
    pub fn is_network(&self) -> bool {
        matches!(self.kind, Kind::Net(_))
    }

    /// The verdict on one address.
    pub async fn verify(&self, request: &VerifyRequest) -> VerifyResult {
        let status = match &self.kind {
            Kind::Program(path) => self.ask_program(path, request).await,
            Kind::Net(client) => self.ask_net(client, request).await,
            Kind::Account(options) => account::verify(options, request).status(),
            Kind::AcceptAll => Status::Remote(String::new()),
        };
        if let Status::Invalid {
            response, reason, ..
        } = &status
        {
            if !request.vrfy {
                // E-MailRelay compatibility: this line, in this shape.
                let reason = match reason.is_empty() {
                    true => String::new(),
                    false => format!(": {reason}"),
                };
                crate::warning!(
                    "rejecting recipient \"{}\": {response}{reason}",
                    request.address
                );
            }
        }
        status.into_result(&request.address)
    }

    async fn ask_program(&self, path: &std::path::Path, r: &VerifyRequest) -> Status {
        let words: Vec<String> = std::iter::once(path.display().to_string())
            .chain(r.fields().iter().map(|f| f.to_string()))
            .map(|w| format!("[{w}]"))
            .collect();
        crate::info!("address verifier: executing {}", words.join(" "));
        let args = r.fields().map(std::ffi::OsStr::new);
        match crate::child::run(path, &args, self.timeout).await {
            Ok(exit) => program_status(exit.code, &exit.output),
            Err(crate::child::ChildError::Timeout(_)) => {
                Status::invalid(true, "timeout", "timeout")
            }
            Err(e @ crate::child::ChildError::Spawn { .. }) => {
                crate::warning!("address verifier: exec error: {e}");
                Status::invalid(false, "error", "exec error")
            }
            Err(e) => Status::invalid(false, "error", &e.to_string()),
        }
    }

    /// `net:`: the six fields joined by `|`, answered by `code|...` with
    /// the program's two lines in reverse order. A field holding `|` (or a
    /// line break) cannot be sent without shifting the others, so such an
    /// address is refused here.
    async fn ask_net(&self, client: &LineClient, r: &VerifyRequest) -> Status {
        let fields = r.fields();
        if fields.iter().any(|f| f.contains(['|', '\r', '\n'])) {
            return Status::invalid(false, "invalid character in address", "");
        }
        crate::info!("verification request: [{}] ({})", r.address, r.peer);
        match client.exchange(&fields.join("|"), self.timeout).await {
            Ok(line) => {
                crate::info!("verification response: [{}]", printable(&line));
                net_status(&line)
            }
            Err(e) => {
                crate::warning!("error: {}: {e}", client.address());
                Status::invalid(true, "cannot verify", "network verifier peer disconnected")
            }
        }
    }
}

/// A verifier's decision, as 2.6.1's `VerifierStatus` has it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Local {
        full_name: String,
        mailbox: String,
    },
    /// Remote, with the address to use ("" for the one asked about).
    Remote(String),
    Invalid {
        temporary: bool,
        response: String,
        reason: String,
    },
    Abort,
}

impl Status {
    fn invalid(temporary: bool, response: &str, reason: &str) -> Status {
        Status::Invalid {
            temporary,
            response: response.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The result for the SMTP session, after the safety checks.
    fn into_result(self, address: &str) -> VerifyResult {
        match self {
            Status::Local { mailbox, full_name }
                if crate::filter::is_safe_mailbox_name(&mailbox) =>
            {
                VerifyResult::Local { mailbox, full_name }
            }
            Status::Local { mailbox, .. } => {
                crate::warning!(
                    "address verifier gave an unusable mailbox name [{}] for <{address}>",
                    mailbox.escape_debug()
                );
                VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
            }
            Status::Remote(rewritten) if rewritten.is_empty() => {
                VerifyResult::Remote(address.to_string())
            }
            Status::Remote(rewritten) if is_plain_address(&rewritten) => {
                VerifyResult::Remote(rewritten)
            }
            Status::Remote(rewritten) => {
                crate::warning!(
                    "address verifier gave an unusable address [{}] for <{address}>",
                    rewritten.escape_debug()
                );
                VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
            }
            Status::Invalid {
                temporary,
                response,
                ..
            } => {
                let text = match response.is_empty() {
                    true => "mailbox unavailable".to_string(),
                    false => response,
                };
                VerifyResult::Reject(Reply::new(if temporary { 450 } else { 550 }, text))
            }
            Status::Abort => VerifyResult::Abort,
        }
    }
}

/// A program's exit code and output, read as 2.6.1 reads them: trailing
/// white space trimmed, lines split, and 0 (local) and 1 (remote) only
/// with two lines.
fn program_status(code: i32, output: &str) -> Status {
    let text = output
        .replace("\r\n", "\n")
        .replace('\r', "")
        .trim_end_matches([' ', '\n', '\t'])
        .to_string();
    let lines: Vec<String> = match text.is_empty() {
        true => Vec::new(),
        false => text.split('\n').map(printable).collect(),
    };
    let line = |i: usize| lines.get(i).cloned().unwrap_or_default();
    crate::info!(
        "address verifier: exit code {code}: [{}] [{}]",
        line(0),
        line(1)
    );
    match (code, lines.len() >= 2) {
        (0, true) => Status::Local {
            full_name: line(0),
            mailbox: line(1),
        },
        (1, true) => Status::Remote(line(1)),
        (100, _) => Status::Abort,
        _ => Status::Invalid {
            temporary: code == 3,
            response: lines
                .first()
                .cloned()
                .unwrap_or_else(|| "mailbox unavailable".into()),
            reason: lines
                .get(1)
                .cloned()
                .unwrap_or_else(|| format!("exit code {code}")),
        },
    }
}

/// A `net:` server's answer line: `0|mailbox|full name`, `1|address`,
/// `2|response[|reason]`, `3|...` (temporary) or `100`.
fn net_status(line: &str) -> Status {
    let parts: Vec<&str> = line.split('|').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("").to_string();
    match (parts[0], parts.len()) {
        ("100", _) => Status::Abort,
        ("1", 2..) => Status::Remote(part(1)),
        ("0", 3..) => Status::Local {
            mailbox: part(1),
            full_name: part(2),
        },
        ("2" | "3", 2..) => Status::invalid(parts[0] == "3", &part(1), &part(2)),
        _ => Status::invalid(false, "", ""),
    }
}

/// A verifier's answer in program form: exit code, first and second line
/// (both present).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    code: i32,
    first: String,
    second: String,
}

impl Answer {
    pub fn code(code: i32, first: &str, second: &str) -> Answer {
        Answer {
            code,
            first: first.to_string(),
            second: second.to_string(),
        }
    }

    fn status(self) -> Status {
        match self.code {
            0 => Status::Local {
                full_name: self.first,
                mailbox: self.second,
            },
            1 => Status::Remote(self.second),
            100 => Status::Abort,
            code => Status::Invalid {
                temporary: code == 3,
                response: self.first,
                reason: self.second,
            },
        }
    }
}

/// Control characters escaped, so that a verifier's text stays on one line.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

/// True for something that can stand between `<` and `>` in RCPT TO.
fn is_plain_address(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 512
        && !text
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            VerifierSpec::parse("net:127.0.0.1:10101"),
            Ok(VerifierSpec::Net("127.0.0.1:10101".into()))
        );
        assert_eq!(
            VerifierSpec::parse("/usr/local/bin/verify"),
            Ok(VerifierSpec::Program(
                std::path::absolute("/usr/local/bin/verify").unwrap()
            ))
        );
        assert_eq!(
            VerifierSpec::parse("file:/usr/local/bin/verify"),
            Ok(VerifierSpec::Program(
                std::path::absolute("/usr/local/bin/verify").unwrap()
            ))
        );
        assert_eq!(VerifierSpec::parse("exit:0"), Ok(VerifierSpec::Exit(0)));
        let err = |t: &str| VerifierSpec::parse(t).unwrap_err().to_string();
        // 2.6.1's words.
        assert_eq!(
            err("net:"),
            "invalid verifier specification: invalid host:service format"
        );
        assert_eq!(
            err("net:localhost"),
            "invalid verifier specification: invalid host:service format: localhost"
        );
        assert_eq!(
            err("exit:x"),
            "invalid verifier specification: not a numeric exit code: x"
        );
        assert_eq!(
            err("account:1000-x"),
            "invalid verifier specification: not a valid numeric range: 1000-x"
        );
        assert_eq!(
            err("file:"),
            "invalid verifier specification: empty file path"
        );
    }

    #[test]
    fn program_output_is_read_as_2_6_1_reads_it() {
        let r = |code, out: &str| program_status(code, out).into_result("Bob@Example.com");
        assert_eq!(
            r(0, "Local Postmaster <postmaster@localhost>\npostmaster\n"),
            VerifyResult::Local {
                mailbox: "postmaster".into(),
                full_name: "Local Postmaster <postmaster@localhost>".into()
            }
        );
        assert_eq!(
            r(1, "\nbob@example.com\n"),
            VerifyResult::Remote("bob@example.com".into())
        );
        // Remote needs the second line; with one line it is a refusal.
        assert_eq!(
            r(1, "bob@example.com\n"),
            VerifyResult::Reject(Reply::new(550, "bob@example.com"))
        );
        assert_eq!(
            r(2, "invalid mailbox: x\nwhy\n"),
            VerifyResult::Reject(Reply::new(550, "invalid mailbox: x"))
        );
        assert_eq!(
            r(3, "try later"),
            VerifyResult::Reject(Reply::new(450, "try later"))
        );
        assert_eq!(r(100, ""), VerifyResult::Abort);
        assert_eq!(
            r(42, ""),
            VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
        );
        assert_eq!(
            program_status(42, ""),
            Status::invalid(false, "mailbox unavailable", "exit code 42")
        );
        // What comes back is checked.
        assert_eq!(
            r(0, "x\n../etc"),
            VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
        );
        assert_eq!(
            r(1, "\na@b> NOTIFY=x"),
            VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
        );
    }

    #[test]
    fn net_answers_are_read_as_2_6_1_reads_them() {
        assert_eq!(
            net_status("1|alice@here"),
            Status::Remote("alice@here".into())
        );
        assert_eq!(
            net_status("0|alice|Alice Liddell"),
            Status::Local {
                mailbox: "alice".into(),
                full_name: "Alice Liddell".into()
            }
        );
        assert_eq!(
            net_status("2|VerifierError"),
            Status::invalid(false, "VerifierError", "")
        );
        assert_eq!(
            net_status("3|busy|queue full"),
            Status::invalid(true, "busy", "queue full")
        );
        assert_eq!(net_status("100"), Status::Abort);
        assert_eq!(net_status("0|alice"), Status::invalid(false, "", ""));
        assert_eq!(
            net_status("1|").into_result("x@y"),
            VerifyResult::Remote("x@y".into())
        );
    }
}
