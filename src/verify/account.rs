//! `account:`: recipients checked against the system's account names
//! (those with a uid in the range, 1000-32767 by default) and our domain.
//! `lowercase` compares with account names lower-cased; `check` accepts
//! every address but marks account holders local; `remote` accepts only
//! account holders, as remote addresses.

use std::ops::RangeInclusive;

use super::{Answer, VerifyRequest};

/// `account:` parameters, `;`-separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountOptions {
    pub uids: RangeInclusive<u32>,
    pub lowercase: bool,
    pub check: bool,
    pub remote: bool,
    /// The account database (a test may point elsewhere).
    pub passwd: std::path::PathBuf,
}

impl Default for AccountOptions {
    fn default() -> Self {
        AccountOptions {
            uids: 1000..=32767,
            lowercase: false,
            check: false,
            remote: false,
            passwd: "/etc/passwd".into(),
        }
    }
}

impl AccountOptions {
    /// Parses `1000-1002;lowercase;check;remote` as 2.6.1 does: a word
    /// starting with a digit is the uid range (`Err` names it if it does
    /// not parse), a word of up to three letters sets the first of
    /// lowercase, remote or check whose letter it holds (so `lc` is only
    /// lowercase, as in 2.6.1), and anything else is ignored.
    pub fn parse(text: &str) -> Result<AccountOptions, &str> {
        let mut options = AccountOptions::default();
        for word in text.split(';').filter(|w| !w.is_empty()) {
            if word.starts_with(|c: char| c.is_ascii_digit()) {
                options.uids = parse_range(word).ok_or(word)?;
                continue;
            }
            let short = word.len() <= 3;
            let has = |letter: char, name: &str| (short && word.contains(letter)) || word == name;
            if has('l', "lowercase") {
                options.lowercase = true;
            } else if has('r', "remote") {
                options.remote = true;
            } else if has('c', "check") {
                options.check = true;
            }
        }
        Ok(options)
    }
}

/// `low-high`, or a single uid.
fn parse_range(text: &str) -> Option<RangeInclusive<u32>> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let (low, high) = (low.parse().ok()?, high.parse().ok()?);
    (low <= high).then_some(low..=high)
}

/// The verdict on one address.
pub fn verify(options: &AccountOptions, request: &VerifyRequest) -> Answer {
    let account = find_account(options, request);
    match (account, options.check, options.remote) {
        (Ok(_), _, true) => Answer::code(1, "", &request.address),
        (Ok((name, full_name)), _, false) => Answer::code(0, &full_name, &name),
        (Err(_), true, _) => Answer::code(1, "", &request.address),
        // E-MailRelay's reply and reasons.
        (Err(reason), false, _) => Answer::code(2, "rejected", &reason.to_string()),
    }
}

/// Why an address names no account, in E-MailRelay's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum NoAccount {
    /// The address is in another domain.
    #[error("[{domain}] does not match [{ours}]")]
    Domain { domain: String, ours: String },
    /// No account of that name (or the account list cannot be read).
    #[error("[{0}] is not a valid account name")]
    NotValid(String),
    /// The account's uid is outside the range.
    #[error("uid {uid} is not in the range {low}-{high}")]
    Uid { uid: u32, low: u32, high: u32 },
}

