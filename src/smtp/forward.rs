//! The forwarding scheduler: when to forward (startup, poll, client
//! disconnect, admin `forward`/`flush`, `--immediate`) and how (several
//! connections at once, each reused for many messages).
//!
//! Outcome rules: the upstream's 2xx to end-of-data deletes the message;
//! 5xx fails it to `.bad` with the reason; 4xx and connection failures
//! leave it in the spool for a later attempt; after a 4xx, a wait that
//! grows with each deferral (`super::backoff`) comes first, unless an
//! admin command forces the pass.
//!
//! Log lines follow E-MailRelay's: `forwarding: [<reason>]` when a pass
//! starts (not for `poll`), `forwarding [<id>]` and `smtp connection to
//! <address>` for each message, `deleting envelope [...]` and `deleting
//! content [...]` once it is sent, `failing envelope [...] -> [...]`,
//! `smtp client error: <reason>` when a connection fails, and
//! `forwarding: no more messages to send` at the end of a pass.
//!
//! `--client-filter` runs before each message is sent: as the routing
//! filter when the envelope has a `ForwardTo`, as the client filter
//! otherwise (2.6.1's names, exit codes and log lines).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emailrelay_proto::sasl::ClientSecret;
use emailrelay_proto::smtp::{
    xtext_encode, ClientConfig, OutgoingMessage, Reply, SendOutcome, Strictness, TlsPolicy,
};
use tokio::sync::{watch, Notify};

use super::backoff::Backoff;
use super::client::{Connection, ConnectionError, Timeouts};
use super::rate::RateLimit;
use crate::auth::{AccountError, ClientAuth};
use crate::control::{Connections, Registered};
use crate::filter::{Filter, FilterJob, FilterResult, FilterType};
use crate::store::{Locked, MessageId, Spool};
use crate::tls::ClientTls;
use crate::{error, info, warning};

/// A connection is reused only for messages to the same place with the
/// same client account: (target address, account selector).
type Key = (String, String);

/// Forwarding settings; built by `config`.
#[derive(Clone, Debug, Default)]
pub struct ForwardSettings {
    /// `--forward-to` (or the `--as-client`/`--as-proxy` address).
    pub forward_to: Option<String>,
    /// `--forward` / `--as-client`: forward once at startup.
    pub on_start: bool,
    /// `--forward-on-disconnect`.
    pub on_disconnect: bool,
    /// `--poll`.
    pub poll: Option<Duration>,
    /// `--immediate`.
    pub immediate: bool,
    /// `--dont-serve` / `--as-client`: exit once the startup forwarding is done.
    pub exit_when_done: bool,
    /// `--forward-to-some`.
    pub to_some: bool,
    pub client_interface: Option<IpAddr>,
    pub connection_timeout: Duration,
    pub response_timeout: Duration,
    pub prompt_timeout: Duration,
    pub pipelining: bool,
    /// `--client-smtp-config` `eightbitstrict`, `smtputf8strict`, `binarymimestrict`.
    pub strict: Strictness,
    /// Our EHLO name.
    pub helo_domain: String,
    /// `--anonymous=client`: no `AUTH=` on MAIL.
    pub anonymous_client: bool,
    /// Protocol trace lines in the log.
    pub trace: bool,
    /// Connections used at once in one forwarding pass, at most
    /// (`--client-connections`); a pass opens one for every
    /// [`MESSAGES_PER_CONNECTION`] waiting messages.
    pub max_connections: usize,
    /// `--max-age`: a message still deferred this long after it was
    /// received is failed.
    pub max_age: Option<Duration>,
    /// `--client-rate`: messages a minute per upstream and account.
    pub rate: Option<usize>,
    /// The TLS context, for STARTTLS or implicit TLS.
    pub tls: Option<ClientTls>,
    /// `--client-tls` (offered) or `--client-tls-required`.
    pub tls_policy: TlsPolicy,
    /// `--client-tls-connection`: TLS from the first byte.
    pub tls_connection: bool,
    /// `--client-auth`: the accounts to authenticate with.
    pub auth: Option<Arc<ClientAuth>>,
}

/// A proxy session's upstream connection, reused for each of its messages.
#[derive(Default)]
pub struct ProxyLink(Option<(Key, Connection, Registered)>);

impl ProxyLink {
    /// Ends the upstream connection (QUIT), if there is one.
    pub async fn close(&mut self) {
        if let Some((_, connection, _)) = self.0.take() {
            connection.quit().await;
        }
    }
}

/// Counts of one forwarding pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub sent: usize,
    pub failed: usize,
    pub deferred: usize,
    /// The first error that kept a connection from being made, for the
    /// admin `flush` answer.
    pub error: Option<String>,
}

