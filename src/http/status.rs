//! The status page's data: `GET /status.json`, the overview the page at
//! `/` polls (spool counts and the oldest age, each route's state in
//! words with what to do, OAuth token expiry, version, uptime, what the
//! process listens on, and the charts' series), and the sampler that
//! feeds the charts' history from the counters every few seconds.
//!
//! Must not: act on anything, or show what is behind the queue's access
//! rule (message envelopes); this is what `/metrics` shows, in words.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::metrics::Readings;
use super::{blocking, text, with_type};
use crate::control::Control;
use crate::forward::RouteWait;
use crate::monitor::history::{Counts, History, DAY_BUCKET_SECONDS};
use crate::monitor::Stats;

/// A route's forwarded and deferred totals when last sampled, and since
/// when it has put messages off without taking one.
type Progress = (u64, u64, Option<u64>);

/// How often the sampler reads the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the overview keeps between requests: the charts' history and
/// when each route's current wait was first seen.
pub struct StatusState {
    started: SystemTime,
    history: Mutex<History>,
    /// (route, paused) to the Unix time its wait was first seen.
    since: Mutex<HashMap<(String, bool), u64>>,
    /// Per route: the forwarded and deferred totals last seen, and since
    /// when it has put messages off without taking one.
    stuck: Mutex<HashMap<String, Progress>>,
    /// The instance's name, with several.
    instance: Option<String>,
}

impl StatusState {
    pub fn new(instance: Option<String>) -> Arc<StatusState> {
        Arc::new(StatusState {
            started: SystemTime::now(),
            history: Mutex::new(History::default()),
            since: Mutex::new(HashMap::new()),
            stuck: Mutex::new(HashMap::new()),
            instance,
        })
    }

    /// Reads the counters into the history, and notes new route waits.
    fn sample(&self, control: &Control, now: u64) {
        let stats = control.stats();
        let routes = stats.routes();
        let mut totals = Counts {
            received: Stats::get(&stats.received),
            ..Counts::default()
        };
        for (_, c) in &routes {
            totals.forwarded += c.forwarded;
            totals.deferred += c.deferred;
            totals.failed += c.failed;
        }
        let sent: Vec<(String, u64)> = routes
            .iter()
            .map(|(r, c)| (r.clone(), c.forwarded))
            .collect();
        if let Ok(mut history) = self.history.lock() {
            history.observe(now, totals, &sent);
        }
        self.note_waits(&control.route_waits(), now);
        if let Ok(mut stuck) = self.stuck.lock() {
            for (route, c) in &routes {
                let seen = stuck.entry(route.clone()).or_insert((0, 0, None));
                if c.forwarded > seen.0 {
                    seen.2 = None;
                } else if c.deferred > seen.1 && seen.2.is_none() {
                    seen.2 = Some(now);
                }
                seen.0 = c.forwarded;
                seen.1 = c.deferred;
            }
        }
    }

    /// Since when `route` has put messages off without taking one.
    fn stuck_since(&self, route: &str) -> Option<u64> {
        self.stuck.lock().ok()?.get(route)?.2
    }

    fn note_waits(&self, waits: &[RouteWait], now: u64) {
        if let Ok(mut since) = self.since.lock() {
            since.retain(|(route, paused), _| {
                waits
                    .iter()
                    .any(|w| w.route == *route && w.paused == *paused)
            });
            for wait in waits {
                since
                    .entry((wait.route.clone(), wait.paused))
                    .or_insert(now);
            }
        }
    }

    fn since(&self, wait: &RouteWait) -> Option<u64> {
        let since = self.since.lock().ok()?;
        since.get(&(wait.route.clone(), wait.paused)).copied()
    }
}

/// Samples the counters every [`SAMPLE_EVERY`] until the relay stops.
pub async fn sampler(
    state: Arc<StatusState>,
    control: Arc<Control>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => state.sample(&control, unix_now()),
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// `GET /status.json`.
pub async fn answer(state: Arc<StatusState>, control: Arc<Control>) -> Response<Full<Bytes>> {
    let read = blocking(move || {
        let now = unix_now();
        state.sample(&control, now);
        Readings::read(&control).map(|r| overview(&state, &control, &r, now))
    })
    .await;
    match read {
        Ok(Ok(value)) => {
            let mut body = value.to_string();
            body.push('\n');
            let mut response = with_type(StatusCode::OK, "application/json", body.into());
            super::page::no_store(&mut response);
            response
        }
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("spool: {e}\n")),
        Err(response) => response,
    }
}

