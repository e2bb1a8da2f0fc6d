//! What filters, verifiers and DNS servers send back: DNS answers, filter
//! stdout, the option parsers, secrets files and OAuth account files must
//! never panic on arbitrary input.
#![no_main]
use emailrelay::auth::oauth::AccountFile;
use emailrelay::auth::Secrets;
use emailrelay_proto::sasl::MechanismPolicy;
use emailrelay::filter::{parse_output, FilterSpec};
use emailrelay::net::dns;
use emailrelay::net::dnsbl::DnsblConfig;
use emailrelay::verify::VerifierSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = data.first().map_or(0, |b| u16::from(*b) << 8 | 0x34);
    let _ = dns::decode(data, id, dns::MX);
    let _ = dns::decode(data, id, dns::A);
    let text = String::from_utf8_lossy(data);
    let _ = parse_output(&text, "rejected");
    let _ = FilterSpec::parse_chain(&text);
    let _ = VerifierSpec::parse(&text);
    let _ = DnsblConfig::parse(&text);
    let _ = Secrets::parse(&text, std::path::Path::new("fuzz"));
    let _ = Secrets::inline_client(&text);
    let _ = AccountFile::parse(&text);
    let _ = MechanismPolicy::parse(&text);
});
