//! SMTP AUTH policy: which secrets the server checks claims against
//! (`--server-auth`: a secrets file or `pam:`), and which account the
//! client authenticates with (`--client-auth`, the envelope's
//! `ClientAccountSelector`), including OAuth 2.0 accounts whose tokens the
//! relay renews itself.
//!
//! Must not: log a password, token or response; compare secrets in
//! variable time; fail a message because a token service is down.

pub mod credentials;
pub mod http;
pub mod lockout;
pub mod network;
pub mod oauth;
pub mod secrets;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use emailrelay_proto::sasl::{
    apop_digest, ClientSecret, Credentials, HmacMd5Key, Mechanism, MechanismPolicy,
};
use emailrelay_proto::smtp::{AuthConfig, AuthResult};
use subtle::ConstantTimeEq;

use crate::platform::pam::PamError;

pub use oauth::{OAuthAccount, OAuthError};
pub use secrets::{ClientAccount, Secrets, SecretsError, ServerSecret};

/// Failed attempts on one connection before the 421.
pub const MAX_FAILURES: u32 = 3;
/// The pause before answering a failed attempt: slows down guessing.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// An authentication setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// `pam:` in a build without PAM.
    #[error("pam: authentication is not available: this build has no PAM support")]
    NoPam,
}

/// Where the server checks credentials.
enum Source {
    Secrets(Box<Secrets>),
    /// The PAM service (`emailrelay`).
    Pam(String),
}

/// The server side: `--server-auth` and `--server-auth-config`.
pub struct ServerAuth {
    source: Source,
    policy: MechanismPolicy,
    /// Failures per client address, across connections.
    lockout: lockout::Lockout,
}

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.write_str("ServerAuth(..)")
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAuth(..)")
    }
}

impl ServerAuth {
    /// `spec` is a secrets file path or `pam:`.
    pub fn load(spec: &str, policy: MechanismPolicy) -> Result<ServerAuth, AuthError> {
        let source = if spec == "pam:" {
            if !crate::platform::pam::AVAILABLE {
                return Err(AuthError::NoPam);
            }
            Source::Pam("emailrelay".into())
        } else {
            let secrets = Secrets::load(Path::new(spec))?;
            for warning in &secrets.warnings {
                crate::warning!("{spec}: {warning}");
            }
            Source::Secrets(Box::new(secrets))
        };
        Ok(ServerAuth {
            source,
            policy,
            lockout: lockout::Lockout::default(),
        })
    }

    /// What a session from `peer` is offered, and the trusted keyword if
    /// the address is trusted.
    pub fn session_config(&self, peer: Option<IpAddr>) -> (AuthConfig, Option<String>) {
        let trusted = match (&self.source, peer) {
            (Source::Secrets(s), Some(ip)) => s.trusted_entry(ip).map(|t| (ip, t)),
            _ => None,
        };
        // E-MailRelay's words for the trace.
        let trust_note = trusted.map_or(String::new(), |(ip, t)| {
            format!(
                "trusting [{}]: matched [{}] from line {}",
                ip.to_canonical(),
                t.text,
                t.line
            )
        });
        let keyword = trusted.map(|(_, t)| t.keyword.clone());
        let config = AuthConfig {
            clear: self.policy.apply(&self.available(false), false),
            secure: self.policy.apply(&self.available(true), true),
            trusted: keyword.is_some(),
            trust_note,
            max_failures: MAX_FAILURES,
        };
        (config, keyword)
    }

    /// The SASL mechanisms offered in clear or under TLS, for POP's CAPA.
    pub fn mechanisms(&self, secure: bool) -> Vec<Mechanism> {
        self.policy.apply(&self.available(secure), secure)
    }

    /// Whether POP3's APOP can be offered: it needs a plain password (a
    /// stored hash or PAM cannot check it), and `x:apop` turns it off.
    pub fn offers_apop(&self, secure: bool) -> bool {
        let plain = match &self.source {
            Source::Secrets(s) => s
                .server
                .values()
                .any(|v| matches!(v, ServerSecret::Plain(_))),
            Source::Pam(_) => false,
        };
        plain && self.policy.allows_apop(secure)
    }

