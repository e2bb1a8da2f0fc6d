//! The built-in filters `copy:`, `deliver:`, `split:` and `msgid:`
//! (E-MailRelay's reference, "Built-in filters" and "Delivery"). They run
//! on a blocking thread: plain file work, every new file fsynced before the
//! original is removed, so a crash leaves a copy too many, never none.
//!
//! Mailbox names come from address verifiers, so they are checked before
//! they become paths: one plain name under the base directory, nothing else.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    is_safe_mailbox_name, FilterJob, FilterOutcome, FilterSettings, FilterSpec, FilterType,
};
use crate::platform::files::{self, AtomicFile, DirSync, Directory};
use crate::store::{
    link_or_copy, Envelope, EnvelopeError, MessageId, Spool, SpoolFile, StoreError,
};

/// Why a built-in could not do its work; the text is the `failed` reason
/// (E-MailRelay compatibility: its words where it has them).
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    /// The envelope path is not a spool envelope's.
    #[error("not an envelope file: [{}]", .0.display())]
    NotEnvelope(PathBuf),
    /// A file or directory cannot be read.
    #[error("cannot read [{}]: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The envelope is malformed.
    #[error("[{}]: {source}", path.display())]
    Envelope {
        path: PathBuf,
        source: EnvelopeError,
    },
    /// A local recipient's mailbox name is not one plain name.
    #[error("invalid mailbox name [{0}]")]
    InvalidMailbox(String),
    /// A mailbox is a symbolic link.
    #[error("mailbox [{}] is a symbolic link: not delivered", .0.display())]
    MailboxLink(PathBuf),
    /// A mailbox cannot be created.
    #[error("cannot create mailbox [{}]: {source}", path.display())]
    CreateMailbox { path: PathBuf, source: io::Error },
    /// A maildir's `new`, `cur` or `tmp` is a symbolic link.
    #[error("maildir [{}] is a symbolic link: not delivered", .0.display())]
    MaildirLink(PathBuf),
    /// A maildir delivery failed.
    #[error("cannot deliver to maildir [{}]: {source}", dir.display())]
    Maildir { dir: PathBuf, source: io::Error },
    /// A copy into a directory failed.
    #[error("cannot copy to [{}]: {source}", dir.display())]
    Copy { dir: PathBuf, source: io::Error },
    /// The content could not be given its Message-ID.
    #[error("cannot rewrite [{}]: {source}", path.display())]
    Rewrite { path: PathBuf, source: io::Error },
    /// A file could not be replaced.
    #[error("cannot write [{}]: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// An original could not be removed.
    #[error("cannot remove [{}]: {source}", path.display())]
    Remove { path: PathBuf, source: io::Error },
    /// A split message could not be added to the spool.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `copy:` parameters. E-MailRelay compatibility: the one-letter forms
/// and `no_delete` are accepted, anything else is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Keep the original in the main spool.
    pub nodelete: bool,
    /// Copy only the envelope; the content stays in the main spool.
    pub pop: bool,
    /// Hard-link the content instead of copying it.
    pub hardlink: bool,
    /// Parameters that were not understood.
    pub ignored: Vec<String>,
}

impl CopyOptions {
    /// Parses `nodelete;pop;hardlink` in any order.
    pub fn parse(text: &str) -> CopyOptions {
        let mut options = CopyOptions::default();
        for word in text.split(';').filter(|w| !w.is_empty()) {
            match word {
                "n" | "nodelete" | "no_delete" => options.nodelete = true,
                "p" | "pop" => options.pop = true,
                "h" | "hardlink" => options.hardlink = true,
                other => options.ignored.push(other.to_string()),
            }
        }
        options
    }
}

/// `deliver:` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliverOptions {
    pub nodelete: bool,
    pub hardlink: bool,
}

impl DeliverOptions {
    /// Parses `nodelete;hardlink` (and 2.6.1's `n`, `h`, `no_delete`; `p`
    /// and `pop` are accepted and mean nothing here); `Err` names a
    /// stranger. 2.6.1 refuses strangers too (it reads the text as a
    /// numeric range, and so also refuses `hardlink`: we take its words).
    pub fn parse(text: &str) -> Result<DeliverOptions, &str> {
        let mut options = DeliverOptions::default();
        for word in text.split(';').filter(|w| !w.is_empty()) {
            match word {
                "n" | "nodelete" | "no_delete" => options.nodelete = true,
                "h" | "hardlink" => options.hardlink = true,
                "p" | "pop" => {}
                other => return Err(other),
            }
        }
        Ok(options)
    }
}

