//! SASL mechanisms for SMTP AUTH (RFC 4954) and POP3 AUTH (RFC 5034),
//! without I/O: PLAIN (RFC 4616), LOGIN
//! (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195) on both sides, and
//! XOAUTH2 (Google's and Microsoft's bearer-token profile) as a client.
//!
//! The server side turns an exchange into [`Credentials`] for the driver to
//! check: this module never sees a password file, PAM or a clock. The
//! client side turns a [`ClientSecret`] into responses. CRAM-MD5 works from
//! E-MailRelay's stored HMAC-MD5 state ([`HmacMd5Key`]) as well as from a
//! plain password, so `md5` secrets from `emailrelay-passwd` serve it.
//! POP3's APOP (RFC 1939 section 7) is not SASL, but its claim is checked
//! the same way, so it is a [`Credentials`] variant too.

mod client;
mod hmac;
mod policy;
mod server;

pub use client::{ClientExchange, ClientSecret};
pub use hmac::HmacMd5Key;
pub use policy::{MechanismPolicy, PolicyError};
pub use server::{apop_credentials, apop_digest, Credentials, ServerExchange, Step};

/// The driver's verdict on credentials, for SMTP AUTH and POP alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// Good credentials; `name` is the authenticated identity.
    Accepted { name: String },
    /// Wrong name or password.
    Rejected,
    /// The check could not be done now (PAM or a token service down).
    Unavailable,
}

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// An AUTH mechanism this crate speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
    XOAuth2,
}

impl Mechanism {
    /// Every mechanism, strongest first: the client's default preference.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::XOAuth2,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
    ];

    /// The IANA name, as it appears in EHLO and AUTH.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// Parses a mechanism name, in any case.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Base64 as SASL uses it (RFC 4648 section 4, padded).
pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes SASL base64; `None` if it is not valid.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text.trim()).ok()
}

/// Lower-case hex, as CRAM-MD5 writes its digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
