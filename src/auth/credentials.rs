//! App credentials that sign instead of sending a secret: a certificate's
//! key signing a client assertion (RFC 7523 section 2.2, as Microsoft
//! Entra takes it for `client_credentials`), and a Google service
//! account's key signing a JWT bearer grant (RFC 7523 section 2.1, with
//! domain-wide delegation: `sub` is the mailbox).
//!
//! JWTs are RS256 (RFC 7515, RFC 7518 section 3.3) over base64url without
//! padding. Keys are read once, at startup (before the privilege drop, so
//! a root-only key file works); signing uses OpenSSL, already linked for
//! TLS. Must not log a key or an assertion.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::x509::X509;

/// How long a client assertion is valid: Microsoft takes up to ten
/// minutes' skew; five minutes' lifetime is plenty for one token request.
pub const ASSERTION_LIFETIME: u64 = 300;
/// Google's JWT bearer grant takes at most an hour.
pub const GOOGLE_LIFETIME: u64 = 3600;

/// A key or certificate that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file's content is not what it should be.
    #[error("{}: {reason}", path.display())]
    Content { path: PathBuf, reason: String },
    /// OpenSSL could not sign.
    #[error("cannot sign the assertion: {0}")]
    Sign(String),
}

/// A certificate and its private key, for client assertions.
pub struct Certificate {
    key: PKey<Private>,
    /// base64url SHA-256 of the certificate's DER (`x5t#S256`).
    thumbprint_sha256: String,
    /// base64url SHA-1 of the DER (`x5t`): what Entra's documentation
    /// shows, and still what some tenants' tooling checks.
    thumbprint_sha1: String,
    /// The certificate's notAfter, as Unix time.
    pub not_after: i64,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Certificate(x5t#S256={})", self.thumbprint_sha256)
    }
}

impl Certificate {
    /// A PEM certificate and a PEM key (the same file may hold both).
    pub fn from_pem(certificate: &Path, key: &Path) -> Result<Certificate, CredentialError> {
        let cert_pem = read(certificate)?;
        let cert = X509::from_pem(&cert_pem).map_err(|e| content(certificate, "certificate", e))?;
        let key_pem = read(key)?;
        let key_value =
            PKey::private_key_from_pem(&key_pem).map_err(|e| content(key, "private key", e))?;
        Certificate::new(cert, key_value, certificate)
    }

    /// A PKCS#12 file with the key and certificate.
    pub fn from_pkcs12(path: &Path, password: &str) -> Result<Certificate, CredentialError> {
        let der = read(path)?;
        let parsed = openssl::pkcs12::Pkcs12::from_der(&der)
            .and_then(|p| p.parse2(password))
            .map_err(|e| content(path, "PKCS#12 file (or its password)", e))?;
        let (Some(cert), Some(key)) = (parsed.cert, parsed.pkey) else {
            return Err(CredentialError::Content {
                path: path.to_path_buf(),
                reason: "the PKCS#12 file lacks the certificate or the key".into(),
            });
        };
        Certificate::new(cert, key, path)
    }

    fn new(cert: X509, key: PKey<Private>, path: &Path) -> Result<Certificate, CredentialError> {
        let matches = cert
            .public_key()
            .map(|public| public.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(CredentialError::Content {
                path: path.to_path_buf(),
                reason: "the private key is not the certificate's".into(),
            });
        }
        if key.rsa().is_err() {
            return Err(CredentialError::Content {
                path: path.to_path_buf(),
                reason: "the key is not an RSA key (RS256 needs one)".into(),
            });
        }
        let digest = |md| {
            cert.digest(md)
                .map(|d| URL_SAFE_NO_PAD.encode(d))
                .map_err(|e| CredentialError::Sign(e.to_string()))
        };
        Ok(Certificate {
            thumbprint_sha256: digest(MessageDigest::sha256())?,
            thumbprint_sha1: digest(MessageDigest::sha1())?,
            not_after: unix_time(cert.not_after()).unwrap_or(i64::MAX),
            key,
        })
    }

    /// A client assertion for `client_id` at the token endpoint
    /// `audience`, valid from `now` (Unix time) for [`ASSERTION_LIFETIME`].
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: u64,
    ) -> Result<String, CredentialError> {
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t#S256": self.thumbprint_sha256,
            "x5t": self.thumbprint_sha1,
        });
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti()?,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        sign(&self.key, &header, &claims)
    }
}

