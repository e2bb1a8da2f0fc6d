//! Windows: reparse points instead of symbolic links, byte-range locks,
//! `MoveFileExW` with write-through, `GetDiskFreeSpaceExW`.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL, ERROR_LOCK_VIOLATION,
    ERROR_SHARING_VIOLATION,
};
use windows_sys::Win32::Storage::FileSystem::{
    FileBasicInfo, GetDiskFreeSpaceExW, GetFileInformationByHandle, GetFileInformationByHandleEx,
    LockFileEx, MoveFileExW, BY_HANDLE_FILE_INFORMATION, FILE_BASIC_INFO,
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, LOCKFILE_EXCLUSIVE_LOCK,
    LOCKFILE_FAIL_IMMEDIATELY, MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

use super::wide;

/// Line end of the text files we write (log files), as 2.6.1 writes them.
pub const LINE_END: &str = "\r\n";

/// The separator E-MailRelay puts between the parts of a path it shows
/// (2.6.1's `G::Path` turns `/` into `\` on Windows).
pub const SEPARATOR: u8 = b'\\';

/// True for a byte that separates the parts of a path: either slash.
pub fn is_separator(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// How often a rename or removal is tried while another program (an
/// antivirus scanner, the indexer, a backup) holds the file for a moment.
const BUSY_ATTEMPTS: u32 = 10;

/// Opens a spool file for reading only if it is a regular file, not a
/// symbolic link or junction (a reparse point is opened as itself, never
/// followed). Others may go on reading, writing and renaming it.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other("a symbolic link, not a spool file"));
    }
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Opens a directory only if it is one and not a link or junction.
pub fn open_directory(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other("a symbolic link, not a directory"));
    }
    if !meta.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    Ok(file)
}

