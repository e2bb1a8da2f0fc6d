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
//!
//! The module's parts: `pass` (a pass over the spool, its workers, and
//! the pass's own state), `message` (one message through a link),
//! `outcome` (what a reply does to the spool files), `route` (what each
//! upstream has shown from pass to pass: paused, proven, throttled, its
//! rate), `flow` (how much work the spool holds), `backoff` and `rate`
//! (timing), `transport` (the wire, behind a trait: SMTP, or `graph` for
//! an account file that says `transport = graph`), `client` (the SMTP
//! client under the SMTP transport).

mod backoff;
mod batch;
pub(crate) mod client;
pub mod doorbell;
mod flow;
pub mod graph;
mod message;
mod outcome;
mod pass;
mod rate;
mod route;
pub use route::RouteWait;
pub mod transport;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emailrelay_proto::sasl::ClientSecret;
use emailrelay_proto::smtp::{
    xtext_encode, OutgoingMessage, Reply, SendOutcome, Strictness, TlsPolicy,
};
use tokio::sync::watch;

use self::backoff::Backoff;
use self::client::ConnectionError;
use self::doorbell::Doorbell;
use self::pass::Pass;
use self::transport::{Link, SmtpTransport, Transport};
use crate::auth::{AccountError, ClientAuth};
use crate::filter::{Filter, FilterJob, FilterResult, FilterType};
use crate::monitor::{Connections, Stats};
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
pub struct ProxyLink(Option<(Key, Box<dyn Link>)>);

