//! Housekeeping of the spool while the relay runs: what crashes leave
//! behind is put right, at startup and then every [`SWEEP_INTERVAL`].
//!
//! - A `.envelope.busy` that no process holds locked and that has not
//!   changed for [`BUSY_AGE`] goes back to `.envelope` (a separate
//!   `--as-client` that crashed; at startup any unlocked one goes, see
//!   [`Spool::recover_busy`]). The age protects E-MailRelay 2.6.1
//!   processes sharing the spool, which lock by rename only.
//! - A `.envelope.new`, and a `.content` with no envelope of any kind (here
//!   or in a sub-directory, where `copy:` for POP puts envelopes), that has
//!   not changed for [`ORPHAN_AGE`] is removed: it belongs to a message
//!   that was never acknowledged (a crash before the commit), or to one
//!   already forwarded (a crash between the envelope's removal and the
//!   content's). Either way nobody is owed it.
//!
//! Must not: touch a file a live session may still write (sessions write
//! their content file at least every idle timeout, far below the ages
//! here), or anything that is not a regular file of ours.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{MessageId, Spool, SpoolFile, SpoolName};
use crate::platform::files::{self, Held};

/// How often the spool is swept while the relay runs.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// An unlocked `.busy` unchanged this long is put back.
pub const BUSY_AGE: Duration = Duration::from_secs(60 * 60);
/// An orphan unchanged this long is removed.
pub const ORPHAN_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Messages put back from `.busy`.
    pub recovered: Vec<MessageId>,
    /// Orphan files removed.
    pub removed: Vec<PathBuf>,
}

impl Spool {
    /// Sweeps the spool as of `now` (passed in, so that tests can step
    /// the clock); problems with single files are skipped.
    pub fn sweep(&self, now: SystemTime) -> Swept {
        let mut swept = Swept::default();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return swept;
        };
        // One entry at a time, siblings looked up by name: memory stays
        // flat however many messages the spool holds.
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(SpoolName { id, file }) = SpoolName::parse(&name) else {
                continue;
            };
            match file {
                SpoolFile::EnvelopeBusy
                    if self.unchanged(&id, file, now, BUSY_AGE, true) && self.put_back(&id) =>
                {
                    swept.recovered.push(id);
                }
                SpoolFile::EnvelopeNew if self.unchanged(&id, file, now, ORPHAN_AGE, false) => {
                    self.remove_orphan(&id, file, &mut swept);
                    if self.unchanged(&id, SpoolFile::Content, now, ORPHAN_AGE, false) {
                        self.remove_orphan(&id, SpoolFile::Content, &mut swept);
                    }
                }
                // The age first: a young content file (the common case)
                // costs one stat, not five.
                SpoolFile::Content
                    if self.unchanged(&id, file, now, ORPHAN_AGE, false)
                        && !has_any_envelope(&self.dir, &id)
                        && !self.has_envelope_below(&id) =>
                {
                    self.remove_orphan(&id, file, &mut swept);
                }
                _ => {}
            }
        }
        swept
    }

    /// True if the file is a regular file not modified (or, with
    /// `by_ctime`, not renamed or modified) within `age` of `now`.
    fn unchanged(
        &self,
        id: &MessageId,
        file: SpoolFile,
        now: SystemTime,
        age: Duration,
        by_ctime: bool,
    ) -> bool {
        let path = self.path(id, file);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return false;
        };
        match files::changed(&meta, by_ctime, &path) {
            Some(changed) => now.duration_since(changed).is_ok_and(|d| d >= age),
            // A regular file whose time cannot be read counts as old.
            None => meta.is_file(),
        }
    }

    /// Renames an unlocked `.busy` back to `.envelope`, holding the lock
    /// while it does so that no forwarder takes it half-way.
    fn put_back(&self, id: &MessageId) -> bool {
        let busy = self.path(id, SpoolFile::EnvelopeBusy);
        let Ok(file) = super::open_regular(&busy) else {
            return false;
        };
        let Ok(_lock) = Held::try_hold(file) else {
            return false;
        };
        match files::rename(&busy, self.path(id, SpoolFile::Envelope)) {
            Ok(()) => {
                crate::warning!(
                    "recovered [{id}]: locked for forwarding by a process that is gone"
                );
                let _ = self.committer.sync_dir_now();
                true
            }
            Err(_) => false,
        }
    }

    fn remove_orphan(&self, id: &MessageId, file: SpoolFile, swept: &mut Swept) {
        let path = self.path(id, file);
        if files::remove_file(&path).is_ok() {
            crate::warning!(
                "removed [{}]: left behind by an interrupted message and unchanged for {}h",
                path.display(),
                ORPHAN_AGE.as_secs() / 3600
            );
            swept.removed.push(path);
        }
    }

    /// True if a sub-directory of the spool holds an envelope of `id`
    /// (`copy:` for POP leaves the content in the spool itself).
    fn has_envelope_below(&self, id: &MessageId) -> bool {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return true;
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .any(|dir| has_any_envelope(&dir.path(), id))
    }
}

