//! Who may ask: the `Host` a request names (against DNS rebinding) and,
//! for the requests that change something (`POST`, `DELETE`), proof that
//! a browser sent it from our own origin (against cross-site requests).
//!
//! DNS rebinding: a page at `http://evil.example:9025/` whose name the
//! attacker re-points at 127.0.0.1 reaches this endpoint from the victim's
//! browser with `Host: evil.example:9025`. So a name in `Host` must be one
//! the relay answers to: `localhost`, its `--domain` (by default the
//! machine's canonical name) or that name's first label. An address
//! (`127.0.0.1:9025`, `[::1]:9025`, a load balancer's probe of the
//! relay's address) is always fine: rebinding needs a name. A request
//! without `Host` (HTTP/1.0 monitors) comes from no browser and is fine.
//!
//! Cross-site requests: a browser marks a request it sends for a page
//! with `Origin` (every `POST` and `DELETE` since 2019-2020), with
//! `Sec-Fetch-Site`, or for an HTML form with the form's `Content-Type`.
//! A state-changing request with any of these marks must show our origin:
//! `Origin` naming the `Host` it was sent to, `Sec-Fetch-Site:
//! same-origin`; one with a form's `Content-Type` and neither header
//! (a browser too old to send `Origin`) is refused. `curl -X POST` and
//! scripts carry none of the marks and go on as before. `DELETE` cannot
//! cross sites at all without a CORS preflight, which this endpoint never
//! answers.
//!
//! Must not: look at anything but the request's head.

use std::net::IpAddr;

use hyper::header::{HeaderMap, CONTENT_TYPE, HOST, ORIGIN};

/// The names a `Host` header may give besides an address: `localhost` and
/// each of `names` (the `--domain`) with its first label on its own.
pub fn host_names(names: &[String]) -> Vec<String> {
    let mut all = vec!["localhost".to_string()];
    for name in names {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || name.parse::<IpAddr>().is_ok() {
            continue;
        }
        let first = name.split('.').next().unwrap_or_default().to_string();
        all.push(name);
        all.push(first);
    }
    all.sort();
    all.dedup();
    all
}

/// True if the request's `Host` (absent, an address, or one of `names`
/// from [`host_names`]) is one this endpoint answers to.
pub fn host_allowed(headers: &HeaderMap, names: &[String]) -> bool {
    let Some(host) = headers.get(HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    match split_authority(host) {
        Some(Host::Address) => true,
        Some(Host::Name(name)) => names.contains(&name),
        None => false,
    }
}

/// Why a state-changing request is refused as cross-origin, or `None` if
/// it may go on (see the module documentation).
pub fn cross_origin(headers: &HeaderMap) -> Option<String> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let origin = text(ORIGIN.as_str());
    let fetch_site = text("sec-fetch-site");
    if let Some(site) = &fetch_site {
        if !site.eq_ignore_ascii_case("same-origin") {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
    }
    if let Some(origin) = &origin {
        let host = text(HOST.as_str()).unwrap_or_default();
        let authority = origin
            .split_once("://")
            .map(|(_, a)| a.trim_end_matches('/'));
        if !authority.is_some_and(|a| !host.is_empty() && a.eq_ignore_ascii_case(&host)) {
            return Some(format!("Origin: {origin}"));
        }
        return None;
    }
    if fetch_site.is_some() {
        return None;
    }
    match text(CONTENT_TYPE.as_str()) {
        Some(t) if is_form_type(&t) => Some(format!("a form's Content-Type ({t}) without Origin")),
        _ => None,
    }
}

/// The three content types an HTML form (or a "simple" cross-site fetch)
/// can send without a CORS preflight.
fn is_form_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    ]
    .iter()
    .any(|t| essence.eq_ignore_ascii_case(t))
}

enum Host {
    Address,
    /// Lower case, without a trailing dot.
    Name(String),
}

