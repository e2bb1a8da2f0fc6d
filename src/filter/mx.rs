//! `mx:`: fills `ForwardToAddress` from a DNS MX lookup of the envelope's
//! `ForwardTo` domain (an optional `:port` is kept), with the A lookup of
//! the domain itself when it has no MX (RFC 5321 section 5.1). An address
//! of 0.0.0.0 clears `ForwardToAddress`, so that the default `--forward-to`
//! is used. Parameters: `nst=<s>` the time allowed for each DNS question,
//! `rt=<s>` the time allowed for the whole lookup, and the DNS server's
//! address (default: the system's first nameserver).
//!
//! A DNS failure keeps the message for a later attempt; a domain with no
//! mail host fails it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use emailrelay_proto::smtp::Reply;

use super::{FilterJob, FilterOutcome};
use crate::net::dns::{self, DnsClient, DnsError, Record};
use crate::store::Envelope;

/// `mx:` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxOptions {
    pub server: Option<SocketAddr>,
    pub per_question: Duration,
    pub overall: Duration,
}

impl MxOptions {
    /// Parses `nst=60;rt=60;127.0.0.1:53` (any part optional); `Err`
    /// names the part that does not parse.
    pub fn parse(text: &str) -> Result<MxOptions, &str> {
        let mut options = MxOptions {
            server: None,
            per_question: Duration::from_secs(10),
            overall: Duration::from_secs(30),
        };
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let seconds = |v: &str| v.parse::<u64>().map(Duration::from_secs).map_err(|_| part);
            match part.split_once('=') {
                Some(("nst", v)) => options.per_question = seconds(v)?,
                Some(("rt", v)) => options.overall = seconds(v)?,
                Some(_) => return Err(part),
                None => options.server = Some(part.parse().map_err(|_| part)?),
            }
        }
        Ok(options)
    }
}

/// Runs the lookup for one message.
pub async fn run(options: &MxOptions, job: &FilterJob) -> FilterOutcome {
    let mut envelope = match tokio::fs::read(&job.envelope)
        .await
        .map(|b| Envelope::parse(&b))
    {
        Ok(Ok(envelope)) => envelope,
        Ok(Err(e)) => return FilterOutcome::Error(format!("mx: {e}")),
        Err(e) => return FilterOutcome::Error(format!("mx: [{}]: {e}", job.envelope.display())),
    };
    let forward_to = envelope.forward_to.trim().to_string();
    if forward_to.is_empty() {
        return FilterOutcome::Ok;
    }
    let (domain, port) = match forward_to.rsplit_once(':') {
        Some((d, p)) if p.parse::<u16>().is_ok() => (d.to_string(), p.to_string()),
        _ => (forward_to.clone(), "25".to_string()),
    };
    let client = DnsClient {
        server: options.server.unwrap_or_else(DnsClient::system_server),
        timeout: options.per_question,
    };
    let lookup = tokio::time::timeout(options.overall, mail_host(&client, &domain)).await;
    let address = match lookup {
        Err(_) => return FilterOutcome::Retry(format!("mx: lookup of [{domain}] timed out")),
        Ok(Err(e)) => return FilterOutcome::Retry(format!("mx: [{domain}]: {e}")),
        Ok(Ok(None)) => {
            return FilterOutcome::Reject {
                reply: Reply::new(550, format!("no mail host for [{domain}]")),
                detail: None,
            }
        }
        Ok(Ok(Some(ip))) => ip,
    };
    envelope.forward_to_address = match address {
        IpAddr::V4(v4) if v4.is_unspecified() => String::new(),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    crate::info!(
        "mx: [{domain}] -> [{}]",
        if envelope.forward_to_address.is_empty() {
            "default"
        } else {
            &envelope.forward_to_address
        }
    );
    let bytes = envelope.to_bytes();
    let path = job.envelope.clone();
    match tokio::task::spawn_blocking(move || super::builtin::rewrite(&path, &bytes)).await {
        Ok(Ok(())) => FilterOutcome::Ok,
        Ok(Err(e)) => FilterOutcome::Error(e),
        Err(e) => FilterOutcome::Error(e.to_string()),
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
    fn parameters_parse() {
        let o = MxOptions::parse("nst=60;rt=90;127.0.0.1:53").unwrap();
        assert_eq!(o.server, Some("127.0.0.1:53".parse().unwrap()));
        assert_eq!(
            (o.per_question, o.overall),
            (Duration::from_secs(60), Duration::from_secs(90))
        );
        assert_eq!(MxOptions::parse("").unwrap().server, None);
        assert_eq!(MxOptions::parse("nst=x"), Err("nst=x"));
        assert_eq!(MxOptions::parse("dns.example"), Err("dns.example"));
    }
}
