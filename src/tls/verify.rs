//! How a peer's certificate is judged, and what is remembered when it is
//! refused: the OpenSSL verify callback of both directions.
//!
//! E-MailRelay compatibility: its levels.
//! - no CA list: a certificate is asked for (the server asks the client
//!   too) and accepted whatever it is: encryption only;
//! - a CA list (`--*-tls-verify` file, directory or `<default>`): the chain
//!   must lead to it, and the server must get a client certificate;
//! - `--client-tls-verify-name`: the server's certificate must carry that
//!   name. 2.6.1 compares it with the subject's CN; we also accept it as a
//!   subjectAltName (DNS, with a `*.` first label, or IP), which 2.6.1
//!   refuses: modern certificates often carry their name there only.
//!
//! Version-1 certificates and a self-signed certificate given as its own CA
//! are OpenSSL's business and pass as in 2.6.1. We add
//! `X509_V_FLAG_PARTIAL_CHAIN` (see `context.rs`), so that any certificate
//! in the CA list, a smarthost's own leaf certificate too, is an anchor.
//!
//! The callback records the first refusal (which certificate, what was
//! wrong) in the connection's ex-data slot, for the log line.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};
use openssl::x509::{X509NameRef, X509Ref, X509StoreContext, X509StoreContextRef};

/// Which side the certificate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A client of our listener (`--server-tls-verify`).
    Client,
    /// The server we forward to (`--client-tls-verify`).
    Server,
}

impl Peer {
    /// The option that names the CA list, for hints.
    pub fn ca_option(self) -> &'static str {
        match self {
            Peer::Client => "--server-tls-verify",
            Peer::Server => "--client-tls-verify",
        }
    }
}

/// What one side checks.
#[derive(Clone, Debug)]
pub struct Policy {
    pub peer: Peer,
    /// False: encryption only, every certificate passes.
    pub checking: bool,
    /// `--client-tls-verify-name`.
    pub name: Option<String>,
}

/// A refused certificate, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub subject: String,
    pub issuer: String,
    /// 0 for the peer's own certificate, 1 for its issuer, ...
    pub depth: u32,
    /// What was wrong, OpenSSL's words or ours.
    pub reason: String,
    /// What to look at, if we can tell.
    pub hint: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "certificate [{}] issued by [{}]",
            self.subject, self.issuer
        )?;
        if self.depth > 0 {
            write!(f, " ({} up the chain)", self.depth)?;
        }
        write!(f, " refused: {}", self.reason)?;
        if let Some(hint) = &self.hint {
            write!(f, ": {hint}")?;
        }
        Ok(())
    }
}

/// The per-connection slot the callback writes into.
pub type Slot = OnceLock<Refusal>;

/// The index of [`Slot`] in every `SSL` we make; created once.
pub fn slot_index() -> Result<Index<Ssl, Slot>, ErrorStack> {
    static INDEX: OnceLock<Index<Ssl, Slot>> = OnceLock::new();
    if let Some(index) = INDEX.get() {
        return Ok(*index);
    }
    let index = Ssl::new_ex_index::<Slot>()?;
    Ok(*INDEX.get_or_init(|| index))
}

/// The refusal recorded on `ssl`, if any.
pub fn refusal(ssl: &SslRef) -> Option<Refusal> {
    let index = slot_index().ok()?;
    ssl.ex_data(index).and_then(|slot| slot.get().cloned())
}

/// The verify callback for a context with `policy`.
pub fn callback(
    policy: Arc<Policy>,
) -> impl Fn(bool, &mut X509StoreContextRef) -> bool + Send + Sync + 'static {
    move |ok, store| judge(&policy, ok, store)
}

