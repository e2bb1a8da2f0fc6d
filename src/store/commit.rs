//! The commit pipeline: group commit of received messages.
//!
//! A session that reaches end-of-data hands its message to the spool's
//! commit thread and waits for the answer. The thread takes every message
//! queued at that moment as one batch and makes the whole batch durable
//! with one round of flushes:
//!
//! ```text
//!   queue --> write --------> flush ---------> rename -------> dir fsync --> answers
//!             each message:   the whole        each message:   once, for
//!             content out,    batch            .envelope.new   every rename
//!             .envelope.new                    -> .envelope    of the batch
//! ```
//!
//! The flush starts writeback of every file of the batch at once
//! (`sync_file_range`, a hint that costs no wait), then `fdatasync`s each
//! file: the batch's writes reach the device together instead of one
//! file's at a time, and on a journalling file system the first
//! `fdatasync` waits for the journal commit that covers them all, so the
//! rest find their work done. Measured on ext4 (without a journal, as on
//! the development machine; 20 sessions, 1000 messages, `strace -c`):
//! `fdatasync` fell from 1.76 ms to 0.12 ms a call, directory fsyncs from
//! 581 to 157. One `syncfs` per batch instead would cost a single device
//! flush, but it writes out every dirty file of the file system, whoever
//! wrote it, so a build or a backup beside the relay makes every batch wait
//! for it (measured: single-session accept fell from 240-700/s to
//! 130-240/s with test suites running beside it). It is not offered.
//! Nor is "rename once the data is written, one directory fsync for both":
//! only a journal in ordered mode would make that safe, and without one the
//! file's inode could reach the disk after its name.
//!
//! A crash at any point leaves each message of the batch either complete
//! (its rename was made only after its files were on disk) or without an
//! `.envelope`, so never forwarded and removed later by the sweep. No
//! session is answered before its batch's directory fsync has returned, so
//! no 250 is given for a message a crash could still take away.
//!
//! Batches form by themselves: while one batch is being flushed the next
//! queues up. There is no timer, so a lone session's message waits for its
//! own flushes and nothing else.
//!
//! Must not: run on the async runtime (every step blocks), or answer a
//! message before the directory fsync of its batch.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

use super::journal::{Journal, JournalError, Replayed, CONTENT_LIMIT, DONE_DELAY};
use super::{create_exclusive, io_err, remove_files, MessageId, SpoolFile, StoreError};
use crate::platform::files::{self, start_writeback, Directory};

/// Most messages taken into one batch; more wait for the next.
const MAX_BATCH: usize = 256;

/// What a job asks of the pipeline.
#[derive(Debug)]
pub(super) enum Step {
    /// A new message: envelope written, both files flushed, renamed to
    /// `.envelope`, directory synced.
    Commit {
        content: BufWriter<File>,
        size: u64,
        envelope: Vec<u8>,
    },
    /// For a filter: written and flushed; `.envelope.new` stays. (Flushed
    /// even with a journal: a built-in filter may hand the files on, as
    /// `copy:` links the content into a POP maildrop, and then the message
    /// never reaches the journal.)
    Prepare {
        content: BufWriter<File>,
        size: u64,
        envelope: Vec<u8>,
    },
    /// After a filter: recorded in the journal, or both files flushed (again
    /// if it may have edited them: `resync`), then renamed and the
    /// directory synced. On failure the files are left to the caller's
    /// [`super::Prepared`].
    Finish { resync: bool },
}

/// The spool's commit pipeline. See the module documentation.
#[derive(Debug)]
pub struct Committer {
    pipeline: Arc<Pipeline>,
    /// The queue into the commit thread, started at the first commit.
    /// Dropping the spool drops the sender, and the thread ends once it
    /// has committed what was queued.
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    /// The commit thread, for [`Committer::close`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Committer {
    /// Opens the directory for syncing; no journal (`emailrelay-submit`,
    /// which commits one message in its own thread).
    pub fn open(dir: &Path) -> io::Result<Committer> {
        Ok(Committer::with(Pipeline::new(dir, None)?))
    }

    /// As [`Committer::open`], with the spool's journal: what an earlier
    /// run left in it is replayed first. A journal that cannot be used
    /// (held by another relay on the same spool, say) leaves the direct
    /// way, and says why.
    pub fn open_journaled(dir: &Path) -> io::Result<(Committer, Result<Replayed, JournalError>)> {
        let directory = Directory::open(dir)?;
        let (journal, replayed) = match Journal::open(dir, &directory) {
            Ok((journal, replayed)) => (Some(journal), Ok(replayed)),
            Err(e) => (None, Err(e)),
        };
        let pipeline = Pipeline {
            dir: dir.to_path_buf(),
            dir_file: directory,
            journal: Mutex::new(journal),
        };
        Ok((Committer::with(pipeline), replayed))
    }