    /// Checks what a client at `peer` claimed. An address with too many
    /// recent failures is refused without a check (see [`lockout`]).
    pub async fn check(&self, peer: Option<IpAddr>, credentials: Credentials) -> AuthResult {
        let now = std::time::Instant::now();
        if let Some(ip) = peer {
            if self.lockout.admit(ip, now) == lockout::Admission::LockedOut {
                return AuthResult::Rejected;
            }
        }
        let result = self.check_credentials(credentials).await;
        match (&result, peer) {
            (AuthResult::Accepted { .. }, Some(ip)) => self.lockout.succeeded(ip),
            (AuthResult::Rejected, Some(ip)) if self.lockout.failed(ip, now) => {
                crate::warning!(
                    "authentication: too many failures from {}: all authentication from it refused for {}s",
                    ip.to_canonical(),
                    lockout::WINDOW.as_secs()
                );
            }
            _ => {}
        }
        result
    }

    async fn check_credentials(&self, credentials: Credentials) -> AuthResult {
        let user = credentials.user().to_string();
        let good = match &self.source {
            Source::Secrets(secrets) => check_secret(secrets.server.get(&user), &credentials),
            Source::Pam(service) => match pam_check(service.clone(), credentials).await {
                Ok(good) => good,
                Err(reason) => {
                    crate::error!("pam: {reason}");
                    return AuthResult::Unavailable;
                }
            },
        };
        if good {
            AuthResult::Accepted { name: user }
        } else {
            AuthResult::Rejected
        }
    }

    /// E-MailRelay's line for an authentication attempt, which fail2ban
    /// filters match (`failed authentication` after the address):
    /// `successful authentication of remote client using mechanism
    /// [plain] and plaintext secret for [alice] from line 1`.
    pub fn outcome_text(&self, mechanism: &str, user: &str, accepted: bool) -> String {
        let verdict = if accepted { "successful" } else { "failed" };
        let shown = emailrelay_proto::printable::printable(user.as_bytes());
        let secret = match &self.source {
            Source::Secrets(secrets) => {
                let kind = match secrets.server.get(user) {
                    Some(ServerSecret::Plain(_)) => "plaintext",
                    Some(ServerSecret::Md5(_)) => "md5",
                    None => "missing",
                };
                let line = secrets
                    .server_lines
                    .get(user)
                    .map(|n| format!(" from line {n}"))
                    .unwrap_or_default();
                format!("{kind} secret for [{shown}]{line}")
            }
            Source::Pam(service) => format!("pam service [{service}] for [{shown}]"),
        };
        format!(
            "{verdict} authentication of remote client using mechanism [{}] and {secret}",
            mechanism.to_ascii_lowercase()
        )
    }

    /// Mechanisms the secrets can serve: a plain password serves all
    /// three, a stored hash only CRAM-MD5, PAM only clear-text ones.
    /// E-MailRelay compatibility: a secrets file with no password at all
    /// (only `client` lines, or only trusted addresses) still asks
    /// untrusted clients to authenticate, and offers PLAIN under TLS (RFC
    /// 4954 section 4), which then fails for want of a secret: nobody
    /// relays, where a server without AUTH would let anyone.
    fn available(&self, secure: bool) -> Vec<Mechanism> {
        use Mechanism::*;
        match &self.source {
            Source::Pam(_) => vec![Plain, Login],
            Source::Secrets(s) => {
                let plain = s
                    .server
                    .values()
                    .any(|v| matches!(v, ServerSecret::Plain(_)));
                let md5 = s.server.values().any(|v| matches!(v, ServerSecret::Md5(_)));
                match (plain, md5, secure) {
                    // E-MailRelay's order (it also lists CRAM-SHA ones first).
                    (true, _, _) => vec![CramMd5, Plain, Login],
                    (false, true, _) => vec![CramMd5],
                    (false, false, true) => vec![Plain],
                    (false, false, false) => vec![],
                }
            }
        }
    }
}

/// Constant-time check of one claim against one stored secret. An
/// unknown user is checked against a dummy, so timing does not tell
/// which names exist.
fn check_secret(secret: Option<&ServerSecret>, credentials: &Credentials) -> bool {
    let dummy = ServerSecret::Plain(String::new());
    let known = secret.is_some();
    let secret = secret.unwrap_or(&dummy);
    let matches = match (secret, credentials) {
        (ServerSecret::Plain(stored), Credentials::Password { password, .. }) => {
            same(stored.as_bytes(), password.as_bytes())
        }
        (
            stored,
            Credentials::CramMd5 {
                challenge, digest, ..
            },
        ) => {
            let key = match stored {
                ServerSecret::Plain(p) => HmacMd5Key::new(p.as_bytes()),
                ServerSecret::Md5(key) => key.clone(),
            };
            key.mac(challenge.as_bytes())
                .ct_eq(digest.as_slice())
                .into()
        }
        (
            ServerSecret::Plain(stored),
            Credentials::Apop {
                challenge, digest, ..
            },
        ) => apop_digest(challenge, stored.as_bytes())
            .ct_eq(digest.as_slice())
            .into(),
        // A stored hash cannot check a clear-text password, nor APOP.
        (ServerSecret::Md5(_), Credentials::Password { .. } | Credentials::Apop { .. }) => false,
    };
    known && matches
}

