//! `--tls-config`: E-MailRelay 2.6.1's comma-separated keywords, parsed
//! once at startup into the protocol ranges and options of the two
//! directions. Pure: no OpenSSL calls here, so the rules are unit-tested.
//!
//! E-MailRelay compatibility: the keywords and what they do.
//! - `tlsv1.0`, `tlsv1.1`, `tlsv1.2`, `tlsv1.3` (and `sslv3`) set a minimum
//!   version, `-tlsv1.0` ... `-tlsv1.3` (and `-sslv3`) a maximum; given
//!   several, the newest version of each kind counts, as in 2.6.1;
//! - `noverify` turns certificate checking off even with a CA list;
//! - `op_all`, `op_no_ticket`, `op_no_resumption`, `op_server_preference`
//!   set the OpenSSL options of those names;
//! - `openssl` selects the library this build has; `mbedtls` is not built
//!   in and is named in a warning;
//! - anything else is ignored with a warning, silenced by `ignoreextra`.
//!
//! Where we differ, deliberately (docs/compatibility.md):
//! - without a minimum keyword the minimum is TLS 1.2, both ways;
//! - a minimum below TLS 1.2 applies to the listener only. Forwarding stays
//!   at TLS 1.2 or later unless `client-tlsv1.0` or `client-tlsv1.1` (our
//!   own keywords) ask for less: an old LAN device is a reason to accept old
//!   TLS, seldom a reason to send mail and passwords over it;
//! - every use of TLS 1.0 or 1.1 is named in a startup warning.

use super::TlsError;

/// A protocol version, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl Version {
    /// As people write it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Version::Ssl3 => "SSL 3.0",
            Version::Tls10 => "TLS 1.0",
            Version::Tls11 => "TLS 1.1",
            Version::Tls12 => "TLS 1.2",
            Version::Tls13 => "TLS 1.3",
        }
    }

    /// Older than TLS 1.2 (RFC 8996 deprecates them).
    pub fn is_legacy(self) -> bool {
        self < Version::Tls12
    }
}

/// The versions one direction may use: `min..=max`, `None` for no maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub min: Version,
    pub max: Option<Version>,
}

impl Range {
    /// True if the range allows a version older than TLS 1.2.
    pub fn is_legacy(&self) -> bool {
        self.min.is_legacy() || self.max.is_some_and(Version::is_legacy)
    }

    /// `None` if no version is left.
    fn check(self) -> Option<Range> {
        match self.max {
            Some(max) if max < self.min => None,
            _ => Some(self),
        }
    }
}

/// The OpenSSL options that `op_*` keywords set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub all: bool,
    pub no_ticket: bool,
    pub no_resumption: bool,
    pub server_preference: bool,
}

/// Everything `--tls-config` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The listener's versions (SMTP server, STARTTLS and implicit TLS).
    pub server: Range,
    /// Forwarding's versions; `None` if the keywords leave it no version
    /// (an error only if client TLS is used).
    pub client: Option<Range>,
    /// `noverify`: no certificate checks even with a CA list.
    pub noverify: bool,
    pub options: Options,
}

impl Default for TlsConfig {
    fn default() -> Self {
        let modern = Range {
            min: Version::Tls12,
            max: None,
        };
        TlsConfig {
            server: modern,
            client: Some(modern),
            noverify: false,
            options: Options::default(),
        }
    }
}

