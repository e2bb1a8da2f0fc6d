//! Optional authentication of the HTTP endpoint (`--http-auth <file>`),
//! for reaching the status page, the metrics and the queue from other
//! machines: HTTP Basic (RFC 7617) or Bearer tokens (RFC 6750), from an
//! E-MailRelay secrets file's `server` lines with two types of our own:
//!
//! ```text
//! # <side> <type> <name> <secret>     (name and secret xtext, as "plain")
//! server basic  alice  my+20password
//! server bearer prometheus 3f9c0a...
//! ```
//!
//! Other lines (comments, `client` lines, `server plain`... for SMTP) are
//! left to their own readers, so one file can serve both. With the option
//! every request but `GET /healthz` (load balancers' probes) must carry
//! one of these; an authenticated peer passes the queue's local-address
//! rule too.
//!
//! Must not: log or show a secret; compare secrets in variable time.

use std::path::Path;

use base64::Engine;
use emailrelay_proto::smtp::xtext_decode;
use hyper::header::{HeaderMap, AUTHORIZATION};
use subtle::ConstantTimeEq;

/// Why a `--http-auth` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The file cannot be read.
    #[error("cannot read http secrets file {path}: {reason}")]
    Read { path: String, reason: String },
    /// A `server basic` or `server bearer` line is not whole.
    #[error(
        "http secrets file {path} line {line}: expecting 'server basic|bearer <name> <secret>'"
    )]
    Line { path: String, line: usize },
    /// Nothing to log in with.
    #[error("http secrets file {path}: no 'server basic' or 'server bearer' lines")]
    Empty { path: String },
}

/// The names and secrets read from the file.
#[derive(Clone, Default)]
pub struct HttpAuth {
    /// (name, password) for Basic.
    basic: Vec<(String, String)>,
    /// (name, token) for Bearer.
    bearer: Vec<(String, String)>,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field(
                "basic",
                &self.basic.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "bearer",
                &self.bearer.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl HttpAuth {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<HttpAuth, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|e| AccessError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        HttpAuth::parse(&text, &path.display().to_string())
    }

    /// Parses a file's text; `path` is for the errors.
    pub fn parse(text: &str, path: &str) -> Result<HttpAuth, AccessError> {
        let mut auth = HttpAuth::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            let words: Vec<&str> = line.split_whitespace().collect();
            let kind = match words.as_slice() {
                [side, kind, ..] if side.eq_ignore_ascii_case("server") => {
                    kind.to_ascii_lowercase()
                }
                _ => continue,
            };
            let list = match kind.as_str() {
                "basic" => &mut auth.basic,
                "bearer" => &mut auth.bearer,
                _ => continue,
            };
            let [_, _, name, secret] = words.as_slice() else {
                return Err(AccessError::Line {
                    path: path.to_string(),
                    line: n + 1,
                });
            };
            list.push((xtext_decode(name), xtext_decode(secret)));
        }
        if auth.basic.is_empty() && auth.bearer.is_empty() {
            return Err(AccessError::Empty {
                path: path.to_string(),
            });
        }
        Ok(auth)
    }

    /// The name the request authenticated as, if it did.
    pub fn check(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, credentials) = value.trim().split_once(' ')?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (name, password) = decoded.split_once(':')?;
            return find(&self.basic, |(n, p)| {
                same(n.as_bytes(), name.as_bytes()) & same(p.as_bytes(), password.as_bytes())
            });
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return find(&self.bearer, |(_, t)| {
                same(t.as_bytes(), credentials.as_bytes())
            });
        }
        None
    }

    /// The `WWW-Authenticate` challenge of a 401.
    pub fn challenge(&self) -> &'static str {
        if self.basic.is_empty() {
            "Bearer realm=\"emailrelay\""
        } else {
            "Basic realm=\"emailrelay\", charset=\"UTF-8\""
        }
    }
}

/// The name of the first entry that `matches`, every entry compared.
fn find(
    entries: &[(String, String)],
    matches: impl Fn(&(String, String)) -> bool,
) -> Option<String> {
    let mut found = None;
    for entry in entries {
        if matches(entry) && found.is_none() {
            found = Some(entry.0.clone());
        }
    }
    found
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const FILE: &str = "# shared with --server-auth\n\
        server plain carol e+3Dmc2\n\
        client plain bob secret\n\
        server basic alice my+20password # the admin\n\
        SERVER Bearer prometheus tok3n\n";

    fn with(value: &str) -> HeaderMap {
        HeaderMap::from_iter([(AUTHORIZATION, HeaderValue::from_str(value).unwrap())])
    }

    fn basic(user_pass: &str) -> HeaderMap {
        with(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        ))
    }

    #[test]
    fn basic_and_bearer_lines_are_read_and_others_left_alone() {
        let auth = HttpAuth::parse(FILE, "f").unwrap();
        assert_eq!(
            auth.check(&basic("alice:my password")).as_deref(),
            Some("alice")
        );
        assert_eq!(auth.check(&basic("alice:my+20password")), None);
        assert_eq!(auth.check(&basic("carol:e=mc2")), None);
        assert_eq!(
            auth.check(&with("Bearer tok3n")).as_deref(),
            Some("prometheus")
        );
        assert_eq!(
            auth.check(&with("bearer  tok3n ")).as_deref(),
            Some("prometheus")
        );
        assert_eq!(auth.check(&with("Bearer tok3")), None);
        assert_eq!(auth.check(&with("Basic !!!")), None);
        assert_eq!(auth.check(&with("Digest x")), None);
        assert_eq!(auth.check(&HeaderMap::new()), None);
        assert!(auth.challenge().starts_with("Basic"));
        assert!(!format!("{auth:?}").contains("password"));
    }

    #[test]
    fn a_broken_or_empty_file_says_why() {
        let e = HttpAuth::parse("server basic alice\n", "/etc/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "http secrets file /etc/x line 1: expecting 'server basic|bearer <name> <secret>'"
        );
        let e = HttpAuth::parse("server plain a b\n", "/etc/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "http secrets file /etc/x: no 'server basic' or 'server bearer' lines"
        );
        let only_bearer = HttpAuth::parse("server bearer p t\n", "f").unwrap();
        assert_eq!(only_bearer.challenge(), "Bearer realm=\"emailrelay\"");
    }
}
