//! One instance's control handle: every action and every reading the
//! operator interfaces (the admin port, the HTTP endpoint) offer, in one
//! place, so that neither reaches into the servers' or the forwarder's
//! internals and both always agree.
//!
//! Must not format anything for a wire: answers are values; the admin
//! interface words them as E-MailRelay does, the HTTP endpoint as JSON or
//! Prometheus text.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

mod browse;
pub use browse::{PageQuery, MAX_PAGE};

use crate::forward::{Forwarder, Reason, RouteWait};
use crate::instance::Instance;
use crate::monitor::{Connections, Event, Stats};
use crate::store::{MessageId, QueueEntry, QueueError, QueueState, Spool, StoreError};

/// What went wrong with an action.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Forwarding is not configured; E-MailRelay's words.
    #[error("no remote server configured: use --forward-to")]
    NoRemote,
    /// A flush found nothing to send; E-MailRelay's words.
    #[error("no messages to send")]
    NothingToSend,
    /// A forwarding pass ended with this error.
    #[error("{0}")]
    Forwarding(String),
    /// A message id that cannot be one.
    #[error("invalid message id: {0}")]
    BadId(String),
    /// The action on one message failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The spool failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The spool's state at a glance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueSummary {
    /// Messages waiting (`.envelope`) or being sent (`.busy`).
    pub queued: usize,
    /// Failed messages (`.bad`).
    pub failed: usize,
    /// Age of the oldest waiting or busy message.
    pub oldest: Option<Duration>,
}

/// One queued or failed message, with what the forwarder knows of it.
#[derive(Clone, Debug)]
pub struct QueueItem {
    pub entry: QueueEntry,
    /// Deferrals since its route last took a message.
    pub attempts: u32,
    /// The upstream's last reply (queued) or the failure reason (failed).
    pub reason: Option<String>,
}

/// The handle. Cheap to share: `Arc<Control>`.
pub struct Control {
    instance: Arc<Instance>,
    connections: Arc<Connections>,
    terminate: watch::Sender<bool>,
    pid: u32,
}

impl Control {
    pub fn new(
        instance: Arc<Instance>,
        connections: Arc<Connections>,
        terminate: watch::Sender<bool>,
        pid: u32,
    ) -> Arc<Control> {
        Arc::new(Control {
            instance,
            connections,
            terminate,
            pid,
        })
    }

    fn spool(&self) -> &Arc<Spool> {
        self.instance.spool()
    }

    fn forwarder(&self) -> &Arc<Forwarder> {
        self.instance.forwarder()
    }

    /// The instance's counters.
    pub fn stats(&self) -> &Stats {
        self.instance.stats()
    }

    /// The process id (the pid file's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks for a forwarding pass that tries every message now.
    pub fn forward(&self) -> Result<(), ControlError> {
        if !self.forwarder().enabled() {
            return Err(ControlError::NoRemote);
        }
        self.forwarder().trigger(Reason::Admin);
        Ok(())
    }

    /// Runs a forwarding pass now and waits for its end.
    pub async fn flush(&self) -> Result<(), ControlError> {
        if !self.forwarder().enabled() {
            return Err(ControlError::NoRemote);
        }
        if !self.spool().has_ready()? {
            return Err(ControlError::NothingToSend);
        }
        match self.forwarder().pass().await.error {
            None => Ok(()),
            Some(error) => Err(ControlError::Forwarding(error)),
        }
    }

    /// Ids of waiting and busy messages, oldest first within each.
    pub fn list(&self) -> Result<Vec<MessageId>, ControlError> {
        let mut ids = self.spool().ready()?;
        ids.extend(self.spool().busy()?);
        Ok(ids)
    }

    /// Ids of failed messages.
    pub fn failures(&self) -> Result<Vec<MessageId>, ControlError> {
        Ok(self.spool().failed()?)
    }

    /// Puts every failed message back in the queue.
    pub fn unfail_all(&self) -> Result<usize, ControlError> {
        Ok(self.spool().unfail_all()?)
    }

    /// Retries one message now: a failed one goes back in the queue, a
    /// waiting one loses its backoff wait; then a pass is asked for.
    pub fn retry(&self, id: &str) -> Result<(), ControlError> {
        let id = parse_id(id)?;
        if !self.forwarder().enabled() {
            return Err(ControlError::NoRemote);
        }
        self.spool().unfail(&id)?;
        self.forwarder().retry(&id);
        Ok(())
    }

    /// Deletes one waiting or failed message.
    pub fn delete(&self, id: &str) -> Result<(), ControlError> {
        let id = parse_id(id)?;
        self.spool().remove(&id)?;
        crate::info!("deleted by the operator: [{id}]");
        Ok(())
    }

    /// Whether new SMTP sessions are served.
    pub fn set_smtp_enabled(&self, enabled: bool) {
        self.instance.set_smtp_enabled(enabled);
    }

    /// False while the admin `smtp disable` holds new SMTP sessions off.
    pub fn smtp_enabled(&self) -> bool {
        self.instance.smtp_enabled()
    }

