//! A message locked for forwarding (`.envelope.busy`, held against crash
//! recovery: see `platform::files::Held`), and what forwarding does with
//! it: delete, fail to `.bad`, or unlock.

use std::path::PathBuf;
use std::sync::Arc;

use super::{io_err, Envelope, MessageId, Spool, SpoolFile, StoreError};
use crate::platform::files::{self, Held};

/// A message locked for forwarding. Dropping it without `delete` or `fail`
/// unlocks it, so an aborted forward never strands a `.busy` file.
#[derive(Debug)]
pub struct Locked {
    pub(super) spool: Arc<Spool>,
    pub(super) id: MessageId,
    pub envelope: Envelope,
    /// Let go (`None`) just before the file is replaced: Windows cannot
    /// rename onto a file that is open.
    pub(super) hold: Option<Held>,
    pub(super) done: bool,
}

impl Locked {
    /// The id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The content file's path.
    pub fn content_path(&self) -> PathBuf {
        self.spool.path(&self.id, SpoolFile::Content)
    }

    /// The `.envelope.busy` path, for a client filter.
    pub fn envelope_path(&self) -> PathBuf {
        self.spool.path(&self.id, SpoolFile::EnvelopeBusy)
    }

    /// Reads the envelope again after a client filter may have edited it.
    pub fn reload(&mut self) -> Result<(), StoreError> {
        let busy = self.envelope_path();
        let mut bytes = Vec::new();
        super::open_regular(&busy)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
            .map_err(io_err("cannot read envelope", &busy))?;
        self.envelope = Envelope::parse(&bytes)
            .map_err(|source| StoreError::Envelope { path: busy, source })?;
        Ok(())
    }

    /// Forwarded: removes the envelope, then the content. In that order a
    /// crash in between leaves only an orphan content file, never an
    /// envelope that would be forwarded again without its content.
    pub fn delete(mut self) -> Result<(), StoreError> {
        self.done = true;
        let busy = self.spool.path(&self.id, SpoolFile::EnvelopeBusy);
        files::remove_file(&busy).map_err(io_err("cannot delete envelope file", &busy))?;
        let content = self.content_path();
        files::remove_file(&content).map_err(io_err("cannot delete content file", &content))?;
        self.spool.committer.forget(&self.id);
        Ok(())
    }

    /// Failed for good: writes the reason and renames to `.bad`.
    pub fn fail(mut self, reason: &str, code: Option<u16>) -> Result<(), StoreError> {
        let mut envelope = self.envelope.clone();
        envelope.reason = Some(reason.to_string());
        envelope.reason_code = code;
        self.fail_raw(&envelope.to_bytes())
    }

    /// Keeps only `remaining` recipients and fails the message (`--forward-to-some`).
    pub fn fail_recipients(
        mut self,
        remaining: Vec<String>,
        reason: &str,
        code: Option<u16>,
    ) -> Result<(), StoreError> {
        self.envelope.to_remote = remaining;
        self.fail(reason, code)
    }

    /// Marks the message failed. The new envelope text replaces `.busy`
    /// atomically (written to a temporary name, flushed, then renamed over
    /// it) and only then becomes `.bad`, so at every moment exactly one
    /// envelope file exists and a crash can never leave both a `.bad` and a
    /// `.busy`. (Neither rename is synced here: a crash before the next
    /// directory sync may leave the `.busy` envelope, which recovery puts
    /// back for another try.)
    /// If writing fails the message is simply unlocked, for a later try.
    pub(super) fn fail_raw(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let busy = self.spool.path(&self.id, SpoolFile::EnvelopeBusy);
        let tmp = self.spool.path(&self.id, SpoolFile::EnvelopeTmp);
        self.hold = None;
        files::write_atomic_unsynced(&busy, &tmp, bytes, super::FILE_MODE)
            .map_err(|e| io_err("cannot write envelope file", &tmp)(e.source))?;
        self.done = true;
        files::rename(&busy, self.spool.path(&self.id, SpoolFile::EnvelopeBad))
            .map_err(io_err("cannot fail envelope file", &busy))
    }

    /// Puts the message back for a later attempt.
    pub fn unlock(self) {}
}

impl Drop for Locked {
    fn drop(&mut self) {
        if !self.done {
            let busy = self.spool.path(&self.id, SpoolFile::EnvelopeBusy);
            let _ = files::rename(&busy, self.spool.path(&self.id, SpoolFile::Envelope));
        }
    }
}