impl TlsConfig {
    /// Parses `--tls-config`; also returns the startup warnings it calls for.
    pub fn parse(text: &str) -> Result<(TlsConfig, Vec<String>), TlsError> {
        let mut config = TlsConfig::default();
        let mut min: Option<Version> = None;
        let mut max: Option<Version> = None;
        let mut client_min: Option<Version> = None;
        let mut ignored = Vec::new();
        let mut ignore_extra = false;
        let mut mbedtls = false;
        let newest = |slot: &mut Option<Version>, v: Version| {
            *slot = Some(slot.map_or(v, |old| old.max(v)));
        };
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let lower = word.to_ascii_lowercase();
            if let Some(v) = version_keyword(&lower) {
                newest(&mut min, v);
            } else if let Some(v) = lower.strip_prefix('-').and_then(version_keyword) {
                newest(&mut max, v);
            } else if let Some(v) = lower.strip_prefix("client-").and_then(version_keyword) {
                newest(&mut client_min, v);
            } else {
                match lower.as_str() {
                    "openssl" => {}
                    "mbedtls" => mbedtls = true,
                    "ignoreextra" => ignore_extra = true,
                    "noverify" => config.noverify = true,
                    "op_all" => config.options.all = true,
                    "op_no_ticket" => config.options.no_ticket = true,
                    "op_no_resumption" => config.options.no_resumption = true,
                    "op_server_preference" => config.options.server_preference = true,
                    _ => ignored.push(word.to_string()),
                }
            }
        }
        // Only a maximum below TLS 1.2: the range is the old versions.
        let default_min = match max {
            Some(max) if max.is_legacy() => Version::Tls10,
            _ => Version::Tls12,
        };
        config.server = Range {
            min: min.unwrap_or(default_min),
            max,
        }
        .check()
        .ok_or_else(|| TlsError::Keyword {
            keyword: text.to_string(),
            why: "the minimum version is newer than the maximum",
        })?;
        // Raising the minimum applies both ways; lowering it below TLS 1.2
        // only where the client-* keywords say so.
        let client_floor = client_min.unwrap_or(Version::Tls12);
        config.client = Range {
            min: client_min.unwrap_or_else(|| min.map_or(client_floor, |m| m.max(client_floor))),
            max,
        }
        .check();
        let mut warnings = Vec::new();
        if mbedtls {
            warnings.push(
                "--tls-config keyword [mbedtls] ignored: this build has OpenSSL only".to_string(),
            );
        }
        if !ignored.is_empty() && !ignore_extra {
            warnings.push(format!(
                "--tls-config keywords ignored: [{}]",
                ignored.join(",")
            ));
        }
        Ok((config, warnings))
    }

    /// The startup warnings for old versions, for the directions in use:
    /// the listener (`server`) and forwarding (`client`).
    pub fn legacy_warnings(&self, server: bool, client: bool) -> Vec<String> {
        let mut warnings = Vec::new();
        if server && self.server.is_legacy() {
            let upstream = if self.client.is_some_and(|c| c.is_legacy()) {
                ""
            } else {
                "; forwarding stays at TLS 1.2 or later (keyword client-tlsv1.0 or client-tlsv1.1 to change that)"
            };
            warnings.push(format!(
                "--tls-config: the TLS listener accepts {}: old, weak versions (RFC 8996) for \
                 devices that can do no better; OpenSSL's security level is 0 there{upstream}",
                legacy_names(&self.server)
            ));
        }
        if let Some(client) = self.client.filter(|c| client && c.is_legacy()) {
            warnings.push(format!(
                "--tls-config: forwarding may use {}: old, weak versions (RFC 8996) for \
                 smarthosts that can do no better; OpenSSL's security level is 0 there",
                legacy_names(&client)
            ));
        }
        warnings
    }
}

/// `tlsv1.2` -> TLS 1.2 (lower case in, as parsed).
fn version_keyword(word: &str) -> Option<Version> {
    Some(match word {
        "sslv3" => Version::Ssl3,
        "tlsv1.0" => Version::Tls10,
        "tlsv1.1" => Version::Tls11,
        "tlsv1.2" => Version::Tls12,
        "tlsv1.3" => Version::Tls13,
        _ => return None,
    })
}

