//! SMTP command parsing (RFC 5321 section 4.1) and the MAIL parameters of
//! RFC 1870 (SIZE), RFC 6152 (BODY), RFC 6531 (SMTPUTF8) and RFC 4954 (AUTH=).

use super::address::{AddressError, Mailbox};

/// One parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    Mail(Mailbox, MailParams),
    Rcpt(Mailbox),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Help,
    StartTls,
    Auth(String),
    /// `BDAT <size> [LAST]` (RFC 3030); `size` is `None` if it does not parse.
    Bdat {
        size: Option<u64>,
        last: bool,
    },
    /// A known verb with bad arguments: the reply text says what is wrong.
    Invalid(&'static str),
    /// Not a verb we know.
    Unknown,
}

/// The message body type declared with `BODY=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Body {
    #[default]
    Unknown,
    SevenBit,
    EightBitMime,
    BinaryMime,
}

impl Body {
    /// The envelope's `X-MailRelay-Content` keyword.
    pub fn envelope_keyword(self) -> &'static str {
        match self {
            Body::Unknown => "unknown",
            Body::SevenBit => "7bit",
            Body::EightBitMime => "8bit",
            Body::BinaryMime => "binarymime",
        }
    }

    /// The inverse of [`Body::envelope_keyword`].
    pub fn from_envelope_keyword(text: &str) -> Body {
        match text {
            "7bit" => Body::SevenBit,
            "8bit" => Body::EightBitMime,
            "binarymime" => Body::BinaryMime,
            _ => Body::Unknown,
        }
    }
}

/// The ESMTP parameters of a MAIL command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Body,
    pub smtputf8: bool,
    /// The decoded `AUTH=` value; `Some("")` for `AUTH=<>`.
    pub auth: Option<String>,
}

impl Command {
    /// Parses one command line (without its terminator).
    pub fn parse(line: &str) -> Command {
        let (verb, args) = match line.find(' ') {
            Some(space) => (&line[..space], line[space + 1..].trim()),
            None => (line, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "HELO" => {
                domain_arg(args).map_or(Command::Invalid("parameter required"), Command::Helo)
            }
            "EHLO" => {
                domain_arg(args).map_or(Command::Invalid("parameter required"), Command::Ehlo)
            }
            "MAIL" => parse_mail(args),
            "RCPT" => parse_rcpt(args),
            "DATA" => no_args(args, Command::Data),
            "RSET" => no_args(args, Command::Rset),
            "NOOP" => Command::Noop,
            "QUIT" => no_args(args, Command::Quit),
            "VRFY" if args.is_empty() => Command::Invalid("missing argument"),
            "VRFY" => Command::Vrfy(args.to_string()),
            "HELP" => Command::Help,
            "STARTTLS" => no_args(args, Command::StartTls),
            "AUTH" => Command::Auth(args.to_string()),
            "BDAT" => parse_bdat(args),
            _ => Command::Unknown,
        }
    }
}

fn parse_bdat(args: &str) -> Command {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words.next().and_then(|w| w.parse().ok());
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => {
            return Command::Bdat {
                size: None,
                last: false,
            }
        }
    };
    Command::Bdat { size, last }
}

/// The HELO/EHLO argument. E-MailRelay compatibility: all of it, words
/// and all (the `Received` line shows the spaces as dashes).
fn domain_arg(args: &str) -> Option<String> {
    let domain = args.trim();
    (!domain.is_empty()).then(|| domain.to_string())
}

fn no_args(args: &str, command: Command) -> Command {
    if args.is_empty() {
        command
    } else {
        Command::Invalid("unexpected argument")
    }
}

fn address_error(e: AddressError) -> Command {
    Command::Invalid(match e {
        AddressError::Syntax => "invalid address syntax",
        AddressError::TooLong => "address too long",
        AddressError::BadCharacter => "invalid character in address",
    })
}

/// `MAIL FROM:<path> [params]`; a space after the colon is tolerated.
fn parse_mail(args: &str) -> Command {
    let Some(rest) = strip_keyword(args, "FROM:") else {
        return Command::Invalid("syntax error: expecting MAIL FROM:<address>");
    };
    let (mailbox, params) = match Mailbox::parse_path(rest) {
        Ok(parsed) => parsed,
        Err(e) => return address_error(e),
    };
    match parse_mail_params(params) {
        Ok(params) => Command::Mail(mailbox, params),
        Err(text) => Command::Invalid(text),
    }
}

