//! One instance's running state, owned in one place: its spool, its
//! counters, its forwarder, and the switches the operator turns (`smtp
//! disable`, `dnsbl stop`, draining at a stop).
//!
//! `control` holds the [`Instance`] and offers every operator action
//! through it. The SMTP server gets the same value, but uses only the
//! narrow hand-off below (a new message's file, the free space, "a message
//! was stored", "the client left", the proxy mode's send): it never drives
//! the forwarder's scheduling itself. Before this type, the control handle
//! reached the spool and counters through the SMTP server's state, and an
//! instance without SMTP listeners needed made-up server settings for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use emailrelay_proto::admin::DnsblAction;

use crate::forward::{Forwarder, ProxyLink, Reason, Verdict};
use crate::monitor::Stats;
use crate::store::{MessageId, NewMessage, Spool, StoreError};

/// The instance. Shared as `Arc<Instance>`.
pub(crate) struct Instance {
    spool: Arc<Spool>,
    forwarder: Arc<Forwarder>,
    /// Cleared by the admin `smtp disable` command.
    smtp_enabled: AtomicBool,
    /// Set at a stop with `--drain-delay`: the listeners still accept, but
    /// `/healthz` and a balancer's SMTP health check fail, so that the
    /// balancer sends new clients elsewhere before they close.
    draining: AtomicBool,
    /// Admin `dnsbl stop`: no DNSBL checks until this Unix time (`u64::MAX`:
    /// until `dnsbl start`).
    dnsbl_off_until: AtomicU64,
}

impl Instance {
    pub(crate) fn new(spool: Arc<Spool>, forwarder: Arc<Forwarder>) -> Arc<Instance> {
        Arc::new(Instance {
            spool,
            forwarder,
            smtp_enabled: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            dnsbl_off_until: AtomicU64::new(0),
        })
    }

    /// The spool, for the operator's actions and the shutdown.
    pub(crate) fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// The forwarder, for the operator's actions.
    pub(crate) fn forwarder(&self) -> &Arc<Forwarder> {
        &self.forwarder
    }

    /// The instance's counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.forwarder.stats
    }

    /// Admin `smtp enable|disable`.
    pub(crate) fn set_smtp_enabled(&self, enabled: bool) {
        self.smtp_enabled.store(enabled, Ordering::Relaxed);
    }

    /// False while the admin `smtp disable` holds new SMTP sessions off.
    pub(crate) fn smtp_enabled(&self) -> bool {
        self.smtp_enabled.load(Ordering::Relaxed)
    }

    /// From a stop with `--drain-delay` until the listeners close.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True from a stop with `--drain-delay` until the listeners close.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Admin `dnsbl start` and `dnsbl stop [<seconds>]`.
    pub(crate) fn dnsbl_control(&self, action: DnsblAction) {
        let until = match action {
            DnsblAction::Start | DnsblAction::Usage => 0,
            DnsblAction::Stop(None) => u64::MAX,
            DnsblAction::Stop(Some(seconds)) => unix_now().saturating_add(u64::from(seconds)),
        };
        self.dnsbl_off_until.store(until, Ordering::Relaxed);
    }

    /// Whether DNSBL checks are made now (not stopped by the admin).
    pub(crate) fn dnsbl_active(&self) -> bool {
        self.dnsbl_off_until.load(Ordering::Relaxed) <= unix_now()
    }
}

/// The hand-off to the servers.
impl Instance {
    /// Starts a new message's content file.
    pub(crate) fn new_message(&self) -> Result<NewMessage, StoreError> {
        self.spool.new_message()
    }

    /// Octets a new message may take now (see [`Spool::free_space`]).
    pub(crate) fn free_space(&self) -> Option<u64> {
        self.spool.free_space()
    }

    /// A message was committed: counted, and the sender held back a little
    /// while forwarding is behind (the message is safe already), so that
    /// the spool stops growing.
    pub(crate) async fn stored(&self) {
        Stats::add(&self.stats().received);
        let delay = self.forwarder.flow_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// A client that stored `stored` messages has gone: with
    /// `--forward-on-disconnect`, a pass is asked for.
    pub(crate) fn client_left(&self, stored: usize) {
        if stored > 0 && self.forwarder.on_disconnect() {
            self.forwarder.trigger(Reason::ClientDisconnect);
        }
    }

    /// Asks for a forwarding pass (a server filter's special exit).
    pub(crate) fn rescan(&self) {
        self.forwarder.trigger(Reason::Rescan);
    }

    /// `--immediate`: sends one message now down the session's own link.
    pub(crate) async fn forward_now(&self, id: &MessageId, link: &mut ProxyLink) -> Verdict {
        self.forwarder.forward_now(id, link).await
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
