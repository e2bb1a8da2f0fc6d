//! Address verifiers (`--address-verifier`): a program, a `net:` server or
//! the built-in `account:` decides for each RCPT (and VRFY) whether the
//! address is a local mailbox, a remote address (possibly rewritten),
//! invalid (550), unavailable for now (450), or a reason to drop the
//! connection (E-MailRelay's reference, "Address verifiers").
//!
//! What comes back is checked before use: a mailbox name must be one plain
//! directory name, and a rewritten address must be a single SMTP path.

mod account;

use std::path::PathBuf;
use std::time::Duration;

use emailrelay_proto::smtp::{Reply, VerifyResult};

use crate::net::line::LineClient;

pub use account::AccountOptions;

/// A `--address-verifier` value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifierError {
    /// `net:` without an address.
    #[error("invalid address verifier [{0}]: no address")]
    Address(String),
    /// `account:` with a parameter it does not know.
    #[error("invalid address verifier [{spec}]: unknown parameter [{param}]")]
    Parameter { spec: String, param: String },
}

/// A parsed `--address-verifier`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifierSpec {
    Program(PathBuf),
    Net(String),
    Account(AccountOptions),
}

impl VerifierSpec {
    pub fn parse(text: &str) -> Result<VerifierSpec, VerifierError> {
        match text.split_once(':') {
            Some(("net", "")) => Err(VerifierError::Address(text.to_string())),
            Some(("net", address)) => Ok(VerifierSpec::Net(address.to_string())),
            Some(("account", params)) => AccountOptions::parse(params)
                .map(VerifierSpec::Account)
                .map_err(|param| VerifierError::Parameter {
                    spec: text.to_string(),
                    param: param.to_string(),
                }),
            _ => Ok(VerifierSpec::Program(
                std::path::absolute(text).unwrap_or_else(|_| PathBuf::from(text)),
            )),
        }
    }
}

/// One question for the verifier: E-MailRelay's six arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The recipient as the client gave it.
    pub address: String,
    /// MAIL FROM, or "" for VRFY.
    pub from: String,
    /// The client's `ip:port`.
    pub peer: String,
    /// Our domain (`--domain`).
    pub domain: String,
    /// The AUTH mechanism used, `none` for a trusted address, "" if neither.
    pub mechanism: String,
    /// The AUTH name, or the trusted address's keyword.
    pub auth_name: String,
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
}

impl Verifier {
    pub fn new(spec: VerifierSpec, timeout: Duration) -> Verifier {
        let kind = match spec {
            VerifierSpec::Program(path) => Kind::Program(path),
            VerifierSpec::Net(address) => Kind::Net(LineClient::new(address)),
            VerifierSpec::Account(options) => Kind::Account(options),
        };
        Verifier { kind, timeout }
    }

    /// The verdict on one address.
    pub async fn verify(&self, request: &VerifyRequest) -> VerifyResult {
        let answer = match &self.kind {
            Kind::Program(path) => self.ask_program(path, request).await,
            Kind::Net(client) => self.ask_net(client, request).await,
            Kind::Account(options) => Ok(account::verify(options, request)),
        };
        let answer = answer.unwrap_or_else(|reason| {
            crate::warning!(
                "address verifier failed for <{}>: {reason}",
                request.address
            );
            Answer::code(3, "address verifier failed", "")
        });
        answer.into_result(&request.address)
    }

