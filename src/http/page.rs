//! The status page itself: `GET /` (the HTML, with this endpoint's
//! anti-forgery token in it), `/status.js` and `/status.css`, all inside
//! the binary (hand-written, no build step, nothing fetched from
//! elsewhere at run time), and the token check for the page's actions.
//!
//! Every answer forbids framing (no other site can put our buttons under
//! a visitor's clicks) and scripts or styles from anywhere but here.
//!
//! Must not: put anything but the token into the page (the data comes
//! from `/status.json` and `/status/queue`, under their own rules).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};

use super::with_type;

const HTML: &str = include_str!("status/index.html");
const SCRIPT: &str = include_str!("status/status.js");
const STYLE: &str = include_str!("status/status.css");

/// The header a page action carries its token in. A custom header also
/// means no form and no "simple" cross-site request can carry it.
pub const TOKEN_HEADER: &str = "x-status-token";

/// One of the page's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    Html,
    Script,
    Style,
}

/// The answer for `asset`; the HTML carries `token`.
pub fn answer(asset: Asset, token: &str) -> Response<Full<Bytes>> {
    let (content_type, body) = match asset {
        Asset::Html => (
            "text/html; charset=utf-8",
            Bytes::from(HTML.replace("{{TOKEN}}", token)),
        ),
        Asset::Script => (
            "text/javascript; charset=utf-8",
            Bytes::from_static(SCRIPT.as_bytes()),
        ),
        Asset::Style => (
            "text/css; charset=utf-8",
            Bytes::from_static(STYLE.as_bytes()),
        ),
    };
    let mut response = with_type(StatusCode::OK, content_type, body);
    no_store(&mut response);
    response
}

/// Marks an answer not to be cached, framed, or sniffed, and the page's
/// scripts as ours only.
pub fn no_store(response: &mut Response<Full<Bytes>>) {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
        ),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// A fresh token: 32 random bytes in hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        // No randomness: a token nobody can send; the page's actions are
        // refused rather than made guessable.
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True if the request carries the page's token.
pub fn token_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(sent) = headers.get(TOKEN_HEADER) else {
        return false;
    };
    !token.is_empty() && subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_token_and_the_token_is_checked() {
        let token = new_token();
        assert_eq!(token.len(), 64);
        assert_ne!(token, new_token());
        let page = answer(Asset::Html, &token);
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        assert!(HTML.contains("{{TOKEN}}"));
        let mut headers = HeaderMap::new();
        assert!(!token_ok(&headers, &token));
        headers.insert(TOKEN_HEADER, HeaderValue::from_str(&token).unwrap());
        assert!(token_ok(&headers, &token));
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("0000"));
        assert!(!token_ok(&headers, &token));
        headers.insert(TOKEN_HEADER, HeaderValue::from_static(""));
        assert!(!token_ok(&headers, ""));
    }
}
