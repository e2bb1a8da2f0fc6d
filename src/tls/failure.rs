//! What a failed handshake, or a failure on an encrypted stream, means, in
//! words an administrator can act on: whose certificate was refused and
//! why, which alert the peer sent, or that the two sides share no version.
//!
//! Every text starts with `tls error: `: E-MailRelay logs that, and its
//! test suite and people's log watchers look for it.
//!
//! A failure is a refusal when one side said no (a certificate refused by
//! us or by the peer, no version or cipher in common, no TLS at all): it
//! will not go away by trying again, so forwarding fails the message as
//! E-MailRelay does. A lost connection or a timeout is not.

use openssl::ssl::{self, ErrorCode, SslRef};
use openssl::x509::X509VerifyResult;

use super::verify::{self, Peer};
use super::TlsError;

/// Who the peer is, for the words.
#[derive(Clone, Debug)]
pub struct PeerName {
    pub peer: Peer,
    /// The forwarding host (client side); `None` on the listener.
    pub host: Option<String>,
}

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.peer, &self.host) {
            (Peer::Client, _) => f.write_str("the client"),
            (Peer::Server, Some(host)) => write!(f, "the server [{host}]"),
            (Peer::Server, None) => f.write_str("the server"),
        }
    }
}

/// A failed handshake on `ssl` as a [`TlsError::Failed`].
pub fn handshake(error: &ssl::Error, ssl: &SslRef, peer: &PeerName) -> TlsError {
    if let Some(refusal) = verify::refusal(ssl) {
        let whose = match peer.peer {
            Peer::Client => "client".to_string(),
            Peer::Server => peer.to_string().replacen("the ", "", 1),
        };
        return refused(format!("{whose} {refusal}"));
    }
    // Checks of OpenSSL's own (HTTPS host names) leave only the result.
    let result = ssl.verify_result();
    if result != X509VerifyResult::OK && first_reason(error) == Some("certificate verify failed") {
        return refused(format!(
            "certificate of {peer} refused: {}",
            result.error_string()
        ));
    }
    if error.io_error().is_none()
        && (error.code() == ErrorCode::SYSCALL || error.code() == ErrorCode::ZERO_RETURN)
    {
        return lost(format!("{peer} closed the connection during the handshake"));
    }
    stream(error, peer)
}

/// A failure on an established stream, or a handshake failure that the
/// verify callback did not explain.
pub fn stream(error: &ssl::Error, peer: &PeerName) -> TlsError {
    if let Some(io) = error.io_error() {
        return lost(format!("connection to {peer} lost: {io}"));
    }
    if error.code() == ErrorCode::SYSCALL || error.code() == ErrorCode::ZERO_RETURN {
        return lost(format!("{peer} closed the connection"));
    }
    from_reason(first_reason(error).unwrap_or("unknown error"), peer)
}

/// OpenSSL's reason string for the first error of `error`.
fn first_reason(error: &ssl::Error) -> Option<&str> {
    error
        .ssl_error()
        .and_then(|stack| stack.errors().first())
        .and_then(|e| e.reason())
}

/// True if `error` (from a handshake or an encrypted stream) is a refusal.
pub fn is_refusal(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
        .is_some_and(|e| matches!(e, TlsError::Failed { refusal: true, .. }))
}

fn refused(text: String) -> TlsError {
    TlsError::Failed {
        refusal: true,
        text,
    }
}

fn lost(text: String) -> TlsError {
    TlsError::Failed {
        refusal: false,
        text,
    }
}

/// OpenSSL's reason string for the first error, turned into a sentence.
fn from_reason(reason: &str, peer: &PeerName) -> TlsError {
    if let Some((_, alert)) = reason.split_once("alert ") {
        let hint = alert_hint(alert, peer.peer);
        return refused(format!(
            "{peer} refused the handshake with alert [{alert}]{hint}"
        ));
    }
    match reason {
        "peer did not return a certificate" => refused(format!(
            "{peer} sent no certificate, and {} requires one",
            peer.peer.ca_option()
        )),
        "unsupported protocol" | "no protocols available" | "version too low" => refused(format!(
            "no TLS version in common with {peer} (see --tls-config): OpenSSL says [{reason}]"
        )),
        "no shared cipher" | "no suitable signature algorithm" | "no cipher match" => refused(
            format!("no cipher in common with {peer}: OpenSSL says [{reason}]"),
        ),
        "wrong version number"
        | "http request"
        | "https proxy request"
        | "packet length too long"
        | "record layer failure" => refused(format!(
            "{peer} does not speak TLS here: OpenSSL says [{reason}]"
        )),
        "unexpected eof while reading" => lost(format!("{peer} closed the connection")),
        _ => refused(format!("handshake with {peer} failed: {reason}")),
    }
}

/// What an alert from the peer usually means.
fn alert_hint(alert: &str, peer: Peer) -> &'static str {
    const CERTIFICATE: [&str; 7] = [
        "unknown ca",
        "bad certificate",
        "certificate unknown",
        "unsupported certificate",
        "certificate expired",
        "certificate revoked",
        "access denied",
    ];
    match alert {
        "certificate required" => ": it wants a client certificate (--client-tls-certificate)",
        a if CERTIFICATE.contains(&a) => match peer {
            Peer::Server => ": it does not accept our certificate (--client-tls-certificate)",
            Peer::Client => ": it does not accept our certificate (--server-tls-certificate)",
        },
        "protocol version" => ": no TLS version in common (see --tls-config)",
        "handshake failure" | "insufficient security" => ": no cipher or version in common",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reason: &str, peer: Peer) -> (String, bool) {
        let name = PeerName {
            peer,
            host: Some("mail.example.com".into()),
        };
        match from_reason(reason, &name) {
            TlsError::Failed { refusal, text } => (text, refusal),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alerts_name_the_peer_and_the_likely_cause() {
        assert_eq!(
            text("tlsv1 alert unknown ca", Peer::Client),
            (
                "the client refused the handshake with alert [unknown ca]: it does not accept \
                 our certificate (--server-tls-certificate)"
                    .into(),
                true
            )
        );
        assert_eq!(
            text("tlsv13 alert certificate required", Peer::Server).0,
            "the server [mail.example.com] refused the handshake with alert [certificate \
             required]: it wants a client certificate (--client-tls-certificate)"
        );
    }

    #[test]
    fn protocol_mismatches_are_refusals_and_eof_is_not() {
        assert_eq!(
            text("unsupported protocol", Peer::Client),
            (
                "no TLS version in common with the client (see --tls-config): OpenSSL says \
                 [unsupported protocol]"
                    .into(),
                true
            )
        );
        assert!(text("wrong version number", Peer::Server).1);
        assert_eq!(
            text("unexpected eof while reading", Peer::Server),
            (
                "the server [mail.example.com] closed the connection".into(),
                false
            )
        );
    }

    #[test]
    fn refusal_is_seen_through_io_errors() {
        let e = std::io::Error::other(refused("x".into()));
        assert!(is_refusal(&e));
        assert_eq!(e.to_string(), "tls error: x");
        assert!(!is_refusal(&std::io::Error::other(lost("y".into()))));
        assert!(!is_refusal(&std::io::Error::other("z")));
    }
}
