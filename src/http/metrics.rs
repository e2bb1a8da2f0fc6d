//! `GET /metrics`: the instance's readings in the Prometheus text format
//! (version 0.0.4), a prometheus-client `Registry` built afresh from
//! `control` at each scrape. Every name starts `emailrelay_`, says its
//! unit (`_seconds`, `_total`), and labels say `upstream`, `account` or
//! `direction` (`upstream` is the address as `--forward-to` or a routing
//! filter gave it; empty for a message failed before one was chosen):
//!
//! ```text
//! emailrelay_queued_messages                      gauge  .envelope and .busy files
//! emailrelay_failed_messages                      gauge  .bad files
//! emailrelay_oldest_queued_message_age_seconds    gauge  0 when none is queued
//! emailrelay_messages_received_total              counter
//! emailrelay_messages_forwarded_total{upstream}   counter
//! emailrelay_messages_deferred_total{upstream}    counter
//! emailrelay_messages_failed_total{upstream}      counter
//! emailrelay_auth_failures_total{direction="in"}  counter  our clients' refused AUTH
//! emailrelay_auth_failures_total{direction="out",upstream}  counter
//! emailrelay_oauth_token_expiry_timestamp_seconds{account}  gauge  0 while none is held
//! emailrelay_oauth_credential_expiry_timestamp_seconds{account,credential}  gauge
//!                                                 certificate notAfter, client-secret-expires
//! emailrelay_graph_delivery_trace_total{account,status}  counter  recipients by message trace's verdict
//! emailrelay_open_connections{direction}          gauge  SMTP, POP, admin; in and out
//! emailrelay_route_paused{upstream}               gauge  1 while paused
//! emailrelay_route_throttled{upstream}            gauge  1 while slowed down
//! emailrelay_forwarding_backlog_messages          gauge  waiting as the pass began
//! emailrelay_accept_delay_seconds                 gauge  each 250's wait now
//! ```
//!
//! Must not: keep metric state of its own (the counters live in
//! `monitor::Stats`, so they cannot drift from what the admin port says),
//! or act on anything.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{blocking, text, with_type};
use crate::control::{Control, QueueSummary};
use crate::monitor::{RouteCounts, Stats};

/// Everything a scrape shows, read from `control` at once.
#[derive(Clone, Debug, Default)]
pub struct Readings {
    pub summary: QueueSummary,
    pub received: u64,
    pub auth_failures_in: u64,
    pub routes: Vec<(String, RouteCounts)>,
    pub paused: Vec<String>,
    /// Routes waiting after a throttling answer.
    pub throttled: Vec<String>,
    /// Waiting messages the forwarder counts, and the flow delay they
    /// put on each accepted message's 250.
    pub backlog: (usize, std::time::Duration),
    /// OAuth accounts and their token's expiry (Unix time), if one is held.
    pub tokens: Vec<(String, Option<u64>)>,
    /// OAuth accounts' certificate or secret expiry: (account, which, Unix time).
    pub credentials: Vec<(String, String, i64)>,
    /// Graph's message trace verdicts: (account, status, recipients).
    pub traces: Vec<(String, String, u64)>,
    /// Open connections: (in, out).
    pub open: (usize, usize),
}

impl Readings {
    /// Reads the instance; the spool part lists directories.
    pub fn read(control: &Control) -> Result<Readings, crate::control::ControlError> {
        let stats = control.stats();
        let mut routes = stats.routes();
        // The --forward-to route shows zeros before its first message, so
        // that a rate or an alert on it has a series from the start.
        if let Some(target) = control.forward_to() {
            if !routes.iter().any(|(route, _)| *route == target) {
                routes.push((target, RouteCounts::default()));
            }
        }
        Ok(Readings {
            summary: control.queue_summary()?,
            received: Stats::get(&stats.received),
            auth_failures_in: Stats::get(&stats.auth_failures_in),
            routes,
            paused: control.paused_routes(),
            throttled: control.throttled_routes(),
            backlog: control.backlog(),
            tokens: control.token_expiry(),
            credentials: control.credential_expiry(),
            traces: control.delivery_traces(),
            open: control.open_connections(),
        })
    }
}

/// The answer to `GET /metrics`.
pub async fn answer(control: Arc<Control>) -> Response<Full<Bytes>> {
    let readings = match blocking(move || Readings::read(&control)).await {
        Ok(Ok(readings)) => readings,
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("spool: {e}\n")),
        Err(response) => return response,
    };
    match encode(&readings) {
        Ok(body) => with_type(StatusCode::OK, prometheus_text::CONTENT_TYPE, body.into()),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
    }
}

