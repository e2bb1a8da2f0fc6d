//! `mx:`: fills `ForwardToAddress` from a DNS MX lookup of the envelope's
//! `ForwardTo` domain (an optional `:port` is kept, a `user@` prefix is
//! ignored), with the A lookup of the domain itself when it has no MX
//! (RFC 5321 section 5.1). A `ForwardTo` that is an address literal
//! (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) is copied without a lookup. An
//! address of 0.0.0.0 clears `ForwardToAddress`, so that the default
//! `--forward-to` is used. Parameters, separated by `;`: `nst=<s>` the time
//! allowed for each DNS question, `rt=<s>` the time allowed for the whole
//! lookup, and the DNS server's address (port 53 if none is given; default:
//! the system's first nameserver). Anything else is ignored with a warning,
//! as 2.6.1 does.
//!
//! A DNS failure keeps the message for a later attempt (2.6.1 fails it); a
//! domain with no mail host fails it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{FilterJob, FilterOutcome, FilterType};
use crate::net::dns::{self, DnsClient, DnsError, Record};
use crate::store::Envelope;

/// `mx:` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxOptions {
    pub server: Option<SocketAddr>,
    pub per_question: Duration,
    pub overall: Duration,
    /// Parameters that were not understood.
    pub ignored: Vec<String>,
}

impl MxOptions {
    /// Parses `nst=60;rt=60;127.0.0.1:53` (any part optional).
    pub fn parse(text: &str) -> MxOptions {
        let mut options = MxOptions {
            server: None,
            per_question: Duration::from_secs(10),
            overall: Duration::from_secs(30),
            ignored: Vec::new(),
        };
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let seconds = |v: &str| v.parse::<u64>().ok().map(Duration::from_secs);
            let server = part.parse::<SocketAddr>().ok().or_else(|| {
                part.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            });
            match (part.split_once('='), server) {
                (Some(("nst", v)), _) if seconds(v).is_some() => {
                    options.per_question = seconds(v).unwrap_or(options.per_question)
                }
                (Some(("rt", v)), _) if seconds(v).is_some() => {
                    options.overall = seconds(v).unwrap_or(options.overall)
                }
                (_, Some(server)) => options.server = Some(server),
                _ => options.ignored.push(part.to_string()),
            }
        }
        options
    }
}

/// Runs the lookup for one message.
pub async fn run(
    options: &MxOptions,
    job: &FilterJob,
    ty: FilterType,
    timeout: Duration,
) -> FilterOutcome {
    let prefix = format!("{} [mx:]", ty.name());
    let mut envelope = match tokio::fs::read(&job.envelope)
        .await
        .map(|b| Envelope::parse(&b))
    {
        Ok(Ok(envelope)) => envelope,
        Ok(Err(e)) => return FilterOutcome::failed(&format!("mx: {e}")),
        Err(e) => return FilterOutcome::failed(&format!("mx: [{}]: {e}", job.envelope.display())),
    };
    let target = ForwardTo::parse(&envelope.forward_to);
    let address = if let Some(literal) = target.literal {
        literal
    } else if target.domain.is_empty() {
        return FilterOutcome::ok();
    } else {
        crate::info!("{prefix} looking up [{}]", target.domain);
        let client = DnsClient {
            server: options.server.unwrap_or_else(DnsClient::system_server),
            timeout: options.per_question,
        };
        let overall = options.overall.min(timeout.max(Duration::from_secs(1)));
        let lookup = tokio::time::timeout(overall, mail_host(&client, &target.domain)).await;
        let domain = &target.domain;
        match lookup {
            Err(_) => return FilterOutcome::retry(&format!("mx: lookup of [{domain}] timed out")),
            Ok(Err(e)) => return FilterOutcome::retry(&format!("mx: [{domain}]: {e}")),
            Ok(Ok(None)) => {
                return FilterOutcome::failed(&format!("no mail host for [{domain}]"));
            }
            Ok(Ok(Some(IpAddr::V4(v4)))) if v4.is_unspecified() => String::new(),
            Ok(Ok(Some(IpAddr::V4(v4)))) => format!("{v4}:{}", target.port),
            Ok(Ok(Some(IpAddr::V6(v6)))) => format!("[{v6}]:{}", target.port),
        }
    };
    crate::info!(
        "{prefix}: [{}]: setting forward-to-address [{address}]",
        job.message_id()
    );
    envelope.forward_to_address = address;
    let bytes = envelope.to_bytes();
    let path = job.envelope.clone();
    match tokio::task::spawn_blocking(move || super::builtin::rewrite(&path, &bytes)).await {
        Ok(Ok(())) => FilterOutcome::ok(),
        Ok(Err(e)) => FilterOutcome::failed(&e.to_string()),
        Err(e) => FilterOutcome::failed(&e.to_string()),
    }
}

