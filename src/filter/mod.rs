//! Filters: what `--filter` (as each message is stored) and
//! `--client-filter` (as each message is forwarded) run. A filter is an
//! external program, a `net:` server, or a built-in; several separated by
//! commas form a chain run in order, up to the first that does not say ok.
//!
//! Filters see the message only as two paths, content and envelope, and may
//! edit or remove the files: nothing about the message is remembered while
//! a filter runs. The outcome is a plain [`FilterOutcome`]; what it means
//! for the message (reply to the client, `.bad`, commit) is decided by the
//! caller, which knows whether it is the server or the client side.
//!
//! The option syntax is E-MailRelay 2.6.1's: `exit:<n>`, `sleepms:<n>`,
//! `net:`, `spam:`, `spam-edit:`, `copy:`, `deliver:`, `split:`, `mx:`,
//! `msgid:`, `file:<path>` or a program path. Parameters a built-in does not
//! know are ignored, as 2.6.1 ignores them, with a warning at startup.
//!
//! This module must not touch the network beyond `net:`, `spam:` and `mx:`
//! and must never hand a peer's text to a shell: programs are started with
//! execve semantics.

mod builtin;
mod mx;
mod network;
mod outcome;
mod program;
mod spam;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::store::Spool;

pub use builtin::{CopyOptions, DeliverOptions, SplitOptions};
pub use outcome::{parse_output, FilterOutcome, FilterResult, FilterType};

/// A `--filter` / `--client-filter` value that cannot be used, worded as
/// 2.6.1 words it (`invalid filter specification: ...`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// `exit:` or `sleepms:` with nothing after it.
    #[error("invalid filter specification: numeric value missing")]
    NumberMissing,
    /// `exit:` or `sleepms:` with something other than a small number.
    #[error("invalid filter specification: {why}: {value}")]
    Number { value: String, why: &'static str },
    /// `net:`, `spam:` or `spam-edit:` without a `host:port` or path.
    #[error("invalid filter specification: invalid host:service format{}", colon(.0))]
    Address(String),
    /// `file:` with nothing after it.
    #[error("invalid filter specification: empty file path")]
    EmptyPath,
    /// `deliver:` with a parameter it does not know (2.6.1 refuses these too).
    #[error("invalid filter specification: unknown deliver: parameter: {0}")]
    Parameter(String),
}

/// `: <text>`, or nothing for an empty text.
fn colon(text: &str) -> String {
    match text.is_empty() {
        true => String::new(),
        false => format!(": {text}"),
    }
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
    Exit(u32),
    /// `sleepms:<n>`: waits, then carries on (for testing).
    Sleep(u64),
    /// `copy:` into every sub-directory of the spool.
    Copy(CopyOptions),
    /// `deliver:` to the mailboxes of local recipients.
    Deliver(DeliverOptions),
    /// `split:` by recipient domain.
    Split(SplitOptions),
    /// `msgid:`: adds a Message-ID header if there is none.
    MsgId,
    /// `mx:`: `ForwardToAddress` from a DNS lookup of `ForwardTo`.
    Mx(mx::MxOptions),
}

/// 2.6.1 refuses numbers from this up (`numeric value too big`).
const NUMBER_LIMIT: u64 = u32::MAX as u64 / 1000;

