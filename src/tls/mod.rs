//! TLS for both directions, on rustls with the ring provider: the rustls
//! configurations built once at startup from the `--server-tls*`,
//! `--client-tls*` and `--tls-config` settings, and the handshakes.
//!
//! This module reads certificate and key files (at startup, before the
//! privilege drop, so a root-only key file works) and never touches SMTP:
//! when to start TLS is the proto sessions' business.
//!
//! E-MailRelay compatibility:
//! - a certificate option names one PEM file holding the key and the chain,
//!   or is given twice: the key file, then the certificate file;
//! - a `--*-tls-verify` value is a CA file, a directory of CA files, or
//!   `<default>` for the system's trust store;
//! - without `--client-tls-verify` the client encrypts without checking the
//!   server's certificate (the handshake signature is still checked); with
//!   it the chain is checked, and the name only with `--client-tls-verify-name`.
//!
//! rustls speaks TLS 1.2 and 1.3 only; `--tls-config` keywords that ask for
//! TLS 1.0 or 1.1 are refused at startup (see [`Versions::parse`]).

mod verify;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{RootCertStore, SupportedProtocolVersion};

use crate::net::Stream;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read or parsed.
    #[error("cannot load {what} from [{path}]: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A CA list held no usable certificate.
    #[error("no CA certificates found in [{0}]")]
    NoRoots(String),
    /// A `--tls-config` keyword that cannot be honoured.
    #[error("invalid --tls-config keyword [{keyword}]: {why}")]
    Keyword { keyword: String, why: &'static str },
    /// `--client-tls-verify-name` or `--client-tls-server-name` is not a valid name.
    #[error("invalid TLS server name [{0}]")]
    Name(String),
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The CA list could not be turned into a verifier.
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(String),
}

/// The protocol versions allowed by `--tls-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            tls12: true,
            tls13: true,
        }
    }
}

impl Versions {
    /// Parses `--tls-config`: `tlsv1.2`/`tlsv1.3` set a minimum,
    /// `-tlsv1.2`/`-tlsv1.3` a maximum. Library-selection keywords
    /// (`openssl`, `mbedtls`) are returned for a startup warning.
    pub fn parse(config: &str) -> Result<(Versions, Vec<String>), TlsError> {
        const OLD: &str = "rustls speaks only TLS 1.2 and 1.3; TLS 1.0 and 1.1 are obsolete (RFC 8996) and not supported";
        let mut versions = Versions::default();
        let mut ignored = Vec::new();
        for word in config.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let refuse = |why| TlsError::Keyword {
                keyword: word.to_string(),
                why,
            };
            match word.to_ascii_lowercase().as_str() {
                "tlsv1.2" => {}
                "tlsv1.3" => versions.tls12 = false,
                "-tlsv1.3" => {}
                "-tlsv1.2" => versions.tls13 = false,
                "sslv3" | "tlsv1.0" | "tlsv1.1" | "-sslv3" | "-tlsv1.0" | "-tlsv1.1" => {
                    return Err(refuse(OLD))
                }
                "openssl" | "mbedtls" => ignored.push(word.to_string()),
                _ => return Err(refuse("expecting tlsv1.2, tlsv1.3, -tlsv1.2 or -tlsv1.3")),
            }
        }
        if !versions.tls12 && !versions.tls13 {
            return Err(TlsError::Keyword {
                keyword: config.to_string(),
                why: "the minimum version is above the maximum",
            });
        }
        Ok((versions, ignored))
    }

    fn list(&self) -> Vec<&'static SupportedProtocolVersion> {
        let mut list = Vec::new();
        if self.tls13 {
            list.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            list.push(&rustls::version::TLS12);
        }
        list
    }
}

/// Server-side TLS options.
#[derive(Clone, Debug, Default)]
pub struct ServerTlsOptions {
    /// One PEM file with key and chain, or the key file then the certificate file.
    pub certificate: Vec<PathBuf>,
    /// `--server-tls-verify`: CA file, directory or `<default>`.
    pub verify: Option<String>,
    pub versions: Versions,
}

/// Client-side TLS options.
#[derive(Clone, Debug, Default)]
pub struct ClientTlsOptions {
    /// `--client-tls-certificate`, as for the server.
    pub certificate: Vec<PathBuf>,
    /// `--client-tls-verify`: CA file, directory or `<default>`.
    pub verify: Option<String>,
    /// `--client-tls-verify-name`: the name the server's certificate must carry.
    pub verify_name: Option<String>,
    /// `--client-tls-server-name`: the SNI name; default the forwarding host.
    pub server_name: Option<String>,
    pub versions: Versions,
}

/// A ready server-side TLS context.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// What a finished handshake tells the rest of the relay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// E.g. `TLSv1.3`.
    pub protocol: String,
    /// E.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The peer's certificate in PEM, if it sent one.
    pub peer_certificate: Option<String>,
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.protocol, self.cipher)
    }
}

impl ServerTls {
    /// Loads the certificate and CA files and builds the configuration.
    pub fn new(options: &ServerTlsOptions) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&options.versions.list())?;
        let builder = match &options.verify {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(load_roots(ca)?);
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| TlsError::Verifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let (chain, key) = load_identity(&options.certificate)?;
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols.clear();
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The server side of a handshake on `stream`.
    pub async fn accept(
        &self,
        stream: Box<dyn Stream>,
    ) -> std::io::Result<(Box<dyn Stream>, TlsInfo)> {
        let tls = self.acceptor.accept(stream).await?;
        let info = info_of(tls.get_ref().1);
        Ok((Box::new(tls), info))
    }
}

