//! The spool directory, file-compatible with E-MailRelay: message ids,
//! new-message writing, lock-by-rename, fail/unfail and crash recovery,
//! and the POP3 maildrop view ([`Maildrop`]).
//!
//! Durability rule: [`NewMessage::commit`] returns only after the content
//! and envelope are on disk, the envelope renamed to its final name and the
//! directory fsynced. Messages of concurrent sessions are committed
//! together, with one round of flushes and one directory fsync per batch
//! (group commit, [`Committer`]), so durability costs little under load.
//!
//! ```text
//!   .content + .envelope.new --commit--> .envelope --lock--> .envelope.busy
//!        .envelope.busy --delete--> (gone)   --fail--> .envelope.bad
//!        .envelope.busy --unlock/drop/crash recovery--> .envelope
//!        .envelope.bad --unfail--> .envelope
//! ```

mod commit;
mod envelope;
mod incoming;
mod journal;
mod locked;
mod maildrop;
mod name;
mod queue;
mod sweep;

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::platform::files::open_regular;
use crate::platform::files::{self, AtomicStep, Held};
pub use commit::Committer;
pub use envelope::{Envelope, EnvelopeError};
use incoming::remove_message_files;
pub use incoming::{link_or_copy, NewMessage, Prepared};
pub use journal::{JournalError, Replayed};
pub use locked::Locked;
pub use maildrop::{is_mailbox_name, Deletion, Maildrop, MaildropError, MaildropMessage};
pub use name::{MessageId, SpoolFile, SpoolName};
pub use queue::{sort_ids, QueueEntry, QueueError, QueueState, ReadyWalk, Walk};
pub use sweep::{Swept, SWEEP_INTERVAL};

/// Space kept free on the spool's file system when judging MAIL's `SIZE=`:
/// envelopes, log files and messages already arriving need room too.
pub const FREE_SPACE_RESERVE: u64 = 16 * 1024 * 1024;

/// How long a reading of the free space is used before the file system
/// is asked again: every session and message wants it, and a busy relay
/// would otherwise ask thousands of times a second for a figure that
/// only judges `SIZE=` (a write that finds the disk full still fails the
/// message with a 452).
const FREE_SPACE_TTL: Duration = Duration::from_secs(1);

/// Spool files are created `rw-rw----`, as E-MailRelay does.
const FILE_MODE: u32 = 0o660;

/// Errors from the spool; each carries the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system call failed. (The I/O error is part of the text,
    /// not a separate source, so that it is not printed twice.)
    #[error("{op} [{path}]: {reason}")]
    Io {
        op: &'static str,
        path: PathBuf,
        reason: io::Error,
    },
    /// The spool directory is something else (E-MailRelay's words).
    #[error("invalid spool directory: {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// An envelope file is malformed.
    #[error("invalid envelope [{path}]: {source}")]
    Envelope {
        path: PathBuf,
        source: EnvelopeError,
    },
}

impl StoreError {
    /// True for "out of space" conditions (ENOSPC, EDQUOT): SMTP 452.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Io { reason, .. } if files::is_no_space(reason))
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |reason| StoreError::Io { op, path, reason }
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    committer: Committer,
    /// The last reading of [`Spool::free_space`] and when it was taken.
    free_space: Mutex<Option<(Instant, Option<u64>)>>,
}

impl Spool {
    /// Opens a spool directory, creating it (one level) if it is missing.
    pub fn open(dir: &Path) -> Result<Arc<Spool>, StoreError> {
        if !dir.exists() {
            fs::create_dir(dir).map_err(io_err("cannot create spool directory", dir))?;
        }
        if !dir.is_dir() {
            return Err(StoreError::NotADirectory(dir.to_path_buf()));
        }
        let committer = Committer::open(dir).map_err(io_err("cannot open spool directory", dir))?;
        Ok(Arc::new(Spool {
            dir: dir.to_path_buf(),
            committer,
            free_space: Mutex::new(None),
        }))
    }

    /// As [`Spool::open`], with the write-ahead journal that lets one
    /// flush commit a batch (see `journal.rs`): what an earlier run left in
    /// it is replayed first. The second result says what the replay did,
    /// or why there is no journal (the spool then commits as `open`'s
    /// does).
    pub fn open_journaled(
        dir: &Path,
    ) -> Result<(Arc<Spool>, Result<Replayed, JournalError>), StoreError> {
        Spool::open(dir)?;
        let (committer, replayed) =
            Committer::open_journaled(dir).map_err(io_err("cannot open spool directory", dir))?;
        let spool = Arc::new(Spool {
            dir: dir.to_path_buf(),
            committer,
            free_space: Mutex::new(None),
        });
        Ok((spool, replayed))
    }

