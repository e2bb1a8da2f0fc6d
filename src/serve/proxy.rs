//! `--proxy-protocol`: connections from the listed load balancers start
//! with a PROXY protocol header (v1 or v2, HAProxy's specification), and
//! the client address it carries becomes the connection's peer address
//! for everything after: `--remote-clients`, DNSBL, trusted addresses in
//! secrets files, the address verifier, the `Received` line, the envelope,
//! the log lines and the AUTH lock-out.
//!
//! A listed balancer that sends no valid header within [`HEADER_TIMEOUT`]
//! is refused, and so is an unlisted peer that starts with a header (a
//! client must not choose its own address); unlisted peers that do not
//! are served as before. Each refusal is one warning naming the peer and
//! the problem.
//!
//! Must not: read a byte past the header (the parser says how many to
//! read), or hold a connection longer than the deadline.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use emailrelay_proto::proxy::{self as wire, Header, Parse, ProxyError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::auth::network::AddressPattern;
use crate::net::{self, Stream};

/// How long a balancer has to send its header. HAProxy sends it with the
/// connection; a balancer that has not within this is broken or not one.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The balancers whose headers are believed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyProtocol {
    pub from: Vec<AddressPattern>,
    pub timeout: Duration,
}

/// `--proxy-protocol` that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("\"{0}\" is not an address or CIDR range")]
pub struct BadBalancer(pub String);