/// Label sets: a few `(name, value)` pairs.
type Labels = Vec<(&'static str, String)>;

/// The readings in the Prometheus text format.
pub fn encode(readings: &Readings) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("emailrelay");
    let summary = &readings.summary;
    gauge(
        &mut registry,
        "queued_messages",
        "Messages waiting to be forwarded or being forwarded",
        summary.queued,
    );
    gauge(
        &mut registry,
        "failed_messages",
        "Messages that failed (.bad envelope files)",
        summary.failed,
    );
    let oldest = summary.oldest.map_or(0, |age| age.as_secs());
    gauge(
        &mut registry,
        "oldest_queued_message_age_seconds",
        "Age of the oldest queued message (0 when the queue is empty)",
        oldest,
    );
    let received = Counter::<u64>::default();
    received.inc_by(readings.received);
    registry.register(
        "messages_received",
        "Messages received and stored",
        received,
    );
    route_counters(&mut registry, &readings.routes);
    auth_failures(&mut registry, readings);
    let tokens = Family::<Labels, Gauge>::default();
    for (account, expiry) in &readings.tokens {
        let at = expiry.map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX));
        tokens
            .get_or_create(&vec![("account", account.clone())])
            .set(at);
    }
    registry.register(
        "oauth_token_expiry_timestamp_seconds",
        "When the OAuth access token of each account expires, as Unix time (0 while none is held)",
        tokens,
    );
    let credentials = Family::<Labels, Gauge>::default();
    for (account, which, expiry) in &readings.credentials {
        credentials
            .get_or_create(&vec![
                ("account", account.clone()),
                ("credential", which.clone()),
            ])
            .set(*expiry);
    }
    registry.register(
        "oauth_credential_expiry_timestamp_seconds",
        "When each OAuth account's certificate or client secret expires, as Unix time",
        credentials,
    );
    let traces = Family::<Labels, Counter>::default();
    for (account, status, count) in &readings.traces {
        traces
            .get_or_create(&vec![
                ("account", account.clone()),
                ("status", status.clone()),
            ])
            .inc_by(*count);
    }
    registry.register(
        "graph_delivery_trace",
        "Recipients of mail sent through Graph by their final status in Exchange's message trace (delivery-trace)",
        traces,
    );
    let open = Family::<Labels, Gauge>::default();
    for (direction, count) in [("in", readings.open.0), ("out", readings.open.1)] {
        open.get_or_create(&vec![("direction", direction.to_string())])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    registry.register(
        "open_connections",
        "Connections open now (SMTP, POP and admin in; SMTP out), process-wide",
        open,
    );
    route_flags(
        &mut registry,
        (
            "route_paused",
            "1 while forwarding to the upstream is paused because it refused our authentication",
        ),
        &readings.routes,
        &readings.paused,
    );
    route_flags(
        &mut registry,
        ("route_throttled", "1 while forwarding to the upstream waits after a throttling answer (421, 432, 450/451 4.7.x)"),
        &readings.routes,
        &readings.throttled,
    );
    gauge(
        &mut registry,
        "forwarding_backlog_messages",
        "Messages waiting when the current or last forwarding pass began, less those it took",
        readings.backlog.0,
    );
    let delay = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    delay.set(readings.backlog.1.as_secs_f64());
    registry.register(
        "accept_delay_seconds",
        "How long each accepted message's 250 waits now because forwarding is behind",
        delay,
    );
    let mut body = String::new();
    prometheus_text::encode(&mut body, &registry)?;
    Ok(body)
}

/// A 0/1 gauge per upstream: 1 for those in `flagged`, 0 for the other
/// known routes.
fn route_flags(
    registry: &mut Registry,
    (name, help): (&str, &str),
    routes: &[(String, RouteCounts)],
    flagged: &[String],
) {
    let family = Family::<Labels, Gauge>::default();
    for (route, _) in routes {
        family.get_or_create(&upstream(route)).set(0);
    }
    for route in flagged {
        family.get_or_create(&upstream(route)).set(1);
    }
    registry.register(name, help, family);
}

/// A gauge without labels.
fn gauge(registry: &mut Registry, name: &str, help: &str, value: impl TryInto<i64>) {
    let gauge = Gauge::<i64>::default();
    gauge.set(value.try_into().unwrap_or(i64::MAX));
    registry.register(name, help, gauge);
}

/// A counter's name, help text, and how to read it from a route's counts.
type Outcome = (&'static str, &'static str, fn(&RouteCounts) -> u64);

