//! What the SMTP and POP servers share: the accept loop, admission of a
//! new connection (`--remote-clients`), reads and writes bounded by
//! deadlines, the TLS handshake (implicit or upgraded), the PROXY protocol
//! header of a load balancer's connections, the clean close,
//! session counting for shutdown, the cap on open sessions, and the random
//! part of authentication challenges.
//!
//! Must not: know either protocol. Each driver says its own words (SMTP's
//! 554, POP's silence) around these.

mod accept;
mod deadline;
mod limit;
pub mod proxy;
#[cfg(test)]
mod proxy_fuzz;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

pub use accept::{spawn_acceptor, Accept};
pub use deadline::{ContentDeadline, Expiry, CONTENT_LIMIT, DEFAULT_MIN_DATA_RATE};
pub use limit::{SessionLimit, SessionPermit};
pub use proxy::ProxyProtocol;
pub use tls::handshake;

use crate::net::Stream;

/// What one bounded read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes.
    Data(usize),
    /// The peer closed the connection, or it failed.
    Closed,
    /// The deadline passed first.
    Timeout,
    /// The server is shutting down.
    Shutdown,
}

/// Reads what the peer sends next, unless `deadline` or a shutdown comes
/// first. The deadline is the driver's: a whole command's, not one read's,
/// so a peer trickling one byte at a time cannot hold a session.
pub async fn read_by(
    stream: &mut Box<dyn Stream>,
    buf: &mut [u8],
    deadline: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Read {
    if *shutdown.borrow() {
        return Read::Shutdown;
    }
    tokio::select! {
        r = tokio::time::timeout_at(deadline, stream.read(buf)) => match r {
            Err(_) => Read::Timeout,
            Ok(Ok(0)) | Ok(Err(_)) => Read::Closed,
            Ok(Ok(n)) => Read::Data(n),
        },
        _ = shutdown.changed() => Read::Shutdown,
    }
}

/// Writes all of `bytes` within `limit`: a peer that stops reading must
/// not hold a session. False if it could not.
pub async fn write_within(stream: &mut Box<dyn Stream>, bytes: &[u8], limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// True if the peer is not local and `--remote-clients` was not given.
pub fn refused_as_remote(peer: Option<SocketAddr>, remote_clients: bool) -> bool {
    peer.is_some_and(|addr| !remote_clients && !crate::net::is_local_address(addr.ip()))
}

/// Waits until `finished` catches up with `started`, or `limit` passes;
/// true if every session ended.
pub async fn wait_for_sessions(started: &AtomicU64, finished: &AtomicU64, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        let active = started.load(Ordering::Relaxed) - finished.load(Ordering::Relaxed);
        if active == 0 {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fresh random text for a CRAM-MD5 or APOP challenge: 128 bits from the
/// operating system's generator, and the time, as RFC 2195's
/// `<random.timestamp@host>` shape suggests.
pub fn nonce() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // getrandom(2) does not fail once the kernel is seeded; should it, a
    // per-process counter still keeps every challenge distinct.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = match ring::rand::SystemRandom::new().fill(&mut bytes) {
        // Decimal, as E-MailRelay's challenges are `<digits.digits@host>`.
        Ok(()) => u128::from_be_bytes(bytes).to_string(),
        Err(_) => format!(
            "{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{random}.{now}")
}

/// Ends the connection cleanly: a TLS close_notify (so that the peer can
/// tell our close from a truncation attack), then the TCP FIN. Bounded,
/// because a peer that stopped reading must not hold the session.
pub async fn close(stream: &mut Box<dyn Stream>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
}
