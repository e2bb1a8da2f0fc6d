//! `--server-auth-config` and `--client-auth-config`: which mechanisms to
//! use, before and after TLS.
//!
//! E-MailRelay's syntax: semicolon-separated items, each a key letter, a
//! colon and a comma-separated list. `m` is an ordered allow list and `x`
//! a deny list for a session in clear; `a` and `d` do the same once TLS is
//! active, and fall back to `m` and `x` when absent. `m:;a:plain` offers
//! nothing in clear and only PLAIN under TLS. Names we do not implement
//! (SCRAM-SHA-1, say) are skipped, as they match nothing.

use super::Mechanism;

/// Parsed allow and deny lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MechanismPolicy {
    clear_allow: Option<Vec<Mechanism>>,
    clear_deny: Vec<Mechanism>,
    tls_allow: Option<Vec<Mechanism>>,
    tls_deny: Option<Vec<Mechanism>>,
}

impl MechanismPolicy {
    /// Parses the option value; `Err` says which item is wrong.
    pub fn parse(text: &str) -> Result<MechanismPolicy, String> {
        let mut policy = MechanismPolicy::default();
        for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((key, list)) = item.split_once(':') else {
                return Err(format!("\"{item}\" has no key: use m:, x:, a: or d:"));
            };
            let names: Vec<Mechanism> = list
                .split(',')
                .map(str::trim)
                .filter_map(Mechanism::parse)
                .collect();
            match key.trim().to_ascii_lowercase().as_str() {
                "m" => policy.clear_allow = Some(names),
                "x" => policy.clear_deny = names,
                "a" => policy.tls_allow = Some(names),
                "d" => policy.tls_deny = Some(names),
                other => return Err(format!("unknown key \"{other}:\": use m:, x:, a: or d:")),
            }
        }
        Ok(policy)
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
    fn unknown_mechanisms_match_nothing_and_bad_items_are_errors() {
        let p = MechanismPolicy::parse("m:scram-sha-1,plain").unwrap();
        assert_eq!(p.apply(&ALL, false), [Plain]);
        assert!(MechanismPolicy::parse("plain")
            .unwrap_err()
            .contains("has no key"));
        assert!(MechanismPolicy::parse("q:plain")
            .unwrap_err()
            .contains("unknown key \"q:\""));
    }
}
