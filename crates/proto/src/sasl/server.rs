//! The server's half of an AUTH exchange (RFC 4954 section 4).
//!
//! ```text
//!   PLAIN    [initial?] --334 ""--> response --> Done(Password)
//!   LOGIN    [user?] --334 "Username:"--> user --334 "Password:"--> password --> Done(Password)
//!   CRAM-MD5 --334 <challenge>--> "user hexdigest" --> Done(CramMd5)
//!   any response "*" --> Failed(501 cancelled)
//! ```
//!
//! The exchange only collects what the client claims; whether it is true
//! is the driver's question (secrets file, PAM), asked with the
//! [`Credentials`] that come out at the end.

use super::{base64_decode, base64_encode, Mechanism};

/// What a client claimed, for the driver to check.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// PLAIN or LOGIN: a name and a clear-text password.
    Password {
        /// PLAIN's authorisation identity ("" if none was given).
        authzid: String,
        user: String,
        password: String,
    },
    /// CRAM-MD5: the client's HMAC-MD5 of `challenge`.
    CramMd5 {
        user: String,
        challenge: String,
        digest: Vec<u8>,
    },
    /// POP3 APOP (RFC 1939 section 7): the client's plain MD5 of the
    /// greeting's `challenge` followed by the password.
    Apop {
        user: String,
        challenge: String,
        digest: Vec<u8>,
    },
}

impl Credentials {
    /// The authentication name the client gave.
    pub fn user(&self) -> &str {
        match self {
            Credentials::Password { user, .. }
            | Credentials::CramMd5 { user, .. }
            | Credentials::Apop { user, .. } => user,
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password or the digest, whatever gets logged.
        write!(f, "Credentials({:?}, ..)", self.user())
    }
}

/// What the session does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <text>` (text already base64) and feed the next line back.
    Challenge(String),
    /// The exchange is complete: check these.
    Done(Credentials),
    /// The exchange ended without credentials: reply with this.
    Failed(u16, &'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    PlainResponse,
    LoginUser,
    LoginPassword { user: String },
    CramResponse { challenge: String },
    Over,
}

/// One AUTH exchange in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerExchange {
    stage: Stage,
}

/// "Username:" and "Password:", the LOGIN prompts everyone expects.
const LOGIN_USER: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

impl ServerExchange {
    /// Starts an exchange. `initial` is the initial response from the AUTH
    /// line, if any (`=` stands for an empty one); `challenge` is the
    /// CRAM-MD5 challenge text, unused by the other mechanisms.
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&str>,
        challenge: String,
    ) -> (ServerExchange, Step) {
        let mut exchange = ServerExchange { stage: Stage::Over };
        let step = match (mechanism, initial) {
            (Mechanism::Plain, None) => {
                exchange.stage = Stage::PlainResponse;
                Step::Challenge(String::new())
            }
            (Mechanism::Plain, Some(response)) => {
                exchange.stage = Stage::PlainResponse;
                exchange.handle_response(response)
            }
            (Mechanism::Login, None) => {
                exchange.stage = Stage::LoginUser;
                Step::Challenge(LOGIN_USER.into())
            }
            (Mechanism::Login, Some(response)) => {
                exchange.stage = Stage::LoginUser;
                exchange.handle_response(response)
            }
            (Mechanism::CramMd5, None) => {
                let text = base64_encode(challenge.as_bytes());
                exchange.stage = Stage::CramResponse { challenge };
                Step::Challenge(text)
            }
            (Mechanism::CramMd5, Some(_)) => Step::Failed(501, "invalid initial response"),
            (Mechanism::XOAuth2, _) => Step::Failed(504, "unsupported authentication mechanism"),
        };
        (exchange, step)
    }

    /// Feeds one response line from the client.
    pub fn handle_response(&mut self, line: &str) -> Step {
        let stage = std::mem::replace(&mut self.stage, Stage::Over);
        let line = line.trim();
        if line == "*" {
            return Step::Failed(501, "authentication cancelled");
        }
        let decoded = if line == "=" {
            Some(Vec::new())
        } else {
            base64_decode(line)
        };
        let Some(decoded) = decoded else {
            return Step::Failed(501, "invalid base64 encoding");
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return Step::Failed(501, "invalid response: not UTF-8");
        };
        match stage {
            Stage::PlainResponse => plain(&text),
            Stage::LoginUser => {
                self.stage = Stage::LoginPassword { user: text };
                Step::Challenge(LOGIN_PASSWORD.into())
            }
            Stage::LoginPassword { user } => Step::Done(Credentials::Password {
                authzid: String::new(),
                user,
                password: text,
            }),
            Stage::CramResponse { challenge } => cram_md5(&text, challenge),
            Stage::Over => Step::Failed(503, "no authentication in progress"),
        }
    }
}

/// RFC 4616 section 2: `[authzid] NUL authcid NUL passwd`.
fn plain(text: &str) -> Step {
    let mut parts = text.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authzid), Some(user), Some(password), None) if !user.is_empty() => {
            Step::Done(Credentials::Password {
                authzid: authzid.into(),
                user: user.into(),
                password: password.into(),
            })
        }
        _ => Step::Failed(501, "invalid PLAIN response"),
    }
}

