//! The built-in filters `copy:`, `deliver:`, `split:` and `msgid:`
//! (E-MailRelay's reference, "Built-in filters" and "Delivery"). They run
//! on a blocking thread: plain file work, every new file fsynced before the
//! original is removed, so a crash leaves a copy too many, never none.
//!
//! Mailbox names come from address verifiers, so they are checked before
//! they become paths: one plain name under the base directory, nothing else.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{is_safe_mailbox_name, FilterJob, FilterOutcome, FilterSettings, FilterSpec};
use crate::store::{link_or_copy, Envelope, Spool};

/// `copy:` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Keep the original in the main spool.
    pub nodelete: bool,
    /// Copy only the envelope; the content stays in the main spool.
    pub pop: bool,
    /// Hard-link the content instead of copying it.
    pub hardlink: bool,
}

impl CopyOptions {
    /// Parses `nodelete;pop;hardlink` in any order; `Err` names a stranger.
    pub fn parse(text: &str) -> Result<CopyOptions, &str> {
        let mut options = CopyOptions::default();
        for word in text.split(';').filter(|w| !w.is_empty()) {
            match word {
                "nodelete" => options.nodelete = true,
                "pop" => options.pop = true,
                "hardlink" => options.hardlink = true,
                other => return Err(other),
            }
        }
        Ok(options)
    }
}

/// `deliver:` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliverOptions {
    pub nodelete: bool,
    pub hardlink: bool,
}

impl DeliverOptions {
    /// Parses `nodelete;hardlink`; `Err` names a stranger.
    pub fn parse(text: &str) -> Result<DeliverOptions, &str> {
        let mut options = DeliverOptions::default();
        for word in text.split(';').filter(|w| !w.is_empty()) {
            match word {
                "nodelete" => options.nodelete = true,
                "hardlink" => options.hardlink = true,
                other => return Err(other),
            }
        }
        Ok(options)
    }
}

/// Runs one built-in.
pub fn run(
    spec: &FilterSpec,
    job: &FilterJob,
    settings: &FilterSettings,
    spool: &Spool,
) -> FilterOutcome {
    let result = match spec {
        FilterSpec::Copy(options) => copy(job, spool.dir(), options),
        FilterSpec::Deliver(options) => deliver(job, &settings.delivery_dir, options),
        FilterSpec::Split { raw } => split(job, spool, *raw),
        FilterSpec::MsgId => msgid(job, &settings.domain),
        _ => return FilterOutcome::Error("not a built-in filter".into()),
    };
    result.unwrap_or_else(FilterOutcome::Error)
}

/// The message id in a spool file path (`<id>.envelope.new` and so on).
fn message_id(envelope: &Path) -> Result<String, String> {
    let name = envelope
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split_once(".envelope")
        .map(|(id, _)| id.to_string())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("not an envelope file: [{}]", envelope.display()))
}

fn read_envelope(path: &Path) -> Result<Envelope, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read [{}]: {e}", path.display()))?;
    Envelope::parse(&bytes).map_err(|e| format!("[{}]: {e}", path.display()))
}

/// `copy:`: into every sub-directory of the spool except `postmaster` and
/// hidden ones; maildirs get the content only.
fn copy(job: &FilterJob, spool_dir: &Path, options: &CopyOptions) -> Result<FilterOutcome, String> {
    let id = message_id(&job.envelope)?;
    let mut targets: Vec<PathBuf> = fs::read_dir(spool_dir)
        .map_err(|e| format!("cannot read [{}]: {e}", spool_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name != "postmaster" && is_safe_mailbox_name(&name)
        })
        .map(|e| e.path())
        .collect();
    targets.sort();
    if targets.is_empty() {
        // Copying nowhere and then deleting would lose the message.
        crate::warning!(
            "copy: no sub-directories in [{}]: message kept",
            spool_dir.display()
        );
        return Ok(FilterOutcome::Ok);
    }
    for dir in &targets {
        if is_maildir(dir) {
            deliver_maildir(&job.content, dir)?;
        } else {
            copy_message(job, dir, &id, !options.pop, options.hardlink)?;
        }
    }
    if options.nodelete {
        return Ok(FilterOutcome::Ok);
    }
    remove(&job.envelope)?;
    if !options.pop {
        remove(&job.content)?;
    }
    Ok(FilterOutcome::Abandon)
}

