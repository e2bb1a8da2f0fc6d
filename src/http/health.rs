//! `GET /healthz`: `200 OK` while the instance serves and its mail flows;
//! `503` with the reasons, one a line, while it is shutting down (from the
//! stop signal on, through the `--drain-delay` while it still accepts), its SMTP
//! server is disabled by the admin `smtp disable`, an upstream is paused
//! (it refused our authentication), or the oldest queued message is older
//! than `--http-max-queue-age` (an hour by default). Failed (`.bad`)
//! messages do not count: they wait for an operator, not for the relay.
//!
//! Must not: act on anything, or be slower than a directory listing (a
//! probe calls it every few seconds).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::{blocking, text};
use crate::control::{Control, QueueSummary};

/// What the verdict is made of.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    /// False once the relay is shutting down.
    pub serving: bool,
    pub smtp_enabled: bool,
    pub paused: Vec<String>,
    pub summary: QueueSummary,
}

/// The answer to `GET /healthz`.
pub async fn answer(
    control: Arc<Control>,
    max_queue_age: Duration,
    serving: bool,
) -> Response<Full<Bytes>> {
    let read = blocking(move || {
        control.queue_summary().map(|summary| Reading {
            serving: serving && !control.draining(),
            smtp_enabled: control.smtp_enabled(),
            paused: control.paused_routes(),
            summary,
        })
    })
    .await;
    let reading = match read {
        Ok(Ok(reading)) => reading,
        Ok(Err(e)) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("spool: {e}\n")),
        Err(response) => return response,
    };
    match problems(&reading, max_queue_age) {
        problems if problems.is_empty() => text(StatusCode::OK, "OK\n"),
        problems => text(StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n"),
    }
}

/// Why the instance is not healthy; empty if it is.
pub fn problems(reading: &Reading, max_queue_age: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    if !reading.serving {
        problems.push("shutting down".to_string());
    }
    if !reading.smtp_enabled {
        problems.push("smtp server disabled by the admin interface".to_string());
    }
    for route in &reading.paused {
        problems.push(format!(
            "forwarding to {route} paused: the server refused our authentication"
        ));
    }
    if let Some(oldest) = reading.summary.oldest.filter(|age| *age > max_queue_age) {
        problems.push(format!(
            "oldest queued message is {}s old (--http-max-queue-age is {}s)",
            oldest.as_secs(),
            max_queue_age.as_secs()
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Reading {
        Reading {
            serving: true,
            smtp_enabled: true,
            paused: Vec::new(),
            summary: QueueSummary {
                queued: 3,
                failed: 7,
                oldest: Some(Duration::from_secs(60)),
            },
        }
    }

    #[test]
    fn a_young_queue_and_failed_messages_are_healthy() {
        assert!(problems(&healthy(), Duration::from_secs(60)).is_empty());
        let empty = Reading {
            summary: QueueSummary::default(),
            ..healthy()
        };
        assert!(problems(&empty, Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn each_problem_is_a_line() {
        let sick = Reading {
            serving: false,
            smtp_enabled: false,
            paused: vec!["smtp.example.com:587".into()],
            summary: QueueSummary {
                oldest: Some(Duration::from_secs(61)),
                ..healthy().summary
            },
        };
        assert_eq!(
            problems(&sick, Duration::from_secs(60)),
            [
                "shutting down",
                "smtp server disabled by the admin interface",
                "forwarding to smtp.example.com:587 paused: the server refused our authentication",
                "oldest queued message is 61s old (--http-max-queue-age is 60s)",
            ]
        );
    }
}
