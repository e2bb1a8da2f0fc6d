//! Durability: SIGKILL under load loses no acknowledged message; a full
//! disk answers 452 and leaves nothing half-written that would be forwarded;
//! a crash inside a group commit's batch; the power-loss ordering of each
//! message's flushes, rename, directory fsync and 250, read with strace.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{free_port, greets, run, wait_until, Client, Relay, Sink};

/// Sends numbered messages until told to stop, recording those that got 250.
fn submitter(port: u16, stop: Arc<AtomicBool>, acked: Arc<Mutex<BTreeSet<usize>>>, base: usize) {
    let mut n = base;
    while !stop.load(Ordering::Relaxed) && n < base + 100_000 {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        drop(stream);
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut c = Client::connect(port);
            c.reply();
            let mut sent = Vec::new();
            for _ in 0..5 {
                let body = format!("Subject: msg-{n}-end\r\n\r\nbody\r\n");
                if c.send_message("a@example.com", &["b@example.org"], &body)
                    == "250 message processed"
                {
                    sent.push(n);
                }
                n += 1;
            }
            sent
        }));
        match attempt {
            Ok(sent) => acked.lock().unwrap().extend(sent),
            Err(_) => n += 5,
        }
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let port = free_port();
    let args = [
        "--forward-on-disconnect",
        "--poll",
        "1",
        "--forward-to",
        &sink.address(),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut relay = Relay::start_on(dir.path(), port, &args);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || submitter(port, stop, acked, i * 1_000_000))
        })
        .collect();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(700));
        relay.proc.signal(nix::sys::signal::Signal::SIGKILL);
        relay.proc.wait_exit(Duration::from_secs(5));
        relay = Relay::start_on(dir.path(), port, &args);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "too little load: {}", acked.len());
    // Restart once more and let it forward everything.
    relay.proc.signal(nix::sys::signal::Signal::SIGKILL);
    relay.proc.wait_exit(Duration::from_secs(5));
    let relay = Relay::start_on(
        dir.path(),
        port,
        &["--forward", "--poll", "1", "--forward-to", &sink.address()],
    );
    let delivered = || -> BTreeSet<usize> {
        sink.messages()
            .iter()
            .filter_map(|m| {
                m.split("Subject: msg-")
                    .nth(1)?
                    .split("-end")
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let all_there = wait_until(Duration::from_secs(120), || acked.is_subset(&delivered()));
    let missing: Vec<_> = acked.difference(&delivered()).take(10).copied().collect();
    assert!(
        all_there,
        "{} acknowledged messages missing, e.g. {missing:?}; spool: {:?}",
        missing.len(),
        relay.files("envelope")
    );
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (like "300k") on a new directory `dir/name`.
    fn mount(dir: &std::path::Path, name: &str, size: &str) -> Tmpfs {
        let mount = dir.join(name);
        std::fs::create_dir(&mount).unwrap();
        let (code, _, err) = run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&mount),
            Duration::from_secs(10),
        );
        assert_eq!(
            code, 0,
            "this test needs root to mount a small tmpfs (scripts/test runs as root): {err}"
        );
        Tmpfs(mount)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_answers_452_and_leaves_nothing_forwardable() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(dir.path(), "small", "300k");
    let spool = tmpfs.0.join("spool");
    let port = free_port();
    let _relay = Relay::launch(&spool, &dir.path().join("log"), port, &[]);
    let mut c = Client::connect(port);
    c.reply();
    c.command("EHLO vm");
    let body = format!(
        "Subject: big\r\n\r\n{}",
        "0123456789012345678901234567890123456789012345678901234567890123456789\r\n".repeat(1000)
    );
    let mut replies = Vec::new();
    for _ in 0..10 {
        replies.push(c.send_message("a@example.com", &["b@example.org"], &body));
    }
    assert!(
        replies.contains(&"250 message processed".to_string()),
        "{replies:?}"
    );
    assert!(
        replies.contains(&"452 insufficient system storage".to_string()),
        "{replies:?}"
    );
    assert!(
        replies
            .iter()
            .all(|r| r == "250 message processed" || r == "452 insufficient system storage"),
        "{replies:?}"
    );
    assert_eq!(c.command("NOOP"), "250 noop", "the session goes on");
    let accepted = replies.iter().filter(|r| r.starts_with("250")).count();
    let envelopes = crate::harness::spool_files(&spool, ".envelope");
    assert_eq!(envelopes.len(), accepted);
    assert!(crate::harness::spool_files(&spool, ".new").is_empty());
    assert_eq!(
        crate::harness::spool_files(&spool, ".content").len(),
        accepted,
        "no orphan content files"
    );
    for e in &envelopes {
        let content =
            std::fs::read_to_string(spool.join(e.replace(".envelope", ".content"))).unwrap();
        assert!(content.ends_with(&body), "every committed message is whole");
    }
}

#[test]
fn a_read_only_spool_answers_451_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(dir.path(), "ro", "1m");
    let mount = tmpfs.0.clone();
    let spool = mount.join("spool");
    std::fs::create_dir(&spool).unwrap();
    let port = free_port();
    let _relay = Relay::launch(&spool, &dir.path().join("log"), port, &[]);
    let (code, _, err) = run(
        Command::new("mount").args(["-o", "remount,ro"]).arg(&mount),
        Duration::from_secs(10),
    );
    assert_eq!(code, 0, "{err}");
    let mut c = Client::connect(port);
    c.reply();
    c.command("EHLO vm");
    assert_eq!(c.command("MAIL FROM:<a@b.c>"), "250 sender <a@b.c> OK");
    assert_eq!(c.command("RCPT TO:<d@e.f>"), "250 recipient <d@e.f> OK");
    assert_eq!(c.command("DATA"), "451 local error in processing");
    assert_eq!(c.command("NOOP"), "250 noop");
    assert!(crate::harness::spool_files(&spool, "").is_empty());
}

