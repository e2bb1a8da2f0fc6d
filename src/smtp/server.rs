//! The SMTP server driver: one task per connection, feeding a proto
//! `ServerSession` and acting on its events (spool writes, commits,
//! immediate forwarding).
//!
//! TLS: with `--server-tls-connection` the handshake comes before the
//! greeting; with `--server-tls` the session asks for it after its 220 to
//! STARTTLS, and the driver swaps the plain stream for the encrypted one.
//! A handshake has the idle timeout as its deadline; a failed one is logged
//! with the tls module's reason and ends only that connection.
//!
//! Deadlines: a client that sends nothing for `--idle-timeout` is cut off
//! without a reply, as E-MailRelay 2.6.1 does (`idle timeout: no activity
//! after <n>s`); beyond 2.6.1, which only times out single reads, a
//! command must also be complete within `--idle-timeout` of the previous
//! reply however its bytes trickle in, and a message's content (DATA, or
//! BDAT from the first chunk to the last) within `--idle-timeout` plus the
//! time its octets take at `--min-data-rate`, and within the hour
//! (`serve::ContentDeadline`).
//!
//! Log lines: the session's protocol trace and warnings are written before
//! each event is acted on, so that the driver's own lines (`new content
//! file`, the verifier's, the filter's) fall where 2.6.1 writes them. As
//! in 2.6.1, the content file is made when MAIL is accepted, and removed
//! if the transaction goes no further.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use emailrelay_proto::sasl::{Credentials, Mechanism};
use emailrelay_proto::smtp::{
    AddressSyntax, AuthResult, Event, LogLine, MessageResult, Reply, ServerConfig, ServerSession,
    Transaction, VerifyResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::auth::{ServerAuth, FAILURE_DELAY, MAX_FAILURES};
use crate::filter::{Filter, FilterJob, FilterResult, FilterType};
use crate::forward::Verdict;
use crate::instance::Instance;
use crate::log::{self, Level};
use crate::monitor::Stats;
use crate::net::dnsbl::{self, DnsblConfig};
use crate::net::{display_addr, Listen, Stream};
use crate::platform::listen::PEER_CLOSED;
use crate::serve;
use crate::store::{Envelope, NewMessage, Prepared, SpoolFile, StoreError};
use crate::tls::{ServerTls, TlsInfo};
use crate::verify::{Verifier, VerifyRequest};

/// A session's read buffer: its size to begin with, and at most.
const READ_MIN: usize = 512;
const READ_MAX: usize = 4096;

/// The close reason after a failed TLS handshake, in 2.6.1's words.
const TLS_FAILED: &str = "peer disconnected: ssl accept";

/// `--anonymous` scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anonymous {
    pub vrfy: bool,
    pub server: bool,
    pub content: bool,
    pub client: bool,
}

/// SMTP server settings; built by `config`.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: Vec<Listen>,
    pub remote_clients: bool,
    pub domain: String,
    pub anonymous: Anonymous,
    pub max_size: u64,
    /// Most `Received:` lines an incoming message may carry (`--max-hops`).
    pub max_hops: usize,
    pub idle_timeout: Duration,
    /// `--min-data-rate`: octets a second a message's content must keep
    /// up after the idle timeout's grace; 0 for no minimum (the hour only).
    pub min_data_rate: u64,
    pub pipelining: bool,
    pub smtputf8: bool,
    /// `--server-smtp-config=smtputf8strict`.
    pub smtputf8_strict: bool,
    /// `--server-smtp-config=chunking`: BDAT (RFC 3030).
    pub chunking: bool,
    pub trace: bool,
    pub immediate: bool,
    /// `--server-tls` (STARTTLS) or `--server-tls-connection` context.
    pub tls: Option<ServerTls>,
    /// `--server-tls-connection`: TLS from the first byte.
    pub tls_connection: bool,
    /// `--server-tls-required`: no MAIL before STARTTLS.
    pub tls_required: bool,
    /// `--server-smtp-config=nostrictparsing`: MAIL and RCPT paths without
    /// angle brackets are accepted.
    pub lenient_addresses: bool,
    /// `--dnsbl`: connections from listed addresses are dropped.
    pub dnsbl: Option<DnsblConfig>,
    /// `--server-auth`: AUTH required, except from trusted addresses.
    pub auth: Option<Arc<ServerAuth>>,
}

