//! Windows: no fork, no accounts to switch to, no umask, no descriptor
//! limit worth raising. E-MailRelay 2.6.1 on Windows has no `--user` and
//! runs in the background as a service; the same holds here.

use std::io;
use std::path::Path;

use crate::platform::unsupported;

/// Nothing waits for a Windows process to say it is ready.
#[derive(Debug)]
pub struct Ready;

impl Ready {
    /// Does nothing: there is no waiting parent.
    pub fn notify(self) {}
}

/// Stays in the foreground: on Windows a relay runs in the background as
/// a service (`emailrelay-service`), as E-MailRelay's does.
pub fn daemonise() -> io::Result<Ready> {
    Ok(Ready)
}

/// An account to run as: none on Windows (`--user` is Unix-only).
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
}

impl Account {
    /// Fails: there is no switching user on Windows.
    pub fn find(_name: &str) -> io::Result<Account> {
        Err(unsupported("running as another user"))
    }

    /// Fails: see [`Account::find`].
    pub fn give(&self, _path: &Path) -> io::Result<()> {
        Err(unsupported("giving a file to another user"))
    }

    /// Fails: see [`Account::find`].
    pub fn give_group(&self, _file: &std::fs::File) -> io::Result<()> {
        Err(unsupported("giving a file to another group"))
    }
}

/// A monitored relay process: never exists on Windows.
#[derive(Clone, Copy, Debug)]
pub enum Worker {}

/// Which side of [`fork_monitor`] this process is.
pub enum Role {
    Monitor(Worker),
    Worker,
}

/// Fails: there is no fork on Windows.
pub fn fork_monitor() -> io::Result<Role> {
    Err(unsupported("a monitor process"))
}

/// Never called: there is no [`Worker`] value on Windows.
pub fn monitor(worker: Worker, _user: &Account) -> i32 {
    match worker {}
}

/// This process's own id (there is no monitor above it).
pub fn parent_pid() -> u32 {
    std::process::id()
}

/// Runs `f`: there are no ids to switch on Windows.
pub fn with_root<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// Runs `f`: there are no borrowed ids on Windows.
pub fn as_caller<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// Nothing to do: the logger stops writing to standard error itself.
pub fn close_stderr() -> io::Result<()> {
    Ok(())
}

/// Fails: see [`Account::find`].
pub fn drop_privileges(_user: &Account) -> io::Result<()> {
    Err(unsupported("running as another user"))
}

/// Never on Windows.
pub fn is_setuid_root() -> bool {
    false
}

/// Nothing to give up.
pub fn give_up_setuid_root() -> io::Result<()> {
    Ok(())
}

/// Never "root" on Windows: `--user` is not taken there, so no switch is
/// ever asked for.
pub fn is_root() -> bool {
    false
}

/// Windows decides by the directory's access list when a file is made;
/// nothing can be told beforehand without opening one.
pub fn can_write(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// No umask on Windows: new files inherit the directory's access list.
pub fn set_file_mask() {}

/// Nothing to raise on Windows.
pub fn raise_file_limit() {}

/// Windows has no per-process descriptor limit that sessions would meet
/// first; this bounds sessions at 8,192 (see `serve::SessionLimit`).
pub fn file_limit() -> u64 {
    8192 * 4 + 32
}
