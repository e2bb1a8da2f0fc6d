//! OpenSSL contexts built once at startup: protocol range, options, our
//! certificate and key, the CA list and the verify mode of each direction.
//!
//! Files are read here, before the privilege drop, so a root-only key file
//! works. Every failure names the file and says what is wrong with it.
//!
//! E-MailRelay compatibility: as 2.6.1 sets up OpenSSL.
//! - cipher list `DEFAULT`, no session cache, a session id context on the
//!   server side;
//! - our certificate: one PEM file with key and chain, or a key file and a
//!   certificate file; any X.509 version;
//! - a CA list is a PEM file, a directory in OpenSSL's hashed layout
//!   (`c_rehash`/`openssl rehash`), `<default>` for OpenSSL's default
//!   paths (which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`), or `<none>`.
//!   A directory without hash links, which 2.6.1 would find empty, has its
//!   PEM files read one by one, as earlier releases of ours did.

use std::path::Path;
use std::sync::Arc;

use openssl::pkey::PKey;
use openssl::ssl::{
    SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslSessionCacheMode,
    SslVerifyMode, SslVersion,
};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::X509;

use super::config::{Range, TlsConfig, Version};
use super::verify::{self, Peer, Policy};
use super::TlsError;

/// What a context needs to know beyond `--tls-config`.
pub struct Spec<'a> {
    pub peer: Peer,
    /// One file (key and chain) or two (key, then certificate); may be empty
    /// on the client side.
    pub certificate: &'a [std::path::PathBuf],
    /// The CA list option's value.
    pub verify: Option<&'a str>,
    /// `--client-tls-verify-name`.
    pub verify_name: Option<&'a str>,
    pub range: Range,
    pub config: &'a TlsConfig,
}

/// Builds the context for one direction.
pub fn build(spec: &Spec<'_>) -> Result<SslContext, TlsError> {
    let method = match spec.peer {
        Peer::Client => SslMethod::tls_server(),
        Peer::Server => SslMethod::tls_client(),
    };
    let mut builder = SslContextBuilder::new(method).map_err(library)?;
    set_protocol(&mut builder, spec)?;
    if !spec.certificate.is_empty() {
        load_identity(&mut builder, spec.certificate)?;
    }
    set_verification(&mut builder, spec)?;
    Ok(builder.build())
}

fn set_protocol(builder: &mut SslContextBuilder, spec: &Spec<'_>) -> Result<(), TlsError> {
    builder
        .set_min_proto_version(Some(ssl_version(spec.range.min)))
        .map_err(library)?;
    builder
        .set_max_proto_version(spec.range.max.map(ssl_version))
        .map_err(library)?;
    builder.set_cipher_list("DEFAULT").map_err(library)?;
    if spec.range.is_legacy() {
        // OpenSSL 3 refuses TLS 1.0 and 1.1 handshakes (SHA-1 and MD5
        // signatures) at any security level above 0.
        builder.set_security_level(0);
    }
    // An SMTP dialogue ends with QUIT and its reply; a peer that then closes
    // without close_notify has truncated nothing.
    let mut options = SslOptions::IGNORE_UNEXPECTED_EOF;
    let wanted = spec.config.options;
    for (on, option) in [
        (wanted.all, SslOptions::ALL),
        (wanted.no_ticket, SslOptions::NO_TICKET),
        (
            wanted.no_resumption,
            SslOptions::NO_SESSION_RESUMPTION_ON_RENEGOTIATION,
        ),
        (
            wanted.server_preference,
            SslOptions::CIPHER_SERVER_PREFERENCE,
        ),
    ] {
        if on {
            options |= option;
        }
    }
    builder.set_options(options);
    // An idle SMTP session holds no 17 KB record buffers: freed between
    // records, as rustls keeps them small.
    builder.set_mode(SslMode::RELEASE_BUFFERS);
    builder.set_session_cache_mode(SslSessionCacheMode::OFF);
    if spec.peer == Peer::Client {
        builder
            .set_session_id_context(b"emailrelay")
            .map_err(library)?;
    }
    Ok(())
}

fn ssl_version(version: Version) -> SslVersion {
    match version {
        Version::Ssl3 => SslVersion::SSL3,
        Version::Tls10 => SslVersion::TLS1,
        Version::Tls11 => SslVersion::TLS1_1,
        Version::Tls12 => SslVersion::TLS1_2,
        Version::Tls13 => SslVersion::TLS1_3,
    }
}

/// Key and chain from one file, or from a key file and a certificate file.
fn load_identity(
    builder: &mut SslContextBuilder,
    files: &[std::path::PathBuf],
) -> Result<(), TlsError> {
    let (key_file, cert_file) = match files {
        [one] => (one, one),
        [key, cert] => (key, cert),
        _ => {
            return Err(TlsError::File {
                what: "a certificate",
                path: files.last().cloned().unwrap_or_default(),
                reason: "give the certificate option once (key and chain) or twice (key, then \
                         certificate)"
                    .into(),
            })
        }
    };
    let key_pem = read(key_file, "the private key")?;
    let key = PKey::private_key_from_pem(&key_pem).map_err(|e| TlsError::File {
        what: "the private key",
        path: key_file.clone(),
        reason: format!("no usable PEM private key ({})", reason(&e)),
    })?;
    let mut chain = read_certificates(cert_file, "the certificate")?.into_iter();
    let Some(leaf) = chain.next() else {
        return Err(TlsError::File {
            what: "the certificate",
            path: cert_file.clone(),
            reason: "no CERTIFICATE block".into(),
        });
    };
    let unusable = |e: openssl::error::ErrorStack| TlsError::File {
        what: "the certificate",
        path: cert_file.clone(),
        reason: format!("OpenSSL cannot use it: {}", reason(&e)),
    };
    builder.set_certificate(&leaf).map_err(unusable)?;
    for cert in chain {
        builder.add_extra_chain_cert(cert).map_err(unusable)?;
    }
    builder.set_private_key(&key).map_err(|e| TlsError::File {
        what: "the private key",
        path: key_file.clone(),
        reason: format!("OpenSSL cannot use it: {}", reason(&e)),
    })?;
    builder.check_private_key().map_err(|_| TlsError::File {
        what: "the private key",
        path: key_file.clone(),
        reason: format!(
            "it does not belong to the certificate in [{}]",
            cert_file.display()
        ),
    })
}

