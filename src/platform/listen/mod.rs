//! Listening sockets where Unix and Windows differ:
//!
//! - a TCP listener takes `SO_REUSEADDR` on Unix (a restart binds at once
//!   despite connections in TIME_WAIT) and `SO_EXCLUSIVEADDRUSE` on
//!   Windows, where `SO_REUSEADDR` would let a second program bind the
//!   same port and steal connections (2.6.1 binds exclusively there too);
//! - local (Unix-domain) sockets and inherited descriptors (`fd#N`,
//!   systemd's) exist on Unix only;
//! - the addresses of a named network interface.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

use std::net::{IpAddr, SocketAddr};

/// Binds a TCP listener (the IPv6 wildcard IPv6-only, so that it can sit
/// beside the IPv4 wildcard on the same port), non-blocking, not yet
/// registered with the runtime.
pub fn bind_tcp(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    set_address_use(&socket)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The addresses of the network interface `name`.
pub fn interface_addresses(name: &str) -> std::io::Result<Vec<IpAddr>> {
    Ok(interfaces()?
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, ip)| ip)
        .collect())
}
