//! `--server-auth-config` and `--client-auth-config`: which mechanisms to
//! use, before and after TLS.
//!
//! E-MailRelay's syntax: semicolon-separated items, each a key letter, a
//! colon and a comma-separated list. `m` is an ordered allow list and `x`
//! a deny list for a session in clear; `a` and `d` do the same once TLS is
//! active, and fall back to `m` and `x` when absent. `m:;a:plain` offers
//! nothing in clear and only PLAIN under TLS. Names we do not implement
//! (SCRAM-SHA-1, say) are skipped, as they match nothing.

use std::fmt;

use super::Mechanism;

/// Why a policy text is refused: the item at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// An item without `key:`.
    NoKey(String),
    /// A key other than `m`, `x`, `a` and `d`.
    UnknownKey(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NoKey(item) => write!(f, "\"{item}\" has no key: use m:, x:, a: or d:"),
            PolicyError::UnknownKey(key) => {
                write!(f, "unknown key \"{key}:\": use m:, x:, a: or d:")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

/// Parsed allow and deny lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MechanismPolicy {
    clear_allow: Option<Vec<Mechanism>>,
    clear_deny: Vec<Mechanism>,
    tls_allow: Option<Vec<Mechanism>>,
    tls_deny: Option<Vec<Mechanism>>,
    /// Whether each list names APOP, which POP3 offers beside the SASL
    /// mechanisms: (m, x, a, d); `None` for an absent list.
    apop: [Option<bool>; 4],
}

impl MechanismPolicy {
    /// Parses the option value; `Err` says which item is wrong.
    pub fn parse(text: &str) -> Result<MechanismPolicy, PolicyError> {
        let mut policy = MechanismPolicy::default();
        for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((key, list)) = item.split_once(':') else {
                return Err(PolicyError::NoKey(item.to_string()));
            };
            let names: Vec<Mechanism> = list
                .split(',')
                .map(str::trim)
                .filter_map(Mechanism::parse)
                .collect();
            let apop = Some(
                list.split(',')
                    .any(|n| n.trim().eq_ignore_ascii_case("apop")),
            );
            match key.trim().to_ascii_lowercase().as_str() {
                "m" => (policy.clear_allow, policy.apop[0]) = (Some(names), apop),
                "x" => (policy.clear_deny, policy.apop[1]) = (names, apop),
                "a" => (policy.tls_allow, policy.apop[2]) = (Some(names), apop),
                "d" => (policy.tls_deny, policy.apop[3]) = (Some(names), apop),
                other => return Err(PolicyError::UnknownKey(other.to_string())),
            }
        }
        Ok(policy)
    }

    /// Whether POP3's APOP is allowed, by the same rules as the SASL
    /// mechanisms (E-MailRelay lists it among them: `x:apop` turns it off).
    pub fn allows_apop(&self, secure: bool) -> bool {
        let [m, x, a, d] = self.apop;
        let (allow, deny) = if secure { (a.or(m), d.or(x)) } else { (m, x) };
        allow.unwrap_or(true) && !deny.unwrap_or(false)
    }

    /// The mechanisms of `available` this policy allows, in order: the
    /// allow list's order if there is one, else `available`'s.
    pub fn apply(&self, available: &[Mechanism], secure: bool) -> Vec<Mechanism> {
        let (allow, deny) = if secure {
            (
                self.tls_allow.as_ref().or(self.clear_allow.as_ref()),
                self.tls_deny.as_ref().unwrap_or(&self.clear_deny),
            )
        } else {
            (self.clear_allow.as_ref(), &self.clear_deny)
        };
        let ordered: Vec<Mechanism> = match allow {
            Some(allow) => allow
                .iter()
                .copied()
                .filter(|m| available.contains(m))
                .collect(),
            None => available.to_vec(),
        };
        let mut result: Vec<Mechanism> = Vec::new();
        for m in ordered {
            if !deny.contains(&m) && !result.contains(&m) {
                result.push(m);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mechanism::*;

    const ALL: [Mechanism; 3] = [Plain, Login, CramMd5];

    #[test]
    fn no_config_allows_everything_everywhere() {
        let p = MechanismPolicy::parse("").unwrap();
        assert_eq!(p.apply(&ALL, false), ALL);
        assert_eq!(p.apply(&ALL, true), ALL);
    }

    #[test]
    fn nothing_in_clear_and_plain_under_tls() {
        let p = MechanismPolicy::parse("m:;a:plain").unwrap();
        assert_eq!(p.apply(&ALL, false), []);
        assert_eq!(p.apply(&ALL, true), [Plain]);
    }

    #[test]
    fn allow_lists_order_and_deny_lists_remove() {
        let p = MechanismPolicy::parse("m:login,cram-md5,plain;x:plain").unwrap();
        assert_eq!(p.apply(&ALL, false), [Login, CramMd5]);
        // No a: or d: list: TLS sessions follow m: and x:.
        assert_eq!(p.apply(&ALL, true), [Login, CramMd5]);
        let p = MechanismPolicy::parse("x:plain;d:").unwrap();
        assert_eq!(p.apply(&ALL, false), [Login, CramMd5]);
        assert_eq!(p.apply(&ALL, true), ALL);
    }

    #[test]
    fn apop_follows_the_same_lists() {
        assert!(MechanismPolicy::parse("").unwrap().allows_apop(false));
        let p = MechanismPolicy::parse("m:;a:plain,apop").unwrap();
        assert!(!p.allows_apop(false));
        assert!(p.allows_apop(true));
        let p = MechanismPolicy::parse("x:APOP").unwrap();
        assert!(!p.allows_apop(false));
        assert!(!p.allows_apop(true), "no d: list: TLS follows x:");
    }

    #[test]
    fn unknown_mechanisms_match_nothing_and_bad_items_are_errors() {
        let p = MechanismPolicy::parse("m:scram-sha-1,plain").unwrap();
        assert_eq!(p.apply(&ALL, false), [Plain]);
        assert_eq!(
            MechanismPolicy::parse("plain").unwrap_err().to_string(),
            "\"plain\" has no key: use m:, x:, a: or d:"
        );
        assert_eq!(
            MechanismPolicy::parse("q:plain").unwrap_err().to_string(),
            "unknown key \"q:\": use m:, x:, a: or d:"
        );
    }
}