impl ProxyProtocol {
    /// `<address>[/<prefix>][,...]`: the balancers' addresses.
    pub fn parse(list: &str) -> Result<ProxyProtocol, BadBalancer> {
        let from = list
            .split(',')
            .map(str::trim)
            .map(|item| AddressPattern::parse(item).ok_or_else(|| BadBalancer(item.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProxyProtocol {
            from,
            timeout: HEADER_TIMEOUT,
        })
    }

    /// True if `ip` is one of the balancers.
    pub fn lists(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|p| p.contains(ip))
    }
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Header(ProxyError),
    #[error("no PROXY protocol header within {0} s")]
    Timeout(u64),
    #[error("closed before its PROXY protocol header was complete")]
    Closed,
}

/// Reads the header of a connection from a listed balancer: the client's
/// address (or `None` for a header without one: the connection's own
/// address stands), or why the connection is to be refused.
pub async fn read_header(
    stream: &mut Box<dyn Stream>,
    timeout: Duration,
) -> Result<Option<SocketAddr>, Refusal> {
    let read = async {
        let mut buf = Vec::with_capacity(64);
        loop {
            match wire::parse(&buf) {
                Parse::Need(n) => {
                    let at = buf.len();
                    buf.resize(at + n, 0);
                    if stream.read_exact(&mut buf[at..]).await.is_err() {
                        return Err(Refusal::Closed);
                    }
                }
                Parse::Done { header, .. } => return Ok(header),
                Parse::Invalid(e) => return Err(Refusal::Header(e)),
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(Refusal::Timeout(timeout.as_secs())),
        Ok(Err(refusal)) => Err(refusal),
        Ok(Ok(Header::Proxy { source, .. })) => Ok(Some(source)),
        Ok(Ok(Header::Local { .. })) => Ok(None),
    }
}

/// Logs the refusal of a connection from `peer`.
pub fn log_refusal(peer: SocketAddr, listed: bool, problem: &dyn std::fmt::Display) {
    let who = if listed {
        "balancer"
    } else {
        "unlisted address"
    };
    crate::warning!(
        "proxy protocol: connection from {who} {} refused: {problem}",
        net::display_addr(&peer)
    );
}

/// A connection from a peer that is not a listed balancer: served as
/// usual, unless its first bytes are a PROXY protocol header, when it is
/// logged and ended (the read fails).
pub struct Unlisted<S> {
    inner: S,
    peer: SocketAddr,
    checked: bool,
}

impl<S> Unlisted<S> {
    pub fn new(inner: S, peer: SocketAddr) -> Unlisted<S> {
        Unlisted {
            inner,
            peer,
            checked: false,
        }
    }
}

/// True if `first` (a connection's first read) starts like a header: all
/// of v1's `PROXY ` or the first five bytes of v2's signature. No SMTP or
/// POP command begins so.
pub fn looks_like_header(first: &[u8]) -> bool {
    first.starts_with(b"PROXY ") || first.starts_with(&wire::V2_SIGNATURE[..5])
}

impl<S: AsyncRead + Unpin> AsyncRead for Unlisted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.checked || !matches!(polled, Poll::Ready(Ok(()))) {
            return polled;
        }
        let first = &buf.filled()[before..];
        if first.is_empty() {
            return polled;
        }
        this.checked = true;
        if looks_like_header(first) {
            log_refusal(
                this.peer,
                false,
                &"a PROXY protocol header from an address not listed by --proxy-protocol",
            );
            buf.set_filled(before);
            return Poll::Ready(Err(std::io::Error::other("unlisted PROXY protocol header")));
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Unlisted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn boxed(s: tokio::io::DuplexStream) -> Box<dyn Stream> {
        Box::new(s)
    }

    #[test]
    fn the_list_is_addresses_and_ranges() {
        let p = ProxyProtocol::parse("127.0.0.1, 10.0.0.0/8,fd00::/8").unwrap();
        assert!(p.lists("127.0.0.1".parse().unwrap()));
        assert!(p.lists("10.1.2.3".parse().unwrap()));
        assert!(p.lists("::ffff:10.1.2.3".parse().unwrap()));
        assert!(p.lists("fd00::9".parse().unwrap()));
        assert!(!p.lists("127.0.0.2".parse().unwrap()));
        assert_eq!(
            ProxyProtocol::parse("127.0.0.1,bad")
                .unwrap_err()
                .to_string(),
            "\"bad\" is not an address or CIDR range"
        );
        assert!(ProxyProtocol::parse("").is_err());
    }

    #[tokio::test]
    async fn the_header_is_read_and_nothing_after_it() {
        let (client, server) = tokio::io::duplex(1024);
        let mut server = boxed(server);
        let mut client = client;
        client
            .write_all(b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\nEHLO x\r\n")
            .await
            .unwrap();
        let got = read_header(&mut server, HEADER_TIMEOUT).await.unwrap();
        assert_eq!(got, Some("127.0.0.2:40000".parse().unwrap()));
        let mut rest = [0u8; 8];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"EHLO x\r\n");
    }

    #[tokio::test]
    async fn local_and_unknown_keep_the_address() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = boxed(server);
        client.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
        assert_eq!(
            read_header(&mut server, HEADER_TIMEOUT).await.unwrap(),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_garbage_and_a_close_are_refused() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut server = boxed(server);
        let err = read_header(&mut server, HEADER_TIMEOUT).await.unwrap_err();
        assert_eq!(err.to_string(), "no PROXY protocol header within 5 s");

        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = boxed(server);
        client.write_all(b"EHLO me\r\n").await.unwrap();
        let err = read_header(&mut server, HEADER_TIMEOUT).await.unwrap_err();
        assert_eq!(err.to_string(), "no PROXY protocol header");

        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = boxed(server);
        client.write_all(b"PROXY TCP4 1.2").await.unwrap();
        drop(client);
        let err = read_header(&mut server, HEADER_TIMEOUT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "closed before its PROXY protocol header was complete"
        );
    }

    #[tokio::test]
    async fn an_unlisted_header_ends_the_connection_other_input_passes() {
        let peer: SocketAddr = "192.0.2.1:5".parse().unwrap();
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = Unlisted::new(server, peer);
        client
            .write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(server.read(&mut buf).await.is_err());

        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = Unlisted::new(server, peer);
        client.write_all(b"EHLO x\r\nPROXY \r\n").await.unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(
            &buf[..n],
            b"EHLO x\r\nPROXY \r\n",
            "only the first read is looked at"
        );
        assert!(looks_like_header(&wire::V2_SIGNATURE));
        assert!(!looks_like_header(b"PASS x\r\n"));
        assert!(!looks_like_header(b"\r\n"));
    }
}
