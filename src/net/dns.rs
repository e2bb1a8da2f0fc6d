//! A minimal DNS stub client (RFC 1035): A, AAAA and MX questions to one
//! configured server over UDP, with a TCP retry when the answer is
//! truncated. Enough for `mx:` routing and DNSBL checks, which name their
//! DNS server explicitly; nothing here caches or recurses.
//!
//! Answers are matched to questions by id and source address; a reply
//! that does not parse is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ring::rand::SecureRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Record types asked for.
pub const A: u16 = 1;
pub const MX: u16 = 15;
pub const AAAA: u16 = 28;

/// Why a question got no usable answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// No answer within the time limit.
    #[error("no answer from DNS server {0} in time")]
    Timeout(SocketAddr),
    /// The server answered with an error code other than NXDOMAIN.
    #[error("DNS server {server} answered {rcode} for [{name}]")]
    Server {
        server: SocketAddr,
        name: String,
        rcode: u8,
    },
    /// The answer could not be parsed.
    #[error("invalid DNS answer from {0}")]
    Malformed(SocketAddr),
    /// The name cannot be asked for.
    #[error("invalid DNS name [{0}]")]
    Name(String),
    /// A socket error.
    #[error("DNS: {0}")]
    Io(String),
}

/// One answer record of a type we understand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Address(IpAddr),
    Mx { preference: u16, exchange: String },
}

/// A DNS server to ask.
#[derive(Clone, Debug)]
pub struct DnsClient {
    pub server: SocketAddr,
    pub timeout: Duration,
}

impl DnsClient {
    /// The system's DNS server (the first `nameserver` of
    /// /etc/resolv.conf; on Windows the first adapter's), else 127.0.0.1:53.
    pub fn system_server() -> SocketAddr {
        crate::platform::host::nameserver()
            .map(|ip| SocketAddr::new(ip, 53))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53)))
    }

    /// Asks one question; NXDOMAIN is an empty answer.
    pub async fn query(&self, name: &str, qtype: u16) -> Result<Vec<Record>, DnsError> {
        let id = random_id();
        let question = encode_query(id, name, qtype)?;
        let exchange = async {
            let answer = self.udp(&question, id).await?;
            if answer.get(2).is_some_and(|flags| flags & 0x02 != 0) {
                return self.tcp(&question).await;
            }
            Ok(answer)
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DnsError::Timeout(self.server))??;
        decode_answer(&answer, id, qtype).map_err(|e| e.with_server(self.server, name))
    }

    async fn udp(&self, question: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
        let local: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let io = |e: std::io::Error| DnsError::Io(e.to_string());
        let socket = tokio::net::UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(self.server).await.map_err(io)?;
        socket.send(question).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            // A connected UDP socket only hears from the server; the id
            // check drops stale or forged answers.
            if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }

    async fn tcp(&self, question: &[u8]) -> Result<Vec<u8>, DnsError> {
        let io = |e: std::io::Error| DnsError::Io(e.to_string());
        let mut stream = tokio::net::TcpStream::connect(self.server)
            .await
            .map_err(io)?;
        let mut framed = (question.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(question);
        stream.write_all(&framed).await.map_err(io)?;
        let length = stream.read_u16().await.map_err(io)?;
        let mut answer = vec![0u8; usize::from(length)];
        stream.read_exact(&mut answer).await.map_err(io)?;
        Ok(answer)
    }
}

/// Decodes an answer to question `id` of type `qtype`, as `query` does;
/// `None` for anything unusable. For fuzzing and tests.
pub fn decode(msg: &[u8], id: u16, qtype: u16) -> Option<Vec<Record>> {
    decode_answer(msg, id, qtype).ok()
}

/// The DNSBL name for `ip` under `zone` (RFC 5782): reversed octets, or
/// reversed nibbles for IPv6.
pub fn dnsbl_name(ip: IpAddr, zone: &str) -> String {
    let reversed: Vec<String> = match ip {
        IpAddr::V4(v4) => v4.octets().iter().rev().map(u8::to_string).collect(),
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .rev()
            .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
            .collect(),
    };
    format!("{}.{zone}", reversed.join("."))
}

fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u16::from_be_bytes(bytes)
}

/// A standard query with recursion desired.
fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::Name(name.to_string()));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(DnsError::Name(name.to_string()));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    Ok(out)
}

/// Decoding failures, before the server and name are known.
enum DecodeError {
    Malformed,
    Rcode(u8),
}

impl DecodeError {
    fn with_server(self, server: SocketAddr, name: &str) -> DnsError {
        match self {
            DecodeError::Malformed => DnsError::Malformed(server),
            DecodeError::Rcode(rcode) => DnsError::Server {
                server,
                name: name.to_string(),
                rcode,
            },
        }
    }
}