/// Equal, in time that depends on neither value: both are hashed to a
/// fixed length first.
fn same(a: &[u8], b: &[u8]) -> bool {
    let digest = |x: &[u8]| ring::digest::digest(&ring::digest::SHA256, x);
    digest(a).as_ref().ct_eq(digest(b).as_ref()).into()
}

async fn pam_check(service: String, credentials: Credentials) -> Result<bool, PamError> {
    let Credentials::Password { user, password, .. } = credentials else {
        return Ok(false);
    };
    let check = move || crate::platform::pam::authenticate(&service, &user, &password);
    tokio::task::spawn_blocking(check)
        .await
        .map_err(|e| PamError::Task(e.to_string()))?
}

/// Why no client secret could be had for a message.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The envelope names a selector the secrets file does not have: the
    /// message fails.
    #[error("no client authentication account: selector [{0}]")]
    NoAccount(String),
    /// An OAuth 2.0 token could not be renewed: the message waits.
    #[error(transparent)]
    Token(#[from] OAuthError),
}

/// The client side: `--client-auth` and `--client-auth-config`.
pub struct ClientAuth {
    accounts: HashMap<String, ClientAccount>,
    /// Where each account came from in the secrets file, by selector.
    lines: HashMap<String, usize>,
    oauth: HashMap<String, Arc<OAuthAccount>>,
    pub policy: MechanismPolicy,
}

impl ClientAuth {
    /// `spec` is a secrets file path or `plain:<base64-id>:<base64-pw>`.
    pub fn load(spec: &str, policy: MechanismPolicy) -> Result<ClientAuth, AuthError> {
        let secrets = if spec.starts_with("plain:") && !Path::new(spec).exists() {
            Secrets::inline_client(spec)?
        } else {
            Secrets::load(Path::new(spec))?
        };
        for warning in &secrets.warnings {
            crate::warning!("{spec}: {warning}");
        }
        let mut oauth = HashMap::new();
        for (selector, account) in &secrets.client {
            if let ClientAccount::OAuth2 { user, file } = account {
                oauth.insert(selector.clone(), Arc::new(OAuthAccount::load(user, file)?));
            }
        }
        Ok(ClientAuth {
            accounts: secrets.client,
            lines: secrets.client_lines,
            oauth,
            policy,
        })
    }

    /// E-MailRelay's line once the upstream accepted an account:
    /// `successful authentication with remote server using mechanism
    /// [plain] and plaintext secret for [alice] from line 1`.
    pub fn success_text(&self, selector: &str, mechanism: &str, user: &str) -> String {
        let kind = match self.accounts.get(selector) {
            Some(ClientAccount::Md5 { .. }) => "md5",
            Some(ClientAccount::OAuth2 { .. }) => "oauth2",
            _ => "plaintext",
        };
        let line = self
            .lines
            .get(selector)
            .map(|n| format!(" from line {n}"))
            .unwrap_or_default();
        format!(
            "successful authentication with remote server using mechanism [{}] and {kind} secret for [{}]{line}",
            mechanism.to_ascii_lowercase(),
            emailrelay_proto::printable::printable(user.as_bytes())
        )
    }

    /// The messages a minute the account behind `selector` allows, if its
    /// OAuth account file (or provider) sets a limit.
    pub fn rate(&self, selector: &str) -> Option<usize> {
        self.oauth.get(selector).and_then(|a| a.rate())
    }

    /// The renewing OAuth 2.0 account behind `selector`, if it is one.
    pub fn oauth_account(&self, selector: &str) -> Option<&Arc<OAuthAccount>> {
        self.oauth.get(selector)
    }

    /// The renewing OAuth 2.0 accounts, for the background renewal tasks.
    pub fn oauth_accounts(&self) -> impl Iterator<Item = &Arc<OAuthAccount>> {
        self.oauth.values()
    }