    /// True from a stop with `--drain-delay` until the listeners close.
    pub fn draining(&self) -> bool {
        self.instance.draining()
    }

    /// Admin `dnsbl start|stop`.
    pub fn dnsbl(&self, action: emailrelay_proto::admin::DnsblAction) {
        self.instance.dnsbl_control(action);
    }

    /// Asks the whole process to shut down cleanly.
    pub fn terminate(&self) {
        let _ = self.terminate.send(true);
    }

    /// The admin `status` report's lines.
    pub fn status_report(&self) -> Vec<String> {
        self.connections.report()
    }

    /// Connections open now: (incoming, outgoing), process-wide.
    pub fn open_connections(&self) -> (usize, usize) {
        self.connections.open()
    }

    /// A receiver of the admin `notify` events.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.connections.subscribe()
    }

    /// Waiting messages the latest forwarding pass saw, and the delay an
    /// accepted message's 250 has now because of them.
    pub fn backlog(&self) -> (usize, Duration) {
        let forwarder = self.forwarder();
        (forwarder.backlog(), forwarder.flow_delay())
    }

    /// The `--forward-to` address, if forwarding is configured: the route
    /// most messages take, known before any has.
    pub fn forward_to(&self) -> Option<String> {
        self.forwarder().settings().forward_to.clone()
    }

    /// Upstreams waiting after a throttling answer.
    pub fn throttled_routes(&self) -> Vec<String> {
        self.forwarder().throttled_routes()
    }

    /// Routes paused or slowed down now, with their waits and answers.
    pub fn route_waits(&self) -> Vec<RouteWait> {
        self.forwarder().route_waits()
    }

    /// Upstreams paused because they refused our authentication.
    pub fn paused_routes(&self) -> Vec<String> {
        self.forwarder().paused_routes()
    }

    /// OAuth accounts and the Unix time their access token expires, if
    /// one is held.
    pub fn token_expiry(&self) -> Vec<(String, Option<u64>)> {
        let Some(auth) = &self.forwarder().settings().auth else {
            return Vec::new();
        };
        auth.oauth_accounts()
            .map(|a| (a.user().to_string(), a.expires_at_unix()))
            .collect()
    }

    /// OAuth accounts whose certificate or client secret has a known
    /// expiry: (account, `certificate` or `client secret`, Unix time).
    pub fn credential_expiry(&self) -> Vec<(String, String, i64)> {
        let Some(auth) = &self.forwarder().settings().auth else {
            return Vec::new();
        };
        auth.oauth_accounts()
            .filter_map(|a| {
                let (what, when) = a.credential_expiry()?;
                Some((a.user().to_string(), what.to_string(), when))
            })
            .collect()
    }

    /// Message trace's final statuses per OAuth account: (account,
    /// status, recipients).
    pub fn delivery_traces(&self) -> Vec<(String, String, u64)> {
        let Some(auth) = &self.forwarder().settings().auth else {
            return Vec::new();
        };
        auth.oauth_accounts()
            .flat_map(|a| {
                let user = a.user().to_string();
                a.traces()
                    .into_iter()
                    .map(move |(status, n)| (user.clone(), status, n))
            })
            .collect()
    }

    /// Counts and the oldest age, from the spool's file names alone,
    /// read with flat memory whatever the spool holds.
    pub fn queue_summary(&self) -> Result<QueueSummary, ControlError> {
        let now = std::time::SystemTime::now();
        let mut summary = QueueSummary::default();
        for state in [QueueState::Queued, QueueState::Busy] {
            for id in self.spool().walk(state)? {
                summary.queued += 1;
                let age = id.created().and_then(|t| now.duration_since(t).ok());
                summary.oldest = summary.oldest.max(age);
            }
        }
        summary.failed = self.spool().walk(QueueState::Failed)?.count();
        Ok(summary)
    }

    /// Up to `limit` messages of each state with their envelopes, oldest
    /// first; a message that moves on while it is read is left out.
    pub fn queue(&self, limit: usize) -> Result<Vec<QueueItem>, ControlError> {
        let mut items = Vec::new();
        for state in [QueueState::Queued, QueueState::Busy, QueueState::Failed] {
            for id in self.spool().oldest(state, limit)? {
                let Ok(entry) = self.spool().entry(&id, state) else {
                    continue;
                };
                let (attempts, reason) = match state {
                    QueueState::Failed => (0, entry.envelope.reason.clone()),
                    _ => self.forwarder().attempts(&id),
                };
                items.push(QueueItem {
                    entry,
                    attempts,
                    reason,
                });
            }
        }
        Ok(items)
    }
}

/// A message id as the operator typed it: the spool's own shape only, so
/// that no path can be made of it.
fn parse_id(text: &str) -> Result<MessageId, ControlError> {
    // Nor Windows' separator.
    MessageId::parse(text)
        .filter(|_| !text.contains('\\'))
        .ok_or_else(|| ControlError::BadId(text.to_string()))
}