fn judge(policy: &Policy, ok: bool, store: &mut X509StoreContextRef) -> bool {
    if !policy.checking {
        return true;
    }
    let depth = store.error_depth();
    if !ok {
        let error = store.error();
        let refusal = describe(
            store.current_cert(),
            depth,
            error.error_string().to_string(),
            hint(policy.peer, error.as_raw()),
        );
        record(store, refusal);
        return false;
    }
    if depth != 0 {
        return true;
    }
    let (Some(name), Some(cert)) = (&policy.name, store.current_cert()) else {
        return true;
    };
    if carries_name(cert, name) {
        return true;
    }
    let refusal = describe(
        Some(cert),
        0,
        format!("it does not carry the name [{name}]"),
        Some("see --client-tls-verify-name".into()),
    );
    record(store, refusal);
    false
}

fn describe(cert: Option<&X509Ref>, depth: u32, reason: String, hint: Option<String>) -> Refusal {
    let (subject, issuer) = cert
        .map(|c| (name_text(c.subject_name()), name_text(c.issuer_name())))
        .unwrap_or_default();
    Refusal {
        subject,
        issuer,
        depth,
        reason,
        hint,
    }
}

fn record(store: &X509StoreContextRef, refusal: Refusal) {
    let Ok(ssl_index) = X509StoreContext::ssl_idx() else {
        return;
    };
    let Ok(index) = slot_index() else { return };
    if let Some(slot) = store.ex_data(ssl_index).and_then(|ssl| ssl.ex_data(index)) {
        // The first refusal is the cause; later ones follow from it.
        let _ = slot.set(refusal);
    }
}

/// Advice for the verification errors that mean "not in your CA list".
fn hint(peer: Peer, code: i32) -> Option<String> {
    use openssl_sys as ffi;
    let option = peer.ca_option();
    match code {
        ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        | ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | ffi::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | ffi::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN => {
            Some(format!("its issuer is not in the CA list of {option}"))
        }
        ffi::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT => Some(format!(
            "it is self-signed and not in the CA list of {option}"
        )),
        _ => None,
    }
}

/// `CN=Alice, O=Example`: a name as the log shows it.
pub fn name_text(name: &X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{key}={value}")
        })
        .collect();
    parts.join(", ")
}

/// E-MailRelay compatibility: the subject's CN equal to `name`; or, our
/// addition, a subjectAltName matching it.
fn carries_name(cert: &X509Ref, name: &str) -> bool {
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .any(|e| e.data().to_string().is_ok_and(|v| v == name));
    if cn {
        return true;
    }
    let Some(alt_names) = cert.subject_alt_names() else {
        return false;
    };
    let ip: Option<IpAddr> = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    alt_names.iter().any(|alt| match (ip, alt.ipaddress()) {
        (Some(ip), Some(bytes)) => ip_bytes(ip) == bytes,
        (None, _) => alt.dnsname().is_some_and(|dns| dns_matches(dns, name)),
        _ => false,
    })
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// RFC 6125 in short: case-insensitive, a `*` only as the whole first label.
fn dns_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (
        pattern.trim_end_matches('.').to_ascii_lowercase(),
        name.trim_end_matches('.').to_ascii_lowercase(),
    );
    match pattern.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_and_wildcards() {
        assert!(dns_matches("mail.example.com", "MAIL.example.com."));
        assert!(dns_matches("*.example.com", "mail.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("mail.example.com", "example.com"));
    }

    #[test]
    fn refusals_read_as_sentences() {
        let refusal = Refusal {
            subject: "CN=Alice".into(),
            issuer: "CN=Trudy".into(),
            depth: 0,
            reason: "unable to get local issuer certificate".into(),
            hint: hint(
                Peer::Client,
                openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            ),
        };
        assert_eq!(
            refusal.to_string(),
            "certificate [CN=Alice] issued by [CN=Trudy] refused: unable to get local issuer \
             certificate: its issuer is not in the CA list of --server-tls-verify"
        );
        let up = Refusal {
            depth: 1,
            hint: None,
            reason: "certificate has expired".into(),
            ..refusal
        };
        assert_eq!(
            up.to_string(),
            "certificate [CN=Alice] issued by [CN=Trudy] (1 up the chain) refused: certificate has expired"
        );
    }
}
