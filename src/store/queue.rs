//! The spool seen as a queue by the operator interfaces: one message's
//! summary (envelope, size, age), and the actions on one message that the
//! HTTP endpoint offers (retry a failed one, delete one).
//!
//! Must not race the forwarder: a message is deleted only under the same
//! rename-and-flock lock that forwarding takes, so a message being sent is
//! never deleted under it, and one that is deleted is never sent.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::{io_err, is_regular, open_regular, Envelope, MessageId, Spool, SpoolFile, StoreError};

/// Where a message is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueState {
    /// `.envelope`: waiting to be forwarded.
    Queued,
    /// `.envelope.busy`: being forwarded now.
    Busy,
    /// `.envelope.bad`: failed, kept with its reason.
    Failed,
}

impl QueueState {
    /// The envelope file of this state.
    pub fn file(self) -> SpoolFile {
        match self {
            QueueState::Queued => SpoolFile::Envelope,
            QueueState::Busy => SpoolFile::EnvelopeBusy,
            QueueState::Failed => SpoolFile::EnvelopeBad,
        }
    }

    /// The name the operator interfaces show.
    pub fn name(self) -> &'static str {
        match self {
            QueueState::Queued => "queued",
            QueueState::Busy => "busy",
            QueueState::Failed => "failed",
        }
    }
}

/// One message as the queue listing shows it.
#[derive(Clone, Debug)]
pub struct QueueEntry {
    pub id: MessageId,
    pub state: QueueState,
    pub envelope: Envelope,
    /// The content file's size in bytes.
    pub size: u64,
    /// Time since the message was received (from its id).
    pub age: Option<std::time::Duration>,
}

/// What an action on one message found.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No message with that id in a state the action applies to.
    #[error("no such message: {0}")]
    NotFound(String),
    /// The message is being forwarded right now.
    #[error("message is busy: {0}")]
    Busy(String),
    /// The spool failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Spool {
    /// The message's summary in `state`, read without locking (the
    /// envelope is replaced only by rename, so a read sees a whole one).
    pub fn entry(&self, id: &MessageId, state: QueueState) -> Result<QueueEntry, StoreError> {
        let path = self.path(id, state.file());
        let mut bytes = Vec::new();
        open_regular(&path)
            .and_then(|mut f| io::Read::read_to_end(&mut f, &mut bytes))
            .map_err(io_err("cannot read envelope", &path))?;
        let envelope =
            Envelope::parse(&bytes).map_err(|source| StoreError::Envelope { path, source })?;
        let size = fs::metadata(self.path(id, SpoolFile::Content)).map_or(0, |m| m.len());
        let age = id
            .created()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        Ok(QueueEntry {
            id: id.clone(),
            state,
            envelope,
            size,
            age,
        })
    }

    /// The state a message with this id is in, if it exists.
    pub fn state_of(&self, id: &MessageId) -> Option<QueueState> {
        [QueueState::Queued, QueueState::Busy, QueueState::Failed]
            .into_iter()
            .find(|s| is_regular(&self.path(id, s.file())))
    }

    /// Puts one failed message back in the queue (`.bad` to `.envelope`).
    /// A queued message is left as it is (`Ok(false)`).
    pub fn unfail(&self, id: &MessageId) -> Result<bool, QueueError> {
        match self.state_of(id) {
            Some(QueueState::Queued) => Ok(false),
            Some(QueueState::Busy) => Err(QueueError::Busy(id.to_string())),
            None => Err(QueueError::NotFound(id.to_string())),
            Some(QueueState::Failed) => {
                let from = self.path(id, SpoolFile::EnvelopeBad);
                fs::rename(&from, self.path(id, SpoolFile::Envelope))
                    .map_err(io_err("cannot unfail envelope", &from))?;
                Ok(true)
            }
        }
    }

    /// Deletes one queued or failed message: envelope first, then content
    /// (a crash between leaves an orphan content file, which the sweep
    /// removes, never an envelope without content). A message being
    /// forwarded is not touched.
    pub fn remove(self: &std::sync::Arc<Self>, id: &MessageId) -> Result<(), QueueError> {
        match self.state_of(id) {
            None => Err(QueueError::NotFound(id.to_string())),
            Some(QueueState::Busy) => Err(QueueError::Busy(id.to_string())),
            Some(QueueState::Queued) => match self.lock(id)? {
                Some(locked) => Ok(locked.delete()?),
                None => Err(QueueError::Busy(id.to_string())),
            },
            Some(QueueState::Failed) => {
                // Taken out of `.bad` by rename, so that no `unfail-all`
                // can put it back in the queue while it is deleted.
                let bad = self.path(id, SpoolFile::EnvelopeBad);
                let gone = self.path(id, SpoolFile::EnvelopeDeleting);
                fs::rename(&bad, &gone).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => QueueError::NotFound(id.to_string()),
                    _ => io_err("cannot delete envelope file", &bad)(e).into(),
                })?;
                remove(&gone)?;
                remove(&self.path(id, SpoolFile::Content))?;
                self.committer.forget(id);
                Ok(())
            }
        }
    }
}

fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("cannot delete file", path)(e)),
        _ => Ok(()),
    }
}

/// The ids of messages in one state, read from the spool directory as
/// the iteration goes: memory does not grow with the spool. Directory
/// order, not oldest first: a caller that wants order sorts what it took.
pub struct Walk {
    entries: fs::ReadDir,
    file: SpoolFile,
}

/// The walk over waiting messages.
pub type ReadyWalk = Walk;

impl Iterator for Walk {
    type Item = MessageId;

    fn next(&mut self) -> Option<MessageId> {
        loop {
            let Ok(entry) = self.entries.next()? else {
                continue;
            };
            let name = entry.file_name();
            if let Some(id) = MessageId::from_file_name(&name.to_string_lossy(), self.file) {
                return Some(id);
            }
        }
    }
}

impl Spool {
    /// Walks the messages in `state`; see [`Walk`].
    pub fn walk(&self, state: QueueState) -> Result<Walk, StoreError> {
        let entries =
            fs::read_dir(self.dir()).map_err(io_err("cannot read spool directory", self.dir()))?;
        Ok(Walk {
            entries,
            file: state.file(),
        })
    }

    /// Walks the waiting messages.
    pub fn walk_ready(&self) -> Result<Walk, StoreError> {
        self.walk(QueueState::Queued)
    }

    /// True if at least one message waits (stops at the first).
    pub fn has_ready(&self) -> Result<bool, StoreError> {
        Ok(self.walk_ready()?.next().is_some())
    }

    /// The `limit` oldest messages in `state`, oldest first, read with
    /// memory for `limit` ids only.
    pub fn oldest(&self, state: QueueState, limit: usize) -> Result<Vec<MessageId>, StoreError> {
        let mut heap = std::collections::BinaryHeap::new();
        for id in self.walk(state)? {
            heap.push((id.sort_key(), id));
            if heap.len() > limit {
                heap.pop();
            }
        }
        Ok(heap
            .into_sorted_vec()
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    }

    /// The spool directory's modification time: it changes whenever a
    /// file is added, renamed or removed, so an unchanged time means no
    /// message arrived, failed or was put back.
    pub fn modified(&self) -> Option<SystemTime> {
        fs::metadata(self.dir()).and_then(|m| m.modified()).ok()
    }
}

/// Sorts ids oldest first, as the spool lists them.
pub fn sort_ids(ids: &mut [MessageId]) {
    ids.sort_by_key(MessageId::sort_key);
}
