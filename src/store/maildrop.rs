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
//! Must not: follow a user name out of the spool. A `--pop-by-name`
//! directory must be a real directory directly inside the spool: the
//! name is one plain component (no `/`, `\`, NUL, control characters or
//! leading dot, so neither `.` nor `..`), it is opened without following
//! a symbolic link, and every file below is reached through that open
//! directory (renamed and removed relative to it, opened only if it is
//! the regular file the directory holds), so a directory swapped for a
//! link after login leads nowhere either. (2.6.1 follows such a link, and
//! takes `.` as the spool itself.)

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::SpoolFile;
use crate::platform::files::{Held, OpenDir};

/// Why a maildrop cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    /// `--pop-by-name` and a user name that is not one plain directory name.
    #[error("invalid mailbox name [{0}]")]
    InvalidName(String),
    /// `--pop-by-name` and a name in the spool that is not a directory:
    /// a symbolic link (which could lead out of the spool) or a file.
    #[error("invalid mailbox [{name}]: {why}")]
    NotADirectory { name: String, why: &'static str },
    /// A message to delete is the forwarder's (or another session's) now.
    #[error("locked by another process")]
    Locked,
    /// A message to delete cannot be locked, or its envelope removed.
    #[error("{op} [{path}]: {source}")]
    Delete {
        op: &'static str,
        path: String,
        source: io::Error,
    },
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
        SpoolFile::Content.name(&self.name)
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
    /// Where the envelopes are, held open.
    dir: OpenDir,
    spool: OpenDir,
    messages: Vec<MaildropMessage>,
}

impl Maildrop {
    /// Lists the maildrop: the spool directory, or `user`'s sub-directory
    /// of it (created if missing, as E-MailRelay does) for `--pop-by-name`.
    pub fn open(
        spool_dir: &std::path::Path,
        user: Option<&str>,
    ) -> Result<Maildrop, MaildropError> {
        if let Some(user) = user.filter(|u| !is_mailbox_name(u)) {
            return Err(MaildropError::InvalidName(user.escape_debug().to_string()));
        }
        let read_error = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| MaildropError::Io {
                op: "cannot read directory",
                path,
                source,
            }
        };
        let spool = OpenDir::open(spool_dir).map_err(read_error(spool_dir))?;
        let dir = match user {
            None => OpenDir::open(spool_dir).map_err(read_error(spool_dir))?,
            Some(user) => user_dir(&spool, user)?,
        };
        let by_name = user.is_some();
        let mut names: Vec<String> = dir
            .names()
            .map_err(read_error(dir.path()))?
            .into_iter()
            .filter_map(|name| {
                let stem = SpoolFile::Envelope.stem(&name)?;
                (!stem.is_empty()).then(|| stem.to_string())
            })
            .collect();
        // E-MailRelay compatibility: listed in file-name order.
        names.sort();
        let messages = names
            .into_iter()
            .filter_map(|name| {
                let content = SpoolFile::Content.name(&name);
                let (size, in_parent) = match dir.regular_size(&content) {
                    Some(size) => (size, false),
                    None if by_name => (spool.regular_size(&content)?, true),
                    None => return None,
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
            spool,
            messages,
        })
    }

    /// The messages, in listing order.
    pub fn messages(&self) -> &[MaildropMessage] {
        &self.messages
    }

    /// Opens message `index`'s content for reading: only the regular file
    /// its directory holds, never a link.
    pub fn open_content(&self, index: usize) -> io::Result<File> {
        let m = self
            .messages
            .get(index)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.content_dir(m)
            .open_regular(&SpoolFile::Content.name(&m.name))
    }

    /// Deletes the messages at `indexes` (the UPDATE state of RFC 1939
    /// section 6). A message the forwarder holds is kept whole.
    pub fn delete(&self, indexes: &[usize]) -> Deletion {
        let mut deletion = Deletion::default();
        for m in indexes.iter().filter_map(|&i| self.messages.get(i)) {
            match self.delete_one(m) {
                Ok(()) => deletion.removed += 1,
                Err(reason) => deletion.kept.push((m.name.clone(), reason.to_string())),
            }
        }
        if deletion.removed > 0 {
            let _ = self.dir.sync();
            let _ = self.spool.sync();
        }
        deletion
    }

