//! Filters: what `--filter` (as each message is stored) and
//! `--client-filter` (as each message is forwarded) run. A filter is an
//! external program, a `net:` server, or a built-in; several separated by
//! commas form a chain run in order.
//!
//! Filters see the message only as two paths, content and envelope, and may
//! edit or remove the files: nothing about the message is remembered while
//! a filter runs. The outcome is a plain [`FilterOutcome`]; what it means
//! for the message (reply to the client, `.bad`, commit) is decided by the
//! caller, which knows whether it is the server or the client side.
//!
//! This module must not touch the network beyond `net:` and must never hand
//! a peer's text to a shell: programs are started with execve semantics.

mod builtin;
mod mx;
mod network;
mod program;
mod spam;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use emailrelay_proto::smtp::Reply;

use crate::store::Spool;

pub use program::parse_response;

/// A `--filter` / `--client-filter` value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// An empty element in the comma-separated list.
    #[error("invalid filter [{0}]: empty filter name")]
    Empty(String),
    /// `exit:` without a number from 0 to 255.
    #[error("invalid filter [{0}]: exit: needs a number from 0 to 255")]
    Exit(String),
    /// A built-in with a parameter it does not know.
    #[error("invalid filter [{spec}]: unknown parameter [{param}]")]
    Parameter { spec: String, param: String },
    /// `net:` without an address.
    #[error("invalid filter [{0}]: no address")]
    Address(String),
}

/// One filter of a chain, parsed from the option text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterSpec {
    /// An external program, run with the content and envelope paths.
    Program(PathBuf),
    /// `net:<address>`: the line protocol to a filter server.
    Net(String),
    /// `spam:<address>` (reject spam) or `spam-edit:<address>` (let
    /// SpamAssassin rewrite the content): a spamd server.
    Spam { address: String, edit: bool },
    /// `exit:<n>`: as a program that exits with `n` at once.
    Exit(i32),
    /// `copy:` into every sub-directory of the spool.
    Copy(builtin::CopyOptions),
    /// `deliver:` to the mailboxes of local recipients.
    Deliver(builtin::DeliverOptions),
    /// `split:` by recipient domain (`split:raw`: domains compared exactly).
    Split { raw: bool },
    /// `msgid:`: adds a Message-ID header if there is none.
    MsgId,
    /// `mx:`: `ForwardToAddress` from a DNS lookup of `ForwardTo`.
    Mx(mx::MxOptions),
}

impl FilterSpec {
    /// Parses a comma-separated chain.
    pub fn parse_chain(text: &str) -> Result<Vec<FilterSpec>, FilterError> {
        text.split(',')
            .map(|part| FilterSpec::parse(part.trim(), text))
            .collect()
    }

    fn parse(part: &str, whole: &str) -> Result<FilterSpec, FilterError> {
        if part.is_empty() {
            return Err(FilterError::Empty(whole.to_string()));
        }
        let Some((scheme, rest)) = part.split_once(':') else {
            return program(part);
        };
        match scheme {
            "exit" => rest
                .parse::<i32>()
                .ok()
                .filter(|n| (0..=255).contains(n))
                .map(FilterSpec::Exit)
                .ok_or_else(|| FilterError::Exit(part.to_string())),
            "net" if rest.is_empty() => Err(FilterError::Address(part.to_string())),
            "net" => Ok(FilterSpec::Net(rest.to_string())),
            "copy" => builtin::CopyOptions::parse(rest)
                .map(FilterSpec::Copy)
                .map_err(|param| bad_param(part, param)),
            "deliver" => builtin::DeliverOptions::parse(rest)
                .map(FilterSpec::Deliver)
                .map_err(|param| bad_param(part, param)),
            "split" => match rest {
                "" => Ok(FilterSpec::Split { raw: false }),
                "raw" => Ok(FilterSpec::Split { raw: true }),
                other => Err(bad_param(part, other)),
            },
            "msgid" if rest.is_empty() => Ok(FilterSpec::MsgId),
            "msgid" => Err(bad_param(part, rest)),
            "spam" | "spam-edit" if rest.is_empty() => Err(FilterError::Address(part.to_string())),
            "spam" | "spam-edit" => Ok(FilterSpec::Spam {
                address: rest.to_string(),
                edit: scheme == "spam-edit",
            }),
            "mx" => mx::MxOptions::parse(rest)
                .map(FilterSpec::Mx)
                .map_err(|param| bad_param(part, param)),
            // Anything else with a colon is a program path (a Windows drive
            // letter cannot occur here).
            _ => program(part),
        }
    }
}

