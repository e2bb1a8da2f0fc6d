//! Writing `emailrelay-submit`'s messages: the spool directory checked as
//! 2.6.1 checks it, each message through `store::NewMessage` (exclusive
//! creation, fsync before the envelope is visible), `--copy` into the
//! subdirectories, and the list of files a signal must take back.
//!
//! E-MailRelay compatibility: paths are shown as 2.6.1's `G::Path` shows
//! them (`.` parts and doubled or trailing slashes dropped); store errors
//! are reported in its words.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::SubmitError;
use crate::platform::files::{is_separator, SEPARATOR};
use crate::store::{Envelope, MessageId, NewMessage, Spool, SpoolFile, StoreError};

/// The spool, and the directory as 2.6.1 would print it.
pub struct OpenSpool {
    spool: Arc<Spool>,
    shown: Vec<u8>,
}

impl OpenSpool {
    /// `dir/name` as 2.6.1 prints it (with a backslash on Windows).
    pub fn display_path(&self, name: &str) -> String {
        let mut path = self.shown.clone();
        if !is_root(&path) {
            path.push(SEPARATOR);
        }
        path.extend_from_slice(name.as_bytes());
        String::from_utf8_lossy(&path).into_owned()
    }
}

/// Opens the spool directory, which must exist and be searchable and
/// readable (2.6.1 opens `dir/.`); never creates it.
pub fn open(dir: &[u8]) -> Result<OpenSpool, SubmitError> {
    let shown = normalise(dir);
    if dir.is_empty() {
        return Err(SubmitError::SpoolDir(": not a directory".into()));
    }
    let mut dot = shown.clone();
    if !is_root(&dot) {
        dot.push(SEPARATOR);
    }
    dot.push(b'.');
    if let Err(e) = fs::read_dir(os_path(&dot)) {
        return Err(spool_dir_error(&shown, &e));
    }
    let spool = Spool::open(&os_path(dir)).map_err(|e| match e {
        StoreError::Io { reason, .. } => spool_dir_error(&shown, &reason),
        other => SubmitError::Store(other.to_string()),
    })?;
    Ok(OpenSpool { spool, shown })
}

/// Files of messages not yet committed, removed if a signal ends the
/// process; a commit holds the lock, so a signal waits for it.
#[derive(Debug, Default)]
pub struct Pending(Mutex<Vec<PathBuf>>);

impl Pending {
    /// Removes every pending file (called when a signal arrives).
    pub fn remove_all(&self) {
        let mut files = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for path in files.drain(..) {
            let _ = fs::remove_file(path);
        }
    }
}

/// A message being written.
pub struct Message {
    spool: Arc<Spool>,
    new: NewMessage,
    envelope: Envelope,
    shown_dir: Vec<u8>,
}

impl Message {
    /// Creates the content file, and registers it with `pending`.
    pub fn create(
        spool: &OpenSpool,
        envelope: Envelope,
        pending: &Pending,
    ) -> Result<Message, SubmitError> {
        // Under the lock, so a signal cannot fall between the file's
        // creation and its registration.
        let mut files = pending.0.lock().unwrap_or_else(|p| p.into_inner());
        let new = spool
            .spool
            .new_message()
            .map_err(|e| store_error(&spool.shown, e))?;
        let parts = [SpoolFile::Content, SpoolFile::EnvelopeNew];
        files.extend(parts.map(|part| spool.spool.path(new.id(), part)));
        drop(files);
        Ok(Message {
            spool: Arc::clone(&spool.spool),
            new,
            envelope,
            shown_dir: spool.shown.clone(),
        })
    }

    /// The content file's name.
    pub fn content_name(&self) -> String {
        self.new.id().file_name(SpoolFile::Content)
    }

    /// The name the envelope is first written under.
    pub fn envelope_new_name(&self) -> String {
        self.new.id().file_name(SpoolFile::EnvelopeNew)
    }

    /// Appends a line and CRLF.
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), SubmitError> {
        let shown = self.shown_dir.clone();
        self.new
            .write(&[line, b"\r\n"].concat())
            .map_err(|e| store_error(&shown, e))
    }

    /// Commits, and with `copy` copies the envelope into the
    /// subdirectories; returns the id. Holds `pending`'s lock throughout.
    pub fn commit(self, copy: bool, pending: &Pending) -> Result<MessageId, SubmitError> {
        let mut files = pending.0.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = format!("{}.", self.new.id());
        files.retain(|f| {
            !f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        });
        let id = self
            .new
            .commit_now(self.envelope)
            .map_err(|e| store_error(&self.shown_dir, e))?;
        if copy {
            copy_into_subdirectories(&self.spool, &self.spool.path(&id, SpoolFile::Envelope));
        }
        drop(files);
        Ok(id)
    }
}

