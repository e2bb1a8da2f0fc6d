//! OAuth 2.0 accounts whose access tokens the relay obtains and renews
//! itself (RFC 6749), for XOAUTH2 to Microsoft 365 and Google.
//!
//! A secrets line `client oauth2 <user> <account-file>` names an account
//! file of `key = value` lines:
//!
//! ```text
//! provider = microsoft        # or google, or leave out and give token-url
//! tenant = contoso.onmicrosoft.com   # microsoft only; default "common"
//! client-id = 00000000-0000-0000-0000-000000000000
//! client-secret = ...         # confidential clients only
//! grant = refresh_token       # or client_credentials
//! scope = https://outlook.office.com/SMTP.Send offline_access
//! refresh-token = ...         # written by `emailrelay-passwd --oauth`
//! ```
//!
//! App credentials instead of a secret: `client-certificate` and
//! `client-key` (PEM; one file may hold both) or `client-pkcs12` (with
//! `client-pkcs12-password`) sign a client assertion for
//! `client_credentials` (see `credentials`); `service-account` names a
//! Google service account key, used with the JWT bearer grant for the
//! mailbox (`grant = jwt_bearer`, the default when the key is given).
//! `transport = graph` sends through Microsoft Graph's `sendMail` instead
//! of SMTP (`graph-url`, `mailbox`); `ca-file` names the CAs to trust for
//! the provider's URLs instead of the system's. Paths are relative to the
//! account file's directory. docs/oauth.md has every key.
//!
//! Tokens are renewed ahead of expiry by a background task, so a
//! forwarding pass normally finds a fresh one. A renewal that fails is
//! logged once, as one error, and retried with back-off; messages meanwhile
//! stay in the spool. A rotated refresh token is written back to the
//! account file (mode 0600, by atomic rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::credentials::{Certificate, CredentialError, ServiceAccount};
use super::http::{self, Url};

/// How long before expiry a token is renewed, at most.
const RENEW_AHEAD: Duration = Duration::from_secs(300);
/// Wait after a failed renewal before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Deadline for one token request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An OAuth account that cannot be used, or a renewal that failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum OAuthError {
    /// The account file is missing or malformed.
    #[error("oauth2 account file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// The token endpoint refused or could not be reached.
    #[error("oauth2: cannot get an access token for {user} from {url}: {reason}")]
    Renewal {
        user: String,
        url: String,
        reason: String,
    },
}

/// What is wrong in an account file's text.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountFileError {
    /// A line that is not `key = value`.
    #[error("line {0}: expected key = value")]
    NotKeyValue(usize),
    /// A key that is not one of [`KEYS`].
    #[error("line {line}: unknown key \"{key}\": use {}", KEYS.join(", "))]
    UnknownKey { line: usize, key: String },
    /// Neither a provider nor a token URL.
    #[error("give a provider (microsoft, google) or a token-url")]
    NoProvider,
    /// A provider we do not know.
    #[error("unknown provider \"{0}\": use microsoft, google or token-url")]
    UnknownProvider(String),
    /// A grant we do not know.
    #[error("unknown grant \"{0}\": use refresh_token or client_credentials")]
    UnknownGrant(String),
    /// A rate that is not a count.
    #[error("rate \"{0}\": give messages a minute, or 0 for no limit")]
    Rate(String),
    /// No `client-id`.
    #[error("no client-id")]
    NoClientId,
    /// The token URL does not parse.
    #[error("{0}")]
    TokenUrl(String),
    /// `client_credentials` without a secret.
    #[error("the client_credentials grant needs a client-secret, or a client-certificate and client-key, or a client-pkcs12")]
    NoSecret,
    /// A transport we do not know.
    #[error("unknown transport \"{0}\": use smtp or graph")]
    Transport(String),
    /// `delivery-trace` is not a number of seconds.
    #[error("delivery-trace \"{0}\": give the seconds to wait before the first look-up")]
    DeliveryTrace(String),
    /// `delivery-trace-report` is not an address.
    #[error("delivery-trace-report \"{0}\": give the address to report to, as user@domain")]
    DeliveryTraceReport(String),
    /// A date that does not parse.
    #[error("client-secret-expires \"{0}\": give a date as YYYY-MM-DD")]
    Expires(String),
    /// `jwt_bearer` without a service account key.
    #[error("the jwt_bearer grant needs a service-account key file")]
    NoServiceAccount,
    /// A client-certificate without its key, or the other way round.
    #[error("give client-certificate and client-key together")]
    HalfCertificate,
}

