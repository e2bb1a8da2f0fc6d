//! The POP3 server (`--pop`): its settings, built by `config` or by hand
//! in tests, and what its connections share. The connection driver is in
//! [`server`]; the protocol is `emailrelay_proto::pop`, the maildrop
//! `store::Maildrop`, and listening, admission, deadlines and TLS come
//! from `serve`, as for SMTP.

pub mod server;

#[cfg(test)]
mod fuzz;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::auth::ServerAuth;
use crate::monitor::Stats;
use crate::net::Listen;
use crate::tls::ServerTls;

pub use server::serve;

/// POP server settings.
#[derive(Clone, Debug)]
pub struct PopSettings {
    /// `--pop-port` on the `--interface` addresses (and `pop=` ones).
    pub listen: Vec<Listen>,
    /// `--remote-clients`; otherwise non-local peers are dropped.
    pub remote_clients: bool,
    /// `--domain`: the host part of APOP and CRAM-MD5 challenges.
    pub domain: String,
    /// `--idle-timeout`: for a whole command, not one read.
    pub idle_timeout: Duration,
    /// `--pop-auth`: the accounts (a secrets file's `server` lines, or PAM).
    pub auth: Arc<ServerAuth>,
    /// `--pop-by-name`: each user's own sub-directory of the spool.
    pub by_name: bool,
    /// `--pop-no-delete`: DELE succeeds but QUIT deletes nothing.
    pub no_delete: bool,
    /// `--server-tls` (or `--server-tls-connection`): STLS is offered.
    pub tls: Option<ServerTls>,
    /// `--server-tls-required`: no login before STLS.
    pub tls_required: bool,
    /// `--verbose` with logging: the protocol trace.
    pub trace: bool,
    /// Where the accounts came from (`--pop-auth` as given), for the log.
    pub secrets: String,
}

/// What every POP connection shares.
pub struct PopShared {
    pub settings: PopSettings,
    pub spool_dir: PathBuf,
    /// The instance's counters: refused logins count as
    /// `auth_failures_in`, as the SMTP server's refused AUTH do.
    pub stats: Arc<Stats>,
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub shutdown: watch::Receiver<bool>,
}

impl PopShared {
    pub fn new(
        settings: PopSettings,
        spool_dir: PathBuf,
        stats: Arc<Stats>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<PopShared> {
        Arc::new(PopShared {
            settings,
            spool_dir,
            stats,
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            shutdown,
        })
    }

    /// Waits until every session has ended, or `limit` passes.
    pub async fn wait_for_sessions(&self, limit: Duration) -> bool {
        crate::serve::wait_for_sessions(&self.started, &self.finished, limit).await
    }
}