/// What happened to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// Failed to `.bad` (or rejected outright) with this reply.
    Failed(Reply),
    /// Left in the spool; the upstream said this, if it said anything.
    Deferred(Option<Reply>),
}

/// A pass opens another connection for every so many waiting messages
/// (up to `max_connections`): a few messages go down one connection, one
/// after the other in spool order, as E-MailRelay sends them, while a long
/// queue is drained over several.
pub const MESSAGES_PER_CONNECTION: usize = 16;

/// Why a forwarding pass runs, as the log line says it.
pub type Reason = &'static str;

/// Activity counters for the admin `status` command.
#[derive(Debug, Default)]
pub struct Stats {
    pub out_started: AtomicU64,
    pub out_finished: AtomicU64,
}

/// The scheduler. Cheap to share: `Arc<Forwarder>`.
pub struct Forwarder {
    settings: ForwardSettings,
    spool: Arc<Spool>,
    wake: Notify,
    pass_lock: tokio::sync::Mutex<()>,
    /// `--client-filter`, run on each message before it is sent.
    client_filter: Option<Arc<Filter>>,
    /// A client filter asked to stop scanning: take no more messages in
    /// this pass.
    stop_pass: AtomicBool,
    /// Why the next pass was asked for (`admin`, `rescan`, ...), for the log.
    reason: Mutex<Option<&'static str>>,
    /// Messages taken up in the current pass.
    started: AtomicU64,
    pub stats: Stats,
    /// The process's connection registry: outgoing connections are counted
    /// there, and `notify` events go out through it.
    connections: Arc<Connections>,
    /// The first error of the current pass that was not a verdict on one
    /// message (a missing account), for `--as-client`'s last word.
    pass_error: Mutex<Option<String>>,
    /// When each deferred message may be tried again.
    backoff: Mutex<Backoff>,
    /// Upstreams that refused our authentication, until one takes a message.
    paused: Mutex<std::collections::HashSet<String>>,
    /// `--client-rate`.
    rate: Option<RateLimit>,
}

impl Forwarder {
    /// A scheduler over `spool`.
    pub fn new(
        settings: ForwardSettings,
        spool: Arc<Spool>,
        client_filter: Option<Arc<Filter>>,
        connections: Arc<Connections>,
    ) -> Arc<Forwarder> {
        Arc::new(Forwarder {
            spool,
            wake: Notify::new(),
            pass_lock: tokio::sync::Mutex::new(()),
            client_filter,
            stop_pass: AtomicBool::new(false),
            reason: Mutex::new(None),
            started: AtomicU64::new(0),
            stats: Stats::default(),
            connections,
            pass_error: Mutex::new(None),
            backoff: Mutex::new(Backoff::default()),
            paused: Mutex::new(std::collections::HashSet::new()),
            rate: settings.rate.map(RateLimit::new),
            settings,
        })
    }

    /// True if there is somewhere to forward to.
    pub fn enabled(&self) -> bool {
        self.settings.forward_to.is_some()
    }

    /// Asks for a forwarding pass soon, for this reason (`startup`,
    /// `client disconnect`, `admin`, `rescan`): the pass is logged with it.
    pub fn trigger(&self, reason: Reason) {
        if self.enabled() {
            if let Ok(mut pending) = self.reason.lock() {
                *pending = Some(reason);
            }
            self.wake.notify_one();
        }
    }

    /// True if a client disconnect should trigger a pass.
    pub fn on_disconnect(&self) -> bool {
        self.settings.on_disconnect
    }

    /// True if each message is forwarded before it is acknowledged.
    pub fn immediate(&self) -> bool {
        self.settings.immediate
    }

