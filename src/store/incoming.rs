//! Receiving a message: the content file written as it arrives, then
//! either committed in one step or prepared (`.envelope.new`, fsynced) for a
//! filter and committed, discarded or abandoned after it. Until the commit
//! the files are removed on any failure or drop: the client has not been
//! told 250.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{create_exclusive, io_err, Envelope, MessageId, Spool, StoreError};

/// A message being received: its content file is open for writing.
#[derive(Debug)]
pub struct NewMessage {
    pub(super) spool: Arc<Spool>,
    pub(super) id: MessageId,
    pub(super) content: Option<BufWriter<File>>,
    pub(super) size: u64,
}

impl NewMessage {
    /// The id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// Content bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends content. Writes go to the page cache through a buffer; the
    /// fsync that makes them durable happens in `commit`, off the runtime.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.spool.path(&self.id, ".content");
        let Some(content) = self.content.as_mut() else {
            return Ok(());
        };
        content
            .write_all(bytes)
            .map_err(io_err("cannot write content file", &path))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Makes the message durable and visible for forwarding. On error the
    /// files are removed: the client is told 4xx and keeps the message.
    ///
    /// From the start of the commit the blocking task owns the files and
    /// removes them itself if it fails, so cancelling this future (say, at
    /// shutdown) can never delete a message that the task goes on to commit.
    pub async fn commit(mut self, envelope: Envelope) -> Result<MessageId, StoreError> {
        // One blocking task for the whole write: this is every message's path.
        let id = self.write_files(envelope, true).await?;
        if let Err(e) = self.spool.dir_sync.sync().await {
            // Not durable, and the client will be told so: take it back.
            remove_message_files(&self.spool, &id);
            return Err(io_err("cannot sync spool directory", &self.spool.dir)(e));
        }
        Ok(id)
    }

    /// The first half of a commit, for a filter to run in between: the
    /// content and the `.envelope.new` file are written and fsynced. The
    /// returned [`Prepared`] commits, discards or abandons them.
    pub async fn prepare(mut self, envelope: Envelope) -> Result<Prepared, StoreError> {
        let id = self.write_files(envelope, false).await?;
        Ok(Prepared {
            spool: Arc::clone(&self.spool),
            id,
            settled: false,
        })
    }

    /// As [`NewMessage::commit`], for a caller without a runtime
    /// (`emailrelay-submit`): the same writes and fsyncs, in this thread,
    /// with the directory fsynced at once rather than in a group.
    pub fn commit_now(mut self, envelope: Envelope) -> Result<MessageId, StoreError> {
        let content = self.content.take().expect("written once");
        let id = std::mem::replace(&mut self.id, MessageId(String::new()));
        let result = write_committed(&self.spool, &id, content, &envelope).and_then(|()| {
            self.spool
                .dir_sync
                .sync_now()
                .map_err(io_err("cannot sync spool directory", &self.spool.dir))
        });
        if result.is_err() {
            remove_message_files(&self.spool, &id);
        }
        result.map(|()| id)
    }

    /// Throws the partial message away.
    pub fn discard(self) {}
}

impl Drop for NewMessage {
    fn drop(&mut self) {
        if self.id.0.is_empty() {
            return;
        }
        self.content.take();
        remove_message_files(&self.spool, &self.id);
    }
}

/// A received message whose files are durable but whose envelope is still
/// `.envelope.new`, invisible to forwarding. Dropping it unsettled removes
/// the files: the client has not been told 250.
#[derive(Debug)]
pub struct Prepared {
    spool: Arc<Spool>,
    id: MessageId,
    settled: bool,
}

impl Prepared {
    /// The id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The content file's path.
    pub fn content_path(&self) -> PathBuf {
        self.spool.path(&self.id, ".content")
    }

    /// The `.envelope.new` path.
    pub fn envelope_path(&self) -> PathBuf {
        self.spool.path(&self.id, ".envelope.new")
    }

