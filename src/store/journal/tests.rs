//! The journal's records, its replay after a crash with each way a power
//! loss can treat the unflushed spool files, "done" records, checkpoints
//! at shutdown, and a second relay on the same spool.

use std::sync::Arc;

use super::*;
use crate::store::{Envelope, Spool};

fn envelope(n: usize) -> Envelope {
    Envelope {
        from: format!("sender{n}@example.com"),
        to_remote: vec![format!("rcpt{n}@example.org")],
        client: "127.0.0.1".into(),
        ..Envelope::default()
    }
}

fn content(n: usize) -> Vec<u8> {
    format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

async fn receive(spool: &Arc<Spool>, n: usize) -> MessageId {
    let mut message = spool.new_message().unwrap();
    message.write(&content(n)).unwrap();
    message.commit(envelope(n)).await.unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn journal_names(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with(PREFIX))
        .collect()
}

/// What a forwarder would find: each ready message's envelope and content.
fn ready(spool: &Arc<Spool>) -> Vec<(MessageId, Envelope, Vec<u8>)> {
    let mut seen = Vec::new();
    for id in spool.ready().unwrap() {
        let locked = spool.lock(&id).unwrap().unwrap();
        let bytes = fs::read(locked.content_path()).unwrap();
        seen.push((id, locked.envelope.clone(), bytes));
        locked.unlock();
    }
    seen
}

#[test]
fn records_read_back_as_written_and_a_torn_tail_is_left_out() {
    let mut bytes = Vec::new();
    encode(
        &mut bytes,
        KIND_MESSAGE,
        "emailrelay.1.2.3",
        b"env",
        b"content",
    );
    let first = bytes.len();
    encode(&mut bytes, KIND_DONE, "emailrelay.1.2.3", b"", b"");
    let whole = decode(&bytes);
    assert_eq!(
        whole,
        [
            Record::Message {
                id: "emailrelay.1.2.3".into(),
                envelope: b"env".to_vec(),
                content: b"content".to_vec(),
            },
            Record::Done {
                id: "emailrelay.1.2.3".into()
            },
        ]
    );
    // Cut anywhere: only the records wholly before the cut.
    for cut in 0..bytes.len() {
        let expected = match cut {
            c if c < first => 0,
            _ => 1,
        };
        assert_eq!(decode(&bytes[..cut]).len(), expected, "cut at {cut}");
    }
    // A flipped bit anywhere in a record ends the reading there.
    for at in 0..first {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        assert!(decode(&damaged).is_empty(), "flip at {at}");
    }
}

/// How a power loss may treat an acknowledged message's unflushed files.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Every file kept (a process crash).
    Nothing,
    /// Neither file reached the disk.
    Everything,
    /// The content file is there but empty.
    EmptyContent,
    /// The content file is cut short.
    ShortContent,
    /// The envelope's rename was lost: `.envelope.new` only.
    Rename,
    /// The envelope file is there but empty.
    EmptyEnvelope,
}

fn lose(spool: &Spool, id: &MessageId, loss: Loss) {
    let path = |file| spool.path(id, file);
    match loss {
        Loss::Nothing => {}
        Loss::Everything => {
            fs::remove_file(path(SpoolFile::Content)).unwrap();
            fs::remove_file(path(SpoolFile::Envelope)).unwrap();
        }
        Loss::EmptyContent => fs::write(path(SpoolFile::Content), b"").unwrap(),
        Loss::ShortContent => {
            let bytes = fs::read(path(SpoolFile::Content)).unwrap();
            fs::write(path(SpoolFile::Content), &bytes[..bytes.len() / 2]).unwrap();
        }
        Loss::Rename => {
            fs::rename(path(SpoolFile::Envelope), path(SpoolFile::EnvelopeNew)).unwrap()
        }
        Loss::EmptyEnvelope => fs::write(path(SpoolFile::Envelope), b"").unwrap(),
    }
}