/// Why `emailrelay-passwd --oauth` could not get a refresh token.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// The account file cannot be used.
    #[error(transparent)]
    Account(#[from] OAuthError),
    /// Neither a provider nor a `device-url` in the account file.
    #[error("the account file needs a provider or a device-url for the consent")]
    NoDeviceUrl,
    /// A request failed, or a URL does not parse.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// The provider refused the device authorization.
    #[error("device authorization refused: {0}")]
    Refused(String),
    /// The sign-in failed.
    #[error("sign-in failed: {0}")]
    SignIn(String),
    /// The account file cannot be rewritten with the token.
    #[error("cannot write {}: {source}", path.display())]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The user did not sign in in time.
    #[error("the code expired before sign-in finished: run the command again")]
    Expired,
}

/// Exchange Online's limit: messages a minute per mailbox.
pub const MICROSOFT_RATE: usize = 30;

/// The keys an account file may hold.
const KEYS: [&str; 22] = [
    "provider",
    "rate",
    "tenant",
    "token-url",
    "device-url",
    "client-id",
    "client-secret",
    "grant",
    "scope",
    "refresh-token",
    "transport",
    "graph-url",
    "mailbox",
    "ca-file",
    "client-certificate",
    "client-key",
    "client-pkcs12",
    "client-pkcs12-password",
    "service-account",
    "client-secret-expires",
    "delivery-trace",
    "delivery-trace-report",
];

/// Microsoft Graph's address, unless `graph-url` says otherwise.
pub const GRAPH_URL: &str = "https://graph.microsoft.com";
/// The scope of an app token for Graph.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// How an account's mail leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// SMTP with XOAUTH2 to the `--forward-to` address.
    Smtp,
    /// Microsoft Graph's `sendMail`.
    Graph,
}

/// What a Graph route needs from its account file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphSettings {
    /// `graph-url`, without a trailing slash.
    pub url: String,
    /// `mailbox`, or the secrets file's user name.
    pub mailbox: String,
    /// `ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `delivery-trace`: look each sent message up in message trace,
    /// first after this long.
    pub delivery_trace: Option<std::time::Duration>,
    /// `delivery-trace-report`: where a report goes when message trace
    /// says a message did not arrive.
    pub trace_report: Option<String>,
}

/// The grant used to get access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    RefreshToken,
    ClientCredentials,
    /// RFC 7523 section 2.1, with a Google service account's key.
    JwtBearer,
}

/// An account file's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountFile {
    pub token_url: String,
    pub device_url: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scope: String,
    pub grant: Grant,
    pub refresh_token: Option<String>,
    /// Messages a minute to send with this account (`rate =`; 0 for no
    /// limit); `provider = microsoft` means 30, Exchange Online's limit.
    pub rate: Option<usize>,
    /// `transport`.
    pub transport: Transport,
    /// `graph-url`.
    pub graph_url: String,
    /// `mailbox`.
    pub mailbox: Option<String>,
    /// `ca-file`: the CAs trusted for the token and Graph URLs.
    pub ca_file: Option<PathBuf>,
    /// `client-certificate` and `client-key`.
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// `client-pkcs12` and its password.
    pub pkcs12: Option<(PathBuf, String)>,
    /// `service-account`.
    pub service_account: Option<PathBuf>,
    /// `client-secret-expires`, as Unix time (the day's start, UTC).
    pub secret_expires: Option<i64>,
    /// `delivery-trace`, in seconds.
    pub delivery_trace: Option<u64>,
    /// `delivery-trace-report`.
    pub trace_report: Option<String>,
    /// Every line as read, for rewriting with a new refresh token.
    lines: Vec<String>,
}

