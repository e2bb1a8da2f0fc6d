//! An encrypted stream: OpenSSL (through tokio-openssl) over the plain
//! stream, whose I/O errors are turned into words (see `failure.rs`).
//!
//! Why a wrapper: under TLS 1.3 a server refuses a client certificate after
//! the client's side of the handshake is done, so the refusal reaches the
//! client as an error on its first read. It must read as a refusal there
//! too, for the log and for forwarding's decision.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_openssl::SslStream;

use super::failure::{self, PeerName};
use crate::net::Stream;

/// TLS over a plain stream.
pub struct TlsStream {
    inner: SslStream<Box<dyn Stream>>,
    peer: PeerName,
}

impl TlsStream {
    pub fn new(inner: SslStream<Box<dyn Stream>>, peer: PeerName) -> TlsStream {
        TlsStream { inner, peer }
    }

    /// Replaces an OpenSSL error inside `error` by its words.
    fn translate(&self, error: io::Error) -> io::Error {
        let Some(ssl_error) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>())
        else {
            return error;
        };
        io::Error::other(failure::stream(ssl_error, &self.peer))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.translate(e))),
            other => other,
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.translate(e))),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.translate(e))),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
