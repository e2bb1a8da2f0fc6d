//! Replacing a file all or nothing, the one way the crate does it:
//!
//! ```text
//!   create temp --> write --> flush --> close --> rename over target --> sync directory
//!   (stale temp      (caller)  (fdatasync)         ([`rename`]: write      (now, or left to
//!    removed first)                                 through on Windows)    the caller)
//! ```
//!
//! A crash at any point leaves either the old file or the new one, whole,
//! and at worst a temporary file that the next attempt replaces. Failing
//! before the rename removes the temporary file. Built only on this
//! module's per-system primitives ([`create_new`], [`rename`],
//! [`Directory`], [`remove_file`]), so it is the same on both systems.
//!
//! Must not: rename a file that is still open (Windows cannot replace an
//! open file; the handle is closed first), or rename before the flush.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{create_new, remove_file, rename, Directory};

/// The step of an atomic write that failed (callers word their errors by
/// it: "cannot create", "cannot write", "cannot commit").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicStep {
    /// Creating the temporary file.
    Create,
    /// Writing it or flushing it to the disk.
    Write,
    /// Renaming it over the target.
    Rename,
    /// Syncing the directory after the rename.
    SyncDirectory,
}

/// An atomic write that failed, and at which step. Its text is the I/O
/// error's alone, as each caller words its own message around it.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct AtomicError {
    /// The step that failed.
    pub step: AtomicStep,
    /// Why.
    pub source: io::Error,
}

impl From<AtomicError> for io::Error {
    fn from(e: AtomicError) -> io::Error {
        e.source
    }
}

/// Whether [`AtomicFile::commit`] syncs the target's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirSync {
    /// Sync the target's directory now: the new file is durable on return.
    Now,
    /// The caller syncs it (through a directory it holds open, or as part
    /// of a later step that makes the whole change durable).
    Caller,
}

/// A file being written under a temporary name, to replace its target
/// whole on [`AtomicFile::commit`]. Dropped uncommitted, the temporary
/// file is removed and the target left as it was.
#[derive(Debug)]
pub struct AtomicFile {
    /// `None` once committed (closed before the rename).
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates `temp` afresh (replacing a stale one a crash left) with
    /// `mode`, to be renamed over `target`.
    pub fn create(
        target: impl Into<PathBuf>,
        temp: impl Into<PathBuf>,
        mode: u32,
    ) -> Result<AtomicFile, AtomicError> {
        let (target, temp) = (target.into(), temp.into());
        let _ = remove_file(&temp);
        let file = create_new(&temp, mode).map_err(|source| AtomicError {
            step: AtomicStep::Create,
            source,
        })?;
        Ok(AtomicFile {
            file: Some(file),
            temp,
            target,
        })
    }

    /// The temporary file, to write the new content into.
    pub fn file(&mut self) -> &mut File {
        match self.file.as_mut() {
            Some(file) => file,
            // Only `commit` takes the file, and it consumes `self`.
            None => unreachable!("an atomic file is written only before its commit"),
        }
    }

    /// The temporary file's path.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Flushes the temporary file, closes it, renames it over the target
    /// and, with [`DirSync::Now`], syncs the target's directory.
    pub fn commit(mut self, dir_sync: DirSync) -> Result<(), AtomicError> {
        let fail = |step| move |source| AtomicError { step, source };
        let file = self.file.take();
        file.as_ref()
            .map_or(Ok(()), File::sync_data)
            .map_err(fail(AtomicStep::Write))?;
        drop(file);
        rename(&self.temp, &self.target).map_err(fail(AtomicStep::Rename))?;
        // Renamed: nothing of ours is left to remove.
        self.temp = PathBuf::new();
        if dir_sync == DirSync::Caller {
            return Ok(());
        }
        let dir = match self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => Path::new("."),
        };
        Directory::open(dir)
            .and_then(|d| d.sync())
            .map_err(fail(AtomicStep::SyncDirectory))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.temp.as_os_str().is_empty() {
            return;
        }
        // Closed first: Windows cannot remove a file that is open.
        self.file.take();
        let _ = remove_file(&self.temp);
    }
}

/// Writes `bytes` to `target` all or nothing through `temp` (created with
/// `mode`), and syncs the directory: see the module documentation.
pub fn write_atomic(target: &Path, temp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = AtomicFile::create(target, temp, mode)?;
    file.file().write_all(bytes)?;
    Ok(file.commit(DirSync::Now)?)
}

/// As [`write_atomic`], leaving the directory sync to the caller, with the
/// step that failed.
pub fn write_atomic_unsynced(
    target: &Path,
    temp: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), AtomicError> {
    let mut file = AtomicFile::create(target, temp, mode)?;
    file.file().write_all(bytes).map_err(|source| AtomicError {
        step: AtomicStep::Write,
        source,
    })?;
    file.commit(DirSync::Caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_committed_file_replaces_its_target_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("target"), "old").unwrap();
        write_atomic(&dir.join("target"), &dir.join("target.tmp"), b"new", 0o660).unwrap();
        assert_eq!(std::fs::read(dir.join("target")).unwrap(), b"new");
        assert_eq!(names(dir), ["target"]);
    }

    #[test]
    fn a_stale_temp_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("target.tmp"), "stale and longer").unwrap();
        write_atomic_unsynced(&dir.join("target"), &dir.join("target.tmp"), b"new", 0o660).unwrap();
        assert_eq!(std::fs::read(dir.join("target")).unwrap(), b"new");
        assert_eq!(names(dir), ["target"]);
    }

    #[test]
    fn a_dropped_file_is_removed_and_the_target_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("target"), "old").unwrap();
        let mut file =
            AtomicFile::create(dir.join("target"), dir.join("target.tmp"), 0o660).unwrap();
        file.file().write_all(b"half").unwrap();
        assert_eq!(names(dir), ["target", "target.tmp"]);
        drop(file);
        assert_eq!(std::fs::read(dir.join("target")).unwrap(), b"old");
        assert_eq!(names(dir), ["target"]);
    }

    #[test]
    fn a_failed_rename_says_so_and_removes_the_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // The target's directory does not exist: the rename fails.
        let target = dir.join("missing").join("target");
        let e = write_atomic_unsynced(&target, &dir.join("target.tmp"), b"new", 0o660).unwrap_err();
        assert_eq!(e.step, AtomicStep::Rename);
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
        assert!(names(dir).is_empty());
    }

    #[test]
    fn a_failed_create_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let temp = dir.join("missing").join("target.tmp");
        let e = write_atomic(&dir.join("target"), &temp, b"new", 0o660).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = AtomicFile::create(dir.join("target"), temp, 0o660).unwrap_err();
        assert_eq!(e.step, AtomicStep::Create);
        assert!(names(dir).is_empty());
    }
}
