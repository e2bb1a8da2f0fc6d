//! The queue over HTTP, in JSON: `GET /queue[?limit=N]` lists queued,
//! busy and failed messages (at most `limit` of each state, 1000 unless
//! asked, oldest first) with the spool's totals; `POST /queue/<id>/retry`
//! and `DELETE /queue/<id>` act on one message through `control`, as the
//! admin port does. Errors are `{"error": "..."}` with a status that says
//! whose fault it is: 400 a bad id, 404 no such message, 409 a message
//! being forwarded now (or no `--forward-to` to retry with), 500 the spool.
//!
//! Must not: touch the spool itself, or build a path from an id (control
//! parses ids into the spool's own shape first).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::{blocking, with_type};
use crate::control::{Control, ControlError, QueueItem};
use crate::store::QueueError;

/// Messages of each state listed unless `?limit=` says otherwise.
const DEFAULT_LIMIT: usize = 1000;

/// The most `?limit=` may ask for, per state.
const MAX_LIMIT: usize = 100_000;

/// `GET /queue`.
pub async fn list(control: Arc<Control>, query: Option<&str>) -> Response<Full<Bytes>> {
    let limit = match limit(query) {
        Ok(limit) => limit,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why.to_string()),
    };
    let read = blocking(move || {
        let summary = control.queue_summary()?;
        let items = control.queue(limit)?;
        Ok::<_, ControlError>((summary, items))
    })
    .await;
    match read {
        Ok(Ok((summary, items))) => json_answer(
            StatusCode::OK,
            &json!({
                "queued": summary.queued,
                "failed": summary.failed,
                "messages": items.iter().map(item).collect::<Vec<Value>>(),
            }),
        ),
        Ok(Err(e)) => failure(&e),
        Err(response) => response,
    }
}

/// `POST /queue/<id>/retry`: a failed message goes back in the queue, a
/// waiting one loses its retry wait, and a forwarding pass is asked for.
pub async fn retry(control: Arc<Control>, id: &str) -> Response<Full<Bytes>> {
    let owned = id.to_string();
    match blocking(move || control.retry(&owned)).await {
        Ok(Ok(())) => json_answer(
            StatusCode::ACCEPTED,
            &json!({ "id": id, "result": "retrying" }),
        ),
        Ok(Err(e)) => failure(&e),
        Err(response) => response,
    }
}

/// `DELETE /queue/<id>`: a waiting or failed message's files go.
pub async fn delete(control: Arc<Control>, id: &str) -> Response<Full<Bytes>> {
    let owned = id.to_string();
    match blocking(move || control.delete(&owned)).await {
        Ok(Ok(())) => json_answer(StatusCode::OK, &json!({ "id": id, "result": "deleted" })),
        Ok(Err(e)) => failure(&e),
        Err(response) => response,
    }
}

/// One message as the listing shows it.
pub fn item(item: &QueueItem) -> Value {
    let entry = &item.entry;
    let envelope = &entry.envelope;
    json!({
        "id": entry.id.as_str(),
        "state": entry.state.name(),
        "from": envelope.from,
        "to": envelope.to_remote,
        "to_local": envelope.to_local,
        "size": entry.size,
        "age_seconds": entry.age.map(|a| a.as_secs()),
        "attempts": item.attempts,
        "reason": item.reason,
    })
}

/// A `?limit=` that is not a number from 1 to [`MAX_LIMIT`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid limit: expecting a number from 1 to {MAX_LIMIT}")]
struct BadLimit;

/// `?limit=N`, 1 to [`MAX_LIMIT`]; other parameters are ignored.
fn limit(query: Option<&str>) -> Result<usize, BadLimit> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("limit="));
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(BadLimit),
        },
    }
}

/// An action's error, with the status that says whose fault it is.
pub fn failure(e: &ControlError) -> Response<Full<Bytes>> {
    error(status_of(e), &e.to_string())
}

fn status_of(e: &ControlError) -> StatusCode {
    match e {
        ControlError::BadId(_) => StatusCode::BAD_REQUEST,
        ControlError::Queue(QueueError::NotFound(_)) => StatusCode::NOT_FOUND,
        ControlError::Queue(QueueError::Busy(_))
        | ControlError::NoRemote
        | ControlError::NothingToSend => StatusCode::CONFLICT,
        ControlError::Forwarding(_) => StatusCode::BAD_GATEWAY,
        ControlError::Queue(QueueError::Store(_)) | ControlError::Store(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_answer(status, &json!({ "error": message }))
}

pub fn json_answer(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = value.to_string();
    body.push('\n');
    with_type(status, "application/json", body.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Envelope, MessageId, QueueEntry, QueueState};
    use std::time::Duration;

    #[test]
    fn a_message_lists_with_its_envelope_and_attempts() {
        let id = MessageId::parse("emailrelay.7.1700000000.3").unwrap();
        let listed = item(&QueueItem {
            entry: QueueEntry {
                id,
                state: QueueState::Failed,
                envelope: Envelope {
                    from: "a@example.com".into(),
                    to_remote: vec!["b@example.org".into(), "c@example.org".into()],
                    ..Envelope::default()
                },
                size: 1234,
                age: Some(Duration::from_secs(61)),
            },
            attempts: 2,
            reason: Some("550 no such user".into()),
        });
        assert_eq!(
            listed,
            json!({
                "id": "emailrelay.7.1700000000.3",
                "state": "failed",
                "from": "a@example.com",
                "to": ["b@example.org", "c@example.org"],
                "to_local": [],
                "size": 1234,
                "age_seconds": 61,
                "attempts": 2,
                "reason": "550 no such user",
            })
        );
    }

    #[test]
    fn limits_parse_within_bounds() {
        assert_eq!(limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some("x=1&limit=5")), Ok(5));
        assert!(limit(Some("limit=0")).is_err());
        assert!(limit(Some("limit=-1")).is_err());
        assert!(limit(Some("limit=100001")).is_err());
    }

    #[test]
    fn errors_say_whose_fault_it_is() {
        let status = |e| status_of(&e);
        assert_eq!(
            status(ControlError::BadId("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ControlError::Queue(QueueError::NotFound("x".into()))),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(ControlError::Queue(QueueError::Busy("x".into()))),
            StatusCode::CONFLICT
        );
        assert_eq!(status(ControlError::NoRemote), StatusCode::CONFLICT);
    }
}