/// The strace command line that runs the relay and kills it (SIGKILL) at
/// the `n`th `rename` of any one of its threads, before that call is made.
fn killed_at_rename(n: usize) -> Vec<String> {
    killed_at("rename,renameat,renameat2", n)
}

/// Group commit: three messages committed one by one, then four sessions
/// end their DATA together, and the relay dies at the next rename of its
/// commit thread, after that batch's records were flushed to the spool's
/// journal. Nothing acknowledged is lost; the batch, in the journal but
/// never acknowledged, is restored at the restart and forwarded too (its
/// clients, never told 250, send again: duplicates as RFC 5321 section
/// 6.1 accepts, never a loss).
#[test]
fn a_crash_between_a_batchs_journal_flush_and_its_renames_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let port = free_port();
    let wrapper = killed_at_rename(4);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut relay = Relay::launch_under(&wrapper, &spool, &dir.path().join("log"), port, &[]);
    let body = |n: usize| format!("Subject: msg-{n}-end\r\n\r\nbody {n}\r\n");
    let mut first = Client::connect(port);
    first.reply();
    for n in 0..3 {
        let reply = first.send_message("a@example.com", &["b@example.org"], &body(n));
        assert_eq!(reply, "250 message processed");
    }
    // Four sessions wait with their content sent, then all end their DATA.
    let mut batch: Vec<Client> = (3..7)
        .map(|n| {
            let mut c = Client::connect(port);
            c.reply();
            c.command("EHLO client.example");
            c.command("MAIL FROM:<a@example.com>");
            c.command("RCPT TO:<b@example.org>");
            assert_eq!(c.command("DATA").get(..3), Some("354"));
            c.send(&body(n));
            c
        })
        .collect();
    for c in batch.iter_mut() {
        c.send(".\r\n");
    }
    let replies: Vec<String> = batch.iter_mut().map(Client::reply).collect();
    assert!(
        replies.iter().all(String::is_empty),
        "no 250 before the batch is durable: {replies:?}"
    );
    relay.proc.wait_exit(Duration::from_secs(20));
    let envelopes = crate::harness::spool_files(&spool, ".envelope");
    assert_eq!(
        envelopes.len(),
        3,
        "only the acknowledged messages: {envelopes:?}"
    );
    // The batch is whatever had queued when the commit thread woke: one
    // to four of the sessions.
    let written = crate::harness::spool_files(&spool, ".envelope.new");
    assert!(
        (1..=4).contains(&written.len()),
        "the crash came after the batch's envelopes were written: {written:?}"
    );
    let subject = |name: &str| {
        let id = name.strip_suffix(".envelope.new").unwrap();
        let content = std::fs::read_to_string(spool.join(format!("{id}.content"))).unwrap();
        let subject = content.split("Subject: ").nth(1).unwrap();
        subject.lines().next().unwrap().to_string()
    };
    let mut expected: Vec<String> = (0..3).map(|n| format!("msg-{n}-end")).collect();
    expected.extend(written.iter().map(|name| subject(name)));
    expected.sort();
    assert_eq!(
        crate::harness::journal_segments(&spool).len(),
        1,
        "the journal's segment is left for the restart"
    );
    // Restart without strace, forward everything forwardable.
    let sink = Sink::start(dir.path());
    let _relay = Relay::launch(
        &spool,
        &dir.path().join("log2"),
        free_port(),
        &["--forward", "--poll", "1", "--forward-to", &sink.address()],
    );
    let spool_drained = || crate::harness::spool_files(&spool, ".envelope").is_empty();
    assert!(wait_until(Duration::from_secs(30), || whole_subjects(
        &sink
    )
    .len()
        >= expected.len()
        && spool_drained()));
    let delivered = whole_subjects(&sink);
    assert_eq!(delivered, expected);
    let log = std::fs::read_to_string(dir.path().join("log2")).unwrap();
    let restored = format!(
        "spool journal: {} message(s) restored after a crash: [",
        written.len()
    );
    assert!(log.contains(&restored), "{log}");
    // Forwarded, and the journal removed by the restart's replay; what is
    // left is the content of the sessions that never reached the commit,
    // for the sweep.
    let left = crate::harness::spool_files(&spool, "");
    assert_eq!(left.len(), 4 - written.len(), "{left:?}");
    assert!(left.iter().all(|f| f.ends_with(".content")), "{left:?}");
}

