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
//! The message is already deleted from the spool when this runs; the
//! look-ups still to do are kept in the spool directory (`pending`) and
//! resumed when the relay starts again ([`resume`]). With
//! `delivery-trace-report = <address>` a message found failed,
//! quarantined or filtered as spam is reported there (`report`).
//!
//! Must not: change a message's outcome (it has left).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::Method;

use super::pending::{self, millis, Pending};
use super::{answer, report, Call, GraphTransport, Inner, Mailboxes};
use crate::forward::doorbell::Doorbell;
use crate::forward::{ForwardSettings, Reason};
use crate::store::Spool;
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

/// Starts looking up the message `header` is the header section of
/// (sent by `from` with the account `account`), first after `first`,
/// keeping the look-ups in the spool directory `dir`.
pub(super) fn start(inner: &Arc<Inner>, dir: &Path, from: &str, header: &[u8], first: Duration) {
    let Some(id) = message_id(header) else {
        crate::debug!("graph: no Message-ID: no message trace");
        return;
    };
    let entry = Pending {
        account: inner.account.user().to_string(),
        id,
        subject: report::subject(header),
        report: report::reportable(from, header),
        due: millis(SystemTime::now() + first),
        wait: first,
        left: LOOKUPS,
    };
    pending::save(dir, &entry);
    tokio::spawn(follow(Arc::clone(inner), dir.to_path_buf(), entry));
}

/// At start: the look-ups a previous run left in `spool`'s directory are
/// resumed for the Graph accounts that still trace; the others dropped.
pub fn resume(spool: &Arc<Spool>, settings: &ForwardSettings, doorbell: &Arc<Doorbell>) {
    let dir = spool.dir();
    let left = pending::load(dir);
    if left.is_empty() {
        return;
    }
    let mailboxes = Mailboxes::default();
    let mut transports = std::collections::HashMap::new();
    for entry in left {
        let account = settings.auth.as_ref().and_then(|auth| {
            auth.oauth_accounts()
                .find(|a| a.user() == entry.account)
                .cloned()
        });
        let traced = account
            .and_then(|a| Some((a.graph()?, a)))
            .filter(|(s, _)| s.delivery_trace.is_some());
        let Some((graph, account)) = traced else {
            warning!(
                "graph: message trace for {}: account {} no longer traces: not looked up",
                entry.id,
                entry.account
            );
            pending::remove(dir, &entry.account, &entry.id);
            continue;
        };
        let transport = transports.entry(entry.account.clone()).or_insert_with(|| {
            GraphTransport::new(
                account,
                graph,
                &mailboxes,
                settings.connection_timeout,
                settings.response_timeout,
                Arc::clone(doorbell),
            )
        });
        match transport {
            Ok(t) => {
                info!("graph: message trace for {}: resumed", entry.id);
                tokio::spawn(follow(Arc::clone(&t.0), dir.to_path_buf(), entry));
            }
            Err(e) => warning!("graph: message trace for {}: {e}", entry.id),
        }
    }
}

/// Looks `entry` up until its fate is known or its look-ups are done.
async fn follow(inner: Arc<Inner>, dir: PathBuf, mut entry: Pending) {
    let id = entry.id.clone();
    let target = lookup_target(&inner.url.path, &id);
    let key = (String::from("trace"), String::new());
    while entry.left > 0 {
        tokio::time::sleep(entry.until_due(SystemTime::now())).await;
        entry.left -= 1;
        entry.wait *= 2;
        entry.due = millis(SystemTime::now() + entry.wait);
        match lookup(&inner, &target, &id, &key).await {
            Lookup::Again => pending::save(&dir, &entry),
            Lookup::Over => {
                pending::remove(&dir, &entry.account, &id);
                return;
            }
            Lookup::Final(list) => {
                pending::remove(&dir, &entry.account, &id);
                settle(&inner, &dir, &entry, list).await;
                return;
            }
        }
    }
    pending::remove(&dir, &entry.account, &id);
    warning!("graph: message trace: {id}: no final status after {LOOKUPS} look-ups");
}

/// One look-up's outcome.
enum Lookup {
    /// Ask again later.
    Again,
    /// Give up (message trace refused the request for good).
    Over,
    /// Each recipient's final status.
    Final(Vec<(String, String)>),
}

async fn lookup(inner: &Inner, target: &str, id: &str, key: &(String, String)) -> Lookup {
    while let Err(more) = inner.traces.admit_within(
        key,
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
            return Lookup::Again;
        }
    };
    let call = Call::graph(Method::GET, target.to_string(), None, &token, Bytes::new());
    let mut slot = None;
    let (status, _, body) = match inner.exchange(&mut slot, &inner.url, call).await {
        Ok(answered) => answered,
        Err(reason) => {
            warning!("graph: message trace for {id}: {reason}");
            return Lookup::Again;
        }
    };
    if status != 200 {
        let what = answer::describe(status, &body);
        warning!("graph: message trace for {id}: {what}");
        return match status {
            400 | 403 | 404 => Lookup::Over,
            _ => Lookup::Again,
        };
    }
    match verdict(&body, id) {
        Verdict::Final(list) => Lookup::Final(list),
        Verdict::Pending => Lookup::Again,
    }
}

/// Logs and counts each recipient's fate, and reports the problems if the
/// account says where to.
async fn settle(inner: &Inner, dir: &Path, entry: &Pending, list: Vec<(String, String)>) {
    let id = &entry.id;
    for (to, status) in &list {
        inner.account.count_trace(status);
        match is_problem(status) {
            true => warning!("graph: message trace: {id} to {to}: {status}"),
            false => info!("graph: message trace: {id} to {to}: {status}"),
        }
    }
    let problems: Vec<(String, String)> = list
        .into_iter()
        .filter(|(_, status)| is_problem(status))
        .collect();
    let Some(to) = &inner.settings.trace_report else {
        return;
    };
    if problems.is_empty() || !entry.report {
        return;
    }
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mailbox = &inner.settings.mailbox;
    let domain = mailbox.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let report_id = format!(
        "<{}.{}.{}.trace-report@{domain}>",
        millis(SystemTime::now()),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let date = chrono::Local::now().to_rfc2822();
    let content = report::content(
        to,
        mailbox,
        id,
        &entry.subject,
        &problems,
        &report_id,
        &date,
    );
    match report::write(dir, to, &content).await {
        Ok(spooled) => {
            info!("graph: message trace: {id}: reported to {to} as [{spooled}]");
            // A new message in the spool, as after a filter's "rescan":
            // forwarded now, not at the next poll or client.
            inner.doorbell.ring(Reason::Rescan);
        }
        Err(e) => warning!("graph: message trace: {id}: cannot write the report to {to}: {e}"),
    }
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