/// The per-upstream outcome counters.
fn route_counters(registry: &mut Registry, routes: &[(String, RouteCounts)]) {
    let outcomes: [Outcome; 3] = [
        ("messages_forwarded", "Messages the upstream took", |c| {
            c.forwarded
        }),
        (
            "messages_deferred",
            "Forwarding attempts that left the message queued for a later one",
            |c| c.deferred,
        ),
        (
            "messages_failed",
            "Messages failed to .bad after an attempt",
            |c| c.failed,
        ),
    ];
    for (name, help, count) in outcomes {
        let family = Family::<Labels, Counter>::default();
        for (route, counts) in routes {
            family.get_or_create(&upstream(route)).inc_by(count(counts));
        }
        registry.register(name, help, family);
    }
}

/// Refused authentications: ours of our clients (`in`), and each
/// upstream's of us (`out`).
fn auth_failures(registry: &mut Registry, readings: &Readings) {
    let family = Family::<Labels, Counter>::default();
    family
        .get_or_create(&vec![("direction", "in".to_string())])
        .inc_by(readings.auth_failures_in);
    for (route, counts) in &readings.routes {
        let mut labels = vec![("direction", "out".to_string())];
        labels.extend(upstream(route));
        family.get_or_create(&labels).inc_by(counts.auth_failures);
    }
    registry.register(
        "auth_failures",
        "Authentications refused: by us of our clients (in), by an upstream of us (out)",
        family,
    );
}

fn upstream(route: &str) -> Labels {
    vec![("upstream", route.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn readings_encode_as_prometheus_text() {
        let readings = Readings {
            summary: QueueSummary {
                queued: 2,
                failed: 1,
                oldest: Some(Duration::from_secs(90)),
            },
            received: 5,
            auth_failures_in: 3,
            routes: vec![(
                "127.0.0.1:25".into(),
                RouteCounts {
                    forwarded: 2,
                    deferred: 4,
                    failed: 1,
                    auth_failures: 6,
                },
            )],
            paused: vec!["127.0.0.1:25".into()],
            throttled: vec!["127.0.0.1:25".into()],
            backlog: (12_500, Duration::from_millis(250)),
            tokens: vec![
                ("me@example.com".into(), Some(1_800_000_000)),
                ("you".into(), None),
            ],
            credentials: vec![("me@example.com".into(), "certificate".into(), 1_801_353_600)],
            traces: vec![("me@example.com".into(), "quarantined".into(), 2)],
            open: (1, 2),
        };
        let text = encode(&readings).unwrap();
        for line in [
            "# TYPE emailrelay_queued_messages gauge\nemailrelay_queued_messages 2\n",
            "emailrelay_failed_messages 1\n",
            "emailrelay_oldest_queued_message_age_seconds 90\n",
            "# TYPE emailrelay_messages_received_total counter\nemailrelay_messages_received_total 5\n",
            "emailrelay_messages_forwarded_total{upstream=\"127.0.0.1:25\"} 2\n",
            "emailrelay_messages_deferred_total{upstream=\"127.0.0.1:25\"} 4\n",
            "emailrelay_messages_failed_total{upstream=\"127.0.0.1:25\"} 1\n",
            "emailrelay_auth_failures_total{direction=\"in\"} 3\n",
            "emailrelay_auth_failures_total{direction=\"out\",upstream=\"127.0.0.1:25\"} 6\n",
            "emailrelay_oauth_token_expiry_timestamp_seconds{account=\"me@example.com\"} 1800000000\n",
            "emailrelay_oauth_token_expiry_timestamp_seconds{account=\"you\"} 0\n",
            "emailrelay_oauth_credential_expiry_timestamp_seconds{account=\"me@example.com\",credential=\"certificate\"} 1801353600\n",
            "emailrelay_graph_delivery_trace_total{account=\"me@example.com\",status=\"quarantined\"} 2\n",
            "emailrelay_open_connections{direction=\"in\"} 1\n",
            "emailrelay_open_connections{direction=\"out\"} 2\n",
            "emailrelay_route_paused{upstream=\"127.0.0.1:25\"} 1\n",
            "emailrelay_route_throttled{upstream=\"127.0.0.1:25\"} 1\n",
            "emailrelay_forwarding_backlog_messages 12500\n",
            "# TYPE emailrelay_accept_delay_seconds gauge\nemailrelay_accept_delay_seconds 0.25\n",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "Prometheus text, not OpenMetrics");
    }

    #[test]
    fn an_idle_instance_shows_zeros() {
        let text = encode(&Readings::default()).unwrap();
        assert!(text.contains("emailrelay_queued_messages 0\n"), "{text}");
        assert!(text.contains("emailrelay_oldest_queued_message_age_seconds 0\n"));
        assert!(text.contains("emailrelay_auth_failures_total{direction=\"in\"} 0\n"));
    }
}