fn has_any_envelope(dir: &Path, id: &MessageId) -> bool {
    SpoolFile::ENVELOPES
        .iter()
        .any(|&file| id.path_in(dir, file).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> (tempfile::TempDir, std::sync::Arc<Spool>) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        (dir, spool)
    }

    fn touch(spool: &Spool, name: &str) -> PathBuf {
        let path = spool.dir().join(name);
        fs::write(&path, "x").unwrap();
        path
    }

    /// Holds `path`, as a forwarding process does.
    fn hold(path: &Path) -> Held {
        Held::hold(fs::File::open(path).unwrap()).unwrap()
    }

    fn later(age: Duration) -> SystemTime {
        SystemTime::now() + age + Duration::from_secs(1)
    }

    #[test]
    fn orphans_go_once_they_are_old_and_nothing_else_does() {
        let (_dir, spool) = spool();
        let new = touch(&spool, "emailrelay.1.1.1.envelope.new");
        let new_content = touch(&spool, "emailrelay.1.1.1.content");
        let lone = touch(&spool, "emailrelay.1.1.2.content");
        let queued = touch(&spool, "emailrelay.1.1.3.envelope");
        touch(&spool, "emailrelay.1.1.3.content");
        touch(&spool, "emailrelay.1.1.4.envelope.bad");
        touch(&spool, "emailrelay.1.1.4.content");
        let other = touch(&spool, "notes.txt");
        // Too young: nothing.
        assert_eq!(spool.sweep(SystemTime::now()), Swept::default());
        let swept = spool.sweep(later(ORPHAN_AGE));
        let mut removed = swept.removed.clone();
        removed.sort();
        assert_eq!(removed, vec![new_content, new, lone]);
        assert!(queued.exists() && other.exists());
        assert!(spool.dir().join("emailrelay.1.1.4.content").exists());
    }

    #[test]
    fn a_content_whose_envelope_is_in_a_pop_directory_stays() {
        let (_dir, spool) = spool();
        let content = touch(&spool, "emailrelay.1.1.5.content");
        fs::create_dir(spool.dir().join("alice")).unwrap();
        fs::write(spool.dir().join("alice/emailrelay.1.1.5.envelope"), "x").unwrap();
        assert!(spool.sweep(later(ORPHAN_AGE)).removed.is_empty());
        assert!(content.exists());
    }

    #[test]
    fn an_unlocked_busy_goes_back_after_an_hour_and_a_held_one_never() {
        let (_dir, spool) = spool();
        let stale = touch(&spool, "emailrelay.1.1.6.envelope.busy");
        let held = touch(&spool, "emailrelay.1.1.7.envelope.busy");
        let _lock = hold(&held);
        assert_eq!(spool.sweep(SystemTime::now()), Swept::default());
        let swept = spool.sweep(later(BUSY_AGE));
        assert_eq!(swept.recovered, vec![MessageId("emailrelay.1.1.6".into())]);
        assert!(!stale.exists() && spool.dir().join("emailrelay.1.1.6.envelope").exists());
        assert!(held.exists());
    }

    #[cfg_attr(
        windows,
        ignore = "symbolic links: Wine makes none, Windows only with a privilege"
    )]
    #[test]
    fn links_are_not_ours() {
        let (dir, spool) = spool();
        let target = dir.path().join("target");
        fs::write(&target, "x").unwrap();
        files::symlink_file(&target, &spool.dir().join("emailrelay.1.1.8.content")).unwrap();
        assert!(spool.sweep(later(ORPHAN_AGE)).removed.is_empty());
        assert!(target.exists());
    }
}
