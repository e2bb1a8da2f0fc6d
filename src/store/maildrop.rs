//! The POP3 view of the spool (E-MailRelay's reference, "POP server"): the
//! messages a user may collect, and their deletion at QUIT.
//!
//! A maildrop is the spool directory, or with `--pop-by-name` the user's
//! sub-directory of it. A message is a `.envelope` file with a non-empty
//! `.content` beside it or, with `--pop-by-name`, in the spool directory
//! itself (`copy:pop` leaves content there, shared by every mailbox).
//! Messages being written (`.new`), forwarded (`.busy`) or failed (`.bad`)
//! are not listed.
//!
//! ```text
//!   delete: .envelope --rename--> .envelope.busy (+ flock) --unlink--> (gone)
//!           then .content, unless another envelope still names it
//!   .envelope already .busy (the forwarder has it) --> kept whole, reported
//! ```
//!
//! Renaming is the lock the forwarder takes too, so a message is either
//! ours to delete or theirs to forward, never half of each; the envelope
//! goes before the content, so a crash leaves at worst an orphan content
//! file, never an envelope without its content.
//!
//! Must not: follow a user name out of the spool (`/`, `..`, NUL, control
//! characters and leading dots are refused).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Why a maildrop cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    /// `--pop-by-name` and a user name that is not one plain directory name.
    #[error("invalid mailbox name [{0}]")]
    InvalidName(String),
    /// A directory cannot be created or read.
    #[error("{op} [{path}]: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// One message of a maildrop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildropMessage {
    /// The file name without `.envelope`: `emailrelay.<pid>.<time>.<n>`.
    pub name: String,
    /// The content file's size.
    pub size: u64,
    /// The content is in the spool directory, not the user's own.
    in_parent: bool,
}

impl MaildropMessage {
    /// E-MailRelay's UIDL: the content file's name.
    pub fn uid(&self) -> String {
        format!("{}.content", self.name)
    }
}

/// What a deletion at QUIT did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deletion {
    pub removed: usize,
    /// Names kept, with the reason: locked by the forwarder, or an error.
    pub kept: Vec<(String, String)>,
}

/// A user's messages, listed at login.
#[derive(Debug)]
pub struct Maildrop {
    /// Where the envelopes are.
    dir: PathBuf,
    spool_dir: PathBuf,
    messages: Vec<MaildropMessage>,
}

