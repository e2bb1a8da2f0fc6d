//! The spool's write-ahead journal: one device flush makes a whole batch
//! of received messages durable, however many messages it holds.
//!
//! Without a journal each message costs a flush of its content file, one
//! of its envelope file and a share of a directory flush: on a disk that
//! flushes slowly (a spinning disk, an SD card, a cloud volume) the
//! flushes, not the CPU, set how many messages a second the relay takes.
//! With it, the commit thread appends each message of a batch (id,
//! envelope and content, with a checksum) to the current journal segment,
//! flushes that one file once, and only then renames each `.envelope.new`
//! into place and answers 250. The spool files themselves are not flushed
//! then: a checkpoint makes them durable in bulk up to half a minute later
//! (`syncfs` on Linux, one flush per file elsewhere), then removes the
//! segment it covered.
//!
//! ```text
//!  batch:      write files -> append records -> flush segment -> renames -> 250s
//!  forwarded:  files removed -> "done" record (flushed with the next batch,
//!              or after DONE_DELAY when no batch comes)
//!  checkpoint: every SEGMENT_AGE or SEGMENT_BYTES: new segment; then, in
//!              its own thread: syncfs -> remove old segment -> directory flush
//!  startup:    every segment replayed: each message it holds that has no
//!              "done" record gets its files back from the journal where
//!              they are missing, short, different or unreadable; then
//!              everything flushed and the segments removed
//! ```
//!
//! Segments are `.emailrelay-journal.<n>` in the spool directory (a dot
//! file, so that scripts globbing the spool do not see it), held locked
//! (`platform::files::Held`) by the process that writes them, until their
//! checkpoint has removed them. E-MailRelay 2.6.1 and `emailrelay-submit`
//! ignore them. Several relays (or instances) on one spool each write
//! their own segments, and a replay takes only the segments nobody holds:
//! those of a process that died.
//!
//! Why no acknowledged message is lost, at each point a crash can hit
//! (a power loss keeps exactly what a completed flush covered):
//!
//! - before the segment flush returns: no session was answered; whatever
//!   of the batch survives is either complete (replayed or found whole:
//!   the client, never told 250, may send it again, a duplicate as RFC
//!   5321 section 6.1 accepts) or nothing (swept as an orphan);
//! - after it: the record is on the device, checksummed, so the replay
//!   restores any file the crash took, cut short or left empty;
//! - during a checkpoint: the segment is removed only after `syncfs` has
//!   returned, so the files it covered are on the device before their
//!   records go, and segments go in order, each removal flushed before
//!   the next, so no "done" record is lost while its message's record
//!   survives;
//! - large messages (content over [`CONTENT_LIMIT`]) skip the journal and
//!   keep the direct path: their own files flushed, then the directory.
//!
//! And why none is forwarded twice beyond SMTP's own window: a message
//! removed after forwarding gets a "done" record, and the replay leaves
//! alone every message that has one. The window between the upstream's
//! 250 and that record reaching the device is at most [`DONE_DELAY`] plus
//! a flush (without the journal the removal itself was never flushed, a
//! window of the file system's own commit interval, seconds).
//!
//! What the replay cannot tell apart: a content file that a client filter
//! edited in place before the crash is put back as received, and is
//! filtered again on the next attempt; and on a spool shared by two
//! long-running relays, a message of the one that died (in its last
//! seconds before the crash, not yet checkpointed) that the other forwarded
//! before the restart: the replay finds its files gone and restores it,
//! and it is forwarded twice.
//!
//! Must not: answer a session before its record is flushed, remove a
//! segment before the files it covers are durable, or replay a segment
//! that another live process holds.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::{create_exclusive, Envelope, MessageId, SpoolFile};
use crate::platform::files::{self, Directory, Held};

/// Messages whose content is larger go the direct way (their own flushes):
/// copying them into the journal would cost more than their flushes save.
pub(super) const CONTENT_LIMIT: u64 = 1024 * 1024;
/// A segment this large is closed and checkpointed.
const SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
/// A segment this old (since its first record) is closed and checkpointed.
/// By then the kernel's own writeback (`dirty_expire_centisecs`, 30 s by
/// default) has written most of its files, so the checkpoint's `syncfs`
/// has little left to write, and a message forwarded before then never
/// costs a write of its spool files at all.
pub(super) const SEGMENT_AGE: Duration = Duration::from_secs(30);
/// How long a "done" record may wait for a batch to carry its flush.
pub(super) const DONE_DELAY: Duration = Duration::from_millis(500);