    /// At shutdown: what is queued for the commit thread is committed, and
    /// the journal checkpointed and removed (see `journal.rs`).
    pub fn close(&self) {
        self.committer.close();
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one of a message's files.
    pub fn path(&self, id: &MessageId, file: SpoolFile) -> PathBuf {
        id.path_in(&self.dir, file)
    }

    /// A fresh message id, unique within this process whatever the spool.
    pub fn new_id(&self) -> MessageId {
        MessageId::fresh()
    }

    /// Adds a message made from an existing content file (hard-linked where
    /// possible, else copied) and `envelope`, durably, ready for forwarding.
    /// Used by filters that split one message into several.
    pub fn add_copy(&self, content: &Path, envelope: &Envelope) -> Result<MessageId, StoreError> {
        let id = self.new_id();
        self.add_copy_as(&id, content, envelope).map(|()| id)
    }

    /// As [`Spool::add_copy`], under an id from [`Spool::new_id`] that the
    /// caller needed to know first (`split:` lists the ids of a group in
    /// every envelope of it).
    pub fn add_copy_as(
        &self,
        id: &MessageId,
        content: &Path,
        envelope: &Envelope,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        let content_path = self.path(&id, SpoolFile::Content);
        let result = link_or_copy(content, &content_path)
            .map_err(io_err("cannot create content file", &content_path))
            .and_then(|()| {
                let new_path = self.path(&id, SpoolFile::EnvelopeNew);
                let target = self.path(&id, SpoolFile::Envelope);
                files::write_atomic_unsynced(&target, &new_path, &envelope.to_bytes(), FILE_MODE)
                    .map_err(|e| {
                    let op = match e.step {
                        AtomicStep::Create => "cannot create envelope file",
                        AtomicStep::Write => "cannot write envelope file",
                        _ => "cannot commit envelope file",
                    };
                    io_err(op, &new_path)(e.source)
                })?;
                self.committer
                    .sync_dir_now()
                    .map_err(io_err("cannot sync spool directory", &self.dir))
            });
        if result.is_err() {
            remove_message_files(self, &id);
        }
        result
    }

    /// Starts a new message: creates its content file (exclusively).
    pub fn new_message(self: &Arc<Self>) -> Result<NewMessage, StoreError> {
        let id = self.new_id();
        let path = self.path(&id, SpoolFile::Content);
        let file = create_exclusive(&path).map_err(io_err("cannot create content file", &path))?;
        Ok(NewMessage {
            spool: Arc::clone(self),
            id,
            content: Some(BufWriter::with_capacity(32 * 1024, file)),
            size: 0,
        })
    }

    /// Octets a new message may take now: the space available to us on
    /// the spool's file system less [`FREE_SPACE_RESERVE`], or `None` if
    /// it cannot be told.
    /// The file system is asked at most once per [`FREE_SPACE_TTL`].
    pub fn free_space(&self) -> Option<u64> {
        let mut cached = self.free_space.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *cached {
            Some((taken, octets)) if now.duration_since(taken) < FREE_SPACE_TTL => octets,
            _ => {
                let octets = files::free_space(&self.dir)
                    .map(|free| free.saturating_sub(FREE_SPACE_RESERVE));
                *cached = Some((now, octets));
                octets
            }
        }
    }

    /// Ids of messages waiting to be forwarded (`.envelope`), oldest first.
    pub fn ready(&self) -> Result<Vec<MessageId>, StoreError> {
        self.list(SpoolFile::Envelope)
    }

    /// Ids of messages being forwarded (`.envelope.busy`).
    pub fn busy(&self) -> Result<Vec<MessageId>, StoreError> {
        self.list(SpoolFile::EnvelopeBusy)
    }

    /// Ids of failed messages (`.envelope.bad`).
    pub fn failed(&self) -> Result<Vec<MessageId>, StoreError> {
        self.list(SpoolFile::EnvelopeBad)
    }

    fn list(&self, file: SpoolFile) -> Result<Vec<MessageId>, StoreError> {
        let entries =
            fs::read_dir(&self.dir).map_err(io_err("cannot read spool directory", &self.dir))?;
        let mut ids: Vec<MessageId> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| MessageId::from_file_name(&e.file_name().to_string_lossy(), file))
            .collect();
        ids.sort_by_key(MessageId::sort_key);
        Ok(ids)
    }

