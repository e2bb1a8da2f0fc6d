//! How the client judges the server's certificate: E-MailRelay's two
//! levels, encryption only (no `--client-tls-verify`) and chain checking
//! against a CA list, with the name checked only against
//! `--client-tls-verify-name`.
//!
//! Either way the handshake signatures are verified with the provider's
//! algorithms, so "encryption only" still means the peer holds the key of
//! the certificate it showed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// The client's certificate policy.
#[derive(Debug)]
pub struct ServerVerifier {
    /// `None`: encryption only.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// The name the certificate must carry; `None`: any name.
    name: Option<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerVerifier {
    /// Accepts any certificate (E-MailRelay's default without `--client-tls-verify`).
    pub fn encryption_only(provider: Arc<CryptoProvider>) -> ServerVerifier {
        ServerVerifier {
            chain: None,
            name: None,
            provider,
        }
    }

    /// Checks the chain against `roots`, and the name if one is given.
    pub fn checking(
        roots: RootCertStore,
        name: Option<ServerName<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<ServerVerifier, rustls::client::VerifierBuilderError> {
        let chain =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()?;
        Ok(ServerVerifier {
            chain: Some(chain),
            name,
            provider,
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        sni_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        let name = self.name.as_ref().unwrap_or(sni_name);
        match chain.verify_server_cert(end_entity, intermediates, name, ocsp_response, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.name.is_none() => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