impl AccountFile {
    /// Reads and checks an account file.
    pub fn load(path: &Path) -> Result<AccountFile, OAuthError> {
        let err = |reason: String| OAuthError::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut file = AccountFile::parse(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let (cert, key) = match file.certificate.as_mut() {
            Some((cert, key)) => (Some(cert), Some(key)),
            None => (None, None),
        };
        for p in [
            file.ca_file.as_mut(),
            cert,
            key,
            file.pkcs12.as_mut().map(|c| &mut c.0),
            file.service_account.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        Ok(file)
    }

    /// Parses account-file text.
    pub fn parse(text: &str) -> Result<AccountFile, AccountFileError> {
        let mut values = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let content = line.split(" #").next().unwrap_or("").trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let (key, value) = content
                .split_once('=')
                .ok_or(AccountFileError::NotKeyValue(n + 1))?;
            let key = key.trim().to_ascii_lowercase();
            if !KEYS.contains(&key.as_str()) {
                return Err(AccountFileError::UnknownKey { line: n + 1, key });
            }
            values.insert(key, value.trim().to_string());
        }
        let get = |k: &str| values.get(k).filter(|v| !v.is_empty()).cloned();
        let tenant = get("tenant").unwrap_or_else(|| "common".into());
        let provider = get("provider").unwrap_or_default().to_ascii_lowercase();
        let transport = match get("transport").as_deref() {
            None | Some("smtp") => Transport::Smtp,
            Some("graph") => Transport::Graph,
            Some(other) => return Err(AccountFileError::Transport(other.to_string())),
        };
        let (token_url, device_url, scope) = match provider.as_str() {
            "microsoft" => {
                let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
                (
                    format!("{base}/token"),
                    Some(format!("{base}/devicecode")),
                    "https://outlook.office.com/SMTP.Send offline_access",
                )
            }
            "google" => (
                "https://oauth2.googleapis.com/token".to_string(),
                Some("https://oauth2.googleapis.com/device/code".to_string()),
                "https://mail.google.com/",
            ),
            "" => (
                get("token-url").ok_or(AccountFileError::NoProvider)?,
                None,
                "",
            ),
            other => return Err(AccountFileError::UnknownProvider(other.to_string())),
        };
        let service_account = get("service-account").map(PathBuf::from);
        let grant = match get("grant").as_deref() {
            None if service_account.is_some() => Grant::JwtBearer,
            None | Some("refresh_token") => Grant::RefreshToken,
            Some("client_credentials") => Grant::ClientCredentials,
            Some("jwt_bearer") => Grant::JwtBearer,
            Some(other) => return Err(AccountFileError::UnknownGrant(other.to_string())),
        };
        let rate = match get("rate") {
            // Exchange Online's SMTP limit; Graph's are kept by the
            // Graph transport itself.
            None if provider == "microsoft" && transport == Transport::Smtp => Some(MICROSOFT_RATE),
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => return Err(AccountFileError::Rate(text)),
            },
        };
        // An app token for Graph has Graph's scope, not SMTP's.
        // And an app's token for Exchange's SMTP has the `.default` scope.
        // A user's own (delegated) token for Graph asks for Mail.Send.
        let scope = match (transport, provider.as_str(), grant) {
            (Transport::Graph, "microsoft" | "", Grant::RefreshToken) => {
                "https://graph.microsoft.com/Mail.Send offline_access"
            }
            (Transport::Graph, "microsoft" | "", _) => GRAPH_SCOPE,
            (Transport::Smtp, "microsoft", Grant::ClientCredentials) => {
                "https://outlook.office365.com/.default"
            }
            _ => scope,
        };
        let certificate = match (get("client-certificate"), get("client-key")) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => return Err(AccountFileError::HalfCertificate),
        };
        let secret_expires = match get("client-secret-expires") {
            None => None,
            Some(text) => Some(
                chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc().timestamp())
                    .ok_or(AccountFileError::Expires(text))?,
            ),
        };
        // A service account's key file carries no client id of its own
        // that the grant needs.
        let client_id = match grant {
            Grant::JwtBearer => get("client-id").unwrap_or_default(),
            _ => get("client-id").ok_or(AccountFileError::NoClientId)?,
        };
        let delivery_trace = match get("delivery-trace") {
            None => None,
            Some(text) => Some(
                text.parse::<u64>()
                    .map_err(|_| AccountFileError::DeliveryTrace(text))?,
            ),
        };
        let trace_report = match get("delivery-trace-report") {
            None => None,
            Some(text) => {
                let ok = text.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && !domain.is_empty()
                        && !text.contains(|c: char| c.is_whitespace() || "<>,;\"".contains(c))
                });
                match ok {
                    true => Some(text),
                    false => return Err(AccountFileError::DeliveryTraceReport(text)),
                }
            }
        };
        let file = AccountFile {
            rate,
            delivery_trace,
            trace_report,
            token_url: get("token-url").unwrap_or(token_url),
            device_url: get("device-url").or(device_url),
            client_id,
            client_secret: get("client-secret"),
            scope: get("scope").unwrap_or_else(|| scope.to_string()),
            grant,
            refresh_token: get("refresh-token"),
            transport,
            graph_url: get("graph-url")
                .unwrap_or_else(|| GRAPH_URL.to_string())
                .trim_end_matches('/')
                .to_string(),
            mailbox: get("mailbox"),
            ca_file: get("ca-file").map(PathBuf::from),
            certificate,
            pkcs12: get("client-pkcs12").map(|p| {
                (
                    PathBuf::from(p),
                    get("client-pkcs12-password").unwrap_or_default(),
                )
            }),
            service_account,
            secret_expires,
            lines: text.lines().map(str::to_string).collect(),
        };
        Url::parse(&file.token_url).map_err(|e| AccountFileError::TokenUrl(e.to_string()))?;
        Url::parse(&file.graph_url).map_err(|e| AccountFileError::TokenUrl(e.to_string()))?;
        let signs = file.certificate.is_some() || file.pkcs12.is_some();
        if file.grant == Grant::ClientCredentials && file.client_secret.is_none() && !signs {
            return Err(AccountFileError::NoSecret);
        }
        if file.grant == Grant::JwtBearer && file.service_account.is_none() {
            return Err(AccountFileError::NoServiceAccount);
        }
        Ok(file)
    }

    /// Rewrites the file with a new refresh token: private, and atomic.
    pub fn save_refresh_token(&mut self, path: &Path, token: &str) -> std::io::Result<()> {
        let mut replaced = false;
        let mut text = String::new();
        for line in &self.lines {
            let key = line
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if key == "refresh-token" {
                if !replaced {
                    text.push_str(&format!("refresh-token = {token}\n"));
                }
                replaced = true;
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        if !replaced {
            text.push_str(&format!("refresh-token = {token}\n"));
        }
        let temp = path.with_extension("new");
        crate::platform::files::write_atomic(path, &temp, text.as_bytes(), 0o600)?;
        self.lines = text.lines().map(str::to_string).collect();
        self.refresh_token = Some(token.to_string());
        Ok(())
    }
}

#[derive(Clone)]
struct Token {
    access: String,
    renew_at: Instant,
    expires_at: Instant,
}

#[derive(Default)]
struct State {
    token: Option<Token>,
    /// The last renewal failed: its error, and when to try again.
    failure: Option<(OAuthError, Instant)>,
}

/// One renewing account. Share it as `Arc<OAuthAccount>`.
pub struct OAuthAccount {
    user: String,
    path: PathBuf,
    file: Mutex<AccountFile>,
    state: tokio::sync::Mutex<State>,
    /// The certificate that signs client assertions, if the file names one.
    certificate: Option<Certificate>,
    /// The Google service account, if the file names one.
    service_account: Option<ServiceAccount>,
    /// The days-before-expiry warnings given (30, 7, 1): the smallest.
    warned: std::sync::atomic::AtomicU64,
    /// Message trace's final statuses of sent mail, counted by status.
    traced: Mutex<std::collections::BTreeMap<String, u64>>,
}

/// Days before a credential's expiry when the log warns.
pub const EXPIRY_WARNINGS: [u64; 3] = [30, 7, 1];

impl OAuthAccount {
    /// Loads the account file; checks that it can be used.
    pub fn load(user: &str, path: &Path) -> Result<OAuthAccount, OAuthError> {
        let file = AccountFile::load(path)?;
        if file.grant == Grant::RefreshToken && file.refresh_token.is_none() {
            return Err(OAuthError::File {
                path: path.to_path_buf(),
                reason: "no refresh-token yet: run emailrelay-passwd --oauth on it first".into(),
            });
        }
        let bad = |e: CredentialError| OAuthError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let certificate = match (&file.certificate, &file.pkcs12) {
            (Some((cert, key)), _) => Some(Certificate::from_pem(cert, key).map_err(bad)?),
            (None, Some((p12, password))) => {
                Some(Certificate::from_pkcs12(p12, password).map_err(bad)?)
            }
            (None, None) => None,
        };
        let service_account = match &file.service_account {
            Some(key) => Some(ServiceAccount::load(key).map_err(bad)?),
            None => None,
        };
        Ok(OAuthAccount {
            user: user.to_string(),
            path: path.to_path_buf(),
            file: Mutex::new(file),
            state: tokio::sync::Mutex::new(State::default()),
            certificate,
            service_account,
            warned: std::sync::atomic::AtomicU64::new(u64::MAX),
            traced: Mutex::default(),
        })
    }

    /// Counts one recipient's final status in message trace.
    pub fn count_trace(&self, status: &str) {
        if let Ok(mut map) = self.traced.lock() {
            *map.entry(status.to_string()).or_default() += 1;
        }
    }

    /// Message trace's final statuses so far: (status, recipients).
    pub fn traces(&self) -> Vec<(String, u64)> {
        self.traced
            .lock()
            .map(|map| map.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// How the account's mail leaves; for Graph, where and as whom.
    pub fn graph(&self) -> Option<GraphSettings> {
        let file = self.file.lock().ok()?;
        (file.transport == Transport::Graph).then(|| GraphSettings {
            url: file.graph_url.clone(),
            mailbox: file.mailbox.clone().unwrap_or_else(|| self.user.clone()),
            ca_file: file.ca_file.clone(),
            delivery_trace: file.delivery_trace.map(std::time::Duration::from_secs),
            trace_report: file.trace_report.clone(),
        })
    }

    /// The access token `token` was refused (Graph's 401): it is not used
    /// again, and the next [`OAuthAccount::access_token`] gets a new one.
    pub async fn refused(&self, token: &str) {
        let mut state = self.state.lock().await;
        if state.token.as_ref().is_some_and(|t| t.access == token) {
            state.token = None;
            state.failure = None;
        }
    }

    /// What expires first of the account's own credentials, and when
    /// (Unix time): the certificate's notAfter, or the secret's date.
    pub fn credential_expiry(&self) -> Option<(&'static str, i64)> {
        let secret = self.file.lock().ok().and_then(|f| f.secret_expires);
        match (&self.certificate, secret) {
            (Some(cert), _) => Some(("certificate", cert.not_after)),
            (None, Some(when)) => Some(("client secret", when)),
            (None, None) => None,
        }
    }

    /// Warns once as the credential comes within 30, 7 and 1 days of its
    /// expiry (and every check once it has expired).
    pub fn warn_expiry(&self, now_unix: i64) {
        use std::sync::atomic::Ordering;
        let Some((what, when)) = self.credential_expiry() else {
            return;
        };
        let left = when - now_unix;
        if left <= 0 {
            crate::error!(
                "oauth2: the {what} of {} ({}) has expired: the provider will refuse it",
                self.user,
                self.path.display()
            );
            return;
        }
        // Days or part of one: 19 days and an hour is "20 day(s)".
        let days = u64::try_from(left).unwrap_or(0).div_ceil(86400);
        let Some(level) = EXPIRY_WARNINGS.iter().copied().filter(|d| days <= *d).min() else {
            return;
        };
        if self.warned.fetch_min(level, Ordering::Relaxed) > level {
            crate::warning!(
                "oauth2: the {what} of {} ({}) expires in {} day(s), on {}: renew it",
                self.user,
                self.path.display(),
                days,
                chrono::DateTime::from_timestamp(when, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default()
            );
        }
    }

    /// The account file's messages a minute, if it limits them.
    pub fn rate(&self) -> Option<usize> {
        self.file.lock().ok().and_then(|f| f.rate)
    }

    /// The account's user name (the secrets file's).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// When the access token held now expires, as Unix time; `None`
    /// without one (or while it is being renewed).
    pub fn expires_at_unix(&self) -> Option<u64> {
        let state = self.state.try_lock().ok()?;
        let left = state
            .token
            .as_ref()?
            .expires_at
            .checked_duration_since(Instant::now())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some((now + left).as_secs())
    }

    /// A valid access token: the cached one, or a new one.
    pub async fn access_token(&self) -> Result<String, OAuthError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(token) = state.token.as_ref().filter(|t| now < t.renew_at) {
            return Ok(token.access.clone());
        }
        // A token that is due for renewal but not yet expired still works
        // while the renewal is failing.
        let still_valid = state
            .token
            .as_ref()
            .filter(|t| now < t.expires_at)
            .map(|t| t.access.clone());
        if let Some((error, retry_at)) = &state.failure {
            if now < *retry_at {
                return still_valid.ok_or_else(|| error.clone());
            }
        }
        match self.renew().await {
            Ok(token) => {
                if state.failure.take().is_some() {
                    crate::info!("oauth2: access token for {} renewed again", self.user);
                }
                let access = token.access.clone();
                state.token = Some(token);
                Ok(access)
            }
            Err(error) => {
                // One error line per outage, not one per message.
                if state.failure.is_none() {
                    crate::error!("{error}: mail for this account stays in the spool");
                }
                state.failure = Some((error.clone(), now + RETRY_AFTER));
                still_valid.ok_or(error)
            }
        }
    }

    /// Keeps the token fresh until the runtime stops: renews it when it is
    /// due, so that forwarding never waits for the token endpoint.
    pub async fn keep_fresh(self: std::sync::Arc<Self>) {
        loop {
            self.warn_expiry(chrono::Utc::now().timestamp());
            let _ = self.access_token().await;
            let wake = {
                let state = self.state.lock().await;
                match (&state.token, &state.failure) {
                    (_, Some((_, retry_at))) => *retry_at,
                    (Some(token), None) => token.renew_at,
                    (None, None) => Instant::now() + RETRY_AFTER,
                }
            };
            // At least hourly, for the expiry warnings.
            let wake = wake.min(Instant::now() + Duration::from_secs(3600));
            tokio::time::sleep_until(wake.max(Instant::now() + Duration::from_secs(1))).await;
        }
    }

    /// One token request, as a check (`emailrelay-passwd --check`):
    /// the token and its lifetime, nothing cached or logged.
    pub async fn fetch_token(&self) -> Result<(String, Duration), OAuthError> {
        let token = self.renew().await?;
        let lifetime = token.expires_at.saturating_duration_since(Instant::now());
        Ok((token.access, lifetime))
    }

    /// The token URL, for messages.
    pub fn token_url(&self) -> String {
        self.file
            .lock()
            .map(|f| f.token_url.clone())
            .unwrap_or_default()
    }

    async fn renew(&self) -> Result<Token, OAuthError> {
        let file = self
            .file
            .lock()
            .map(|f| f.clone())
            .map_err(|_| self.failed("lock poisoned"))?;
        let url = Url::parse(&file.token_url).map_err(|e| self.failed(&e.to_string()))?;
        let refresh = file.refresh_token.clone().unwrap_or_default();
        let assertion = self.assertion(&file)?;
        let form = token_form(&file, &refresh, assertion.as_deref());
        let (status, json) = http::post_form(&url, &form, REQUEST_TIMEOUT, file.ca_file.as_deref())
            .await
            .map_err(|e| self.failed(&e.to_string()))?;
        let access = json["access_token"].as_str().filter(|t| !t.is_empty());
        let Some(access) = access.filter(|_| status == 200) else {
            return Err(self.failed(&describe_error(status, &json)));
        };
        let lifetime = Duration::from_secs(json["expires_in"].as_u64().unwrap_or(3600));
        if let Some(new_refresh) = json["refresh_token"].as_str() {
            if new_refresh != refresh {
                self.save_refresh_token(new_refresh);
            }
        }
        self.warn_expiry(chrono::Utc::now().timestamp());
        crate::verbose!(
            "oauth2: new access token for {}, valid for {}s",
            self.user,
            lifetime.as_secs()
        );
        let now = Instant::now();
        Ok(Token {
            access: access.to_string(),
            renew_at: now + lifetime.saturating_sub(renew_ahead(lifetime)),
            expires_at: now + lifetime,
        })
    }

    /// The signed JWT the grant needs, if it needs one.
    fn assertion(&self, file: &AccountFile) -> Result<Option<String>, OAuthError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let signed = match (file.grant, &self.certificate, &self.service_account) {
            (Grant::JwtBearer, _, Some(sa)) => {
                let mailbox = file.mailbox.as_deref().unwrap_or(&self.user);
                sa.assertion(mailbox, &file.scope, &file.token_url, now)
            }
            (Grant::ClientCredentials, Some(cert), _) if file.client_secret.is_none() => {
                cert.assertion(&file.client_id, &file.token_url, now)
            }
            _ => return Ok(None),
        };
        signed.map(Some).map_err(|e| self.failed(&e.to_string()))
    }

    fn save_refresh_token(&self, token: &str) {
        let Ok(mut file) = self.file.lock() else {
            return;
        };
        if let Err(e) = file.save_refresh_token(&self.path, token) {
            crate::warning!(
                "oauth2: cannot save the new refresh token to {}: {e}",
                self.path.display()
            );
        }
    }

    fn failed(&self, reason: &str) -> OAuthError {
        let url = self
            .file
            .lock()
            .map(|f| f.token_url.clone())
            .unwrap_or_default();
        OAuthError::Renewal {
            user: self.user.clone(),
            url,
            reason: reason.to_string(),
        }
    }
}

/// The token request's fields for the account's grant (RFC 6749 sections
/// 4.4 and 6, RFC 7523 sections 2.1 and 2.2).
fn token_form<'a>(
    file: &'a AccountFile,
    refresh: &'a str,
    assertion: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    if file.grant == Grant::JwtBearer {
        return vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.unwrap_or("")),
        ];
    }
    let mut form: Vec<(&str, &str)> = vec![("client_id", &file.client_id)];
    match (&file.client_secret, assertion) {
        (Some(secret), _) => form.push(("client_secret", secret)),
        (None, Some(jwt)) => {
            form.push(("client_assertion_type", ASSERTION_TYPE));
            form.push(("client_assertion", jwt));
        }
        (None, None) => {}
    }
    if !file.scope.is_empty() {
        form.push(("scope", &file.scope));
    }
    match file.grant {
        Grant::RefreshToken => {
            form.push(("grant_type", "refresh_token"));
            form.push(("refresh_token", refresh));
        }
        _ => form.push(("grant_type", "client_credentials")),
    }
    form
}