/// Segment file names: this prefix and a decimal number.
const PREFIX: &str = ".emailrelay-journal.";
/// Each record starts with this.
const MAGIC: [u8; 4] = *b"ERJ1";
/// The fixed part of a record: magic, kind, id length, envelope length,
/// content length; the checksum follows the variable part.
const HEADER: usize = 4 + 1 + 2 + 4 + 4;
const KIND_MESSAGE: u8 = 1;
const KIND_DONE: u8 = 2;

/// A record read back from a segment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record {
    /// A message as it was acknowledged.
    Message {
        id: String,
        envelope: Vec<u8>,
        content: Vec<u8>,
    },
    /// A message removed after it was forwarded (or deleted).
    Done { id: String },
}

/// Appends one record to `out`.
fn encode(out: &mut Vec<u8>, kind: u8, id: &str, envelope: &[u8], content: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(kind);
    // Ids are short ASCII; envelopes and content are bounded by the
    // callers (CONTENT_LIMIT, and an envelope is a few kilobytes).
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(envelope);
    out.extend_from_slice(content);
    let crc = crc32fast::hash(&out[start + MAGIC.len()..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Reads records from the start of `bytes` up to the first that is not
/// whole and intact (a torn tail: the batch whose flush did not return).
pub(super) fn decode(mut bytes: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    while let Some((record, used)) = decode_one(bytes) {
        records.push(record);
        bytes = &bytes[used..];
    }
    records
}

fn decode_one(bytes: &[u8]) -> Option<(Record, usize)> {
    let header = bytes.get(..HEADER)?;
    if header[..4] != MAGIC {
        return None;
    }
    let le32 = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap()) as usize;
    let kind = header[4];
    let id_len = u16::from_le_bytes([header[5], header[6]]) as usize;
    let (envelope_len, content_len) = (le32(7), le32(11));
    let body_end = HEADER
        .checked_add(id_len)?
        .checked_add(envelope_len)?
        .checked_add(content_len)?;
    let crc_bytes = bytes.get(body_end..body_end.checked_add(4)?)?;
    let crc = u32::from_le_bytes(crc_bytes.try_into().unwrap());
    if crc32fast::hash(&bytes[MAGIC.len()..body_end]) != crc {
        return None;
    }
    let id = String::from_utf8(bytes[HEADER..HEADER + id_len].to_vec()).ok()?;
    let envelope_at = HEADER + id_len;
    let content_at = envelope_at + envelope_len;
    let record = match kind {
        KIND_MESSAGE => Record::Message {
            id,
            envelope: bytes[envelope_at..content_at].to_vec(),
            content: bytes[content_at..body_end].to_vec(),
        },
        KIND_DONE => Record::Done { id },
        _ => return None,
    };
    Some((record, body_end + 4))
}

/// Messages with a record in a segment not yet checkpointed: only these
/// need a "done" record when they go.
type Live = Arc<Mutex<HashSet<MessageId>>>;

/// The journal, as the commit thread writes it.
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
    directory: Directory,
    /// The segment being written; none until the first record after a
    /// start or a checkpoint.
    segment: Option<Segment>,
    /// The number for the next segment.
    next: u64,
    live: Live,
    /// Records appended since the last flush.
    pending: Vec<u8>,
    /// Something appended and not yet flushed.
    unsynced: bool,
    /// Closed segments, to the checkpoint thread.
    checkpoints: mpsc::Sender<Closed>,
    checkpointer: std::thread::JoinHandle<()>,
}

/// The segment being written.
#[derive(Debug)]
struct Segment {
    number: u64,
    file: Held,
    bytes: u64,
    /// When its first record was written.
    first: Option<Instant>,
    /// The messages recorded in it.
    ids: Vec<MessageId>,
}

/// A closed segment, for the checkpoint.
#[derive(Debug)]
struct Closed {
    path: PathBuf,
    file: Held,
    ids: Vec<MessageId>,
}

/// What the startup replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Segments read.
    pub segments: usize,
    /// Messages recorded and not done.
    pub live: usize,
    /// Of those, messages with a file put back.
    pub restored: Vec<MessageId>,
}