impl FilterSpec {
    /// Parses a comma-separated chain; empty elements are skipped, as
    /// 2.6.1 skips them.
    pub fn parse_chain(text: &str) -> Result<Vec<FilterSpec>, FilterError> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(FilterSpec::parse)
            .collect()
    }

    fn parse(part: &str) -> Result<FilterSpec, FilterError> {
        let Some((scheme, rest)) = part.split_once(':') else {
            return Ok(program(part));
        };
        match scheme {
            "exit" => number(rest)
                .and_then(|n| u32::try_from(n).map_err(|_| too_big(rest)))
                .map(FilterSpec::Exit),
            "sleepms" => number(rest).map(FilterSpec::Sleep),
            "net" => address(rest).map(FilterSpec::Net),
            "spam" | "spam-edit" => address(rest).map(|address| FilterSpec::Spam {
                address,
                edit: scheme == "spam-edit",
            }),
            "copy" => Ok(FilterSpec::Copy(CopyOptions::parse(rest))),
            "deliver" => DeliverOptions::parse(rest)
                .map(FilterSpec::Deliver)
                .map_err(|param| FilterError::Parameter(param.to_string())),
            "split" => Ok(FilterSpec::Split(SplitOptions::parse(rest))),
            "msgid" => Ok(FilterSpec::MsgId),
            "mx" => Ok(FilterSpec::Mx(mx::MxOptions::parse(rest))),
            "file" if rest.is_empty() => Err(FilterError::EmptyPath),
            "file" => Ok(program(rest)),
            // Anything else with a colon is a program path.
            _ => Ok(program(part)),
        }
    }

    /// Parameters that were ignored, for a startup warning.
    pub fn ignored(&self) -> &[String] {
        match self {
            FilterSpec::Copy(o) => &o.ignored,
            FilterSpec::Split(o) => &o.ignored,
            FilterSpec::Mx(o) => &o.ignored,
            _ => &[],
        }
    }

    /// The name 2.6.1 gives this filter in log lines.
    pub fn id(&self) -> String {
        match self {
            FilterSpec::Program(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            FilterSpec::Net(address) | FilterSpec::Spam { address, .. } => location(address),
            FilterSpec::Exit(code) => format!("exit:{code}"),
            FilterSpec::Sleep(_) => "sleep".into(),
            FilterSpec::Copy(_) => "copy:".into(),
            FilterSpec::Deliver(_) => "deliver:".into(),
            FilterSpec::Split(_) => "split:".into(),
            FilterSpec::MsgId => "msgid:".into(),
            FilterSpec::Mx(_) => "mx:".into(),
        }
    }

    /// E-MailRelay compatibility: only `exit:0` is quiet, and a chain of
    /// quiet filters gets no summary line in the log.
    fn quiet(&self) -> bool {
        *self == FilterSpec::Exit(0)
    }
}

/// A program path, made absolute against the startup directory: the
/// daemon later runs in `/`, and no PATH search is done.
fn program(part: &str) -> FilterSpec {
    FilterSpec::Program(std::path::absolute(part).unwrap_or_else(|_| PathBuf::from(part)))
}

fn number(text: &str) -> Result<u64, FilterError> {
    if text.is_empty() {
        return Err(FilterError::NumberMissing);
    }
    // E-MailRelay compatibility: digits that fit an unsigned 32-bit
    // number, and "too big" from a thousandth of its range up.
    let parsed = match text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse::<u32>().ok(),
        false => None,
    };
    match parsed.map(u64::from) {
        Some(n) if n < NUMBER_LIMIT => Ok(n),
        Some(_) => Err(too_big(text)),
        None => Err(FilterError::Number {
            value: text.to_string(),
            why: "invalid numeric value",
        }),
    }
}

fn too_big(text: &str) -> FilterError {
    FilterError::Number {
        value: text.to_string(),
        why: "numeric value too big",
    }
}

/// `host:port` or a unix-domain socket path.
fn address(text: &str) -> Result<String, FilterError> {
    let usable = text.starts_with('/')
        || text
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && !port.is_empty());
    match usable {
        true => Ok(text.to_string()),
        false => Err(FilterError::Address(text.to_string())),
    }
}

