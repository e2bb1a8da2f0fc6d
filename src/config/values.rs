//! Typed option values: numbers, ports, durations, addresses and keyword
//! lists, each refused with an error that names the option.

use std::net::IpAddr;
use std::time::Duration;

use super::{ConfigError, Instance, OPTIONS};

/// A `BadValue` error naming the option as the table spells it.
pub fn bad(option: &str, value: &str, why: impl ToString) -> ConfigError {
    let option = OPTIONS
        .iter()
        .find(|o| o.name == option)
        .map_or("?", |o| o.name);
    ConfigError::BadValue {
        option,
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// A value that parses with `FromStr`, or `default` when the option is absent.
pub fn parsed<T: std::str::FromStr>(
    args: &Instance,
    name: &str,
    default: T,
    expecting: &str,
) -> Result<T, ConfigError> {
    match args.value(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| bad(name, &v, expecting)),
    }
}

pub fn number(args: &Instance, name: &str, default: u64) -> Result<u64, ConfigError> {
    parsed(args, name, default, "expecting a number")
}

pub fn port(args: &Instance, name: &str, default: u16) -> Result<u16, ConfigError> {
    parsed(args, name, default, "expecting a port number 0-65535")
}

pub fn seconds(args: &Instance, name: &str, default: u64) -> Result<Duration, ConfigError> {
    number(args, name, default).map(Duration::from_secs)
}

/// A period that must be at least a second, or `None` when absent.
pub fn optional_seconds(args: &Instance, name: &str) -> Result<Option<Duration>, ConfigError> {
    match args.value(name) {
        None => Ok(None),
        Some(_) => match seconds(args, name, 0)? {
            d if d.is_zero() => Err(bad(name, "0", "the period must be at least one second")),
            d => Ok(Some(d)),
        },
    }
}

/// A period given as seconds or with a unit (`90`, `90s`, `30m`, `12h`,
/// `5d`), or `None` when absent; zero is refused.
pub fn optional_period(args: &Instance, name: &str) -> Result<Option<Duration>, ConfigError> {
    let Some(text) = args.value(name) else {
        return Ok(None);
    };
    let trimmed = text.trim();
    let (number, unit) = match trimmed.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&trimmed[..i], c.to_ascii_lowercase()),
        _ => (trimmed, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => {
            return Err(bad(
                name,
                &text,
                "expecting seconds, or a number with s, m, h or d",
            ))
        }
    };
    match number.parse::<u64>() {
        Ok(0) => Err(bad(name, &text, "the period must be at least one second")),
        Ok(n) => Ok(Some(Duration::from_secs(n.saturating_mul(scale)))),
        Err(_) => Err(bad(
            name,
            &text,
            "expecting seconds, or a number with s, m, h or d",
        )),
    }
}

pub fn ip(args: &Instance, name: &str) -> Result<Option<IpAddr>, ConfigError> {
    args.value(name)
        .map(|v| {
            v.parse()
                .map_err(|_| bad(name, &v, "expecting an IP address"))
        })
        .transpose()
}

/// The comma-separated keywords of an option (all its uses), trimmed,
/// empty ones skipped.
pub fn keywords(args: &Instance, name: &str) -> Vec<String> {
    args.values(name)
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The items of `--server-smtp-config` or `--client-smtp-config`:
/// `x`, `+x` and `with-x` turn a feature on, `-x`, `nox` and `without-x`
/// off. Items nobody asks about are left for a warning, as E-MailRelay
/// warns about them rather than refusing them.
pub struct Switches {
    items: Vec<String>,
}

impl Switches {
    pub fn new(args: &Instance, name: &str) -> Switches {
        Switches {
            items: keywords(args, name),
        }
    }

    /// Whether the feature is on, taking every spelling of it out of the list.
    pub fn take(&mut self, feature: &str, default: bool) -> bool {
        let mut result = default;
        let on = [
            feature.to_string(),
            format!("+{feature}"),
            format!("with-{feature}"),
        ];
        let off = [
            format!("-{feature}"),
            format!("no{feature}"),
            format!("without-{feature}"),
        ];
        self.items.retain(|item| {
            if on.contains(item) {
                result = true;
            } else if off.contains(item) {
                result = false;
            } else if item.strip_prefix('=') == Some(feature) {
                result = default;
            } else {
                return true;
            }
            false
        });
        result
    }

    /// Warnings for the items no feature took.
    pub fn leftovers(self) -> Vec<String> {
        self.items
            .into_iter()
            .map(|item| format!("unknown smtp-config item [{item}]"))
            .collect()
    }
}
