//! The status page's view of the spool: one page of queued or failed
//! messages at a time, oldest first, optionally only those matching a
//! search, with each message's subject; a message's header section on
//! request; and `unfail` of one message.
//!
//! Memory and time stay bounded whatever the spool holds: a page is found
//! by walking the directory once per chunk and keeping only the chunk's
//! smallest ids after the cursor (keyset paging: no offset, so the tenth
//! thousand page costs what the first does); a search reads envelopes a
//! chunk at a time and stops after [`SEARCH_BUDGET`], handing back where
//! it got to; a subject is read from the first [`HEAD_LIMIT`] bytes of
//! the content, headers only.
//!
//! Must not: read a message body, or build a path from anything but a
//! parsed id.

use std::io::Read;
use std::time::{Duration, Instant};

use super::{parse_id, Control, ControlError, QueueItem};
use crate::store::{MessageId, QueueError, QueueState, SpoolFile};

/// Ids read per directory walk while searching.
const SEARCH_CHUNK: usize = 5000;

/// A search stops after this and says where it got to.
pub const SEARCH_BUDGET: Duration = Duration::from_secs(2);

/// The most of a message's content read for its headers.
pub const HEAD_LIMIT: usize = 64 * 1024;

/// The most a page may hold.
pub const MAX_PAGE: usize = 500;

/// What to list.
#[derive(Clone, Debug)]
pub struct PageQuery {
    /// Failed messages (`.bad`), else waiting and busy ones.
    pub failed: bool,
    /// Only messages after this one in queue order.
    pub after: Option<String>,
    /// Messages wanted, 1 to [`MAX_PAGE`].
    pub size: usize,
    /// Only messages whose id, sender, recipients, reason or subject
    /// contain this, ignoring case.
    pub search: Option<String>,
}

/// One page.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub items: Vec<(QueueItem, Option<String>)>,
    /// Where the next page starts (the last id looked at), if there may
    /// be more.
    pub next: Option<String>,
    /// Messages looked at (read, for a search).
    pub scanned: usize,
    /// A search ran out of time before filling the page.
    pub partial: bool,
}

type Key = ((u64, u64, u64), MessageId);

impl Control {
    /// One page of the queue or of the failures; see the module
    /// documentation.
    pub fn page(&self, query: &PageQuery) -> Result<Page, ControlError> {
        let states: &[QueueState] = if query.failed {
            &[QueueState::Failed]
        } else {
            &[QueueState::Queued, QueueState::Busy]
        };
        let mut cursor: Option<Key> = match &query.after {
            Some(text) => {
                let id = parse_id(text)?;
                Some((id.sort_key(), id))
            }
            None => None,
        };
        let needle = query.search.as_ref().map(|s| s.to_lowercase());
        let chunk = if needle.is_some() {
            SEARCH_CHUNK
        } else {
            query.size
        };
        let started = Instant::now();
        let mut page = Page::default();
        loop {
            let ids = self.after(states, cursor.as_ref(), chunk)?;
            let whole = ids.len() == chunk;
            for key in ids {
                page.scanned += 1;
                let id = key.1.clone();
                cursor = Some(key);
                let Some(found) = self.describe(&id) else {
                    continue;
                };
                if needle.as_ref().is_some_and(|n| !matches(&found, n)) {
                    continue;
                }
                page.items.push(found);
                if page.items.len() == query.size {
                    page.next = Some(id.to_string());
                    return Ok(page);
                }
            }
            if !whole {
                return Ok(page);
            }
            if started.elapsed() > SEARCH_BUDGET {
                page.partial = true;
                page.next = cursor.map(|(_, id)| id.to_string());
                return Ok(page);
            }
        }
    }

    /// The header section of a message, up to [`HEAD_LIMIT`] bytes, and
    /// whether it was cut there.
    pub fn headers(&self, id: &str) -> Result<(String, bool), ControlError> {
        let id = parse_id(id)?;
        if self.spool().state_of(&id).is_none() {
            return Err(QueueError::NotFound(id.to_string()).into());
        }
        let (head, cut) = self
            .head(&id)
            .ok_or_else(|| ControlError::Queue(QueueError::NotFound(id.to_string())))?;
        Ok((String::from_utf8_lossy(&head).into_owned(), cut))
    }

    /// Puts one failed message back in the queue, without asking for a
    /// pass (the admin `unfail-all`, for one message).
    pub fn unfail(&self, id: &str) -> Result<bool, ControlError> {
        let id = parse_id(id)?;
        let done = self.spool().unfail(&id)?;
        if done {
            crate::info!("unfailed by the operator: [{id}]");
        }
        Ok(done)
    }