    /// Locks a message for forwarding by renaming it to `.busy` and taking
    /// an flock on it. `Ok(None)` if another process or task got there first.
    pub fn lock(self: &Arc<Self>, id: &MessageId) -> Result<Option<Locked>, StoreError> {
        let from = self.path(id, SpoolFile::Envelope);
        let busy = self.path(id, SpoolFile::EnvelopeBusy);
        match files::rename(&from, &busy) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot lock envelope", &from)(e)),
        }
        let file = match open_regular(&busy) {
            Ok(file) => file,
            Err(e) => return Err(self.set_aside(id, &busy, "cannot open envelope", e)),
        };
        let Ok(mut lock) = Held::try_hold(file) else {
            return Ok(None);
        };
        // Between our rename and our flock another process's crash
        // recovery may have found the file unlocked and put it back: then
        // the name no longer leads to the file we hold, and it is not ours.
        if !files::same_file(&lock, &busy) {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        if let Err(e) = io::Read::read_to_end(&mut *lock, &mut bytes) {
            return Err(self.set_aside(id, &busy, "cannot read envelope", e));
        }
        let mut locked = Locked {
            spool: Arc::clone(self),
            id: id.clone(),
            envelope: Envelope::default(),
            hold: Some(lock),
            done: false,
        };
        match Envelope::parse(&bytes) {
            Ok(envelope) => {
                locked.envelope = envelope;
                Ok(Some(locked))
            }
            Err(source) => {
                // Unreadable: fail it so that it is not retried forever.
                let mut bytes = bytes;
                bytes.extend_from_slice(
                    format!("X-MailRelay-Reason: {source}\r\nX-MailRelay-ReasonCode: \r\n")
                        .as_bytes(),
                );
                let _ = locked.fail_raw(&bytes);
                Err(StoreError::Envelope { path: busy, source })
            }
        }
    }

    /// An envelope we locked but cannot read (written by another user, say)
    /// is renamed to `.bad` so that it is neither stuck as `.busy` nor tried
    /// again and again; the reason goes to the log, since the file cannot
    /// take it.
    fn set_aside(
        &self,
        id: &MessageId,
        busy: &Path,
        what: &'static str,
        e: io::Error,
    ) -> StoreError {
        let bad = self.path(id, SpoolFile::EnvelopeBad);
        let error = io_err(what, busy)(e);
        match files::rename(busy, &bad) {
            Ok(()) => crate::error!("{error}: moved aside to [{}]", bad.display()),
            Err(e) => crate::error!("{error}, and it cannot be moved aside: {e}"),
        }
        error
    }

    /// Renames every `.bad` envelope back to `.envelope`; returns how many.
    /// A `.bad` name that is not a regular file (a planted symbolic link,
    /// say) stays where it is, with a warning: it is not ours to forward.
    pub fn unfail_all(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for id in self.failed()? {
            let from = self.path(&id, SpoolFile::EnvelopeBad);
            if !is_regular(&from) {
                crate::warning!("not a regular file: left failed: [{}]", from.display());
                continue;
            }
            files::rename(&from, self.path(&id, SpoolFile::Envelope))
                .map_err(io_err("cannot unfail envelope", &from))?;
            count += 1;
        }
        Ok(count)
    }

    /// Crash recovery: every `.busy` envelope that no live process holds
    /// locked goes back to `.envelope` (E-MailRelay 2.6.1 leaves them stuck).
    pub fn recover_busy(&self) -> Result<usize, StoreError> {
        let mut recovered = 0;
        for id in self.busy()? {
            let busy = self.path(&id, SpoolFile::EnvelopeBusy);
            let Ok(file) = open_regular(&busy) else {
                continue;
            };
            let Ok(lock) = Held::try_hold(file) else {
                continue;
            };
            files::rename(&busy, self.path(&id, SpoolFile::Envelope))
                .map_err(io_err("cannot recover envelope", &busy))?;
            drop(lock);
            recovered += 1;
        }
        if recovered > 0 {
            let _ = self.committer.sync_dir_now();
        }
        Ok(recovered)
    }
}

/// Removes whatever exists of a message that was never acknowledged,
/// envelope first, so that no envelope is ever left without its content.
fn remove_files(dir: &Path, id: &MessageId) {
    for file in [
        SpoolFile::EnvelopeNew,
        SpoolFile::Envelope,
        SpoolFile::Content,
    ] {
        let _ = files::remove_file(id.path_in(dir, file));
    }
}

