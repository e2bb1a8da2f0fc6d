//! The POP3 connection driver: one task per connection, feeding a proto
//! `PopSession` and acting on its events (credential checks, maildrop
//! listing, streaming a message, deletion at QUIT, STLS).
//!
//! Deadlines: a command must be complete within `--idle-timeout` of the
//! previous reply however its bytes trickle in, and every write must
//! finish within it too; then the connection is closed without a word
//! and nothing is deleted (RFC 1939 section 3). Message content is read
//! from the file and written in chunks, never held whole.
//!
//! Must not: delete anything unless the client said QUIT, nor hand a
//! message the forwarder holds to the deleter (`store::Maildrop` keeps it).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use emailrelay_proto::pop::{AuthMethod, Event, MessageInfo, PopConfig, PopSession};
use emailrelay_proto::sasl::{AuthResult, Credentials, Mechanism};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::PopShared;
use crate::auth::{FAILURE_DELAY, MAX_FAILURES};
use crate::log::{self, Level};
use crate::net::{display_addr, Stream};
use crate::serve::{self, Read};
use crate::store::{Maildrop, MaildropError};

/// Unknown or out-of-state commands before the session is closed.
const MAX_BAD_COMMANDS: u32 = 10;
/// Content is read and sent in pieces of this size.
const CHUNK: usize = 16 * 1024;

/// Why a user's maildrop could not be opened (logged, and the -ERR reply).
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// The maildrop itself.
    #[error(transparent)]
    Maildrop(#[from] MaildropError),
    /// The thread that lists it ended without an answer.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Serves one accepted connection to its end.
pub async fn serve(stream: Box<dyn Stream>, peer: Option<SocketAddr>, shared: Arc<PopShared>) {
    let peer_text = peer
        .as_ref()
        .map(display_addr)
        .unwrap_or_else(|| "unix".into());
    if serve::refused_as_remote(peer, shared.settings.remote_clients) {
        // E-MailRelay compatibility: dropped without a word.
        crate::warning!("pop connection rejected from {peer_text}: not a local address: use --remote-clients to allow it");
        return;
    }
    crate::info!("pop connection from {peer_text}");
    shared.started.fetch_add(1, Ordering::Relaxed);
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        peer: peer.map(|p| p.ip()),
        peer_text: peer_text.clone(),
        maildrop: None,
    };
    let reason = conn.run(stream).await;
    shared.finished.fetch_add(1, Ordering::Relaxed);
    crate::info!("pop connection closed: {reason}: {peer_text}");
}

struct Conn {
    shared: Arc<PopShared>,
    peer: Option<std::net::IpAddr>,
    peer_text: String,
    maildrop: Option<Maildrop>,
}

