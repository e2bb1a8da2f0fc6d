//! Unix: fork, setsid, set*id, rlimits, umask.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The daemon's promise to its waiting parent: [`Ready::notify`] once
/// the relay is listening, or nothing (the pipe closes) if it fails first.
#[derive(Debug)]
pub struct Ready(std::os::fd::OwnedFd);

impl Ready {
    /// Tells the waiting parent that startup succeeded.
    pub fn notify(self) {
        let _ = nix::unistd::write(&self.0, b"1");
    }
}

/// Forks into the background. The parent waits until the child says it is
/// ready and then exits 0, or exits 1 if the child ends first, so that the
/// caller (a shell, an init script, systemd's forking type) learns whether
/// startup worked. The child becomes a session leader with standard input
/// and output on /dev/null. Must be called before any thread is started
/// (the tokio runtime is built after this).
pub fn daemonise() -> io::Result<Ready> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(io::Error::from)?;
    // SAFETY: called while the process is single-threaded (before the
    // runtime exists), so the child has a consistent copy of all state.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read_end);
            nix::unistd::setsid().map_err(io::Error::from)?;
            // Relative file names were made absolute for this (config).
            nix::unistd::chdir("/").map_err(io::Error::from)?;
            // Detach from the caller's terminal or pipes: a daemon that keeps
            // them open makes `$(emailrelay ...)` or a test harness wait forever.
            redirect_to_null(&[0, 1])?;
            Ok(Ready(write_end))
        }
        _ => {
            drop(write_end);
            let mut byte = [0u8; 1];
            let code = loop {
                match nix::unistd::read(read_end.as_raw_fd(), &mut byte) {
                    Ok(1) => break 0,
                    Err(nix::errno::Errno::EINTR) => continue,
                    _ => break 1,
                }
            };
            // SAFETY: _exit is async-signal-safe and skips the parent's atexit
            // handlers and buffered output, which belong to the child now.
            unsafe { libc::_exit(code) }
        }
    }
}

/// An account to run as, looked up once.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

impl Account {
    /// Looks an account up by name.
    pub fn find(name: &str) -> io::Result<Account> {
        let user = nix::unistd::User::from_name(name)
            .map_err(io::Error::from)?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no such user: {name}"))
            })?;
        Ok(Account {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
        })
    }

    /// Gives `path` to this account (a directory we just created for it).
    pub fn give(&self, path: &Path) -> io::Result<()> {
        nix::unistd::chown(path, Some(self.uid), Some(self.gid)).map_err(io::Error::from)
    }

    /// Makes the open `file`'s group this account's group.
    pub fn give_group(&self, file: &std::fs::File) -> io::Result<()> {
        nix::unistd::fchown(file.as_raw_fd(), None, Some(self.gid)).map_err(io::Error::from)
    }
}

/// The relay process that a monitor watches.
#[derive(Clone, Copy, Debug)]
pub struct Worker(nix::unistd::Pid);

/// Which side of [`fork_monitor`] this process is.
pub enum Role {
    /// The parent: keeps the pid and waits for the worker.
    Monitor(Worker),
    /// The child: the relay.
    Worker,
}

/// The signals a monitor passes on to its worker (and SIGCHLD).
fn monitored_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGCHLD,
    ] {
        set.add(signal);
    }
    set
}

/// Splits into a monitor (this process, the parent) and the relay (a
/// child). Signals are blocked across the fork so that none sent to the
/// monitor in between is lost; the worker unblocks them again, except the
/// stop signals, which wait for its handlers. Must be called while
/// single-threaded.
pub fn fork_monitor() -> io::Result<Role> {
    let set = monitored_signals();
    set.thread_block().map_err(io::Error::from)?;
    // SAFETY: called before any thread exists (no runtime yet).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let mut others = set;
            for signal in crate::platform::signals::stop_signals().iter() {
                others.remove(signal);
            }
            others.thread_unblock().map_err(io::Error::from)?;
            // The relay does not outlive its monitor.
            // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number only.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
            Ok(Role::Worker)
        }
        pid => Ok(Role::Monitor(Worker(nix::unistd::Pid::from_raw(pid)))),
    }
}

