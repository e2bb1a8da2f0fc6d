//! The PROXY protocol header (HAProxy's specification, versions 1 and 2),
//! which a load balancer sends first on each connection it relays, so that
//! the server learns the client's address instead of the balancer's.
//!
//! The parser is incremental and never asks for a byte past the header:
//! the driver reads exactly what [`Parse::Need`] says, so whatever the
//! client sends after the header (an early SMTP command, a TLS hello)
//! stays in the socket for the session.
//!
//! ```text
//!   first byte 'P' --> v1: "PROXY " fields CRLF, at most 107 bytes
//!   first byte CR  --> v2: 12-byte signature, ver/cmd, family, length,
//!                          addresses, TLVs (skipped); at most 16 + 4096
//!   anything else  --> Invalid(NotProxy)
//! ```
//!
//! v2 `LOCAL` (the balancer's own connection: a health check), v1
//! `UNKNOWN`, and v2 `PROXY` with the `UNSPEC` or `UNIX` family carry no
//! client address the server could use: they parse as [`Header::Local`],
//! and the connection's own address stands.
//!
//! Must not: do I/O, or decide whom to believe (the driver checks that the
//! connection comes from a listed balancer).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 header, CRLF included (the specification's figure).
pub const V1_MAX: usize = 107;
/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\x00\r\nQUIT\n";
/// The most address and TLV bytes a v2 header may carry here. The
/// specification allows 65535; balancers send a few hundred at most (the
/// TLS TLVs included), and a bound keeps a hostile header small.
pub const V2_MAX_PAYLOAD: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";
/// The shortest v1 header: `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;

/// What a header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// A relayed connection: the client's address, and the address the
    /// client connected to.
    Proxy {
        version: u8,
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// No client address: the connection's own address stands.
    Local { version: u8, why: Local },
}

/// Why a header carries no client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// v2 `LOCAL`: the balancer's own connection (a health check).
    Command,
    /// v1 `PROXY UNKNOWN`.
    Unknown,
    /// v2 `PROXY` with the `UNSPEC` family.
    Unspecified,
    /// v2 `PROXY` with the `UNIX` family: a path, not an address.
    Unix,
}

/// What the parser makes of the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse {
    /// This many more bytes, at least, and never past the header's end.
    Need(usize),
    /// A whole header of `length` bytes (all of the input).
    Done { header: Header, length: usize },
    /// Not a valid header.
    Invalid(ProxyError),
}

/// Why a header is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither v1's `PROXY ` nor v2's signature.
    NotProxy,
    /// v1: no CRLF within 107 bytes.
    V1TooLong,
    /// v1: not `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>` or
    /// `PROXY UNKNOWN ...`.
    V1Syntax,
    /// v2: a version other than 2.
    V2Version(u8),
    /// v2: a command other than `LOCAL` or `PROXY`.
    V2Command(u8),
    /// v2: an address family or transport this server cannot use.
    V2Family(u8),
    /// v2: more address and TLV bytes than [`V2_MAX_PAYLOAD`].
    V2TooLong(usize),
    /// v2: fewer bytes than the family's addresses need.
    V2Short,
    /// v2: a TLV runs past the header's end.
    V2Tlv,
}

impl core::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProxyError::NotProxy => write!(f, "no PROXY protocol header"),
            ProxyError::V1TooLong => write!(f, "PROXY v1 header longer than {V1_MAX} bytes"),
            ProxyError::V1Syntax => write!(f, "malformed PROXY v1 header"),
            ProxyError::V2Version(v) => write!(f, "PROXY header version {v} not supported"),
            ProxyError::V2Command(c) => write!(f, "PROXY v2 command {c} not supported"),
            ProxyError::V2Family(b) => {
                write!(f, "PROXY v2 family/transport 0x{b:02x} not supported")
            }
            ProxyError::V2TooLong(n) => {
                write!(
                    f,
                    "PROXY v2 header of {n} bytes over the limit of {V2_MAX_PAYLOAD}"
                )
            }
            ProxyError::V2Short => write!(f, "PROXY v2 header too short for its addresses"),
            ProxyError::V2Tlv => write!(f, "PROXY v2 header with a malformed TLV"),
        }
    }
}

/// Parses the bytes read so far from the start of the connection.
pub fn parse(input: &[u8]) -> Parse {
    match input.first() {
        None => Parse::Need(1),
        Some(b'P') => parse_v1(input),
        Some(b'\r') => parse_v2(input),
        Some(_) => Parse::Invalid(ProxyError::NotProxy),
    }
}

/// The most bytes a header can take: what a driver's buffer must hold.
pub const MAX_HEADER: usize = 16 + V2_MAX_PAYLOAD;