impl ProxyLink {
    /// Ends the upstream connection (QUIT), if there is one.
    pub async fn close(&mut self) {
        if let Some((_, link)) = self.0.take() {
            link.quit().await;
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

/// Why a forwarding pass runs; shown as E-MailRelay's log line words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `--forward` at startup.
    Startup,
    /// `--forward-on-disconnect`: a client that stored mail has gone.
    ClientDisconnect,
    /// The admin `forward` (or `flush`) command, or the HTTP endpoint's.
    Admin,
    /// A server filter's special exit asked for a rescan.
    Rescan,
    /// `--poll`'s timer.
    Poll,
}

impl Reason {
    /// The words of the log line and of the `notify` event.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::ClientDisconnect => "client disconnect",
            Reason::Admin => "admin",
            Reason::Rescan => "rescan",
            Reason::Poll => "poll",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scheduler. Cheap to share: `Arc<Forwarder>`.
///
/// Its state is in parts, each with its own rules: what each route has
/// shown from one pass to the next ([`route::Routes`]), when each deferred
/// message may go again ([`Backoff`]), how much work the spool holds
/// ([`flow::Scan`]), and how messages leave ([`transport::Transports`]).
/// A pass's own state is a value of its own ([`pass::Pass`]).
pub struct Forwarder {
    settings: ForwardSettings,
    spool: Arc<Spool>,
    /// `--client-filter`, run on each message before it is sent.
    client_filter: Option<Arc<Filter>>,
    /// The instance's counters: per route outcomes here, `received` by
    /// the SMTP server.
    pub stats: Arc<Stats>,
    /// The process's connection registry: outgoing connections are counted
    /// there, and `notify` events go out through it.
    connections: Arc<Connections>,
    /// Why the next passes were asked for (`admin`, `rescan`, ...), in
    /// turn: each gets a pass of its own, logged with it, as in 2.6.1.
    doorbell: Arc<Doorbell>,
    /// Held by the pass under way: one at a time.
    pass_lock: tokio::sync::Mutex<()>,
    /// When each deferred message may be tried again.
    backoff: Mutex<Backoff>,
    routes: route::Routes,
    scan: flow::Scan,
    transports: transport::Transports,
}

impl Forwarder {
    /// A scheduler over `spool`.
    pub fn new(
        settings: ForwardSettings,
        spool: Arc<Spool>,
        client_filter: Option<Arc<Filter>>,
        connections: Arc<Connections>,
    ) -> Arc<Forwarder> {
        let transport = Arc::new(SmtpTransport::new(
            settings.clone(),
            Arc::clone(&connections),
        ));
        Forwarder::with_transport(settings, spool, client_filter, connections, transport)
    }

    /// A scheduler over `spool` that sends through `transport`.
    pub fn with_transport(
        settings: ForwardSettings,
        spool: Arc<Spool>,
        client_filter: Option<Arc<Filter>>,
        connections: Arc<Connections>,
        transport: Arc<dyn Transport>,
    ) -> Arc<Forwarder> {
        let doorbell = Arc::new(Doorbell::default());
        Arc::new(Forwarder {
            settings,
            spool,
            client_filter,
            stats: Arc::new(Stats::default()),
            connections,
            doorbell: Arc::clone(&doorbell),
            pass_lock: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(Backoff::default()),
            routes: route::Routes::default(),
            scan: flow::Scan::default(),
            transports: transport::Transports::new(transport, doorbell),
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ForwardSettings {
        &self.settings
    }

    /// True if there is somewhere to forward to.
    pub fn enabled(&self) -> bool {
        self.settings.forward_to.is_some()
    }

    /// Asks for a forwarding pass soon, for this reason (`startup`,
    /// `client disconnect`, `admin`, `rescan`): the pass is logged with it.
    pub fn trigger(&self, reason: Reason) {
        if self.enabled() {
            self.doorbell.ring(reason);
        }
    }

    /// Where to ask for passes from outside ([`Forwarder::trigger`] checks
    /// that there is somewhere to forward to first).
    pub fn doorbell(&self) -> &Arc<Doorbell> {
        &self.doorbell
    }

    /// True if a client disconnect should trigger a pass.
    pub fn on_disconnect(&self) -> bool {
        self.settings.on_disconnect
    }

    /// The background loop: passes on trigger and on the poll timer, until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if !self.enabled() {
            return;
        }
        loop {
            if *shutdown.borrow() {
                return;
            }
            let poll = self
                .settings
                .poll
                .unwrap_or(Duration::from_secs(365 * 24 * 3600));
            // Requests in turn; a wake-up whose request was taken with an
            // earlier one finds none and waits again.
            let reason = match self.doorbell.next() {
                Some(reason) => reason,
                None => tokio::select! {
                    _ = self.doorbell.rung() => continue,
                    _ = tokio::time::sleep(poll) => Reason::Poll,
                    _ = shutdown.changed() => return,
                },
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
        // A poll that can find nothing new costs no walk of the spool.
        if reason == Reason::Poll && !self.poll_due() {
            return PassSummary::default();
        }
        // E-MailRelay compatibility: a poll is not worth a line each time.
        let log = reason != Reason::Poll;
        if log {
            info!("forwarding: [{reason}]");
        }
        if !self.spool.has_ready().unwrap_or(true) {
            if log {
                info!("forwarding: no messages to send");
            }
            self.connections
                .emit(&["client", "forward", "end", "no messages"]);
            return PassSummary::default();
        }
        self.connections
            .emit(&["client", "forward", "start", reason.as_str()]);
        // The admin `forward` tries everything now; polls, disconnects and
        // rescans leave deferred messages to their retry times.
        let summary = self.pass_locked(reason == Reason::Admin).await;
        // E-MailRelay's last word on a pass that failed, unless the process
        // is about to say it on its way out (`--as-client`).
        if let (Some(error), false) = (&summary.error, self.settings.exit_when_done) {
            error!("forwarding: {error}");
        }
        let error = summary.error.clone().unwrap_or_default();
        self.connections.emit(&["client", "forward", "end", &error]);
        summary
    }

    /// Forwards one just-stored message now (`--immediate`, proxy mode),
    /// over the client session's own upstream connection, which `link`
    /// keeps open for the session's next message (E-MailRelay connects once
    /// per session). A message the upstream refuses, for now or for good,
    /// is kept as `.bad` with the reason, as E-MailRelay keeps it: the
    /// client hears the refusal and keeps its own copy.
    pub async fn forward_now(self: &Arc<Self>, id: &MessageId, link: &mut ProxyLink) -> Verdict {
        match self.spool.lock(id) {
            Ok(Some(locked)) => {
                self.forward_message(&Pass::immediate(), locked, &mut link.0)
                    .await
            }
            Ok(None) => Verdict::Deferred(None),
            Err(e) => {
                error!("{e}");
                Verdict::Deferred(None)
            }
        }
    }
}

/// What the operator interfaces ask of the scheduler.
impl Forwarder {
    /// Deferrals of `id` since the route last took a message, and the
    /// upstream's last reply to it.
    pub fn attempts(&self, id: &MessageId) -> (u32, Option<String>) {
        self.backoff.lock().map_or((0, None), |b| {
            (b.attempts(id), b.reason(id).map(str::to_string))
        })
    }

    /// Upstreams paused because they refused our authentication.
    pub fn paused_routes(&self) -> Vec<String> {
        self.routes.paused_routes()
    }

    /// Routes waiting after a throttling answer now.
    pub fn throttled_routes(&self) -> Vec<String> {
        self.routes.throttled_routes()
    }

    /// Every route paused or slowed down now, for the status page: how
    /// long each still waits, with the answer that made it wait.
    pub fn route_waits(&self) -> Vec<RouteWait> {
        self.routes.waits()
    }

    /// Drops `id`'s wait, so the next pass tries it, and asks for a pass.
    pub fn retry(&self, id: &MessageId) {
        if let Ok(mut backoff) = self.backoff.lock() {
            backoff.forget(id);
        }
        self.trigger(Reason::Admin);
    }
}

#[cfg(test)]
mod tests;
