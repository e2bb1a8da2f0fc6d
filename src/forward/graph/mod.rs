//! Microsoft Graph's `sendMail` as a transport: the second way out beside
//! SMTP, for an OAuth account file that says `transport = graph`.
//!
//! A link is one HTTP/1.1 connection (hyper, over the relay's own connect
//! and OpenSSL TLS) to the Graph URL, kept alive for the pass's messages
//! and opened again when the server closes it. Each message is one
//! `POST {graph-url}/v1.0/users/{mailbox}/sendMail` with
//! `Authorization: Bearer <token>` and `Content-Type: text/plain`; the
//! body is the base64 of the spooled content as it is, with envelope
//! recipients its header does not name added to its `Bcc` field (`bcc`).
//! The content is read in slices and encoded as it is read, so the
//! message is held once, as base64 (at most 4 MB, Graph's limit for one
//! request; larger messages fail to `.bad` naming the limit).
//!
//! Graph's limits per app and mailbox are kept here: at most
//! [`MAX_IN_FLIGHT`] requests at once, [`MAX_REQUESTS`] in
//! [`REQUEST_WINDOW`], and 150 MB of message data in 5 minutes
//! (`budget`). What each answer does is `answer`'s business.
//!
//! Must not: log a token; decide a message's fate itself (outcomes go
//! back as `SendOutcome`s and `ConnectionError`s, as SMTP's do).

pub mod answer;
pub mod bcc;
pub mod budget;
pub mod check;
mod large;
pub mod mime;
pub mod pending;
pub mod report;
pub mod trace;
pub mod upload;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use emailrelay_proto::sasl::{ClientSecret, Mechanism};
use emailrelay_proto::smtp::{OutgoingMessage, Reply, SendOutcome};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use self::answer::Answer;
use self::budget::UploadBudget;
use super::client::ConnectionError;
use super::doorbell::Doorbell;
use super::rate::RateLimit;
use super::transport::{BoxFuture, Link, Transport};
use crate::auth::http::Url;
use crate::auth::oauth::GraphSettings;
use crate::auth::OAuthAccount;
use crate::tls::ClientTls;
use crate::{info, warning};

/// Requests at once per app and mailbox (Graph's limit).
pub const MAX_IN_FLIGHT: usize = 4;
/// Requests per [`REQUEST_WINDOW`] per app and mailbox (Graph's limit).
pub const MAX_REQUESTS: usize = 10_000;
/// The window of [`MAX_REQUESTS`].
pub const REQUEST_WINDOW: Duration = Duration::from_secs(600);
/// The largest request body Graph takes.
pub const MAX_REQUEST: u64 = 4 * 1024 * 1024;
/// The most of an answer's body we read.
const MAX_ANSWER: usize = 64 * 1024;
/// Content read per slice: a multiple of 3, so each slice encodes alone.
const SLICE: usize = 48 * 1024;

/// One mailbox's share of Graph's limits, shared by all its links.
struct Mailbox {
    in_flight: Semaphore,
    requests: RateLimit,
    /// Octets of message data in the last 5 minutes.
    uploads: UploadBudget,
}

impl Mailbox {
    /// One of the mailbox's requests in flight, held while a message goes.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ConnectionError> {
        self.in_flight
            .acquire()
            .await
            .map_err(|_| ConnectionError::Closed)
    }
}

/// Graph links for an account whose file says `transport = graph`.
pub struct GraphTransport(Arc<Inner>);

/// What the transport's links share.
struct Inner {
    account: Arc<OAuthAccount>,
    settings: GraphSettings,
    url: Url,
    tls: Option<ClientTls>,
    mailbox: Arc<Mailbox>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// Message trace's look-ups (`trace`).
    traces: RateLimit,
    /// Rung when a delivery report has been written into the spool.
    doorbell: Arc<Doorbell>,
}

/// The mailboxes' limits, one entry per mailbox for the whole instance.
#[derive(Default)]
pub struct Mailboxes(Mutex<HashMap<String, Arc<Mailbox>>>);

