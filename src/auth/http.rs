//! Just enough HTTP/1.1 for OAuth 2.0 token endpoints (RFC 6749 section
//! 3.2): one form-encoded POST per connection, a JSON answer, `http://`
//! (tests, local proxies) or `https://` with the system's CA roots and the
//! host name checked.
//!
//! Why not a general HTTP client crate: a token request is one POST, and
//! this keeps it on the relay's own connect, SOCKS and rustls code rather
//! than a second TLS stack and some forty more dependencies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most of a response we read.
const MAX_RESPONSE: usize = 256 * 1024;

/// Why a URL is refused or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Neither `http://` nor `https://`.
    #[error("\"{0}\" is not an http:// or https:// URL")]
    NotHttp(String),
    /// A port that is not a number.
    #[error("\"{0}\" has a bad port number")]
    BadPort(String),
    /// Nothing between the scheme and the path.
    #[error("\"{0}\" has no host")]
    NoHost(String),
    /// No whole answer within the time limit.
    #[error("no answer from {host} in {secs}s")]
    Timeout { host: String, secs: u64 },
    /// The connection could not be made.
    #[error(transparent)]
    Connect(#[from] crate::net::ConnectError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The connection failed on the way.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// More than [`MAX_RESPONSE`] octets.
    #[error("response too large")]
    TooLarge,
    /// The connection closed inside the header.
    #[error("truncated HTTP response")]
    Truncated,
    /// The first line has no status code.
    #[error("bad HTTP status line")]
    StatusLine,
    /// A chunked body that does not decode.
    #[error("bad chunked encoding")]
    Chunked,
    /// A body that is not JSON: the status and the body's start.
    #[error("HTTP {status}: not JSON: {start}")]
    NotJson { status: u16, start: String },
}

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    /// Parses an absolute URL; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Url, HttpError> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(HttpError::NotHttp(text.to_string()));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let default_port = if https { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (
                host,
                port.parse()
                    .map_err(|_| HttpError::BadPort(text.to_string()))?,
            ),
            _ => (authority, default_port),
        };
        if host.is_empty() {
            return Err(HttpError::NoHost(text.to_string()));
        }
        Ok(Url {
            https,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// POSTs `form` and returns the status code and the JSON body.
pub async fn post_form(
    url: &Url,
    form: &[(&str, &str)],
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> Result<(u16, serde_json::Value), HttpError> {
    tokio::time::timeout(timeout, exchange(url, form, ca_file))
        .await
        .map_err(|_| HttpError::Timeout {
            host: url.host.clone(),
            secs: timeout.as_secs(),
        })?
}

async fn exchange(
    url: &Url,
    form: &[(&str, &str)],
    ca_file: Option<&std::path::Path>,
) -> Result<(u16, serde_json::Value), HttpError> {
    let target = format!("{}:{}", url.host, url.port);
    let mut stream = crate::net::connect(&target, None, Duration::from_secs(30)).await?;
    if url.https {
        let tls = match ca_file {
            Some(ca) => crate::tls::ClientTls::web_trusting(ca)?,
            None => crate::tls::ClientTls::web()?,
        };
        let host = url.host.trim_start_matches('[').trim_end_matches(']');
        stream = tls.connect(stream, host).await?.0;
    }
    let body = encode_form(form);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: emailrelay-rs/{}\r\nAccept: application/json\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.path,
        url.host,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // On the heap: this future sits inside every forwarding future.
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify still said all.
            Err(_) if !response.is_empty() => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        if response.len() > MAX_RESPONSE {
            return Err(HttpError::TooLarge);
        }
    }
    parse_response(&response)
}

/// Splits status, headers and body; undoes chunked encoding.
fn parse_response(response: &[u8]) -> Result<(u16, serde_json::Value), HttpError> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(HttpError::Truncated)?;
    let head = String::from_utf8_lossy(&response[..split]);
    let mut body = response[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or(HttpError::StatusLine)?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or(HttpError::Chunked)?;
    }
    let json = serde_json::from_slice(&body).map_err(|_| HttpError::NotJson {
        status,
        start: String::from_utf8_lossy(&body).chars().take(120).collect(),
    })?;
    Ok((status, json))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// `application/x-www-form-urlencoded` (WHATWG URL section 5.2).
pub fn encode_form(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_and_explicit_ports() {
        let u = Url::parse("https://login.microsoftonline.com/common/oauth2/v2.0/token").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (
                true,
                "login.microsoftonline.com",
                443,
                "/common/oauth2/v2.0/token"
            )
        );
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8080, "/"));
        let u = Url::parse("http://[::1]:9/t").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 9));
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http://x:port/").is_err());
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            encode_form(&[
                ("scope", "https://mail.google.com/ offline_access"),
                ("a", "b+c")
            ]),
            "scope=https%3A%2F%2Fmail.google.com%2F%20offline_access&a=b%2Bc"
        );
    }

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(
            parse_response(plain).unwrap(),
            (200, serde_json::json!({"a": 1}))
        );
        let chunked =
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:2}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (400, serde_json::json!({"a": 2}))
        );
        assert!(parse_response(b"HTTP/1.1 502 Bad\r\n\r\n<html>")
            .unwrap_err()
            .to_string()
            .contains("HTTP 502: not JSON"));
    }
}