    /// Renames `.envelope.new` to `.envelope` and fsyncs the directory.
    /// `resync`: fsync both files again first, because a filter edited them.
    pub async fn commit(mut self, resync: bool) -> Result<MessageId, StoreError> {
        let new_path = self.envelope_path();
        let content_path = self.content_path();
        let final_path = self.spool.path(&self.id, ".envelope");
        let renamed = tokio::task::spawn_blocking(move || {
            if resync {
                for path in [&content_path, &new_path] {
                    File::open(path)
                        .and_then(|f| f.sync_data())
                        .map_err(io_err("cannot sync message file", path))?;
                }
            }
            fs::rename(&new_path, &final_path)
                .map_err(io_err("cannot commit envelope file", &new_path))
        })
        .await
        .unwrap_or_else(|e| {
            Err(io_err("commit task failed", &self.spool.dir)(
                io::Error::other(e.to_string()),
            ))
        });
        renamed?;
        if let Err(e) = self.spool.dir_sync.sync().await {
            // Not durable, and the client will be told so: take it back.
            return Err(io_err("cannot sync spool directory", &self.spool.dir)(e));
        }
        self.settled = true;
        Ok(self.id.clone())
    }

    /// Leaves the files to whoever took them over (a filter that exited
    /// 100, or a built-in that moved the message elsewhere).
    pub fn abandon(mut self) {
        self.settled = true;
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.settled {
            remove_message_files(&self.spool, &self.id);
        }
    }
}

impl NewMessage {
    /// Hands the files to a blocking task that fsyncs them (and, with
    /// `rename`, makes the envelope final) and removes them itself if that
    /// fails. From here on `self` owns nothing, so its drop removes nothing.
    async fn write_files(
        &mut self,
        envelope: Envelope,
        rename: bool,
    ) -> Result<MessageId, StoreError> {
        let content = self.content.take().expect("written once");
        let id = std::mem::replace(&mut self.id, MessageId(String::new()));
        let spool = Arc::clone(&self.spool);
        let task_id = id.clone();
        tokio::task::spawn_blocking(move || {
            let result = if rename {
                write_committed(&spool, &task_id, content, &envelope)
            } else {
                write_prepared(&spool, &task_id, content, &envelope)
            };
            if result.is_err() {
                remove_message_files(&spool, &task_id);
            }
            result
        })
        .await
        .unwrap_or_else(|e| {
            Err(io_err("commit task failed", &self.spool.dir)(
                io::Error::other(e.to_string()),
            ))
        })?;
        Ok(id)
    }
}

/// Hard-links `from` to `to`, or copies and fsyncs it where a link is not
/// possible (another file system).
pub fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let mut source = File::open(from)?;
    let mut target = create_exclusive(to)?;
    io::copy(&mut source, &mut target)?;
    target.sync_data()
}

/// Removes whatever exists of a message that was never acknowledged.
pub(super) fn remove_message_files(spool: &Spool, id: &MessageId) {
    for suffix in [".envelope.new", ".envelope", ".content"] {
        let _ = fs::remove_file(spool.path(id, suffix));
    }
}

/// [`write_prepared`], then the envelope renamed to its final name; the
/// caller fsyncs the directory.
fn write_committed(
    spool: &Spool,
    id: &MessageId,
    content: BufWriter<File>,
    envelope: &Envelope,
) -> Result<(), StoreError> {
    write_prepared(spool, id, content, envelope)?;
    let new_path = spool.path(id, ".envelope.new");
    fs::rename(&new_path, spool.path(id, ".envelope"))
        .map_err(io_err("cannot commit envelope file", &new_path))
}

/// Content fsync, envelope written to `.new` and fsynced. The caller then
/// renames it to `.envelope` and fsyncs the directory.
fn write_prepared(
    spool: &Spool,
    id: &MessageId,
    content: BufWriter<File>,
    envelope: &Envelope,
) -> Result<(), StoreError> {
    let content_path = spool.path(id, ".content");
    let file = content
        .into_inner()
        .map_err(|e| io_err("cannot write content file", &content_path)(e.into_error()))?;
    file.sync_data()
        .map_err(io_err("cannot sync content file", &content_path))?;
    let new_path = spool.path(id, ".envelope.new");
    let mut env_file =
        create_exclusive(&new_path).map_err(io_err("cannot create envelope file", &new_path))?;
    env_file
        .write_all(&envelope.to_bytes())
        .map_err(io_err("cannot write envelope file", &new_path))?;
    env_file
        .sync_data()
        .map_err(io_err("cannot sync envelope file", &new_path))
}