/// True if `path` is a regular file (a symbolic link is not, wherever it points).
pub fn is_regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn create_exclusive(path: &Path) -> io::Result<File> {
    files::create_new(path, FILE_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spool: &Spool) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(spool.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .map(|n| n.split('.').skip(4).collect::<Vec<_>>().join("."))
            .collect();
        names.sort();
        names
    }

    fn envelope() -> Envelope {
        Envelope {
            from: "a@b".into(),
            to_remote: vec!["c@d".into()],
            ..Envelope::default()
        }
    }

    async fn committed(spool: &Arc<Spool>) -> MessageId {
        let mut message = spool.new_message().unwrap();
        message.write(b"Subject: x\r\n\r\nbody\r\n").unwrap();
        message.commit(envelope()).await.unwrap()
    }

    #[tokio::test]
    async fn commit_leaves_content_and_envelope_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = committed(&spool).await;
        assert_eq!(names(&spool), ["content", "envelope"]);
        assert_eq!(spool.ready().unwrap(), vec![id.clone()]);
        assert_eq!(
            fs::read(spool.path(&id, SpoolFile::Envelope)).unwrap(),
            envelope().to_bytes()
        );
        let discarded = spool.new_message().unwrap();
        assert_eq!(names(&spool).len(), 3);
        discarded.discard();
        assert_eq!(
            names(&spool),
            ["content", "envelope"],
            "a discarded message leaves nothing"
        );
    }

    #[tokio::test]
    async fn lock_unlock_fail_and_unfail() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = committed(&spool).await;
        let locked = spool.lock(&id).unwrap().unwrap();
        assert_eq!(names(&spool), ["content", "envelope.busy"]);
        assert!(
            spool.lock(&id).unwrap().is_none(),
            "a locked message cannot be locked twice"
        );
        drop(locked);
        assert_eq!(names(&spool), ["content", "envelope"], "dropping unlocks");
        let locked = spool.lock(&id).unwrap().unwrap();
        locked
            .fail("one or more recipients rejected", Some(550))
            .unwrap();
        assert_eq!(names(&spool), ["content", "envelope.bad"]);
        let bad = fs::read_to_string(spool.path(&id, SpoolFile::EnvelopeBad)).unwrap();
        assert!(bad.ends_with("X-MailRelay-Reason: one or more recipients rejected\r\nX-MailRelay-ReasonCode: 550\r\n"));
        assert_eq!(spool.failed().unwrap(), vec![id.clone()]);
        assert_eq!(spool.unfail_all().unwrap(), 1);
        assert_eq!(names(&spool), ["content", "envelope"]);
        spool.lock(&id).unwrap().unwrap().delete().unwrap();
        assert!(names(&spool).is_empty());
    }

    #[tokio::test]
    async fn stale_busy_files_are_recovered_but_held_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let stale = committed(&spool).await;
        files::rename(
            spool.path(&stale, SpoolFile::Envelope),
            spool.path(&stale, SpoolFile::EnvelopeBusy),
        )
        .unwrap();
        let held_id = committed(&spool).await;
        let held = spool.lock(&held_id).unwrap().unwrap();
        assert_eq!(spool.recover_busy().unwrap(), 1);
        assert_eq!(spool.ready().unwrap(), vec![stale]);
        assert_eq!(spool.busy().unwrap(), vec![held_id]);
        drop(held);
    }

    #[tokio::test]
    async fn an_unreadable_envelope_is_failed_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = MessageId("emailrelay.1.2.3".into());
        fs::write(
            spool.path(&id, SpoolFile::Envelope),
            "X-MailRelay-Format: #2821.8\r\nX-MailRelay-From: a@b\r\n",
        )
        .unwrap();
        assert!(matches!(spool.lock(&id), Err(StoreError::Envelope { .. })));
        let bad = fs::read_to_string(spool.path(&id, SpoolFile::EnvelopeBad)).unwrap();
        assert!(bad.ends_with("X-MailRelay-Reason: envelope file is incomplete: no end marker\r\nX-MailRelay-ReasonCode: \r\n"), "{bad}");
    }

    #[test]
    fn ids_sort_by_time_then_sequence() {
        let mut ids: Vec<MessageId> = [
            "emailrelay.9.200.1",
            "emailrelay.1.100.10",
            "emailrelay.1.100.9",
        ]
        .iter()
        .map(|s| MessageId(s.to_string()))
        .collect();
        ids.sort_by_key(MessageId::sort_key);
        let sorted: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
        assert_eq!(
            sorted,
            [
                "emailrelay.1.100.9",
                "emailrelay.1.100.10",
                "emailrelay.9.200.1"
            ]
        );
        assert_eq!(
            MessageId::from_file_name("emailrelay.1.2.3.envelope.bad", SpoolFile::EnvelopeBad)
                .unwrap()
                .as_str(),
            "emailrelay.1.2.3"
        );
        assert!(MessageId::from_file_name("other.1.envelope", SpoolFile::Envelope).is_none());
    }
}