/// `RCPT TO:<path> [params]`; RCPT parameters are accepted and ignored.
fn parse_rcpt(args: &str) -> Command {
    let Some(rest) = strip_keyword(args, "TO:") else {
        return Command::Invalid("syntax error: expecting RCPT TO:<address>");
    };
    match Mailbox::parse_path(rest) {
        Ok((mailbox, _params)) => Command::Rcpt(mailbox),
        Err(e) => address_error(e),
    }
}

fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &args[keyword.len()..])
}

fn parse_mail_params(text: &str) -> Result<MailParams, &'static str> {
    let mut params = MailParams::default();
    for param in text.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => params.size = Some(value.parse().map_err(|_| "invalid SIZE parameter")?),
            "BODY" => params.body = parse_body(value)?,
            "SMTPUTF8" => params.smtputf8 = true,
            "AUTH" if value == "<>" => params.auth = Some(String::new()),
            "AUTH" => params.auth = Some(super::address::xtext_decode(value)),
            // E-MailRelay compatibility: unknown parameters are ignored, not refused.
            _ => {}
        }
    }
    Ok(params)
}

fn parse_body(value: &str) -> Result<Body, &'static str> {
    match value.to_ascii_uppercase().as_str() {
        "7BIT" => Ok(Body::SevenBit),
        "8BITMIME" => Ok(Body::EightBitMime),
        "BINARYMIME" => Ok(Body::BinaryMime),
        _ => Err("invalid BODY parameter"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(text: &str) -> Mailbox {
        Mailbox::new(text).unwrap()
    }

    #[test]
    fn parses_verbs_case_insensitively() {
        assert_eq!(Command::parse("ehlo vm"), Command::Ehlo("vm".into()));
        assert_eq!(
            Command::parse("HELO vm extra"),
            Command::Helo("vm extra".into())
        );
        assert_eq!(
            Command::parse("EHLO"),
            Command::Invalid("parameter required")
        );
        assert_eq!(Command::parse("data"), Command::Data);
        assert_eq!(
            Command::parse("DATA x"),
            Command::Invalid("unexpected argument")
        );
        assert_eq!(Command::parse("NOOP anything"), Command::Noop);
        assert_eq!(Command::parse("XYZZY"), Command::Unknown);
        assert_eq!(Command::parse("VRFY bob"), Command::Vrfy("bob".into()));
        assert_eq!(
            Command::parse("BDAT 10 last"),
            Command::Bdat {
                size: Some(10),
                last: true
            }
        );
        assert_eq!(
            Command::parse("BDAT 10"),
            Command::Bdat {
                size: Some(10),
                last: false
            }
        );
        assert_eq!(
            Command::parse("BDAT x"),
            Command::Bdat {
                size: None,
                last: false
            }
        );
        assert_eq!(
            Command::parse("BDAT 99999999999999999999999"),
            Command::Bdat {
                size: None,
                last: false
            }
        );
    }

    #[test]
    fn parses_mail_and_its_parameters() {
        let cmd =
            Command::parse("MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME SMTPUTF8 AUTH=bob+2Bx XFOO=1");
        let params = MailParams {
            size: Some(1000),
            body: Body::EightBitMime,
            smtputf8: true,
            auth: Some("bob+x".into()),
        };
        assert_eq!(cmd, Command::Mail(mb("a@b"), params));
        assert_eq!(
            Command::parse("mail from: <a@b>"),
            Command::Mail(mb("a@b"), MailParams::default())
        );
        assert_eq!(
            Command::parse("MAIL FROM:<> AUTH=<>").clone(),
            Command::Mail(
                mb(""),
                MailParams {
                    auth: Some(String::new()),
                    ..Default::default()
                }
            )
        );
        assert_eq!(
            Command::parse("MAIL FROM:<a@b> SIZE=x"),
            Command::Invalid("invalid SIZE parameter")
        );
        assert_eq!(
            Command::parse("MAIL <a@b>"),
            Command::Invalid("syntax error: expecting MAIL FROM:<address>")
        );
    }

    #[test]
    fn parses_rcpt() {
        assert_eq!(
            Command::parse("RCPT TO:<bob@example.org>"),
            Command::Rcpt(mb("bob@example.org"))
        );
        assert_eq!(
            Command::parse("RCPT TO:<postmaster> NOTIFY=NEVER"),
            Command::Rcpt(mb("postmaster"))
        );
        assert_eq!(
            Command::parse("RCPT TO:<a b>"),
            Command::Invalid("invalid character in address")
        );
    }
}