fn set_verification(builder: &mut SslContextBuilder, spec: &Spec<'_>) -> Result<(), TlsError> {
    let ca = spec.verify.filter(|ca| *ca != "<none>");
    let policy = Arc::new(Policy {
        peer: spec.peer,
        checking: ca.is_some() && !spec.config.noverify,
        name: spec.verify_name.map(str::to_string),
    });
    let mode = match (spec.peer, ca, spec.config.noverify) {
        // E-MailRelay compatibility: the listener asks every client for a
        // certificate (recorded in the envelope) unless told `<none>`.
        (Peer::Client, None, _) if spec.verify == Some("<none>") => SslVerifyMode::NONE,
        (_, Some(_), true) => SslVerifyMode::NONE,
        (Peer::Client, Some(_), false) => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        _ => SslVerifyMode::PEER,
    };
    builder.set_verify_callback(mode, verify::callback(policy));
    let Some(ca) = ca else { return Ok(()) };
    load_roots(builder, ca)?;
    builder
        .verify_param_mut()
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(library)
}

/// A CA file, a directory of CA files, or `<default>`.
fn load_roots(builder: &mut SslContextBuilder, ca: &str) -> Result<(), TlsError> {
    if ca == "<default>" {
        return default_roots(builder.cert_store_mut());
    }
    let path = Path::new(ca);
    if !path.is_dir() {
        let certs = read_certificates(path, "CA certificates")?;
        if certs.is_empty() {
            return Err(TlsError::NoRoots(ca.to_string()));
        }
        for cert in certs {
            add_root(builder, cert)?;
        }
        return Ok(());
    }
    builder
        .load_verify_locations(None, Some(path))
        .map_err(|e| TlsError::File {
            what: "CA certificates",
            path: path.to_path_buf(),
            reason: reason(&e),
        })?;
    let entries: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| TlsError::File {
            what: "CA certificates",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    if entries.iter().any(|p| is_hash_link(p)) {
        return Ok(());
    }
    let mut added = 0;
    for entry in entries {
        // Files that are not PEM certificates (READMEs, keys) are skipped.
        for cert in read_certificates(&entry, "CA certificates").unwrap_or_default() {
            add_root(builder, cert)?;
            added += 1;
        }
    }
    if added == 0 {
        return Err(TlsError::NoRoots(ca.to_string()));
    }
    Ok(())
}

/// The system's trusted roots: OpenSSL's default paths, or on Windows the
/// system's certificate store (see `platform::host::system_roots`).
pub(super) fn default_roots(
    store: &mut openssl::x509::store::X509StoreBuilderRef,
) -> Result<(), TlsError> {
    let Some(roots) = crate::platform::host::system_roots() else {
        return store.set_default_paths().map_err(library);
    };
    for der in roots {
        // A certificate OpenSSL cannot read is one root fewer, not an error.
        if let Ok(cert) = X509::from_der(&der) {
            let _ = store.add_cert(cert);
        }
    }
    Ok(())
}

fn add_root(builder: &mut SslContextBuilder, cert: X509) -> Result<(), TlsError> {
    builder.cert_store_mut().add_cert(cert).map_err(library)
}

/// OpenSSL's lookup name in a CA directory: 8 hex digits, a dot, a number.
fn is_hash_link(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some((hash, n)) = name.split_once('.') else {
        return false;
    };
    hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

pub(super) fn read_certificates(path: &Path, what: &'static str) -> Result<Vec<X509>, TlsError> {
    let pem = read(path, what)?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Ok(Vec::new());
    }
    X509::stack_from_pem(&pem).map_err(|e| TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: format!("a CERTIFICATE block does not parse ({})", reason(&e)),
    })
}

/// OpenSSL's reason for the first error in `stack`.
fn reason(stack: &openssl::error::ErrorStack) -> String {
    stack
        .errors()
        .first()
        .and_then(|e| e.reason())
        .unwrap_or("unknown error")
        .to_string()
}

fn library(e: openssl::error::ErrorStack) -> TlsError {
    TlsError::Library(reason(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_links_are_recognised() {
        assert!(is_hash_link(Path::new("/etc/ssl/certs/0a775a30.0")));
        assert!(is_hash_link(Path::new("d6325660.12")));
        assert!(!is_hash_link(Path::new("ca.pem")));
        assert!(!is_hash_link(Path::new("0a775a30.r")));
        assert!(!is_hash_link(Path::new("0a775a3.0")));
    }
}