fn parse_v1(input: &[u8]) -> Parse {
    let prefix = input.len().min(V1_PREFIX.len());
    if input[..prefix] != V1_PREFIX[..prefix] {
        return Parse::Invalid(ProxyError::NotProxy);
    }
    if let Some(lf) = input.iter().position(|&b| b == b'\n') {
        if lf == 0 || input[lf - 1] != b'\r' || lf + 1 != input.len() {
            return Parse::Invalid(ProxyError::V1Syntax);
        }
        return match v1_fields(&input[..lf - 1]) {
            Some(header) => Parse::Done {
                header,
                length: input.len(),
            },
            None => Parse::Invalid(ProxyError::V1Syntax),
        };
    }
    if input.len() >= V1_MAX {
        return Parse::Invalid(ProxyError::V1TooLong);
    }
    // Byte by byte past the shortest header: the CRLF may come next.
    Parse::Need(V1_MIN.saturating_sub(input.len()).max(1))
}

/// The line without its CRLF.
fn v1_fields(line: &[u8]) -> Option<Header> {
    let line = core::str::from_utf8(line).ok()?;
    let mut fields = line.split(' ');
    let (Some("PROXY"), Some(protocol)) = (fields.next(), fields.next()) else {
        return None;
    };
    if protocol == "UNKNOWN" {
        // The specification: whatever follows UNKNOWN is to be ignored.
        return Some(Header::Local {
            version: 1,
            why: Local::Unknown,
        });
    }
    let rest: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = rest[..] else {
        return None;
    };
    let (src, dst): (IpAddr, IpAddr) = match protocol {
        "TCP4" => (
            src.parse::<Ipv4Addr>().ok()?.into(),
            dst.parse::<Ipv4Addr>().ok()?.into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>().ok()?.into(),
            dst.parse::<Ipv6Addr>().ok()?.into(),
        ),
        _ => return None,
    };
    Some(Header::Proxy {
        version: 1,
        source: SocketAddr::new(src, v1_port(sport)?),
        destination: SocketAddr::new(dst, v1_port(dport)?),
    })
}

/// A decimal port, 0 to 65535, with no sign, space or leading zero.
fn v1_port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    (digits && canonical).then(|| text.parse().ok()).flatten()
}

fn parse_v2(input: &[u8]) -> Parse {
    let prefix = input.len().min(V2_SIGNATURE.len());
    if input[..prefix] != V2_SIGNATURE[..prefix] {
        return Parse::Invalid(ProxyError::NotProxy);
    }
    if input.len() < 16 {
        return Parse::Need(16 - input.len());
    }
    let (version, command) = (input[12] >> 4, input[12] & 0x0f);
    if version != 2 {
        return Parse::Invalid(ProxyError::V2Version(version));
    }
    if command > 1 {
        return Parse::Invalid(ProxyError::V2Command(command));
    }
    let payload = usize::from(u16::from_be_bytes([input[14], input[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Parse::Invalid(ProxyError::V2TooLong(payload));
    }
    let length = 16 + payload;
    if input.len() < length {
        return Parse::Need(length - input.len());
    }
    match v2_body(command, input[13], &input[16..length]) {
        Ok(header) => Parse::Done { header, length },
        Err(e) => Parse::Invalid(e),
    }
}

fn v2_body(command: u8, family: u8, body: &[u8]) -> Result<Header, ProxyError> {
    let local = |why| Header::Local { version: 2, why };
    if command == 0 {
        // The specification: LOCAL's address block is to be skipped,
        // whatever its family says.
        return Ok(local(Local::Command));
    }
    let (addresses, need) = match family {
        0x00..=0x02 => return Ok(local(Local::Unspecified)),
        0x11 => (Family::V4, 12),
        0x21 => (Family::V6, 36),
        0x31 => (Family::Unix, 216),
        other => return Err(ProxyError::V2Family(other)),
    };
    if body.len() < need {
        return Err(ProxyError::V2Short);
    }
    skip_tlvs(&body[need..])?;
    let (source, destination) = match addresses {
        Family::Unix => return Ok(local(Local::Unix)),
        Family::V4 => {
            let ip = |at: usize| {
                IpAddr::from(<[u8; 4]>::try_from(&body[at..at + 4]).unwrap_or_default())
            };
            (ip(0), ip(4))
        }
        Family::V6 => {
            let ip = |at: usize| {
                IpAddr::from(<[u8; 16]>::try_from(&body[at..at + 16]).unwrap_or_default())
            };
            (ip(0), ip(16))
        }
    };
    let ports = &body[need - 4..need];
    Ok(Header::Proxy {
        version: 2,
        source: SocketAddr::new(source, u16::from_be_bytes([ports[0], ports[1]])),
        destination: SocketAddr::new(destination, u16::from_be_bytes([ports[2], ports[3]])),
    })
}

enum Family {
    V4,
    V6,
    Unix,
}

/// Walks the TLVs after the addresses: each a type byte, a two-byte
/// length and the value. None is needed here (the TLS, ALPN and
/// unique-id ones inform, and a CRC32C check is optional in the
/// specification); they must only fit.
fn skip_tlvs(mut rest: &[u8]) -> Result<(), ProxyError> {
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(ProxyError::V2Tlv);
        }
        let length = 3 + usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        if rest.len() < length {
            return Err(ProxyError::V2Tlv);
        }
        rest = &rest[length..];
    }
    Ok(())
}

#[cfg(test)]
mod tests;