#[tokio::test]
async fn a_crash_loses_no_acknowledged_message_whatever_the_power_loss_took() {
    let losses = [
        Loss::Nothing,
        Loss::Everything,
        Loss::EmptyContent,
        Loss::ShortContent,
        Loss::Rename,
        Loss::EmptyEnvelope,
    ];
    let dir = tempfile::tempdir().unwrap();
    let (spool, replayed) = Spool::open_journaled(dir.path()).unwrap();
    assert_eq!(replayed.unwrap(), Replayed::default());
    let mut ids = Vec::new();
    for n in 0..losses.len() {
        ids.push(receive(&spool, n).await);
    }
    // Acknowledged, and the journal holds them, unflushed files and all.
    assert_eq!(journal_names(dir.path()).len(), 1);
    spool.committer.crash_journal();
    for (id, &loss) in ids.iter().zip(&losses) {
        lose(&spool, id, loss);
    }
    drop(spool);
    let (spool, replayed) = Spool::open_journaled(dir.path()).unwrap();
    let replayed = replayed.unwrap();
    assert_eq!(replayed.segments, 1);
    assert_eq!(replayed.live, losses.len());
    // Every message with something lost, and only those, was restored.
    assert_eq!(replayed.restored, ids[1..].to_vec());
    let expected: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| (id.clone(), envelope(n), content(n)))
        .collect();
    assert_eq!(ready(&spool), expected);
    // The replay made them durable and removed the segment; nothing else
    // is left beside the messages' two files.
    assert!(journal_names(dir.path()).is_empty());
    assert_eq!(names(dir.path()).len(), 2 * ids.len());
}

#[tokio::test]
async fn a_forwarded_message_does_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open_journaled(dir.path()).unwrap();
    let forwarded = receive(&spool, 1).await;
    let kept = receive(&spool, 2).await;
    spool.lock(&forwarded).unwrap().unwrap().delete().unwrap();
    // The "done" record rides with the next batch's flush.
    let later = receive(&spool, 3).await;
    spool.committer.crash_journal();
    for id in [&kept, &later] {
        lose(&spool, id, Loss::Everything);
    }
    drop(spool);
    let (spool, replayed) = Spool::open_journaled(dir.path()).unwrap();
    assert_eq!(replayed.unwrap().restored, [kept.clone(), later.clone()]);
    let ids: Vec<MessageId> = ready(&spool).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids, [kept, later]);
}

#[tokio::test]
async fn a_failed_message_keeps_its_state_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open_journaled(dir.path()).unwrap();
    let id = receive(&spool, 1).await;
    spool
        .lock(&id)
        .unwrap()
        .unwrap()
        .fail("550 no such user", Some(550))
        .unwrap();
    spool.committer.crash_journal();
    drop(spool);
    let (spool, replayed) = Spool::open_journaled(dir.path()).unwrap();
    assert!(replayed.unwrap().restored.is_empty());
    assert_eq!(spool.failed().unwrap(), std::slice::from_ref(&id));
    assert!(spool.ready().unwrap().is_empty());
}

#[tokio::test]
async fn a_clean_shutdown_checkpoints_and_leaves_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open_journaled(dir.path()).unwrap();
    // Nothing is made before the first message.
    assert!(journal_names(dir.path()).is_empty());
    let id = receive(&spool, 1).await;
    assert_eq!(journal_names(dir.path()), [format!("{PREFIX}1")]);
    spool.close();
    assert!(journal_names(dir.path()).is_empty());
    assert_eq!(
        names(dir.path()),
        [format!("{id}.content"), format!("{id}.envelope")]
    );
    drop(spool);
    let (_, replayed) = Spool::open_journaled(dir.path()).unwrap();
    assert_eq!(replayed.unwrap(), Replayed::default());
}