/// `--copy`: the envelope copied into every subdirectory of the spool
/// directory (symbolic links not followed), and removed from the spool
/// directory itself if every copy was made. Each copy is written under a
/// temporary name, fsynced and renamed, so a relay never reads half of one.
fn copy_into_subdirectories(spool: &Spool, envelope: &Path) {
    let Ok(entries) = fs::read_dir(spool.dir()) else {
        return;
    };
    let Ok(bytes) = fs::read(envelope) else {
        return;
    };
    let Some(name) = envelope.file_name() else {
        return;
    };
    let (mut dirs, mut copies) = (0, 0);
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        dirs += 1;
        if copy_into(&entry.path(), name, &bytes).is_ok() {
            copies += 1;
        }
    }
    if dirs > 0 && dirs == copies && fs::remove_file(envelope).is_ok() {
        let _ = crate::platform::files::Directory::open(spool.dir()).and_then(|d| d.sync());
    }
}

fn copy_into(dir: &Path, name: &OsStr, bytes: &[u8]) -> std::io::Result<()> {
    let target = dir.join(name);
    let mut temporary = target.clone().into_os_string();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    crate::platform::files::write_atomic(&target, &temporary, bytes, 0o660)
}

/// A path as 2.6.1's `G::Path` prints it: empty and `.` parts dropped,
/// `.` or the root if nothing is left; on Windows either slash separates
/// and a backslash joins, and a network path keeps its two leading ones.
pub fn normalise(path: &[u8]) -> Vec<u8> {
    let separator = |b: &u8| is_separator(*b);
    let absolute = path.first().is_some_and(separator);
    let network = absolute && SEPARATOR == b'\\' && path.get(1).is_some_and(separator);
    let parts: Vec<&[u8]> = path
        .split(separator)
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    let joined = parts.join(&SEPARATOR);
    let root: &[u8] = match network {
        true => &[SEPARATOR, SEPARATOR],
        false => &[SEPARATOR],
    };
    match (absolute, joined.is_empty()) {
        (true, _) => [root, &joined].concat(),
        (false, true) if !path.is_empty() => b".".to_vec(),
        (false, _) => joined,
    }
}

/// True for a path that is only the root (`/`; on Windows a backslash too).
fn is_root(path: &[u8]) -> bool {
    path.len() == 1 && is_separator(path[0])
}

/// Bytes as a path.
pub fn os_path(bytes: &[u8]) -> PathBuf {
    crate::platform::files::bytes_to_path(bytes)
}

fn spool_dir_error(shown: &[u8], e: &std::io::Error) -> SubmitError {
    SubmitError::SpoolDir(format!(
        ": {}: {}",
        String::from_utf8_lossy(shown),
        strerror(e)
    ))
}

/// 2.6.1's wording of a store failure: which file could not be written.
fn store_error(shown_dir: &[u8], e: StoreError) -> SubmitError {
    let StoreError::Io {
        op,
        path,
        reason: source,
    } = &e
    else {
        return SubmitError::Store(e.to_string());
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shown = |name: &str| {
        let mut p = shown_dir.to_vec();
        if !is_root(&p) {
            p.push(SEPARATOR);
        }
        String::from_utf8_lossy(&p).into_owned() + name
    };
    SubmitError::Store(if op.contains("content") {
        format!("cannot write content file {}", shown(&name))
    } else if op.contains("commit") {
        format!(
            "cannot rename envelope file to {}",
            shown(
                &SpoolFile::EnvelopeNew
                    .stem(&name)
                    .map_or(name.clone(), |id| SpoolFile::Envelope.name(id))
            )
        )
    } else if op.contains("envelope") {
        format!("cannot write envelope file: {}", shown(&name))
    } else {
        format!(
            "{op} {}: {}",
            String::from_utf8_lossy(shown_dir),
            strerror(source)
        )
    })
}

/// The system's words for an error, in lower case as 2.6.1 prints them
/// (the C library's `strerror` on Unix).
pub(super) fn strerror(e: &std::io::Error) -> String {
    crate::platform::errors::words(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_g_path_prints_them() {
        for (given, shown) in [
            ("s", "s"),
            ("s/", "s"),
            ("./s", "s"),
            ("s/./t", "s/t"),
            ("s//t", "s/t"),
            ("s/../s/t", "s/../s/t"),
            (".", "."),
            ("./", "."),
            ("/", "/"),
            ("/tmp//x//", "/tmp/x"),
        ] {
            // Windows shows the parts joined with a backslash.
            let shown = shown.replace('/', &char::from(SEPARATOR).to_string());
            assert_eq!(normalise(given.as_bytes()), shown.as_bytes(), "{given}");
        }
        let system_specific: &[(&str, &str)] = match SEPARATOR {
            b'/' => &[("//tmp/x//", "/tmp/x"), ("a\\b", "a\\b")],
            // Either slash separates; a network path keeps its two backslashes.
            _ => &[
                ("//server/share/", "\\\\server\\share"),
                ("Z:\\tmp\\\\x\\", "Z:\\tmp\\x"),
                ("a/b\\c", "a\\b\\c"),
            ],
        };
        for (given, shown) in system_specific {
            assert_eq!(normalise(given.as_bytes()), shown.as_bytes(), "{given}");
        }
    }
}
