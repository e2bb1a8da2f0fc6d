//! Unix: SO_REUSEADDR, Unix-domain sockets, inherited descriptors, getifaddrs.

use std::io;
use std::net::IpAddr;
use std::os::fd::FromRawFd;
use std::path::Path;

/// A local listener (a Unix-domain socket), not yet registered with the runtime.
pub type LocalListener = std::os::unix::net::UnixListener;
/// A local listener registered with the runtime.
pub type AsyncLocalListener = tokio::net::UnixListener;
/// A connection over a local socket.
pub type LocalStream = tokio::net::UnixStream;

pub(super) fn set_address_use(socket: &socket2::Socket) -> io::Result<()> {
    socket.set_reuse_address(true)
}

/// 2.6.1's words when an SMTP client closes its end of the connection
/// (a read of nothing).
pub const PEER_CLOSED: &str = "peer disconnected";

/// Binds a Unix-domain socket at `path` (a stale one is replaced).
pub fn bind_local(path: &Path) -> io::Result<LocalListener> {
    let _ = std::fs::remove_file(path);
    let listener = LocalListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Registers a local listener with the runtime.
pub fn into_async(listener: LocalListener) -> io::Result<AsyncLocalListener> {
    tokio::net::UnixListener::from_std(listener)
}

/// Accepts one connection; also says the socket's path.
pub async fn accept_local(listener: &AsyncLocalListener) -> io::Result<(LocalStream, String)> {
    let (stream, _) = listener.accept().await?;
    let path = stream
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_default();
    Ok((stream, path))
}

/// Connects to the Unix-domain socket at `path`.
pub async fn connect_local(path: &Path) -> io::Result<LocalStream> {
    tokio::net::UnixStream::connect(path).await
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

/// Every interface's name and addresses.
pub(super) fn interfaces() -> io::Result<Vec<(String, IpAddr)>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    Ok(addrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some((ifa.interface_name, ip))
        })
        .collect())
}

/// True for the errors that binding gives when the address family or the
/// address is not available on this host at all (no IPv6).
pub fn is_unavailable_address(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}
