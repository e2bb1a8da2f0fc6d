//! Unix: O_NOFOLLOW, flock, fsync of the directory, statvfs, modes.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Line end of the text files we write (log files).
pub const LINE_END: &str = "\n";

/// The separator E-MailRelay puts between the parts of a path it shows.
pub const SEPARATOR: u8 = b'/';

/// True for a byte that separates the parts of a path.
pub fn is_separator(b: u8) -> bool {
    b == b'/'
}

/// Opens a spool file for reading only if it is a regular file and not a
/// symbolic link. Nothing in a spool directory is trusted to be what we
/// wrote: a planted link would send or copy a file from outside the spool,
/// and a FIFO would block the reader for ever (hence `O_NONBLOCK`, which
/// changes nothing for a regular file).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("a symbolic link, not a spool file"),
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Opens a directory only if it is one and not a symbolic link.
pub fn open_directory(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("a symbolic link, not a directory"),
            Some(libc::ENOTDIR) => io::Error::other("not a directory"),
            _ => e,
        })
}

/// Opens an existing file only to flush it (`fsync` needs no more than read access).
pub fn open_to_flush(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Creates a new file (never an existing one) with `mode` (less the umask).
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Opens a file for appending, creating it with `mode` if missing.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
}

/// Opens a file for writing from the start, creating it with `mode` if
/// missing.
pub fn open_truncate(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
}

/// Sets a file's permission bits whatever the umask.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// A file's permission bits (`None` where the system has none).
pub fn mode(meta: &Metadata) -> Option<u32> {
    Some(meta.permissions().mode() & 0o7777)
}

/// Creates one directory level with `mode`, whatever the umask.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().mode(mode).create(path)?;
    set_mode(path, mode)
}

/// True if a program file may be run by someone.
pub fn is_executable(meta: &Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

/// Marks a file executable by its owner and group (a test's scripts).
pub fn make_executable(path: &Path) -> io::Result<()> {
    set_mode(path, 0o755)
}

/// True if `path` still names the file open as `file` (same device and
/// inode), without following a link.
pub fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// True if two paths name one file (a hard link).
pub fn same_path_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// When a regular file last changed: its content (`mtime`), or with
/// `renamed` also its name or links (`ctime`, which a rename sets). `None`
/// if it is not a regular file. (`meta` is `path`'s, not followed.)
pub fn changed(meta: &Metadata, renamed: bool, _path: &Path) -> Option<SystemTime> {
    if !meta.is_file() {
        return None;
    }
    let (secs, nanos) = match renamed {
        true => (meta.ctime(), meta.ctime_nsec()),
        false => (meta.mtime(), meta.mtime_nsec()),
    };
    let secs = u64::try_from(secs).ok()?;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(secs)
            + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)),
    )
}