fn decode_answer(msg: &[u8], id: u16, qtype: u16) -> Result<Vec<Record>, DecodeError> {
    let bad = || DecodeError::Malformed;
    let word = |at: usize| -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes([
            *msg.get(at).ok_or_else(bad)?,
            *msg.get(at + 1).ok_or_else(bad)?,
        ]))
    };
    if msg.len() < 12 || word(0)? != id || msg[2] & 0x80 == 0 {
        return Err(bad());
    }
    match msg[3] & 0x0f {
        0 => {}
        3 => return Ok(Vec::new()),
        rcode => return Err(DecodeError::Rcode(rcode)),
    }
    let (questions, answers) = (word(4)?, word(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at).ok_or_else(bad)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at).ok_or_else(bad)?;
        let (rtype, length) = (word(at)?, usize::from(word(at + 8)?));
        let data = at + 10;
        let rdata = msg.get(data..data + length).ok_or_else(bad)?;
        match (rtype, rtype == qtype) {
            (A, true) if length == 4 => records.push(Record::Address(IpAddr::from(
                <[u8; 4]>::try_from(rdata).map_err(|_| bad())?,
            ))),
            (AAAA, true) if length == 16 => records.push(Record::Address(IpAddr::from(
                <[u8; 16]>::try_from(rdata).map_err(|_| bad())?,
            ))),
            (MX, true) if length > 2 => records.push(Record::Mx {
                preference: word(data)?,
                exchange: read_name(msg, data + 2).ok_or_else(bad)?,
            }),
            _ => {}
        }
        at = data + length;
    }
    Ok(records)
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += usize::from(l) + 1,
        }
    }
}

/// The name at `at`, following compression pointers (a bounded number).
fn read_name(msg: &[u8], mut at: usize) -> Option<String> {
    let mut labels = Vec::new();
    for _ in 0..128 {
        let len = *msg.get(at)?;
        if len == 0 {
            return Some(labels.join("."));
        }
        if len & 0xc0 == 0xc0 {
            at = usize::from(u16::from_be_bytes([len & 0x3f, *msg.get(at + 1)?]));
            continue;
        }
        let label = msg.get(at + 1..at + 1 + usize::from(len))?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += usize::from(len) + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn answers_from_dnsmasq_decode() {
        // Captured from dnsmasq: an MX answer with a compressed exchange name.
        let mx = hex("123485800001000100000001036f6e65076578616d706c6500000f0001c00c000f0001000000000013000a036d7831036f6e65076578616d706c6500c02b000100010000000000047f000001");
        assert!(matches!(
            decode_answer(&mx, 0x1234, MX).ok().as_deref(),
            Some([Record::Mx { preference: 10, exchange }]) if exchange == "mx1.one.example"
        ));
        let a = hex("123485800001000100000000036d7831036f6e65076578616d706c650000010001c00c000100010000000000047f000001");
        assert!(matches!(
            decode_answer(&a, 0x1234, A).ok().as_deref(),
            Some([Record::Address(ip)]) if *ip == IpAddr::from([127, 0, 0, 1])
        ));
        // REFUSED is an error; a wrong id or a truncated message is malformed.
        let refused =
            hex("123481850001000000000000013301300231380331393802626c076578616d706c650000010001");
        assert!(matches!(
            decode_answer(&refused, 0x1234, A),
            Err(DecodeError::Rcode(5))
        ));
        assert!(matches!(
            decode_answer(&a, 0x9999, A),
            Err(DecodeError::Malformed)
        ));
        for cut in [3, 12, 30, a.len() - 1] {
            assert!(decode_answer(&a[..cut], 0x1234, A).is_err(), "{cut}");
        }
    }

    #[test]
    fn no_single_byte_change_makes_the_decoder_panic() {
        let mx = hex("123485800001000100000001036f6e65076578616d706c6500000f0001c00c000f0001000000000013000a036d7831036f6e65076578616d706c6500c02b000100010000000000047f000001");
        for at in 0..mx.len() {
            for value in 0..=255u8 {
                let mut msg = mx.clone();
                msg[at] = value;
                let _ = decode_answer(&msg, 0x1234, MX);
                let _ = decode_answer(&msg, 0x1234, A);
            }
        }
    }

    #[test]
    fn a_pointer_loop_does_not_hang() {
        let mut msg = hex("1234858000010001000000000000010001");
        // Answer: name is a pointer to itself.
        let at = msg.len();
        msg.extend_from_slice(&[
            0xc0, at as u8, 0, 15, 0, 1, 0, 0, 0, 0, 0, 4, 0, 10, 0xc0, at as u8,
        ]);
        assert!(decode_answer(&msg, 0x1234, MX).is_err());
    }

    #[test]
    fn dnsbl_names() {
        assert_eq!(
            dnsbl_name("198.18.0.2".parse().unwrap(), "bl.example"),
            "2.0.18.198.bl.example"
        );
        assert!(
            dnsbl_name("2001:db8::1".parse().unwrap(), "bl.example").starts_with(
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example"
            )
        );
    }

    #[test]
    fn queries_encode_and_bad_names_are_refused() {
        let q = encode_query(0x1234, "one.example", MX).ok().unwrap();
        assert_eq!(
            q,
            hex("123401000001000000000000036f6e65076578616d706c6500000f0001")
        );
        assert!(encode_query(1, "a..b", A).is_err());
        assert!(encode_query(1, &"x".repeat(64), A).is_err());
    }
}