/// 2.6.1's display of an unresolved address: `host/port/ip`, or the path.
fn location(address: &str) -> String {
    if address.starts_with('/') {
        return address.to_string();
    }
    match address.rsplit_once(':') {
        Some((host, port)) => format!("{host}/{port}/ip"),
        None => address.to_string(),
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

impl FilterJob {
    /// The message id, from the content file's name.
    pub fn message_id(&self) -> String {
        let name = self
            .content
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = crate::store::SpoolFile::Content.stem(&name);
        id.unwrap_or(&name).to_string()
    }
}

/// A parsed chain, ready to run; cheap to share.
pub struct Filter {
    chain: Vec<Link>,
    settings: FilterSettings,
    spool: Arc<Spool>,
    /// The chain's name in log lines: the filters' names joined by commas.
    id: String,
    quiet: bool,
}

enum Link {
    Spec(FilterSpec),
    Net(network::NetFilter),
}

impl Filter {
    /// A chain from parsed specs; ignored parameters are warned about here,
    /// once, at startup.
    pub fn new(specs: Vec<FilterSpec>, settings: FilterSettings, spool: Arc<Spool>) -> Arc<Filter> {
        for spec in &specs {
            for word in spec.ignored() {
                // 2.6.1 words this line for `mx:`; it ignores the rest silently.
                let name = spec.id();
                let name = name.trim_end_matches(':');
                crate::warning!("invalid {name} filter configuration: ignoring [{word}]");
            }
        }
        let id = specs
            .iter()
            .map(FilterSpec::id)
            .collect::<Vec<_>>()
            .join(",");
        let quiet = specs.iter().all(FilterSpec::quiet);
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
            id,
            quiet,
        })
    }

    /// Runs the chain as side `ty`, stopping at the first filter that does
    /// not say ok, and logs the summary line 2.6.1 logs. The special flag
    /// is set if any filter that ran set it.
    pub async fn run(&self, job: &FilterJob, ty: FilterType) -> FilterOutcome {
        let mut special = false;
        let mut outcome = FilterOutcome::ok();
        for link in &self.chain {
            outcome = self.run_link(link, job, ty).await;
            special |= outcome.special;
            if !outcome.carries_on() {
                break;
            }
        }
        let outcome = outcome.with_special(special);
        if !self.quiet {
            // E-MailRelay compatibility: routing filters are summarised
            // with the client side's wording (`+break`).
            let wording = if ty == FilterType::Server {
                FilterType::Server
            } else {
                FilterType::Client
            };
            // E-MailRelay compatibility: a verbose line, as `running` is.
            crate::verbose!(
                "{} [{}]: [{}]: {}",
                ty.name(),
                self.id,
                job.message_id(),
                outcome.describe(wording)
            );
        }
        outcome
    }

    async fn run_link(&self, link: &Link, job: &FilterJob, ty: FilterType) -> FilterOutcome {
        let timeout = self.settings.timeout;
        match link {
            Link::Net(net) => net.run(job, timeout).await,
            Link::Spec(FilterSpec::Program(path)) => program::run(ty, path, job, timeout).await,
            Link::Spec(FilterSpec::Exit(code)) => exit_outcome(*code, ty),
            Link::Spec(FilterSpec::Sleep(ms)) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                FilterOutcome::ok()
            }
            Link::Spec(FilterSpec::Mx(options)) => mx::run(options, job, ty, timeout).await,
            Link::Spec(FilterSpec::Spam { address, edit }) => {
                spam::run(address, *edit, job, timeout).await
            }
            Link::Spec(spec) => {
                let (spec, job) = (spec.clone(), job.clone());
                let (settings, spool) = (self.settings.clone(), Arc::clone(&self.spool));
                tokio::task::spawn_blocking(move || {
                    builtin::run(&spec, &job, ty, &settings, &spool)
                })
                .await
                .unwrap_or_else(|e| FilterOutcome::failed(&format!("filter task failed: {e}")))
            }
        }
    }
}