    fn delete_one(&self, m: &MaildropMessage) -> Result<(), MaildropError> {
        let dir = &self.dir;
        let envelope = SpoolFile::Envelope.name(&m.name);
        let busy = SpoolFile::EnvelopeBusy.name(&m.name);
        match dir.rename(&envelope, &busy) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if dir.exists(&busy) {
                    return Err(MaildropError::Locked);
                }
                // Deleted meanwhile by another session of the same user.
                return Ok(());
            }
            Err(source) => {
                return Err(MaildropError::Delete {
                    op: "cannot lock",
                    path: show(dir, &envelope),
                    source,
                })
            }
        }
        // Held while the files go, so that crash recovery (which renames
        // only unheld .busy files back) leaves it alone.
        let lock = dir
            .open_regular(&busy)
            .ok()
            .and_then(|f| Held::hold(f).ok());
        if let Err(e) = dir.remove(&busy) {
            let _ = dir.rename(&busy, &envelope);
            return Err(MaildropError::Delete {
                op: "cannot delete",
                path: show(dir, &busy),
                source: e,
            });
        }
        // Let go now: on Windows a removed file that is still open stays
        // listed (delete pending), and would count as naming the content.
        drop(lock);
        // Content in the spool directory may be named by other envelopes
        // (copy:pop, copy:nodelete); a user's own stays the user's.
        if m.in_parent && self.is_shared(&m.name) {
            return Ok(());
        }
        let content = SpoolFile::Content.name(&m.name);
        let dir = self.content_dir(m);
        match dir.remove(&content) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                crate::warning!("pop: cannot delete [{}]: {e}", show(dir, &content));
                Ok(())
            }
        }
    }

    fn content_dir(&self, m: &MaildropMessage) -> &OpenDir {
        if m.in_parent {
            &self.spool
        } else {
            &self.dir
        }
    }

    /// True if an envelope in the spool directory or any sub-directory
    /// still names this content (the last one out removes it). Every
    /// envelope state counts: a `.busy` one is being forwarded.
    fn is_shared(&self, name: &str) -> bool {
        let names_it = |dir: &OpenDir| {
            SpoolFile::ENVELOPES
                .iter()
                .any(|file| dir.exists(&file.name(name)))
        };
        if names_it(&self.spool) {
            return true;
        }
        let Ok(entries) = self.spool.names() else {
            return true;
        };
        entries
            .iter()
            .filter_map(|entry| self.spool.child(entry).ok())
            .any(|dir| names_it(&dir))
    }
}

/// One plain directory name: no `/` or `\` (a path separator on
/// Windows), NUL or control characters, not `.`, `..` or hidden.
pub fn is_mailbox_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// `user`'s directory directly inside the spool, created if missing, as
/// E-MailRelay creates it; never through a link.
fn user_dir(spool: &OpenDir, user: &str) -> Result<OpenDir, MaildropError> {
    match spool.create_child(user, 0o777) {
        Ok(true) => crate::info!("pop: created pop-by-name sub-directory [{user}]"),
        Ok(false) => {}
        Err(source) => {
            return Err(MaildropError::Io {
                op: "cannot create pop-by-name sub-directory",
                path: spool.path().join(user),
                source,
            })
        }
    }
    spool.child(user).map_err(|source| {
        let not = |why| MaildropError::NotADirectory {
            name: user.to_string(),
            why,
        };
        match (spool.is_link(user), spool.regular_size(user)) {
            (true, _) => not("a symbolic link, not followed out of the spool"),
            (false, Some(_)) => not("not a directory"),
            (false, None) => MaildropError::Io {
                op: "cannot read directory",
                path: spool.path().join(user),
                source,
            },
        }
    })
}