/// "TLS 1.0 and TLS 1.1", the legacy versions a range allows.
fn legacy_names(range: &Range) -> String {
    let all = [Version::Ssl3, Version::Tls10, Version::Tls11];
    let names: Vec<&str> = all
        .iter()
        .filter(|v| **v >= range.min && range.max.is_none_or(|max| **v <= max))
        .map(|v| v.name())
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TlsConfig {
        TlsConfig::parse(text).unwrap().0
    }

    fn range(min: Version, max: Option<Version>) -> Range {
        Range { min, max }
    }

    #[test]
    fn default_is_tls12_and_later_both_ways() {
        let c = parse("");
        assert_eq!(c.server, range(Version::Tls12, None));
        assert_eq!(c.client, Some(range(Version::Tls12, None)));
        assert!(TlsConfig::parse("").unwrap().1.is_empty());
    }

    #[test]
    fn minimum_and_maximum_keywords() {
        assert_eq!(parse("tlsv1.3").server, range(Version::Tls13, None));
        assert_eq!(parse("tlsv1.3").client, Some(range(Version::Tls13, None)));
        assert_eq!(
            parse("-tlsv1.2").server,
            range(Version::Tls12, Some(Version::Tls12))
        );
        // E-MailRelay compatibility: of several, the newest counts.
        assert_eq!(parse("tlsv1.0,tlsv1.2").server.min, Version::Tls12);
        assert_eq!(parse("-tlsv1.2,-tlsv1.3").server.max, Some(Version::Tls13));
        assert_eq!(parse("TLSv1.3").server.min, Version::Tls13);
        assert!(TlsConfig::parse("tlsv1.3,-tlsv1.2").is_err());
    }

    #[test]
    fn old_versions_reach_the_listener_and_upstream_only_when_asked() {
        let c = parse("tlsv1.0");
        assert_eq!(c.server, range(Version::Tls10, None));
        assert_eq!(c.client, Some(range(Version::Tls12, None)));
        assert!(c.legacy_warnings(false, true).is_empty());
        assert_eq!(
            c.legacy_warnings(true, true),
            [
                "--tls-config: the TLS listener accepts TLS 1.0 and TLS 1.1: old, weak versions \
              (RFC 8996) for devices that can do no better; OpenSSL's security level is 0 \
              there; forwarding stays at TLS 1.2 or later (keyword client-tlsv1.0 or \
              client-tlsv1.1 to change that)"
            ]
        );
        let c = parse("tlsv1.1,client-tlsv1.1");
        assert_eq!(c.server, range(Version::Tls11, None));
        assert_eq!(c.client, Some(range(Version::Tls11, None)));
        let warnings = c.legacy_warnings(true, true);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("--tls-config: the TLS listener accepts TLS 1.1:"));
        assert_eq!(
            c.legacy_warnings(false, true),
            [
                "--tls-config: forwarding may use TLS 1.1: old, weak versions (RFC 8996) for \
              smarthosts that can do no better; OpenSSL's security level is 0 there"
            ]
        );
        // A maximum below TLS 1.2 leaves forwarding nothing unless asked.
        assert!(parse("sslv3").legacy_warnings(true, false)[0]
            .starts_with("--tls-config: the TLS listener accepts SSL 3.0, TLS 1.0 and TLS 1.1:"));
        let c = parse("-tlsv1.1");
        assert!(c.server.is_legacy());
        assert_eq!(c.client, None);
        assert!(!parse("tlsv1.2").server.is_legacy());
    }

    #[test]
    fn other_keywords() {
        let (c, warnings) = TlsConfig::parse("openssl,noverify,op_no_ticket,op_all").unwrap();
        assert!(c.noverify && c.options.no_ticket && c.options.all);
        assert!(!c.options.server_preference && !c.options.no_resumption);
        assert!(warnings.is_empty(), "{warnings:?}");
        let (_, warnings) = TlsConfig::parse("x,mbedtls,bogus").unwrap();
        assert_eq!(
            warnings,
            [
                "--tls-config keyword [mbedtls] ignored: this build has OpenSSL only",
                "--tls-config keywords ignored: [x,bogus]"
            ]
        );
        let (_, warnings) = TlsConfig::parse("x,ignoreextra").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