/// `split:` parameters: `raw` compares domains exactly, a number is the
/// port put after the domain in `ForwardTo`; anything else is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitOptions {
    pub raw: bool,
    pub port: Option<String>,
    /// Parameters that were not understood.
    pub ignored: Vec<String>,
}

impl SplitOptions {
    pub fn parse(text: &str) -> SplitOptions {
        let mut options = SplitOptions::default();
        for word in text.split(';').filter(|w| !w.is_empty()) {
            if word == "raw" {
                options.raw = true;
            } else if word.bytes().all(|b| b.is_ascii_digit()) {
                options.port = Some(word.to_string());
            } else {
                options.ignored.push(word.to_string());
            }
        }
        options
    }
}

/// Runs one built-in. E-MailRelay compatibility: a built-in that cannot
/// do its work answers `failed`, with the error as the reason.
pub fn run(
    spec: &FilterSpec,
    job: &FilterJob,
    ty: FilterType,
    settings: &FilterSettings,
    spool: &Spool,
) -> FilterOutcome {
    let result = match spec {
        FilterSpec::Copy(options) => copy(job, spool.dir(), options),
        FilterSpec::Deliver(options) => {
            // E-MailRelay's line when --delivery-dir names another place.
            if settings.delivery_dir != spool.dir() {
                if let Ok(id) = message_id(&job.envelope) {
                    crate::info!(
                        "delivery: delivering {id} to [{}/<mbox>]",
                        settings.delivery_dir.display()
                    );
                }
            }
            deliver(job, &settings.delivery_dir, options)
        }
        FilterSpec::Split(options) => split(job, spool, options, ty),
        FilterSpec::MsgId => msgid(job, &settings.domain),
        _ => return FilterOutcome::failed("not a built-in filter"),
    };
    result.unwrap_or_else(|e| FilterOutcome::failed(&e.to_string()))
}

/// The message id in a spool file path (`<id>.envelope.new` and so on).
fn message_id(envelope: &Path) -> Result<String, BuiltinError> {
    let name = envelope
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    SpoolFile::ENVELOPES
        .iter()
        .find_map(|file| file.stem(&name))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| BuiltinError::NotEnvelope(envelope.to_path_buf()))
}