/// `deliver:`: a copy for each local recipient's mailbox under the
/// delivery directory; the original goes if no remote recipient is left.
fn deliver(
    job: &FilterJob,
    base: &Path,
    options: &DeliverOptions,
) -> Result<FilterOutcome, String> {
    let envelope = read_envelope(&job.envelope)?;
    if envelope.to_local.is_empty() {
        return Ok(FilterOutcome::Ok);
    }
    let id = message_id(&job.envelope)?;
    let mut mailboxes = envelope.to_local.clone();
    mailboxes.sort();
    mailboxes.dedup();
    if let Some(bad) = mailboxes.iter().find(|m| !is_safe_mailbox_name(m)) {
        return Err(format!("invalid mailbox name [{bad}]"));
    }
    for mailbox in &mailboxes {
        let dir = base.join(mailbox);
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .create(&dir)
                .map_err(|e| format!("cannot create mailbox [{}]: {e}", dir.display()))?;
        }
        if is_maildir(&dir) {
            deliver_maildir(&job.content, &dir)?;
        } else {
            copy_message(job, &dir, &id, true, options.hardlink)?;
        }
        crate::info!("deliver: [{id}] delivered to mailbox [{mailbox}]");
    }
    if !envelope.to_remote.is_empty() || options.nodelete {
        return Ok(FilterOutcome::Ok);
    }
    remove(&job.envelope)?;
    remove(&job.content)?;
    Ok(FilterOutcome::Abandon)
}

/// `split:`: one message per recipient domain, each with that domain in
/// `ForwardTo`. The first group keeps the original files.
fn split(job: &FilterJob, spool: &Spool, raw: bool) -> Result<FilterOutcome, String> {
    let mut envelope = read_envelope(&job.envelope)?;
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for rcpt in &envelope.to_remote {
        let domain = rcpt.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let key = if raw {
            domain.to_string()
        } else {
            domain.to_ascii_lowercase()
        };
        match groups.iter_mut().find(|(d, _)| *d == key) {
            Some((_, list)) => list.push(rcpt.clone()),
            None => groups.push((key, vec![rcpt.clone()])),
        }
    }
    let Some((first_domain, first)) = groups.first().cloned() else {
        return Ok(FilterOutcome::Ok);
    };
    for (domain, recipients) in groups.iter().skip(1) {
        let copy = Envelope {
            to_local: Vec::new(),
            to_remote: recipients.clone(),
            forward_to: domain.clone(),
            ..envelope.clone()
        };
        let id = spool
            .add_copy(&job.content, &copy)
            .map_err(|e| e.to_string())?;
        crate::info!("split: new message [{id}] for [{domain}]");
    }
    envelope.to_remote = first;
    envelope.forward_to = first_domain;
    rewrite(&job.envelope, &envelope.to_bytes())?;
    Ok(FilterOutcome::Ok)
}