/// `ForwardTo` read as 2.6.1 reads it for `mx:`.
#[derive(Debug, PartialEq, Eq)]
struct ForwardTo {
    domain: String,
    port: u16,
    /// The transport address of an address literal: no lookup needed.
    literal: Option<String>,
}

impl ForwardTo {
    fn parse(forward_to: &str) -> ForwardTo {
        let text = forward_to.trim();
        let text = text.rsplit_once('@').map_or(text, |(_, domain)| domain);
        let (domain, port) = match text.rsplit_once(':') {
            Some((d, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (d, p.parse().ok())
            }
            _ => (text, None),
        };
        let literal = domain
            .strip_prefix('[')
            .and_then(|d| d.strip_suffix(']'))
            .and_then(|inner| {
                let port = port.unwrap_or(25);
                match inner.get(..5) {
                    Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => inner[5..]
                        .parse::<std::net::Ipv6Addr>()
                        .ok()
                        .map(|ip| format!("[{ip}]:{port}")),
                    _ => inner
                        .parse::<std::net::Ipv4Addr>()
                        .ok()
                        .map(|ip| format!("{ip}:{port}")),
                }
            });
        ForwardTo {
            domain: domain.to_string(),
            port: port.unwrap_or(25),
            literal,
        }
    }
}

/// The address of the best mail host for `domain`, if it has one.
async fn mail_host(client: &DnsClient, domain: &str) -> Result<Option<IpAddr>, DnsError> {
    let mut exchanges: Vec<(u16, String)> = client
        .query(domain, dns::MX)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Record::Mx {
                preference,
                exchange,
            } => Some((preference, exchange)),
            Record::Address(_) => None,
        })
        .collect();
    exchanges.sort();
    if exchanges.is_empty() {
        exchanges.push((0, domain.to_string()));
    }
    for (_, host) in exchanges {
        for qtype in [dns::A, dns::AAAA] {
            let found = client
                .query(&host, qtype)
                .await?
                .into_iter()
                .find_map(|r| match r {
                    Record::Address(ip) => Some(ip),
                    Record::Mx { .. } => None,
                });
            if found.is_some() {
                return Ok(found);
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_and_strangers_are_ignored() {
        let o = MxOptions::parse("nst=60;rt=90;127.0.0.1:53");
        assert_eq!(o.server, Some("127.0.0.1:53".parse().unwrap()));
        assert_eq!(
            (o.per_question, o.overall),
            (Duration::from_secs(60), Duration::from_secs(90))
        );
        assert_eq!(MxOptions::parse("").server, None);
        assert_eq!(
            MxOptions::parse("192.0.2.1").server,
            Some("192.0.2.1:53".parse().unwrap())
        );
        assert_eq!(
            MxOptions::parse("nst=x;dns.example").ignored,
            ["nst=x", "dns.example"]
        );
    }

    #[test]
    fn forward_to_is_read_as_2_6_1_reads_it() {
        let f = ForwardTo::parse("user@Example.com:2525");
        assert_eq!(
            (f.domain.as_str(), f.port, f.literal),
            ("Example.com", 2525, None)
        );
        assert_eq!(ForwardTo::parse("example.com").port, 25);
        assert_eq!(
            ForwardTo::parse("[192.0.2.1]").literal.as_deref(),
            Some("192.0.2.1:25")
        );
        assert_eq!(
            ForwardTo::parse("[IPv6:2001:db8::1]:587")
                .literal
                .as_deref(),
            Some("[2001:db8::1]:587")
        );
        assert_eq!(ForwardTo::parse("[bogus]").literal, None);
        assert!(ForwardTo::parse("").domain.is_empty());
    }
}
