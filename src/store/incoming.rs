//! Receiving a message: the content file written as it arrives, then
//! either committed in one step or prepared (`.envelope.new`, flushed) for
//! a filter and committed, discarded or abandoned after it; both through
//! the spool's commit pipeline (`commit.rs`). Until the commit the files
//! are removed on any failure or drop: the client has not been told 250.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::commit::Step;
use super::{
    create_exclusive, io_err, remove_files, Envelope, MessageId, Spool, SpoolFile, StoreError,
};

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
        let Some(content) = self.content.as_mut() else {
            return Ok(());
        };
        if let Err(e) = content.write_all(bytes) {
            let path = self.spool.path(&self.id, SpoolFile::Content);
            return Err(io_err("cannot write content file", &path)(e));
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Makes the message durable and visible for forwarding, in the
    /// spool's next commit batch. On error the files are removed: the
    /// client is told 4xx and keeps the message.
    ///
    /// From the start of the commit the commit thread owns the files and
    /// removes them itself if it fails, so cancelling this future (say, at
    /// shutdown) can never delete a message that the thread goes on to
    /// commit.
    pub async fn commit(mut self, envelope: Envelope) -> Result<MessageId, StoreError> {
        let (id, content) = self.hand_over()?;
        let step = Step::Commit {
            content,
            size: self.size,
            envelope: envelope.to_bytes(),
        };
        self.spool.committer.run(id.clone(), step).await?;
        Ok(id)
    }

    /// The first half of a commit, for a filter to run in between: the
    /// content and the `.envelope.new` file are written and flushed. The
    /// returned [`Prepared`] commits, discards or abandons them.
    pub async fn prepare(mut self, envelope: Envelope) -> Result<Prepared, StoreError> {
        let (id, content) = self.hand_over()?;
        let step = Step::Prepare {
            content,
            size: self.size,
            envelope: envelope.to_bytes(),
        };
        self.spool.committer.run(id.clone(), step).await?;
        Ok(Prepared {
            spool: Arc::clone(&self.spool),
            id,
            settled: false,
        })
    }

    /// As [`NewMessage::commit`], for a caller without a runtime
    /// (`emailrelay-submit`): the same steps, in this thread, as a batch of
    /// one.
    pub fn commit_now(mut self, envelope: Envelope) -> Result<MessageId, StoreError> {
        let (id, content) = self.hand_over()?;
        let step = Step::Commit {
            content,
            size: self.size,
            envelope: envelope.to_bytes(),
        };
        self.spool.committer.run_here(id.clone(), step)?;
        Ok(id)
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
        self.spool.path(&self.id, SpoolFile::Content)
    }

    /// The `.envelope.new` path.
    pub fn envelope_path(&self) -> PathBuf {
        self.spool.path(&self.id, SpoolFile::EnvelopeNew)
    }

    /// Renames `.envelope.new` to `.envelope` and fsyncs the directory,
    /// in the spool's next commit batch. `resync`: flush both files again
    /// first, because a filter may have edited them.
    pub async fn commit(mut self, resync: bool) -> Result<MessageId, StoreError> {
        let step = Step::Finish { resync };
        self.spool.committer.run(self.id.clone(), step).await?;
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
    /// The id and the content file, for the commit thread to own: from
    /// here on `self` owns nothing, so its drop removes nothing.
    pub(super) fn hand_over(&mut self) -> Result<(MessageId, BufWriter<File>), StoreError> {
        let path = self.spool.path(&self.id, SpoolFile::Content);
        let Some(content) = self.content.take() else {
            // Only a commit takes it, and a commit consumes the message.
            let e = io::Error::other("already committed");
            return Err(io_err("cannot commit content file", &path)(e));
        };
        let id = std::mem::replace(&mut self.id, MessageId(String::new()));
        Ok((id, content))
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
    remove_files(&spool.dir, id);
}