/// `msgid:`: a Message-ID header in front of the content if the header
/// section has none.
fn msgid(job: &FilterJob, domain: &str) -> Result<FilterOutcome, String> {
    let path = &job.content;
    let err = |e: io::Error| format!("cannot rewrite [{}]: {e}", path.display());
    let file = File::open(path).map_err(err)?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    // Headers only: stop at the blank line, and after a bounded amount.
    for _ in 0..10_000 {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(err)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim_end().is_empty() {
            break;
        }
        if text.len() > 11 && text[..11].eq_ignore_ascii_case("message-id:") {
            return Ok(FilterOutcome::Ok);
        }
    }
    let id = message_id(&job.envelope)?;
    let header = format!("Message-ID: <{id}@{domain}>\r\n");
    let tmp = with_suffix(path, ".msgid.tmp");
    let written = (|| {
        let mut out = create_new(&tmp)?;
        out.write_all(header.as_bytes())?;
        io::copy(&mut File::open(path)?, &mut out)?;
        out.sync_data()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(FilterOutcome::Ok)
}

fn is_maildir(dir: &Path) -> bool {
    ["new", "cur", "tmp"].iter().all(|d| dir.join(d).is_dir())
}

/// Maildir delivery: the content written under `tmp`, fsynced, then
/// renamed into `new` (a new, unread message for IMAP servers).
fn deliver_maildir(content: &Path, dir: &Path) -> Result<(), String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}Q{}.emailrelay",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join("tmp").join(&name);
    let err = |e: io::Error| format!("cannot deliver to maildir [{}]: {e}", dir.display());
    let written = (|| {
        let mut out = create_new(&tmp)?;
        io::copy(&mut File::open(content)?, &mut out)?;
        out.sync_data()?;
        fs::rename(&tmp, dir.join("new").join(&name))?;
        File::open(dir.join("new"))?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

/// Copies the envelope (as `<id>.envelope`) and, if `with_content`, the
/// content into `dir`, fsynced.
fn copy_message(
    job: &FilterJob,
    dir: &Path,
    id: &str,
    with_content: bool,
    hardlink: bool,
) -> Result<(), String> {
    let err = |e: io::Error| format!("cannot copy to [{}]: {e}", dir.display());
    if with_content {
        let target = dir.join(format!("{id}.content"));
        let _ = fs::remove_file(&target);
        if hardlink {
            link_or_copy(&job.content, &target).map_err(err)?;
        } else {
            let mut out = create_new(&target).map_err(err)?;
            io::copy(&mut File::open(&job.content).map_err(err)?, &mut out).map_err(err)?;
            out.sync_data().map_err(err)?;
        }
    }
    let bytes = fs::read(&job.envelope).map_err(err)?;
    rewrite(&dir.join(format!("{id}.envelope")), &bytes)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

/// Replaces `path` with `bytes` atomically (temporary file, fsync, rename).
pub(super) fn rewrite(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = with_suffix(path, ".tmp");
    let written = (|| {
        let mut out = create_new(&tmp)?;
        out.write_all(bytes)?;
        out.sync_data()?;
        fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write [{}]: {e}", path.display())
    })
}

fn remove(path: &Path) -> Result<(), String> {
    fs::remove_file(path).map_err(|e| format!("cannot remove [{}]: {e}", path.display()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn create_new(path: &Path) -> io::Result<File> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o660)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &Path, envelope: &Envelope, content: &str) -> FilterJob {
        let job = FilterJob {
            content: dir.join("emailrelay.1.2.3.content"),
            envelope: dir.join("emailrelay.1.2.3.envelope.new"),
        };
        fs::write(&job.content, content).unwrap();
        fs::write(&job.envelope, envelope.to_bytes()).unwrap();
        job
    }

    #[test]
    fn msgid_adds_a_header_only_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(
            dir.path(),
            &Envelope::default(),
            "Subject: x\r\n\r\nbody\r\n",
        );
        assert_eq!(msgid(&j, "relay.example.com"), Ok(FilterOutcome::Ok));
        let text = fs::read_to_string(&j.content).unwrap();
        assert_eq!(
            text,
            "Message-ID: <emailrelay.1.2.3@relay.example.com>\r\nSubject: x\r\n\r\nbody\r\n"
        );
        msgid(&j, "relay.example.com").unwrap();
        assert_eq!(fs::read_to_string(&j.content).unwrap(), text);
        // A Message-ID in the body does not count.
        let j = job(
            dir.path(),
            &Envelope::default(),
            "Subject: y\r\n\r\nMessage-ID: <no>\r\n",
        );
        msgid(&j, "d").unwrap();
        assert!(fs::read_to_string(&j.content)
            .unwrap()
            .starts_with("Message-ID: <emailrelay.1.2.3@d>\r\n"));
    }

    #[test]
    fn split_makes_one_message_per_domain() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let envelope = Envelope {
            from: "a@x".into(),
            to_remote: vec![
                "b@One.example".into(),
                "c@two.example".into(),
                "d@one.example".into(),
            ],
            ..Envelope::default()
        };
        let j = job(dir.path(), &envelope, "Subject: s\r\n\r\n");
        assert_eq!(split(&j, &spool, false), Ok(FilterOutcome::Ok));
        let first = read_envelope(&j.envelope).unwrap();
        assert_eq!(first.to_remote, ["b@One.example", "d@one.example"]);
        assert_eq!(first.forward_to, "one.example");
        let others = spool.ready().unwrap();
        assert_eq!(others.len(), 1);
        let other = read_envelope(&spool.path(&others[0], ".envelope")).unwrap();
        assert_eq!(other.to_remote, ["c@two.example"]);
        assert_eq!(other.forward_to, "two.example");
        assert_eq!(other.from, "a@x");
    }

    #[test]
    fn deliver_refuses_a_mailbox_name_that_leaves_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let envelope = Envelope {
            to_local: vec!["../escape".into()],
            ..Envelope::default()
        };
        let j = job(dir.path(), &envelope, "x");
        let base = dir.path().join("boxes");
        assert_eq!(
            deliver(&j, &base, &DeliverOptions::default()),
            Err("invalid mailbox name [../escape]".into())
        );
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn copy_options_pop_and_hardlink() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("box")).unwrap();
        fs::create_dir(dir.path().join(".hidden")).unwrap();
        let j = job(dir.path(), &Envelope::default(), "x");
        let pop = CopyOptions::parse("pop").unwrap();
        assert_eq!(copy(&j, dir.path(), &pop), Ok(FilterOutcome::Abandon));
        // The envelope moved into the box; the content stays for POP.
        assert!(!j.envelope.exists() && j.content.exists());
        assert!(dir.path().join("box/emailrelay.1.2.3.envelope").exists());
        assert!(!dir.path().join("box/emailrelay.1.2.3.content").exists());
        assert!(fs::read_dir(dir.path().join(".hidden"))
            .unwrap()
            .next()
            .is_none());

        let j = job(dir.path(), &Envelope::default(), "y");
        let hardlink = CopyOptions::parse("hardlink;nodelete").unwrap();
        assert_eq!(copy(&j, dir.path(), &hardlink), Ok(FilterOutcome::Ok));
        let copied = dir.path().join("box/emailrelay.1.2.3.content");
        assert_eq!(
            fs::metadata(&copied).unwrap().ino(),
            fs::metadata(&j.content).unwrap().ino()
        );
    }

    #[test]
    fn deliver_options_hardlink_and_nodelete() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let envelope = Envelope {
            to_local: vec!["alice".into()],
            ..Envelope::default()
        };
        let j = job(dir.path(), &envelope, "x");
        let options = DeliverOptions::parse("hardlink;nodelete").unwrap();
        assert_eq!(deliver(&j, dir.path(), &options), Ok(FilterOutcome::Ok));
        let delivered = dir.path().join("alice/emailrelay.1.2.3.content");
        assert_eq!(
            fs::metadata(&delivered).unwrap().ino(),
            fs::metadata(&j.content).unwrap().ino()
        );
        assert!(j.envelope.exists());
        // Without nodelete an all-local message leaves the spool.
        assert_eq!(
            deliver(&j, dir.path(), &DeliverOptions::default()),
            Ok(FilterOutcome::Abandon)
        );
        assert!(!j.envelope.exists() && !j.content.exists());
        assert!(delivered.exists());
    }

    #[test]
    fn split_raw_compares_domains_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let envelope = Envelope {
            to_remote: vec!["b@One.example".into(), "d@one.example".into()],
            ..Envelope::default()
        };
        let j = job(dir.path(), &envelope, "x");
        assert_eq!(split(&j, &spool, true), Ok(FilterOutcome::Ok));
        assert_eq!(
            read_envelope(&j.envelope).unwrap().forward_to,
            "One.example"
        );
        assert_eq!(spool.ready().unwrap().len(), 1);
    }

    #[test]
    fn copy_with_no_destination_keeps_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(dir.path(), &Envelope::default(), "x");
        assert_eq!(
            copy(&j, dir.path(), &CopyOptions::default()),
            Ok(FilterOutcome::Ok)
        );
        assert!(j.envelope.exists() && j.content.exists());
    }
}
