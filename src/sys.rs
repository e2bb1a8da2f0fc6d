//! The few operating-system calls that need `unsafe` or process-wide
//! effects: fork into the background, inherited sockets, privilege drop
//! and the host's canonical name. Kept in one module so they are easy to
//! audit; nothing else in the crate uses `unsafe`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::FromRawFd;

/// Forks into the background: the parent exits 0 at once, the child
/// becomes a session leader. Must be called before any thread is started
/// (the tokio runtime is built after this).
pub fn daemonise() -> io::Result<()> {
    // SAFETY: called while the process is single-threaded (before the
    // runtime exists), so the child has a consistent copy of all state.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            nix::unistd::setsid().map_err(io::Error::from)?;
            // Detach from the caller's terminal or pipes: a daemon that keeps
            // them open makes `$(emailrelay ...)` or a test harness wait forever.
            redirect_to_null(&[0, 1])
        }
        // SAFETY: _exit is async-signal-safe and skips the parent's atexit
        // handlers and buffered output, which belong to the child now.
        _ => unsafe { libc::_exit(0) },
    }
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

/// Drops root for good: supplementary groups, group, then user.
pub fn drop_privileges(name: &str) -> io::Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, User};
    let user = User::from_name(name)
        .map_err(io::Error::from)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such user: {name}")))?;
    setgroups(&[user.gid]).map_err(io::Error::from)?;
    setgid(user.gid).map_err(io::Error::from)?;
    setuid(user.uid).map_err(io::Error::from)?;
    Ok(())
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
