//! TLS for both directions, on OpenSSL (the system's libssl, through the
//! `openssl` and `tokio-openssl` crates): the contexts built once at
//! startup from the `--server-tls*`, `--client-tls*` and `--tls-config`
//! settings, and the handshakes. This is the one interface the rest of the
//! relay uses; OpenSSL types do not leak out of it.
//!
//! This module reads certificate and key files (at startup, before the
//! privilege drop, so a root-only key file works) and never touches SMTP:
//! when to start TLS is the proto sessions' business, and so is discarding
//! plaintext pipelined behind STARTTLS (the handshake here starts on a
//! stream with nothing buffered).
//!
//! Why OpenSSL, the library E-MailRelay 2.6.1 uses: its users' set-ups must
//! work unchanged, and they include X.509 version-1 certificates, a
//! self-signed certificate pinned as its own CA, hashed CA directories,
//! and devices that speak only TLS 1.0 or 1.1. rustls, used before, refuses
//! all four by design.
//!
//! ```text
//!   config.rs   --tls-config keywords -> TlsConfig (ranges, options)
//!   context.rs  files, CA lists, verify modes -> SslContext
//!   verify.rs   the verify callback: levels, verify-name, refusals
//!   failure.rs  OpenSSL errors -> "tls error: ..." in words
//!   stream.rs   the encrypted stream, its errors in words too
//! ```

mod config;
mod context;
mod failure;
mod stream;
mod verify;

use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use openssl::ssl::{Ssl, SslConnector, SslContext, SslMethod, SslRef, SslVersion};
use tokio_openssl::SslStream;

pub use config::{Range, TlsConfig, Version};

use crate::net::Stream;
use failure::PeerName;
use stream::TlsStream;
use verify::Peer;

/// Why TLS could not be set up, or why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read or used.
    #[error("cannot load {what} from [{path}]: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A CA list held no certificate.
    #[error("no CA certificates found in [{0}]")]
    NoRoots(String),
    /// A `--tls-config` value that cannot be honoured.
    #[error("invalid --tls-config [{keyword}]: {why}")]
    Keyword { keyword: String, why: &'static str },
    /// `--tls-config` leaves forwarding no protocol version.
    #[error(
        "--tls-config leaves forwarding no TLS version: its maximum is older than TLS 1.2, \
         the oldest forwarding uses unless client-tlsv1.0 or client-tlsv1.1 is given"
    )]
    NoClientVersion,
    /// OpenSSL refused a setting.
    #[error("OpenSSL: {0}")]
    Library(String),
    /// A handshake or an encrypted stream failed; `refusal` if a side said
    /// no (see `failure.rs`).
    #[error("tls error: {text}")]
    Failed { refusal: bool, text: String },
}

/// Server-side TLS options.
#[derive(Clone, Debug, Default)]
pub struct ServerTlsOptions {
    /// One PEM file with key and chain, or the key file then the certificate file.
    pub certificate: Vec<PathBuf>,
    /// `--server-tls-verify`: CA file, directory, `<default>` or `<none>`.
    pub verify: Option<String>,
    pub config: TlsConfig,
}

/// Client-side TLS options.
#[derive(Clone, Debug, Default)]
pub struct ClientTlsOptions {
    /// `--client-tls-certificate`, as for the server.
    pub certificate: Vec<PathBuf>,
    /// `--client-tls-verify`: CA file, directory, `<default>` or `<none>`.
    pub verify: Option<String>,
    /// `--client-tls-verify-name`: the name the server's certificate must carry.
    pub verify_name: Option<String>,
    /// `--client-tls-server-name`: the SNI name; default the forwarding host.
    pub server_name: Option<String>,
    pub config: TlsConfig,
}

/// What a finished handshake tells the rest of the relay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// E.g. `TLSv1.3`, or `TLSv1.0` as E-MailRelay writes it.
    pub protocol: String,
    /// OpenSSL's name, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The peer's certificate in PEM, if it sent one.
    pub peer_certificate: Option<String>,
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.protocol, self.cipher)
    }
}

/// A ready server-side TLS context.
#[derive(Clone)]
pub struct ServerTls {
    context: SslContext,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Loads the certificate and CA files and builds the context.
    pub fn new(options: &ServerTlsOptions) -> Result<ServerTls, TlsError> {
        let context = context::build(&context::Spec {
            peer: Peer::Client,
            certificate: &options.certificate,
            verify: options.verify.as_deref(),
            verify_name: None,
            range: options.config.server,
            config: &options.config,
        })?;
        Ok(ServerTls { context })
    }

    /// The server side of a handshake on `stream`.
    pub async fn accept(&self, stream: Box<dyn Stream>) -> io::Result<(Box<dyn Stream>, TlsInfo)> {
        let peer = PeerName {
            peer: Peer::Client,
            host: None,
        };
        let ssl = new_ssl(&self.context)?;
        let mut tls = SslStream::new(ssl, stream).map_err(library_io)?;
        if let Err(e) = Pin::new(&mut tls).accept().await {
            return Err(io::Error::other(failure::handshake(&e, tls.ssl(), &peer)));
        }
        let info = info_of(tls.ssl());
        Ok((Box::new(TlsStream::new(tls, peer)), info))
    }
}

/// A ready client-side TLS context.
#[derive(Clone)]
pub struct ClientTls {
    kind: Kind,
    server_name: Option<String>,
}