impl Maildrop {
    /// Lists the maildrop: the spool directory, or `user`'s sub-directory
    /// of it (created if missing, as E-MailRelay does) for `--pop-by-name`.
    pub fn open(spool_dir: &Path, user: Option<&str>) -> Result<Maildrop, MaildropError> {
        let dir = match user {
            None => spool_dir.to_path_buf(),
            Some(user) if !is_mailbox_name(user) => {
                return Err(MaildropError::InvalidName(user.escape_debug().to_string()))
            }
            Some(user) => {
                let dir = spool_dir.join(user);
                if !dir.exists() {
                    match fs::create_dir(&dir) {
                        Ok(()) => crate::info!("pop: created pop-by-name sub-directory [{user}]"),
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(source) => {
                            return Err(MaildropError::Io {
                                op: "cannot create pop-by-name sub-directory",
                                path: dir,
                                source,
                            })
                        }
                    }
                }
                dir
            }
        };
        let by_name = user.is_some();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|source| MaildropError::Io {
                op: "cannot read directory",
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".envelope")?;
                (!stem.is_empty()).then(|| stem.to_string())
            })
            .collect();
        // E-MailRelay compatibility: listed in file-name order.
        names.sort();
        let messages = names
            .into_iter()
            .filter_map(|name| {
                let own = dir.join(format!("{name}.content"));
                let parent = spool_dir.join(format!("{name}.content"));
                let (size, in_parent) = match fs::metadata(&own) {
                    Ok(m) => (m.len(), false),
                    Err(_) if by_name => (fs::metadata(&parent).ok()?.len(), true),
                    Err(_) => return None,
                };
                // E-MailRelay compatibility: an empty content file is no message.
                (size > 0).then_some(MaildropMessage {
                    name,
                    size,
                    in_parent,
                })
            })
            .collect();
        Ok(Maildrop {
            dir,
            spool_dir: spool_dir.to_path_buf(),
            messages,
        })
    }

    /// The messages, in listing order.
    pub fn messages(&self) -> &[MaildropMessage] {
        &self.messages
    }

    /// Where message `index`'s content is.
    pub fn content_path(&self, index: usize) -> Option<PathBuf> {
        let m = self.messages.get(index)?;
        Some(self.content_dir(m).join(format!("{}.content", m.name)))
    }

    /// Deletes the messages at `indexes` (the UPDATE state of RFC 1939
    /// section 6). A message the forwarder holds is kept whole.
    pub fn delete(&self, indexes: &[usize]) -> Deletion {
        let mut deletion = Deletion::default();
        for m in indexes.iter().filter_map(|&i| self.messages.get(i)) {
            match self.delete_one(m) {
                Ok(()) => deletion.removed += 1,
                Err(reason) => deletion.kept.push((m.name.clone(), reason)),
            }
        }
        if deletion.removed > 0 {
            for dir in [&self.dir, &self.spool_dir] {
                if let Ok(d) = crate::platform::files::Directory::open(dir) {
                    let _ = d.sync();
                }
            }
        }
        deletion
    }

    fn delete_one(&self, m: &MaildropMessage) -> Result<(), String> {
        let envelope = self.dir.join(format!("{}.envelope", m.name));
        let busy = self.dir.join(format!("{}.envelope.busy", m.name));
        match fs::rename(&envelope, &busy) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if busy.exists() {
                    return Err("locked by another process".into());
                }
                // Deleted meanwhile by another session of the same user.
                return Ok(());
            }
            Err(e) => return Err(format!("cannot lock [{}]: {e}", envelope.display())),
        }
        // Held while the files go, so that crash recovery (which renames
        // only unheld .busy files back) leaves it alone.
        let lock = File::open(&busy)
            .ok()
            .and_then(|f| crate::platform::files::Held::hold(f).ok());
        if let Err(e) = fs::remove_file(&busy) {
            let _ = fs::rename(&busy, &envelope);
            return Err(format!("cannot delete [{}]: {e}", busy.display()));
        }
        // Let go now: on Windows a removed file that is still open stays
        // listed (delete pending), and would count as naming the content.
        drop(lock);
        // Content in the spool directory may be named by other envelopes
        // (copy:pop, copy:nodelete); a user's own stays the user's.
        let dir = self.content_dir(m);
        if dir == self.spool_dir && self.is_shared(&m.name) {
            return Ok(());
        }
        let content = dir.join(format!("{}.content", m.name));
        match fs::remove_file(&content) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                crate::warning!("pop: cannot delete [{}]: {e}", content.display());
                Ok(())
            }
        }
    }

    fn content_dir(&self, m: &MaildropMessage) -> &Path {
        if m.in_parent {
            &self.spool_dir
        } else {
            &self.dir
        }
    }

    /// True if an envelope in the spool directory or any sub-directory
    /// still names this content (the last one out removes it). Every
    /// envelope state counts: a `.busy` one is being forwarded.
    fn is_shared(&self, name: &str) -> bool {
        let names_it = |dir: &Path| {
            [
                ".envelope",
                ".envelope.busy",
                ".envelope.bad",
                ".envelope.new",
            ]
            .iter()
            .any(|suffix| dir.join(format!("{name}{suffix}")).exists())
        };
        if names_it(&self.spool_dir) {
            return true;
        }
        let Ok(entries) = fs::read_dir(&self.spool_dir) else {
            return true;
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .any(|e| names_it(&e.path()))
    }
}