    fn with(pipeline: Pipeline) -> Committer {
        Committer {
            pipeline: Arc::new(pipeline),
            queue: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    /// At shutdown: the commit thread finishes what was queued and ends;
    /// the journal is checkpointed and its segments removed. A commit
    /// after this starts the thread again.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Runs `step` for message `id` in the commit thread, in the next batch.
    pub(super) async fn run(&self, id: MessageId, step: Step) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        if let Err(job) = self.enqueue(Job::Step { id, step, done }) {
            // Never queued, so nobody else will remove its files.
            if let Job::Step { id, step, .. } = job {
                if !matches!(step, Step::Finish { .. }) {
                    remove_files(&self.pipeline.dir, &id);
                }
            }
            return Err(self.stopped("not running"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(self.stopped("no answer")))
    }

    /// As [`Committer::run`], in this thread, as a batch of one: for
    /// callers without a runtime (`emailrelay-submit`).
    pub(super) fn run_here(&self, id: MessageId, step: Step) -> Result<(), StoreError> {
        let mut batch = [Entry::new(id, step)];
        self.pipeline.commit(&mut batch);
        let [entry] = batch;
        entry.result
    }

    /// Tells the journal that message `id` is gone (forwarded or deleted),
    /// so that no replay brings it back. Returns at once: the record is
    /// flushed with the next batch, or after [`DONE_DELAY`].
    pub(super) fn forget(&self, id: &MessageId) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        // No thread, no batch since this process started: nothing of
        // this process's journal covers the message.
        if let Some(sender) = queue.as_ref() {
            let _ = sender.send(Job::Done(id.clone()));
        }
    }

    /// For tests: the journal dies as in a crash (see `Journal::crash`);
    /// the spool goes on without one.
    #[cfg(test)]
    pub(super) fn crash_journal(&self) {
        let journal = self.pipeline.journal().take();
        if let Some(journal) = journal {
            journal.crash();
        }
    }

    /// A directory fsync now, in this thread, for paths outside the
    /// pipeline (startup recovery, the sweep, filters' copies).
    pub fn sync_dir_now(&self) -> io::Result<()> {
        self.pipeline.dir_file.sync()
    }

    /// Queues a job, starting the thread first if need be; hands the job
    /// back if the thread cannot be started or has gone (panicked).
    fn enqueue(&self, job: Job) -> Result<(), Job> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_none() {
            *queue = self.start().ok();
        }
        let Some(sender) = queue.as_ref() else {
            return Err(job);
        };
        sender.send(job).map_err(|mpsc::SendError(job)| {
            // Start afresh at the next commit.
            *queue = None;
            job
        })
    }

    fn start(&self) -> io::Result<mpsc::Sender<Job>> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let pipeline = Arc::clone(&self.pipeline);
        let thread = std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || pipeline.serve(&receiver))?;
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(sender)
    }

    fn stopped(&self, why: &str) -> StoreError {
        io_err("commit thread failed", &self.pipeline.dir)(io::Error::other(why.to_string()))
    }
}

/// What the commit thread is asked to do.
enum Job {
    /// A step of a message, with the way to answer its session.
    Step {
        id: MessageId,
        step: Step,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A message gone: see [`Committer::forget`].
    Done(MessageId),
}

/// One message of a batch as it goes through the steps.
struct Entry {
    id: MessageId,
    /// Taken by the write step.
    step: Option<Step>,
    /// Ends with a rename (not [`Step::Prepare`]).
    rename: bool,
    /// The pipeline removes the files if it fails (not [`Step::Finish`]).
    owns_files: bool,
    /// The files to flush, once written (none for a journaled message).
    files: Vec<File>,
    /// Recorded in the journal by the write step.
    journaled: bool,
    renamed: bool,
    result: Result<(), StoreError>,
}

impl Entry {
    fn new(id: MessageId, step: Step) -> Entry {
        Entry {
            id,
            rename: !matches!(step, Step::Prepare { .. }),
            owns_files: !matches!(step, Step::Finish { .. }),
            step: Some(step),
            files: Vec::new(),
            journaled: false,
            renamed: false,
            result: Ok(()),
        }
    }