#[tokio::test]
async fn relays_sharing_a_spool_keep_their_own_segments_and_replay_the_dead_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = Spool::open_journaled(dir.path()).unwrap();
    let one = receive(&first, 1).await;
    // The second finds the first's segment held: not its to replay.
    let (second, replayed) = Spool::open_journaled(dir.path()).unwrap();
    assert_eq!(replayed.unwrap(), Replayed::default());
    let two = receive(&second, 2).await;
    assert_eq!(
        journal_names(dir.path()),
        [format!("{PREFIX}1"), format!("{PREFIX}2")]
    );
    // The first dies and the power takes its message's files; a third
    // start replays the first's segment only.
    first.committer.crash_journal();
    lose(&first, &one, Loss::Everything);
    drop(first);
    let (third, replayed) = Spool::open_journaled(dir.path()).unwrap();
    let replayed = replayed.unwrap();
    assert_eq!((replayed.segments, replayed.live), (1, 1));
    assert_eq!(replayed.restored, std::slice::from_ref(&one));
    assert_eq!(journal_names(dir.path()), [format!("{PREFIX}2")]);
    let ids: Vec<MessageId> = ready(&third).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids, [one, two]);
    second.close();
    assert!(journal_names(dir.path()).is_empty());
}

#[tokio::test]
async fn a_large_message_goes_the_direct_way() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open_journaled(dir.path()).unwrap();
    let big = vec![b'x'; CONTENT_LIMIT as usize + 1];
    let mut message = spool.new_message().unwrap();
    message.write(&big).unwrap();
    let id = message.commit(envelope(1)).await.unwrap();
    // Flushed itself: no record, so no segment was even made.
    assert!(journal_names(dir.path()).is_empty());
    spool.committer.crash_journal();
    drop(spool);
    let (spool, replayed) = Spool::open_journaled(dir.path()).unwrap();
    assert_eq!(replayed.unwrap(), Replayed::default());
    assert_eq!(ready(&spool), [(id, envelope(1), big)]);
}

#[tokio::test]
async fn a_filtered_message_is_recorded_as_the_filter_left_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open_journaled(dir.path()).unwrap();
    let mut message = spool.new_message().unwrap();
    message.write(&content(1)).unwrap();
    let prepared = message.prepare(envelope(1)).await.unwrap();
    // The filter rewrites both files.
    let edited = Envelope {
        forward_to: "filtered".into(),
        ..envelope(1)
    };
    fs::write(prepared.envelope_path(), edited.to_bytes()).unwrap();
    fs::write(prepared.content_path(), b"edited\r\n").unwrap();
    let id = prepared.commit(true).await.unwrap();
    spool.committer.crash_journal();
    lose(&spool, &id, Loss::Everything);
    drop(spool);
    let (spool, replayed) = Spool::open_journaled(dir.path()).unwrap();
    assert_eq!(replayed.unwrap().restored, std::slice::from_ref(&id));
    assert_eq!(ready(&spool), [(id, edited, b"edited\r\n".to_vec())]);
}

#[test]
fn a_message_forwarded_while_its_segment_is_checkpointed_is_recorded_done_in_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let directory = Directory::open(dir.path()).unwrap();
    let (mut journal, _) = Journal::open(dir.path(), &directory).unwrap();
    let id = MessageId::fresh();
    journal
        .append_message(&id, b"envelope", b"content")
        .unwrap();
    journal.sync().unwrap();
    journal.mark_live(std::iter::once(&id));
    // Its segment goes to the checkpoint; no segment is being written.
    journal.rotate_now();
    journal.append_done(&id);
    journal.sync().unwrap();
    // The "done" went into a segment of its own, whatever the checkpoint
    // has done with the first meanwhile.
    let second = dir.path().join(format!("{PREFIX}2"));
    assert_eq!(
        decode(&fs::read(second).unwrap()),
        [Record::Done {
            id: id.as_str().to_string()
        }]
    );
    journal.close();
    assert!(journal_names(dir.path()).is_empty());
}