/// One plain directory name: no `/`, NUL or control characters, not `.`,
/// `..` or hidden.
pub fn is_mailbox_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A spool with three ready messages (one empty), a busy one and a
    /// bad one, and alice and bob sharing one content file.
    fn spool() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in [9, 10, 2] {
            write(
                &d.join(format!("emailrelay.1.1.{n}.content")),
                "Subject: x\r\n\r\nbody\r\n",
            );
            write(&d.join(format!("emailrelay.1.1.{n}.envelope")), "e");
        }
        write(&d.join("emailrelay.1.1.4.content"), "");
        write(&d.join("emailrelay.1.1.4.envelope"), "e");
        write(&d.join("emailrelay.1.1.3.content"), "x");
        write(&d.join("emailrelay.1.1.3.envelope.busy"), "e");
        write(&d.join("emailrelay.1.1.5.content"), "x");
        write(&d.join("emailrelay.1.1.5.envelope.bad"), "e");
        write(&d.join("emailrelay.1.1.6.content"), "shared\r\n");
        for user in ["alice", "bob"] {
            fs::create_dir(d.join(user)).unwrap();
            write(&d.join(user).join("emailrelay.1.1.6.envelope"), "e");
        }
        write(&d.join("alice/emailrelay.1.1.7.content"), "own\r\n");
        write(&d.join("alice/emailrelay.1.1.7.envelope"), "e");
        dir
    }

    #[test]
    fn lists_ready_non_empty_messages_in_name_order() {
        let dir = spool();
        let drop = Maildrop::open(dir.path(), None).unwrap();
        let uids: Vec<String> = drop.messages().iter().map(MaildropMessage::uid).collect();
        assert_eq!(
            uids,
            [
                "emailrelay.1.1.10.content",
                "emailrelay.1.1.2.content",
                "emailrelay.1.1.9.content"
            ]
        );
        assert_eq!(drop.messages()[0].size, 20);
    }

    #[test]
    fn by_name_finds_content_in_the_parent_and_the_last_one_removes_it() {
        let dir = spool();
        let d = dir.path();
        let alice = Maildrop::open(d, Some("alice")).unwrap();
        assert_eq!(alice.messages().len(), 2);
        assert_eq!(
            alice.content_path(0).unwrap(),
            d.join("emailrelay.1.1.6.content")
        );
        let deletion = alice.delete(&[0, 1]);
        assert_eq!(
            deletion,
            Deletion {
                removed: 2,
                kept: vec![]
            }
        );
        assert!(names(&d.join("alice")).is_empty());
        assert!(
            d.join("emailrelay.1.1.6.content").exists(),
            "bob still has it"
        );
        let bob = Maildrop::open(d, Some("bob")).unwrap();
        assert_eq!(bob.delete(&[0]).removed, 1);
        assert!(
            !d.join("emailrelay.1.1.6.content").exists(),
            "the last one removes it"
        );
    }

    #[test]
    fn a_message_the_forwarder_holds_is_kept_whole() {
        let dir = spool();
        let d = dir.path();
        let drop = Maildrop::open(d, None).unwrap();
        // The forwarder locks the first message after the listing.
        fs::rename(
            d.join("emailrelay.1.1.10.envelope"),
            d.join("emailrelay.1.1.10.envelope.busy"),
        )
        .unwrap();
        let deletion = drop.delete(&[0, 1]);
        assert_eq!(deletion.removed, 1);
        assert_eq!(deletion.kept[0].0, "emailrelay.1.1.10");
        assert!(d.join("emailrelay.1.1.10.content").exists());
        assert!(d.join("emailrelay.1.1.10.envelope.busy").exists());
        assert!(!d.join("emailrelay.1.1.2.content").exists());
        assert!(!d.join("emailrelay.1.1.2.envelope").exists());
    }

    #[test]
    fn user_names_cannot_leave_the_spool() {
        let dir = spool();
        for name in ["..", ".", "", "a/b", "../alice", "a\0b", ".hidden", "a\nb"] {
            assert!(
                matches!(
                    Maildrop::open(dir.path(), Some(name)),
                    Err(MaildropError::InvalidName(_))
                ),
                "{name:?}"
            );
        }
        let carol = Maildrop::open(dir.path(), Some("carol")).unwrap();
        assert!(carol.messages().is_empty());
        assert!(dir.path().join("carol").is_dir(), "created on first login");
    }
}