/// A ready client-side TLS context.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Loads the certificate and CA files and builds the configuration.
    pub fn new(options: &ClientTlsOptions) -> Result<ClientTls, TlsError> {
        let provider = provider();
        let verifier = match &options.verify {
            None => verify::ServerVerifier::encryption_only(Arc::clone(&provider)),
            Some(ca) => {
                let name = options
                    .verify_name
                    .as_deref()
                    .map(server_name)
                    .transpose()?;
                verify::ServerVerifier::checking(load_roots(ca)?, name, Arc::clone(&provider))
                    .map_err(|e| TlsError::Verifier(e.to_string()))?
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&options.versions.list())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = if options.certificate.is_empty() {
            builder.with_no_client_auth()
        } else {
            let (chain, key) = load_identity(&options.certificate)?;
            builder.with_client_auth_cert(chain, key)?
        };
        Ok(ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: options
                .server_name
                .as_deref()
                .map(server_name)
                .transpose()?,
        })
    }

    /// A context for HTTPS (OAuth 2.0 token endpoints): the system's CA
    /// roots, and the certificate must carry the host name.
    pub fn web() -> Result<ClientTls, TlsError> {
        let roots = load_roots("<default>")?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
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
    ) -> std::io::Result<(Box<dyn Stream>, TlsInfo)> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => server_name(host)
                .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())),
        };
        let tls = self.connector.connect(name, stream).await?;
        let info = info_of(tls.get_ref().1);
        Ok((Box::new(tls), info))
    }
}

/// The name of the TLS library, for `--version --verbose`.
pub fn library() -> String {
    "rustls 0.23 (ring provider), TLS 1.2 and 1.3".into()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|_| TlsError::Name(name.to_string()))
}

fn info_of<D>(conn: &rustls::ConnectionCommon<D>) -> TlsInfo {
    let protocol = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown")
        .to_string();
    let peer_certificate = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| pem_encode(cert.as_ref()));
    TlsInfo {
        protocol,
        cipher,
        peer_certificate,
    }
}

/// A DER certificate as PEM, 64 columns, `\n` line ends.
pub fn pem_encode(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(pem, "{}", String::from_utf8_lossy(line));
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Key and chain from one file, or from a key file and a certificate file.
fn load_identity(
    files: &[PathBuf],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let (key_file, cert_file) = match files {
        [one] => (one, one),
        [key, cert] => (key, cert),
        _ => return Err(TlsError::File {
            what: "a certificate",
            path: PathBuf::new(),
            reason:
                "give the certificate option once (key and chain) or twice (key, then certificate)"
                    .into(),
        }),
    };
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::File {
        what: "the private key",
        path: key_file.clone(),
        reason: pem_reason(&e),
    })?;
    let chain = read_certificates(cert_file)?;
    if chain.is_empty() {
        return Err(TlsError::File {
            what: "the certificate",
            path: cert_file.clone(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok((chain, key))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |e: rustls::pki_types::pem::Error| TlsError::File {
        what: "certificates",
        path: path.to_path_buf(),
        reason: pem_reason(&e),
    };
    CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM block of that kind".into(),
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    }
}

/// A CA file, a directory of CA files, or `<default>`.
fn load_roots(ca: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let certs = if ca == "<default>" {
        rustls_native_certs::load_native_certs().certs
    } else {
        let path = Path::new(ca);
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| TlsError::File {
                what: "CA certificates",
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            let mut certs = Vec::new();
            for entry in entries.flatten() {
                // Files that are not PEM certificates (hash links to
                // directories, READMEs) are skipped, as OpenSSL does.
                if let Ok(mut found) = read_certificates(&entry.path()) {
                    certs.append(&mut found);
                }
            }
            certs
        } else {
            read_certificates(path)?
        }
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoRoots(ca.to_string()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_config_keywords() {
        let parse = |s| Versions::parse(s).map(|(v, _)| (v.tls12, v.tls13));
        assert_eq!(parse("").unwrap(), (true, true));
        assert_eq!(parse("tlsv1.2").unwrap(), (true, true));
        assert_eq!(parse("tlsv1.3").unwrap(), (false, true));
        assert_eq!(parse("-tlsv1.2").unwrap(), (true, false));
        assert_eq!(parse("tlsv1.2,-tlsv1.3").unwrap(), (true, true));
        assert!(parse("tlsv1.3,-tlsv1.2").is_err());
        let old = parse("tlsv1.0").unwrap_err().to_string();
        assert_eq!(
            old,
            "invalid --tls-config keyword [tlsv1.0]: rustls speaks only TLS 1.2 and 1.3; TLS 1.0 and 1.1 are obsolete (RFC 8996) and not supported"
        );
        assert!(parse("-tlsv1.1").is_err());
        assert!(parse("bogus").is_err());
        let (_, ignored) = Versions::parse("openssl,tlsv1.2").unwrap();
        assert_eq!(ignored, ["openssl"]);
    }

    #[test]
    fn pem_encoding_wraps_at_64_columns() {
        let pem = pem_encode(&[0u8; 60]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
    }

    #[test]
    fn missing_files_name_the_path() {
        let err = load_identity(&[PathBuf::from("/nonexistent/x.pem")]).unwrap_err();
        assert!(err.to_string().contains("[/nonexistent/x.pem]"), "{err}");
        let err = load_roots("/nonexistent/ca.pem").unwrap_err();
        assert!(err.to_string().contains("[/nonexistent/ca.pem]"), "{err}");
    }
}
