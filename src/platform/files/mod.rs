//! Spool-file primitives, where Unix and Windows file systems differ:
//!
//! - opening a file only if it is a regular file, never through a link;
//! - holding a `.busy` envelope against another process's crash recovery
//!   without stopping anyone from reading it: `flock` on Unix; on Windows
//!   a byte-range lock far beyond the end of the file (a whole-file
//!   `LockFileEx` would be mandatory and block a client filter's reads);
//! - making a rename durable: the directory fsynced on Unix; on Windows
//!   `MoveFileExW` with `MOVEFILE_WRITE_THROUGH` (NTFS journals the
//!   directory itself), retried for a moment when an antivirus scanner or
//!   the indexer holds a new file (errors 5 and 32);
//! - modes (`rw-rw----` on Unix; Windows files inherit the directory's
//!   access list), free space, file identity, "out of space" errors;
//! - arguments and paths as bytes (exact on Unix; UTF-8 on Windows), and
//!   the separator between a path's parts (either slash on Windows);
//! - a directory held open whose entries are reached through it
//!   ([`OpenDir`]: `openat` and friends on Unix, so that a directory
//!   swapped for a link leads nowhere; checked paths on Windows).
//!
//! On top of these, the same on both systems: replacing a file all or
//! nothing ([`AtomicFile`], [`write_atomic`]: temporary file, flush,
//! rename, directory sync), the one copy of that sequence in the crate.
//!
//! Everything else about files is the standard library's.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

mod atomic;
pub use atomic::{
    write_atomic, write_atomic_unsynced, AtomicError, AtomicFile, AtomicStep, DirSync,
};

use std::fs::File;
use std::io;

/// A file held against crash recovery (see the module docs); reads go
/// through it as through the file. Dropping it lets go.
#[derive(Debug)]
pub struct Held {
    file: File,
}

impl std::ops::Deref for Held {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.file
    }
}

impl Held {
    /// Holds `file`, or gives it back if another holder has it.
    pub fn try_hold(file: File) -> Result<Held, File> {
        match lock(&file, false) {
            Ok(()) => Ok(Held { file }),
            Err(_) => Err(file),
        }
    }

    /// Holds `file`, waiting for another holder to let go.
    pub fn hold(file: File) -> io::Result<Held> {
        lock(&file, true)?;
        Ok(Held { file })
    }
}

/// Converts a string to a NUL-terminated UTF-16 string for Win32 calls.
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}