fn read_envelope(path: &Path) -> Result<Envelope, BuiltinError> {
    let mut bytes = Vec::new();
    crate::store::open_regular(path)
        .and_then(|mut f| io::Read::read_to_end(&mut f, &mut bytes))
        .map_err(|source| BuiltinError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Envelope::parse(&bytes).map_err(|source| BuiltinError::Envelope {
        path: path.to_path_buf(),
        source,
    })
}

/// `copy:`: into every sub-directory of the spool except `postmaster` and
/// hidden ones; maildirs get the content only.
fn copy(
    job: &FilterJob,
    spool_dir: &Path,
    options: &CopyOptions,
) -> Result<FilterOutcome, BuiltinError> {
    let id = message_id(&job.envelope)?;
    let (mut targets, mut skipped) = (Vec::<PathBuf>::new(), Vec::<String>::new());
    for entry in fs::read_dir(spool_dir)
        .map_err(|source| BuiltinError::Read {
            path: spool_dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "postmaster" && is_safe_mailbox_name(&name) {
            targets.push(entry.path());
        } else {
            skipped.push(name);
        }
    }
    targets.sort();
    skipped.sort();
    if targets.is_empty() {
        // Copying nowhere and then deleting would lose the message.
        crate::warning!(
            "copy: no sub-directories in [{}]: message kept",
            spool_dir.display()
        );
        return Ok(FilterOutcome::ok());
    }
    for dir in &targets {
        if is_maildir(dir)? {
            deliver_maildir(&job.content, dir)?;
        } else {
            copy_message(job, dir, &id, !options.pop, options.hardlink)?;
        }
    }
    // E-MailRelay's line: where the copies went, and which directories
    // were passed over.
    let names = |dirs: &[PathBuf]| {
        dirs.iter()
            .filter_map(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",")
    };
    let not = if skipped.is_empty() {
        String::new()
    } else {
        format!(" not [{}]", skipped.join(","))
    };
    crate::info!("filter [copy:]: {id} copied to [{}]{not}", names(&targets));
    if options.nodelete {
        return Ok(FilterOutcome::ok());
    }
    remove(&job.envelope)?;
    if !options.pop {
        remove(&job.content)?;
    }
    Ok(FilterOutcome::abandon())
}

/// `deliver:`: a copy for each local recipient's mailbox under the
/// delivery directory; the original goes if no remote recipient is left.
fn deliver(
    job: &FilterJob,
    base: &Path,
    options: &DeliverOptions,
) -> Result<FilterOutcome, BuiltinError> {
    let envelope = read_envelope(&job.envelope)?;
    if envelope.to_local.is_empty() {
        return Ok(FilterOutcome::ok());
    }
    let id = message_id(&job.envelope)?;
    let mut mailboxes = envelope.to_local.clone();
    mailboxes.sort();
    mailboxes.dedup();
    if let Some(bad) = mailboxes.iter().find(|m| !is_safe_mailbox_name(m)) {
        return Err(BuiltinError::InvalidMailbox(bad.clone()));
    }
    for mailbox in &mailboxes {
        let dir = base.join(mailbox);
        crate::info!("delivery: recipient [{mailbox}]: delivery to mailbox [{mailbox}]");
        // A mailbox that is a symbolic link could lead anywhere the relay
        // may write: it is refused, not followed.
        if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(BuiltinError::MailboxLink(dir));
        }
        if !dir.is_dir() {
            crate::info!("delivery: creating mailbox [{mailbox}]");
            fs::DirBuilder::new()
                .recursive(true)
                .create(&dir)
                .map_err(|source| BuiltinError::CreateMailbox {
                    path: dir.clone(),
                    source,
                })?;
        }
        if is_maildir(&dir)? {
            deliver_maildir(&job.content, &dir)?;
        } else {
            copy_message(job, &dir, &id, true, options.hardlink)?;
        }
    }
    if !envelope.to_remote.is_empty() || options.nodelete {
        return Ok(FilterOutcome::ok());
    }
    remove(&job.envelope)?;
    remove(&job.content)?;
    Ok(FilterOutcome::abandon())
}

/// `split:`: one message per recipient domain, as 2.6.1 splits: domains
/// sorted (lower-cased unless `raw`), the first keeps the original files,
/// each message's `ForwardTo` is the domain of its first recipient as
/// written (plus `:<port>` if given), and when there is more than one
/// message every envelope lists the group in `SplitGroupCount` and
/// `SplitGroup` lines after the end marker.
fn split(
    job: &FilterJob,
    spool: &Spool,
    options: &SplitOptions,
    ty: FilterType,
) -> Result<FilterOutcome, BuiltinError> {
    let prefix = format!("{} [split:]", ty.name());
    let mut envelope = read_envelope(&job.envelope)?;
    let key = |rcpt: &str| {
        let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d);
        match options.raw {
            true => domain.to_string(),
            false => domain.to_ascii_lowercase(),
        }
    };
    let mut domains: Vec<String> = envelope.to_remote.iter().map(|r| key(r)).collect();
    domains.sort();
    domains.dedup();
    if domains.is_empty() {
        crate::info!("{prefix}: no remote domains: nothing to do");
        return Ok(FilterOutcome::ok());
    }
    let forward_to = |recipients: &[String]| {
        let domain = recipients[0].rsplit_once('@').map_or("", |(_, d)| d);
        match &options.port {
            Some(port) => format!("{domain}:{port}"),
            None => domain.to_string(),
        }
    };
    let new_ids: Vec<MessageId> = (1..domains.len()).map(|_| spool.new_id()).collect();
    let mut ids = vec![message_id(&job.envelope)?];
    ids.extend(new_ids.iter().map(MessageId::to_string));
    let extra = match ids.len() {
        1 => Vec::new(),
        n => std::iter::once(format!("X-MailRelay-SplitGroupCount: {n}"))
            .chain(ids.iter().map(|id| format!("X-MailRelay-SplitGroup: {id}")))
            .collect(),
    };
    let group = |domain: &str| -> Vec<String> {
        let recipients = envelope.to_remote.iter().filter(|r| key(r) == domain);
        recipients.cloned().collect()
    };
    for (domain, id) in domains.iter().skip(1).zip(&new_ids) {
        let recipients = group(domain);
        crate::info!("{prefix} creating [{id}]: forward-to=[{domain}]");
        let copy = Envelope {
            to_local: Vec::new(),
            forward_to: forward_to(&recipients),
            to_remote: recipients,
            extra: extra.clone(),
            ..envelope.clone()
        };
        spool.add_copy_as(id, &job.content, &copy)?;
    }
    crate::info!(
        "{prefix} updating [{}]: forward-to=[{}]",
        ids[0],
        domains[0]
    );
    let recipients = group(&domains[0]);
    envelope.forward_to = forward_to(&recipients);
    envelope.to_remote = recipients;
    envelope.extra.extend(extra);
    rewrite(&job.envelope, &envelope.to_bytes())?;
    Ok(FilterOutcome::ok())
}