/// A program path, made absolute against the startup directory: the
/// daemon later runs in `/`, and no PATH search is done.
fn program(part: &str) -> Result<FilterSpec, FilterError> {
    let path = std::path::absolute(part).unwrap_or_else(|_| PathBuf::from(part));
    Ok(FilterSpec::Program(path))
}

fn bad_param(spec: &str, param: &str) -> FilterError {
    FilterError::Parameter {
        spec: spec.to_string(),
        param: param.to_string(),
    }
}

/// What a filter decided. Exit codes are E-MailRelay's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterOutcome {
    /// Carry on with the message (exit 0 or 101, `ok`).
    Ok,
    /// Carry on, and rescan the spool for forwarding afterwards (exit 103).
    Rescan,
    /// Carry on, and end the forwarding pass after this message (exit 102).
    StopScanning,
    /// The filter took the message over, and may have removed the files
    /// (exit 100): nothing more is done with it.
    Abandon,
    /// Refused (exit 1-99): the reply for the client or the `.bad` reason,
    /// and a detail line that is only logged.
    Reject {
        reply: Reply,
        detail: Option<String>,
    },
    /// The filter could not run or did not finish (timeout, signal,
    /// reserved exit code): treated as a failure with this reason.
    Error(String),
    /// Not now (a DNS failure, say): the message waits for a later
    /// attempt; a client is told 451.
    Retry(String),
}

impl FilterOutcome {
    /// True if the message goes on to the next filter.
    pub fn carries_on(&self) -> bool {
        matches!(
            self,
            FilterOutcome::Ok | FilterOutcome::Rescan | FilterOutcome::StopScanning
        )
    }
}

/// What the built-ins and programs need besides the two paths.
#[derive(Clone, Debug)]
pub struct FilterSettings {
    /// `--filter-timeout`.
    pub timeout: Duration,
    /// `--delivery-dir` (defaults to the spool directory).
    pub delivery_dir: PathBuf,
    /// `--domain`, for Message-ID.
    pub domain: String,
}

/// Both filter chains as configured, for `run` to build once the spool is open.
#[derive(Clone, Debug)]
pub struct FilterConfig {
    /// `--filter`: run as each message is stored.
    pub server: Vec<FilterSpec>,
    /// `--client-filter`: run as each message is forwarded.
    pub client: Vec<FilterSpec>,
    pub settings: FilterSettings,
}

/// The files one filter run is about.
#[derive(Clone, Debug)]
pub struct FilterJob {
    pub content: PathBuf,
    pub envelope: PathBuf,
}

/// A parsed chain, ready to run; cheap to share.
pub struct Filter {
    chain: Vec<Link>,
    settings: FilterSettings,
    spool: Arc<Spool>,
    /// The option name, for log lines (`filter` or `client-filter`).
    label: &'static str,
}

enum Link {
    Spec(FilterSpec),
    Net(network::NetFilter),
}

impl Filter {
    /// A chain from parsed specs.
    pub fn new(
        label: &'static str,
        specs: Vec<FilterSpec>,
        settings: FilterSettings,
        spool: Arc<Spool>,
    ) -> Arc<Filter> {
        let chain = specs
            .into_iter()
            .map(|spec| match spec {
                FilterSpec::Net(address) => Link::Net(network::NetFilter::new(address)),
                other => Link::Spec(other),
            })
            .collect();
        Arc::new(Filter {
            chain,
            settings,
            spool,
            label,
        })
    }