/// One traced system call: where its line starts and where it returned
/// (the same line, or a later `<... resumed>` line), and its text.
struct Call {
    entry: usize,
    exit: usize,
    text: String,
}

/// Reads an `strace -f -yy` log into calls in the order they began.
fn calls(log: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    // Unfinished calls by thread id.
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (n, line) in log.lines().enumerate() {
        let (tid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        if rest.starts_with("<... ") {
            if let Some(i) = open.remove(tid) {
                calls[i].exit = n;
                calls[i].text.push_str(rest);
            }
            continue;
        }
        calls.push(Call {
            entry: n,
            exit: n,
            text: rest.to_string(),
        });
        if rest.ends_with("<unfinished ...>") {
            open.insert(tid.to_string(), calls.len() - 1);
        }
    }
    calls
}

/// Power-loss ordering, read from the system calls of a relay answering
/// one client's messages one after another: each message's record goes
/// into the spool's journal and the journal is flushed before the rename
/// that makes the message forwardable, and the rename comes before the
/// client's 250. That one flush is the only one a message costs: the
/// spool files are not flushed then (a checkpoint makes them durable in
/// bulk later). A power cut at any instant then leaves every acknowledged
/// message in the journal, checksummed, for the restart to restore.
#[test]
fn every_250_follows_the_journal_flush_and_rename_of_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let trace = dir.path().join("trace");
    let port = free_port();
    let trace_arg = trace.to_str().unwrap().to_string();
    let wrapper = [
        "strace",
        "-f",
        "-qq",
        "-yy",
        "-s",
        "64",
        "-o",
        &trace_arg,
        "-e",
        "trace=fdatasync,fsync,syncfs,rename,renameat,renameat2,write,writev,sendto,sendmsg",
    ];
    let relay = Relay::launch_under(&wrapper, &spool, &dir.path().join("log"), port, &[]);
    let mut client = Client::connect(port);
    client.reply();
    const COUNT: usize = 5;
    for n in 0..COUNT {
        let reply = client.send_message(
            "a@example.com",
            &["b@example.org"],
            &format!("Subject: {n}\r\n\r\nbody\r\n"),
        );
        assert_eq!(reply, "250 message processed");
    }
    client.command("QUIT");
    // The PID is strace's: the relay, its child, is stopped first (strace
    // would leave it running on its own), then strace ends with it.
    terminate_child_of(relay.proc.pid());
    let mut relay = relay;
    assert!(relay.proc.wait_exit(Duration::from_secs(10)).is_some());
    let log = std::fs::read_to_string(&trace).unwrap();
    let calls = calls(&log);
    let spool_dir = std::fs::canonicalize(&spool).unwrap();
    let spool_dir = spool_dir.to_str().unwrap();
    let renames: Vec<&Call> = calls
        .iter()
        .filter(|c| c.text.starts_with("rename") && c.text.contains(".envelope.new\""))
        .collect();
    let answers: Vec<&Call> = calls
        .iter()
        .filter(|c| c.text.contains("TCP:[") && c.text.contains("\"250 message processed"))
        .collect();
    assert_eq!((renames.len(), answers.len()), (COUNT, COUNT), "{log}");
    let journal = format!("<{spool_dir}/.emailrelay-journal.");
    for (rename, answer) in renames.iter().zip(&answers) {
        let id = rename
            .text
            .split('"')
            .nth(1)
            .and_then(|p| p.rsplit('/').next())
            .and_then(|f| f.strip_suffix(".envelope.new"))
            .unwrap();
        // strace shows the record's first 64 bytes: the id is among them.
        let recorded = calls
            .iter()
            .find(|c| {
                c.text.starts_with("write(") && c.text.contains(&journal) && c.text.contains(id)
            })
            .unwrap_or_else(|| panic!("no journal record of {id}:\n{log}"));
        let flushed = calls
            .iter()
            .find(|c| {
                c.entry > recorded.exit
                    && c.text.starts_with("fdatasync(")
                    && c.text.contains(&journal)
            })
            .unwrap_or_else(|| panic!("no journal flush after {id}'s record:\n{log}"));
        assert!(
            flushed.exit < rename.entry,
            "{id} renamed before its record was flushed:\n{log}"
        );
        assert!(
            rename.exit < answer.entry,
            "{id}: 250 before its rename:\n{log}"
        );
    }
    // One flush a message: the journal's. None of a message's file (a
    // checkpoint makes those durable later, in bulk, by syncfs).
    let last_answer = answers.last().unwrap().entry;
    let flushes: Vec<&str> = calls
        .iter()
        .filter(|c| c.entry < last_answer)
        .filter(|c| c.text.starts_with("fdatasync(") || c.text.starts_with("fsync("))
        .map(|c| c.text.as_str())
        .collect();
    let journal_flushes = flushes.iter().filter(|t| t.contains(&journal)).count();
    let message_flushes: Vec<&&str> = flushes
        .iter()
        .filter(|t| t.contains(".content>") || t.contains(".envelope"))
        .collect();
    assert_eq!(journal_flushes, COUNT, "{flushes:#?}");
    assert!(message_flushes.is_empty(), "{message_flushes:#?}");
}