/// True for "out of space" errors (ENOSPC, EDQUOT).
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Octets free for us on the file system holding `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    // Both are u64 on Linux; other systems' narrower types widen.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    Some(free)
}

/// Starts writing a file's dirty pages out without waiting, so that the
/// flushes of a batch that follow overlap (Linux `sync_file_range`).
pub fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; offset and length 0 mean the whole
    // file; the call only starts writeback.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Sets a file's or directory's modification time.
pub fn set_modified(path: &Path, time: SystemTime) -> io::Result<()> {
    File::open(path)?.set_modified(time)
}

/// A directory whose entries (renames, creations) can be made durable.
#[derive(Debug)]
pub struct Directory(File);

impl Directory {
    /// Opens `path` to sync it later.
    pub fn open(path: &Path) -> io::Result<Directory> {
        File::open(path).map(Directory)
    }

    /// Makes the renames and creations in it so far durable (fsync).
    pub fn sync(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// Makes everything written so far to the file system that holds
/// `directory` durable, in one call (`syncfs`). True: Linux has it.
pub fn sync_file_system(directory: &Directory) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on a valid open descriptor.
    match unsafe { libc::syncfs(directory.0.as_raw_fd()) } {
        0 => Ok(true),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Renames `from` to `to`, replacing `to`; durable once the directory is
/// synced ([`Directory::sync`]).
pub fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    fs::rename(from, to)
}

/// Removes a file.
pub fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    fs::remove_file(path)
}

pub(super) fn lock(file: &File, wait: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let op = match wait {
        true => libc::LOCK_EX,
        false => libc::LOCK_EX | libc::LOCK_NB,
    };
    loop {
        // SAFETY: flock on a valid open descriptor.
        match unsafe { libc::flock(file.as_raw_fd(), op) } {
            0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// An argument or path as bytes (exactly as given).
pub fn os_to_bytes(text: OsString) -> Vec<u8> {
    text.into_vec()
}

/// Bytes as an argument or path (exactly).
pub fn bytes_to_os(bytes: Vec<u8>) -> OsString {
    OsString::from_vec(bytes)
}

/// Bytes as a path (exactly).
pub fn bytes_to_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// A file name's bytes (exactly).
pub fn os_str_bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

/// Makes `link` a symbolic link to the file `target`.
pub fn symlink_file(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Makes `link` a symbolic link to the directory `target`.
pub fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// A directory held open, whose entries are looked up in it (`openat`,
/// `fstatat`, `renameat`, `unlinkat`), never through a path that a link
/// swapped in for it could redirect.
#[derive(Debug)]
pub struct OpenDir {
    file: File,
    path: PathBuf,
}

impl OpenDir {
    /// Opens `path` as it is configured (a link to it is the
    /// administrator's choice, so followed).
    pub fn open(path: &Path) -> io::Result<OpenDir> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(OpenDir {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The directory `name` directly inside this one, not through a link:
    /// the name must be one component, and is opened without following a
    /// link and checked to be the entry this directory holds.
    pub fn child(&self, name: &str) -> io::Result<OpenDir> {
        if matches!(name, "." | "..") || name.contains('/') {
            return Err(io::Error::other("not a directory"));
        }
        let path = self.path.join(name);
        let file = open_directory(&path)?;
        self.check_same(name, &file)?;
        Ok(OpenDir { file, path })
    }

    /// Creates the directory `name` in this one with `mode` (less the
    /// umask); false if it was there already.
    pub fn create_child(&self, name: &str, mode: u32) -> io::Result<bool> {
        let mode = nix::sys::stat::Mode::from_bits_truncate(mode);
        match nix::sys::stat::mkdirat(Some(self.fd()), name, mode) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::EEXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The names in the directory, but `.` and `..` and names that are
    /// not UTF-8.
    pub fn names(&self) -> io::Result<Vec<String>> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mode = nix::sys::stat::Mode::empty();
        let mut dir = nix::dir::Dir::openat(Some(self.fd()), ".", flags, mode)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            if let Ok(name) = entry?.file_name().to_str() {
                if !matches!(name, "." | "..") {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// The size of `name` if it is a regular file (not a link to one).
    pub fn regular_size(&self, name: &str) -> Option<u64> {
        let stat = self.stat(name)?;
        (file_type(&stat) == nix::sys::stat::SFlag::S_IFREG)
            .then(|| u64::try_from(stat.st_size).ok())
            .flatten()
    }

    /// True if `name` is there (a link counts, wherever it points).
    pub fn exists(&self, name: &str) -> bool {
        self.stat(name).is_some()
    }

    /// True if `name` is a symbolic link.
    pub fn is_link(&self, name: &str) -> bool {
        self.stat(name)
            .is_some_and(|stat| file_type(&stat) == nix::sys::stat::SFlag::S_IFLNK)
    }

    /// Opens `name` for reading if it is the regular file this directory
    /// holds ([`open_regular`], then checked against the entry).
    pub fn open_regular(&self, name: &str) -> io::Result<File> {
        let file = open_regular(&self.path.join(name))?;
        self.check_same(name, &file)?;
        Ok(file)
    }

    /// Renames the entry `from` to `to`, replacing `to`.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        Ok(nix::fcntl::renameat(
            Some(self.fd()),
            from,
            Some(self.fd()),
            to,
        )?)
    }

    /// Removes the file `name`.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        use nix::unistd::{unlinkat, UnlinkatFlags};
        Ok(unlinkat(Some(self.fd()), name, UnlinkatFlags::NoRemoveDir)?)
    }

    /// Makes the renames and removals in it so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Where it was opened, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_same(&self, name: &str, file: &File) -> io::Result<()> {
        let opened = file.metadata()?;
        let held = nix::sys::stat::fstatat(
            Some(self.fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if opened.dev() != held.st_dev || opened.ino() != held.st_ino {
            return Err(io::Error::other(
                "not the file the directory holds: the path was changed",
            ));
        }
        Ok(())
    }

    fn stat(&self, name: &str) -> Option<nix::sys::stat::FileStat> {
        let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        nix::sys::stat::fstatat(Some(self.fd()), name, flags).ok()
    }

    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }
}

fn file_type(stat: &nix::sys::stat::FileStat) -> nix::sys::stat::SFlag {
    nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT
}
