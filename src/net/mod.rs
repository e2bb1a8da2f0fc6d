//! Network addresses: `--interface` syntax, listening sockets, the
//! local-address rule of `--remote-clients`, and outgoing connections.
//!
//! Speaks no protocol but SOCKS 4a; it hands out connected or listening sockets.

pub mod dns;
pub mod dnsbl;
pub mod line;
pub mod socks;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use crate::platform::listen;

/// Which listener an `--interface` entry applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Smtp,
    Pop,
    Admin,
    /// The operator HTTP endpoint (`--http-port`); not in 2.6.1.
    Http,
}

/// One `--interface` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// `smtp=`, `pop=`, `admin=` or `http=`; `None` applies to all
    /// (to `http` only with `--remote-clients`: see [`http_listen_addresses`]).
    pub service: Option<Service>,
    pub listen: ListenOn,
}

/// What an `--interface` entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenOn {
    Ip(IpAddr),
    /// An absolute path: a unix-domain socket.
    Unix(PathBuf),
    /// `fd#N`: an inherited listening socket.
    Fd(i32),
}

/// A listening endpoint, port included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Fd(i32),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => f.write_str(&display_addr(addr)),
            Listen::Unix(path) => write!(f, "{}", path.display()),
            Listen::Fd(fd) => write!(f, "fd#{fd}"),
        }
    }
}

/// E-MailRelay's address display: `1.2.3.4:25`, and `::1.25` for IPv6.
pub fn display_addr(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("{}.{}", a.ip(), a.port()),
    }
}

/// Why an `--interface` value is refused.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// A `name=` prefix other than `smtp`, `pop`, `admin` and `http`.
    #[error("unknown prefix {0}=")]
    UnknownPrefix(String),
    /// `fd#` without a number after it.
    #[error("invalid file descriptor {0}")]
    BadDescriptor(String),
    /// The system's interfaces cannot be listed.
    #[error("cannot list interfaces: {0}")]
    List(std::io::Error),
    /// Neither an address nor the name of an interface with one.
    #[error("no such address or interface: {0}")]
    NotFound(String),
}

/// Parses `--interface` values: comma lists of addresses, interface names,
/// paths or `fd#N`, each with an optional `smtp=`/`pop=`/`admin=`/`http=`
/// prefix.
pub fn parse_interfaces(values: &[String]) -> Result<Vec<InterfaceSpec>, InterfaceError> {
    let mut specs = Vec::new();
    for item in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (service, what) = match item.split_once('=') {
            Some(("smtp", rest)) => (Some(Service::Smtp), rest),
            Some(("pop", rest)) => (Some(Service::Pop), rest),
            Some(("admin", rest)) => (Some(Service::Admin), rest),
            Some(("http", rest)) => (Some(Service::Http), rest),
            Some((other, _)) => return Err(InterfaceError::UnknownPrefix(other.to_string())),
            None => (None, item),
        };
        for listen in parse_listen_on(what)? {
            specs.push(InterfaceSpec { service, listen });
        }
    }
    Ok(specs)
}

fn parse_listen_on(what: &str) -> Result<Vec<ListenOn>, InterfaceError> {
    if let Some(fd) = what.strip_prefix("fd#") {
        return fd
            .parse()
            .map(|n| vec![ListenOn::Fd(n)])
            .map_err(|_| InterfaceError::BadDescriptor(what.to_string()));
    }
    if what.starts_with('/') {
        return Ok(vec![ListenOn::Unix(PathBuf::from(what))]);
    }
    if let Ok(ip) = what.parse::<IpAddr>() {
        return Ok(vec![ListenOn::Ip(ip)]);
    }
    interface_addresses(what)
}

/// The addresses of a network interface, with the `-ipv4`/`-ipv6` suffixes.
fn interface_addresses(name: &str) -> Result<Vec<ListenOn>, InterfaceError> {
    let (base, family) = match (name.strip_suffix("-ipv4"), name.strip_suffix("-ipv6")) {
        (Some(b), _) => (b, Some(4)),
        (_, Some(b)) => (b, Some(6)),
        _ => (name, None),
    };
    let addrs = crate::platform::listen::interface_addresses(base).map_err(InterfaceError::List)?;
    let mut found = Vec::new();
    for ip in addrs {
        let wanted = match family {
            Some(4) => ip.is_ipv4(),
            Some(_) => ip.is_ipv6(),
            None => true,
        };
        if wanted {
            found.push(ListenOn::Ip(ip));
        }
    }
    if found.is_empty() {
        return Err(InterfaceError::NotFound(name.to_string()));
    }
    Ok(found)
}

