//! The status page's queue and failures view, behind the queue's access
//! rule: `GET /status/queue?state=queued|failed&q=TEXT&after=ID&size=N`
//! (one page, paged and searched by `control` with bounded memory),
//! `GET /status/message/<id>` (the message's header section, only when
//! asked for; never the body), and `POST /status/message/<id>/<action>`
//! with `retry`, `delete` or `unfail`, which also needs the page's token.
//!
//! Must not: touch the spool itself (all through `control`).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::blocking;
use super::queue::{failure, json_answer};
use crate::control::{Control, PageQuery, MAX_PAGE};

/// Messages a page shows unless `size=` says otherwise.
const DEFAULT_SIZE: usize = 50;

/// The most of a search text used.
const MAX_SEARCH: usize = 200;

/// An action of the page on one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Retry,
    Delete,
    Unfail,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "retry" => Some(Action::Retry),
            "delete" => Some(Action::Delete),
            "unfail" => Some(Action::Unfail),
            _ => None,
        }
    }
}

/// `GET /status/queue`.
pub async fn list(control: Arc<Control>, query: Option<&str>) -> Response<Full<Bytes>> {
    let query = match page_query(query.unwrap_or("")) {
        Ok(q) => q,
        Err(why) => {
            let why = why.to_string();
            return json_answer(StatusCode::BAD_REQUEST, &json!({ "error": why }));
        }
    };
    match blocking(move || control.page(&query)).await {
        Ok(Ok(page)) => {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|(item, subject)| {
                    let mut value = super::queue::item(item);
                    if let Value::Object(map) = &mut value {
                        map.insert("subject".into(), json!(subject));
                    }
                    value
                })
                .collect();
            let mut response = json_answer(
                StatusCode::OK,
                &json!({
                    "messages": items,
                    "next": page.next,
                    "scanned": page.scanned,
                    "partial": page.partial,
                }),
            );
            super::page::no_store(&mut response);
            response
        }
        Ok(Err(e)) => failure(&e),
        Err(response) => response,
    }
}

/// `GET /status/message/<id>`: the header section, as text.
pub async fn headers(control: Arc<Control>, id: &str) -> Response<Full<Bytes>> {
    let owned = id.to_string();
    match blocking(move || control.headers(&owned)).await {
        Ok(Ok((head, cut))) => {
            let mut response = json_answer(
                StatusCode::OK,
                &json!({ "id": id, "headers": head, "cut": cut }),
            );
            super::page::no_store(&mut response);
            response
        }
        Ok(Err(e)) => failure(&e),
        Err(response) => response,
    }
}

/// `POST /status/message/<id>/<action>`.
pub async fn act(control: Arc<Control>, id: &str, action: Action) -> Response<Full<Bytes>> {
    let owned = id.to_string();
    let done = blocking(move || match action {
        Action::Retry => control.retry(&owned).map(|()| "retrying"),
        Action::Delete => control.delete(&owned).map(|()| "deleted"),
        Action::Unfail => {
            control
                .unfail(&owned)
                .map(|done| if done { "unfailed" } else { "already queued" })
        }
    })
    .await;
    match done {
        Ok(Ok(result)) => json_answer(StatusCode::OK, &json!({ "id": id, "result": result })),
        Ok(Err(e)) => failure(&e),
        Err(response) => response,
    }
}

/// Why a page query was refused (the `error` of the 400 answer).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum QueryError {
    /// A value that is not `application/x-www-form-urlencoded` UTF-8.
    #[error("invalid {0}: bad encoding")]
    Encoding(String),
    #[error("invalid state: expecting queued or failed")]
    State,
    #[error("invalid size: expecting a number from 1 to {MAX_PAGE}")]
    Size,
}

/// The page query from `state`, `q`, `after` and `size`.
fn page_query(query: &str) -> Result<PageQuery, QueryError> {
    let mut page = PageQuery {
        failed: false,
        after: None,
        size: DEFAULT_SIZE,
        search: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value).ok_or_else(|| QueryError::Encoding(name.to_string()))?;
        match name {
            "state" => {
                page.failed = match value.as_str() {
                    "queued" => false,
                    "failed" => true,
                    _ => return Err(QueryError::State),
                }
            }
            "after" if !value.is_empty() => page.after = Some(value),
            "q" => {
                let text: String = value.trim().chars().take(MAX_SEARCH).collect();
                page.search = (!text.is_empty()).then_some(text);
            }
            "size" => {
                page.size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or(QueryError::Size)?;
            }
            _ => {}
        }
    }
    Ok(page)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte; the result must be UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_queries_parse_and_bad_ones_say_why() {
        let q = page_query("state=failed&q=Printer+%C3%A9&after=emailrelay.1.2.3&size=10").unwrap();
        assert!(q.failed);
        assert_eq!(q.search.as_deref(), Some("Printer é"));
        assert_eq!(q.after.as_deref(), Some("emailrelay.1.2.3"));
        assert_eq!(q.size, 10);
        let q = page_query("").unwrap();
        assert!(!q.failed && q.search.is_none() && q.after.is_none());
        assert_eq!(q.size, DEFAULT_SIZE);
        assert_eq!(page_query("q=+&after=").unwrap().search, None);
        assert_eq!(page_query("state=bad").err(), Some(QueryError::State));
        assert_eq!(page_query("size=0").err(), Some(QueryError::Size));
        assert_eq!(page_query("size=501").err(), Some(QueryError::Size));
        let bad = |q: &str| page_query(q).err().map(|e| e.to_string());
        assert_eq!(bad("q=%zz").as_deref(), Some("invalid q: bad encoding"));
        assert_eq!(
            bad("after=%ff").as_deref(),
            Some("invalid after: bad encoding")
        );
        assert_eq!(
            bad("state=x").as_deref(),
            Some("invalid state: expecting queued or failed")
        );
        assert_eq!(
            bad("size=x").as_deref(),
            Some("invalid size: expecting a number from 1 to 500")
        );
        assert_eq!(Action::parse("unfail"), Some(Action::Unfail));
        assert_eq!(Action::parse("x"), None);
    }
}
