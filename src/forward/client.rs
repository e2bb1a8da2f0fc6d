//! One outgoing SMTP connection: drives a proto `ClientSession` over a
//! socket, streaming message content from the spool.
//!
//! Content goes out in 64 KB dot-stuffed buffers, one write each (never a
//! write per line), with TCP_NODELAY set by `net::connect`; so a message
//! costs no delayed-ACK wait. Every read has the response timeout.
//!
//! STARTTLS: when the session asks for it, the plain stream is swapped for
//! a TLS one here; a failed handshake fails the connection (the message
//! stays in the spool), it never falls back to clear text.

use std::path::Path;
use std::time::Duration;

use emailrelay_proto::smtp::{
    ClientConfig, ClientEvent, ClientSession, DotStuffer, OutgoingMessage, Reply, SendOutcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Stream;
use crate::tls::ClientTls;

/// Why a connection broke (as opposed to the server refusing something).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No reply in time (the timeout in seconds); E-MailRelay's words.
    #[error("smtp error: response timeout after {0}s")]
    Timeout(u64),
    /// The server closed the connection; E-MailRelay's words.
    #[error("peer disconnected")]
    Closed,
    /// The server refused the session (greeting, EHLO, 421) or spoke nonsense.
    #[error("{0}")]
    Refused(Reply),
    /// The server refused our authentication (535, 5.7.x, or a 4xx to AUTH).
    #[error("{0}")]
    AuthRefused(Reply),
    /// The content file could not be read.
    #[error("cannot read content file: {0}")]
    Content(std::io::Error),
    /// The TLS handshake failed (bad certificate, protocol mismatch).
    #[error("{0}")]
    Tls(std::io::Error),
}

/// Timeouts for one connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub response: Duration,
    pub prompt: Duration,
}

/// An open, greeted SMTP connection.
pub struct Connection {
    stream: Box<dyn Stream>,
    session: ClientSession,
    timeouts: Timeouts,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// For STARTTLS: the context and the forwarding host name.
    tls: Option<(ClientTls, String)>,
    /// When the reply to what we last sent must be complete: a server that
    /// trickles a reply a byte at a time, or sends `250-` lines forever,
    /// is given up on at `--response-timeout` however busy it looks.
    reply_deadline: tokio::time::Instant,
}

impl Connection {
    /// Waits for the greeting (up to the prompt timeout, then carries on)
    /// and does EHLO.
    pub async fn open(
        stream: Box<dyn Stream>,
        config: ClientConfig,
        timeouts: Timeouts,
        tls: Option<(ClientTls, String)>,
    ) -> Result<Connection, ConnectionError> {
        let mut conn = Connection {
            stream,
            session: ClientSession::new(config),
            timeouts,
            buf: vec![0; 16 * 1024],
            out: Vec::new(),
            tls,
            reply_deadline: tokio::time::Instant::now() + timeouts.prompt,
        };
        let mut greeted = false;
        loop {
            if let Some(event) = conn.session.poll_event() {
                match event {
                    ClientEvent::Ready => return Ok(conn),
                    ClientEvent::Failed(reply) if conn.session.auth_refused() => {
                        return Err(ConnectionError::AuthRefused(reply))
                    }
                    ClientEvent::Failed(reply) => return Err(ConnectionError::Refused(reply)),
                    ClientEvent::StartTls => {
                        conn.start_tls().await?;
                        continue;
                    }
                    _ => continue,
                }
            }
            match conn.read_some().await {
                Err(ConnectionError::Timeout(_)) if !greeted => {
                    // E-MailRelay's words.
                    crate::warning!(
                        "timeout: no greeting from remote server after {}s: continuing",
                        timeouts.prompt.as_secs()
                    );
                    conn.session.handle_prompt_timeout();
                    conn.flush().await?;
                }
                other => other?,
            }
            greeted = true;
        }
    }