/// Listening sockets that systemd passed (socket activation, as
/// `sd_listen_fds(3)` describes it: `LISTEN_PID` is ours, `LISTEN_FDS`
/// descriptors from 3, named by `LISTEN_FDNAMES` from each socket's
/// `FileDescriptorName=`): `smtp`, `pop`, `admin` and `http` go to that service,
/// any other name (or none) to SMTP.
///
/// Given to one instance only, the first that asks (`instance` is its
/// name), which is the first without an `--interface` of its own: two
/// owners of one descriptor would close it twice. `None` when there are
/// none, or they belong to another instance.
pub fn systemd_listeners(instance: &str) -> Option<Vec<InterfaceSpec>> {
    static OWNER: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let ours = std::env::var("LISTEN_PID").ok()?.parse::<u32>().ok()? == std::process::id();
    let count: i32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if !ours || count <= 0 {
        return None;
    }
    let mut owner = OWNER.lock().unwrap_or_else(|e| e.into_inner());
    if owner.get_or_insert_with(|| instance.to_string()) != instance {
        return None;
    }
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    let specs = (0..count.min(1024))
        .map(|i| {
            let service = match names.next() {
                Some("pop") => Service::Pop,
                Some("admin") => Service::Admin,
                Some("http") => Service::Http,
                _ => Service::Smtp,
            };
            InterfaceSpec {
                service: Some(service),
                listen: ListenOn::Fd(SD_LISTEN_FDS_START + i),
            }
        })
        .collect();
    Some(specs)
}

/// The first descriptor systemd passes.
const SD_LISTEN_FDS_START: i32 = 3;

/// The endpoints a service listens on: its own and unprefixed entries, or
/// the IPv4 and IPv6 wildcards if there are none.
pub fn listen_addresses(specs: &[InterfaceSpec], service: Service, port: u16) -> Vec<Listen> {
    let chosen: Vec<Listen> = specs
        .iter()
        .filter(|s| s.service.is_none_or(|want| want == service))
        .map(|s| match &s.listen {
            ListenOn::Ip(ip) => Listen::Tcp(SocketAddr::new(*ip, port)),
            ListenOn::Unix(path) => Listen::Unix(path.clone()),
            ListenOn::Fd(fd) => Listen::Fd(*fd),
        })
        .collect();
    if !chosen.is_empty() {
        return chosen;
    }
    vec![
        Listen::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        Listen::Tcp(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)),
    ]
}

/// Where the HTTP endpoint listens: exactly its `http=` entries; without
/// any, the loopback addresses, unless `--remote-clients` opens it as the
/// other listeners are (unprefixed entries, or the wildcards). Operators'
/// data and actions stay on the machine unless the operator says otherwise.
pub fn http_listen_addresses(
    specs: &[InterfaceSpec],
    remote_clients: bool,
    port: u16,
) -> Vec<Listen> {
    let own: Vec<InterfaceSpec> = specs
        .iter()
        .filter(|s| s.service == Some(Service::Http))
        .cloned()
        .collect();
    if !own.is_empty() {
        return listen_addresses(&own, Service::Http, port);
    }
    if remote_clients {
        return listen_addresses(specs, Service::Http, port);
    }
    vec![
        Listen::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        Listen::Tcp(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)),
    ]
}