/// `msgid:`: a Message-ID header in front of the content if the header
/// section has none.
fn msgid(job: &FilterJob, domain: &str) -> Result<FilterOutcome, BuiltinError> {
    let path = &job.content;
    let err = |source| BuiltinError::Rewrite {
        path: path.to_path_buf(),
        source,
    };
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
            return Ok(FilterOutcome::ok());
        }
    }
    // Closed before the rename: Windows cannot replace an open file.
    drop(reader);
    let id = message_id(&job.envelope)?;
    let header = format!("Message-ID: <{id}@{domain}>\r\n");
    let tmp = with_suffix(path, ".msgid.tmp");
    // The spool directory is synced when the message is committed.
    let written = (|| -> io::Result<()> {
        let mut out = AtomicFile::create(path, &tmp, 0o660)?;
        out.file().write_all(header.as_bytes())?;
        io::copy(&mut File::open(path)?, out.file())?;
        Ok(out.commit(DirSync::Caller)?)
    })();
    written.map_err(err)?;
    Ok(FilterOutcome::ok())
}

/// A maildir has `new`, `cur` and `tmp` directories. One of them being a
/// symbolic link is an error: delivery would go through it to wherever it
/// points.
fn is_maildir(dir: &Path) -> Result<bool, BuiltinError> {
    let mut all = true;
    for sub in ["new", "cur", "tmp"].map(|d| dir.join(d)) {
        match fs::symlink_metadata(&sub) {
            Ok(m) if m.file_type().is_symlink() => return Err(BuiltinError::MaildirLink(sub)),
            Ok(m) => all &= m.is_dir(),
            Err(_) => all = false,
        }
    }
    Ok(all)
}

/// Maildir delivery: the content written under `tmp`, fsynced, then
/// renamed into `new` (a new, unread message for IMAP servers).
fn deliver_maildir(content: &Path, dir: &Path) -> Result<(), BuiltinError> {
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
    let err = |source| BuiltinError::Maildir {
        dir: dir.to_path_buf(),
        source,
    };
    let written = (|| -> io::Result<()> {
        let mut out = AtomicFile::create(dir.join("new").join(&name), &tmp, 0o660)?;
        io::copy(&mut crate::store::open_regular(content)?, out.file())?;
        Ok(out.commit(DirSync::Now)?)
    })();
    written.map_err(err)
}

/// Copies the envelope (as `<id>.envelope`) and, if `with_content`, the
/// content into `dir`, fsynced.
fn copy_message(
    job: &FilterJob,
    dir: &Path,
    id: &str,
    with_content: bool,
    hardlink: bool,
) -> Result<(), BuiltinError> {
    let err = |source| BuiltinError::Copy {
        dir: dir.to_path_buf(),
        source,
    };
    if with_content {
        let target = dir.join(SpoolFile::Content.name(id));
        let _ = fs::remove_file(&target);
        if hardlink {
            link_or_copy(&job.content, &target).map_err(err)?;
        } else {
            let mut out = create_new(&target).map_err(err)?;
            let mut source = crate::store::open_regular(&job.content).map_err(err)?;
            io::copy(&mut source, &mut out).map_err(err)?;
            out.sync_data().map_err(err)?;
        }
    }
    let bytes = fs::read(&job.envelope).map_err(err)?;
    rewrite(&dir.join(SpoolFile::Envelope.name(id)), &bytes)?;
    Directory::open(dir).and_then(|d| d.sync()).map_err(err)
}

