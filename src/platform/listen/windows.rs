//! Windows: SO_EXCLUSIVEADDRUSE, no local sockets or inherited descriptors
//! (2.6.1 has neither there), interfaces by `GetAdaptersAddresses`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::windows::io::AsRawSocket;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetAdaptersAddresses, GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_DNS_SERVER, GAA_FLAG_SKIP_MULTICAST,
    IP_ADAPTER_ADDRESSES_LH,
};
use windows_sys::Win32::Networking::WinSock::{
    setsockopt, AF_INET, AF_INET6, AF_UNSPEC, SOCKADDR_IN, SOCKADDR_IN6, SOL_SOCKET,
    SO_EXCLUSIVEADDRUSE, WSAEADDRNOTAVAIL, WSAEAFNOSUPPORT,
};

use crate::platform::unsupported;

/// Local sockets do not exist on Windows: no value of this type exists.
#[derive(Debug)]
pub enum LocalListener {}
/// See [`LocalListener`].
#[derive(Debug)]
pub enum AsyncLocalListener {}
/// See [`LocalListener`].
#[derive(Debug)]
pub enum LocalStream {}

pub(super) fn set_address_use(socket: &socket2::Socket) -> io::Result<()> {
    let on: i32 = 1;
    // SAFETY: a valid socket and a four-byte option value.
    let rc = unsafe {
        setsockopt(
            socket.as_raw_socket() as usize,
            SOL_SOCKET,
            SO_EXCLUSIVEADDRUSE,
            (&on as *const i32).cast(),
            4,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// 2.6.1's words when an SMTP client closes its end of the connection:
/// on Windows it learns of it from the socket's close event (`FD_CLOSE`),
/// which it words as a shutdown.
pub const PEER_CLOSED: &str = "peer shutdown";

/// Fails: no Unix-domain listeners on Windows.
pub fn bind_local(_path: &Path) -> io::Result<LocalListener> {
    Err(unsupported("a local socket"))
}

/// Never called (no [`LocalListener`] exists).
pub fn into_async(listener: LocalListener) -> io::Result<AsyncLocalListener> {
    match listener {}
}

/// Never called (no [`AsyncLocalListener`] exists).
pub async fn accept_local(listener: &AsyncLocalListener) -> io::Result<(LocalStream, String)> {
    match *listener {}
}

/// Fails: no Unix-domain sockets on Windows.
pub async fn connect_local(_path: &Path) -> io::Result<LocalStream> {
    Err(unsupported("a local socket"))
}

/// Fails: `fd#N` is Unix-only.
pub fn inherited_listener(_fd: i32) -> io::Result<std::net::TcpListener> {
    Err(unsupported("an inherited socket"))
}

impl LocalStream {
    /// Never called (no [`LocalStream`] exists).
    pub fn try_write(&self, _bytes: &[u8]) -> io::Result<usize> {
        match *self {}
    }
}

impl AsyncRead for LocalStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match *self {}
    }
}

impl AsyncWrite for LocalStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        match *self {}
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
}

/// Every adapter's names (its friendly name, as `ipconfig` shows it, and
/// its GUID name) and addresses.
pub(super) fn interfaces() -> io::Result<Vec<(String, IpAddr)>> {
    let flags = GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST | GAA_FLAG_SKIP_DNS_SERVER;
    adapters(flags, read_adapters)
}

/// The DNS servers of every adapter, in the system's order.
pub(crate) fn dns_servers() -> io::Result<Vec<IpAddr>> {
    adapters(
        GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST,
        read_dns_servers,
    )
}

/// Calls `GetAdaptersAddresses` with a buffer large enough, and reads it.
fn adapters<T>(
    flags: u32,
    read: fn(*const IP_ADAPTER_ADDRESSES_LH) -> Vec<T>,
) -> io::Result<Vec<T>> {
    let mut size: u32 = 16 * 1024;
    let mut buffer: Vec<u64> = Vec::new();
    for _ in 0..4 {
        buffer = vec![0u64; (size as usize).div_ceil(8)];
        // SAFETY: a buffer of `size` bytes, 8-aligned as the list needs.
        let rc = unsafe {
            GetAdaptersAddresses(
                u32::from(AF_UNSPEC),
                flags,
                std::ptr::null(),
                buffer.as_mut_ptr().cast(),
                &mut size,
            )
        };
        match rc {
            0 => return Ok(read(buffer.as_ptr().cast())),
            111 => continue, // ERROR_BUFFER_OVERFLOW: `size` says how much.
            232 => return Ok(Vec::new()), // ERROR_NO_DATA
            code => return Err(io::Error::from_raw_os_error(code as i32)),
        }
    }
    drop(buffer);
    Err(io::Error::other("the adapter list keeps growing"))
}

fn read_adapters(mut adapter: *const IP_ADAPTER_ADDRESSES_LH) -> Vec<(String, IpAddr)> {
    let mut found = Vec::new();
    // SAFETY: walks the list GetAdaptersAddresses wrote into the buffer,
    // which outlives this call; every pointer is checked for null.
    unsafe {
        while let Some(a) = adapter.as_ref() {
            let friendly = wide_to_string(a.FriendlyName);
            let guid = std::ffi::CStr::from_ptr(a.AdapterName.cast())
                .to_string_lossy()
                .into_owned();
            let mut unicast = a.FirstUnicastAddress;
            while let Some(u) = unicast.as_ref() {
                if let Some(ip) = socket_ip(u.Address.lpSockaddr) {
                    found.push((friendly.clone(), ip));
                    found.push((guid.clone(), ip));
                }
                unicast = u.Next;
            }
            adapter = a.Next;
        }
    }
    found
}

fn read_dns_servers(mut adapter: *const IP_ADAPTER_ADDRESSES_LH) -> Vec<IpAddr> {
    let mut found = Vec::new();
    // SAFETY: as in `read_adapters`.
    unsafe {
        while let Some(a) = adapter.as_ref() {
            let mut server = a.FirstDnsServerAddress;
            while let Some(s) = server.as_ref() {
                found.extend(socket_ip(s.Address.lpSockaddr));
                server = s.Next;
            }
            adapter = a.Next;
        }
    }
    found
}

/// # Safety
/// `sa` is null or points to a socket address of its family's size.
unsafe fn socket_ip(
    sa: *const windows_sys::Win32::Networking::WinSock::SOCKADDR,
) -> Option<IpAddr> {
    let family = sa.as_ref()?.sa_family;
    if family == AF_INET {
        let v4 = &*(sa.cast::<SOCKADDR_IN>());
        Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
            v4.sin_addr.S_un.S_addr,
        ))))
    } else if family == AF_INET6 {
        let v6 = &*(sa.cast::<SOCKADDR_IN6>());
        Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.u.Byte)))
    } else {
        None
    }
}

/// # Safety
/// `p` is null or a NUL-terminated UTF-16 string.
unsafe fn wide_to_string(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    while *p.add(len) != 0 {
        len += 1;
    }
    String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
}

/// True for the errors that binding gives when the address family or the
/// address is not available on this host at all.
pub fn is_unavailable_address(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(WSAEAFNOSUPPORT) | Some(WSAEADDRNOTAVAIL)
    )
}
