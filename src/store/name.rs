//! Spool file names, made and read in this one place: a message's id and
//! the kind of each of its files.
//!
//! ```text
//!   emailrelay.<pid>.<unix-seconds>.<sequence>.content
//!   emailrelay.<pid>.<unix-seconds>.<sequence>.envelope[.new|.busy|.bad|.tmp|.deleting]
//!   \______________ MessageId _______________/\_________ SpoolFile::suffix _________/
//! ```
//!
//! E-MailRelay compatibility: the id's shape and the first five suffixes
//! are 2.6.1's; `.envelope.tmp` (a failure reason being written) and
//! `.envelope.deleting` (a message being deleted from the HTTP endpoint)
//! are ours, and short-lived.
//!
//! Must not: accept as an id a name that could forge a line of a listing
//! or of the log (control characters, invalid UTF-8) or lead out of the
//! directory (`/`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The files of one message, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpoolFile {
    /// `.content`: the message itself.
    Content,
    /// `.envelope`: committed, waiting to be forwarded.
    Envelope,
    /// `.envelope.new`: being received (or filtered), not yet committed.
    EnvelopeNew,
    /// `.envelope.busy`: locked for forwarding.
    EnvelopeBusy,
    /// `.envelope.bad`: failed, with the reason inside.
    EnvelopeBad,
    /// `.envelope.tmp`: a failed envelope's new text, before it replaces
    /// the `.busy` one.
    EnvelopeTmp,
    /// `.envelope.deleting`: taken out of `.bad` to be deleted.
    EnvelopeDeleting,
}

impl SpoolFile {
    /// Every kind, in the order of a message's life. No suffix ends
    /// another, so a name is of one kind at most.
    pub const ALL: [SpoolFile; 7] = [
        SpoolFile::Content,
        SpoolFile::EnvelopeNew,
        SpoolFile::Envelope,
        SpoolFile::EnvelopeBusy,
        SpoolFile::EnvelopeBad,
        SpoolFile::EnvelopeTmp,
        SpoolFile::EnvelopeDeleting,
    ];

    /// The envelope kinds a message can be known by (every state but the
    /// short-lived ones of our own).
    pub const ENVELOPES: [SpoolFile; 4] = [
        SpoolFile::Envelope,
        SpoolFile::EnvelopeBusy,
        SpoolFile::EnvelopeBad,
        SpoolFile::EnvelopeNew,
    ];

    /// The file name's ending, from the first dot after the id.
    pub const fn suffix(self) -> &'static str {
        match self {
            SpoolFile::Content => ".content",
            SpoolFile::Envelope => ".envelope",
            SpoolFile::EnvelopeNew => ".envelope.new",
            SpoolFile::EnvelopeBusy => ".envelope.busy",
            SpoolFile::EnvelopeBad => ".envelope.bad",
            SpoolFile::EnvelopeTmp => ".envelope.tmp",
            SpoolFile::EnvelopeDeleting => ".envelope.deleting",
        }
    }

    /// The name of this kind of file for `stem` (an id, or for a POP
    /// maildrop any envelope's name without its suffix).
    pub fn name(self, stem: &str) -> String {
        let suffix = self.suffix();
        let mut name = String::with_capacity(stem.len() + suffix.len());
        name.push_str(stem);
        name.push_str(suffix);
        name
    }

    /// The stem of `name` if it is this kind of file (any stem, not only
    /// an id of ours: see [`MessageId::from_file_name`] for those).
    pub fn stem(self, name: &str) -> Option<&str> {
        name.strip_suffix(self.suffix())
    }
}

/// A message id: `emailrelay.<pid>.<unix-seconds>.<sequence>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub(super) String);