    /// Sends one message and returns the server's verdict.
    pub async fn send(
        &mut self,
        message: OutgoingMessage,
        content: &Path,
    ) -> Result<SendOutcome, ConnectionError> {
        self.session.send_message(message);
        self.flush().await?;
        loop {
            while let Some(event) = self.session.poll_event() {
                match event {
                    ClientEvent::SendContent => {
                        let lines = self.send_content(content).await?;
                        self.session.content_sent(lines);
                        self.log_trace();
                    }
                    ClientEvent::Done(outcome) => return Ok(outcome),
                    ClientEvent::Failed(reply) => return Err(ConnectionError::Refused(reply)),
                    ClientEvent::Ready | ClientEvent::StartTls => {}
                }
            }
            self.read_some().await?;
        }
    }

    /// The name the server accepted in AUTH, if the connection authenticated.
    pub fn authenticated(&self) -> Option<&str> {
        self.session.authenticated()
    }

    /// The mechanism the connection authenticated with, if it did.
    pub fn auth_mechanism(&self) -> Option<emailrelay_proto::sasl::Mechanism> {
        self.session.auth_mechanism()
    }

    /// Says QUIT and closes, without waiting long for the reply.
    pub async fn quit(mut self) {
        self.session.quit();
        if self.flush().await.is_ok() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), self.stream.read(&mut self.buf)).await;
        }
        // close_notify under TLS, then FIN; bounded like the QUIT reply.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
    }

    /// The client side of the handshake, then EHLO again.
    async fn start_tls(&mut self) -> Result<(), ConnectionError> {
        let Some((tls, host)) = &self.tls else {
            return Err(ConnectionError::Tls(std::io::Error::other(
                "tls error: TLS is not configured",
            )));
        };
        let plain = std::mem::replace(&mut self.stream, Box::new(tokio::io::empty()));
        let handshake = tls.connect(plain, host);
        let (stream, info) = tokio::time::timeout(self.timeouts.response, handshake)
            .await
            .map_err(|_| ConnectionError::Timeout(self.timeouts.response.as_secs()))?
            .map_err(ConnectionError::Tls)?;
        crate::info!("tls session established: {info}");
        self.stream = stream;
        self.session.tls_started();
        self.flush().await
    }

    /// Sends the content, dot-stuffed; returns how many lines it had.
    async fn send_content(&mut self, path: &Path) -> Result<u64, ConnectionError> {
        // Spool reads come from the page cache in microseconds, so they are
        // done in place rather than through the blocking pool.
        use std::io::Read;
        let mut file = crate::store::open_regular(path).map_err(ConnectionError::Content)?;
        let mut stuffer = DotStuffer::default();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut chunk).map_err(ConnectionError::Content)?;
            if n == 0 {
                break;
            }
            self.out.clear();
            stuffer.stuff(&chunk[..n], &mut self.out);
            self.write_out().await?;
        }
        self.out.clear();
        stuffer.finish(&mut self.out);
        self.write_out().await?;
        Ok(stuffer.lines())
    }

    async fn read_some(&mut self) -> Result<(), ConnectionError> {
        let read = self.stream.read(&mut self.buf);
        let n = match tokio::time::timeout_at(self.reply_deadline, read).await {
            Err(_) => return Err(ConnectionError::Timeout(self.timeouts.response.as_secs())),
            Ok(result) => result?,
        };
        if n == 0 {
            return Err(ConnectionError::Closed);
        }
        self.session.handle_input(&self.buf[..n]);
        self.log_trace();
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), ConnectionError> {
        self.out.clear();
        self.session.poll_output(&mut self.out);
        self.log_trace();
        self.write_out().await
    }

    async fn write_out(&mut self) -> Result<(), ConnectionError> {
        if !self.out.is_empty() {
            self.reply_deadline = tokio::time::Instant::now() + self.timeouts.response;
            tokio::time::timeout(self.timeouts.response, self.stream.write_all(&self.out))
                .await
                .map_err(|_| ConnectionError::Timeout(self.timeouts.response.as_secs()))??;
        }
        Ok(())
    }

    fn log_trace(&mut self) {
        for line in self.session.poll_trace() {
            crate::verbose!("{line}");
        }
    }
}