/// What every connection shares.
pub struct Shared {
    pub settings: ServerSettings,
    /// The instance's spool, counters and forwarding, through their
    /// hand-off to the servers.
    pub instance: Arc<Instance>,
    /// `--filter`: run on each message before it is committed.
    pub filter: Option<Arc<Filter>>,
    /// `--address-verifier`: asked about each RCPT and VRFY.
    pub verifier: Option<Arc<Verifier>>,
    pub in_started: AtomicU64,
    pub in_finished: AtomicU64,
    pub shutdown: watch::Receiver<bool>,
}

/// Serves one accepted connection to its end.
pub async fn serve(mut stream: Box<dyn Stream>, peer: Option<SocketAddr>, shared: Arc<Shared>) {
    let peer_text = peer
        .as_ref()
        .map(display_addr)
        .unwrap_or_else(|| "unix".into());
    let settings = &shared.settings;
    if serve::refused_as_remote(peer, settings.remote_clients) {
        crate::warning!("smtp connection rejected from {peer_text}: not a local address: use --remote-clients to allow it");
        let _ = stream
            .write_all(b"554 connection refused: remote clients not allowed\r\n")
            .await;
        return;
    }
    if let (Some(config), Some(addr), true) =
        (&settings.dnsbl, peer, shared.instance.dnsbl_active())
    {
        if !dnsbl::admit(config, addr.ip(), &peer_text).await {
            return;
        }
    }
    crate::info!("smtp connection from {peer_text}");
    shared.in_started.fetch_add(1, Ordering::Relaxed);
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        peer,
        peer_text: peer_text.clone(),
        message: None,
        write_error: None,
        open_error: None,
        stored: 0,
        tls: None,
        trusted: None,
        auth_failures: 0,
        proxy: None,
        closed_logged: false,
        reply_outside_context: false,
        reason_override: None,
    };
    let reason = conn.run(stream).await;
    conn.log_closed(&reason);
    if let Some(link) = conn.proxy.take() {
        let mut link = link
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        link.close().await;
    }
    shared.in_finished.fetch_add(1, Ordering::Relaxed);
    shared.instance.client_left(conn.stored);
}

/// Waits until every session has ended, or `limit` passes; true if all ended.
pub async fn wait_for_sessions(shared: &Shared, limit: Duration) -> bool {
    serve::wait_for_sessions(&shared.in_started, &shared.in_finished, limit).await
}

struct Conn {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    peer_text: String,
    message: Option<NewMessage>,
    write_error: Option<StoreError>,
    /// The content file could not be made at MAIL: DATA gets this reply.
    open_error: Option<Reply>,
    stored: usize,
    tls: Option<TlsInfo>,
    /// The keyword of the trusted-address line that matched the peer.
    trusted: Option<String>,
    auth_failures: u32,
    /// `--immediate`: the upstream connection this session's messages go
    /// down, opened with the first of them.
    /// (A mutex only so that the connection stays `Sync`; it is reached
    /// through `&mut self`, never locked.)
    proxy: Option<Box<std::sync::Mutex<crate::forward::ProxyLink>>>,
    closed_logged: bool,
    /// The next reply's trace line is logged without the client's address
    /// (`--log-address`), as 2.6.1 logs its reply to the end of a message.
    reply_outside_context: bool,
    /// The close reason to log instead of the session's.
    reason_override: Option<&'static str>,
}