    async fn ask_program(
        &self,
        path: &std::path::Path,
        r: &VerifyRequest,
    ) -> Result<Answer, String> {
        let args = r.fields().map(std::ffi::OsStr::new);
        let exit = crate::child::run(path, &args, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        let mut lines = exit.output.lines();
        let first = lines.next().unwrap_or("").trim();
        let second = lines.next().unwrap_or("").trim();
        Ok(Answer::code(exit.code, first, second))
    }

    /// `net:`: the six fields joined by `|`, answered by `code|...` with
    /// the program's two lines in reverse order. A field holding `|` (or a
    /// line break) cannot be sent without shifting the others, so such an
    /// address is refused here.
    async fn ask_net(&self, client: &LineClient, r: &VerifyRequest) -> Result<Answer, String> {
        let fields = r.fields();
        if fields.iter().any(|f| f.contains(['|', '\r', '\n'])) {
            return Ok(Answer::code(2, "invalid character in address", ""));
        }
        let request = fields.join("|");
        let line = client
            .exchange(&request, self.timeout)
            .await
            .map_err(|e| format!("net verifier [{}]: {e}", client.address()))?;
        let mut parts = line.splitn(3, '|');
        let code = parts
            .next()
            .and_then(|c| c.trim().parse::<i32>().ok())
            .ok_or_else(|| {
                format!(
                    "net verifier [{}]: invalid answer [{line}]",
                    client.address()
                )
            })?;
        let second = parts.next().unwrap_or("");
        let first = parts.next().unwrap_or("");
        // For refusals the one field after the code is the reason.
        Ok(match code {
            0 | 1 => Answer::code(code, first, second),
            _ => Answer::code(code, second, first),
        })
    }
}

/// A verifier's answer in program form: exit code, first and second line.
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

    /// E-MailRelay's exit codes: 0 local (full name, mailbox), 1 remote
    /// (the address to use), 2 invalid (550), 3 temporary (450), 100 drop
    /// the connection, anything else as 2. For refusals the first line is
    /// the reply text and the second is logged.
    fn into_result(self, address: &str) -> VerifyResult {
        match self.code {
            0 if crate::filter::is_safe_mailbox_name(&self.second) => VerifyResult::Local {
                mailbox: self.second,
                full_name: self.first,
            },
            0 => {
                crate::warning!(
                    "address verifier gave an unusable mailbox name [{}] for <{address}>",
                    self.second.escape_debug()
                );
                VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
            }
            1 if self.second.is_empty() => VerifyResult::Remote(address.to_string()),
            1 if is_plain_address(&self.second) => VerifyResult::Remote(self.second),
            1 => {
                crate::warning!(
                    "address verifier gave an unusable address [{}] for <{address}>",
                    self.second.escape_debug()
                );
                VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
            }
            100 => VerifyResult::Abort,
            code => {
                let temporary = code == 3;
                if !self.second.is_empty() {
                    crate::info!("address verifier: <{address}>: {}", self.second);
                }
                let text = if self.first.is_empty() {
                    "mailbox unavailable".to_string()
                } else {
                    self.first
                };
                VerifyResult::Reject(Reply::new(if temporary { 450 } else { 550 }, text))
            }
        }
    }
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
            Ok(VerifierSpec::Program("/usr/local/bin/verify".into()))
        );
        assert_eq!(
            VerifierSpec::parse("account:bogus")
                .unwrap_err()
                .to_string(),
            "invalid address verifier [account:bogus]: unknown parameter [bogus]"
        );
    }

    #[test]
    fn answers_map_to_results_as_documented() {
        let r = |code, a: &str, b: &str| Answer::code(code, a, b).into_result("Bob@Example.com");
        assert_eq!(
            r(0, "Local Postmaster <postmaster@localhost>", "postmaster"),
            VerifyResult::Local {
                mailbox: "postmaster".into(),
                full_name: "Local Postmaster <postmaster@localhost>".into()
            }
        );
        assert_eq!(
            r(1, "", "bob@example.com"),
            VerifyResult::Remote("bob@example.com".into())
        );
        assert_eq!(r(1, "", ""), VerifyResult::Remote("Bob@Example.com".into()));
        assert_eq!(
            r(2, "invalid mailbox: x", "why"),
            VerifyResult::Reject(Reply::new(550, "invalid mailbox: x"))
        );
        assert_eq!(
            r(3, "try later", ""),
            VerifyResult::Reject(Reply::new(450, "try later"))
        );
        assert_eq!(r(100, "", ""), VerifyResult::Abort);
        assert_eq!(
            r(42, "", ""),
            VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
        );
        // What comes back is checked.
        assert_eq!(
            r(0, "x", "../etc"),
            VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
        );
        assert_eq!(
            r(1, "", "a@b> NOTIFY=x"),
            VerifyResult::Reject(Reply::new(550, "mailbox unavailable"))
        );
    }
}