/// Replaces `path` with `bytes` atomically (temporary file, flush, rename).
pub(super) fn rewrite(path: &Path, bytes: &[u8]) -> Result<(), BuiltinError> {
    let tmp = with_suffix(path, ".tmp");
    files::write_atomic(path, &tmp, bytes, 0o660).map_err(|source| BuiltinError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn remove(path: &Path) -> Result<(), BuiltinError> {
    fs::remove_file(path).map_err(|source| BuiltinError::Remove {
        path: path.to_path_buf(),
        source,
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn create_new(path: &Path) -> io::Result<File> {
    let _ = fs::remove_file(path);
    files::create_new(path, 0o660)
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
        assert_eq!(msgid(&j, "relay.example.com").unwrap(), FilterOutcome::ok());
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
        let options = SplitOptions::parse("");
        assert_eq!(
            split(&j, &spool, &options, FilterType::Server).unwrap(),
            FilterOutcome::ok()
        );
        // Domains in sorted order; the first keeps the original; ForwardTo
        // is the first recipient's domain as written.
        let first = read_envelope(&j.envelope).unwrap();
        assert_eq!(first.to_remote, ["b@One.example", "d@one.example"]);
        assert_eq!(first.forward_to, "One.example");
        let others = spool.ready().unwrap();
        assert_eq!(others.len(), 1);
        let other = read_envelope(&spool.path(&others[0], SpoolFile::Envelope)).unwrap();
        assert_eq!(other.to_remote, ["c@two.example"]);
        assert_eq!(other.forward_to, "two.example");
        assert_eq!(other.from, "a@x");
        let group = vec![
            "X-MailRelay-SplitGroupCount: 2".to_string(),
            "X-MailRelay-SplitGroup: emailrelay.1.2.3".to_string(),
            format!("X-MailRelay-SplitGroup: {}", others[0]),
        ];
        assert_eq!((first.extra, other.extra), (group.clone(), group));
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
            deliver(&j, &base, &DeliverOptions::default())
                .unwrap_err()
                .to_string(),
            "invalid mailbox name [../escape]"
        );
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn copy_options_pop_and_hardlink() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("box")).unwrap();
        fs::create_dir(dir.path().join(".hidden")).unwrap();
        let j = job(dir.path(), &Envelope::default(), "x");
        let pop = CopyOptions::parse("pop");
        assert_eq!(
            copy(&j, dir.path(), &pop).unwrap(),
            FilterOutcome::abandon()
        );
        // The envelope moved into the box; the content stays for POP.
        assert!(!j.envelope.exists() && j.content.exists());
        assert!(dir.path().join("box/emailrelay.1.2.3.envelope").exists());
        assert!(!dir.path().join("box/emailrelay.1.2.3.content").exists());
        assert!(fs::read_dir(dir.path().join(".hidden"))
            .unwrap()
            .next()
            .is_none());

        let j = job(dir.path(), &Envelope::default(), "y");
        let hardlink = CopyOptions::parse("h;no_delete");
        assert_eq!(
            copy(&j, dir.path(), &hardlink).unwrap(),
            FilterOutcome::ok()
        );
        let copied = dir.path().join("box/emailrelay.1.2.3.content");
        assert!(files::same_path_file(&copied, &j.content));
    }

    #[test]
    fn deliver_options_hardlink_and_nodelete() {
        let dir = tempfile::tempdir().unwrap();
        let envelope = Envelope {
            to_local: vec!["alice".into()],
            ..Envelope::default()
        };
        let j = job(dir.path(), &envelope, "x");
        let options = DeliverOptions::parse("hardlink;nodelete").unwrap();
        assert_eq!(
            deliver(&j, dir.path(), &options).unwrap(),
            FilterOutcome::ok()
        );
        let delivered = dir.path().join("alice/emailrelay.1.2.3.content");
        assert!(files::same_path_file(&delivered, &j.content));
        assert!(j.envelope.exists());
        // Without nodelete an all-local message leaves the spool.
        assert_eq!(
            deliver(&j, dir.path(), &DeliverOptions::default()).unwrap(),
            FilterOutcome::abandon()
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
        let options = SplitOptions::parse("raw;2525;bogus");
        assert_eq!(options.ignored, ["bogus"]);
        assert_eq!(
            split(&j, &spool, &options, FilterType::Server).unwrap(),
            FilterOutcome::ok()
        );
        assert_eq!(
            read_envelope(&j.envelope).unwrap().forward_to,
            "One.example:2525"
        );
        let other = spool.ready().unwrap();
        assert_eq!(other.len(), 1);
        let other = read_envelope(&spool.path(&other[0], SpoolFile::Envelope)).unwrap();
        assert_eq!(other.forward_to, "one.example:2525");
    }

    #[test]
    fn copy_with_no_destination_keeps_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(dir.path(), &Envelope::default(), "x");
        assert_eq!(
            copy(&j, dir.path(), &CopyOptions::default()).unwrap(),
            FilterOutcome::ok()
        );
        assert!(j.envelope.exists() && j.content.exists());
    }
}