/// Renew at the earlier of five minutes before expiry and 80% of the way.
fn renew_ahead(lifetime: Duration) -> Duration {
    RENEW_AHEAD.min(lifetime / 5)
}

/// RFC 6749 section 5.2 error fields, in one line.
pub fn describe_error(status: u16, json: &serde_json::Value) -> String {
    let code = json["error"]
        .as_str()
        .unwrap_or("no access_token in the answer");
    match json["error_description"].as_str() {
        Some(text) => format!(
            "HTTP {status}: {code}: {}",
            text.lines().next().unwrap_or("")
        ),
        None => format!("HTTP {status}: {code}"),
    }
}

/// The device-code consent (RFC 8628), for `emailrelay-passwd --oauth`:
/// prints where to sign in, polls until the user has, and saves the
/// refresh token in the account file.
pub async fn device_consent(path: &Path) -> Result<(), ConsentError> {
    let mut file = AccountFile::load(path)?;
    let device_url = file.device_url.clone().ok_or(ConsentError::NoDeviceUrl)?;
    let device = Url::parse(&device_url)?;
    let token = Url::parse(&file.token_url)?;
    let mut form = vec![
        ("client_id", file.client_id.as_str()),
        ("scope", file.scope.as_str()),
    ];
    let (status, json) = http::post_form(&device, &form, REQUEST_TIMEOUT, None).await?;
    let (Some(device_code), Some(user_code)) =
        (json["device_code"].as_str(), json["user_code"].as_str())
    else {
        return Err(ConsentError::Refused(describe_error(status, &json)));
    };
    let verification = json["verification_uri"]
        .as_str()
        .or(json["verification_url"].as_str())
        .unwrap_or("the provider's device login page");
    crate::stdoutln!("To allow emailrelay to send mail as this account, open\n\n    {verification}\n\nand enter the code {user_code}");
    let mut interval = Duration::from_secs(json["interval"].as_u64().unwrap_or(5).max(1));
    let deadline = Instant::now() + Duration::from_secs(json["expires_in"].as_u64().unwrap_or(900));
    form = vec![
        ("client_id", file.client_id.as_str()),
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
    ];
    let secret = file.client_secret.clone();
    if let Some(secret) = &secret {
        form.push(("client_secret", secret));
    }
    while Instant::now() < deadline {
        tokio::time::sleep(interval).await;
        let (status, json) = http::post_form(&token, &form, REQUEST_TIMEOUT, None).await?;
        match (json["refresh_token"].as_str(), json["error"].as_str()) {
            (Some(refresh), _) => {
                let refresh = refresh.to_string();
                file.save_refresh_token(path, &refresh)
                    .map_err(|source| ConsentError::Save {
                        path: path.to_path_buf(),
                        source,
                    })?;
                crate::stdoutln!(
                    "Signed in: the refresh token is saved in {}",
                    path.display()
                );
                return Ok(());
            }
            (None, Some("authorization_pending")) => {}
            (None, Some("slow_down")) => interval += Duration::from_secs(5),
            _ => return Err(ConsentError::SignIn(describe_error(status, &json))),
        }
    }
    Err(ConsentError::Expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fill_in_the_endpoints_and_scope() {
        let f = AccountFile::parse(
            "provider = microsoft\ntenant = contoso.com\nclient-id = abc\nrefresh-token = r1\n",
        )
        .unwrap();
        assert_eq!(
            f.token_url,
            "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
        );
        assert_eq!(
            f.device_url.as_deref(),
            Some("https://login.microsoftonline.com/contoso.com/oauth2/v2.0/devicecode")
        );
        assert_eq!(
            f.scope,
            "https://outlook.office.com/SMTP.Send offline_access"
        );
        assert_eq!(
            (f.grant, f.refresh_token.as_deref()),
            (Grant::RefreshToken, Some("r1"))
        );
        let g =
            AccountFile::parse("provider = google\nclient-id = abc\nclient-secret = s # secret\n")
                .unwrap();
        assert_eq!(g.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(
            (g.scope.as_str(), g.client_secret.as_deref()),
            ("https://mail.google.com/", Some("s"))
        );
        // Exchange Online takes 30 messages a minute per mailbox; Google
        // sets no such default; a file may say otherwise either way.
        assert_eq!((f.rate, g.rate), (Some(30), None));
        let rated = |text: &str| AccountFile::parse(text).unwrap().rate;
        assert_eq!(
            rated(
                "provider = microsoft
client-id = a
rate = 10
"
            ),
            Some(10)
        );
        assert_eq!(
            rated(
                "provider = microsoft
client-id = a
rate = 0
"
            ),
            None
        );
        assert_eq!(
            rated(
                "provider = google
client-id = a
rate = 100
"
            ),
            Some(100)
        );
    }

    #[test]
    fn delivery_trace_report_takes_one_address() {
        let base = "provider = microsoft\nclient-id = c\ntransport = graph\ndelivery-trace = 60\n";
        let with = |line: &str| AccountFile::parse(&format!("{base}{line}\n"));
        assert_eq!(
            with("delivery-trace-report = postmaster@t.example")
                .unwrap()
                .trace_report
                .as_deref(),
            Some("postmaster@t.example")
        );
        assert_eq!(with("").unwrap().trace_report, None);
        for bad in ["postmaster", "a@", "<a@b>", "a@b, c@d"] {
            assert_eq!(
                with(&format!("delivery-trace-report = {bad}")).unwrap_err(),
                AccountFileError::DeliveryTraceReport(bad.to_string()),
                "{bad}"
            );
        }
    }

    #[test]
    fn graph_and_app_credential_keys() {
        let f = AccountFile::parse(
            "provider = microsoft\ntenant = t\nclient-id = c\ngrant = client_credentials\n\
             client-certificate = app.crt\nclient-key = app.key\ntransport = graph\n\
             mailbox = printer@t.example\nclient-secret-expires = 2027-01-31\n",
        )
        .unwrap();
        assert_eq!(f.transport, Transport::Graph);
        assert_eq!(f.scope, GRAPH_SCOPE);
        assert_eq!(f.graph_url, GRAPH_URL);
        assert_eq!(f.rate, None, "Graph's limits are the transport's");
        assert_eq!(
            f.certificate,
            Some((PathBuf::from("app.crt"), PathBuf::from("app.key")))
        );
        assert_eq!(f.secret_expires, Some(1_801_353_600));
        let form = token_form(&f, "", Some("jwt"));
        assert_eq!(
            form,
            [
                ("client_id", "c"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                ),
                ("client_assertion", "jwt"),
                ("scope", GRAPH_SCOPE),
                ("grant_type", "client_credentials"),
            ]
        );
        let g = AccountFile::parse(
            "provider = google\nservice-account = sa.json\nmailbox = a@b.example\n",
        )
        .unwrap();
        assert_eq!((g.grant, g.client_id.as_str()), (Grant::JwtBearer, ""));
        assert_eq!(
            token_form(&g, "", Some("jwt")),
            [
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", "jwt")
            ]
        );
        let url = AccountFile::parse(
            "token-url = http://127.0.0.1:1/t\nclient-id = a\ntransport = graph\ngraph-url = https://127.0.0.1:9/\n",
        )
        .unwrap();
        assert_eq!(url.graph_url, "https://127.0.0.1:9");
        assert_eq!(
            url.scope, "https://graph.microsoft.com/Mail.Send offline_access",
            "a user's own token, for Graph"
        );
    }

    #[test]
    fn bad_account_files_say_what_is_wrong() {
        let cases = [
            ("client-id = a\n", "give a provider"),
            (
                "provider = yahoo\nclient-id = a\n",
                "unknown provider \"yahoo\"",
            ),
            ("provider = google\n", "no client-id"),
            (
                "provider = google\nclient-id = a\ngrant = password\n",
                "unknown grant",
            ),
            (
                "token-url = http://x/t\nclient-id = a\ngrant = client_credentials\n",
                "needs a client-secret",
            ),
            ("token-url = ftp://x/t\nclient-id = a\n", "not an http"),
            ("provider google\n", "line 1: expected key = value"),
            (
                "provider = google\nclient-id = a\nrate = fast\n",
                "rate \"fast\": give messages a minute",
            ),
            (
                "provider = google\nclient_id = a\n",
                "line 2: unknown key \"client_id\"",
            ),
            (
                "provider = google\nclient-id = a\ntransport = pigeon\n",
                "unknown transport \"pigeon\"",
            ),
            (
                "provider = google\nclient-id = a\nclient-key = k\n",
                "client-certificate and client-key together",
            ),
            (
                "provider = google\nclient-id = a\nclient-secret-expires = soon\n",
                "YYYY-MM-DD",
            ),
            (
                "provider = google\ngrant = jwt_bearer\n",
                "needs a service-account",
            ),
        ];
        for (text, expected) in cases {
            let e = AccountFile::parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_new_refresh_token_replaces_the_old_line_privately() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob.oauth2");
        let text = "# bob\nprovider = google\nclient-id = abc\nrefresh-token = old\n";
        std::fs::write(&path, text).unwrap();
        let mut f = AccountFile::load(&path).unwrap();
        f.save_refresh_token(&path, "new").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# bob\nprovider = google\nclient-id = abc\nrefresh-token = new\n"
        );
        // Private where the system has modes (Unix); Windows has access lists.
        let mode = crate::platform::files::mode(&std::fs::metadata(&path).unwrap());
        assert!(mode.is_none_or(|m| m & 0o777 == 0o600), "{mode:?}");
    }

    #[test]
    fn expiry_is_warned_30_7_and_1_days_ahead_once_each() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.oauth2");
        std::fs::write(
            &path,
            "token-url = http://127.0.0.1:1/t\nclient-id = c\nclient-secret = s\n\
             grant = client_credentials\nclient-secret-expires = 2027-01-31\n",
        )
        .unwrap();
        let account = OAuthAccount::load("a", &path).unwrap();
        let expires = 1_801_353_600;
        assert_eq!(
            account.credential_expiry(),
            Some(("client secret", expires))
        );
        let warned = |days_and_secs: i64| {
            account.warn_expiry(expires - days_and_secs);
            account.warned.load(Ordering::Relaxed)
        };
        assert_eq!(warned(31 * 86400), u64::MAX, "not yet");
        assert_eq!(warned(30 * 86400), 30);
        assert_eq!(warned(8 * 86400), 30);
        assert_eq!(warned(7 * 86400 - 5), 7);
        assert_eq!(warned(86400), 1);
        assert_eq!(warned(10), 1);
    }

    #[test]
    fn renewal_comes_ahead_of_expiry() {
        assert_eq!(
            renew_ahead(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(renew_ahead(Duration::from_secs(10)), Duration::from_secs(2));
    }
}