/// `host[:port]`, `[v6]:port` or `v4:port` as a `Host` header gives it.
fn split_authority(authority: &str) -> Option<Host> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            return match after {
                "" => Some(Host::Address),
                p => p
                    .strip_prefix(':')
                    .filter(|p| valid_port(p))
                    .map(|_| Host::Address),
            };
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if port.is_some_and(|p| !valid_port(p)) || host.is_empty() {
        return None;
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some(Host::Address);
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    name.split('.').all(label).then_some(Host::Name(name))
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn names_are_localhost_the_domain_and_its_first_label() {
        let names = host_names(&["Relay1.Example.COM.".into()]);
        assert_eq!(names, ["localhost", "relay1", "relay1.example.com"]);
        assert_eq!(host_names(&["127.0.0.1".into()]), ["localhost"]);
    }

    #[test]
    fn hosts_that_rebinding_could_send_are_refused() {
        let names = host_names(&["relay1.example.com".into()]);
        for good in [
            "127.0.0.1:9025",
            "127.0.0.1",
            "[::1]:9025",
            "[::1]",
            "10.1.2.3:80",
            "localhost:9025",
            "LOCALHOST",
            "relay1.example.com:9025",
            "relay1.example.com.:9025",
            "relay1:9025",
        ] {
            let h = HeaderMap::from_iter([(HOST, HeaderValue::from_static(good))]);
            assert!(host_allowed(&h, &names), "{good}");
        }
        for bad in [
            "evil.example:9025",
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "relay1.example.com.evil.example",
            "relay1.example.com:x",
            "[::1",
            "[evil]:80",
            "",
            ":9025",
            "a b",
        ] {
            let h = HeaderMap::from_iter([(HOST, HeaderValue::from_static(bad))]);
            assert!(!host_allowed(&h, &names), "{bad}");
        }
        assert!(host_allowed(&HeaderMap::new(), &names));
    }

    #[test]
    fn a_state_change_needs_our_origin_when_a_browser_sent_it() {
        let host = ("host", "127.0.0.1:9025");
        // Scripts and curl carry no browser marks.
        assert_eq!(cross_origin(&headers(&[host])), None);
        assert_eq!(
            cross_origin(&headers(&[host, ("content-type", "application/json")])),
            None
        );
        // Same origin, by either mark.
        assert_eq!(
            cross_origin(&headers(&[host, ("origin", "http://127.0.0.1:9025")])),
            None
        );
        assert_eq!(
            cross_origin(&headers(&[host, ("sec-fetch-site", "same-origin")])),
            None
        );
        // Behind a TLS proxy: the scheme differs, the authority does not.
        assert_eq!(
            cross_origin(&headers(&[
                ("host", "relay.example.com"),
                ("origin", "https://relay.example.com")
            ])),
            None
        );
        // Foreign.
        for (marks, why) in [
            (
                vec![("origin", "http://evil.example")],
                "Origin: http://evil.example",
            ),
            (vec![("origin", "null")], "Origin: null"),
            (
                vec![("origin", "http://127.0.0.1:8080")],
                "Origin: http://127.0.0.1:8080",
            ),
            (
                vec![("sec-fetch-site", "cross-site")],
                "Sec-Fetch-Site: cross-site",
            ),
            (
                vec![("sec-fetch-site", "same-site")],
                "Sec-Fetch-Site: same-site",
            ),
            (
                vec![
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://127.0.0.1:9025"),
                ],
                "Sec-Fetch-Site: cross-site",
            ),
            (
                vec![("content-type", "application/x-www-form-urlencoded")],
                "a form's Content-Type (application/x-www-form-urlencoded) without Origin",
            ),
            (
                vec![("content-type", "text/plain;charset=UTF-8")],
                "a form's Content-Type (text/plain;charset=UTF-8) without Origin",
            ),
        ] {
            let mut all = vec![host];
            all.extend(marks);
            assert_eq!(cross_origin(&headers(&all)).as_deref(), Some(why));
        }
    }
}