    /// The `limit` first ids in queue order after `cursor`, over `states`,
    /// with memory for `limit` ids.
    fn after(
        &self,
        states: &[QueueState],
        cursor: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, ControlError> {
        let mut heap: std::collections::BinaryHeap<Key> = std::collections::BinaryHeap::new();
        for state in states {
            for id in self.spool().walk(*state)? {
                let key = (id.sort_key(), id);
                if cursor.is_some_and(|c| key <= *c) {
                    continue;
                }
                if heap.len() == limit {
                    if heap.peek().is_some_and(|top| key >= *top) {
                        continue;
                    }
                    heap.pop();
                }
                heap.push(key);
            }
        }
        Ok(heap.into_sorted_vec())
    }

    /// A message as the page lists it, with its subject; `None` if it
    /// moved on meanwhile.
    fn describe(&self, id: &MessageId) -> Option<(QueueItem, Option<String>)> {
        let state = self.spool().state_of(id)?;
        let entry = self.spool().entry(id, state).ok()?;
        let (attempts, reason) = match state {
            QueueState::Failed => (0, entry.envelope.reason.clone()),
            _ => self.forwarder().attempts(id),
        };
        let subject = self.head(id).and_then(|(head, _)| subject(&head));
        Some((
            QueueItem {
                entry,
                attempts,
                reason,
            },
            subject,
        ))
    }

    /// The content's first bytes up to the end of the header section.
    fn head(&self, id: &MessageId) -> Option<(Vec<u8>, bool)> {
        let path = self.spool().path(id, SpoolFile::Content);
        let file = crate::store::open_regular(&path).ok()?;
        let mut bytes = Vec::new();
        file.take(HEAD_LIMIT as u64).read_to_end(&mut bytes).ok()?;
        Some(header_section(bytes))
    }
}

/// The header section of `bytes` (a message's start), without the blank
/// line that ends it; cut if no end was found within [`HEAD_LIMIT`].
fn header_section(mut bytes: Vec<u8>) -> (Vec<u8>, bool) {
    let end = bytes
        .windows(2)
        .enumerate()
        .find(|(i, w)| *w == b"\n\n" || (*w == b"\r\n" && bytes[..*i].ends_with(b"\n")))
        .map(|(i, _)| i);
    match end {
        Some(end) => {
            bytes.truncate(end);
            while bytes.last().is_some_and(|b| *b == b'\r' || *b == b'\n') {
                bytes.pop();
            }
            (bytes, false)
        }
        None => {
            let cut = bytes.len() >= HEAD_LIMIT;
            (bytes, cut)
        }
    }
}

/// The `Subject` header's value, unfolded, at most 300 characters.
fn subject(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut value = loop {
        let line = lines.next()?;
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case("subject:") {
            break line[8..].trim().to_string();
        }
    };
    for line in lines {
        if !line.starts_with([' ', '\t']) {
            break;
        }
        value.push(' ');
        value.push_str(line.trim());
    }
    Some(value.chars().take(300).collect())
}

/// True if the message's id, sender, recipients, reason or subject
/// contain `needle` (lower case).
fn matches((item, subject): &(QueueItem, Option<String>), needle: &str) -> bool {
    let envelope = &item.entry.envelope;
    std::iter::once(item.entry.id.as_str())
        .chain(std::iter::once(envelope.from.as_str()))
        .chain(envelope.to_remote.iter().map(String::as_str))
        .chain(envelope.to_local.iter().map(String::as_str))
        .chain(item.reason.as_deref())
        .chain(subject.as_deref())
        .any(|field| field.to_lowercase().contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_section_ends_at_the_first_blank_line() {
        let (head, cut) = header_section(b"Subject: a\r\nX: b\r\n\r\nbody\r\n\r\n".to_vec());
        assert_eq!((head.as_slice(), cut), (&b"Subject: a\r\nX: b"[..], false));
        let (head, cut) = header_section(b"Subject: a\nX: b\n\nbody\n".to_vec());
        assert_eq!((head.as_slice(), cut), (&b"Subject: a\nX: b"[..], false));
        let (head, cut) = header_section(b"Subject: no end".to_vec());
        assert_eq!((head.as_slice(), cut), (&b"Subject: no end"[..], false));
        let (_, cut) = header_section(vec![b'x'; HEAD_LIMIT]);
        assert!(cut);
    }

    #[test]
    fn subjects_are_found_and_unfolded() {
        assert_eq!(
            subject(b"From: a\r\nsubject:  Printer  \r\n\tout of toner\r\nTo: b").as_deref(),
            Some("Printer out of toner")
        );
        assert_eq!(subject(b"From: a\r\nSubjects: x"), None);
        assert_eq!(subject(b""), None);
    }
}