/// Opens an existing file only to flush it: `FlushFileBuffers` needs
/// write access. Nothing is written.
pub fn open_to_flush(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

/// Creates a new file (never an existing one). Windows has no mode: the
/// file inherits the directory's access list.
pub fn create_new(path: &Path, _mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

/// Opens a file for appending, creating it if missing.
pub fn open_append(path: &Path, _mode: u32) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Opens a file for writing from the start, creating it if missing.
pub fn open_truncate(path: &Path, _mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Nothing to set: access on Windows is the directory's access list.
pub fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// No permission bits on Windows.
pub fn mode(_meta: &Metadata) -> Option<u32> {
    None
}

/// Creates one directory level.
pub fn create_dir(path: &Path, _mode: u32) -> io::Result<()> {
    fs::create_dir(path)
}

/// Any regular file can be started (how is decided by its extension, see
/// `platform::child`).
pub fn is_executable(meta: &Metadata) -> bool {
    meta.is_file()
}

/// Nothing to do on Windows.
pub fn make_executable(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// The volume and file index of an open file: Windows' device and inode.
fn identity(file: &File) -> Option<(u32, u64)> {
    // SAFETY: a plain C struct of integers, for which all zeroes is valid.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: a valid handle and a struct of the right size to fill.
    let ok = unsafe { GetFileInformationByHandle(file.as_raw_handle() as _, &mut info) } != 0;
    ok.then(|| {
        let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
        (info.dwVolumeSerialNumber, index)
    })
}

/// Opens `path` as itself (no link followed) only to ask about it.
fn open_as_itself(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .access_mode(0)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

/// True if `path` still names the file open as `file`, without following
/// a link.
pub fn same_file(file: &File, path: &Path) -> bool {
    match (
        identity(file),
        open_as_itself(path).ok().as_ref().and_then(identity),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// True if two paths name one file (a hard link).
pub fn same_path_file(a: &Path, b: &Path) -> bool {
    let id = |p: &Path| File::open(p).ok().as_ref().and_then(identity);
    matches!((id(a), id(b)), (Some(a), Some(b)) if a == b)
}

/// When a regular file last changed: its content, or with `renamed` also
/// its name (NTFS's change time, which a rename sets). `None` if it is
/// not a regular file. (`meta` is `path`'s, not followed.)
pub fn changed(meta: &Metadata, renamed: bool, path: &Path) -> Option<SystemTime> {
    if !meta.is_file() {
        return None;
    }
    if !renamed {
        return meta.modified().ok();
    }
    let file = open_as_itself(path).ok()?;
    // SAFETY: a plain C struct of integers, for which all zeroes is valid.
    let mut info: FILE_BASIC_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: a valid handle and a buffer of the size given.
    let ok = unsafe {
        GetFileInformationByHandleEx(
            file.as_raw_handle() as _,
            FileBasicInfo,
            (&mut info as *mut FILE_BASIC_INFO).cast(),
            std::mem::size_of::<FILE_BASIC_INFO>() as u32,
        )
    } != 0;
    ok.then(|| filetime(info.ChangeTime))?
}

/// A FILETIME count (100 ns since 1601) as a time.
fn filetime(ticks: i64) -> Option<SystemTime> {
    const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;
    let since = u64::try_from(ticks.checked_sub(UNIX_EPOCH_TICKS)?).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(since.saturating_mul(100)))
}

/// True for "out of space" errors.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(|c| c as u32),
        Some(ERROR_DISK_FULL) | Some(ERROR_HANDLE_DISK_FULL)
    )
}

/// Octets free for us on the volume holding `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    let name = wide(&dir.to_string_lossy());
    let mut available = 0u64;
    // SAFETY: a NUL-terminated path and one out-parameter; the others may be null.
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            name.as_ptr(),
            &mut available,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    } != 0;
    ok.then_some(available)
}

/// Nothing to start: Windows has no `sync_file_range`.
pub fn start_writeback(_file: &File) {}

/// Sets a file's or directory's modification time.
pub fn set_modified(path: &Path, time: SystemTime) -> io::Result<()> {
    use windows_sys::Win32::Storage::FileSystem::FILE_WRITE_ATTRIBUTES;
    OpenOptions::new()
        .access_mode(FILE_WRITE_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?
        .set_modified(time)
}

/// A directory: nothing to sync on Windows, where NTFS journals directory
/// entries and [`rename`] writes through.
#[derive(Debug)]
pub struct Directory;

impl Directory {
    /// Checks that `path` is a directory.
    pub fn open(path: &Path) -> io::Result<Directory> {
        match fs::metadata(path)?.is_dir() {
            true => Ok(Directory),
            false => Err(io::Error::other("not a directory")),
        }
    }

    /// Nothing to do (see [`Directory`]).
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Windows has no call that flushes a whole volume for a program that is
/// not an administrator: false, and the caller flushes file by file.
pub fn sync_file_system(_directory: &Directory) -> io::Result<bool> {
    Ok(false)
}

/// True for the errors another program holding a file for a moment gives.
fn held_by_another(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(|c| c as u32),
        Some(ERROR_ACCESS_DENIED) | Some(ERROR_SHARING_VIOLATION) | Some(ERROR_LOCK_VIOLATION)
    )
}

/// Runs `op` again, a few times over about half a second, while another
/// program holds the file.
fn while_held(mut op: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(e) if held_by_another(&e) && attempt < BUSY_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}

/// Renames `from` to `to`, replacing `to`, and returns only once the
/// rename is on the disk (`MOVEFILE_WRITE_THROUGH`).
pub fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    let (from, to) = (wide(&from.to_string_lossy()), wide(&to.to_string_lossy()));
    while_held(|| {
        // SAFETY: two NUL-terminated paths.
        let ok = unsafe {
            MoveFileExW(
                from.as_ptr(),
                to.as_ptr(),
                MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
            )
        } != 0;
        match ok {
            true => Ok(()),
            false => Err(io::Error::last_os_error()),
        }
    })
}

/// Removes a file, waiting a moment for another program that holds it.
pub fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    while_held(|| fs::remove_file(path))
}

/// Where the lock byte sits: far beyond any spool file's end, so that the
/// lock (mandatory on Windows) never covers a byte anyone reads.
const LOCK_OFFSET: u64 = 0x7fff_ffff_0000_0000;

pub(super) fn lock(file: &File, wait: bool) -> io::Result<()> {
    // SAFETY: a plain C struct of integers, for which all zeroes is valid.
    let mut overlapped: OVERLAPPED = unsafe { std::mem::zeroed() };
    overlapped.Anonymous.Anonymous.Offset = LOCK_OFFSET as u32;
    overlapped.Anonymous.Anonymous.OffsetHigh = (LOCK_OFFSET >> 32) as u32;
    let flags = match wait {
        true => LOCKFILE_EXCLUSIVE_LOCK,
        false => LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
    };
    // SAFETY: a valid synchronous handle; one byte at the offset above;
    // the lock goes when the handle closes.
    let ok = unsafe { LockFileEx(file.as_raw_handle() as _, flags, 0, 1, 0, &mut overlapped) } != 0;
    match ok {
        true => Ok(()),
        false => Err(io::Error::last_os_error()),
    }
}

/// An argument or path as bytes (UTF-8; WTF-8 for unpaired surrogates).
pub fn os_to_bytes(text: OsString) -> Vec<u8> {
    text.into_encoded_bytes()
}

/// Bytes as an argument or path (UTF-8; invalid sequences replaced).
pub fn bytes_to_os(bytes: Vec<u8>) -> OsString {
    OsString::from(String::from_utf8_lossy(&bytes).into_owned())
}

/// Bytes as a path (UTF-8; invalid sequences replaced).
pub fn bytes_to_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// A file name's bytes (UTF-8).
pub fn os_str_bytes(name: &OsStr) -> &[u8] {
    name.as_encoded_bytes()
}

/// Makes `link` a symbolic link to the file `target`.
pub fn symlink_file(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)?;
    made(link)
}

