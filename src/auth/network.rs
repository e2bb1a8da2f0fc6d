//! Address patterns of trusted `server none` lines: an address, a CIDR
//! range (`192.168.0.0/24`, `fe80::/64`) or an IPv4 wildcard
//! (`192.168.0.*`, `10.*.*.*`). An IPv4-mapped IPv6 peer is matched as
//! the IPv4 address it is.

use std::net::IpAddr;

/// A parsed address pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressPattern {
    /// The first `prefix` bits must equal those of the address.
    Cidr { address: IpAddr, prefix: u8 },
    /// IPv4 octets, `None` for a `*`.
    Wildcard([Option<u8>; 4]),
}

impl AddressPattern {
    /// Parses a pattern; `None` if it is none of the three forms.
    pub fn parse(text: &str) -> Option<AddressPattern> {
        if let Some((address, prefix)) = text.split_once('/') {
            let address: IpAddr = address.parse().ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            return (prefix <= max).then_some(AddressPattern::Cidr { address, prefix });
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            return Some(AddressPattern::Cidr { address, prefix });
        }
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 4 || !text.contains('*') {
            return None;
        }
        let mut octets = [None; 4];
        for (slot, part) in octets.iter_mut().zip(parts) {
            *slot = match part {
                "*" => None,
                n => Some(n.parse().ok()?),
            };
        }
        Some(AddressPattern::Wildcard(octets))
    }

    /// How narrow the range is, for choosing among several that hold an
    /// address: twice the prefix length, one less for a wildcard (2.6.1
    /// tries `a.b.c.*` after `a.b.c.0/24`).
    pub fn narrowness(&self) -> u16 {
        match *self {
            AddressPattern::Cidr { prefix, .. } => 2 * u16::from(prefix),
            AddressPattern::Wildcard(octets) => {
                let fixed = octets.iter().take_while(|o| o.is_some()).count() as u16;
                (2 * 8 * fixed).saturating_sub(1)
            }
        }
    }

    /// True if `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match *self {
            AddressPattern::Wildcard(pattern) => match ip {
                IpAddr::V4(v4) => pattern
                    .iter()
                    .zip(v4.octets())
                    .all(|(p, o)| p.is_none_or(|p| p == o)),
                IpAddr::V6(_) => false,
            },
            AddressPattern::Cidr { address, prefix } => match (address.to_canonical(), ip) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    same_prefix(u32::from(a).into(), u32::from(b).into(), prefix, 32)
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    same_prefix(u128::from(a), u128::from(b), prefix, 128)
                }
                _ => false,
            },
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, width: u32) -> bool {
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 {
        return true;
    }
    let shift = width - prefix;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, ip: &str) -> bool {
        AddressPattern::parse(pattern)
            .unwrap()
            .contains(ip.parse().unwrap())
    }

    #[test]
    fn wildcards_cidr_and_exact_addresses() {
        assert!(matches("192.168.0.*", "192.168.0.200"));
        assert!(!matches("192.168.0.*", "192.168.1.1"));
        assert!(matches("10.*.*.*", "10.9.8.7"));
        assert!(matches("192.168.0.0/24", "192.168.0.5"));
        assert!(!matches("192.168.0.0/24", "192.168.1.5"));
        assert!(matches("0.0.0.0/0", "8.8.8.8"));
        assert!(matches("127.0.0.1", "127.0.0.1"));
        assert!(!matches("127.0.0.1", "127.0.0.2"));
        assert!(matches("fe80::/64", "fe80::1:2"));
        assert!(!matches("fe80::/64", "fe81::1"));
        assert!(matches("fc00::/7", "fd12::1"));
        assert!(matches("::1", "::1"));
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_patterns() {
        assert!(matches("192.168.0.*", "::ffff:192.168.0.9"));
        assert!(matches("127.0.0.0/8", "::ffff:127.0.0.1"));
        assert!(!matches("fe80::/64", "192.168.0.1"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "300.1.2.3",
            "1.2.3",
            "1.2.3.x",
            "10.0.0.0/33",
            "fe80::/129",
            "host",
        ] {
            assert_eq!(AddressPattern::parse(bad), None, "{bad}");
        }
    }
}