impl Conn {
    async fn run(&mut self, mut stream: Box<dyn Stream>) -> String {
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        if settings.tls_connection {
            stream = match self.handshake(stream).await {
                Some(stream) => stream,
                None => return TLS_FAILED.into(),
            };
        }
        let mut session = ServerSession::new(self.session_config());
        session.set_free_space(shared.instance.free_space());
        let idle = settings.idle_timeout;
        let mut shutdown = self.shared.shutdown.clone();
        // Small while the client sends commands, so that an idle session
        // costs little; doubled up to READ_MAX when a read fills it.
        let mut buf = vec![0u8; READ_MIN];
        let mut out = Vec::new();
        let mut command_deadline = Instant::now() + idle;
        let mut content: Option<serve::ContentDeadline> = None;
        // No bytes for the idle timeout ends the session anywhere, inside
        // DATA or BDAT too (2.6.1 does).
        let mut last_read = Instant::now();
        loop {
            out.clear();
            session.poll_output(&mut out);
            self.log(&mut session);
            if session.is_closed() {
                // E-MailRelay compatibility: the close is logged before the
                // last reply goes out, so a client that reconnects at once
                // finds it above its own lines in the log, as with 2.6.1.
                let reason = self.reason_override.unwrap_or(session.close_reason());
                self.log_closed(reason);
                serve::write_within(&mut stream, &out, idle).await;
                serve::close(&mut stream).await;
                return reason.into();
            }
            if !out.is_empty() {
                command_deadline = Instant::now() + idle;
                // A client that stops reading must not hold the session.
                if !serve::write_within(&mut stream, &out, idle).await {
                    return "peer disconnected".into();
                }
            }
            content = match (session.in_data(), content.take()) {
                (true, None) => Some(serve::ContentDeadline::new(
                    Instant::now(),
                    idle,
                    settings.min_data_rate,
                )),
                (true, d) => d,
                (false, _) => None,
            };
            let silence = last_read + idle;
            let deadline = match &content {
                Some(d) => d.deadline().min(silence),
                None => command_deadline.min(silence),
            };
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => r,
                _ = shutdown.changed(), if !session.in_data() => {
                    session.shutdown("service shutting down");
                    self.handle_events(&mut session).await;
                    continue;
                }
            };
            match read {
                Err(_) => {
                    // E-MailRelay compatibility: no 421, just the close.
                    self.message = None;
                    serve::close(&mut stream).await;
                    let silent = Instant::now() >= silence;
                    return timeout_reason(silent, content.as_ref(), settings);
                }
                Ok(Ok(0)) => {
                    self.message = None;
                    return PEER_CLOSED.into();
                }
                Ok(Err(_)) => {
                    self.message = None;
                    return "peer disconnected".into();
                }
                Ok(Ok(n)) => {
                    last_read = Instant::now();
                    session.handle_input(&buf[..n]);
                    if n == buf.len() && buf.len() < READ_MAX {
                        buf.resize(buf.len() * 2, 0);
                    }
                    // Counted when the read ends inside the content too, so
                    // that a chunk pipelined behind its BDAT earns its time.
                    if let Some(content) = content.as_mut().filter(|_| session.in_data()) {
                        content.received(n);
                    }
                }
            }
            if self.handle_events(&mut session).await {
                // The 220 goes out in clear, then the handshake.
                out.clear();
                session.poll_output(&mut out);
                self.log(&mut session);
                if stream.write_all(&out).await.is_err() {
                    return "peer disconnected".into();
                }
                stream = match self.handshake(stream).await {
                    Some(stream) => stream,
                    None => return TLS_FAILED.into(),
                };
                session.tls_started();
                command_deadline = Instant::now() + idle;
                last_read = Instant::now();
            }
            if buf.len() < 16 * 1024 && session.in_data() {
                buf.resize(16 * 1024, 0);
            }
        }
    }

    /// The protocol session's settings for this connection: the server's,
    /// the admin switches' state now, and the client's authentication
    /// rules (a trusted address's keyword is kept for the envelope).
    fn session_config(&mut self) -> ServerConfig {
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        let auth = settings.auth.as_ref().map(|auth| {
            let (config, keyword) = auth.session_config(self.peer.map(|p| p.ip()));
            self.trusted = keyword;
            config
        });
        ServerConfig {
            domain: settings.domain.clone(),
            client: self
                .peer
                .map(|p| p.ip().to_canonical().to_string())
                .unwrap_or_default(),
            // E-MailRelay compatibility: a session begun while the admin
            // `smtp disable` holds greets with 421 and stays disabled.
            // A balancer's health check (a PROXY protocol LOCAL
            // connection, logged quietly) is held off while draining too.
            enabled: shared.instance.smtp_enabled()
                && !(crate::log::context().quiet && shared.instance.draining()),
            ident: (!settings.anonymous.server)
                .then(|| format!("E-MailRelay-rs V{}", env!("CARGO_PKG_VERSION"))),
            vrfy: !settings.anonymous.vrfy,
            max_size: settings.max_size,
            max_hops: settings.max_hops,
            pipelining: settings.pipelining,
            smtputf8: settings.smtputf8,
            smtputf8_strict: settings.smtputf8_strict,
            chunking: settings.chunking,
            address_syntax: match settings.lenient_addresses {
                true => AddressSyntax::Lenient,
                false => AddressSyntax::Strict,
            },
            trace: settings.trace,
            starttls: settings.tls.is_some() && !settings.tls_connection,
            tls_required: settings.tls_required,
            implicit_tls: settings.tls_connection,
            verify_recipients: shared.verifier.is_some(),
            auth,
            ..ServerConfig::default()
        }
    }

    /// The server side of a TLS handshake, within the idle timeout.
    async fn handshake(&mut self, stream: Box<dyn Stream>) -> Option<Box<dyn Stream>> {
        let tls = self.shared.settings.tls.as_ref()?;
        let limit = self.shared.settings.idle_timeout;
        let (stream, info) = serve::handshake(tls, stream, limit, &self.peer_text).await?;
        self.tls = Some(info);
        Some(stream)
    }

    /// Acts on the session's events; true if the session asked for TLS.
    async fn handle_events(&mut self, session: &mut ServerSession) -> bool {
        let mut starttls = false;
        loop {
            // The trace up to this event first, so the log reads in order.
            self.log(session);
            let Some(event) = session.poll_event() else {
                break;
            };
            match event {
                Event::Verify { address, from } => {
                    let who = self.who(session);
                    let result = self.verify(address, from, who).await;
                    if result == VerifyResult::Abort {
                        self.verifier_abort();
                    }
                    session.answer_verify(result)
                }
                Event::MessageOpen => {
                    self.open_message(session.transaction());
                    session.answer_message_open();
                }
                Event::MessageStart => {
                    let authenticated = session.authentication().is_some();
                    let result = self.start_message(session.transaction(), authenticated);
                    session.answer_message_start(result);
                }
                Event::MessageData(chunk) => self.write(&chunk),
                Event::MessageEnd => {
                    let name = session.authentication().map(|a| a.name.clone());
                    let result = self.end_message(session.transaction().clone(), name).await;
                    session.set_free_space(self.shared.instance.free_space());
                    session.answer_message(result);
                    self.reply_outside_context = true;
                }
                Event::AuthNonce => session.answer_auth_nonce(&serve::nonce()),
                Event::Authenticate {
                    mechanism,
                    credentials,
                } => {
                    let result = self.authenticate(mechanism, credentials).await;
                    if result == emailrelay_proto::sasl::AuthResult::Rejected {
                        Stats::add(&self.shared.instance.stats().auth_failures_in);
                    }
                    session.answer_auth(result);
                }
                Event::MessageAbort => {
                    self.message = None;
                    self.open_error = None;
                }
                Event::Close => {}
                Event::StartTls => starttls = true,
            }
        }
        starttls
    }

    /// E-MailRelay compatibility: 2.6.1's lines for a verifier that asks
    /// for the connection to be dropped (its exception handlers' words).
    fn verifier_abort(&mut self) {
        let text = "smtp protocol done: address verifier abort";
        match self
            .shared
            .verifier
            .as_ref()
            .is_some_and(|v| v.is_network())
        {
            true => crate::warning!("error: {text}"),
            false => log::write(Level::Verbose, format_args!("exception: {text}")),
        }
        self.reason_override = Some(PEER_CLOSED);
    }

    /// Checks AUTH credentials; a failure is answered only after a pause,
    /// and the last one allowed is logged with the client's address.
    async fn authenticate(&mut self, mechanism: Mechanism, credentials: Credentials) -> AuthResult {
        let Some(auth) = self.shared.settings.auth.clone() else {
            return AuthResult::Rejected;
        };
        let user = credentials.user().to_string();
        let result = Box::pin(auth.check(self.peer.map(|p| p.ip()), credentials)).await;
        // E-MailRelay's lines, which its fail2ban filter matches.
        let mechanism = mechanism.name();
        match &result {
            AuthResult::Accepted { .. } => log::write(
                Level::Info,
                format_args!("{}", auth.outcome_text(mechanism, &user, true)),
            ),
            AuthResult::Rejected => {
                self.auth_failures += 1;
                log::write(
                    Level::Warning,
                    format_args!("{}", auth.outcome_text(mechanism, &user, false)),
                );
                tokio::time::sleep(FAILURE_DELAY).await;
                if self.auth_failures >= MAX_FAILURES {
                    log::write(
                        Level::Warning,
                        format_args!(
                            "smtp authentication: too many failures from {}: disconnecting",
                            self.peer_text
                        ),
                    );
                }
            }
            AuthResult::Unavailable => {}
        }
        result
    }

    /// The verifier's fifth and sixth fields: the AUTH mechanism in lower
    /// case and the AUTH name; E-MailRelay compatibility: `none` and the
    /// keyword of a trusted address (or "") when not authenticated.
    fn who(&self, session: &ServerSession) -> (String, String) {
        match (session.authentication(), &self.trusted) {
            (Some(a), _) => (a.mechanism.name().to_ascii_lowercase(), a.name.clone()),
            (None, keyword) => ("none".to_string(), keyword.clone().unwrap_or_default()),
        }
    }

    async fn verify(
        &self,
        address: String,
        from: Option<String>,
        (mechanism, auth_name): (String, String),
    ) -> VerifyResult {
        let Some(verifier) = &self.shared.verifier else {
            return VerifyResult::Remote(address);
        };
        let request = VerifyRequest {
            address,
            vrfy: from.is_none(),
            from: from.unwrap_or_default(),
            peer: self
                .peer
                .map(|p| display_addr(&SocketAddr::new(p.ip().to_canonical(), p.port())))
                .unwrap_or_default(),
            domain: self.shared.settings.domain.clone(),
            mechanism,
            auth_name,
        };
        Box::pin(verifier.verify(&request)).await
    }

    /// MAIL was accepted: the content file is made now, as 2.6.1 makes
    /// it (and logs it); a failure is answered at DATA.
    fn open_message(&mut self, transaction: &Transaction) {
        self.message = None;
        self.write_error = None;
        self.open_error = None;
        if transaction.from.as_ref().is_some_and(|f| f.is_empty()) {
            // E-MailRelay compatibility: probably a bounce, worth a note.
            crate::warning!("empty MAIL-FROM return path");
        }
        match self.shared.instance.new_message() {
            Ok(message) => {
                log::write(
                    Level::Verbose,
                    format_args!(
                        "new content file [{}]",
                        message.id().file_name(SpoolFile::Content)
                    ),
                );
                self.message = Some(message);
            }
            Err(e) => {
                crate::error!("{e}");
                self.open_error = Some(storage_reply(&e));
            }
        }
    }

    /// DATA or the first BDAT: the `Received` line goes first; its length
    /// counts towards `--size`, as in 2.6.1.
    fn start_message(
        &mut self,
        transaction: &Transaction,
        authenticated: bool,
    ) -> Result<u64, Reply> {
        if let Some(reply) = self.open_error.take() {
            return Err(reply);
        }
        if self.message.is_none() {
            return Err(Reply::new(451, "local error in processing"));
        }
        if self.shared.settings.anonymous.content {
            return Ok(0);
        }
        let received = self.received_line(transaction, authenticated);
        let written = self.message.as_mut().map(|m| m.write(received.as_bytes()));
        match written.unwrap_or(Ok(())) {
            Ok(()) => Ok(received.len() as u64),
            Err(e) => {
                crate::error!("{e}");
                self.message = None;
                Err(storage_reply(&e))
            }
        }
    }

    fn write(&mut self, chunk: &[u8]) {
        if self.write_error.is_some() {
            return;
        }
        if let Some(message) = self.message.as_mut() {
            if let Err(e) = message.write(chunk) {
                self.write_error = Some(e);
            }
        }
    }

    async fn end_message(
        &mut self,
        transaction: Transaction,
        authenticated: Option<String>,
    ) -> MessageResult {
        let Some(message) = self.message.take() else {
            return MessageResult::Rejected(Reply::new(451, "local error in processing"));
        };
        if let Some(e) = self.write_error.take() {
            crate::error!("{e}");
            return MessageResult::Rejected(storage_reply(&e));
        }
        let id = message.id().clone();
        log::write(
            Level::Verbose,
            format_args!(
                "new envelope file [{}]",
                id.file_name(SpoolFile::EnvelopeNew)
            ),
        );
        let mut envelope = self.envelope(&transaction);
        // E-MailRelay compatibility: a client that did not authenticate
        // but came from a trusted address (`server none <address>
        // <keyword>`) is recorded by that keyword, which filters and the
        // client-side account selection may branch on.
        envelope.authentication = authenticated
            .clone()
            .or_else(|| self.trusted.clone())
            .unwrap_or_default();
        let committed = match &self.shared.filter {
            None => message.commit(envelope).await,
            Some(filter) => match message.prepare(envelope).await {
                Ok(prepared) => match self.filter(filter, prepared).await {
                    Ok(Err(e)) if !e.is_no_space() => {
                        // E-MailRelay compatibility: a message the filter
                        // left uncommittable (files removed, exit 0) is
                        // answered `452 rejected`.
                        crate::warning!("filter exception: {e}");
                        return MessageResult::Rejected(Reply::new(452, "rejected"));
                    }
                    Ok(committed) => committed,
                    Err(result) => return result,
                },
                Err(e) => Err(e),
            },
        };
        match committed {
            Ok(id) => {
                crate::debug!("committed [{id}]: content, envelope and directory fsynced");
                self.stored += 1;
                if self.shared.settings.immediate {
                    Stats::add(&self.shared.instance.stats().received);
                    return self.forward_now(&id).await;
                }
                self.shared.instance.stored().await;
                MessageResult::Accepted
            }
            Err(e) => {
                crate::error!("{e}");
                MessageResult::Rejected(storage_reply(&e))
            }
        }
    }

    /// Runs `--filter` on a prepared message, as 2.6.1's message store
    /// does: ok commits; abandon commits whatever the filter left, if it
    /// can, and answers 250; a failure removes the files and answers with
    /// the filter's response (452 unless it gave a 4xx/5xx code). A server
    /// filter's special flag asks for a forwarding rescan whatever the
    /// result. `Ok` carries the commit's result on; `Err` is the answer
    /// already decided.
    async fn filter(
        &self,
        filter: &Filter,
        prepared: Prepared,
    ) -> Result<Result<crate::store::MessageId, StoreError>, MessageResult> {
        let job = FilterJob {
            content: prepared.content_path(),
            envelope: prepared.envelope_path(),
        };
        // Boxed, as are the verifier and AUTH checks: an idle connection's
        // future then holds none of their state.
        let outcome = Box::pin(filter.run(&job, FilterType::Server)).await;
        let decided = match outcome.result {
            FilterResult::Ok => Ok(prepared.commit(true).await),
            FilterResult::Abandon => {
                if job.envelope.exists() {
                    let _ = prepared.commit(true).await;
                } else {
                    prepared.abandon();
                }
                Err(MessageResult::Accepted)
            }
            FilterResult::Fail | FilterResult::Retry => {
                // E-MailRelay compatibility: this line, in this shape.
                crate::info!("rejected by filter: [{}]", outcome.reason);
                drop(prepared);
                Err(MessageResult::Rejected(outcome.reply()))
            }
        };
        if outcome.special {
            self.shared.instance.rescan();
        }
        decided
    }

    /// Proxy mode: the client hears the upstream's verdict. A message the
    /// upstream refused is kept as `.bad` (the client keeps its copy too);
    /// one that could not be sent at all stays queued and is accepted.
    async fn forward_now(&mut self, id: &crate::store::MessageId) -> MessageResult {
        let link = self
            .proxy
            .get_or_insert_with(Default::default)
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Boxed: the forwarding future is large and only proxy mode needs
        // it, so it is not carried inside every idle connection's future.
        match Box::pin(self.shared.instance.forward_now(id, link)).await {
            Verdict::Sent | Verdict::Deferred(None) => MessageResult::Accepted,
            Verdict::Failed(reply) | Verdict::Deferred(Some(reply)) => {
                MessageResult::Rejected(reply)
            }
        }
    }

    fn envelope(&self, t: &Transaction) -> Envelope {
        Envelope {
            body: t.params.body,
            from: t.from.as_ref().map(|f| f.to_string()).unwrap_or_default(),
            to_local: t
                .recipients
                .iter()
                .filter_map(|r| r.local.clone())
                .collect(),
            to_remote: t
                .recipients
                .iter()
                .filter(|r| r.local.is_none())
                .map(|r| r.address.clone())
                .collect(),
            client: self
                .peer
                .map(|p| p.ip().to_canonical().to_string())
                .unwrap_or_default(),
            client_certificate: self
                .tls
                .as_ref()
                .and_then(|t| t.peer_certificate.clone())
                .unwrap_or_default(),
            mail_from_auth_in: t.params.auth.clone(),
            utf8_mailbox_names: t.is_utf8(),
            ..Envelope::default()
        }
    }

    fn received_line(&self, t: &Transaction, authenticated: bool) -> String {
        // The client's own name, made one printable ASCII word as
        // E-MailRelay makes it, so that it can never start a header.
        let helo = if t.helo.is_empty() {
            "unknown".to_string()
        } else {
            emailrelay_proto::printable::printable_ascii(t.helo.replace(' ', "-").as_bytes())
        };
        let ip = self
            .peer
            .map(|p| p.ip().to_canonical().to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        // RFC 3848 protocol names. E-MailRelay compatibility: ESMTP after
        // HELO too, and the TLS cipher (RFC 8314 section 4.3).
        let with = format!(
            "ESMTP{}{}",
            if self.tls.is_some() { "S" } else { "" },
            if authenticated { "A" } else { "" }
        );
        let cipher: String = self
            .tls
            .as_ref()
            .map(|t| t.cipher.replace('-', "_"))
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let tls = match cipher.is_empty() {
            true => String::new(),
            false => format!(" tls {cipher}"),
        };
        let date = received_date(&chrono::Local::now());
        format!(
            "Received: from {helo} ([{ip}]) by {} with {with}{tls} ; {date}\r\n",
            self.shared.settings.domain
        )
    }

    /// The `smtp connection closed` line, once.
    fn log_closed(&mut self, reason: &str) {
        if !self.closed_logged {
            self.closed_logged = true;
            crate::info!("smtp connection closed: {reason}: {}", self.peer_text);
        }
    }

    /// Writes the session's trace lines and warnings.
    fn log(&mut self, session: &mut ServerSession) {
        for line in session.poll_log() {
            match line {
                // E-MailRelay compatibility: 2.6.1 answers the end of a
                // message from outside the session's logging context.
                LogLine::Trace(text) if self.reply_outside_context && text.starts_with("tx>>") => {
                    self.reply_outside_context = false;
                    log::without_peer(|| {
                        log::write(Level::Verbose, format_args!("{}", cut_trace(&text)))
                    })
                }
                LogLine::Trace(text) => {
                    log::write(Level::Verbose, format_args!("{}", cut_trace(&text)))
                }
                LogLine::Warning(text) => crate::warning!("{text}"),
                LogLine::WarningOnce(text) => {
                    if first_time(text) {
                        crate::warning!("{text}");
                    }
                }
            }
        }
    }
}

