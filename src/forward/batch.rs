//! The messages of one forwarding pass, taken from the spool directory in
//! batches of [`BATCH`]: a pass over a spool of any size holds at most one
//! batch of ids in memory. A spool with fewer waiting messages than that
//! is forwarded oldest first, as E-MailRelay does; a larger one in batches
//! of directory order, each sorted oldest first (deliberate, see
//! docs/compatibility.md).
//!
//! Must not lock messages: the workers do, one at a time, as they take them.

use std::collections::VecDeque;

use crate::store::{sort_ids, MessageId, ReadyWalk};

/// Ids read from the directory at a time.
pub const BATCH: usize = 1024;

/// The pass's queue of message ids.
pub struct PassQueue {
    batch: VecDeque<MessageId>,
    /// The rest of the directory, until it runs out.
    walk: Option<ReadyWalk>,
}

impl PassQueue {
    /// A queue over `walk`; `keep` says which ids this pass takes (those
    /// whose retry time has come). The first batch is read at once.
    pub fn new(walk: ReadyWalk, keep: &dyn Fn(&MessageId) -> bool) -> PassQueue {
        let mut queue = PassQueue {
            batch: VecDeque::new(),
            walk: Some(walk),
        };
        queue.refill(keep);
        queue
    }

    /// The next id, reading another batch when this one is used up.
    pub fn pop(&mut self, keep: &dyn Fn(&MessageId) -> bool) -> Option<MessageId> {
        if self.batch.is_empty() {
            self.refill(keep);
        }
        self.batch.pop_front()
    }

    /// Ids waiting in the batch now.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// True once the whole directory has been read.
    pub fn complete(&self) -> bool {
        self.walk.is_none()
    }

    /// Reads up to [`BATCH`] more ids that `keep` takes.
    fn refill(&mut self, keep: &dyn Fn(&MessageId) -> bool) {
        let Some(walk) = self.walk.as_mut() else {
            return;
        };
        let mut ids = Vec::new();
        for id in walk.by_ref() {
            if keep(&id) {
                ids.push(id);
                if ids.len() == BATCH {
                    break;
                }
            }
        }
        if ids.len() < BATCH {
            self.walk = None;
        }
        sort_ids(&mut ids);
        self.batch.extend(ids);
    }
}