/// Why a journal is not used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {op} [{path}]: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { op, path, source }
}

impl Journal {
    /// Replays what an earlier run left (see the module documentation).
    /// The first segment is made at the first record.
    pub(super) fn open(
        dir: &Path,
        directory: &Directory,
    ) -> Result<(Journal, Replayed), JournalError> {
        let (next, replayed) = replay(dir, directory)?;
        let live: Live = Arc::default();
        let (checkpoints, receive) = mpsc::channel();
        let checkpointer = {
            let directory_path = dir.to_path_buf();
            let dir = dir.to_path_buf();
            let directory = Directory::open(&dir).map_err(io_error("open", &dir))?;
            let live = Arc::clone(&live);
            std::thread::Builder::new()
                .name("spool-checkpoint".into())
                .spawn(move || checkpoint_thread(&dir, &directory, &live, &receive))
                .map_err(io_error("start the checkpoint thread for", &directory_path))?
        };
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                directory: Directory::open(dir).map_err(io_error("open", dir))?,
                segment: None,
                next,
                live,
                pending: Vec::new(),
                unsynced: false,
                checkpoints,
                checkpointer,
            },
            replayed,
        ))
    }

    /// Appends a message's record (flushed by the next [`Journal::sync`]),
    /// starting a segment if there is none.
    pub(super) fn append_message(
        &mut self,
        id: &MessageId,
        envelope: &[u8],
        content: &[u8],
    ) -> Result<(), JournalError> {
        self.start_segment()?;
        encode(
            &mut self.pending,
            KIND_MESSAGE,
            id.as_str(),
            envelope,
            content,
        );
        if let Some(segment) = self.segment.as_mut() {
            segment.first.get_or_insert_with(Instant::now);
            segment.ids.push(id.clone());
        }
        self.unsynced = true;
        Ok(())
    }

    /// Marks messages live once their records are flushed.
    pub(super) fn mark_live<'a>(&self, ids: impl Iterator<Item = &'a MessageId>) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.extend(ids.cloned());
    }

    /// Starts a segment if none is being written.
    fn start_segment(&mut self) -> Result<(), JournalError> {
        if self.segment.is_none() {
            let segment = Segment::create(&self.dir, &self.directory, self.next)?;
            self.next = segment.number + 1;
            self.segment = Some(segment);
        }
        Ok(())
    }

    /// Appends a "done" record for `id` if the journal still covers it:
    /// its record is in this segment or in one being checkpointed, and
    /// either way the "done" goes into this one (started for it if the
    /// other was just closed: a replay of that one must see it).
    pub(super) fn append_done(&mut self, id: &MessageId) {
        let covered = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if !covered {
            return;
        }
        if let Err(e) = self.start_segment() {
            // The message may come back at a replay: forwarded twice at
            // worst, never lost.
            crate::warning!("cannot record [{id}] as forwarded in the spool journal: {e}");
            return;
        }
        encode(&mut self.pending, KIND_DONE, id.as_str(), b"", b"");
        self.unsynced = true;
    }

    /// True if records wait for a flush.
    pub(super) fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// How long until the segment is due for a checkpoint, if it holds
    /// anything.
    pub(super) fn due_in(&self) -> Option<Duration> {
        let first = self.segment.as_ref()?.first?;
        Some(SEGMENT_AGE.saturating_sub(first.elapsed()))
    }

    /// Writes what was appended and flushes the segment: one device flush.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        let (true, Some(segment)) = (self.unsynced, self.segment.as_mut()) else {
            return Ok(());
        };
        let mut file: &File = &segment.file;
        let written = file
            .write_all(&self.pending)
            .and_then(|()| file.sync_data());
        let appended = self.pending.len() as u64;
        self.pending.clear();
        self.unsynced = false;
        match written {
            Ok(()) => {
                segment.bytes += appended;
                Ok(())
            }
            Err(e) => {
                // Back to the last whole record, so that the next batch's
                // records follow it and a replay reads them: what failed is
                // answered 4xx (and its messages removed) by the caller.
                let _ = file
                    .set_len(segment.bytes)
                    .and_then(|()| file.seek(io::SeekFrom::Start(segment.bytes)));
                Err(e)
            }
        }
    }

    /// For tests: closes the segment now, as a checkpoint's turn would.
    #[cfg(test)]
    pub(super) fn rotate_now(&mut self) {
        if let Some(segment) = self.segment.take() {
            self.hand_over(segment);
        }
    }

    /// Closes the segment if it is due (old or large enough) and hands it
    /// to the checkpoint thread; the next record starts the next.
    pub(super) fn rotate_if_due(&mut self) {
        let Some(segment) = &self.segment else {
            return;
        };
        let due = segment.bytes >= SEGMENT_BYTES || self.due_in() == Some(Duration::ZERO);
        if due && !self.unsynced {
            if let Some(segment) = self.segment.take() {
                self.hand_over(segment);
            }
        }
    }

    fn hand_over(&self, segment: Segment) {
        let _ = self.checkpoints.send(Closed {
            path: segment_path(&self.dir, segment.number),
            file: segment.file,
            ids: segment.ids,
        });
    }

    /// At the end of the commit thread: the last records flushed, then
    /// every segment checkpointed and removed before this returns.
    pub(super) fn close(mut self) {
        if let Err(e) = self.sync() {
            crate::warning!("cannot flush the spool journal: {e}");
        }
        if let Some(segment) = self.segment.take() {
            self.hand_over(segment);
        }
        let Journal {
            checkpoints,
            checkpointer,
            ..
        } = self;
        drop(checkpoints);
        let _ = checkpointer.join();
    }
}