/// The last sequence number given out, process-wide: several instances
/// (several spools, or one spool shared by two instances) in one process
/// must never make the same file name.
/// E-MailRelay compatibility: 2.6.1 counts per spool, so its two
/// instances both start at `.1`; ids stay unique here instead.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl MessageId {
    /// A fresh id, unique within this process whatever the spool.
    pub fn fresh() -> MessageId {
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        MessageId(format!("emailrelay.{}.{secs}.{seq}", std::process::id()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the message was received: the time part of the id (as in
    /// E-MailRelay's ids too); `None` for an id of another shape.
    pub fn created(&self) -> Option<std::time::SystemTime> {
        let secs: u64 = self.0.split('.').nth(2)?.parse().ok()?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    /// The name of the message's file of kind `file`.
    pub fn file_name(&self, file: SpoolFile) -> String {
        file.name(&self.0)
    }

    /// The path of the message's file of kind `file` in `dir`.
    pub fn path_in(&self, dir: &Path, file: SpoolFile) -> PathBuf {
        dir.join(self.file_name(file))
    }

    /// Recognises the name of a message's file of kind `file`, and the id
    /// in it. A name with control characters (or invalid UTF-8, seen here
    /// as U+FFFD) is none of ours, and is ignored: listed by `list` or
    /// `failures` it could forge lines of the answer, and in a log line it
    /// could forge a line of the log.
    pub fn from_file_name(name: &str, file: SpoolFile) -> Option<MessageId> {
        MessageId::parse(file.stem(name)?)
    }

    /// Recognises an id as text (as an operator types it).
    pub fn parse(id: &str) -> Option<MessageId> {
        let plain = !id.contains(|c: char| c == '/' || c == '\u{fffd}' || c.is_control());
        (id.starts_with("emailrelay.") && plain).then(|| MessageId(id.to_string()))
    }

    /// The order of the queue: by time, then sequence, then process, so
    /// older mail goes first.
    pub fn sort_key(&self) -> (u64, u64, u64) {
        let mut parts = self
            .0
            .split('.')
            .skip(1)
            .map(|p| p.parse::<u64>().unwrap_or(0));
        let pid = parts.next().unwrap_or(0);
        let secs = parts.next().unwrap_or(0);
        let seq = parts.next().unwrap_or(0);
        (secs, seq, pid)
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A spool file name of ours, read: which message, which file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpoolName {
    pub id: MessageId,
    pub file: SpoolFile,
}

impl SpoolName {
    /// Reads a file name; `None` for anything that is not one of a
    /// message's files (see [`MessageId::from_file_name`]).
    pub fn parse(name: &str) -> Option<SpoolName> {
        SpoolFile::ALL.into_iter().find_map(|file| {
            let id = MessageId::from_file_name(name, file)?;
            Some(SpoolName { id, file })
        })
    }
}

impl std::fmt::Display for SpoolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id.as_str())?;
        f.write_str(self.file.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> MessageId {
        MessageId(text.to_string())
    }

    #[test]
    fn names_are_the_id_and_the_suffix() {
        let id = id("emailrelay.7.1700000000.3");
        let names: Vec<String> = SpoolFile::ALL.map(|f| id.file_name(f)).into();
        assert_eq!(
            names,
            [
                "emailrelay.7.1700000000.3.content",
                "emailrelay.7.1700000000.3.envelope.new",
                "emailrelay.7.1700000000.3.envelope",
                "emailrelay.7.1700000000.3.envelope.busy",
                "emailrelay.7.1700000000.3.envelope.bad",
                "emailrelay.7.1700000000.3.envelope.tmp",
                "emailrelay.7.1700000000.3.envelope.deleting",
            ]
        );
        assert_eq!(
            id.path_in(Path::new("/spool"), SpoolFile::EnvelopeBusy),
            Path::new("/spool/emailrelay.7.1700000000.3.envelope.busy")
        );
    }

    #[test]
    fn every_name_reads_back_as_what_made_it() {
        let id = id("emailrelay.7.1700000000.3");
        for file in SpoolFile::ALL {
            let name = id.file_name(file);
            let parsed = SpoolName::parse(&name).unwrap();
            assert_eq!((&parsed.id, parsed.file), (&id, file), "{name}");
            assert_eq!(parsed.to_string(), name);
        }
    }

    #[test]
    fn a_name_is_one_kind_only() {
        assert_eq!(
            MessageId::from_file_name("emailrelay.1.2.3.envelope.bad", SpoolFile::EnvelopeBad),
            Some(id("emailrelay.1.2.3"))
        );
        assert_eq!(
            MessageId::from_file_name("emailrelay.1.2.3.envelope.bad", SpoolFile::Envelope),
            None
        );
        assert_eq!(
            MessageId::from_file_name("emailrelay.1.2.3.envelope", SpoolFile::EnvelopeBad),
            None
        );
    }

    #[test]
    fn names_not_ours_are_refused() {
        for name in [
            "other.1.2.3.envelope",
            "emailrelay.1.2.3.envelope.old",
            "emailrelay.1.2.3",
            "emailrelay.1\n2.3.envelope",
            "emailrelay.1.2.\u{fffd}.content",
            "emailrelay.1/../2.3.content",
            ".envelope",
        ] {
            assert_eq!(SpoolName::parse(name), None, "{name:?}");
        }
        assert_eq!(
            MessageId::parse("emailrelay.1.2.3"),
            Some(id("emailrelay.1.2.3"))
        );
        assert_eq!(MessageId::parse("emailrelay.1.2.3\r"), None);
    }

    #[test]
    fn stems_of_any_name_for_the_maildrop() {
        assert_eq!(
            SpoolFile::Envelope.stem("anything.envelope"),
            Some("anything")
        );
        assert_eq!(SpoolFile::Content.name("anything"), "anything.content");
        assert_eq!(SpoolFile::Envelope.stem("anything.envelope.new"), None);
    }

    #[test]
    fn fresh_ids_are_distinct_and_read_back() {
        let (a, b) = (MessageId::fresh(), MessageId::fresh());
        assert_ne!(a, b);
        assert!(a.sort_key() < b.sort_key() || a.created() < b.created());
        assert_eq!(MessageId::parse(a.as_str()), Some(a.clone()));
        let name = a.file_name(SpoolFile::Content);
        assert_eq!(SpoolName::parse(&name).map(|n| n.id), Some(a));
    }
}
