//! E-MailRelay secrets files (`--client-auth`, `--server-auth`).
//!
//! One entry per line, `#` to the end of a line is a comment:
//!
//! ```text
//! client plain bob password123             (xtext name and password)
//! client plain:b Ym9i cGFzc3dvcmQxMjM=     (base64; "=" is empty)
//! client md5 bob <base64 HMAC-MD5 state>   (from emailrelay-passwd)
//! client oauth bob <xtext access token>    (oauth:b for base64)
//! client oauth2 bob /etc/emailrelay/bob.oauth2   (ours: a renewing account)
//! client plain alice e+3Dmc2 use_alice     (fifth field: account selector)
//! server plain alice e+3Dmc2
//! server none 192.168.0.* localipv4        (trusted address, keyword)
//! ```
//!
//! `oauth2` is this project's addition: the fourth field names an account
//! file (see `oauth.rs`) and the relay keeps the access token fresh. Every
//! other line means what it means to E-MailRelay 2.6. A malformed line
//! is an error naming the file and the line number.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use emailrelay_proto::sasl::{base64_decode, HmacMd5Key};
use emailrelay_proto::smtp::xtext_decode;

use super::network::AddressPattern;

/// A secrets file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The file cannot be read.
    #[error("cannot read secrets file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    /// A line is malformed.
    #[error("secrets file {path} line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: LineError,
    },
    /// `plain:<id>:<pw>` on the command line does not decode.
    #[error("invalid --client-auth value: {0}")]
    Inline(String),
}

/// What is wrong with one line of a secrets file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    /// Too few or too many fields.
    #[error("expected 4 or 5 fields (side, type, user-id, password[, selector]), found {0}")]
    FieldCount(usize),
    /// A `server` line with an account selector.
    #[error("a fifth field (account selector) is for client lines only")]
    ServerSelector,
    /// The first field is neither `client` nor `server`.
    #[error("the first field must be \"client\" or \"server\", not \"{0}\"")]
    Side(String),
    /// A `server none` line whose address does not parse.
    #[error("\"{0}\" is not an address, CIDR range or wildcard address")]
    Address(String),
    /// A password type the side does not know, and the ones it does.
    #[error("unknown password type \"{kind}\": use {allowed}")]
    UnknownType { kind: String, allowed: &'static str },
    /// A `:b` field (the user-id, password or token) that is not base64.
    #[error("the {0} is not valid base64")]
    Base64(&'static str),
    /// An `md5` password that is not `emailrelay-passwd`'s hash.
    #[error("the md5 password is not a 44-character hash from emailrelay-passwd")]
    Md5,
}

/// What a server-side account may be checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSecret {
    /// Serves PLAIN, LOGIN and CRAM-MD5.
    Plain(String),
    /// Serves CRAM-MD5 only.
    Md5(HmacMd5Key),
}

/// A client-side account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAccount {
    /// `plain:b = =` and the like: do not authenticate.
    None,
    Password {
        user: String,
        password: String,
    },
    Md5 {
        user: String,
        key: HmacMd5Key,
    },
    /// A static access token, as E-MailRelay's `oauth` lines give it.
    Token {
        user: String,
        token: String,
    },
    /// A renewing OAuth 2.0 account (`oauth2`): its account file.
    OAuth2 {
        user: String,
        file: PathBuf,
    },
}

/// A trusted address range and its keyword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trusted {
    pub pattern: AddressPattern,
    pub keyword: String,
    /// The pattern as the file has it, and its line, for the log.
    pub text: String,
    pub line: usize,
}

/// A parsed secrets file.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    pub server: HashMap<String, ServerSecret>,
    /// The line of each server entry, for the authentication log lines.
    pub server_lines: HashMap<String, usize>,
    pub trusted: Vec<Trusted>,
    /// Keyed by account selector; "" is the default account.
    pub client: HashMap<String, ClientAccount>,
    /// The line of each client entry, by selector, for the log.
    pub client_lines: HashMap<String, usize>,
    /// Lines that were accepted with a doubt (duplicates).
    pub warnings: Vec<String>,
}