#[cfg(test)]
impl Journal {
    /// Dies as a killed process does: what was not flushed is lost, the
    /// segments stay as they are on disk, the locks go, no checkpoint runs.
    pub(super) fn crash(self) {
        let Journal {
            segment,
            checkpoints,
            checkpointer,
            ..
        } = self;
        drop(segment);
        drop(checkpoints);
        let _ = checkpointer.join();
    }
}

impl Segment {
    /// Makes segment `number`, or the next free number after it (another
    /// relay on the spool may have taken it). The number it took is in it.
    fn create(dir: &Path, directory: &Directory, mut number: u64) -> Result<Segment, JournalError> {
        let mut path = segment_path(dir, number);
        let mut tries = 0;
        let file = loop {
            match create_exclusive(&path) {
                Ok(file) => break file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 1000 => {
                    tries += 1;
                    number += 1;
                    path = segment_path(dir, number);
                }
                Err(e) => return Err(io_error("create journal segment", &path)(e)),
            }
        };
        let file = Held::hold(file).map_err(io_error("lock journal segment", &path))?;
        // The segment's name must outlive a crash as its records do.
        directory
            .sync()
            .map_err(io_error("sync spool directory", dir))?;
        Ok(Segment {
            number,
            file,
            bytes: 0,
            first: None,
            ids: Vec::new(),
        })
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{number}"))
}

/// The numbers of the segments in `dir`, in order.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?.strip_prefix(PREFIX)?.parse().ok()
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// The startup replay: see the module documentation. Returns the number
/// for the next segment.
fn replay(dir: &Path, directory: &Directory) -> Result<(u64, Replayed), JournalError> {
    let numbers = segments(dir).map_err(io_error("read spool directory", dir))?;
    let mut held = Vec::new();
    let mut records = Vec::new();
    for &number in &numbers {
        let path = segment_path(dir, number);
        let file = files::open_regular(&path).map_err(io_error("open journal segment", &path))?;
        // Held: another live relay's (or instance's), not ours to replay.
        let Ok(mut file) = Held::try_hold(file) else {
            continue;
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_error("read journal segment", &path))?;
        records.extend(decode(&bytes));
        held.push((path, file));
    }
    let mut replayed = Replayed {
        segments: held.len(),
        ..Replayed::default()
    };
    let done: HashSet<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Done { id } => Some(id.clone()),
            Record::Message { .. } => None,
        })
        .collect();
    let mut live = Vec::new();
    for record in records {
        let Record::Message {
            id,
            envelope,
            content,
        } = record
        else {
            continue;
        };
        let Some(id) = MessageId::parse(&id).filter(|_| !done.contains(&id)) else {
            continue;
        };
        if restore(dir, &id, &envelope, &content).map_err(io_error("restore message", dir))? {
            replayed.restored.push(id.clone());
        }
        live.push(id);
    }
    replayed.live = live.len();
    if !held.is_empty() {
        make_durable(dir, directory, &live).map_err(io_error("flush spool", dir))?;
        for (path, file) in held {
            drop(file);
            files::remove_file(&path).map_err(io_error("remove journal segment", &path))?;
        }
        directory
            .sync()
            .map_err(io_error("sync spool directory", dir))?;
    }
    let next = numbers.last().map_or(1, |n| n + 1);
    Ok((next, replayed))
}