/// `exit:<n>`: as a program exiting with `n`, but with 2.6.1's words:
/// `rejected` as the response and `exit:<n>` as the reason.
fn exit_outcome(code: u32, ty: FilterType) -> FilterOutcome {
    let exit = i32::try_from(code).unwrap_or(i32::MAX);
    let outcome = FilterOutcome::of_exit(exit, ty, "");
    match outcome.result {
        FilterResult::Fail => FilterOutcome::fail("rejected", 0, &format!("exit:{code}"))
            .with_special(outcome.special),
        _ => outcome,
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter([{}])", self.id)
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
            FilterSpec::parse_chain("/usr/bin/f1, exit:103,,net:127.0.0.1:10101").unwrap(),
            [
                FilterSpec::Program(std::path::absolute("/usr/bin/f1").unwrap()),
                FilterSpec::Exit(103),
                FilterSpec::Net("127.0.0.1:10101".into())
            ]
        );
        assert_eq!(
            FilterSpec::parse_chain("split:raw").unwrap(),
            [FilterSpec::Split(SplitOptions::parse("raw"))]
        );
        assert_eq!(
            FilterSpec::parse_chain("msgid:").unwrap(),
            [FilterSpec::MsgId]
        );
        assert_eq!(
            FilterSpec::parse_chain("file:/bin/f2,sleepms:5").unwrap(),
            [
                FilterSpec::Program(std::path::absolute("/bin/f2").unwrap()),
                FilterSpec::Sleep(5)
            ]
        );
        // 2.6.1 takes any exit code and ignores unknown built-in parameters.
        assert_eq!(
            FilterSpec::parse_chain("exit:300").unwrap(),
            [FilterSpec::Exit(300)]
        );
        let copy = FilterSpec::parse_chain("copy:nodelete;bogus").unwrap();
        assert_eq!(copy[0].ignored(), ["bogus"]);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |t: &str| FilterSpec::parse_chain(t).unwrap_err().to_string();
        // 2.6.1's words.
        assert_eq!(
            err("exit:x"),
            "invalid filter specification: invalid numeric value: x"
        );
        assert_eq!(
            err("exit:"),
            "invalid filter specification: numeric value missing"
        );
        assert_eq!(
            err("exit:+1"),
            "invalid filter specification: invalid numeric value: +1"
        );
        assert_eq!(
            err("sleepms:99999999"),
            "invalid filter specification: numeric value too big: 99999999"
        );
        assert_eq!(
            err("exit:99999999999"),
            "invalid filter specification: invalid numeric value: 99999999999"
        );
        assert_eq!(
            FilterSpec::parse_chain("filter.sh").unwrap(),
            [FilterSpec::Program(
                std::env::current_dir().unwrap().join("filter.sh")
            )]
        );
        assert_eq!(
            err("net:"),
            "invalid filter specification: invalid host:service format"
        );
        assert_eq!(
            err("spam:host"),
            "invalid filter specification: invalid host:service format: host"
        );
        assert_eq!(
            err("file:"),
            "invalid filter specification: empty file path"
        );
        assert_eq!(
            err("deliver:bogus"),
            "invalid filter specification: unknown deliver: parameter: bogus"
        );
    }

    #[test]
    fn names_in_log_lines_are_2_6_1_names() {
        let ids: Vec<String> =
            FilterSpec::parse_chain("exit:0,/tmp/x/f.sh,net:127.0.0.1:99,net:/run/s,split:,mx:")
                .unwrap()
                .iter()
                .map(FilterSpec::id)
                .collect();
        assert_eq!(
            ids,
            [
                "exit:0",
                "f.sh",
                "127.0.0.1/99/ip",
                "/run/s",
                "split:",
                "mx:"
            ]
        );
        let job = FilterJob {
            content: "/spool/emailrelay.1.2.3.content".into(),
            envelope: "/spool/emailrelay.1.2.3.envelope.new".into(),
        };
        assert_eq!(job.message_id(), "emailrelay.1.2.3");
    }

    #[test]
    fn exit_filters_reject_with_2_6_1_words() {
        let o = exit_outcome(1, FilterType::Client);
        assert_eq!(
            (o.response.as_str(), o.reason.as_str()),
            ("rejected", "exit:1")
        );
        assert_eq!(
            exit_outcome(103, FilterType::Server),
            FilterOutcome::ok().with_special(true)
        );
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
