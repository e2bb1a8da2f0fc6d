//! POP3 command lines (RFC 1939 section 3, RFC 2449 section 3): a keyword
//! of up to four letters in any case, then arguments separated by spaces.
//!
//! Parsing never fails: a keyword we do not know is [`Command::Unknown`],
//! and arguments stay text until the state that uses them reads them, as
//! E-MailRelay does (`LIST x` is "-ERR invalid id", not a syntax error).

/// One command line, split into its keyword and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The whole argument: RFC 1939 lets a password hold spaces.
    Pass(String),
    Apop {
        user: String,
        digest: String,
    },
    /// `AUTH [mechanism [initial-response]]` (RFC 5034).
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    Capa,
    Stls,
    Stat,
    /// `LIST [n]` and `UIDL [n]`: the argument as given.
    List(Option<String>),
    Uidl(Option<String>),
    Retr(Option<String>),
    Top(Option<String>, Option<String>),
    Dele(Option<String>),
    Noop,
    Rset,
    Quit,
    Unknown,
}

impl Command {
    /// Parses one line, without its terminator.
    pub fn parse(line: &str) -> Command {
        let mut words = line.split_ascii_whitespace();
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        let mut arg = || words.next().map(str::to_string);
        match keyword.as_str() {
            "USER" => Command::User(arg().unwrap_or_default()),
            "PASS" => Command::Pass(pass_argument(line)),
            "APOP" => Command::Apop {
                user: arg().unwrap_or_default(),
                digest: arg().unwrap_or_default(),
            },
            "AUTH" => {
                let mechanism = arg();
                Command::Auth {
                    mechanism,
                    initial: arg(),
                }
            }
            "CAPA" => Command::Capa,
            "STLS" => Command::Stls,
            "STAT" => Command::Stat,
            "LIST" => Command::List(arg()),
            "UIDL" => Command::Uidl(arg()),
            "RETR" => Command::Retr(arg()),
            "TOP" => {
                let n = arg();
                Command::Top(n, arg())
            }
            "DELE" => Command::Dele(arg()),
            "NOOP" => Command::Noop,
            "RSET" => Command::Rset,
            "QUIT" => Command::Quit,
            _ => Command::Unknown,
        }
    }

    /// The line as the protocol trace shows it: never a password or an
    /// AUTH initial response (E-MailRelay's `PASS [password not logged]`
    /// and `AUTH PLAIN`).
    pub fn trace_text(&self, line: &str) -> String {
        match self {
            Command::Pass(_) => {
                let keyword = line.split_ascii_whitespace().next().unwrap_or("PASS");
                format!("{keyword} [password not logged]")
            }
            Command::Auth {
                initial: Some(_), ..
            } => {
                let mut words = line.split_ascii_whitespace();
                let keyword = words.next().unwrap_or("AUTH");
                let mechanism = words.next().unwrap_or("");
                format!("{keyword} {mechanism}")
            }
            _ => line.to_string(),
        }
    }
}

/// PASS's argument: everything after the keyword and one run of spaces,
/// trailing spaces dropped.
fn pass_argument(line: &str) -> String {
    let line = line.trim_start_matches([' ', '\t']);
    let rest = line
        .find([' ', '\t'])
        .map_or("", |i| line[i..].trim_start_matches([' ', '\t']));
    rest.trim_end_matches([' ', '\t']).to_string()
}

/// A message number argument: 1-based, as the client gave it. `None`
/// unless it is a plain decimal number.
pub fn message_number(arg: Option<&str>) -> Option<usize> {
    let arg = arg?;
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    arg.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_in_any_case_with_arguments() {
        assert_eq!(Command::parse("user alice"), Command::User("alice".into()));
        assert_eq!(Command::parse("LIST"), Command::List(None));
        assert_eq!(Command::parse("list 2 x"), Command::List(Some("2".into())));
        assert_eq!(
            Command::parse("TOP 1 10"),
            Command::Top(Some("1".into()), Some("10".into()))
        );
        assert_eq!(
            Command::parse("AUTH PLAIN AGEAYg=="),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(Command::parse("XTND"), Command::Unknown);
        assert_eq!(Command::parse(""), Command::Unknown);
    }

    #[test]
    fn a_password_keeps_its_inner_spaces() {
        assert_eq!(
            Command::parse("PASS  my secret  "),
            Command::Pass("my secret".into())
        );
        assert_eq!(Command::parse("PASS"), Command::Pass(String::new()));
    }

    #[test]
    fn the_trace_hides_passwords_and_responses() {
        let pass = Command::parse("pass hunter2");
        assert_eq!(
            pass.trace_text("pass hunter2"),
            "pass [password not logged]"
        );
        let auth = Command::parse("AUTH PLAIN AGEAYg==");
        assert_eq!(auth.trace_text("AUTH PLAIN AGEAYg=="), "AUTH PLAIN");
        assert_eq!(Command::parse("STAT").trace_text("STAT"), "STAT");
    }

    #[test]
    fn message_numbers_are_plain_decimals() {
        assert_eq!(message_number(Some("12")), Some(12));
        assert_eq!(message_number(Some("0")), Some(0));
        for bad in ["-1", "+1", "1x", "", "99999999999999999999999"] {
            assert_eq!(message_number(Some(bad)), None, "{bad}");
        }
        assert_eq!(message_number(None), None);
    }
}
