//! Unix: getaddrinfo's canonical name, resolv.conf, TIOCGWINSZ, termios.

use std::ffi::{CStr, CString};
use std::io::{self, BufRead};
use std::net::IpAddr;
use std::path::PathBuf;

/// Where the spool is when `--spool-dir` is not given.
pub fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/spool/emailrelay")
}

/// The system's trusted root certificates (DER), where OpenSSL cannot find
/// them itself: `None` on Unix, where its default paths are the system's.
pub fn system_roots() -> Option<Vec<Vec<u8>>> {
    None
}

/// The first `nameserver` of /etc/resolv.conf.
pub fn nameserver() -> Option<IpAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<IpAddr>().ok())
            .flatten()
    })
}

/// The width of the terminal on standard output, if it is one.
pub(super) fn terminal_columns() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass; a
    // descriptor that is not a terminal makes it fail, touching nothing.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then(|| usize::from(size.ws_col))
}

/// Reads one line from standard input; when it is a terminal, with a
/// prompt on standard error and without echoing what is typed.
pub fn read_secret_line(prompt: &str) -> Vec<u8> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::Write;
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
        crate::stderr!("{prompt}");
        let _ = io::stderr().flush();
    }
    let mut line = Vec::new();
    let _ = stdin.lock().read_until(b'\n', &mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        crate::stderrln!();
    }
    line
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
