//! What Graph's answer to `sendMail` means for the message, in the
//! queue's terms (see `super::super::outcome`):
//!
//! ```text
//!   202              sent: the message is deleted (Exchange queued it)
//!   429, 503         the route waits exactly Retry-After (a throttling
//!                    reply, 421 4.7.0, so the route is slowed down)
//!   401              the token is renewed once and the request repeated;
//!                    a second 401 pauses the route as a refused password
//!   400, 403, 404,   failed to .bad with Graph's error code and message
//!   other 4xx        (413: too large; a retry would be refused the same)
//!   408, other 5xx   deferred, with the message's backoff (451 4.4.x)
//! ```
//!
//! Must not do I/O: the link hands in the status, the Retry-After value
//! and the body.

use std::time::Duration;

use emailrelay_proto::smtp::Reply;

/// One answer to `sendMail`, decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 202: queued by Exchange.
    Accepted,
    /// 401: the token was refused.
    Unauthorized(Reply),
    /// 429 or 503: wait (exactly this long, if Graph said).
    Throttled(Reply, Option<Duration>),
    /// Refused for good.
    Failed(Reply),
    /// Refused for now.
    Later(Reply),
}

/// Decides an answer from its status, its `Retry-After` header and body.
pub fn decide(status: u16, retry_after: Option<&str>, body: &[u8]) -> Answer {
    let what = describe(status, body);
    match status {
        200..=299 => Answer::Accepted,
        401 => Answer::Unauthorized(Reply::new(535, format!("5.7.8 {what}"))),
        429 | 503 => Answer::Throttled(
            Reply::new(421, format!("4.7.0 {what}")),
            retry_after.and_then(parse_retry_after),
        ),
        408 => Answer::Later(Reply::new(451, format!("4.4.2 {what}"))),
        400..=499 => Answer::Failed(Reply::new(554, format!("5.0.0 {what}"))),
        _ => Answer::Later(Reply::new(451, format!("4.4.0 {what}"))),
    }
}

/// `graph: HTTP 400: ErrorInvalidRecipients: At least one recipient is
/// not valid.`: Graph's JSON error (`{"error":{"code":..,"message":..}}`)
/// on one line, or the status alone.
pub fn describe(status: u16, body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let one_line = |v: &serde_json::Value| {
        v.as_str()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
    };
    let code = one_line(&json["error"]["code"]);
    let message = one_line(&json["error"]["message"]);
    match (code, message) {
        (Some(code), Some(message)) => format!("graph: HTTP {status}: {code}: {message}"),
        (Some(code), None) => format!("graph: HTTP {status}: {code}"),
        (None, Some(message)) => format!("graph: HTTP {status}: {message}"),
        (None, None) => format!("graph: HTTP {status}"),
    }
}

/// `Retry-After` as seconds (RFC 9110 section 10.2.3), or as an HTTP
/// date, from now; capped at an hour, the longest route wait.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let secs = when.timestamp() - chrono::Utc::now().timestamp();
            Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: &[u8] = br#"{"error":{"code":"ErrorInvalidRecipients","message":"At least one recipient\n is not valid."}}"#;

    #[test]
    fn each_status_has_its_queue_rule() {
        assert_eq!(decide(202, None, b""), Answer::Accepted);
        assert_eq!(
            decide(400, None, BAD),
            Answer::Failed(Reply::new(
                554,
                "5.0.0 graph: HTTP 400: ErrorInvalidRecipients: At least one recipient is not valid."
            ))
        );
        for status in [403, 404, 413] {
            assert!(matches!(decide(status, None, b""), Answer::Failed(r) if r.code == 554));
        }
        assert_eq!(
            decide(429, Some("2"), b""),
            Answer::Throttled(
                Reply::new(421, "4.7.0 graph: HTTP 429"),
                Some(Duration::from_secs(2))
            )
        );
        assert!(matches!(
            decide(503, None, b"<html>"),
            Answer::Throttled(_, None)
        ));
        assert!(matches!(decide(401, None, b""), Answer::Unauthorized(r) if r.code == 535));
        for status in [408, 500, 502, 504] {
            assert!(matches!(decide(status, None, b""), Answer::Later(r) if r.code == 451));
        }
    }

    #[test]
    fn throttling_replies_slow_the_route_and_others_do_not() {
        let throttling = |a: Answer| match a {
            Answer::Throttled(r, _) | Answer::Later(r) | Answer::Failed(r) => {
                super::super::super::route::is_throttling(&r)
            }
            _ => false,
        };
        assert!(throttling(decide(429, Some("1"), b"")));
        assert!(throttling(decide(503, None, b"")));
        assert!(!throttling(decide(500, None, b"")));
        assert!(!throttling(decide(400, None, BAD)));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(" 17 "), Some(Duration::from_secs(17)));
        assert_eq!(parse_retry_after("99999"), Some(Duration::from_secs(3600)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = parse_retry_after(&soon).unwrap().as_secs();
        assert!((118..=120).contains(&wait), "{wait}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