fn overview(state: &StatusState, control: &Control, readings: &Readings, now: u64) -> Value {
    let waits = control.route_waits();
    let (history_hour, history_day, sent) = match state.history.lock() {
        Ok(h) => {
            let sent: HashMap<String, u64> = readings
                .routes
                .iter()
                .map(|(r, _)| (r.clone(), h.sent_last_hour(r, now)))
                .collect();
            (h.hour(now), h.day(now), sent)
        }
        Err(_) => (Vec::new(), Vec::new(), HashMap::new()),
    };
    let routes: Vec<Value> = readings
        .routes
        .iter()
        .map(|(route, counts)| {
            let wait = waits
                .iter()
                .find(|w| w.route == *route && w.paused)
                .or_else(|| waits.iter().find(|w| w.route == *route));
            let mut value = json!({
                "route": route,
                "provider": provider(route),
                "sent_last_hour": sent.get(route).copied().unwrap_or(0),
                "forwarded": counts.forwarded,
                "deferred": counts.deferred,
                "failed": counts.failed,
                "auth_failures": counts.auth_failures,
            });
            let words = match (wait, state.stuck_since(route)) {
                (Some(wait), _) => waiting(wait, state.since(wait), now),
                (None, Some(since)) => deferring(route, since),
                (None, None) => {
                    json!({ "state": "sending", "problem": Value::Null, "advice": Value::Null })
                }
            };
            merge(&mut value, words);
            value
        })
        .collect();
    let listening: Vec<String> = control
        .status_report()
        .iter()
        .filter_map(|l| l.strip_prefix("LISTEN: ").map(str::to_string))
        .collect();
    let uptime = SystemTime::now()
        .duration_since(state.started)
        .map_or(0, |d| d.as_secs());
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "instance": state.instance,
        "pid": control.pid(),
        "now": now,
        "uptime_seconds": uptime,
        "listening": listening,
        "smtp_enabled": control.smtp_enabled(),
        "forward_to": control.forward_to(),
        "queued": readings.summary.queued,
        "failed": readings.summary.failed,
        "oldest_seconds": readings.summary.oldest.map(|d| d.as_secs()),
        "received": readings.received,
        "connections": { "in": readings.open.0, "out": readings.open.1 },
        "routes": routes,
        "tokens": readings.tokens.iter().map(|(account, expires)| json!({
            "account": account, "expires": expires,
        })).collect::<Vec<Value>>(),
        "hour": series(&history_hour, now - now % 60, 60),
        "day": series(&history_day, now - now % DAY_BUCKET_SECONDS, DAY_BUCKET_SECONDS),
    })
}

/// A chart's series: the first bucket's start, the step, and one list a
/// kind.
fn series(buckets: &[Counts], last_start: u64, step: u64) -> Value {
    let start = last_start.saturating_sub(step * buckets.len().saturating_sub(1) as u64);
    let pick = |f: fn(&Counts) -> u64| buckets.iter().map(f).collect::<Vec<u64>>();
    json!({
        "start": start,
        "step": step,
        "received": pick(|c| c.received),
        "forwarded": pick(|c| c.forwarded),
        "deferred": pick(|c| c.deferred),
        "failed": pick(|c| c.failed),
    })
}

/// A waiting route in words: state, since, next attempt, the problem and
/// what to do.
fn waiting(wait: &RouteWait, since: Option<u64>, now: u64) -> Value {
    let who = match provider(&wait.route) {
        Some(name) => format!("{name} ({})", wait.route),
        None => wait.route.clone(),
    };
    let every = minutes(wait.wait);
    let (state, problem, advice) = if wait.paused {
        let problem = match &wait.reply {
            Some(_) => format!("{who} refused our password"),
            None => format!("no sign-in token could be had for {who}"),
        };
        (
            "paused",
            problem,
            format!(
                "{} Mail is kept and the relay tries to sign in again by itself (next in {every}); \
                 it does not retry faster, so that the account is not locked.",
                auth_advice(&wait.route, wait.reply.is_some())
            ),
        )
    } else {
        (
            "waiting",
            format!("{who} asked us to slow down"),
            format!(
                "Nothing to do at once: mail is kept and sent again in {every}. \
                 If this goes on for hours, the account sends more than the provider allows \
                 (check its sending limits) or another program uses the same account."
            ),
        )
    };
    json!({
        "state": state,
        "since": since,
        "next_attempt": now + wait.wait.as_secs(),
        "times": wait.times,
        "reply": wait.reply,
        "problem": problem,
        "advice": advice,
    })
}

