//! The accept loop of one listening socket: TCP or Unix, until shutdown.
//! Each accepted connection runs in a task of its own, counted in the
//! process's connection registry (admin `status`) and with the client's
//! address (and the instance name) in every log line it writes.
//!
//! With `--proxy-protocol`, a connection from a listed balancer has its
//! header read first (in its own task, within a deadline), and the client
//! address it carries is the peer from then on: the registry, the log
//! lines and the protocol driver only ever see that one. Only the cap on
//! open sessions is decided before the header (by the balancer's
//! connection): it is a cap on descriptors, not on addresses.
//!
//! Must not: decide anything about the peer (that is admission's job, in
//! the protocol driver's task), or stop on a failed accept (EMFILE passes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::proxy::{self, ProxyProtocol};
use super::{SessionLimit, SessionPermit};
use crate::monitor::Connections;
use crate::net::{self, BoundListener};
use crate::warning;

/// What every accepted connection is given: the registry it is counted
/// in, and the instance name its log lines carry.
#[derive(Clone)]
pub struct Accept {
    pub connections: Arc<Connections>,
    pub unit: Option<Arc<str>>,
    /// Whether `--log-address` shows the client's address on the
    /// session's lines. E-MailRelay compatibility: 2.6.1 shows it on SMTP
    /// and POP lines, never on admin lines.
    pub log_peer: bool,
    /// The process's cap on client sessions and what a client over it is
    /// told before the close (`421 ...` or `-ERR ...`); `None` for the
    /// admin port, which is never refused.
    pub limit: Option<(Arc<SessionLimit>, Arc<[u8]>)>,
    /// Whether connections are counted in the registry (admin `status`,
    /// open connections). Not the HTTP endpoint's: a scraper would count
    /// itself in the numbers it came for.
    pub register: bool,
    /// `--proxy-protocol`: the balancers whose PROXY headers say who the
    /// client is (SMTP and POP listeners only).
    pub proxy: Option<Arc<ProxyProtocol>>,
}

impl Accept {
    /// A place for a session from `peer_text`, or `None` once the client
    /// has been told to come back later.
    fn admit(&self, peer_text: &str, tell: impl FnOnce(&[u8])) -> Option<Option<SessionPermit>> {
        let Some((limit, busy)) = &self.limit else {
            return Some(None);
        };
        match limit.try_admit(peer_text) {
            Some(permit) => Some(Some(permit)),
            None => {
                tell(busy);
                None
            }
        }
    }
}

/// Accepts connections until `stop` changes, running the future that
/// `on_accept` makes for each in a task of its own, registered for the
/// admin `status` and with the client's address in its log lines.
pub fn spawn_acceptor<F, Fut>(
    listener: BoundListener,
    mut stop: watch::Receiver<bool>,
    accept: Accept,
    on_accept: F,
) -> anyhow::Result<()>
where
    F: Fn(Box<dyn net::Stream>, Option<std::net::SocketAddr>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = accept.clone();
    let start = Arc::new(
        move |stream: Box<dyn net::Stream>,
              local: String,
              peer: Option<SocketAddr>,
              permit: Option<SessionPermit>,
              quiet: bool| {
            let peer_text = peer
                .as_ref()
                .map_or_else(|| "unix".into(), net::display_addr);
            let registered = accept
                .register
                .then(|| accept.connections.incoming(local, peer_text));
            let context = crate::log::Context {
                unit: accept.unit.clone(),
                peer: peer.filter(|_| accept.log_peer),
                msgid: None,
                quiet,
            };
            // Boxed: an `async` block that awaits a future it captured holds
            // it twice (rust-lang/rust#62958), which made an idle connection's
            // task 14 KB.
            let session = Box::pin(on_accept(stream, peer));
            tokio::spawn(crate::log::scope(context, async move {
                session.await;
                drop(registered);
                drop(permit);
            }));
        },
    );
    match listener {
        BoundListener::Tcp(std) => {
            let listener = tokio::net::TcpListener::from_std(std)?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, peer)) => {
                                // Over the cap: told with one non-blocking
                                // write (it fits any socket buffer), closed.
                                let Some(permit) = limit.admit(&net::display_addr(&peer), |busy| {
                                    let _ = stream.try_write(busy);
                                }) else {
                                    continue;
                                };
                                let _ = stream.set_nodelay(true);
                                let local = stream
                                    .local_addr()
                                    .map(|a| net::display_addr(&a))
                                    .unwrap_or_default();
                                match &limit.proxy {
                                    None => start(Box::new(stream), local, Some(peer), permit, false),
                                    Some(balancers) if balancers.lists(peer.ip()) => {
                                        let context = crate::log::Context {
                                            unit: limit.unit.clone(),
                                            ..Default::default()
                                        };
                                        let header = behind_balancer(stream, peer, local, permit, Arc::clone(balancers), Arc::clone(&start));
                                        tokio::spawn(crate::log::scope(context, header));
                                    }
                                    Some(_) => {
                                        let stream = proxy::Unlisted::new(stream, peer);
                                        start(Box::new(stream), local, Some(peer), permit, false);
                                    }
                                }
                            }
                            Err(e) => {
                                warning!("accept failed: {e}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        BoundListener::Unix(std) => {
            let listener = crate::platform::listen::into_async(std)?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        accepted = crate::platform::listen::accept_local(&listener) => if let Ok((stream, local)) = accepted {
                            let Some(permit) = limit.admit("unix", |busy| {
                                let _ = stream.try_write(busy);
                            }) else {
                                continue;
                            };
                            start(Box::new(stream), local, None, permit, false);
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
        }
    }
    Ok(())
}

/// A connection from a listed balancer: its PROXY protocol header first,
/// within the balancer's time, then the session, for the client the header
/// names or, for a health check, the balancer itself; a connection without
/// a valid header is refused with a warning naming both.
async fn behind_balancer<S>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: String,
    permit: Option<SessionPermit>,
    balancers: Arc<ProxyProtocol>,
    start: Arc<S>,
) where
    S: Fn(Box<dyn net::Stream>, String, Option<SocketAddr>, Option<SessionPermit>, bool),
{
    let mut stream: Box<dyn net::Stream> = Box::new(stream);
    match proxy::read_header(&mut stream, balancers.timeout).await {
        // HAProxy's v1 health checks name the check's own connection: no
        // client can have the balancer's socket address.
        Ok(Some(client)) if client != peer => {
            crate::verbose!(
                "proxy protocol: {} relays {}",
                net::display_addr(&peer),
                net::display_addr(&client)
            );
            start(stream, local, Some(client), permit, false);
        }
        // The balancer's own connection (v2 LOCAL, v1 UNKNOWN or its own
        // address): a health check, one verbose line.
        Ok(_) => {
            crate::verbose!(
                "proxy protocol: health check from {}",
                net::display_addr(&peer)
            );
            start(stream, local, Some(peer), permit, true);
        }
        Err(problem) => proxy::log_refusal(peer, true, &problem),
    }
}