/// The strace command line that kills the relay (SIGKILL) at the `n`th
/// call of one of `calls` in any of its threads, before the call is made.
fn killed_at(calls: &str, n: usize) -> Vec<String> {
    ["strace", "-f", "-qq", "-o", "/dev/null", "-e"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("trace={calls}"),
            "-e".to_string(),
            format!("inject={calls}:signal=SIGKILL:when={n}"),
        ])
        .collect()
}

/// SIGTERM to the relay that strace (PID `strace_pid`) runs.
fn terminate_child_of(strace_pid: i32) {
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children"))
            .unwrap_or_default();
    for child in children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// Where the journal's crash test kills the relay.
#[derive(Clone, Copy, Debug)]
enum JournalCrash {
    /// At the third message's journal flush, before it is made.
    Flush,
    /// At the shutdown checkpoint's `syncfs`.
    Checkpoint,
    /// At the checkpoint's removal of the segment, after its `syncfs`.
    SegmentRemoval,
}

/// Kills the relay at one step of the journal's life, restarts it and
/// forwards: every acknowledged message arrives, once; the one whose
/// flush was cut may arrive too (never acknowledged, so a duplicate at
/// worst), nothing else.
fn crash_in_the_journal(crash: JournalCrash) {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let port = free_port();
    let wrapper = match crash {
        JournalCrash::Flush => killed_at("fdatasync", 3),
        JournalCrash::Checkpoint => killed_at("syncfs", 1),
        JournalCrash::SegmentRemoval => killed_at("unlink,unlinkat", 1),
    };
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut relay = Relay::launch_under(&wrapper, &spool, &dir.path().join("log"), port, &[]);
    let body = |n: usize| format!("Subject: msg-{n}-end\r\n\r\nbody {n}\r\n");
    let mut client = Client::connect(port);
    client.reply();
    let mut acknowledged = Vec::new();
    for n in 0..3 {
        let reply = client.send_message("a@example.com", &["b@example.org"], &body(n));
        if reply == "250 message processed" {
            acknowledged.push(format!("msg-{n}-end"));
        }
    }
    match crash {
        JournalCrash::Flush => assert_eq!(acknowledged, ["msg-0-end", "msg-1-end"]),
        JournalCrash::Checkpoint | JournalCrash::SegmentRemoval => {
            assert_eq!(acknowledged.len(), 3);
            // A clean shutdown, cut short inside its checkpoint.
            client.command("QUIT");
            terminate_child_of(relay.proc.pid());
        }
    }
    // Killed: strace ends with its child's signal, so there is no code.
    assert_eq!(relay.proc.wait_exit(Duration::from_secs(20)), None);
    assert!(!greets(port), "{crash:?}: the relay was not killed");
    let segments = crate::harness::journal_segments(&spool);
    assert_eq!(segments.len(), 1, "{crash:?}: {segments:?}");
    let sink = Sink::start(dir.path());
    let log2 = dir.path().join("log2");
    let _relay = Relay::launch(
        &spool,
        &log2,
        free_port(),
        &["--forward", "--poll", "1", "--forward-to", &sink.address()],
    );
    let drained = || {
        crate::harness::spool_files(&spool, ".envelope").is_empty()
            && whole_subjects(&sink).len() >= acknowledged.len()
    };
    assert!(
        wait_until(Duration::from_secs(30), drained),
        "{crash:?}: {:?}",
        sink.messages()
    );
    let delivered = whole_subjects(&sink);
    match crash {
        // The cut message was written to the journal before the kill
        // (a process crash keeps what was written), so it is restored.
        JournalCrash::Flush => assert_eq!(delivered, ["msg-0-end", "msg-1-end", "msg-2-end"]),
        _ => assert_eq!(delivered, acknowledged, "{crash:?}"),
    }
    assert!(crate::harness::journal_segments(&spool).is_empty());
}

#[test]
fn a_crash_at_a_journal_flush_loses_no_acknowledged_message() {
    crash_in_the_journal(JournalCrash::Flush);
}

#[test]
fn a_crash_in_the_checkpoint_before_its_syncfs_loses_nothing() {
    crash_in_the_journal(JournalCrash::Checkpoint);
}

#[test]
fn a_crash_in_the_checkpoint_before_the_segment_goes_loses_nothing_and_sends_nothing_twice() {
    crash_in_the_journal(JournalCrash::SegmentRemoval);
}

/// The subjects (`msg-<n>-end`) of the messages the sink has wholly
/// received, sorted: smtp-sink writes a message's file as it arrives, so
/// one still arriving has no `-end` yet and is not counted.
fn whole_subjects(sink: &Sink) -> Vec<String> {
    let mut subjects: Vec<String> = sink
        .messages()
        .iter()
        .filter_map(|m| Some(m.split("Subject: ").nth(1)?.lines().next()?.to_string()))
        .filter(|s| s.ends_with("-end"))
        .collect();
    subjects.sort();
    subjects
}