/// Puts back what a crash took of one acknowledged message. True if a
/// file was written.
fn restore(dir: &Path, id: &MessageId, envelope: &[u8], content: &[u8]) -> io::Result<bool> {
    let mut restored = false;
    let content_path = id.path_in(dir, SpoolFile::Content);
    if fs::read(&content_path).ok().as_deref() != Some(content) {
        rewrite(&content_path, content)?;
        restored = true;
    }
    // The envelope in whatever state it reached, if it is whole.
    let states = [
        SpoolFile::Envelope,
        SpoolFile::EnvelopeBusy,
        SpoolFile::EnvelopeBad,
        SpoolFile::EnvelopeDeleting,
    ];
    let whole = states.into_iter().find(|&state| {
        fs::read(id.path_in(dir, state))
            .ok()
            .is_some_and(|bytes| !bytes.is_empty() && Envelope::parse(&bytes).is_ok())
    });
    if whole.is_none() {
        for state in states.into_iter().chain([SpoolFile::EnvelopeNew]) {
            let _ = files::remove_file(id.path_in(dir, state));
        }
        let tmp = id.path_in(dir, SpoolFile::EnvelopeTmp);
        rewrite(&tmp, envelope)?;
        files::rename(&tmp, id.path_in(dir, SpoolFile::Envelope))?;
        restored = true;
    }
    Ok(restored)
}

/// Writes `bytes` as the whole of `path`, flushed.
fn rewrite(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let _ = files::remove_file(path);
    let mut file = create_exclusive(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

/// Makes every file of `ids` and the directory durable: one `syncfs`
/// where the system has it, else each file flushed.
fn make_durable(dir: &Path, directory: &Directory, ids: &[MessageId]) -> io::Result<()> {
    if files::sync_file_system(directory)? {
        return Ok(());
    }
    for id in ids {
        for file in [
            SpoolFile::Content,
            SpoolFile::Envelope,
            SpoolFile::EnvelopeBusy,
            SpoolFile::EnvelopeBad,
        ] {
            match files::open_to_flush(&id.path_in(dir, file)) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    directory.sync()
}

/// The checkpoint thread: each closed segment made redundant (its files
/// durable), then removed, in order.
fn checkpoint_thread(
    dir: &Path,
    directory: &Directory,
    live: &Live,
    closed: &mpsc::Receiver<Closed>,
) {
    let mut waiting: Vec<Closed> = Vec::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        match closed.recv_timeout(SEGMENT_AGE) {
            Ok(segment) => waiting.push(segment),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
        }
        waiting.extend(closed.try_iter());
        if waiting.is_empty() {
            continue;
        }
        let ids: Vec<MessageId> = waiting.iter().flat_map(|s| s.ids.iter().cloned()).collect();
        if let Err(e) = checkpoint(directory, dir, &ids, &mut waiting) {
            crate::warning!("spool journal checkpoint failed, will try again: {e}");
            if !open {
                // Shutting down: the segments stay for the next start.
                return;
            }
            continue;
        }
        let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
        for id in &ids {
            live.remove(id);
        }
    }
}

/// One checkpoint over `waiting`, which it empties as segments go.
fn checkpoint(
    directory: &Directory,
    dir: &Path,
    ids: &[MessageId],
    waiting: &mut Vec<Closed>,
) -> io::Result<()> {
    make_durable(dir, directory, ids)?;
    while !waiting.is_empty() {
        let Closed { path, file, .. } = waiting.remove(0);
        drop(file);
        files::remove_file(&path)?;
        // Flushed before the next goes: see the module documentation.
        directory.sync()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