/// The monitor's life: take E-MailRelay's identity (real user root,
/// effective user and group `user`), pass signals on to the worker, and
/// return its exit code once it has ended.
pub fn monitor(worker: Worker, user: &Account) -> i32 {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let worker = worker.0;
    let _ = nix::unistd::setegid(user.gid);
    let _ = nix::unistd::seteuid(user.uid);
    let set = monitored_signals();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(worker, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => return code,
                    Ok(WaitStatus::Signaled(_, signal, _)) => {
                        crate::error!("the relay process was ended by {signal}");
                        return 128 + signal as i32;
                    }
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return 1,
                }
            },
            Ok(signal) => {
                let _ = kill(worker, signal);
            }
            Err(_) => continue,
        }
    }
}

/// The monitor's pid, as the worker sees it.
pub fn parent_pid() -> u32 {
    nix::unistd::getppid().as_raw().unsigned_abs()
}

/// Runs `f` with the effective user root again (the monitor's real user
/// is root), then goes back.
pub fn with_root<T>(f: impl FnOnce() -> T) -> T {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let _ = nix::unistd::seteuid(nix::unistd::Uid::from_raw(0));
    let _ = nix::unistd::setegid(nix::unistd::Gid::from_raw(0));
    let result = f();
    let _ = nix::unistd::setegid(gid);
    let _ = nix::unistd::seteuid(uid);
    result
}

/// Runs `f` with the effective group and user ids set to the real ones
/// (a set-group-id tool reading a file for its caller), then puts them back.
pub fn as_caller<T>(f: impl FnOnce() -> T) -> T {
    use nix::unistd::{getegid, geteuid, getgid, getuid, setegid, seteuid};
    let (egid, euid) = (getegid(), geteuid());
    let swap_gid = egid != getgid() && setegid(getgid()).is_ok();
    let swap_uid = euid != getuid() && seteuid(getuid()).is_ok();
    let result = f();
    if swap_uid {
        let _ = seteuid(euid);
    }
    if swap_gid {
        let _ = setegid(egid);
    }
    result
}

/// Points the given descriptors at /dev/null (`--close-stderr` uses fd 2).
fn redirect_to_null(fds: &[i32]) -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for &fd in fds {
        nix::unistd::dup2(null.as_raw_fd(), fd).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Points standard error at the null device (`--close-stderr`).
pub fn close_stderr() -> io::Result<()> {
    redirect_to_null(&[2])
}

/// Drops root for good: supplementary groups, group, then user (real,
/// effective and saved ids alike), so the relay can never regain it.
pub fn drop_privileges(user: &Account) -> io::Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid};
    setgroups(&[user.gid]).map_err(io::Error::from)?;
    setresgid(user.gid, user.gid, user.gid).map_err(io::Error::from)?;
    setresuid(user.uid, user.uid, user.uid).map_err(io::Error::from)?;
    Ok(())
}

/// True when running set-user-id root: effective user root, real user not.
pub fn is_setuid_root() -> bool {
    nix::unistd::geteuid().is_root() && !nix::unistd::getuid().is_root()
}

/// Becomes the real user (and group) for good: real, effective and saved
/// ids alike, and no supplementary groups but the real group.
pub fn give_up_setuid_root() -> io::Result<()> {
    use nix::unistd::{getgid, getuid, setgroups, setresgid, setresuid};
    let (uid, gid) = (getuid(), getgid());
    setgroups(&[gid]).map_err(io::Error::from)?;
    setresgid(gid, gid, gid).map_err(io::Error::from)?;
    setresuid(uid, uid, uid).map_err(io::Error::from)
}

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True if this process (its effective ids) may create files in `dir`.
pub fn can_write(dir: &Path) -> io::Result<()> {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(io::Error::from)
}

/// E-MailRelay's permissions: spool and log files rw-rw----, whatever the
/// caller's umask.
pub fn set_file_mask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o007));
}

/// Raises the open-file limit to its hard maximum: every SMTP session is
/// a descriptor, and a burst of connections must not hit a low soft limit.
pub fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// How many files this process may have open (the soft limit).
pub fn file_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}