impl Secrets {
    /// Reads and parses a secrets file.
    pub fn load(path: &Path) -> Result<Secrets, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|e| SecretsError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Secrets::parse(&text, path)
    }

    /// Parses secrets text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Secrets, SecretsError> {
        let mut secrets = Secrets::default();
        for (index, raw) in text.lines().enumerate() {
            let content = raw.split('#').next().unwrap_or("");
            let fields: Vec<&str> = content.split_whitespace().collect();
            if fields.is_empty() {
                continue;
            }
            secrets
                .add_line(&fields, path, index + 1)
                .map_err(|reason| SecretsError::Line {
                    path: path.to_path_buf(),
                    line: index + 1,
                    reason,
                })?;
        }
        Ok(secrets)
    }

    /// `--client-auth plain:<base64-id>:<base64-password>`.
    pub fn inline_client(value: &str) -> Result<Secrets, SecretsError> {
        let rest = value.strip_prefix("plain:").unwrap_or_default();
        let (user, password) = rest.split_once(':').ok_or_else(|| {
            SecretsError::Inline("expected plain:<base64-id>:<base64-password>".into())
        })?;
        let decode = |what: &str, text: &str| {
            decode_base64(text)
                .ok_or_else(|| SecretsError::Inline(format!("the {what} is not valid base64")))
        };
        let account = password_account(decode("user-id", user)?, decode("password", password)?);
        let mut secrets = Secrets::default();
        secrets.client.insert(String::new(), account);
        Ok(secrets)
    }

    /// The keyword of the trusted range holding `ip` (see [`Secrets::trusted_entry`]).
    pub fn trusted_keyword(&self, ip: IpAddr) -> Option<&str> {
        self.trusted_entry(ip).map(|t| t.keyword.as_str())
    }

    /// The trusted range holding `ip`. E-MailRelay compatibility: the
    /// narrowest one (2.6.1 tries the address itself, then each wider
    /// range, then its wildcard form, in turn); among equals the first.
    pub fn trusted_entry(&self, ip: IpAddr) -> Option<&Trusted> {
        let mut best: Option<&Trusted> = None;
        for t in self.trusted.iter().filter(|t| t.pattern.contains(ip)) {
            if best.is_none_or(|b| t.pattern.narrowness() > b.pattern.narrowness()) {
                best = Some(t);
            }
        }
        best
    }

    fn add_line(&mut self, fields: &[&str], path: &Path, line: usize) -> Result<(), LineError> {
        if !(4..=5).contains(&fields.len()) {
            return Err(LineError::FieldCount(fields.len()));
        }
        let side = fields[0].to_ascii_lowercase();
        let kind = canonical_kind(&fields[1].to_ascii_lowercase());
        match side.as_str() {
            "server" if fields.len() == 5 => Err(LineError::ServerSelector),
            "server" => self.add_server(&kind, fields[2], fields[3], line),
            "client" => {
                let selector = fields.get(4).copied().unwrap_or("");
                let account = client_account(&kind, fields[2], fields[3], path)?;
                let what = format!("client entry for selector \"{selector}\"");
                let key = selector.to_string();
                self.client_lines.entry(key.clone()).or_insert(line);
                insert_first(&mut self.client, key, account, &mut self.warnings, &what);
                Ok(())
            }
            other => Err(LineError::Side(other.to_string())),
        }
    }

    fn add_server(
        &mut self,
        kind: &str,
        id: &str,
        secret: &str,
        line: usize,
    ) -> Result<(), LineError> {
        let (user, secret) = match kind {
            "none" => {
                let pattern =
                    AddressPattern::parse(id).ok_or_else(|| LineError::Address(id.to_string()))?;
                self.trusted.push(Trusted {
                    pattern,
                    keyword: secret.to_string(),
                    text: id.to_string(),
                    line,
                });
                return Ok(());
            }
            "plain" => (xtext_decode(id), ServerSecret::Plain(xtext_decode(secret))),
            "plain:b" => (
                base64("user-id", id)?,
                ServerSecret::Plain(base64("password", secret)?),
            ),
            "md5" => (xtext_decode(id), ServerSecret::Md5(md5(secret)?)),
            "md5:b" => (base64("user-id", id)?, ServerSecret::Md5(md5(secret)?)),
            other => return Err(unknown_type(other, "plain, plain:b, md5 or none")),
        };
        let what = format!("server entry for \"{user}\"");
        self.server_lines.entry(user.clone()).or_insert(line);
        insert_first(&mut self.server, user, secret, &mut self.warnings, &what);
        Ok(())
    }
}