impl Conn {
    async fn run(&mut self, mut stream: Box<dyn Stream>) -> &'static str {
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        let mut session = PopSession::new(self.config());
        let idle = settings.idle_timeout;
        let mut shutdown = shared.shutdown.clone();
        let mut buf = vec![0u8; 4096];
        let mut deadline = Instant::now() + idle;
        loop {
            match self.flush(&mut session, &mut stream).await {
                Some(true) => deadline = Instant::now() + idle,
                Some(false) => {}
                None => return "peer disconnected",
            }
            if session.is_closed() {
                serve::close(&mut stream).await;
                return "pop protocol done";
            }
            match serve::read_by(&mut stream, &mut buf, deadline, &mut shutdown).await {
                Read::Data(n) => session.handle_input(&buf[..n]),
                Read::Closed => return "peer disconnected",
                Read::Timeout => {
                    session.shutdown();
                    serve::close(&mut stream).await;
                    return "timeout";
                }
                Read::Shutdown => {
                    session.shutdown();
                    serve::close(&mut stream).await;
                    return "service shutting down";
                }
            }
            self.trace(&mut session);
            match self.handle_events(&mut session, &mut stream).await {
                Ok(false) => {}
                Ok(true) => {
                    // The +OK goes out in clear, then the handshake.
                    if self.flush(&mut session, &mut stream).await.is_none() {
                        return "peer disconnected";
                    }
                    let Some(tls) = settings.tls.as_ref() else {
                        return "tls handshake failed";
                    };
                    match serve::handshake(tls, stream, idle, &self.peer_text).await {
                        Some((secure, _)) => stream = secure,
                        None => return "tls handshake failed",
                    }
                    session.tls_started();
                    deadline = Instant::now() + idle;
                }
                Err(reason) => return reason,
            }
        }
    }

    fn config(&self) -> PopConfig {
        let settings = &self.shared.settings;
        let auth = &settings.auth;
        PopConfig {
            stls: settings.tls.is_some(),
            implicit_tls: false,
            tls_required: settings.tls_required,
            clear: capa_order(auth.mechanisms(false)),
            secure: capa_order(auth.mechanisms(true)),
            apop_challenge: auth
                .offers_apop(false)
                .then(|| format!("<{}@{}>", serve::nonce(), settings.domain)),
            max_failures: MAX_FAILURES,
            max_bad_commands: MAX_BAD_COMMANDS,
            trace: settings.trace,
        }
    }

    /// Writes what the session has to say; `Some(true)` if anything went,
    /// `None` if the peer is gone or stopped reading.
    async fn flush(&self, session: &mut PopSession, stream: &mut Box<dyn Stream>) -> Option<bool> {
        let mut out = Vec::new();
        session.poll_output(&mut out);
        self.trace(session);
        if out.is_empty() {
            return Some(false);
        }
        let limit = self.shared.settings.idle_timeout;
        serve::write_within(stream, &out, limit)
            .await
            .then_some(true)
    }

    /// Acts on the session's events. `Ok(true)` if the session asked for
    /// TLS; `Err` ends the connection with a reason.
    async fn handle_events(
        &mut self,
        session: &mut PopSession,
        stream: &mut Box<dyn Stream>,
    ) -> Result<bool, &'static str> {
        let mut starttls = false;
        while let Some(event) = session.poll_event() {
            match event {
                Event::AuthNonce => {
                    let domain = self.shared.settings.domain.clone();
                    session.answer_auth_nonce(&serve::nonce(), &domain);
                }
                Event::Authenticate {
                    method,
                    credentials,
                } => {
                    let result = self.authenticate(method, credentials).await;
                    session.answer_auth(result);
                }
                Event::Maildrop { user } => {
                    let result = self.open_maildrop(user).await;
                    // The reason is the -ERR reply's text.
                    session.answer_maildrop(result.map_err(|e| e.to_string()));
                }
                Event::Retrieve { index, .. } => {
                    if !self.retrieve(index, session, stream).await {
                        return Err("peer disconnected");
                    }
                }
                Event::Update { deleted } => {
                    let all = self.update(deleted).await;
                    session.answer_update(all);
                }
                Event::StartTls => starttls = true,
                Event::Close => {}
            }
        }
        Ok(starttls)
    }

    /// Checks a login; a failure is answered only after a pause, and the
    /// last one allowed is logged with the client's address.
    async fn authenticate(&mut self, method: AuthMethod, credentials: Credentials) -> AuthResult {
        let user = credentials.user().to_string();
        let auth = Arc::clone(&self.shared.settings.auth);
        let result = Box::pin(auth.check(self.peer, credentials)).await;
        // E-MailRelay's mechanism names: USER/PASS is checked as PLAIN.
        let mechanism = match method {
            AuthMethod::UserPass => "plain".to_string(),
            AuthMethod::Apop => "apop".to_string(),
            AuthMethod::Sasl(m) => m.name().to_string(),
        };
        match &result {
            AuthResult::Accepted { name } => {
                log::write(
                    Level::Info,
                    format_args!("{}", auth.outcome_text(&mechanism, &user, true)),
                );
                // E-MailRelay compatibility: a second line after AUTH.
                if matches!(method, AuthMethod::Sasl(_)) {
                    log::write(
                        Level::Info,
                        format_args!(
                            "pop authentication of {name} connected from {}",
                            self.peer_text
                        ),
                    );
                }
            }
            AuthResult::Rejected => {
                crate::monitor::Stats::add(&self.shared.stats.auth_failures_in);
                log::write(
                    Level::Warning,
                    format_args!("{}", auth.outcome_text(&mechanism, &user, false)),
                );
                tokio::time::sleep(FAILURE_DELAY).await;
            }
            AuthResult::Unavailable => {}
        }
        result
    }

    async fn open_maildrop(&mut self, user: String) -> Result<Vec<MessageInfo>, OpenError> {
        let spool_dir = self.shared.spool_dir.clone();
        let by_name = self.shared.settings.by_name;
        let opened = tokio::task::spawn_blocking(move || {
            Maildrop::open(&spool_dir, by_name.then_some(user.as_str()))
        })
        .await
        .map_err(OpenError::from)
        .and_then(|r| r.map_err(OpenError::from));
        match opened {
            Ok(maildrop) => {
                let list = maildrop
                    .messages()
                    .iter()
                    .map(|m| MessageInfo {
                        size: m.size,
                        uid: m.uid(),
                    })
                    .collect();
                self.maildrop = Some(maildrop);
                Ok(list)
            }
            Err(reason) => {
                crate::warning!("pop: {reason}: {}", self.peer_text);
                Err(reason)
            }
        }
    }

    /// Streams message `index` through the session; false if the peer
    /// went away or stopped reading.
    async fn retrieve(
        &mut self,
        index: usize,
        session: &mut PopSession,
        stream: &mut Box<dyn Stream>,
    ) -> bool {
        let opened = self.maildrop.as_ref().map(|m| m.open_content(index));
        let file = match opened {
            Some(Ok(file)) => Some(tokio::fs::File::from_std(file)),
            Some(Err(e)) => {
                crate::warning!(
                    "pop: cannot read message {}: {e}: {}",
                    index + 1,
                    self.peer_text
                );
                None
            }
            None => None,
        };
        session.answer_retrieve(file.is_some());
        let Some(mut file) = file else {
            return true;
        };
        let mut chunk = vec![0u8; CHUNK];
        while session.is_sending() {
            match file.read(&mut chunk).await {
                Ok(0) | Err(_) => session.finish_content(),
                Ok(n) => {
                    session.write_content(&chunk[..n]);
                }
            }
            // Only this chunk's output is in flight: memory stays small.
            if self.flush(session, stream).await.is_none() {
                return false;
            }
        }
        true
    }

    /// Deletes at QUIT, unless `--pop-no-delete`; true if everything
    /// marked is gone.
    async fn update(&mut self, deleted: Vec<usize>) -> bool {
        if self.shared.settings.no_delete {
            crate::debug!("pop: --pop-no-delete: {} message(s) kept", deleted.len());
            return true;
        }
        let Some(maildrop) = self.maildrop.take() else {
            return false;
        };
        let deletion = tokio::task::spawn_blocking(move || maildrop.delete(&deleted)).await;
        let Ok(deletion) = deletion else {
            return false;
        };
        for (name, reason) in &deletion.kept {
            crate::warning!("pop: [{name}] not deleted: {reason}");
        }
        deletion.kept.is_empty()
    }

    fn trace(&self, session: &mut PopSession) {
        for line in session.poll_trace() {
            log::write(Level::Verbose, format_args!("{line}"));
        }
    }
}

/// E-MailRelay compatibility: CAPA and AUTH list CRAM mechanisms first,
/// then PLAIN and LOGIN.
fn capa_order(mut mechanisms: Vec<Mechanism>) -> Vec<Mechanism> {
    mechanisms.sort_by_key(|m| match m {
        Mechanism::CramMd5 => 0,
        Mechanism::Plain => 1,
        Mechanism::Login => 2,
        Mechanism::XOAuth2 => 3,
    });
    mechanisms
}