/// Why an account's Graph settings cannot be used.
#[derive(Debug)]
pub enum SetupError {
    Url(crate::auth::http::HttpError),
    /// The CA file, or the system's roots.
    Tls(crate::tls::TlsError),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Url(e) => e.fmt(f),
            SetupError::Tls(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SetupError {}

/// Why a request to Graph got no answer: each is a reason to try the
/// message again later, with its enhanced code (RFC 3463: 4.4.0 a
/// request that could not be made, 4.4.1 no connection, 4.4.2 a
/// connection that broke or went quiet).
#[derive(Debug)]
pub enum Unanswered {
    Connect(ConnectionError),
    Request(hyper::http::Error),
    Http(hyper::Error),
    Body(Box<dyn std::error::Error + Send + Sync>),
    Timeout(Duration),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Connect(e) => write!(f, "4.4.1 graph: {e}"),
            Unanswered::Request(e) => write!(f, "4.4.0 graph: {e}"),
            Unanswered::Http(e) => write!(f, "4.4.2 graph: {e}"),
            Unanswered::Body(e) => write!(f, "4.4.2 graph: {e}"),
            Unanswered::Timeout(t) => write!(f, "4.4.2 graph: no answer in {}s", t.as_secs()),
        }
    }
}

impl std::error::Error for Unanswered {}

impl Unanswered {
    /// The deferral it means for a message.
    fn retry(&self) -> SendOutcome {
        SendOutcome::Retry(Reply::new(451, self.to_string()))
    }
}

impl GraphTransport {
    /// A transport for `account`; `Err` says why its Graph settings cannot
    /// be used (a URL, a CA file).
    pub fn new(
        account: Arc<OAuthAccount>,
        settings: GraphSettings,
        mailboxes: &Mailboxes,
        connect_timeout: Duration,
        response_timeout: Duration,
        doorbell: Arc<Doorbell>,
    ) -> Result<GraphTransport, SetupError> {
        let url = Url::parse(&settings.url).map_err(SetupError::Url)?;
        let tls = match (url.https, &settings.ca_file) {
            (false, _) => None,
            (true, Some(ca)) => Some(ClientTls::web_trusting(ca).map_err(SetupError::Tls)?),
            (true, None) => Some(ClientTls::web().map_err(SetupError::Tls)?),
        };
        let mailbox = {
            let mut map = mailboxes
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = settings.mailbox.to_ascii_lowercase();
            Arc::clone(map.entry(key).or_insert_with(|| {
                Arc::new(Mailbox {
                    in_flight: Semaphore::new(MAX_IN_FLIGHT),
                    requests: RateLimit::default(),
                    uploads: UploadBudget::default(),
                })
            }))
        };
        Ok(GraphTransport(Arc::new(Inner {
            account,
            settings,
            url,
            tls,
            mailbox,
            connect_timeout,
            response_timeout,
            traces: RateLimit::default(),
            doorbell,
        })))
    }
}