/// E-MailRelay compatibility: the old type names still read as 2.6.1
/// reads them, `login` as `plain` and `cram-md5` or `apop` as `md5` (its
/// own test suite writes `server login me secret`).
fn canonical_kind(kind: &str) -> String {
    match kind {
        "login" => "plain",
        "cram-md5" | "apop" => "md5",
        other => other,
    }
    .to_string()
}

fn client_account(
    kind: &str,
    id: &str,
    secret: &str,
    path: &Path,
) -> Result<ClientAccount, LineError> {
    Ok(match kind {
        "plain" => password_account(xtext_decode(id), xtext_decode(secret)),
        "plain:b" => password_account(base64("user-id", id)?, base64("password", secret)?),
        "md5" | "md5:b" => {
            let user = if kind == "md5" {
                xtext_decode(id)
            } else {
                base64("user-id", id)?
            };
            ClientAccount::Md5 {
                user,
                key: md5(secret)?,
            }
        }
        "oauth" => ClientAccount::Token {
            user: xtext_decode(id),
            token: xtext_decode(secret),
        },
        "oauth:b" => ClientAccount::Token {
            user: base64("user-id", id)?,
            token: base64("token", secret)?,
        },
        "oauth2" => {
            // A relative account file is relative to the secrets file.
            let file = Path::new(secret);
            let file = match path.parent() {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file.to_path_buf(),
            };
            ClientAccount::OAuth2 {
                user: xtext_decode(id),
                file,
            }
        }
        other => {
            return Err(unknown_type(
                other,
                "plain, plain:b, md5, oauth, oauth:b or oauth2",
            ))
        }
    })
}

/// Keeps the first entry for a key and warns about later ones.
fn insert_first<V>(
    map: &mut HashMap<String, V>,
    key: String,
    value: V,
    warnings: &mut Vec<String>,
    what: &str,
) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(_) => {
            warnings.push(format!("duplicate {what}: the first is used"))
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(value);
        }
    }
}

/// An empty user-id means "no authentication" (`client plain:b = = noauth`).
fn password_account(user: String, password: String) -> ClientAccount {
    if user.is_empty() {
        ClientAccount::None
    } else {
        ClientAccount::Password { user, password }
    }
}

fn unknown_type(kind: &str, allowed: &'static str) -> LineError {
    LineError::UnknownType {
        kind: kind.to_string(),
        allowed,
    }
}

fn base64(what: &'static str, text: &str) -> Result<String, LineError> {
    decode_base64(text).ok_or(LineError::Base64(what))
}

/// E-MailRelay writes an empty value as `=`.
fn decode_base64(text: &str) -> Option<String> {
    if text == "=" {
        return Some(String::new());
    }
    base64_decode(text).and_then(|b| String::from_utf8(b).ok())
}

