//! The client's half of an AUTH exchange (RFC 4954 section 4).
//!
//! ```text
//!   PLAIN    AUTH PLAIN <initial response>                --> 235 | 5xx
//!   LOGIN    AUTH LOGIN --334--> user --334--> password   --> 235 | 5xx
//!   CRAM-MD5 AUTH CRAM-MD5 --334 challenge--> "user digest" --> 235 | 5xx
//!   XOAUTH2  AUTH XOAUTH2 <initial response> [--334 error--> ""] --> 235 | 5xx
//! ```

use super::{base64_decode, base64_encode, hex, HmacMd5Key, Mechanism};

/// What the client authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientSecret {
    /// A clear-text password: PLAIN, LOGIN or CRAM-MD5.
    Password { user: String, password: String },
    /// A stored HMAC-MD5 key (`md5` secrets): CRAM-MD5 only.
    Md5 { user: String, key: HmacMd5Key },
    /// An OAuth 2.0 access token: XOAUTH2 only.
    Bearer { user: String, token: String },
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientSecret({:?}, ..)", self.user())
    }
}

impl ClientSecret {
    /// The authentication name.
    pub fn user(&self) -> &str {
        match self {
            ClientSecret::Password { user, .. }
            | ClientSecret::Md5 { user, .. }
            | ClientSecret::Bearer { user, .. } => user,
        }
    }

    /// The mechanisms this secret can serve, in default preference order:
    /// the challenge-response one first, so a password is not sent when it
    /// need not be.
    pub fn mechanisms(&self) -> &'static [Mechanism] {
        match self {
            ClientSecret::Password { .. } => {
                &[Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login]
            }
            ClientSecret::Md5 { .. } => &[Mechanism::CramMd5],
            ClientSecret::Bearer { .. } => &[Mechanism::XOAuth2],
        }
    }
}

/// One AUTH exchange in progress.
#[derive(Debug)]
pub struct ClientExchange {
    mechanism: Mechanism,
    secret: ClientSecret,
    challenges: u32,
}

impl ClientExchange {
    /// Starts an exchange; the second value is the AUTH command line.
    pub fn start(mechanism: Mechanism, secret: ClientSecret) -> (ClientExchange, String) {
        let command = match (&secret, mechanism) {
            (ClientSecret::Password { user, password }, Mechanism::Plain) => {
                let response = format!("\0{user}\0{password}");
                format!("AUTH PLAIN {}", base64_encode(response.as_bytes()))
            }
            (ClientSecret::Bearer { user, token }, Mechanism::XOAuth2) => {
                let response = format!("user={user}\x01auth=Bearer {token}\x01\x01");
                format!("AUTH XOAUTH2 {}", base64_encode(response.as_bytes()))
            }
            // E-MailRelay compatibility: the user name goes as an initial
            // response, so the server's first 334 asks for the password.
            (ClientSecret::Password { user, .. }, Mechanism::Login) => {
                format!("AUTH LOGIN {}", base64_encode(user.as_bytes()))
            }
            _ => format!("AUTH {mechanism}"),
        };
        let exchange = ClientExchange {
            mechanism,
            challenges: u32::from(matches!(
                (&secret, mechanism),
                (ClientSecret::Password { .. }, Mechanism::Login)
            )),
            secret,
        };
        (exchange, command)
    }

    /// The mechanism in use.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The response line to a `334` challenge (`text` is its base64).
    /// `*` cancels when the challenge makes no sense for the mechanism.
    pub fn handle_challenge(&mut self, text: &str) -> String {
        self.challenges += 1;
        match (&self.secret, self.mechanism, self.challenges) {
            (ClientSecret::Password { user, .. }, Mechanism::Login, 1) => {
                base64_encode(user.as_bytes())
            }
            (ClientSecret::Password { password, .. }, Mechanism::Login, 2) => {
                base64_encode(password.as_bytes())
            }
            (_, Mechanism::CramMd5, 1) => match base64_decode(text) {
                Some(challenge) => self.cram_md5(&challenge),
                None => "*".into(),
            },
            // The server's error details (a JSON document): an empty
            // response asks for the final 5xx.
            (_, Mechanism::XOAuth2, 1) => String::new(),
            _ => "*".into(),
        }
    }

    fn cram_md5(&self, challenge: &[u8]) -> String {
        let digest = match &self.secret {
            ClientSecret::Password { password, .. } => {
                HmacMd5Key::new(password.as_bytes()).mac(challenge)
            }
            ClientSecret::Md5 { key, .. } => key.mac(challenge),
            ClientSecret::Bearer { .. } => return "*".into(),
        };
        let response = format!("{} {}", self.secret.user(), hex(&digest));
        base64_encode(response.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(user: &str, password: &str) -> ClientSecret {
        ClientSecret::Password {
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn cram_md5_answers_rfc_2195s_example() {
        let (mut x, command) =
            ClientExchange::start(Mechanism::CramMd5, password("tim", "tanstaaftanstaaf"));
        assert_eq!(command, "AUTH CRAM-MD5");
        let challenge = base64_encode(b"<1896.697170952@postoffice.reston.mci.net>");
        assert_eq!(
            x.handle_challenge(&challenge),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
        );
    }

    #[test]
    fn a_stored_md5_key_gives_the_same_answer_as_the_password() {
        let md5 = ClientSecret::Md5 {
            user: "tim".into(),
            key: HmacMd5Key::new(b"tanstaaftanstaaf"),
        };
        let (mut x, _) = ClientExchange::start(Mechanism::CramMd5, md5);
        let challenge = base64_encode(b"<1896.697170952@postoffice.reston.mci.net>");
        assert_eq!(
            x.handle_challenge(&challenge),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
        );
    }

    #[test]
    fn plain_and_xoauth2_use_an_initial_response() {
        let (_, command) = ClientExchange::start(Mechanism::Plain, password("bob", "pw"));
        assert_eq!(
            command,
            format!("AUTH PLAIN {}", base64_encode(b"\0bob\0pw"))
        );
        let bearer = ClientSecret::Bearer {
            user: "bob@example.com".into(),
            token: "ya29.abc".into(),
        };
        let (mut x, command) = ClientExchange::start(Mechanism::XOAuth2, bearer);
        assert_eq!(
            command,
            format!(
                "AUTH XOAUTH2 {}",
                base64_encode(b"user=bob@example.com\x01auth=Bearer ya29.abc\x01\x01")
            )
        );
        assert_eq!(x.handle_challenge("eyJzdGF0dXMiOiI0MDEifQ=="), "");
    }

    #[test]
    fn login_sends_the_user_at_once_answers_the_password_prompt_then_cancels() {
        let (mut x, command) = ClientExchange::start(Mechanism::Login, password("bob", "pw"));
        assert_eq!(command, format!("AUTH LOGIN {}", base64_encode(b"bob")));
        assert_eq!(x.handle_challenge("UGFzc3dvcmQ6"), base64_encode(b"pw"));
        assert_eq!(x.handle_challenge("VXNlcm5hbWU6"), "*");
    }
}