impl Inner {
    /// A new HTTP/1.1 connection to the Graph URL.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ConnectionError> {
        let sender = self.connect_to(&self.url).await?;
        info!("graph connection to {}:{}", self.url.host, self.url.port);
        Ok(sender)
    }

    /// A new HTTP/1.1 connection to `url`'s host (Graph's, or an upload
    /// session's), over TLS with the account's CAs if it is https.
    async fn connect_to(&self, url: &Url) -> Result<SendRequest<Full<Bytes>>, ConnectionError> {
        let target = format!("{}:{}", url.host, url.port);
        let mut stream = crate::net::connect(&target, None, self.connect_timeout)
            .await
            .map_err(|e| ConnectionError::Io(std::io::Error::other(e.to_string())))?;
        if url.https {
            let tls = self.tls.as_ref().ok_or_else(|| {
                ConnectionError::Tls(std::io::Error::other(format!(
                    "{target}: https, but graph-url is not"
                )))
            })?;
            let handshake = tls.connect(stream, &url.host);
            stream = tokio::time::timeout(self.response_timeout, handshake)
                .await
                .map_err(|_| ConnectionError::Timeout(self.response_timeout.as_secs()))?
                .map_err(ConnectionError::Tls)?
                .0;
        }
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectionError::Io(std::io::Error::other(e.to_string())))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// `{graph-url path}/v1.0/users/{mailbox}` and then `rest`.
    fn user_path(&self, rest: &str) -> String {
        format!(
            "{}/v1.0/users/{}{rest}",
            self.url.path.trim_end_matches('/'),
            percent_path(&self.settings.mailbox)
        )
    }

    /// The path of the mailbox's message (a draft) `id`, then `rest`.
    fn message_path(&self, id: &str, rest: &str) -> String {
        self.user_path(&format!("/messages/{}{rest}", percent_path(id)))
    }

    /// One request on the connection in `slot` (opened to `url` if there
    /// is none or it is closed); `Err` is why there was no answer, and the
    /// connection is then dropped.
    async fn exchange(
        &self,
        slot: &mut Option<SendRequest<Full<Bytes>>>,
        url: &Url,
        call: Call,
    ) -> Result<Answered, Unanswered> {
        let timeout = self.response_timeout;
        let exchange = async {
            let kept = match slot.take() {
                Some(mut s) => s.ready().await.is_ok().then_some(s),
                None => None,
            };
            let mut sender = match (kept, url == &self.url) {
                (Some(s), _) => s,
                (None, true) => self.connect().await.map_err(Unanswered::Connect)?,
                (None, false) => self.connect_to(url).await.map_err(Unanswered::Connect)?,
            };
            let default = if url.https { 443 } else { 80 };
            let host = match url.port == default {
                true => url.host.clone(),
                false => format!("{}:{}", url.host, url.port),
            };
            let mut request = hyper::Request::builder()
                .method(call.method)
                .uri(call.target)
                .header(hyper::header::HOST, host)
                .header(hyper::header::CONTENT_LENGTH, call.body.len())
                .header(
                    hyper::header::USER_AGENT,
                    concat!("emailrelay-rs/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(token) = &call.bearer {
                request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            if let Some(kind) = call.content_type {
                request = request.header(hyper::header::CONTENT_TYPE, kind);
            }
            if let Some(range) = call.content_range {
                request = request.header(hyper::header::CONTENT_RANGE, range);
            }
            let request = request
                .body(Full::new(call.body))
                .map_err(Unanswered::Request)?;
            let response = sender
                .send_request(request)
                .await
                .map_err(Unanswered::Http)?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(Unanswered::Body)?
                .to_bytes()
                .to_vec();
            *slot = Some(sender);
            Ok((status, retry_after, text))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Unanswered::Timeout(timeout))?
    }

    fn send_mail_path(&self) -> String {
        self.user_path("/sendMail")
    }
}

/// One HTTP request to Graph or an upload URL.
struct Call {
    method: hyper::Method,
    /// The path and query.
    target: String,
    content_type: Option<&'static str>,
    content_range: Option<String>,
    /// The access token, for Graph (never for an upload URL).
    bearer: Option<String>,
    body: Bytes,
    /// Whether the body carries message data, counted against the
    /// mailbox's 150 MB in 5 minutes (`budget`).
    data: bool,
}

impl Call {
    /// A request to Graph with the token.
    fn graph(
        method: hyper::Method,
        target: String,
        content_type: Option<&'static str>,
        token: &str,
        body: Bytes,
    ) -> Call {
        Call {
            method,
            target,
            content_type,
            content_range: None,
            bearer: Some(token.to_string()),
            body,
            data: false,
        }
    }

    /// The same, its body counted as message data (`budget`).
    fn carrying(mut self) -> Call {
        self.data = true;
        self
    }
}

impl Transport for GraphTransport {
    fn open<'a>(
        &'a self,
        _target: &'a str,
        _secret: Option<ClientSecret>,
    ) -> BoxFuture<'a, Result<Box<dyn Link>, ConnectionError>> {
        Box::pin(async move {
            let sender = self.0.connect().await?;
            Ok(Box::new(GraphLink {
                transport: Arc::clone(&self.0),
                sender: Some(sender),
                retry_after: None,
            }) as Box<dyn Link>)
        })
    }
}

impl GraphTransport {
    /// `POST sendMail` with an empty body and `token`, which Graph refuses
    /// without sending anything: 400 if the mailbox exists and the app may
    /// send as it, 404 if there is no such mailbox, 403 if the app may
    /// not. The status and body, or why there was no answer.
    pub async fn probe(&self, token: &str) -> Result<(u16, Vec<u8>), Unanswered> {
        let mut link = GraphLink {
            transport: Arc::clone(&self.0),
            sender: None,
            retry_after: None,
        };
        let (status, _, body) = link.request(token, Bytes::new()).await?;
        Ok((status, body))
    }

    /// The Graph URL's host and port.
    pub fn address(&self) -> String {
        format!("{}:{}", self.0.url.host, self.0.url.port)
    }
}

/// One connection to Graph.
struct GraphLink {
    transport: Arc<Inner>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The wait Graph asked for in its last throttling answer.
    retry_after: Option<Duration>,
}

/// A request's answer: status, `Retry-After`, body.
type Answered = (u16, Option<String>, Vec<u8>);