/// A route that puts messages off without a throttling answer or a
/// refused login: down, unreachable, or refusing for now.
fn deferring(route: &str, since: u64) -> Value {
    let who = match provider(route) {
        Some(name) => format!("{name} ({route})"),
        None => route.to_string(),
    };
    json!({
        "state": "deferring",
        "since": since,
        "next_attempt": Value::Null,
        "reply": Value::Null,
        "problem": format!("{who} is not taking mail"),
        "advice": "The server may be down, unreachable from this machine (firewall, DNS, port) \
                   or refusing mail for now: check that it is up and reachable; the log says why \
                   at each attempt. Mail is kept and tried again at each poll (--poll) and \
                   whenever new mail arrives.",
    })
}

/// What to do about a refused sign-in, for the providers most people use.
fn auth_advice(route: &str, password: bool) -> &'static str {
    match (provider(route), password) {
        (_, false) => "Check the OAuth account in the client secrets file (--client-auth) and the log for the token endpoint's answer.",
        (Some("Microsoft 365"), true) => "The account may need SMTP AUTH enabled (Microsoft 365 admin center: Users, the user, Mail, Manage email apps, Authenticated SMTP), or its password has changed: fix it in the client secrets file (--client-auth).",
        (Some("Google"), true) => "Google refuses an account's normal password: use an app password (or OAuth) in the client secrets file (--client-auth).",
        _ => "Check the user name and password in the client secrets file (--client-auth), and that the account may send mail by SMTP.",
    }
}

/// The mail provider a route's host belongs to, if it is a well-known one.
fn provider(route: &str) -> Option<&'static str> {
    let host = route
        .rsplit_once(':')
        .map_or(route, |(h, _)| h)
        .to_ascii_lowercase();
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if ["office365.com", "outlook.com", "microsoft.com"]
        .iter()
        .any(|d| under(d))
    {
        Some("Microsoft 365")
    } else if ["gmail.com", "google.com", "googlemail.com"]
        .iter()
        .any(|d| under(d))
    {
        Some("Google")
    } else {
        None
    }
}

/// A duration as a person says it: "45 seconds", "1 minute", "15 minutes".
fn minutes(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=1 => "a moment".to_string(),
        2..=89 => format!("{secs} seconds"),
        90..=5399 => format!("{} minutes", (secs + 30) / 60),
        _ => format!("{} hours", (secs + 1800) / 3600),
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(route: &str, paused: bool, reply: Option<&str>) -> RouteWait {
        RouteWait {
            route: route.into(),
            paused,
            times: 1,
            wait: Duration::from_secs(900),
            reply: reply.map(str::to_string),
        }
    }

    #[test]
    fn a_refused_password_at_microsoft_says_what_to_do() {
        let value = waiting(
            &wait(
                "smtp.office365.com:587",
                true,
                Some("535 5.7.139 Authentication unsuccessful"),
            ),
            Some(1000),
            2000,
        );
        assert_eq!(value["state"], "paused");
        assert_eq!(value["since"], 1000);
        assert_eq!(value["next_attempt"], 2900);
        assert_eq!(
            value["problem"],
            "Microsoft 365 (smtp.office365.com:587) refused our password"
        );
        let advice = value["advice"].as_str().unwrap();
        assert!(
            advice.starts_with("The account may need SMTP AUTH enabled"),
            "{advice}"
        );
        assert!(advice.contains("next in 15 minutes"), "{advice}");
    }

    #[test]
    fn a_throttled_route_waits_in_words() {
        let value = waiting(
            &wait("127.0.0.1:2525", false, Some("432 4.3.2 busy")),
            None,
            5,
        );
        assert_eq!(value["state"], "waiting");
        assert_eq!(value["problem"], "127.0.0.1:2525 asked us to slow down");
        assert!(value["advice"]
            .as_str()
            .unwrap()
            .contains("sent again in 15 minutes"));
        assert_eq!(value["reply"], "432 4.3.2 busy");
    }

    #[test]
    fn providers_and_durations_read_as_people_say_them() {
        assert_eq!(provider("smtp.office365.com:587"), Some("Microsoft 365"));
        assert_eq!(provider("smtp.gmail.com:465"), Some("Google"));
        assert_eq!(provider("notgmail.com:25"), None);
        assert_eq!(minutes(Duration::from_secs(0)), "a moment");
        assert_eq!(minutes(Duration::from_secs(60)), "60 seconds");
        assert_eq!(minutes(Duration::from_secs(900)), "15 minutes");
        assert_eq!(minutes(Duration::from_secs(7200)), "2 hours");
    }

    #[test]
    fn series_start_where_the_first_bucket_does() {
        let value = series(&[Counts::default(); 3], 1200, 60);
        assert_eq!(value["start"], 1080);
        assert_eq!(value["received"], json!([0, 0, 0]));
    }
}