/// The account (name, full name) the address names, or why it names none.
fn find_account(
    options: &AccountOptions,
    request: &VerifyRequest,
) -> Result<(String, String), NoAccount> {
    let (local, domain) = request
        .address
        .rsplit_once('@')
        .unwrap_or((request.address.as_str(), ""));
    if !domain.eq_ignore_ascii_case(&request.domain) {
        return Err(NoAccount::Domain {
            domain: domain.to_string(),
            ours: request.domain.clone(),
        });
    }
    let not_valid = || NoAccount::NotValid(local.to_string());
    let passwd = std::fs::read_to_string(&options.passwd).map_err(|_| not_valid())?;
    let (fields, name) = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<&str>>())
        .filter(|fields| fields.len() > 2)
        .find_map(|fields| {
            let name = if options.lowercase {
                fields[0].to_ascii_lowercase()
            } else {
                fields[0].to_string()
            };
            (name == local).then_some((fields, name))
        })
        .ok_or_else(not_valid)?;
    let uid: u32 = fields[2].parse().map_err(|_| not_valid())?;
    if !options.uids.contains(&uid) {
        return Err(NoAccount::Uid {
            uid,
            low: *options.uids.start(),
            high: *options.uids.end(),
        });
    }
    let gecos = fields
        .get(4)
        .and_then(|g| g.split(',').next())
        .unwrap_or("");
    let full_name = if gecos.is_empty() {
        name.clone()
    } else {
        gecos.to_string()
    };
    Ok((name, full_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &std::path::Path, params: &str) -> AccountOptions {
        let passwd = dir.join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\nAlice:x:1000:1000:Alice Liddell,,,:/home/a:/bin/sh\n\
             bob:x:1001:1001::/home/b:/bin/sh\ncarol:x:40000:40000:Carol:/home/c:/bin/sh\n",
        )
        .unwrap();
        AccountOptions {
            passwd,
            ..AccountOptions::parse(params).unwrap()
        }
    }

    fn ask(options: &AccountOptions, address: &str) -> Answer {
        verify(
            options,
            &VerifyRequest {
                address: address.into(),
                domain: "example.com".into(),
                ..VerifyRequest::default()
            },
        )
    }

    #[test]
    fn accounts_in_the_uid_range_on_our_domain_are_local() {
        let dir = tempfile::tempdir().unwrap();
        let o = options(dir.path(), "");
        assert_eq!(ask(&o, "bob@Example.COM"), Answer::code(0, "bob", "bob"));
        assert_eq!(
            ask(&o, "Alice@example.com"),
            Answer::code(0, "Alice Liddell", "Alice")
        );
        // Refused with 2.6.1's reasons.
        for (refused, reason) in [
            ("root@example.com", "uid 0 is not in the range 1000-32767"),
            (
                "carol@example.com",
                "uid 40000 is not in the range 1000-32767",
            ),
            ("bob@other.com", "[other.com] does not match [example.com]"),
            ("alice@example.com", "[alice] is not a valid account name"),
        ] {
            assert_eq!(ask(&o, refused), Answer::code(2, "rejected", reason));
        }
        let o = options(dir.path(), "lowercase");
        assert_eq!(ask(&o, "alice@example.com").code, 0);
        let o = options(dir.path(), "0-50000");
        assert_eq!(ask(&o, "carol@example.com").code, 0);
        assert_eq!(ask(&o, "root@example.com").code, 0);
    }

    #[test]
    fn parameters_are_read_as_2_6_1_reads_them() {
        let o = AccountOptions::parse("lc;500-600;bogus").unwrap();
        assert!(o.lowercase && !o.check && !o.remote);
        assert_eq!(o.uids, 500..=600);
        assert!(AccountOptions::parse("r").unwrap().remote);
        assert!(AccountOptions::parse("check").unwrap().check);
        assert_eq!(AccountOptions::parse("2000").unwrap().uids, 2000..=2000);
        assert_eq!(AccountOptions::parse("10-5"), Err("10-5"));
    }

    #[test]
    fn check_and_remote_modes() {
        let dir = tempfile::tempdir().unwrap();
        let o = options(dir.path(), "check");
        assert_eq!(ask(&o, "bob@example.com").code, 0);
        assert_eq!(
            ask(&o, "zed@example.com"),
            Answer::code(1, "", "zed@example.com")
        );
        let o = options(dir.path(), "remote");
        assert_eq!(
            ask(&o, "bob@example.com"),
            Answer::code(1, "", "bob@example.com")
        );
        assert_eq!(ask(&o, "zed@example.com").code, 2);
    }
}