impl GraphLink {
    /// Sends one message: by one `sendMail` if it fits in a request,
    /// otherwise through a draft (`large`).
    async fn send_message(
        &mut self,
        message: OutgoingMessage,
        content: &Path,
    ) -> Result<SendOutcome, ConnectionError> {
        let t = Arc::clone(&self.transport);
        let body = match encode_content(content, &message.to).await {
            Ok(Some(body)) => body,
            Ok(None) => return self.send_large(&message, content).await,
            Err(e) => return Err(ConnectionError::Content(e)),
        };
        let _permit = t.mailbox.permit().await?;
        let mut renewed = false;
        let path = t.send_mail_path();
        let call = |token: &str| {
            Call::graph(
                hyper::Method::POST,
                path.clone(),
                Some("text/plain"),
                token,
                body.clone(),
            )
            .carrying()
        };
        Ok(match self.authed(&mut renewed, call).await? {
            Ok(_) => {
                self.follow(&message, content).await;
                SendOutcome::Sent {
                    rejected: Vec::new(),
                }
            }
            Err(outcome) => outcome,
        })
    }

    /// With `delivery-trace`, starts looking the sent message up (`trace`).
    async fn follow(&self, message: &OutgoingMessage, content: &Path) {
        let t = &self.transport;
        let Some(first) = t.settings.delivery_trace else {
            return;
        };
        let mut header = Vec::new();
        if let Ok(file) = tokio::fs::File::open(content).await {
            let _ = file.take(64 * 1024).read_to_end(&mut header).await;
        }
        // The spool directory: the content file is in it.
        let dir = content.parent().unwrap_or(Path::new("."));
        trace::start(t, dir, &message.from, bcc::header_section(&header), first);
    }

    /// One request to Graph, with the token, renewed once after a 401
    /// (`renewed` says whether that has happened for this message):
    /// `Ok(Ok(_))` for a 2xx answer, `Ok(Err(outcome))` for what any other
    /// answer, or no answer, means for the message (`answer`).
    async fn authed(
        &mut self,
        renewed: &mut bool,
        call: impl Fn(&str) -> Call,
    ) -> Result<Result<Answered, SendOutcome>, ConnectionError> {
        let t = Arc::clone(&self.transport);
        loop {
            let token =
                t.account.access_token().await.map_err(|e| {
                    ConnectionError::AuthRefused(Reply::new(535, format!("5.7.8 {e}")))
                })?;
            self.wait_for_rate().await;
            let call = call(&token);
            if call.data {
                self.wait_for_uploads(call.body.len()).await;
            }
            let answered = match t.exchange(&mut self.sender, &t.url, call).await {
                Ok(answered) => answered,
                Err(unanswered) => {
                    // The connection is not to be trusted for the next one.
                    self.sender = None;
                    return Ok(Err(unanswered.retry()));
                }
            };
            let (status, retry_after, body_text) = &answered;
            self.retry_after = None;
            let outcome = match answer::decide(*status, retry_after.as_deref(), body_text) {
                Answer::Accepted => return Ok(Ok(answered)),
                Answer::Unauthorized(reply) if !*renewed => {
                    warning!(
                        "graph: {}: access token refused: getting a new one",
                        reply.text()
                    );
                    t.account.refused(&token).await;
                    *renewed = true;
                    continue;
                }
                Answer::Unauthorized(reply) => return Err(ConnectionError::AuthRefused(reply)),
                Answer::Throttled(reply, wait) => {
                    self.retry_after = wait;
                    SendOutcome::Retry(reply)
                }
                Answer::Failed(reply) => SendOutcome::Failed(reply),
                Answer::Later(reply) => SendOutcome::Retry(reply),
            };
            return Ok(Err(outcome));
        }
    }

