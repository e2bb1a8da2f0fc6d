//! The admin interface's line protocol (E-MailRelay's `--admin` port).
//!
//! [`AdminCommand::parse`] reads one command line; the driver runs it and
//! writes the answer with [`reply`], which adds the line ending and the
//! `E-MailRelay> ` prompt. Behaviour as E-MailRelay 2.6.1 shows it:
//!
//! - no prompt on connect ("it confuses some clients"), one after every
//!   answer, and an empty line gets the prompt alone;
//! - command words are matched whole and without regard to case (no
//!   abbreviations); anything else is `error: unrecognised command`, and
//!   the 30th of those closes the connection;
//! - `terminate` exists only with `--admin-terminate`: it is not in `help`
//!   and is unrecognised otherwise;
//! - answers end with the line ending the client used (`\r\n` or `\n`).

/// The prompt written after every answer.
pub const PROMPT: &str = "E-MailRelay> ";

/// Unrecognised commands allowed on one connection before it is closed.
pub const ERROR_LIMIT: usize = 30;

/// The keys of `info`, in the order its usage line lists them.
pub const INFO_KEYS: &[&str] = &["copyright", "credit", "version", "warranty"];

/// One parsed admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// `dnsbl start`, or `dnsbl stop [<seconds>]` (`None`: until started).
    Dnsbl(DnsblAction),
    Failures,
    Flush,
    Forward,
    Help,
    /// `info <key>`; `None` for a missing or unknown key.
    Info(Option<&'static str>),
    List,
    Notify,
    Pid,
    Quit,
    /// `smtp enable` (`Some(true)`), `smtp disable`, or `None` for a usage line.
    Smtp(Option<bool>),
    Status,
    Terminate,
    UnfailAll,
    /// An empty line: just prompt again.
    Empty,
    /// Anything else.
    Unrecognised,
}

/// What `dnsbl` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsblAction {
    Start,
    /// Stop checking, for so many seconds or (`None`) until started again.
    Stop(Option<u32>),
    /// Not understood: answer with the usage line.
    Usage,
}

impl AdminCommand {
    /// Parses one line (without its terminator). `terminate` is a command
    /// only when `with_terminate` (`--admin-terminate`).
    pub fn parse(line: &str, with_terminate: bool) -> AdminCommand {
        let mut words = line.split_ascii_whitespace();
        let Some(word) = words.next() else {
            return AdminCommand::Empty;
        };
        let is = |name: &str| word.eq_ignore_ascii_case(name);
        let arg = words.next();
        if is("flush") {
            AdminCommand::Flush
        } else if is("forward") {
            AdminCommand::Forward
        } else if is("help") {
            AdminCommand::Help
        } else if is("status") {
            AdminCommand::Status
        } else if is("notify") {
            AdminCommand::Notify
        } else if is("list") {
            AdminCommand::List
        } else if is("failures") {
            AdminCommand::Failures
        } else if is("unfail-all") {
            AdminCommand::UnfailAll
        } else if is("pid") {
            AdminCommand::Pid
        } else if is("quit") {
            AdminCommand::Quit
        } else if is("terminate") && with_terminate {
            AdminCommand::Terminate
        } else if is("info") {
            let key = arg.and_then(|a| INFO_KEYS.iter().find(|k| a.eq_ignore_ascii_case(k)));
            AdminCommand::Info(key.copied())
        } else if is("dnsbl") {
            AdminCommand::Dnsbl(dnsbl_action(arg, words.next()))
        } else if is("smtp") {
            AdminCommand::Smtp(match arg {
                Some(a) if a.eq_ignore_ascii_case("enable") => Some(true),
                Some(a) if a.eq_ignore_ascii_case("disable") => Some(false),
                _ => None,
            })
        } else {
            AdminCommand::Unrecognised
        }
    }

    /// The answer to `help`.
    pub fn help_text(with_terminate: bool) -> String {
        let terminate = if with_terminate { "terminate, " } else { "" };
        format!(
            "commands: dnsbl, failures, flush, forward, help, info, list, notify, pid, quit, smtp, status, {terminate}unfail-all"
        )
    }

    /// The usage line for `info` without a known key.
    pub fn info_usage() -> String {
        format!("usage: info {{{}}}", INFO_KEYS.join("|"))
    }
}

/// The usage line for a `dnsbl` command not understood.
pub const DNSBL_USAGE: &str = "usage: dnsbl {start|stop <timeout>}";
/// The usage line for `smtp` without `enable` or `disable`.
pub const SMTP_USAGE: &str = "usage: smtp {disable|enable}";