    /// The secret for a message's `ClientAccountSelector`; `Ok(None)` means
    /// no authentication: the account says so, or the message names no
    /// selector and the file has only selector lines. A selector the file
    /// does not have is an error.
    pub async fn secret(&self, selector: &str) -> Result<Option<ClientSecret>, AccountError> {
        let account = match self.accounts.get(selector) {
            Some(account) => account,
            // A message without a selector goes unauthenticated when the
            // file has only selector lines; with no client lines at all,
            // E-MailRelay fails it ("no client authentication account").
            None if selector.is_empty() && !self.accounts.is_empty() => return Ok(None),
            None => return Err(AccountError::NoAccount(selector.to_string())),
        };
        Ok(Some(match account {
            ClientAccount::None => return Ok(None),
            ClientAccount::Password { user, password } => ClientSecret::Password {
                user: user.clone(),
                password: password.clone(),
            },
            ClientAccount::Md5 { user, key } => ClientSecret::Md5 {
                user: user.clone(),
                key: key.clone(),
            },
            ClientAccount::Token { user, token } => ClientSecret::Bearer {
                user: user.clone(),
                token: token.clone(),
            },
            ClientAccount::OAuth2 { user, .. } => {
                let token = match self.oauth.get(selector) {
                    Some(account) => account.access_token().await?,
                    None => return Err(AccountError::NoAccount(selector.to_string())),
                };
                ClientSecret::Bearer {
                    user: user.clone(),
                    token,
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(text: &str) -> ServerAuth {
        ServerAuth {
            source: Source::Secrets(Box::new(Secrets::parse(text, Path::new("test")).unwrap())),
            policy: MechanismPolicy::default(),
            lockout: lockout::Lockout::default(),
        }
    }

    fn password(user: &str, password: &str) -> Credentials {
        Credentials::Password {
            authzid: String::new(),
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn mechanisms_follow_what_the_secrets_can_serve() {
        use Mechanism::*;
        let plain = secrets(
            "server plain alice pw\nserver md5 bob 9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=\n",
        );
        assert_eq!(plain.session_config(None).0.clear, [CramMd5, Plain, Login]);
        let md5 = secrets("server md5 bob 9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=\n");
        assert_eq!(md5.session_config(None).0.clear, [CramMd5]);
        let trusted_only = secrets("server none 127.0.0.1 local\n");
        let (config, keyword) = trusted_only.session_config(Some("127.0.0.1".parse().unwrap()));
        assert!(config.clear.is_empty() && config.trusted);
        assert_eq!(keyword.as_deref(), Some("local"));
    }

    #[tokio::test]
    async fn plain_and_md5_secrets_check_their_claims() {
        let auth = secrets("server plain alice e+3Dmc2\nserver md5 bob 9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=\n");
        let accepted = |name: &str| AuthResult::Accepted { name: name.into() };
        assert_eq!(
            auth.check(None, password("alice", "e=mc2")).await,
            accepted("alice")
        );
        assert_eq!(
            auth.check(None, password("alice", "e=mc3")).await,
            AuthResult::Rejected
        );
        assert_eq!(
            auth.check(None, password("nobody", "")).await,
            AuthResult::Rejected
        );
        // A hash cannot check a clear password, even the right one.
        assert_eq!(
            auth.check(None, password("bob", "password123")).await,
            AuthResult::Rejected
        );
        let challenge = "<1.2@relay>".to_string();
        let digest = HmacMd5Key::new(b"password123")
            .mac(challenge.as_bytes())
            .to_vec();
        let cram = Credentials::CramMd5 {
            user: "bob".into(),
            challenge,
            digest,
        };
        assert_eq!(auth.check(None, cram).await, accepted("bob"));
    }

    #[tokio::test]
    async fn selectors_choose_the_client_account() {
        let text = "client plain alice e+3Dmc2 use_alice\nclient plain:b = = noauth\n";
        let secrets = Secrets::parse(text, Path::new("test")).unwrap();
        let auth = ClientAuth {
            accounts: secrets.client,
            lines: secrets.client_lines,
            oauth: HashMap::new(),
            policy: MechanismPolicy::default(),
        };
        let alice = auth.secret("use_alice").await.unwrap().unwrap();
        assert_eq!(alice.user(), "alice");
        assert_eq!(auth.secret("noauth").await.unwrap(), None);
        // No default line: a message without a selector goes unauthenticated.
        assert_eq!(auth.secret("").await.unwrap(), None);
        assert!(
            matches!(auth.secret("other").await, Err(AccountError::NoAccount(s)) if s == "other")
        );
    }

    #[test]
    fn same_is_equality() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(same(b"", b""));
    }
}