/// A Google service account's JSON key.
pub struct ServiceAccount {
    pub client_email: String,
    key_id: String,
    key: PKey<Private>,
    /// The key file's `token_uri`.
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccount({})", self.client_email)
    }
}

impl ServiceAccount {
    /// Reads a key file as the Google Cloud console downloads it.
    pub fn load(path: &Path) -> Result<ServiceAccount, CredentialError> {
        let text = read(path)?;
        let bad = |reason: &str| CredentialError::Content {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&text).map_err(|_| bad("not a JSON service account key"))?;
        if json["type"].as_str() != Some("service_account") {
            return Err(bad("\"type\" is not \"service_account\""));
        }
        let field = |name: &str| {
            json[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("no \"{name}\"")))
        };
        let pem = field("private_key")?;
        let key = PKey::private_key_from_pem(pem.as_bytes())
            .map_err(|e| content(path, "private_key", e))?;
        Ok(ServiceAccount {
            client_email: field("client_email")?,
            key_id: field("private_key_id").unwrap_or_default(),
            token_uri: field("token_uri")
                .unwrap_or_else(|_| "https://oauth2.googleapis.com/token".into()),
            key,
        })
    }

    /// The JWT bearer grant's assertion: acting for `mailbox` with `scope`
    /// at the token endpoint `audience`, from `now` (Unix time).
    pub fn assertion(
        &self,
        mailbox: &str,
        scope: &str,
        audience: &str,
        now: u64,
    ) -> Result<String, CredentialError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if !self.key_id.is_empty() {
            header["kid"] = self.key_id.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": mailbox,
            "scope": scope,
            "aud": audience,
            "iat": now,
            "exp": now + GOOGLE_LIFETIME,
        });
        sign(&self.key, &header, &claims)
    }
}

/// `base64url(header) . base64url(claims) . base64url(RS256 signature)`.
pub fn sign(
    key: &PKey<Private>,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<String, CredentialError> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let failed = |e: openssl::error::ErrorStack| CredentialError::Sign(e.to_string());
    let mut signer = Signer::new(MessageDigest::sha256(), key).map_err(failed)?;
    signer.update(input.as_bytes()).map_err(failed)?;
    let signature = signer.sign_to_vec().map_err(failed)?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// A certificate's expiry from a PEM file, for a check without its key.
pub fn pem_not_after(path: &Path) -> Option<i64> {
    let pem = std::fs::read(path).ok()?;
    let cert = X509::from_pem(&pem).ok()?;
    unix_time(cert.not_after())
}

/// A unique token id: 16 random octets.
fn jti() -> Result<String, CredentialError> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).map_err(|e| CredentialError::Sign(e.to_string()))?;
    Ok(STANDARD
        .encode(bytes)
        .trim_end_matches('=')
        .replace(['+', '/'], "-"))
}

