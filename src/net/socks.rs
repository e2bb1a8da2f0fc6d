//! SOCKS 4a (the client side), for `--forward-to host:port@proxy:port`:
//! the proxy, not us, resolves the target name, which is what Tor needs
//! (a name resolved locally would leak the destination to the local DNS).
//!
//! Request: VN=4, CD=1 (CONNECT), DSTPORT, DSTIP, USERID, NUL; for a name,
//! DSTIP is 0.0.0.1 and the name follows, NUL-terminated (SOCKS 4A,
//! section "SOCKS 4A"). Reply: 8 octets, CD=90 granted.

use std::net::Ipv4Addr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why the proxy did not connect us.
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    /// The target cannot be expressed in SOCKS 4a.
    #[error("cannot ask a SOCKS4a proxy for [{0}]: {1}")]
    Target(String, &'static str),
    /// The proxy said no.
    #[error("the SOCKS proxy refused the connection to {target} (code {code})")]
    Refused { target: String, code: u8 },
    /// The proxy sent something that is not a SOCKS 4 reply.
    #[error("invalid reply from the SOCKS proxy")]
    Protocol,
    /// The proxy connection failed.
    #[error("SOCKS proxy connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Asks the proxy on `stream` to connect to `host:port`.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    port: u16,
) -> Result<(), SocksError> {
    let request = request(host, port)?;
    stream.write_all(&request).await?;
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply).await?;
    match reply {
        [0, 90, ..] => Ok(()),
        [0, code, ..] => Err(SocksError::Refused {
            target: format!("{host}:{port}"),
            code,
        }),
        _ => Err(SocksError::Protocol),
    }
}

/// The CONNECT request for `host:port`, with an empty user id.
pub fn request(host: &str, port: u16) -> Result<Vec<u8>, SocksError> {
    let bad = |why| SocksError::Target(host.to_string(), why);
    let mut out = vec![4, 1];
    out.extend_from_slice(&port.to_be_bytes());
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        out.extend_from_slice(&ip.octets());
        out.push(0);
        return Ok(out);
    }
    if host.contains(':') {
        return Err(bad("SOCKS4a has no IPv6 addresses"));
    }
    if host.is_empty()
        || host.len() > 255
        || host.bytes().any(|b| b == 0 || b.is_ascii_whitespace())
    {
        return Err(bad("not a host name"));
    }
    out.extend_from_slice(&[0, 0, 0, 1, 0]);
    out.extend_from_slice(host.as_bytes());
    out.push(0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_names_for_the_proxy_to_resolve() {
        assert_eq!(
            request("example.com", 25).unwrap(),
            b"\x04\x01\x00\x19\x00\x00\x00\x01\x00example.com\x00"
        );
        assert_eq!(
            request("10.1.2.3", 587).unwrap(),
            b"\x04\x01\x02\x4b\x0a\x01\x02\x03\x00"
        );
        assert!(request("::1", 25).is_err());
        assert!(request("a\0b", 25).is_err());
        assert!(request(&"x".repeat(256), 25).is_err());
    }

    #[tokio::test]
    async fn granted_and_refused_replies() {
        let (mut ours, mut proxy) = tokio::io::duplex(256);
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let n = proxy.read(&mut buf).await.unwrap();
            proxy.write_all(&[0, 91, 0, 0, 0, 0, 0, 0]).await.unwrap();
            buf[..n].to_vec()
        });
        let err = connect(&mut ours, "mx.example.com", 25).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the SOCKS proxy refused the connection to mx.example.com:25 (code 91)"
        );
        assert_eq!(&task.await.unwrap()[9..], b"mx.example.com\0");

        let (mut ours, mut proxy) = tokio::io::duplex(256);
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let _ = proxy.read(&mut buf).await;
            proxy.write_all(&[0, 90, 0, 0, 0, 0, 0, 0]).await.unwrap();
        });
        connect(&mut ours, "mx.example.com", 25).await.unwrap();
    }
}
