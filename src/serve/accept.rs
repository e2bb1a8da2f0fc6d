//! The accept loop of one listening socket: TCP or Unix, until shutdown.
//!
//! Must not: decide anything about the peer (that is admission's job, in
//! the protocol driver's task), or stop on a failed accept (EMFILE passes).

use tokio::sync::watch;

use crate::net::{self, BoundListener};
use crate::warning;

/// Accepts connections on `listener` and hands each to `on_accept`, until
/// `stop` changes.
pub fn spawn_acceptor<F>(
    listener: BoundListener,
    mut stop: watch::Receiver<bool>,
    on_accept: F,
) -> anyhow::Result<()>
where
    F: Fn(Box<dyn net::Stream>, Option<std::net::SocketAddr>) + Send + 'static,
{
    match listener {
        BoundListener::Tcp(std) => {
            let listener = tokio::net::TcpListener::from_std(std)?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, peer)) => {
                                let _ = stream.set_nodelay(true);
                                on_accept(Box::new(stream), Some(peer));
                            }
                            Err(e) => {
                                warning!("accept failed: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        BoundListener::Unix(std) => {
            let listener = tokio::net::UnixListener::from_std(std)?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                            on_accept(Box::new(stream), None);
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
        }
    }
    Ok(())
}