    /// The background loop: passes on trigger and on the poll timer, until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if !self.enabled() {
            return;
        }
        loop {
            let poll = self
                .settings
                .poll
                .unwrap_or(Duration::from_secs(365 * 24 * 3600));
            let reason = tokio::select! {
                _ = self.wake.notified() => {
                    self.reason.lock().ok().and_then(|mut r| r.take()).unwrap_or("startup")
                }
                _ = tokio::time::sleep(poll) => "poll",
                _ = shutdown.changed() => return,
            };
            if self.pass_lock.try_lock().is_err() {
                // E-MailRelay compatibility: the request waits for the pass
                // under way (the lock), and runs after it.
                info!("forwarding: [{reason}]: still busy from last time");
                info!("forwarding: queued request [{reason}]");
            }
            self.pass_for(reason).await;
        }
    }

    /// One pass over the spool, as the admin `flush` asks for it: every
    /// message is tried, whatever its retry time.
    pub async fn pass(self: &Arc<Self>) -> PassSummary {
        let _only_one_pass = self.pass_lock.lock().await;
        self.pass_locked(true).await
    }

    /// One pass for `reason`, logged as E-MailRelay logs it.
    pub async fn pass_for(self: &Arc<Self>, reason: Reason) -> PassSummary {
        let _only_one_pass = self.pass_lock.lock().await;
        // E-MailRelay compatibility: a poll is not worth a line each time.
        let log = reason != "poll";
        if log {
            info!("forwarding: [{reason}]");
        }
        if self.spool.ready().is_ok_and(|ids| ids.is_empty()) {
            if log {
                info!("forwarding: no messages to send");
            }
            self.connections
                .emit(&["client", "forward", "end", "no messages"]);
            return PassSummary::default();
        }
        self.connections
            .emit(&["client", "forward", "start", reason]);
        // The admin `forward` tries everything now; polls, disconnects and
        // rescans leave deferred messages to their retry times.
        let summary = self.pass_locked(reason == "admin").await;
        // E-MailRelay's last word on a pass that failed, unless the process
        // is about to say it on its way out (`--as-client`).
        if let (Some(error), false) = (&summary.error, self.settings.exit_when_done) {
            error!("forwarding: {error}");
        }
        let error = summary.error.clone().unwrap_or_default();
        self.connections.emit(&["client", "forward", "end", &error]);
        summary
    }

    /// One pass over the spool, a connection for every few messages;
    /// returns counts. Deferred messages whose retry time has not come are
    /// left for a later pass unless `force`. The caller holds the pass lock.
    async fn pass_locked(self: &Arc<Self>, force: bool) -> PassSummary {
        let mut ids = match self.spool.ready() {
            Ok(ids) => ids,
            Err(e) => {
                error!("{e}");
                return PassSummary::default();
            }
        };
        if let Ok(mut backoff) = self.backoff.lock() {
            backoff.retain_queued(&ids);
            let now = std::time::Instant::now();
            if !force {
                ids.retain(|id| backoff.is_due(id, now));
            }
        }
        if ids.is_empty() {
            return PassSummary::default();
        }
        self.stop_pass.store(false, Ordering::Relaxed);
        self.started.store(0, Ordering::Relaxed);
        let workers = ids
            .len()
            .div_ceil(MESSAGES_PER_CONNECTION)
            .clamp(1, self.settings.max_connections.max(1));
        crate::debug!(
            "forwarding pass: {} message(s) over {workers} connection(s)",
            ids.len()
        );
        let queue = Arc::new(Mutex::new(VecDeque::from(ids)));
        let unreachable = Arc::new(Mutex::new(HashMap::new()));
        let busy = Arc::new(AtomicUsize::new(workers));
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let this = Arc::clone(self);
                let (queue, unreachable, busy) = (
                    Arc::clone(&queue),
                    Arc::clone(&unreachable),
                    Arc::clone(&busy),
                );
                // The pass's log context (the instance name) goes with it,
                // and each worker shows its own message's id.
                let context = crate::log::context().with_msgid_slot();
                tokio::spawn(crate::log::scope(context, async move {
                    this.worker(queue, unreachable, busy).await
                }))
            })
            .collect();
        let mut summary = PassSummary::default();
        for task in tasks {
            if let Ok(s) = task.await {
                summary.sent += s.sent;
                summary.failed += s.failed;
                summary.deferred += s.deferred;
                summary.error = summary.error.or(s.error);
            }
        }
        let noted = self.pass_error.lock().ok().and_then(|mut e| e.take());
        // Only the forward-to address's failure is the pass's error (and
        // `--as-client`'s exit code); routed ones were warned about.
        summary.error = unreachable
            .lock()
            .ok()
            .and_then(|u| {
                u.iter()
                    .find(|(k, _)| self.is_default(k))
                    .map(|(_, e)| e.clone())
            })
            .or(noted);
        // A stop request ends this pass only, not a later --immediate forward.
        self.stop_pass.store(false, Ordering::Relaxed);
        summary
    }

    /// `--max-age`: a deferred message received longer ago than that is
    /// failed, with the last reply's text and code if there was one; the
    /// new verdict, or `None` if the message may wait on.
    fn expire(&self, id: &MessageId, last: Option<&Reply>) -> Option<Verdict> {
        let max_age = self.settings.max_age?;
        let age = std::time::SystemTime::now()
            .duration_since(id.created()?)
            .ok()?;
        if age < max_age {
            return None;
        }
        let locked = match self.spool.lock(id) {
            Ok(Some(locked)) => locked,
            Ok(None) => return None,
            Err(e) => {
                error!("{e}");
                return None;
            }
        };
        let why = last.map_or_else(|| "the upstream was not reached".to_string(), |r| r.text());
        let reason = format!("not sent within --max-age={}s: {why}", max_age.as_secs());
        warning!("forwarding [{id}]: {reason}");
        Some(self.fail_as(
            locked,
            &reason,
            last.map(|r| r.code),
            Reply::new(554, &reason),
        ))
    }

    /// Updates the retry schedule after a verdict on `id`.
    fn schedule(&self, id: &MessageId, verdict: &Verdict) {
        let Ok(mut backoff) = self.backoff.lock() else {
            return;
        };
        match verdict {
            // The upstream takes mail again: nothing waits any longer.
            Verdict::Sent => backoff.clear(),
            Verdict::Failed(_) => backoff.forget(id),
            // No reply: the upstream could not be reached (or a token not
            // renewed). Each pass then costs one failed connect for the
            // whole route, and the queue must flow the moment it is back,
            // so the message keeps no wait of its own.
            Verdict::Deferred(None) => backoff.forget(id),
            Verdict::Deferred(Some(_)) => {
                let wait = backoff.deferred(id, std::time::Instant::now());
                crate::debug!(
                    "forwarding [{id}]: attempt {} deferred: next in {}s",
                    backoff.attempts(id),
                    wait.as_secs()
                );
            }
        }
    }

    /// Forwards one just-stored message now (`--immediate`, proxy mode),
    /// over the client session's own upstream connection, which `link`
    /// keeps open for the session's next message (E-MailRelay connects once
    /// per session). A message the upstream refuses, for now or for good,
    /// is kept as `.bad` with the reason, as E-MailRelay keeps it: the
    /// client hears the refusal and keeps its own copy.
    pub async fn forward_now(self: &Arc<Self>, id: &MessageId, link: &mut ProxyLink) -> Verdict {
        let locked = match self.spool.lock(id) {
            Ok(Some(locked)) => locked,
            Ok(None) => return Verdict::Deferred(None),
            Err(e) => {
                error!("{e}");
                return Verdict::Deferred(None);
            }
        };
        let verdict = self
            .forward_message(locked, &mut link.0, &Mutex::new(HashMap::new()))
            .await;
        if let Verdict::Deferred(Some(reply)) = &verdict {
            match self.spool.lock(id) {
                Ok(Some(locked)) => {
                    self.fail(locked, reply.clone());
                }
                Ok(None) => {}
                Err(e) => error!("{e}"),
            }
        }
        verdict
    }

    /// Takes messages off the pass's queue until it is empty; `busy`
    /// counts the workers still at it.
    async fn worker(
        &self,
        queue: Arc<Mutex<VecDeque<MessageId>>>,
        unreachable: Arc<Mutex<HashMap<String, String>>>,
        busy: Arc<AtomicUsize>,
    ) -> PassSummary {
        let mut summary = PassSummary::default();
        let mut conn: Option<(Key, Connection, Registered)> = None;
        // The queue's lock lives only inside this closure, never across an await.
        let next = || {
            if self.stop_pass.load(Ordering::Relaxed) {
                return None;
            }
            queue.lock().ok().and_then(|mut q| q.pop_front())
        };
        while let Some(id) = next() {
            let locked = match self.spool.lock(&id) {
                Ok(Some(locked)) => locked,
                Ok(None) => continue,
                Err(e) => {
                    error!("{e}");
                    summary.failed += 1;
                    continue;
                }
            };
            let mut verdict = self.forward_message(locked, &mut conn, &unreachable).await;
            if let Verdict::Deferred(reply) = &verdict {
                if let Some(expired) = self.expire(&id, reply.as_ref()) {
                    verdict = expired;
                }
            }
            self.schedule(&id, &verdict);
            match verdict {
                Verdict::Sent => summary.sent += 1,
                Verdict::Failed(_) => summary.failed += 1,
                Verdict::Deferred(_) => summary.deferred += 1,
            }
        }
        // E-MailRelay compatibility: the pass's last word comes before the
        // last connection's QUIT.
        // A pass that a broken connection to the forward-to address cut
        // short ends with that error instead (2.6.1 gives up the pass at
        // the first one); a dead address that a message was routed to
        // only has its messages skipped, and the pass ends as usual.
        let last = busy.fetch_sub(1, Ordering::AcqRel) == 1;
        let (default_dead, routed_dead) = unreachable.lock().map_or((true, false), |u| {
            let default_dead = u.keys().any(|k| self.is_default(k));
            (default_dead, u.len() > usize::from(default_dead))
        });
        let broken = default_dead || self.pass_error.lock().map_or(true, |e| e.is_some());
        if last && !broken && self.started.load(Ordering::Relaxed) > 0 {
            info!("forwarding: no more messages to send");
            // E-MailRelay compatibility: 2.6.1 ends a pass whose last
            // connection was a routed one that failed with this warning.
            if conn.is_none() && routed_dead {
                warning!("smtp client error: done");
            }
        }
        if let Some((_, c, _)) = conn {
            c.quit().await;
        }
        summary
    }

    async fn forward_message(
        &self,
        mut locked: Locked,
        conn: &mut Option<(Key, Connection, Registered)>,
        unreachable: &Mutex<HashMap<String, String>>,
    ) -> Verdict {
        if self.stop_pass.load(Ordering::Relaxed) {
            // A client filter ended the pass while this one was being
            // picked up: it waits for the next pass, unfiltered.
            return Verdict::Deferred(None);
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        crate::log::set_msgid(locked.id().as_str());
        info!(
            "forwarding [{}]{}",
            locked.id(),
            message_info(&locked.envelope)
        );
        // Before connecting, so that a filter can route the message by
        // setting ForwardToAddress (E-MailRelay runs the routing filter
        // early, when ForwardTo is set, and the client filter after
        // connecting; here both run first).
        if let Some(filter) = &self.client_filter {
            locked = match self.client_filter(filter, locked).await {
                Ok(locked) => locked,
                Err(verdict) => return verdict,
            };
        }
        // A content file we cannot read (another user's, say) will not
        // become readable by trying again: set it aside with the reason.
        if let Err(e) = crate::store::open_regular(&locked.content_path()) {
            let reason = format!("cannot read content file: {e}");
            error!("{reason}: [{}]", locked.content_path().display());
            return self.fail(locked, Reply::new(554, reason));
        }
        let envelope = locked.envelope.clone();
        if envelope.to_remote.is_empty() {
            return self.fail(locked, Reply::new(550, "no remote recipients"));
        }
        let target = match (
            envelope.forward_to_address.trim(),
            &self.settings.forward_to,
        ) {
            ("", Some(default)) => default.clone(),
            ("", None) => return Verdict::Deferred(None),
            (address, _) => address.to_string(),
        };
        if unreachable.lock().is_ok_and(|u| u.contains_key(&target)) {
            return self.skip_unconnectable(locked.id(), &target);
        }
        let key = (target.clone(), envelope.client_account_selector.clone());
        if conn.as_ref().is_some_and(|(k, _, _)| *k != key) {
            if let Some((old_key, old, _)) = conn.take() {
                old.quit().await;
                // E-MailRelay's line for a change of upstream mid-pass.
                let (new_address, new_selector) = (old_key.0 != key.0, old_key.1 != key.1);
                let mut what = Vec::new();
                if new_address {
                    what.push(format!("[{}]", envelope.forward_to_address.trim()));
                }
                if new_selector {
                    what.push(format!("account selector [{}]", key.1));
                }
                info!(
                    "forwarding [{}]: new connection for {}",
                    locked.id(),
                    what.join(" and ")
                );
            }
        }
        let fresh = conn.is_none();
        if fresh {
            let secret = match self.client_secret(&key.1).await {
                Ok(secret) => secret,
                Err(AccountError::NoAccount(selector)) => {
                    // E-MailRelay's words.
                    let reason = format!("no client authentication account: selector [{selector}]");
                    self.note_error(&reason);
                    // E-MailRelay compatibility: 2.6.1 finds the account
                    // missing once connected (so the upstream sees a
                    // session without MAIL), and that ends the pass; the
                    // messages after it wait for the next one.
                    if let Ok((c, _)) = self.connect(&target, None).await {
                        c.quit().await;
                    }
                    self.stop_pass.store(true, Ordering::Relaxed);
                    return self.fail(locked, Reply::new(554, reason));
                }
                // Logged once by the account; the message waits.
                Err(AccountError::Token(_)) => return Verdict::Deferred(None),
            };
            match self.connect(&target, secret).await {
                Ok((c, registered)) => {
                    if let (Some(user), Some(mechanism), Some(auth)) =
                        (c.authenticated(), c.auth_mechanism(), &self.settings.auth)
                    {
                        info!("{}", auth.success_text(&key.1, mechanism.name(), user));
                    }
                    *conn = Some((key, c, registered));
                }
                Err(e) => {
                    // Several connections may try the same dead address at
                    // once: only the first failure is reported, as with
                    // 2.6.1's one connection at a time.
                    let first = unreachable.lock().map_or(true, |mut u| {
                        let known = u.contains_key(&target);
                        u.entry(target.clone()).or_insert_with(|| e.to_string());
                        !known
                    });
                    if !first {
                        return self.skip_unconnectable(locked.id(), &target);
                    }
                    // E-MailRelay's lines for a connection that failed:
                    // to a routed address it only costs that address's
                    // messages their turn; to the forward-to address it is
                    // the pass's error.
                    if let ConnectionError::AuthRefused(reply) = e {
                        return self.pause(&target, reply);
                    }
                    if self.is_default(&target) {
                        warning!("smtp client error: {e}");
                    } else {
                        warning!("smtp connection failed: {e}");
                    }
                    return match e {
                        ConnectionError::Refused(reply) if reply.is_permanent() => {
                            self.fail(locked, reply)
                        }
                        ConnectionError::Refused(reply) => Verdict::Deferred(Some(reply)),
                        // E-MailRelay compatibility: a TLS refusal (a
                        // certificate, no common version) fails the message.
                        ConnectionError::Tls(e) | ConnectionError::Io(e)
                            if crate::tls::is_refusal(&e) =>
                        {
                            self.fail(locked, Reply::new(554, e.to_string()))
                        }
                        _ => Verdict::Deferred(None),
                    };
                }
            }
        }
        let Some((_, connection, _)) = conn.as_mut() else {
            return Verdict::Deferred(None);
        };
        if !fresh {
            // E-MailRelay compatibility: the line comes with every message,
            // on a new connection or not.
            info!("smtp connection to {target}");
        }
        self.connections
            .emit(&["client", "sending", locked.id().as_str()]);
        self.stats.out_started.fetch_add(1, Ordering::Relaxed);
        if let Some(rate) = &self.rate {
            let key = (target.clone(), envelope.client_account_selector.clone());
            self.wait_for_rate(rate, &key).await;
        }
        let message = self.outgoing(&envelope, connection.authenticated());
        let result = connection.send(message, &locked.content_path()).await;
        self.stats.out_finished.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(outcome) => {
                let verdict = self.apply(locked, outcome);
                if matches!(verdict, Verdict::Sent) {
                    self.resume(&target);
                }
                verdict
            }
            Err(ConnectionError::Content(e)) => {
                // The content cannot be read (a directory, an I/O error):
                // trying again will not help, and the half-sent message
                // left the connection unusable.
                *conn = None;
                let reason = format!("cannot read content file: {e}");
                error!("{reason}: [{}]", locked.content_path().display());
                self.fail(locked, Reply::new(554, reason))
            }
            Err(e) => {
                warning!("smtp client error: {e}");
                // The session broke: that is the pass's error too (for
                // `--as-client`'s exit code and the admin `flush` answer).
                self.note_error(&e.to_string());
                *conn = None;
                match e {
                    ConnectionError::Refused(reply) if reply.is_permanent() => {
                        self.fail(locked, reply)
                    }
                    ConnectionError::Refused(reply) => Verdict::Deferred(Some(reply)),
                    _ => Verdict::Deferred(None),
                }
            }
        }
    }

    /// `--client-rate`: waits until one more message a minute may go to
    /// this upstream with this account.
    async fn wait_for_rate(&self, rate: &RateLimit, key: &Key) {
        let mut said = false;
        while let Err(wait) = rate.admit(key, std::time::Instant::now()) {
            if !said {
                info!(
                    "forwarding to {}: --client-rate of {} a minute reached: waiting {}s",
                    key.0,
                    rate.per_minute(),
                    wait.as_secs().max(1)
                );
                said = true;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The upstream refused our authentication: the route is paused, not
    /// the mail failed. Its messages stay queued (the rest of this pass
    /// skips them, later passes retry with backoff) and one error says so
    /// per outage, with the upstream's words. Not in 2.6.1, which fails
    /// every message to `.bad` until the password is fixed.
    fn pause(&self, target: &str, reply: Reply) -> Verdict {
        self.note_error(&format!("authentication refused by {target}: {reply}"));
        let newly = self
            .paused
            .lock()
            .is_ok_and(|mut p| p.insert(target.to_string()));
        if newly {
            error!(
                "forwarding to {target} paused: the server refused our authentication: {reply}: mail stays queued"
            );
        }
        Verdict::Deferred(Some(reply))
    }

    /// A message went to `target`: a pause on it is over.
    fn resume(&self, target: &str) {
        if self.paused.lock().is_ok_and(|mut p| p.remove(target)) {
            info!("forwarding to {target} resumed: authentication accepted");
        }
    }

    /// True if `target` is the `--forward-to` address.
    fn is_default(&self, target: &str) -> bool {
        self.settings.forward_to.as_deref() == Some(target)
    }

    fn skip_unconnectable(&self, id: &MessageId, target: &str) -> Verdict {
        info!("forwarding [{id}]: skipping message with unconnectable address [{target}]");
        Verdict::Deferred(None)
    }

    /// Runs `--client-filter`, as the routing filter if the message has a
    /// `ForwardTo`; `Err` is the message's verdict if the filter decided
    /// it. As 2.6.1: a client filter's failure fails the message with its
    /// reason and code 550, and a proxy's client hears `452 <response>`; a
    /// routing filter's failure fails it with `routing filter failed:
    /// <response>: <reason>`, and a proxy's client hears `452 routing
    /// failed`; abandon leaves the message where the filter left it; only a
    /// client filter's special flag stops the pass.
    async fn client_filter(&self, filter: &Filter, mut locked: Locked) -> Result<Locked, Verdict> {
        let job = FilterJob {
            content: locked.content_path(),
            envelope: locked.envelope_path(),
        };
        let ty = match locked.envelope.forward_to.is_empty() {
            true => FilterType::Client,
            false => FilterType::Routing,
        };
        let outcome = filter.run(&job, ty).await;
        if outcome.special && ty == FilterType::Client {
            self.stop_pass.store(true, Ordering::Relaxed);
        }
        match (outcome.result, ty) {
            (FilterResult::Ok, _) => {}
            (FilterResult::Retry, _) => {
                warning!(
                    "{}: [{}] deferred: {}",
                    ty.name(),
                    locked.id(),
                    outcome.reason
                );
                return Err(Verdict::Deferred(None));
            }
            // Dropping the lock puts back whatever the filter left.
            (FilterResult::Abandon, _) => return Err(Verdict::Deferred(None)),
            (FilterResult::Fail, FilterType::Routing) => {
                let reason = format!(
                    "routing filter failed: {}: {}",
                    outcome.response, outcome.reason
                );
                let heard = Reply::new(452, "routing failed");
                return Err(self.fail_as(locked, &reason, None, heard));
            }
            (FilterResult::Fail, _) => {
                let heard = Reply::new(452, outcome.response.clone());
                return Err(self.fail_as(locked, &outcome.reason, Some(550), heard));
            }
        }
        if let Err(e) = locked.reload() {
            error!("{e}");
            return Err(Verdict::Deferred(None));
        }
        Ok(locked)
    }

    /// The secret for an account selector; `Ok(None)` without
    /// `--client-auth` or for an account that says not to authenticate.
    async fn client_secret(&self, selector: &str) -> Result<Option<ClientSecret>, AccountError> {
        match &self.settings.auth {
            None => Ok(None),
            Some(auth) => auth.secret(selector).await,
        }
    }

    /// Remembers the first error of the pass that is not about one message.
    fn note_error(&self, error: &str) {
        if let Ok(mut noted) = self.pass_error.lock() {
            noted.get_or_insert_with(|| error.to_string());
        }
    }

    /// Connects, greets and authenticates; the connection is counted in
    /// the registry (admin `status`) for as long as the second value lives.
    async fn connect(
        &self,
        target: &str,
        secret: Option<ClientSecret>,
    ) -> Result<(Connection, Registered), ConnectionError> {
        let s = &self.settings;
        self.connections.emit(&["client", "connecting", target]);
        let connected = crate::net::connect_from(target, s.client_interface, s.connection_timeout)
            .await
            .map_err(|e| ConnectionError::Io(std::io::Error::other(e.to_string())))?;
        // E-MailRelay compatibility: said once the connection is made.
        info!("smtp connection to {target}");
        let local = connected
            .local
            .as_ref()
            .map(crate::net::display_addr)
            .unwrap_or_default();
        let registered = self.connections.outgoing(local, target.to_string());
        let mut stream = connected.stream;
        let host = crate::net::target_host(target);
        let implicit = match (&s.tls, s.tls_connection) {
            (Some(tls), true) => {
                let (tls_stream, info) =
                    tokio::time::timeout(s.response_timeout, tls.connect(stream, &host))
                        .await
                        .map_err(|_| ConnectionError::Timeout(s.response_timeout.as_secs()))?
                        .map_err(ConnectionError::Tls)?;
                info!("tls session established: {info}");
                stream = tls_stream;
                true
            }
            _ => false,
        };
        // E-MailRelay compatibility (RFC 5321 4.1.4): a domain that is not
        // a fully qualified name gives way to the connection's own address.
        let helo_domain = match connected.local {
            Some(local) if !s.helo_domain.contains('.') => local.ip().to_string(),
            _ => s.helo_domain.clone(),
        };
        let config = ClientConfig {
            helo_domain,
            pipelining: s.pipelining,
            forward_to_some: s.to_some,
            trace: s.trace,
            strict: s.strict,
            tls: s.tls_policy,
            implicit_tls: implicit,
            auth: secret.map(|secret| emailrelay_proto::smtp::ClientAuth {
                secret,
                policy: s
                    .auth
                    .as_ref()
                    .map(|a| a.policy.clone())
                    .unwrap_or_default(),
            }),
        };
        let connection = Connection::open(
            stream,
            config,
            Timeouts {
                response: s.response_timeout,
                prompt: s.prompt_timeout,
            },
            s.tls.clone().map(|tls| (tls, host)),
        )
        .await?;
        self.connections.emit(&["client", "connected", target]);
        Ok((connection, registered))
    }

    fn outgoing(
        &self,
        envelope: &crate::store::Envelope,
        authenticated: Option<&str>,
    ) -> OutgoingMessage {
        // E-MailRelay's policy, only on a connection that authenticated:
        // `--anonymous=client` sends AUTH=<>, an empty MailFromAuthOut the
        // name we authenticated with, a valid xtext name itself, anything
        // else AUTH=<>. Without authentication there is no AUTH= at all.
        let out = envelope.mail_from_auth_out.as_str();
        let auth = authenticated.map(|id| {
            if self.settings.anonymous_client {
                "<>".to_string()
            } else if out.is_empty() {
                xtext_encode(id)
            } else if is_xtext(out) {
                out.to_string()
            } else {
                "<>".to_string()
            }
        });
        OutgoingMessage {
            from: envelope.from.clone(),
            to: envelope.to_remote.clone(),
            body: envelope.body,
            size: None,
            smtputf8: envelope.utf8_mailbox_names,
            auth,
        }
    }

    fn apply(&self, locked: Locked, outcome: SendOutcome) -> Verdict {
        match outcome {
            SendOutcome::Sent { rejected } if rejected.is_empty() => {
                let id = locked.id().clone();
                info!("deleting envelope [{id}.envelope.busy]");
                info!("deleting content [{id}.content]");
                match locked.delete() {
                    Ok(()) => {
                        self.connections.emit(&["client", "sent", id.as_str()]);
                        Verdict::Sent
                    }
                    Err(e) => {
                        error!("{e}");
                        Verdict::Sent
                    }
                }
            }
            SendOutcome::Sent { rejected } => {
                let remaining: Vec<String> = rejected.iter().map(|(a, _)| a.clone()).collect();
                let code = rejected.first().map(|(_, r)| r.code);
                let id = locked.id().clone();
                // E-MailRelay's words for a message that went to some of
                // its recipients: the rest stay behind as `.bad`.
                warning!("smtp client protocol: one or more recipients rejected");
                info!("failing envelope [{id}.envelope.busy] -> [{id}.envelope.bad]");
                if let Err(e) =
                    locked.fail_recipients(remaining, "one or more recipients rejected", code)
                {
                    error!("{e}");
                }
                Verdict::Sent
            }
            SendOutcome::Failed(reply) => self.fail(locked, reply),
            SendOutcome::Unsendable(reason) => {
                // E-MailRelay compatibility: this warning, and no reason code.
                warning!("smtp client protocol: failed: {reason}");
                self.fail_as(locked, reason, None, Reply::new(554, reason))
            }
            SendOutcome::Retry(reply) => {
                warning!("forwarding [{}] deferred: {reply}", locked.id());
                Verdict::Deferred(Some(reply))
            }
        }
    }

    fn fail(&self, locked: Locked, reply: Reply) -> Verdict {
        let (reason, code) = (reply.text(), Some(reply.code));
        self.fail_as(locked, &reason, code, reply)
    }

    /// Fails the message to `.bad` with `reason` and `code`; a proxy's
    /// client is told `heard`.
    fn fail_as(&self, locked: Locked, reason: &str, code: Option<u16>, heard: Reply) -> Verdict {
        let id = locked.id().clone();
        // E-MailRelay compatibility: this exact line shape.
        info!("failing envelope [{id}.envelope.busy] -> [{id}.envelope.bad]");
        if let Err(e) = locked.fail(reason, code) {
            error!("{e}");
        }
        self.connections
            .emit(&["client", "sent", id.as_str(), &format!("{heard}")]);
        Verdict::Failed(heard)
    }
}

/// True for RFC 3461 xtext: printable ASCII but `+` and `=`, with `+XX`
/// hex escapes.
fn is_xtext(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
                let escaped = bytes.get(i + 1).copied().is_some_and(hex)
                    && bytes.get(i + 2).copied().is_some_and(hex);
                if !escaped {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            33..=126 => i += 1,
            _ => return false,
        }
    }
    !bytes.is_empty()
}

/// What 2.6.1 adds to `forwarding [<id>]`: the routing fields that are set.
fn message_info(envelope: &crate::store::Envelope) -> String {
    let mut info = String::new();
    for (name, value) in [
        ("selector", &envelope.client_account_selector),
        ("forward-to", &envelope.forward_to),
        ("forward-to-address", &envelope.forward_to_address),
    ] {
        if !value.is_empty() {
            info.push_str(&format!(" {name}=[{value}]"));
        }
    }
    info
}