    /// Waits while the mailbox has had its requests for the window.
    async fn wait_for_rate(&self) {
        let key = (String::new(), String::new());
        let requests = &self.transport.mailbox.requests;
        while let Err(wait) = requests.admit_within(
            &key,
            MAX_REQUESTS,
            REQUEST_WINDOW,
            tokio::time::Instant::now().into_std(),
        ) {
            crate::debug!("graph: {MAX_REQUESTS} requests in 10 minutes reached: waiting");
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits while the mailbox's 150 MB of uploads in 5 minutes are
    /// spent (`budget`), then counts `octets` of message data.
    async fn wait_for_uploads(&self, octets: usize) {
        let uploads = &self.transport.mailbox.uploads;
        uploads
            .take(octets as u64, |wait| {
                info!(
                    "graph: 150 MB of uploads in 5 minutes reached: waiting {}s",
                    wait.as_secs().max(1)
                )
            })
            .await;
    }

    /// One POST to sendMail.
    async fn request(&mut self, token: &str, body: Bytes) -> Result<Answered, Unanswered> {
        let t = Arc::clone(&self.transport);
        let call = Call::graph(
            hyper::Method::POST,
            t.send_mail_path(),
            Some("text/plain"),
            token,
            body,
        );
        t.exchange(&mut self.sender, &t.url, call).await
    }
}

impl Link for GraphLink {
    fn authenticated(&self) -> Option<&str> {
        None
    }

    fn auth_mechanism(&self) -> Option<Mechanism> {
        None
    }

    fn send<'a>(
        &'a mut self,
        message: OutgoingMessage,
        content: &'a Path,
    ) -> BoxFuture<'a, Result<SendOutcome, ConnectionError>> {
        Box::pin(self.send_message(message, content))
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    fn connection_line(&self, _target: &str) -> String {
        let url = &self.transport.url;
        format!("graph connection to {}:{}", url.host, url.port)
    }

    fn quit(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The request body: base64 of the content as it is, with the recipients
/// the header does not name added to its `Bcc` field (`bcc::bcc_edit`);
/// `None` if it would be over [`MAX_REQUEST`].
pub async fn encode_content(path: &Path, to: &[String]) -> std::io::Result<Option<Bytes>> {
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    // Enough of the start to hold the header section, or all of a short message.
    let mut start = vec![0u8; 64 * 1024];
    let mut filled = 0;
    while filled < start.len() {
        let n = file.read(&mut start[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    start.truncate(filled);
    let mut pending = match bcc::bcc_edit(bcc::header_section(&start), to) {
        Some(edit) => [&start[..edit.at], &edit.insert, &start[edit.at..]].concat(),
        None => start,
    };
    let raw = size + (pending.len() - filled) as u64;
    if raw.div_ceil(3) * 4 > MAX_REQUEST {
        return Ok(None);
    }
    let mut out = String::with_capacity(usize::try_from(raw.div_ceil(3) * 4).unwrap_or(0));
    let mut slice = vec![0u8; SLICE];
    loop {
        let whole = pending.len() / 3 * 3;
        STANDARD.encode_string(&pending[..whole], &mut out);
        pending.drain(..whole);
        let n = file.read(&mut slice).await?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&slice[..n]);
    }
    STANDARD.encode_string(&pending, &mut out);
    Ok(Some(Bytes::from(out)))
}

/// A mailbox (UPN or id) as one path segment (RFC 3986 section 3.3).
fn percent_path(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' | b'+' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_body_is_the_base64_of_bcc_then_content_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.content");
        // Long enough to cross a slice and the first read, with bytes of
        // every value in the body.
        let mut content = b"To: a@x.org\r\nSubject: s\r\n\r\n".to_vec();
        content.extend((0..200_000u32).map(|i| (i % 251) as u8));
        std::fs::write(&path, &content).unwrap();
        let to = vec!["a@x.org".to_string(), "b@x.org".to_string()];
        let body = encode_content(&path, &to).await.unwrap().unwrap();
        let decoded = STANDARD.decode(&body).unwrap();
        assert_eq!(&decoded[..16], b"Bcc: b@x.org\r\nTo");
        assert_eq!(&decoded[14..], &content[..]);
        let only_named = encode_content(&path, &to[..1]).await.unwrap().unwrap();
        assert_eq!(STANDARD.decode(&only_named).unwrap(), content);
    }

    #[tokio::test]
    async fn an_existing_bcc_field_takes_the_others_in_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.content");
        let content = b"To: a@x.org\r\nBcc: c@x.org\r\nSubject: s\r\n\r\nbody\r\n";
        std::fs::write(&path, content).unwrap();
        let to = vec![
            "a@x.org".to_string(),
            "b@x.org".to_string(),
            "c@x.org".to_string(),
        ];
        let body = encode_content(&path, &to).await.unwrap().unwrap();
        assert_eq!(
            STANDARD.decode(&body).unwrap(),
            b"To: a@x.org\r\nBcc: c@x.org,\r\n b@x.org\r\nSubject: s\r\n\r\nbody\r\n"
        );
    }

    #[tokio::test]
    async fn over_four_megabytes_of_base64_is_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.content");
        let fits = (MAX_REQUEST / 4 * 3) as usize;
        std::fs::write(&path, vec![b'a'; fits]).unwrap();
        let body = encode_content(&path, &[]).await.unwrap().unwrap();
        assert_eq!(body.len() as u64, MAX_REQUEST);
        std::fs::write(&path, vec![b'a'; fits + 1]).unwrap();
        assert!(encode_content(&path, &[]).await.unwrap().is_none());
    }

    #[test]
    fn mailboxes_are_one_path_segment() {
        assert_eq!(percent_path("printer@contoso.com"), "printer@contoso.com");
        assert_eq!(percent_path("a/b c"), "a%2Fb%20c");
    }
}