/// E-MailRelay compatibility: 2.6.1's logger cuts a line at 1040 octets,
/// its hidden method name (`GSmtp::ServerProtocol: `) and the `emailrelay:
/// info: ` prefix included, and marks the cut with ` ...`; so a trace line
/// of a long command shows its first 999 octets (fewer in 2.6.1 with
/// `--log-time` or `--log-address`). It also keeps an 80 KB command line
/// from making an 80 KB log line.
fn cut_trace(text: &str) -> std::borrow::Cow<'_, str> {
    const LIMIT: usize = 999;
    if text.len() <= LIMIT {
        return text.into();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &text[..end]).into()
}

/// True the first time a once-per-process warning comes up.
fn first_time(text: &'static str) -> bool {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if seen.contains(&text) {
        return false;
    }
    seen.push(text);
    true
}

/// Why a deadline ended the session, for its log line; 2.6.1's words when
/// the client went silent.
fn timeout_reason(
    silent: bool,
    content: Option<&serve::ContentDeadline>,
    settings: &ServerSettings,
) -> String {
    let idle = settings.idle_timeout.as_secs();
    match (silent, content.map(serve::ContentDeadline::expiry)) {
        (true, _) => format!("idle timeout: no activity after {idle}s"),
        (false, Some(serve::Expiry::TooSlow)) => format!(
            "timeout: message content slower than --min-data-rate={} bytes a second",
            settings.min_data_rate
        ),
        (false, Some(serve::Expiry::Limit)) => format!(
            "timeout: message content not complete after {}s",
            serve::CONTENT_LIMIT.as_secs()
        ),
        (false, None) => format!("timeout: command not complete after {idle}s"),
    }
}

/// Storage failures are 4xx so that the client keeps the message.
fn storage_reply(e: &StoreError) -> Reply {
    if e.is_no_space() {
        Reply::new(452, "insufficient system storage")
    } else {
        Reply::new(451, "local error in processing")
    }
}

/// The `Received` line's date. E-MailRelay compatibility: the day of the
/// month without a leading zero (`Sun, 6 Dec 2026 ...`), as 2.6.1 writes
/// it (RFC 5322 allows either).
fn received_date<Tz: chrono::TimeZone>(now: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    now.format("%a, %-d %b %Y %H:%M:%S %z").to_string()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn the_received_date_has_no_leading_zero_on_the_day() {
        let zone = chrono::FixedOffset::east_opt(3600).unwrap();
        let day = |d| zone.with_ymd_and_hms(2026, 12, d, 9, 5, 7).unwrap();
        assert_eq!(
            super::received_date(&day(6)),
            "Sun, 6 Dec 2026 09:05:07 +0100"
        );
        assert_eq!(
            super::received_date(&day(16)),
            "Wed, 16 Dec 2026 09:05:07 +0100"
        );
    }
}