fn dnsbl_action(action: Option<&str>, arg: Option<&str>) -> DnsblAction {
    match (action, arg) {
        (Some(a), None) if a.eq_ignore_ascii_case("start") => DnsblAction::Start,
        (Some(a), None) if a.eq_ignore_ascii_case("stop") => DnsblAction::Stop(None),
        (Some(a), Some(n)) if a.eq_ignore_ascii_case("stop") => match n.parse::<u32>() {
            Ok(seconds) if n.bytes().all(|c| c.is_ascii_digit()) => {
                DnsblAction::Stop(Some(seconds))
            }
            _ => DnsblAction::Usage,
        },
        _ => DnsblAction::Usage,
    }
}

/// The line ending a client used, which answers then use too.
pub fn line_ending(raw_line: &[u8]) -> &'static str {
    if raw_line.ends_with(b"\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// An answer as it goes on the wire: a non-empty text gets a line
/// ending, every `\n` in it becomes `eol`, and the prompt follows.
pub fn reply(text: &str, eol: &str) -> String {
    let mut out = String::with_capacity(text.len() + PROMPT.len() + 2);
    if !text.is_empty() {
        out.push_str(&text.replace('\n', eol));
        out.push_str(eol);
    }
    out.push_str(PROMPT);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_words_without_regard_to_case() {
        assert_eq!(AdminCommand::parse("forward", false), AdminCommand::Forward);
        assert_eq!(AdminCommand::parse("FLUSH", false), AdminCommand::Flush);
        assert_eq!(
            AdminCommand::parse("unfail-all x", false),
            AdminCommand::UnfailAll
        );
        assert_eq!(
            AdminCommand::parse("unfail", false),
            AdminCommand::Unrecognised
        );
        assert_eq!(AdminCommand::parse("f", false), AdminCommand::Unrecognised);
        assert_eq!(AdminCommand::parse("  ", false), AdminCommand::Empty);
        assert_eq!(AdminCommand::parse(" \t", false), AdminCommand::Empty);
        assert_eq!(
            AdminCommand::parse("Smtp Disable", false),
            AdminCommand::Smtp(Some(false))
        );
        assert_eq!(
            AdminCommand::parse("smtp enable", false),
            AdminCommand::Smtp(Some(true))
        );
        assert_eq!(AdminCommand::parse("smtp", false), AdminCommand::Smtp(None));
    }

    #[test]
    fn terminate_exists_only_when_enabled() {
        assert_eq!(
            AdminCommand::parse("terminate", false),
            AdminCommand::Unrecognised
        );
        assert_eq!(
            AdminCommand::parse("terminate", true),
            AdminCommand::Terminate
        );
        assert!(!AdminCommand::help_text(false).contains("terminate"));
        assert_eq!(
            AdminCommand::help_text(true),
            "commands: dnsbl, failures, flush, forward, help, info, list, notify, pid, quit, smtp, status, terminate, unfail-all"
        );
    }

    #[test]
    fn info_and_dnsbl_arguments() {
        assert_eq!(AdminCommand::parse("info", false), AdminCommand::Info(None));
        assert_eq!(
            AdminCommand::parse("info Version", false),
            AdminCommand::Info(Some("version"))
        );
        assert_eq!(
            AdminCommand::info_usage(),
            "usage: info {copyright|credit|version|warranty}"
        );
        let dnsbl = |l| AdminCommand::parse(l, false);
        assert_eq!(
            dnsbl("dnsbl start"),
            AdminCommand::Dnsbl(DnsblAction::Start)
        );
        assert_eq!(
            dnsbl("dnsbl stop"),
            AdminCommand::Dnsbl(DnsblAction::Stop(None))
        );
        assert_eq!(
            dnsbl("dnsbl stop 60"),
            AdminCommand::Dnsbl(DnsblAction::Stop(Some(60)))
        );
        assert_eq!(
            dnsbl("dnsbl stop -1"),
            AdminCommand::Dnsbl(DnsblAction::Usage)
        );
        assert_eq!(
            dnsbl("dnsbl start 5"),
            AdminCommand::Dnsbl(DnsblAction::Usage)
        );
        assert_eq!(dnsbl("dnsbl"), AdminCommand::Dnsbl(DnsblAction::Usage));
    }

    #[test]
    fn replies_use_the_clients_line_ending() {
        assert_eq!(reply("OK", "\r\n"), "OK\r\nE-MailRelay> ");
        assert_eq!(reply("a\nb", "\r\n"), "a\r\nb\r\nE-MailRelay> ");
        assert_eq!(reply("OK", "\n"), "OK\nE-MailRelay> ");
        assert_eq!(reply("", "\r\n"), "E-MailRelay> ");
        assert_eq!(line_ending(b"list\r\n"), "\r\n");
        assert_eq!(line_ending(b"list\n"), "\n");
    }
}
