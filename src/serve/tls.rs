//! The server side of a TLS handshake, for implicit TLS and for an upgrade
//! (SMTP STARTTLS, POP STLS) alike.

use std::time::Duration;

use crate::log::{self, Level};
use crate::net::Stream;
use crate::tls::{ServerTls, TlsInfo};

/// Does the handshake within `limit` (the idle timeout). A failure is
/// logged with the TLS library's reason and `None` ends only this
/// connection.
pub async fn handshake(
    tls: &ServerTls,
    stream: Box<dyn Stream>,
    limit: Duration,
    peer_text: &str,
) -> Option<(Box<dyn Stream>, TlsInfo)> {
    let result = match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::other(
            "tls error: no handshake within the idle timeout",
        )),
    };
    match result {
        Ok((stream, info)) => {
            log::write(Level::Info, format_args!("tls session established: {info}"));
            Some((stream, info))
        }
        Err(e) => {
            log::write(Level::Warning, format_args!("{e}: {peer_text}"));
            None
        }
    }
}
