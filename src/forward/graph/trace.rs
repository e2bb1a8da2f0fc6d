//! Delivery confirmation (`delivery-trace = <seconds>` in the account
//! file): after Graph's `202`, which only says Exchange queued the
//! message, its fate is looked up by `Message-ID` in Exchange's message
//! trace, `GET /v1.0/admin/exchange/tracing/messageTraces?$filter=messageId
//! eq '<id>'` (permission `ExchangeMessageTrace.Read.All`; at most 100
//! look-ups per 5 minutes), first after the configured wait, then after
//! twice as long each time while Exchange says `pending` or has nothing
//! yet, [`LOOKUPS`] times at most. Each recipient's final status is
//! logged: `delivered` (or `expanded`, a group) at info level, `failed`,
//! `quarantined` and `filteredAsSpam` as warnings; and counted per account
//! and status for `/metrics`.
//!
//! The message is already deleted from the spool when this runs: a
//! look-up still waiting when the relay stops is not done.
//!
//! Must not: change a message's outcome (it has left).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use super::{answer, Call, Inner};
use crate::{info, warning};

/// Look-ups per message at most.
pub const LOOKUPS: u32 = 5;
/// Message trace's limit: look-ups per [`TRACE_WINDOW`].
pub const TRACE_REQUESTS: usize = 100;
/// The window of [`TRACE_REQUESTS`].
pub const TRACE_WINDOW: Duration = Duration::from_secs(300);

/// What message trace said about a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing yet, or some recipient still pending: ask again later.
    Pending,
    /// Each recipient's final status.
    Final(Vec<(String, String)>),
}

/// The message's `Message-ID` from its header section, as written
/// (with its angle brackets), or `None` if it has none.
pub fn message_id(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.trim().to_string();
        // A folded Message-ID: its continuation lines.
        for more in lines.by_ref() {
            if !more.starts_with([' ', '\t']) {
                break;
            }
            value.push_str(more.trim());
        }
        return (!value.is_empty()).then_some(value);
    }
    None
}

/// The request target for `id`: `$filter=messageId eq '<id>'`, the
/// OData string with its quotes doubled, percent-encoded.
pub fn lookup_target(base: &str, id: &str) -> String {
    let filter = format!("messageId eq '{}'", id.replace('\'', "''"));
    let mut query = String::new();
    for b in filter.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                query.push(char::from(b))
            }
            _ => query.push_str(&format!("%{b:02X}")),
        }
    }
    format!(
        "{}/v1.0/admin/exchange/tracing/messageTraces?$filter={query}",
        base.trim_end_matches('/')
    )
}

/// Reads a `200` answer's `value`: final once every entry for `id` has
/// a final status.
pub fn verdict(body: &[u8], id: &str) -> Verdict {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let Some(items) = json["value"].as_array() else {
        return Verdict::Pending;
    };
    let mut out = Vec::new();
    for item in items {
        if item["messageId"].as_str() != Some(id) {
            continue;
        }
        let status = item["status"].as_str().unwrap_or("").to_string();
        if !is_final(&status) {
            return Verdict::Pending;
        }
        let to = item["recipientAddress"].as_str().unwrap_or("").to_string();
        out.push((to, status));
    }
    match out.is_empty() {
        true => Verdict::Pending,
        false => Verdict::Final(out),
    }
}

fn is_final(status: &str) -> bool {
    matches!(
        status,
        "delivered" | "expanded" | "failed" | "quarantined" | "filteredAsSpam"
    )
}

/// Whether a final status means the mail did not arrive.
pub fn is_problem(status: &str) -> bool {
    matches!(status, "failed" | "quarantined" | "filteredAsSpam")
}

/// Looks `id` up until its fate is known or [`LOOKUPS`] are done.
pub(super) async fn follow(inner: Arc<Inner>, id: String, first: Duration) {
    let mut wait = first;
    let target = lookup_target(&inner.url.path, &id);
    let key = (String::from("trace"), String::new());
    for _ in 0..LOOKUPS {
        tokio::time::sleep(wait).await;
        wait *= 2;
        while let Err(more) = inner.traces.admit_within(
            &key,
            TRACE_REQUESTS,
            TRACE_WINDOW,
            tokio::time::Instant::now().into_std(),
        ) {
            tokio::time::sleep(more).await;
        }
        let token = match inner.account.access_token().await {
            Ok(token) => token,
            Err(e) => {
                warning!("graph: message trace for {id}: {e}");
                continue;
            }
        };
        let call = Call::graph(Method::GET, target.clone(), None, &token, Bytes::new());
        let mut slot = None;
        let (status, _, body) = match inner.exchange(&mut slot, &inner.url, call).await {
            Ok(answered) => answered,
            Err(reason) => {
                warning!("graph: message trace for {id}: {reason}");
                continue;
            }
        };
        if status != 200 {
            let what = answer::describe(status, &body);
            warning!("graph: message trace for {id}: {what}");
            if matches!(status, 400 | 403 | 404) {
                return;
            }
            continue;
        }
        if let Verdict::Final(list) = verdict(&body, &id) {
            for (to, status) in list {
                inner.account.count_trace(&status);
                match is_problem(&status) {
                    true => warning!("graph: message trace: {id} to {to}: {status}"),
                    false => info!("graph: message trace: {id} to {to}: {status}"),
                }
            }
            return;
        }
    }
    warning!("graph: message trace: {id}: no final status after {LOOKUPS} look-ups");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_comes_from_the_header_only() {
        let header =
            b"Subject: x\r\nMessage-ID:\r\n <a.b@x.org>\r\nTo: y\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(message_id(header).as_deref(), Some("<a.b@x.org>"));
        assert_eq!(message_id(b"Subject: x\n\nMessage-Id: <b@x>\n"), None);
        assert_eq!(
            message_id(b"message-id: <c@x>\n\n").as_deref(),
            Some("<c@x>")
        );
    }

    #[test]
    fn the_lookup_filters_on_the_message_id_as_an_odata_string() {
        assert_eq!(
            lookup_target("/", "<a'b@x.org>"),
            "/v1.0/admin/exchange/tracing/messageTraces?$filter=messageId%20eq%20%27%3Ca%27%27b%40x.org%3E%27"
        );
    }

    #[test]
    fn final_only_when_every_recipient_is() {
        let id = "<m@x>";
        let body = |a: &str, b: &str| {
            format!(
                r#"{{"value":[{{"messageId":"<m@x>","recipientAddress":"a@x","status":"{a}"}},
                    {{"messageId":"<m@x>","recipientAddress":"b@x","status":"{b}"}},
                    {{"messageId":"<other@x>","recipientAddress":"c@x","status":"pending"}}]}}"#
            )
        };
        assert_eq!(
            verdict(body("delivered", "pending").as_bytes(), id),
            Verdict::Pending
        );
        assert_eq!(
            verdict(body("delivered", "quarantined").as_bytes(), id),
            Verdict::Final(vec![
                ("a@x".into(), "delivered".into()),
                ("b@x".into(), "quarantined".into())
            ])
        );
        assert_eq!(verdict(br#"{"value":[]}"#, id), Verdict::Pending);
        assert_eq!(verdict(b"<html>", id), Verdict::Pending);
        assert!(is_problem("failed") && is_problem("filteredAsSpam") && !is_problem("expanded"));
    }
}
