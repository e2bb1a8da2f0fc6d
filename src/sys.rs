//! The few operating-system calls that need `unsafe` or process-wide
//! effects: fork into the background, inherited sockets, privilege drop
//! and the host's canonical name. Kept in one module so they are easy to
//! audit; nothing else in the crate uses `unsafe`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

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
    pub uid: nix::unistd::Uid,
    pub gid: nix::unistd::Gid,
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
}

/// Which side of [`fork_monitor`] this process is.
pub enum Role {
    /// The parent: keeps the pid and waits for the worker.
    Monitor(nix::unistd::Pid),
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

/// The signals that stop the relay or reopen its log.
fn stop_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Holds SIGTERM, SIGINT and SIGHUP back from the start, before any port
/// listens, so that one sent as soon as a connection succeeds waits for
/// the handlers instead of killing the process. Called while
/// single-threaded; `release_stop_signals` lets them in.
pub fn hold_stop_signals() -> io::Result<()> {
    stop_signals().thread_block().map_err(io::Error::from)
}

/// Lets SIGTERM, SIGINT and SIGHUP in to this thread again, once their
/// handlers are installed (a pending one is delivered now). The runtime's
/// other threads keep them blocked, so they always reach this one; child
/// processes start with an empty mask (the standard library resets it).
pub fn release_stop_signals() -> io::Result<()> {
    stop_signals().thread_unblock().map_err(io::Error::from)
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
            for signal in stop_signals().iter() {
                others.remove(signal);
            }
            others.thread_unblock().map_err(io::Error::from)?;
            // The relay does not outlive its monitor.
            // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number only.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
            Ok(Role::Worker)
        }
        pid => Ok(Role::Monitor(nix::unistd::Pid::from_raw(pid))),
    }
}

/// The monitor's life: take E-MailRelay's identity (real user root,
/// effective user and group `user`), pass signals on to the worker, and
/// return its exit code once it has ended.
pub fn monitor(worker: nix::unistd::Pid, user: &Account) -> i32 {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
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

/// Points the given descriptors at /dev/null (`--close-stderr` uses fd 2).
pub fn redirect_to_null(fds: &[i32]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for &fd in fds {
        nix::unistd::dup2(null.as_raw_fd(), fd).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Takes over an inherited listening socket (`--interface fd#N`).
pub fn inherited_listener(fd: i32) -> io::Result<std::net::TcpListener> {
    let stat = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd#{fd} is not a socket"),
        ));
    }
    // SAFETY: the descriptor was checked to be an open socket and is owned
    // by nothing else in this process: it came from our parent.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
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

/// The width `--help` wraps to: `$COLUMNS` if set (as E-MailRelay 2.6.1
/// reads it), else the width of the terminal on standard output, else 80.
pub fn help_columns() -> usize {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return columns;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass; a
    // descriptor that is not a terminal makes it fail, touching nothing.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    match ok && size.ws_col > 0 {
        true => usize::from(size.ws_col),
        false => 80,
    }
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

/// Gives a directory we just created to the account we are about to become.
pub fn give_to_user(path: &std::path::Path, name: &str) -> io::Result<()> {
    let user = nix::unistd::User::from_name(name)
        .map_err(io::Error::from)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such user: {name}")))?;
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(io::Error::from)
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

/// The canonical name of this host (the `--domain` default), falling back
/// to the plain host name when the resolver does not know it.
pub fn canonical_hostname() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    canonical_name(&host).unwrap_or(host)
}

fn canonical_name(host: &str) -> Option<String> {
    let node = CString::new(host).ok()?;
    // SAFETY: a zeroed addrinfo is a valid "no hints" value; the result list
    // is read only while it is alive and freed exactly once.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_socktype = libc::SOCK_STREAM;
        let mut list: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(node.as_ptr(), std::ptr::null(), &hints, &mut list) != 0
            || list.is_null()
        {
            return None;
        }
        let name = (*list).ai_canonname;
        let result = (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned());
        libc::freeaddrinfo(list);
        result.filter(|n| !n.is_empty())
    }
}