/// Makes `link` a symbolic link to the directory `target`.
pub fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)?;
    made(link)
}

/// Checks that a link was made: Wine's `CreateSymbolicLinkW` says it
/// succeeded and makes nothing.
fn made(link: &Path) -> io::Result<()> {
    match fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no symbolic link was made",
        )),
    }
}

/// A directory held open. Windows has no `openat`: its entries are
/// reached by path, each checked to be what it should be (a child
/// directory opened as itself, never through a reparse point; a file only
/// if the held directory is still the one at its path), which narrows a
/// swap to a moment between check and use rather than closing it.
#[derive(Debug)]
pub struct OpenDir {
    file: File,
    path: PathBuf,
    /// Opened as itself (a child): checked before each use.
    confined: bool,
}

impl OpenDir {
    /// Opens `path` as it is configured (a link to it is followed).
    pub fn open(path: &Path) -> io::Result<OpenDir> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        if !file.metadata()?.is_dir() {
            return Err(io::Error::other("not a directory"));
        }
        Ok(OpenDir {
            file,
            path: path.to_path_buf(),
            confined: false,
        })
    }

    /// The directory `name` directly inside this one, not through a link
    /// or junction.
    pub fn child(&self, name: &str) -> io::Result<OpenDir> {
        if matches!(name, "." | "..") || name.contains(['/', '\\', ':']) {
            return Err(io::Error::other("not a directory"));
        }
        let path = self.path.join(name);
        let file = open_directory(&path)?;
        Ok(OpenDir {
            file,
            path,
            confined: true,
        })
    }

    /// Creates the directory `name` in this one; false if it was there.
    pub fn create_child(&self, name: &str, _mode: u32) -> io::Result<bool> {
        match fs::create_dir(self.path.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The names in the directory (but names that are not UTF-8).
    pub fn names(&self) -> io::Result<Vec<String>> {
        self.check_held()?;
        Ok(fs::read_dir(&self.path)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect())
    }

    /// The size of `name` if it is a regular file (not a link to one).
    pub fn regular_size(&self, name: &str) -> Option<u64> {
        self.check_held().ok()?;
        let meta = fs::symlink_metadata(self.path.join(name)).ok()?;
        meta.is_file().then_some(meta.len())
    }

    /// True if `name` is there (a link counts, wherever it points).
    pub fn exists(&self, name: &str) -> bool {
        fs::symlink_metadata(self.path.join(name)).is_ok()
    }

    /// True if `name` is a symbolic link or junction.
    pub fn is_link(&self, name: &str) -> bool {
        fs::symlink_metadata(self.path.join(name)).is_ok_and(|m| m.file_type().is_symlink())
    }

    /// Opens `name` for reading if it is a regular file and the held
    /// directory is still the one at its path.
    pub fn open_regular(&self, name: &str) -> io::Result<File> {
        let file = open_regular(&self.path.join(name))?;
        self.check_held()?;
        Ok(file)
    }

    /// Renames the entry `from` to `to`, replacing `to`.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.check_held()?;
        rename(self.path.join(from), self.path.join(to))
    }

    /// Removes the file `name`.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        self.check_held()?;
        remove_file(self.path.join(name))
    }

    /// Nothing to do (see [`Directory`]).
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    /// Where it was opened, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_held(&self) -> io::Result<()> {
        match !self.confined || same_file(&self.file, &self.path) {
            true => Ok(()),
            false => Err(io::Error::other(
                "not the directory opened: the path was changed",
            )),
        }
    }
}