/// True for loopback, private and link-local addresses (RFC 1918, RFC 6890,
/// RFC 4193): the only ones allowed without `--remote-clients`.
pub fn is_local_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_address(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// A bound listening socket, not yet registered with the runtime (so that
/// binding can happen before daemonising and before dropping root).
#[derive(Debug)]
pub enum BoundListener {
    Tcp(std::net::TcpListener),
    Unix(crate::platform::listen::LocalListener),
}

/// Listen backlog: a burst of 1000 simultaneous connects must all be greeted.
const BACKLOG: i32 = 4096;

/// Binds one endpoint. The IPv6 wildcard is bound IPv6-only so that it can
/// sit beside the IPv4 wildcard on the same port.
pub fn bind(listen: &Listen) -> io::Result<BoundListener> {
    match listen {
        Listen::Tcp(addr) => Ok(BoundListener::Tcp(listen::bind_tcp(*addr, BACKLOG)?)),
        Listen::Unix(path) => Ok(BoundListener::Unix(listen::bind_local(path)?)),
        Listen::Fd(fd) => {
            let listener = listen::inherited_listener(*fd)?;
            listener.set_nonblocking(true)?;
            Ok(BoundListener::Tcp(listener))
        }
    }
}

/// A connected byte stream of any kind.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why an outgoing connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address text does not parse.
    #[error("invalid address [{0}]")]
    Syntax(String),
    /// Name resolution failed or found nothing usable (E-MailRelay's words:
    /// `dns error: no such host: "example.invalid" (name or service not known)`).
    #[error("dns error: no such host: \"{0}\" ({1})")]
    Resolve(String, String),
    /// The same, as the startup check words it.
    #[error("no such host: \"{0}\" ({1})")]
    NoSuchHost(String, String),
    /// The TCP connect failed (E-MailRelay's words, which leave out the
    /// system's reason).
    #[error("connect failure: cannot connect to {0}")]
    Connect(String, io::Error),
    /// No answer within the connection timeout.
    #[error("connection timeout connecting to {0}")]
    Timeout(String),
    /// The SOCKS proxy did not connect us.
    #[error("{0}")]
    Socks(#[from] socks::SocksError),
}

/// A forwarding address split into where to connect and how: `target`
/// alone, or `target@proxy` for SOCKS 4a.
pub fn split_proxy(address: &str) -> (&str, Option<&str>) {
    if address.starts_with('/') {
        return (address, None);
    }
    match address.rsplit_once('@') {
        Some((target, proxy)) if !target.is_empty() && !proxy.is_empty() => (target, Some(proxy)),
        _ => (address, None),
    }
}

/// The host part of a forwarding address, for SNI and logging.
pub fn target_host(address: &str) -> String {
    let (target, _) = split_proxy(address);
    split_host_port(target)
        .map(|(host, _)| host)
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Splits `host:port`, `[v6]:port` or `v6:port`; port names smtp,
/// submission and smtps are understood, and a missing port means 25.
pub fn split_host_port(text: &str) -> Result<(String, u16), ConnectError> {
    let syntax = || ConnectError::Syntax(text.to_string());
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(syntax)?;
        (host, after.strip_prefix(':').unwrap_or("25"))
    } else if text.parse::<IpAddr>().is_ok() {
        (text, "25")
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (text, "25"),
        }
    };
    let port = match port {
        "smtp" => 25,
        "submission" => 587,
        "smtps" => 465,
        p => p.parse().map_err(|_| syntax())?,
    };
    if host.is_empty() {
        return Err(syntax());
    }
    Ok((host.to_string(), port))
}

/// Connects to `target` (an address as in `--forward-to`, or a unix socket
/// path), optionally from `local`, within `timeout`. TCP_NODELAY is set:
/// the client writes whole buffers, so Nagle only adds delay.
pub async fn connect(
    target: &str,
    local: Option<IpAddr>,
    timeout: Duration,
) -> Result<Box<dyn Stream>, ConnectError> {
    connect_from(target, local, timeout).await.map(|c| c.stream)
}

/// An outgoing connection and the local address it came from (none for a
/// unix socket).
pub struct Connected {
    pub stream: Box<dyn Stream>,
    pub local: Option<SocketAddr>,
}

/// As [`connect`], also telling the local address.
pub async fn connect_from(
    target: &str,
    local: Option<IpAddr>,
    timeout: Duration,
) -> Result<Connected, ConnectError> {
    let (target, proxy) = split_proxy(target);
    let attempt = async {
        if let Some(proxy) = proxy {
            let (host, port) = split_host_port(target)?;
            let mut connected = connect_tcp(proxy, local).await?;
            socks::connect(&mut connected.stream, &host, port).await?;
            return Ok(connected);
        }
        if target.starts_with('/') {
            let stream = listen::connect_local(Path::new(target))
                .await
                .map_err(|e| ConnectError::Connect(target.into(), e))?;
            return Ok(Connected {
                stream: Box::new(stream),
                local: None,
            });
        }
        connect_tcp(target, local).await
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(ConnectError::Timeout(target.into())))
}

