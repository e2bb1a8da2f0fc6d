//! The admin interface's line protocol (E-MailRelay's `--admin` port).
//!
//! Parses one command line into an [`AdminCommand`]; the driver runs it and
//! writes the answer followed by the prompt. Command names may be
//! abbreviated to any unique prefix, as with E-MailRelay.

/// The prompt written after every answer.
pub const PROMPT: &str = "E-MailRelay> ";

/// The commands `help` lists, in order.
pub const COMMANDS: &[&str] = &[
    "dnsbl",
    "failures",
    "flush",
    "forward",
    "help",
    "info",
    "list",
    "notify",
    "pid",
    "quit",
    "smtp",
    "status",
    "terminate",
    "unfail-all",
];

/// One parsed admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    Dnsbl(String),
    Failures,
    Flush,
    Forward,
    Help,
    Info,
    List,
    Notify,
    Pid,
    Quit,
    SmtpEnable,
    SmtpDisable,
    Status,
    Terminate,
    UnfailAll,
    /// An empty line: just prompt again.
    Empty,
    /// Something else; the text says why.
    Invalid(String),
}

impl AdminCommand {
    /// Parses one line (without its terminator).
    pub fn parse(line: &str) -> AdminCommand {
        let mut words = line.split_whitespace();
        let Some(word) = words.next() else {
            return AdminCommand::Empty;
        };
        let word = word.to_ascii_lowercase();
        let matches: Vec<&str> = COMMANDS
            .iter()
            .copied()
            .filter(|c| c.starts_with(&word))
            .collect();
        let name = match matches.as_slice() {
            [one] => *one,
            _ if COMMANDS.contains(&word.as_str()) => {
                COMMANDS.iter().copied().find(|c| *c == word).unwrap_or("")
            }
            [] => return AdminCommand::Invalid("unknown command".into()),
            _ => return AdminCommand::Invalid("ambiguous command".into()),
        };
        let arg = words.next().map(str::to_ascii_lowercase);
        match (name, arg.as_deref()) {
            ("dnsbl", arg) => AdminCommand::Dnsbl(arg.unwrap_or("").to_string()),
            ("failures", _) => AdminCommand::Failures,
            ("flush", _) => AdminCommand::Flush,
            ("forward", _) => AdminCommand::Forward,
            ("help", _) => AdminCommand::Help,
            ("info", _) => AdminCommand::Info,
            ("list", _) => AdminCommand::List,
            ("notify", _) => AdminCommand::Notify,
            ("pid", _) => AdminCommand::Pid,
            ("quit", _) => AdminCommand::Quit,
            ("smtp", Some("enable")) => AdminCommand::SmtpEnable,
            ("smtp", Some("disable")) => AdminCommand::SmtpDisable,
            ("smtp", _) => AdminCommand::Invalid("usage: smtp {enable|disable}".into()),
            ("status", _) => AdminCommand::Status,
            ("terminate", _) => AdminCommand::Terminate,
            ("unfail-all", _) => AdminCommand::UnfailAll,
            _ => AdminCommand::Invalid("unknown command".into()),
        }
    }

    /// The answer to `help`.
    pub fn help_text() -> String {
        format!("commands: {}", COMMANDS.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_prefixes() {
        assert_eq!(AdminCommand::parse("forward"), AdminCommand::Forward);
        assert_eq!(AdminCommand::parse("FLUSH"), AdminCommand::Flush);
        assert_eq!(AdminCommand::parse("unfail"), AdminCommand::UnfailAll);
        assert_eq!(
            AdminCommand::parse("smtp disable"),
            AdminCommand::SmtpDisable
        );
        assert_eq!(AdminCommand::parse("smtp enable"), AdminCommand::SmtpEnable);
        assert_eq!(
            AdminCommand::parse("smtp"),
            AdminCommand::Invalid("usage: smtp {enable|disable}".into())
        );
        assert_eq!(
            AdminCommand::parse("f"),
            AdminCommand::Invalid("ambiguous command".into())
        );
        assert_eq!(
            AdminCommand::parse("xyzzy"),
            AdminCommand::Invalid("unknown command".into())
        );
        assert_eq!(AdminCommand::parse("  "), AdminCommand::Empty);
    }

    #[test]
    fn help_lists_every_command() {
        assert_eq!(
            AdminCommand::help_text(),
            "commands: dnsbl, failures, flush, forward, help, info, list, notify, pid, quit, smtp, status, terminate, unfail-all"
        );
    }
}
