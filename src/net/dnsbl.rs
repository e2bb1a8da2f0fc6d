//! DNSBL connection blocking (`--dnsbl`, E-MailRelay's reference,
//! "Connection blocking"): the connecting address is looked up in each
//! listed zone at once (RFC 5782); when `threshold` zones list it the
//! connection is dropped. Within the timeout the collective answer decides;
//! after it the connection is allowed, or blocked if the timeout was given
//! as a negative number. Loopback and private addresses are never looked up.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::dns::{self, DnsClient, Record};

/// Why a `--dnsbl` value is refused, naming the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsblError {
    /// No zone before the numbers.
    #[error("expected a list of DNSBL servers first")]
    NoZones,
    /// The threshold is not a count.
    #[error("invalid threshold [{0}]")]
    Threshold(String),
    /// The timeout is not a number of milliseconds.
    #[error("invalid timeout [{0}]")]
    Timeout(String),
    /// The DNS server is not an address and port.
    #[error("invalid DNS server address [{0}]")]
    Server(String),
    /// A field after the DNS server.
    #[error("unexpected field [{0}]")]
    Extra(String),
}

/// A parsed `--dnsbl` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblConfig {
    /// The DNSBL zones.
    pub zones: Vec<String>,
    /// How many zones must list an address to block it; 0 only logs.
    pub threshold: usize,
    pub timeout: Duration,
    /// A negative timeout: block when no decision came in time.
    pub block_on_timeout: bool,
    /// The DNS server; `None` for the system's first nameserver.
    pub server: Option<SocketAddr>,
}

impl DnsblConfig {
    /// Parses `zone,zone,...[,threshold[,timeout-ms[,dns-address]]]`, or
    /// the same fields in reverse order (E-MailRelay's older form).
    pub fn parse(text: &str) -> Result<DnsblConfig, DnsblError> {
        let mut fields: Vec<&str> = text.split(',').map(str::trim).collect();
        if fields
            .first()
            .is_some_and(|f| f.parse::<SocketAddr>().is_ok())
        {
            fields.reverse();
        }
        let zones: Vec<String> = fields
            .iter()
            .take_while(|f| f.parse::<i64>().is_err() && f.parse::<SocketAddr>().is_err())
            .map(|f| f.to_string())
            .collect();
        if zones.is_empty() || zones.iter().any(|z| z.is_empty()) {
            return Err(DnsblError::NoZones);
        }
        let mut rest = fields[zones.len()..].iter();
        let mut config = DnsblConfig {
            zones,
            threshold: 1,
            timeout: Duration::from_secs(5),
            block_on_timeout: false,
            server: None,
        };
        if let Some(threshold) = rest.next() {
            config.threshold = threshold
                .parse()
                .map_err(|_| DnsblError::Threshold(threshold.to_string()))?;
        }
        if let Some(timeout) = rest.next() {
            let ms: i64 = timeout
                .parse()
                .map_err(|_| DnsblError::Timeout(timeout.to_string()))?;
            config.timeout = Duration::from_millis(ms.unsigned_abs());
            config.block_on_timeout = ms < 0;
        }
        if let Some(server) = rest.next() {
            config.server = Some(
                server
                    .parse()
                    .map_err(|_| DnsblError::Server(server.to_string()))?,
            );
        }
        if let Some(extra) = rest.next() {
            return Err(DnsblError::Extra(extra.to_string()));
        }
        Ok(config)
    }
}

/// The decision about one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsblVerdict {
    /// Not checked: a loopback or private address.
    Local,
    /// Allowed; the zones that listed it (fewer than the threshold, or a
    /// threshold of 0), and whether the time ran out first.
    Allow {
        listed_by: Vec<String>,
        timed_out: bool,
    },
    /// Blocked by these zones, or by the timeout (none listed).
    Block {
        listed_by: Vec<String>,
        timed_out: bool,
    },
}