/// Resolves `target` and tries every address in turn.
async fn connect_tcp(target: &str, local: Option<IpAddr>) -> Result<Connected, ConnectError> {
    let (host, port) = split_host_port(target)?;
    let mut last = None;
    for addr in resolve(&host, port, local).await? {
        match connect_one(addr, local).await {
            Ok(stream) => {
                return Ok(Connected {
                    local: stream.local_addr().ok(),
                    stream: Box::new(stream),
                })
            }
            Err(e) => last = Some(ConnectError::Connect(display_addr(&addr), e)),
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Resolve(host, "no address".into())))
}

/// Connects to one address, from `local` if given, with TCP_NODELAY.
async fn connect_one(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local.filter(|ip| !ip.is_unspecified()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Resolves a `host:port` forwarding address, for an early check; the
/// error is the one a connection would give (`no such host: ...`).
pub async fn resolve_target(target: &str) -> Result<Vec<SocketAddr>, ConnectError> {
    let (host, port) = split_host_port(target)?;
    resolve(&host, port, None).await.map_err(|e| match e {
        ConnectError::Resolve(host, why) => ConnectError::NoSuchHost(host, why),
        other => other,
    })
}

/// Resolves a host to the addresses worth trying, in resolver order; with
/// `--client-interface`, only those of its family.
async fn resolve(
    host: &str,
    port: u16,
    local: Option<IpAddr>,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let failed = |why: String| ConnectError::Resolve(host.to_string(), why);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(resolver_words(&e)))?
        .filter(|a| local.is_none_or(|l| l.is_ipv4() == a.is_ipv4()))
        .collect();
    if addrs.is_empty() {
        return Err(failed("no address of the right family".into()));
    }
    Ok(addrs)
}

/// The resolver's reason, as E-MailRelay words it: the library's text
/// without Rust's preamble, starting in lower case.
fn resolver_words(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_parse_with_prefixes_and_lists() {
        let specs = parse_interfaces(&[
            "smtp=127.0.0.1,::1".into(),
            "admin=/run/a.s".into(),
            "fd#3".into(),
        ])
        .unwrap();
        assert_eq!(specs.len(), 4);
        assert_eq!(
            specs[0],
            InterfaceSpec {
                service: Some(Service::Smtp),
                listen: ListenOn::Ip("127.0.0.1".parse().unwrap())
            }
        );
        assert_eq!(specs[1].service, None);
        assert_eq!(listen_addresses(&specs, Service::Smtp, 25).len(), 3);
        assert_eq!(listen_addresses(&specs, Service::Admin, 9).len(), 3);
        assert!(parse_interfaces(&["bogus=1.2.3.4".into()]).is_err());
        assert!(parse_interfaces(&["no-such-interface0".into()]).is_err());
    }

    #[test]
    fn http_listens_on_loopback_unless_told_otherwise() {
        let shown = |specs: &[InterfaceSpec], remote| {
            http_listen_addresses(specs, remote, 8080)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        let plain = parse_interfaces(&["192.0.2.1".into()]).unwrap();
        assert_eq!(shown(&plain, false), ["127.0.0.1:8080", "::1.8080"]);
        assert_eq!(shown(&plain, true), ["192.0.2.1:8080"]);
        assert_eq!(shown(&[], true), ["0.0.0.0:8080", "::.8080"]);
        let own = parse_interfaces(&["192.0.2.1,http=/run/h.s".into()]).unwrap();
        assert_eq!(shown(&own, false), ["/run/h.s"]);
        assert_eq!(shown(&own, true), ["/run/h.s"]);
        assert_eq!(listen_addresses(&own, Service::Smtp, 25).len(), 1);
    }

    #[test]
    fn default_listeners_are_both_wildcards() {
        let listen = listen_addresses(&[], Service::Smtp, 25);
        assert_eq!(
            listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["0.0.0.0:25", "::.25"]
        );
    }

    #[test]
    fn local_addresses_are_loopback_and_private_ranges() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_local_address(local.parse().unwrap()), "{local}");
        }
        for remote in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!is_local_address(remote.parse().unwrap()), "{remote}");
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("smtp.example.com:587").unwrap(),
            ("smtp.example.com".into(), 587)
        );
        assert_eq!(
            split_host_port("example.com:smtp").unwrap(),
            ("example.com".into(), 25)
        );
        assert_eq!(split_host_port("[::1]:2525").unwrap(), ("::1".into(), 2525));
        assert_eq!(split_host_port("::1").unwrap(), ("::1".into(), 25));
        assert_eq!(
            split_host_port("mx.example.com").unwrap(),
            ("mx.example.com".into(), 25)
        );
        assert!(split_host_port("host:notaport").is_err());
    }
}