/// An entry's path, for messages.
fn show(dir: &OpenDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

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
        let shared = std::io::read_to_string(alice.open_content(0).unwrap()).unwrap();
        assert_eq!(shared, "shared\r\n");
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
        for name in [
            "..",
            ".",
            "",
            "a/b",
            "../alice",
            "a\0b",
            ".hidden",
            "a\nb",
            "a\\b",
            "..\\alice",
        ] {
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

    #[cfg_attr(
        windows,
        ignore = "symbolic links: Wine makes none, Windows only with a privilege"
    )]
    #[test]
    fn a_user_directory_that_is_a_link_or_a_file_is_refused() {
        let dir = spool();
        let d = dir.path();
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("emailrelay.9.9.9.envelope"), "e");
        write(
            &outside.path().join("emailrelay.9.9.9.content"),
            "secret\r\n",
        );
        crate::platform::files::symlink_dir(outside.path(), &d.join("mallory")).unwrap();
        crate::platform::files::symlink_dir(&d.join("alice"), &d.join("eve")).unwrap();
        write(&d.join("file"), "x");
        for (name, why) in [
            ("mallory", "a symbolic link, not followed out of the spool"),
            ("eve", "a symbolic link, not followed out of the spool"),
            ("file", "not a directory"),
        ] {
            match Maildrop::open(d, Some(name)) {
                Err(MaildropError::NotADirectory { name: n, why: w }) => {
                    assert_eq!((n.as_str(), w), (name, why))
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(
            Maildrop::open(d, Some("mallory")).unwrap_err().to_string(),
            "invalid mailbox [mallory]: a symbolic link, not followed out of the spool"
        );
        assert_eq!(names(outside.path()).len(), 2, "nothing outside touched");
    }

    #[cfg_attr(
        windows,
        ignore = "symbolic links: Wine makes none, Windows only with a privilege"
    )]
    #[test]
    fn a_directory_swapped_for_a_link_after_login_leads_nowhere() {
        let dir = spool();
        let d = dir.path();
        let alice = Maildrop::open(d, Some("alice")).unwrap();
        assert_eq!(alice.messages().len(), 2);
        // The real directory goes; a link to a directory holding files of
        // the same names (and a different secret) takes its place.
        let outside = tempfile::tempdir().unwrap();
        for name in ["emailrelay.1.1.6", "emailrelay.1.1.7"] {
            write(&outside.path().join(format!("{name}.envelope")), "e");
            write(
                &outside.path().join(format!("{name}.content")),
                "secret\r\n",
            );
        }
        fs::rename(d.join("alice"), d.join("moved")).unwrap();
        crate::platform::files::symlink_dir(outside.path(), &d.join("alice")).unwrap();
        // The held directory is the moved one: the outside file of the
        // same name is not read through the new link.
        assert!(alice.open_content(1).is_err());
        // Deletion goes where the files were (through the open directory
        // on Unix) or not at all (Windows, which has no openat), never
        // through the link.
        let deletion = alice.delete(&[0, 1]);
        let left = names(&d.join("moved"));
        match deletion.removed {
            2 => assert!(left.is_empty(), "{left:?}"),
            _ => assert_eq!((deletion.removed, left.len()), (0, 3), "{left:?}"),
        }
        assert_eq!(names(outside.path()).len(), 4, "nothing outside touched");
    }

    #[cfg_attr(
        windows,
        ignore = "symbolic links: Wine makes none, Windows only with a privilege"
    )]
    #[test]
    fn files_in_a_maildrop_that_are_links_are_not_messages() {
        let dir = spool();
        let d = dir.path();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        write(&secret, "secret\r\n");
        write(&d.join("alice/emailrelay.1.1.8.envelope"), "e");
        crate::platform::files::symlink_file(&secret, &d.join("alice/emailrelay.1.1.8.content"))
            .unwrap();
        let alice = Maildrop::open(d, Some("alice")).unwrap();
        let uids: Vec<String> = alice.messages().iter().map(MaildropMessage::uid).collect();
        assert_eq!(
            uids,
            ["emailrelay.1.1.6.content", "emailrelay.1.1.7.content"]
        );
        assert!(secret.exists());
    }
}