fn md5(text: &str) -> Result<HmacMd5Key, LineError> {
    HmacMd5Key::from_base64(text).ok_or(LineError::Md5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Secrets, SecretsError> {
        Secrets::parse(text, Path::new("/etc/emailrelay.auth"))
    }

    #[test]
    fn the_reference_guides_examples_parse() {
        let s = parse(
            "# emailrelay secrets file\n\
             client plain bob password123 # no selector, authenticate as bob\n\
             client plain alice e+3Dmc2 use_alice # selector 'use_alice'\n\
             client plain:b = = noauth # selector 'noauth', no authentication\n\
             server plain:b YWxpY2U= ZT1tYzI= # alice\n\
             server plain carol my+20password\n\
             server md5 dave x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw=\n\
             server none 192.168.0.* localipv4\n\
             server none fe80::/64 localipv6\n",
        )
        .unwrap();
        assert_eq!(
            s.client[""],
            ClientAccount::Password {
                user: "bob".into(),
                password: "password123".into()
            }
        );
        assert_eq!(
            s.client["use_alice"],
            ClientAccount::Password {
                user: "alice".into(),
                password: "e=mc2".into()
            }
        );
        assert_eq!(s.client["noauth"], ClientAccount::None);
        assert_eq!(s.server["alice"], ServerSecret::Plain("e=mc2".into()));
        assert_eq!(s.server["carol"], ServerSecret::Plain("my password".into()));
        assert_eq!(
            s.server["dave"],
            ServerSecret::Md5(HmacMd5Key::new(b"my password"))
        );
        assert_eq!(
            s.trusted_keyword("192.168.0.7".parse().unwrap()),
            Some("localipv4")
        );
        assert_eq!(
            s.trusted_keyword("fe80::1".parse().unwrap()),
            Some("localipv6")
        );
        assert_eq!(s.trusted_keyword("192.168.1.7".parse().unwrap()), None);
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn the_narrowest_trusted_range_wins_as_in_2_6_1() {
        let s = parse(
            "server none 10.0.0.0/8 wide\n\
             server none 10.1.2.* star\n\
             server none 10.1.2.0/24 net24\n\
             server none 10.1.2.3 host\n",
        )
        .unwrap();
        let entry = |ip: &str| {
            s.trusted_entry(ip.parse().unwrap())
                .map(|t| (t.keyword.as_str(), t.text.as_str(), t.line))
        };
        assert_eq!(entry("10.1.2.3"), Some(("host", "10.1.2.3", 4)));
        assert_eq!(entry("10.1.2.4"), Some(("net24", "10.1.2.0/24", 3)));
        assert_eq!(entry("10.9.9.9"), Some(("wide", "10.0.0.0/8", 1)));
        assert_eq!(entry("11.0.0.1"), None);
    }

    #[test]
    fn oauth_lines_keep_e_mailrelays_meaning_and_oauth2_names_a_file() {
        let s = parse(
            "client oauth bob@example.com ya29.a0AfH6SM+2B\n\
             client oauth2 carol@example.com carol.oauth2 renewing\n",
        )
        .unwrap();
        assert_eq!(
            s.client[""],
            ClientAccount::Token {
                user: "bob@example.com".into(),
                token: "ya29.a0AfH6SM+".into()
            }
        );
        assert_eq!(
            s.client["renewing"],
            ClientAccount::OAuth2 {
                user: "carol@example.com".into(),
                file: PathBuf::from("/etc/carol.oauth2")
            }
        );
    }

    #[test]
    fn old_type_names_read_as_e_mailrelay_reads_them() {
        let s = parse("server login me secret\nclient LOGIN bob pw\n").unwrap();
        assert_eq!(s.server["me"], ServerSecret::Plain("secret".into()));
        assert_eq!(
            s.client[""],
            ClientAccount::Password {
                user: "bob".into(),
                password: "pw".into()
            }
        );
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        let cases = [
            ("client plain bob\n", "expected 4 or 5 fields"),
            ("\n\nserver plain alice pw extra\n", "line 3: a fifth field"),
            ("clients plain bob pw\n", "\"client\" or \"server\""),
            ("server sha1 bob pw\n", "unknown password type \"sha1\""),
            ("server md5 bob notahash\n", "emailrelay-passwd"),
            ("server plain:b !!! cHc=\n", "user-id is not valid base64"),
            ("server none 300.1.2.3 x\n", "not an address"),
        ];
        for (text, expected) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with("secrets file /etc/emailrelay.auth line "),
                "{e}"
            );
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_command_line_form_decodes_base64() {
        let s = Secrets::inline_client("plain:Ym9i:cGFzc3dvcmQxMjM=").unwrap();
        assert_eq!(
            s.client[""],
            ClientAccount::Password {
                user: "bob".into(),
                password: "password123".into()
            }
        );
        assert!(Secrets::inline_client("plain:Ym9i").is_err());
        assert!(Secrets::inline_client("plain:!!:cHc=").is_err());
    }

    #[test]
    fn duplicates_keep_the_first_and_warn() {
        let s = parse("server plain alice one\nserver plain alice two\n").unwrap();
        assert_eq!(s.server["alice"], ServerSecret::Plain("one".into()));
        assert_eq!(s.warnings.len(), 1);
    }
}