#[derive(Clone)]
enum Kind {
    /// Forwarding, with E-MailRelay's verify levels.
    Smtp(SslContext),
    /// HTTPS: the default CA paths, and the host name must match.
    Web(SslConnector),
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Loads the certificate and CA files and builds the context.
    pub fn new(options: &ClientTlsOptions) -> Result<ClientTls, TlsError> {
        let range = options.config.client.ok_or(TlsError::NoClientVersion)?;
        let context = context::build(&context::Spec {
            peer: Peer::Server,
            certificate: &options.certificate,
            verify: options.verify.as_deref(),
            verify_name: options.verify_name.as_deref(),
            range,
            config: &options.config,
        })?;
        Ok(ClientTls {
            kind: Kind::Smtp(context),
            server_name: options.server_name.clone(),
        })
    }

    /// A context for HTTPS (OAuth 2.0 token endpoints): OpenSSL's default
    /// CA paths, and the certificate must carry the host name.
    pub fn web() -> Result<ClientTls, TlsError> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| TlsError::Library(e.to_string()))?;
        context::default_roots(builder.cert_store_mut())?;
        Ok(ClientTls {
            kind: Kind::Web(builder.build()),
            server_name: None,
        })
    }

    /// As [`ClientTls::web`], trusting only the CA certificates in the PEM
    /// file `ca` (an account file's `ca-file`: a private CA, or a test's
    /// stand-in for a provider).
    pub fn web_trusting(ca: &std::path::Path) -> Result<ClientTls, TlsError> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| TlsError::Library(e.to_string()))?;
        let certs = context::read_certificates(ca, "CA certificates")?;
        if certs.is_empty() {
            return Err(TlsError::NoRoots(ca.display().to_string()));
        }
        for cert in certs {
            builder
                .cert_store_mut()
                .add_cert(cert)
                .map_err(|e| TlsError::Library(e.to_string()))?;
        }
        Ok(ClientTls {
            kind: Kind::Web(builder.build()),
            server_name: None,
        })
    }

    /// The client side of a handshake on `stream`; `host` is the
    /// forwarding host, the SNI name unless `--client-tls-server-name` says
    /// otherwise.
    pub async fn connect(
        &self,
        stream: Box<dyn Stream>,
        host: &str,
    ) -> io::Result<(Box<dyn Stream>, TlsInfo)> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let peer = PeerName {
            peer: Peer::Server,
            host: Some(bare.to_string()),
        };
        let ssl = self.new_ssl(bare)?;
        let mut tls = SslStream::new(ssl, stream).map_err(library_io)?;
        if let Err(e) = Pin::new(&mut tls).connect().await {
            return Err(io::Error::other(failure::handshake(&e, tls.ssl(), &peer)));
        }
        let info = info_of(tls.ssl());
        Ok((Box::new(TlsStream::new(tls, peer)), info))
    }

    fn new_ssl(&self, host: &str) -> io::Result<Ssl> {
        let mut ssl = match &self.kind {
            Kind::Web(connector) => {
                let ssl = connector
                    .configure()
                    .and_then(|c| c.into_ssl(host))
                    .map_err(library_io)?;
                with_slot(ssl)?
            }
            Kind::Smtp(context) => new_ssl(context)?,
        };
        // SNI takes a host name, never an address literal (RFC 6066).
        let sni = self.server_name.as_deref().unwrap_or(host);
        if matches!(self.kind, Kind::Smtp(_))
            && !sni.is_empty()
            && sni.parse::<std::net::IpAddr>().is_err()
        {
            ssl.set_hostname(sni).map_err(library_io)?;
        }
        Ok(ssl)
    }
}

/// True if `error`, from a handshake or an encrypted stream, means a side
/// said no (a certificate, no common version, no TLS), rather than that
/// the connection was lost: trying again will not help.
pub fn is_refusal(error: &io::Error) -> bool {
    failure::is_refusal(error)
}

/// The TLS library, for `--version --verbose`.
pub fn library() -> String {
    // E-MailRelay compatibility: OpenSSL's own version text.
    openssl::version::version().to_string()
}

/// A new connection on `context`, with the slot the verify callback writes.
fn new_ssl(context: &SslContext) -> io::Result<Ssl> {
    with_slot(Ssl::new(context).map_err(library_io)?)
}

fn with_slot(mut ssl: Ssl) -> io::Result<Ssl> {
    let index = verify::slot_index().map_err(library_io)?;
    ssl.set_ex_data(index, verify::Slot::new());
    Ok(ssl)
}

fn library_io(e: openssl::error::ErrorStack) -> io::Error {
    io::Error::other(TlsError::Library(e.to_string()))
}

fn info_of(ssl: &SslRef) -> TlsInfo {
    // E-MailRelay compatibility: TLS 1.0 is "TLSv1.0", not OpenSSL's "TLSv1".
    let protocol = match ssl.version2() {
        Some(SslVersion::TLS1) => "TLSv1.0",
        Some(SslVersion::TLS1_1) => "TLSv1.1",
        Some(SslVersion::TLS1_2) => "TLSv1.2",
        Some(SslVersion::TLS1_3) => "TLSv1.3",
        _ => ssl.version_str(),
    };
    let cipher = ssl.current_cipher().map(|c| c.name()).unwrap_or("unknown");
    let peer_certificate = ssl
        .peer_certificate()
        .and_then(|cert| cert.to_pem().ok())
        .map(|pem| String::from_utf8_lossy(&pem).into_owned());
    TlsInfo {
        protocol: protocol.to_string(),
        cipher: cipher.to_string(),
        peer_certificate,
    }
}