    fn fail(&mut self, error: StoreError) {
        if self.result.is_ok() {
            self.result = Err(error);
        }
    }
}

/// The steps of a batch, in order. A crash between two of them (see the
/// `crash_points` tests) leaves each message of the batch either without
/// an `.envelope` (never forwarded, swept later) or complete.
const STEPS: [fn(&Pipeline, &mut [Entry]); 4] = [
    Pipeline::write_all,
    Pipeline::flush,
    Pipeline::rename_all,
    Pipeline::sync_dir,
];

/// What the commit thread works with: no `Spool`, so that the thread does
/// not keep the spool (and so its own queue) alive.
#[derive(Debug)]
struct Pipeline {
    dir: PathBuf,
    dir_file: Directory,
    /// The journal (see `journal.rs`), if the spool has one.
    journal: Mutex<Option<Journal>>,
}

impl Pipeline {
    fn new(dir: &Path, journal: Option<Journal>) -> io::Result<Pipeline> {
        Ok(Pipeline {
            dir: dir.to_path_buf(),
            dir_file: Directory::open(dir)?,
            journal: Mutex::new(journal),
        })
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Option<Journal>> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The commit thread: one batch per turn, of whatever has queued;
    /// between batches, the journal's delayed flushes and checkpoints.
    fn serve(&self, queue: &mpsc::Receiver<Job>) {
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        loop {
            let wait = self.journal().as_ref().and_then(|j| match j.unsynced() {
                true => Some(DONE_DELAY),
                false => j.due_in(),
            });
            let first = match wait {
                None => queue
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(wait) => queue.recv_timeout(wait),
            };
            let first = match first {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.journal_turn();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            for job in std::iter::once(first).chain(queue.try_iter().take(MAX_BATCH - 1)) {
                match job {
                    Job::Step { id, step, done } => {
                        batch.push(Entry::new(id, step));
                        answers.push(done);
                    }
                    Job::Done(id) => {
                        if let Some(journal) = self.journal().as_mut() {
                            journal.append_done(&id);
                        }
                    }
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            for (entry, done) in batch.drain(..).zip(answers.drain(..)) {
                // A session that has gone away is told nothing; its message
                // stands or falls as the batch did, like any other.
                let _ = done.send(entry.result);
            }
            self.journal_turn();
        }
        if let Some(journal) = self.journal().take() {
            journal.close();
        }
    }

    /// Between batches: the journal's "done" records flushed if they have
    /// waited long enough, and the segment closed if it is due.
    fn journal_turn(&self) {
        let mut journal = self.journal();
        let Some(journal) = journal.as_mut() else {
            return;
        };
        if let Err(e) = journal.sync() {
            crate::warning!("cannot flush the spool journal: {e}");
            return;
        }
        journal.rotate_if_due();
    }

    /// The four steps of the module documentation, for one batch, then
    /// the clean-up of what failed.
    fn commit(&self, batch: &mut [Entry]) {
        for step in STEPS {
            step(self, batch);
        }
        self.settle(batch);
    }

    /// The write step, for every entry.
    fn write_all(&self, batch: &mut [Entry]) {
        let mut journal = self.journal();
        for entry in batch.iter_mut() {
            let Some(step) = entry.step.take() else {
                continue;
            };
            match self.write(&entry.id, step, journal.as_mut()) {
                Ok(Written::Journaled) => entry.journaled = true,
                Ok(Written::ToFlush(files)) => entry.files = files,
                Err(e) => entry.fail(e),
            }
        }
    }

    /// The rename step: `.envelope.new` to `.envelope`, for every entry
    /// still going that asks for it.
    fn rename_all(&self, batch: &mut [Entry]) {
        for entry in batch.iter_mut().filter(|e| e.result.is_ok() && e.rename) {
            let new = entry.id.path_in(&self.dir, SpoolFile::EnvelopeNew);
            match files::rename(&new, entry.id.path_in(&self.dir, SpoolFile::Envelope)) {
                Ok(()) => entry.renamed = true,
                Err(e) => entry.fail(io_err("cannot commit envelope file", &new)(e)),
            }
        }
    }

    /// The directory fsync, once, if anything was renamed that the journal
    /// does not cover.
    fn sync_dir(&self, batch: &mut [Entry]) {
        if !batch.iter().any(|e| e.renamed && !e.journaled) {
            return;
        }
        if let Err(e) = self.dir_file.sync() {
            // Not durable, and the sessions will be told so.
            for entry in batch.iter_mut().filter(|e| e.renamed && !e.journaled) {
                entry.fail(io_err("cannot sync spool directory", &self.dir)(
                    io::Error::from(e.kind()),
                ));
            }
        }
    }

    /// Closes the files, and takes back a new message that failed: it was
    /// never acknowledged. A filtered one is left to its `Prepared`. The
    /// journal is told of each journaled one that failed, so that no
    /// replay brings it back.
    fn settle(&self, batch: &mut [Entry]) {
        let mut journal = self.journal();
        for entry in batch.iter_mut() {
            entry.files.clear();
            if entry.result.is_err() {
                if let (true, Some(journal)) = (entry.journaled, journal.as_mut()) {
                    journal.append_done(&entry.id);
                }
                if entry.owns_files {
                    remove_files(&self.dir, &entry.id);
                }
            }
        }
    }

    /// The write step for one message.
    fn write(
        &self,
        id: &MessageId,
        step: Step,
        journal: Option<&mut Journal>,
    ) -> Result<Written, StoreError> {
        let path = |file| id.path_in(&self.dir, file);
        let journal = journal.filter(|_| !matches!(step, Step::Prepare { .. }));
        let (content, size, envelope) = match step {
            Step::Commit {
                content,
                size,
                envelope,
            }
            | Step::Prepare {
                content,
                size,
                envelope,
            } => (content, size, envelope),
            Step::Finish { resync } => return self.write_finish(id, resync, journal),
        };
        // The buffer's tail goes to the file here; when it holds the whole
        // content (the common case: nothing has spilled yet), the journal
        // takes its record from it rather than reading the file back.
        let (mut content, buffered) = content.into_parts();
        let buffered = buffered.unwrap_or_else(|panicked| panicked.into_inner());
        content.write_all(&buffered).map_err(io_err(
            "cannot write content file",
            &path(SpoolFile::Content),
        ))?;
        let new = path(SpoolFile::EnvelopeNew);
        let mut file =
            create_exclusive(&new).map_err(io_err("cannot create envelope file", &new))?;
        file.write_all(&envelope)
            .map_err(io_err("cannot write envelope file", &new))?;
        match journal {
            Some(journal) if size <= CONTENT_LIMIT => {
                let bytes = if buffered.len() as u64 == size {
                    buffered
                } else {
                    read_back(&mut content, size).map_err(io_err(
                        "cannot read content file",
                        &path(SpoolFile::Content),
                    ))?
                };
                journal
                    .append_message(id, &envelope, &bytes)
                    .map_err(|e| journal_error(e, &path(SpoolFile::Content)))?;
                Ok(Written::Journaled)
            }
            _ => Ok(Written::ToFlush(vec![content, file])),
        }
    }

    /// The write step of [`Step::Finish`]: the files as the filter left
    /// them go into the journal, or are opened to be flushed.
    fn write_finish(
        &self,
        id: &MessageId,
        resync: bool,
        journal: Option<&mut Journal>,
    ) -> Result<Written, StoreError> {
        let path = |file| id.path_in(&self.dir, file);
        let read = |file| {
            let p = path(file);
            std::fs::read(&p).map_err(io_err("cannot read message file", &p))
        };
        let size = std::fs::metadata(path(SpoolFile::Content)).map_or(u64::MAX, |m| m.len());
        if let Some(journal) = journal.filter(|_| size <= CONTENT_LIMIT) {
            let content = read(SpoolFile::Content)?;
            let envelope = read(SpoolFile::EnvelopeNew)?;
            journal
                .append_message(id, &envelope, &content)
                .map_err(|e| journal_error(e, &path(SpoolFile::Content)))?;
            return Ok(Written::Journaled);
        }
        // The prepare step flushed both files: again only if the filter may
        // have edited them.
        if !resync {
            return Ok(Written::ToFlush(Vec::new()));
        }
        let open = |file| {
            let p = path(file);
            files::open_to_flush(&p).map_err(io_err("cannot sync message file", &p))
        };
        Ok(Written::ToFlush(vec![
            open(SpoolFile::Content)?,
            open(SpoolFile::EnvelopeNew)?,
        ]))
    }

    /// The flush step, for every entry still going: the journal's records
    /// with one flush, the other files as the module documentation says.
    fn flush(&self, batch: &mut [Entry]) {
        for file in batch
            .iter()
            .filter(|e| e.result.is_ok())
            .flat_map(|e| &e.files)
        {
            start_writeback(file);
        }
        let mut journal = self.journal();
        if let Some(journal) = journal.as_mut() {
            match journal.sync() {
                Ok(()) => journal.mark_live(
                    batch
                        .iter()
                        .filter(|e| e.journaled && e.result.is_ok())
                        .map(|e| &e.id),
                ),
                Err(e) => {
                    for entry in batch.iter_mut().filter(|e| e.journaled) {
                        let path = entry.id.path_in(&self.dir, SpoolFile::Content);
                        entry.fail(io_err("cannot write spool journal for", &path)(
                            io::Error::from(e.kind()),
                        ));
                    }
                }
            }
        }
        drop(journal);
        for entry in batch.iter_mut().filter(|e| e.result.is_ok()) {
            if let Some(e) = entry.files.iter().find_map(|f| f.sync_data().err()) {
                let path = entry.id.path_in(&self.dir, SpoolFile::Content);
                entry.fail(io_err("cannot sync message file", &path)(e));
            }
        }
    }
}

/// A journal failure as the session's error: the message is not taken.
fn journal_error(e: JournalError, path: &Path) -> StoreError {
    io_err("cannot write spool journal for", path)(io::Error::other(e.to_string()))
}

/// What the write step left to do for a message.
enum Written {
    /// Its record waits in the journal for the batch's flush.
    Journaled,
    /// These files are to be flushed.
    ToFlush(Vec<File>),
}

/// The content file's bytes, read back through the handle that wrote them
/// (from the page cache: no device read).
fn read_back(content: &mut File, size: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    content.seek(SeekFrom::Start(0))?;
    let mut bytes = vec![0; size as usize];
    content.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod crash_points;

#[cfg(test)]
mod tests {
    use super::super::{Envelope, Spool};
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            from: "a@b".into(),
            to_remote: vec!["c@d".into()],
            ..Envelope::default()
        }
    }

    fn suffixes(spool: &Spool, id: &MessageId) -> Vec<&'static str> {
        [
            SpoolFile::Content,
            SpoolFile::EnvelopeNew,
            SpoolFile::Envelope,
        ]
        .into_iter()
        .filter(|&f| spool.path(id, f).exists())
        .map(SpoolFile::suffix)
        .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|n| {
                let spool = Arc::clone(&spool);
                tokio::spawn(async move {
                    let mut message = spool.new_message().unwrap();
                    message.write(format!("body {n}\r\n").as_bytes()).unwrap();
                    message.commit(envelope()).await
                })
            })
            .collect();
        for task in tasks {
            let id = task.await.unwrap().unwrap();
            assert_eq!(suffixes(&spool, &id), [".content", ".envelope"]);
        }
        assert_eq!(spool.ready().unwrap().len(), 50);
    }

    #[test]
    fn a_failed_message_leaves_nothing_and_spares_the_rest_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut batch: Vec<Entry> = (0..3)
            .map(|_| {
                let mut message = spool.new_message().unwrap();
                message.write(b"body\r\n").unwrap();
                let (id, content) = message.hand_over().unwrap();
                let envelope = envelope().to_bytes();
                let size = 6;
                Entry::new(
                    id,
                    Step::Commit {
                        content,
                        size,
                        envelope,
                    },
                )
            })
            .collect();
        // The middle one's envelope name is taken: it cannot be written.
        std::fs::write(spool.path(&batch[1].id, SpoolFile::EnvelopeNew), "x").unwrap();
        spool.committer.pipeline.commit(&mut batch);
        assert!(batch[0].result.is_ok() && batch[2].result.is_ok());
        assert!(batch[1].result.is_err());
        assert_eq!(suffixes(&spool, &batch[0].id), [".content", ".envelope"]);
        assert!(suffixes(&spool, &batch[1].id).is_empty());
        assert_eq!(spool.ready().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn prepared_messages_are_committed_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let prepare = || async {
            let mut message = spool.new_message().unwrap();
            message.write(b"body\r\n").unwrap();
            message.prepare(envelope()).await.unwrap()
        };
        let kept = prepare().await;
        assert_eq!(suffixes(&spool, kept.id()), [".content", ".envelope.new"]);
        let id = kept.commit(true).await.unwrap();
        assert_eq!(suffixes(&spool, &id), [".content", ".envelope"]);
        let dropped = prepare().await;
        let gone = dropped.id().clone();
        drop(dropped);
        assert!(suffixes(&spool, &gone).is_empty());
    }
}
