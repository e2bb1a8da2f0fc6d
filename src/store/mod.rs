//! The spool directory, file-compatible with E-MailRelay: message ids,
//! new-message writing, lock-by-rename, fail/unfail and crash recovery.
//!
//! Durability rule: [`NewMessage::commit`] returns only after the content
//! and envelope are fsynced, the envelope renamed to its final name and the
//! directory fsynced. Directory fsyncs of concurrent sessions are shared
//! (group commit, [`DirSync`]), so durability costs little under load.
//!
//! ```text
//!   .content + .envelope.new --commit--> .envelope --lock--> .envelope.busy
//!        .envelope.busy --delete--> (gone)   --fail--> .envelope.bad
//!        .envelope.busy --unlock/drop/crash recovery--> .envelope
//!        .envelope.bad --unfail--> .envelope
//! ```

mod dirsync;
mod envelope;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use dirsync::DirSync;
pub use envelope::{Envelope, EnvelopeError};

/// Spool files are created `rw-rw----`, as E-MailRelay does.
const FILE_MODE: u32 = 0o660;

/// Errors from the spool; each carries the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system call failed.
    #[error("{op} [{path}]: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
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
        matches!(self, StoreError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// A message id: `emailrelay.<pid>.<unix-seconds>.<sequence>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Recognises a spool file name and the id in it.
    pub fn from_file_name(name: &str, suffix: &str) -> Option<MessageId> {
        let id = name.strip_suffix(suffix)?;
        (id.starts_with("emailrelay.") && !id.contains('/')).then(|| MessageId(id.to_string()))
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    dir_sync: DirSync,
    sequence: AtomicU64,
}

impl Spool {
    /// Opens a spool directory, creating it (one level) if it is missing.
    pub fn open(dir: &Path) -> Result<Arc<Spool>, StoreError> {
        if !dir.exists() {
            fs::create_dir(dir).map_err(io_err("cannot create spool directory", dir))?;
        }
        if !dir.is_dir() {
            let e = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
            return Err(io_err("invalid spool directory", dir)(e));
        }
        let dir_sync = DirSync::open(dir).map_err(io_err("cannot open spool directory", dir))?;
        Ok(Arc::new(Spool {
            dir: dir.to_path_buf(),
            dir_sync,
            sequence: AtomicU64::new(0),
        }))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a message file: `suffix` like `.content` or `.envelope.bad`.
    pub fn path(&self, id: &MessageId, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", id.0))
    }

    /// A fresh message id, unique within this process.
    pub fn new_id(&self) -> MessageId {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        MessageId(format!("emailrelay.{}.{secs}.{seq}", std::process::id()))
    }

    /// Adds a message made from an existing content file (hard-linked where
    /// possible, else copied) and `envelope`, durably, ready for forwarding.
    /// Used by filters that split one message into several.
    pub fn add_copy(&self, content: &Path, envelope: &Envelope) -> Result<MessageId, StoreError> {
        let id = self.new_id();
        let content_path = self.path(&id, ".content");
        let result = link_or_copy(content, &content_path)
            .map_err(io_err("cannot create content file", &content_path))
            .and_then(|()| {
                let new_path = self.path(&id, ".envelope.new");
                let mut file = create_exclusive(&new_path)
                    .map_err(io_err("cannot create envelope file", &new_path))?;
                file.write_all(&envelope.to_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(io_err("cannot write envelope file", &new_path))?;
                fs::rename(&new_path, self.path(&id, ".envelope"))
                    .map_err(io_err("cannot commit envelope file", &new_path))?;
                self.dir_sync
                    .sync_now()
                    .map_err(io_err("cannot sync spool directory", &self.dir))
            });
        if result.is_err() {
            remove_message_files(self, &id);
        }
        result.map(|()| id)
    }

    /// Starts a new message: creates its content file (exclusively).
    pub fn new_message(self: &Arc<Self>) -> Result<NewMessage, StoreError> {
        let id = self.new_id();
        let path = self.path(&id, ".content");
        let file = create_exclusive(&path).map_err(io_err("cannot create content file", &path))?;
        Ok(NewMessage {
            spool: Arc::clone(self),
            id,
            content: Some(BufWriter::with_capacity(32 * 1024, file)),
            size: 0,
        })
    }

    /// Ids of messages waiting to be forwarded (`.envelope`), oldest first.
    pub fn ready(&self) -> Result<Vec<MessageId>, StoreError> {
        self.list(".envelope")
    }

    /// Ids of messages being forwarded (`.envelope.busy`).
    pub fn busy(&self) -> Result<Vec<MessageId>, StoreError> {
        self.list(".envelope.busy")
    }

    /// Ids of failed messages (`.envelope.bad`).
    pub fn failed(&self) -> Result<Vec<MessageId>, StoreError> {
        self.list(".envelope.bad")
    }

    fn list(&self, suffix: &str) -> Result<Vec<MessageId>, StoreError> {
        let entries =
            fs::read_dir(&self.dir).map_err(io_err("cannot read spool directory", &self.dir))?;
        let mut ids: Vec<MessageId> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| MessageId::from_file_name(&e.file_name().to_string_lossy(), suffix))
            .collect();
        ids.sort_by_key(sort_key);
        Ok(ids)
    }

    /// Locks a message for forwarding by renaming it to `.busy` and taking
    /// an flock on it. `Ok(None)` if another process or task got there first.
    pub fn lock(self: &Arc<Self>, id: &MessageId) -> Result<Option<Locked>, StoreError> {
        let from = self.path(id, ".envelope");
        let busy = self.path(id, ".envelope.busy");
        match fs::rename(&from, &busy) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot lock envelope", &from)(e)),
        }
        let file = File::open(&busy).map_err(io_err("cannot open envelope", &busy))?;
        let lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            Ok(lock) => lock,
            Err((_, _)) => return Ok(None),
        };
        let bytes = fs::read(&busy).map_err(io_err("cannot read envelope", &busy))?;
        let mut locked = Locked {
            spool: Arc::clone(self),
            id: id.clone(),
            envelope: Envelope::default(),
            _lock: lock,
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

    /// Renames every `.bad` envelope back to `.envelope`; returns how many.
    pub fn unfail_all(&self) -> Result<usize, StoreError> {
        let ids = self.failed()?;
        for id in &ids {
            let from = self.path(id, ".envelope.bad");
            fs::rename(&from, self.path(id, ".envelope"))
                .map_err(io_err("cannot unfail envelope", &from))?;
        }
        Ok(ids.len())
    }

    /// Crash recovery: every `.busy` envelope that no live process holds
    /// locked goes back to `.envelope` (E-MailRelay 2.6.1 leaves them stuck).
    pub fn recover_busy(&self) -> Result<usize, StoreError> {
        let mut recovered = 0;
        for id in self.busy()? {
            let busy = self.path(&id, ".envelope.busy");
            let Ok(file) = File::open(&busy) else {
                continue;
            };
            let Ok(lock) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            fs::rename(&busy, self.path(&id, ".envelope"))
                .map_err(io_err("cannot recover envelope", &busy))?;
            drop(lock);
            recovered += 1;
        }
        if recovered > 0 {
            let _ = self.dir_sync.sync_now();
        }
        Ok(recovered)
    }
}

/// Sorts ids by time then sequence, so older mail goes first.
fn sort_key(id: &MessageId) -> (u64, u64, u64) {
    let mut parts =
        id.0.split('.')
            .skip(1)
            .map(|p| p.parse::<u64>().unwrap_or(0));
    let pid = parts.next().unwrap_or(0);
    let secs = parts.next().unwrap_or(0);
    let seq = parts.next().unwrap_or(0);
    (secs, seq, pid)
}

fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// A message being received: its content file is open for writing.
#[derive(Debug)]
pub struct NewMessage {
    spool: Arc<Spool>,
    id: MessageId,
    content: Option<BufWriter<File>>,
    size: u64,
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
        let content = self.content.take().expect("commit once");
        let id = std::mem::replace(&mut self.id, MessageId(String::new()));
        let spool = Arc::clone(&self.spool);
        let task_id = id.clone();
        // One blocking task for the whole write, as this is every message's path.
        let written = tokio::task::spawn_blocking(move || {
            let result = write_prepared(&spool, &task_id, content, &envelope).and_then(|()| {
                let new_path = spool.path(&task_id, ".envelope.new");
                fs::rename(&new_path, spool.path(&task_id, ".envelope"))
                    .map_err(io_err("cannot commit envelope file", &new_path))
            });
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
        });
        written?;
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
        let content = self.content.take().expect("prepare once");
        let id = std::mem::replace(&mut self.id, MessageId(String::new()));
        let spool = Arc::clone(&self.spool);
        let task_id = id.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = write_prepared(&spool, &task_id, content, &envelope);
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
        });
        written?;
        Ok(Prepared {
            spool: Arc::clone(&self.spool),
            id,
            settled: false,
        })
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
fn remove_message_files(spool: &Spool, id: &MessageId) {
    for suffix in [".envelope.new", ".envelope", ".content"] {
        let _ = fs::remove_file(spool.path(id, suffix));
    }
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

/// A message locked for forwarding. Dropping it without `delete` or `fail`
/// unlocks it, so an aborted forward never strands a `.busy` file.
#[derive(Debug)]
pub struct Locked {
    spool: Arc<Spool>,
    id: MessageId,
    pub envelope: Envelope,
    _lock: nix::fcntl::Flock<File>,
    done: bool,
}

impl Locked {
    /// The id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The content file's path.
    pub fn content_path(&self) -> PathBuf {
        self.spool.path(&self.id, ".content")
    }

    /// The `.envelope.busy` path, for a client filter.
    pub fn envelope_path(&self) -> PathBuf {
        self.spool.path(&self.id, ".envelope.busy")
    }

    /// Reads the envelope again after a client filter may have edited it.
    pub fn reload(&mut self) -> Result<(), StoreError> {
        let busy = self.envelope_path();
        let bytes = fs::read(&busy).map_err(io_err("cannot read envelope", &busy))?;
        self.envelope = Envelope::parse(&bytes)
            .map_err(|source| StoreError::Envelope { path: busy, source })?;
        Ok(())
    }

    /// Forwarded: removes the envelope, then the content. In that order a
    /// crash in between leaves only an orphan content file, never an
    /// envelope that would be forwarded again without its content.
    pub fn delete(mut self) -> Result<(), StoreError> {
        self.done = true;
        let busy = self.spool.path(&self.id, ".envelope.busy");
        fs::remove_file(&busy).map_err(io_err("cannot delete envelope file", &busy))?;
        let content = self.content_path();
        fs::remove_file(&content).map_err(io_err("cannot delete content file", &content))
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
    /// atomically (written to a temporary name, then renamed over it) and
    /// only then becomes `.bad`, so at every moment exactly one envelope
    /// file exists and a crash can never leave both a `.bad` and a `.busy`.
    /// If writing fails the message is simply unlocked, for a later try.
    fn fail_raw(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let busy = self.spool.path(&self.id, ".envelope.busy");
        let tmp = self.spool.path(&self.id, ".envelope.tmp");
        let written = fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &busy))
            .map_err(io_err("cannot write envelope file", &tmp));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.done = true;
        fs::rename(&busy, self.spool.path(&self.id, ".envelope.bad"))
            .map_err(io_err("cannot fail envelope file", &busy))
    }

    /// Puts the message back for a later attempt.
    pub fn unlock(self) {}
}

impl Drop for Locked {
    fn drop(&mut self) {
        if !self.done {
            let busy = self.spool.path(&self.id, ".envelope.busy");
            let _ = fs::rename(&busy, self.spool.path(&self.id, ".envelope"));
        }
    }
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
            fs::read(spool.path(&id, ".envelope")).unwrap(),
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
        let bad = fs::read_to_string(spool.path(&id, ".envelope.bad")).unwrap();
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
        fs::rename(
            spool.path(&stale, ".envelope"),
            spool.path(&stale, ".envelope.busy"),
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
            spool.path(&id, ".envelope"),
            "X-MailRelay-Format: #2821.8\r\nX-MailRelay-From: a@b\r\n",
        )
        .unwrap();
        assert!(matches!(spool.lock(&id), Err(StoreError::Envelope { .. })));
        let bad = fs::read_to_string(spool.path(&id, ".envelope.bad")).unwrap();
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
        ids.sort_by_key(sort_key);
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
            MessageId::from_file_name("emailrelay.1.2.3.envelope.bad", ".envelope.bad")
                .unwrap()
                .as_str(),
            "emailrelay.1.2.3"
        );
        assert!(MessageId::from_file_name("other.1.envelope", ".envelope").is_none());
    }
}