    /// Runs the chain, stopping at the first filter that does not carry on.
    /// Rescan and stop-scanning requests from earlier links are kept.
    pub async fn run(&self, job: &FilterJob) -> FilterOutcome {
        let mut result = FilterOutcome::Ok;
        for link in &self.chain {
            let outcome = self.run_link(link, job).await;
            if !outcome.carries_on() {
                return outcome;
            }
            if outcome != FilterOutcome::Ok {
                result = outcome;
            }
        }
        result
    }

    async fn run_link(&self, link: &Link, job: &FilterJob) -> FilterOutcome {
        let timeout = self.settings.timeout;
        match link {
            Link::Net(net) => net.run(job, timeout).await,
            Link::Spec(FilterSpec::Program(path)) => {
                program::run(self.label, path, job, timeout).await
            }
            Link::Spec(FilterSpec::Exit(code)) => program::outcome_of_exit(*code, ""),
            Link::Spec(FilterSpec::Mx(options)) => mx::run(options, job).await,
            Link::Spec(FilterSpec::Spam { address, edit }) => {
                spam::run(address, *edit, job, timeout).await
            }
            Link::Spec(spec) => {
                let (spec, job) = (spec.clone(), job.clone());
                let (settings, spool) = (self.settings.clone(), Arc::clone(&self.spool));
                tokio::task::spawn_blocking(move || builtin::run(&spec, &job, &settings, &spool))
                    .await
                    .unwrap_or_else(|e| FilterOutcome::Error(format!("filter task failed: {e}")))
            }
        }
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({}, {} link(s))", self.label, self.chain.len())
    }
}

/// True if `name` is safe as one directory name under a base directory:
/// not empty, not `.` or `..`, no `/`, no NUL, not hidden.
pub fn is_safe_mailbox_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\0', '\r', '\n'])
        && Path::new(name).components().count() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_builtins_parse() {
        assert_eq!(
            FilterSpec::parse_chain("/usr/bin/f1, exit:103,net:127.0.0.1:10101").unwrap(),
            [
                FilterSpec::Program("/usr/bin/f1".into()),
                FilterSpec::Exit(103),
                FilterSpec::Net("127.0.0.1:10101".into())
            ]
        );
        assert_eq!(
            FilterSpec::parse_chain("split:raw").unwrap(),
            [FilterSpec::Split { raw: true }]
        );
        assert_eq!(
            FilterSpec::parse_chain("msgid:").unwrap(),
            [FilterSpec::MsgId]
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |t: &str| FilterSpec::parse_chain(t).unwrap_err().to_string();
        assert_eq!(
            err("exit:x"),
            "invalid filter [exit:x]: exit: needs a number from 0 to 255"
        );
        assert_eq!(err("a,,b"), "invalid filter [a,,b]: empty filter name");
        assert_eq!(
            FilterSpec::parse_chain("filter.sh").unwrap(),
            [FilterSpec::Program(
                std::env::current_dir().unwrap().join("filter.sh")
            )]
        );
        assert_eq!(
            err("copy:nodelete;bogus"),
            "invalid filter [copy:nodelete;bogus]: unknown parameter [bogus]"
        );
        assert_eq!(err("net:"), "invalid filter [net:]: no address");
        assert_eq!(
            err("mx:x;y"),
            "invalid filter [mx:x;y]: unknown parameter [x]"
        );
        assert_eq!(err("spam:"), "invalid filter [spam:]: no address");
    }

    #[test]
    fn mailbox_names_cannot_leave_the_base_directory() {
        for bad in ["", ".", "..", "../x", "a/b", "/etc", ".hidden", "a\nb"] {
            assert!(!is_safe_mailbox_name(bad), "{bad:?}");
        }
        for good in ["alice", "postmaster", "bob.smith", "a-b_c"] {
            assert!(is_safe_mailbox_name(good), "{good:?}");
        }
    }
}