fn unix_time(time: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(time).ok()?;
    Some(i64::from(diff.days) * 86400 + i64::from(diff.secs))
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|source| CredentialError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn content(path: &Path, what: &str, e: openssl::error::ErrorStack) -> CredentialError {
    let first = e
        .errors()
        .first()
        .and_then(|e| e.reason())
        .unwrap_or("does not parse")
        .to_string();
    CredentialError::Content {
        path: path.to_path_buf(),
        reason: format!("not a usable {what}: {first}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;
    use openssl::sign::Verifier;

    /// A self-signed certificate and its key, written as PEM in `dir`.
    fn make_cert(dir: &Path, days: u32) -> (PathBuf, PathBuf, PKey<Private>) {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "relay-app").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(days).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let (c, k) = (dir.join("app.crt"), dir.join("app.key"));
        std::fs::write(&c, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&k, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (c, k, key)
    }

    fn part(jwt: &str, n: usize) -> serde_json::Value {
        let text = URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(n).unwrap())
            .unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    fn verifies(jwt: &str, key: &PKey<Private>) -> bool {
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let public = PKey::public_key_from_pem(&key.public_key_to_pem().unwrap()).unwrap();
        let mut v = Verifier::new(MessageDigest::sha256(), &public).unwrap();
        v.update(input.as_bytes()).unwrap();
        v.verify(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap()
    }

    #[test]
    fn a_client_assertion_carries_the_thumbprint_and_claims_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, key) = make_cert(dir.path(), 30);
        let cert = Certificate::from_pem(&c, &k).unwrap();
        let url = "https://login.example/t/oauth2/v2.0/token";
        let jwt = cert.assertion("cid", url, 1_800_000_000).unwrap();
        let header = part(&jwt, 0);
        assert_eq!(header["alg"], "RS256");
        let der = X509::from_pem(&std::fs::read(&c).unwrap())
            .unwrap()
            .to_der()
            .unwrap();
        let sha = openssl::sha::sha256(&der);
        assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(sha));
        let claims = part(&jwt, 1);
        assert_eq!(
            (&claims["aud"], &claims["iss"], &claims["sub"]),
            (&url.into(), &"cid".into(), &"cid".into())
        );
        assert_eq!(claims["nbf"], 1_800_000_000u64);
        assert_eq!(claims["exp"], 1_800_000_000u64 + ASSERTION_LIFETIME);
        assert!(claims["jti"].as_str().unwrap().len() >= 20);
        assert_ne!(
            part(&cert.assertion("cid", url, 1).unwrap(), 1)["jti"],
            claims["jti"],
            "a new jti every time"
        );
        assert!(verifies(&jwt, &key));
        // Thirty days, give or take the clock.
        let left = cert.not_after - chrono::Utc::now().timestamp();
        assert!((29 * 86400..=30 * 86400 + 60).contains(&left), "{left}");
    }

    #[test]
    fn pkcs12_and_mismatched_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, key) = make_cert(dir.path(), 2);
        let x509 = X509::from_pem(&std::fs::read(&c).unwrap()).unwrap();
        let p12 = openssl::pkcs12::Pkcs12::builder()
            .name("app")
            .pkey(&key)
            .cert(&x509)
            .build2("pw")
            .unwrap();
        let p = dir.path().join("app.p12");
        std::fs::write(&p, p12.to_der().unwrap()).unwrap();
        let cert = Certificate::from_pkcs12(&p, "pw").unwrap();
        assert!(verifies(&cert.assertion("a", "b", 0).unwrap(), &key));
        let e = Certificate::from_pkcs12(&p, "wrong")
            .unwrap_err()
            .to_string();
        assert!(e.contains("PKCS#12 file (or its password)"), "{e}");
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let (_, k2, _) = make_cert(&other, 2);
        let e = Certificate::from_pem(&c, &k2).unwrap_err().to_string();
        assert!(e.contains("not the certificate's"), "{e}");
        let e = Certificate::from_pem(&k, &k).unwrap_err().to_string();
        assert!(e.contains("not a usable certificate"), "{e}");
    }

    #[test]
    fn a_service_account_assertion_acts_for_the_mailbox() {
        let dir = tempfile::tempdir().unwrap();
        let (_, k, key) = make_cert(dir.path(), 2);
        let json = serde_json::json!({
            "type": "service_account",
            "client_email": "relay@proj.iam.gserviceaccount.com",
            "private_key_id": "kid1",
            "private_key": std::fs::read_to_string(&k).unwrap(),
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        let path = dir.path().join("sa.json");
        std::fs::write(&path, json.to_string()).unwrap();
        let sa = ServiceAccount::load(&path).unwrap();
        let jwt = sa
            .assertion(
                "printer@example.com",
                "https://mail.google.com/",
                "aud",
                100,
            )
            .unwrap();
        assert_eq!(part(&jwt, 0)["kid"], "kid1");
        let claims = part(&jwt, 1);
        assert_eq!(claims["iss"], "relay@proj.iam.gserviceaccount.com");
        assert_eq!(claims["sub"], "printer@example.com");
        assert_eq!(claims["scope"], "https://mail.google.com/");
        assert_eq!(
            (&claims["iat"], &claims["exp"]),
            (&100.into(), &3700.into())
        );
        assert!(verifies(&jwt, &key));
        std::fs::write(&path, "{\"type\":\"authorized_user\"}").unwrap();
        let e = ServiceAccount::load(&path).unwrap_err().to_string();
        assert!(e.contains("not \"service_account\""), "{e}");
    }
}