/// Looks `ip` up in every zone at once and decides.
pub async fn check(config: &DnsblConfig, ip: IpAddr) -> DnsblVerdict {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if super::is_local_address(ip) {
        return DnsblVerdict::Local;
    }
    let client = DnsClient {
        server: config.server.unwrap_or_else(DnsClient::system_server),
        timeout: config.timeout,
    };
    let mut lookups = tokio::task::JoinSet::new();
    for zone in &config.zones {
        let (client, zone) = (client.clone(), zone.clone());
        lookups.spawn(async move {
            let listed = client
                .query(&dns::dnsbl_name(ip, &zone), dns::A)
                .await
                .map(|records| records.iter().any(|r| matches!(r, Record::Address(_))));
            (zone, listed)
        });
    }
    let mut listed_by = Vec::new();
    let mut answered = 0;
    // A zone whose lookup ran out of time has given no decision.
    let mut unanswered = false;
    let deadline = tokio::time::Instant::now() + config.timeout;
    let decided = |listed: &Vec<String>, answered: usize| {
        config.threshold > 0 && listed.len() >= config.threshold || answered == config.zones.len()
    };
    while !decided(&listed_by, answered) {
        match tokio::time::timeout_at(deadline, lookups.join_next()).await {
            Ok(Some(Ok((zone, result)))) => {
                answered += 1;
                match result {
                    Ok(true) => listed_by.push(zone),
                    Ok(false) => {}
                    Err(dns::DnsError::Timeout(_)) => unanswered = true,
                    Err(e) => crate::warning!("dnsbl: {zone}: {e}"),
                }
            }
            Ok(Some(Err(_))) => answered += 1,
            Ok(None) => break,
            Err(_) => {
                // No collective answer in time (a listing would have ended
                // the loop already).
                unanswered = true;
                break;
            }
        }
    }
    lookups.abort_all();
    let blocked = config.threshold > 0
        && (listed_by.len() >= config.threshold || (unanswered && config.block_on_timeout));
    let timed_out = unanswered && listed_by.len() < config.threshold.max(1);
    if blocked {
        DnsblVerdict::Block {
            listed_by,
            timed_out,
        }
    } else {
        DnsblVerdict::Allow {
            listed_by,
            timed_out,
        }
    }
}

/// The DNSBL check of a new connection; false drops it without a word.
pub async fn admit(config: &DnsblConfig, ip: std::net::IpAddr, peer_text: &str) -> bool {
    let because = |listed_by: &[String], timed_out: bool| match (listed_by.is_empty(), timed_out) {
        (true, true) => "no answer in time".to_string(),
        (false, true) => format!(
            "listed by {} (then no more answers in time)",
            listed_by.join(",")
        ),
        (_, false) => format!("listed by {}", listed_by.join(",")),
    };
    match check(config, ip).await {
        DnsblVerdict::Local => true,
        DnsblVerdict::Block {
            listed_by,
            timed_out,
        } => {
            crate::warning!(
                "dnsbl: connection from {peer_text} blocked: {}",
                because(&listed_by, timed_out)
            );
            false
        }
        DnsblVerdict::Allow {
            listed_by,
            timed_out,
        } => {
            if !listed_by.is_empty() || timed_out {
                crate::info!(
                    "dnsbl: connection from {peer_text} allowed: {}",
                    because(&listed_by, timed_out)
                );
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_field_orders_parse() {
        let forward =
            DnsblConfig::parse("spam.example.com,block.example.com,1,500,1.1.1.1:53").unwrap();
        let reversed =
            DnsblConfig::parse("1.1.1.1:53,500,1,block.example.com,spam.example.com").unwrap();
        assert_eq!(forward, reversed);
        assert_eq!(forward.zones, ["spam.example.com", "block.example.com"]);
        assert_eq!(
            (forward.threshold, forward.timeout),
            (1, Duration::from_millis(500))
        );
        assert_eq!(forward.server, Some("1.1.1.1:53".parse().unwrap()));
        let simple = DnsblConfig::parse("zen.example").unwrap();
        assert_eq!(
            (simple.threshold, simple.block_on_timeout, simple.server),
            (1, false, None)
        );
        let negative = DnsblConfig::parse("a.example,b.example,1,-5000").unwrap();
        assert_eq!(
            (negative.timeout, negative.block_on_timeout),
            (Duration::from_secs(5), true)
        );
        assert!(DnsblConfig::parse("1,500").is_err());
        assert!(DnsblConfig::parse("a.example,x1").is_ok());
        assert!(DnsblConfig::parse("a.example,1,500,nonsense").is_err());
    }

    #[tokio::test]
    async fn local_addresses_are_never_looked_up() {
        let config = DnsblConfig::parse("bl.example,1,100,127.0.0.1:9").unwrap();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "::1",
            "::ffff:192.168.0.1",
        ] {
            assert_eq!(
                check(&config, ip.parse().unwrap()).await,
                DnsblVerdict::Local,
                "{ip}"
            );
        }
    }
}