/// RFC 2195: `user SP 32-lower-hex-digits`; the name may hold spaces.
fn cram_md5(text: &str, challenge: String) -> Step {
    let Some((user, digest)) = text.rsplit_once(' ') else {
        return Step::Failed(501, "invalid CRAM-MD5 response");
    };
    match parse_hex(digest) {
        Some(digest) if digest.len() == 16 && !user.is_empty() => {
            Step::Done(Credentials::CramMd5 {
                user: user.into(),
                challenge,
                digest,
            })
        }
        _ => Step::Failed(501, "invalid CRAM-MD5 response"),
    }
}

/// The `APOP name digest` arguments (RFC 1939 section 7): `None` unless
/// the digest is 32 hex digits.
pub fn apop_credentials(user: &str, digest: &str, challenge: &str) -> Option<Credentials> {
    let digest = parse_hex(digest).filter(|d| d.len() == 16)?;
    (!user.is_empty()).then(|| Credentials::Apop {
        user: user.into(),
        challenge: challenge.into(),
        digest,
    })
}

/// What APOP's digest should be: MD5 of the challenge and then the
/// password (RFC 1939 section 7).
pub fn apop_digest(challenge: &str, password: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut md5 = Md5::new();
    md5.update(challenge.as_bytes());
    md5.update(password);
    md5.finalize().into()
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64_encode(s.as_bytes())
    }

    #[test]
    fn plain_with_and_without_an_initial_response() {
        let expected = Step::Done(Credentials::Password {
            authzid: String::new(),
            user: "alice".into(),
            password: "e=mc2".into(),
        });
        let (_, step) = ServerExchange::start(
            Mechanism::Plain,
            Some(&b64("\0alice\0e=mc2")),
            String::new(),
        );
        assert_eq!(step, expected);
        let (mut x, step) = ServerExchange::start(Mechanism::Plain, None, String::new());
        assert_eq!(step, Step::Challenge(String::new()));
        assert_eq!(x.handle_response(&b64("\0alice\0e=mc2")), expected);
    }

    #[test]
    fn login_prompts_for_name_then_password() {
        let (mut x, step) = ServerExchange::start(Mechanism::Login, None, String::new());
        assert_eq!(step, Step::Challenge("VXNlcm5hbWU6".into()));
        assert_eq!(
            x.handle_response(&b64("carol")),
            Step::Challenge("UGFzc3dvcmQ6".into())
        );
        assert_eq!(
            x.handle_response(&b64("my password")),
            Step::Done(Credentials::Password {
                authzid: String::new(),
                user: "carol".into(),
                password: "my password".into(),
            })
        );
    }

    #[test]
    fn cram_md5_sends_the_challenge_and_parses_the_digest() {
        let challenge = "<1896.697170952@postoffice.reston.mci.net>".to_string();
        let (mut x, step) = ServerExchange::start(Mechanism::CramMd5, None, challenge.clone());
        assert_eq!(step, Step::Challenge(b64(&challenge)));
        // RFC 2195's example response.
        let step = x.handle_response("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
        let Step::Done(Credentials::CramMd5 { user, digest, .. }) = step else {
            panic!("{step:?}");
        };
        assert_eq!(user, "tim");
        assert_eq!(
            crate::sasl::hex(&digest),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
    }

    #[test]
    fn bad_responses_fail_with_a_reason() {
        let (mut x, _) = ServerExchange::start(Mechanism::Plain, None, String::new());
        assert_eq!(
            x.handle_response("*"),
            Step::Failed(501, "authentication cancelled")
        );
        let (mut x, _) = ServerExchange::start(Mechanism::Plain, None, String::new());
        assert_eq!(
            x.handle_response("!!!"),
            Step::Failed(501, "invalid base64 encoding")
        );
        let (mut x, _) = ServerExchange::start(Mechanism::Plain, None, String::new());
        assert_eq!(
            x.handle_response(&b64("no nuls here")),
            Step::Failed(501, "invalid PLAIN response")
        );
        let (mut x, _) = ServerExchange::start(Mechanism::CramMd5, None, "<c@d>".into());
        assert_eq!(
            x.handle_response(&b64("tim nothex")),
            Step::Failed(501, "invalid CRAM-MD5 response")
        );
    }

    #[test]
    fn apop_matches_rfc_1939s_example() {
        let challenge = "<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(
            crate::sasl::hex(&apop_digest(challenge, b"tanstaaf")),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        let c = apop_credentials("mrose", "c4c9334bac560ecc979e58001b3e22fb", challenge);
        assert!(matches!(c, Some(Credentials::Apop { ref user, .. }) if user == "mrose"));
        assert_eq!(apop_credentials("mrose", "c4c9", challenge), None);
        assert_eq!(
            apop_credentials("", "c4c9334bac560ecc979e58001b3e22fb", challenge),
            None
        );
    }

    #[test]
    fn credentials_never_debug_print_the_password() {
        let c = Credentials::Password {
            authzid: String::new(),
            user: "bob".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
