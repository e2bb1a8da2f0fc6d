//! SMTP command parsing (RFC 5321 section 4.1) as E-MailRelay 2.6.1 reads
//! command lines, with the MAIL parameters of RFC 1870 (SIZE), RFC 6152
//! (BODY), RFC 6531 (SMTPUTF8) and RFC 4954 (AUTH=).
//!
//! E-MailRelay compatibility: words are separated by spaces or tabs; the
//! verb is the first word whatever follows it (`QUIT now` is QUIT, `NOOP x`
//! is NOOP); MAIL and RCPT paths follow 2.6.1's parser and its error texts
//! (see [`AddressError`]); unknown or malformed MAIL parameters are ignored
//! rather than refused (`BODY=NONSENSE`, `SIZE=xyz`). Where 2.6.1 would
//! store an address that could break the envelope file or a later protocol
//! line (unquoted spaces, more than [`MAX_PATH`] octets) it is refused.
//!
//! Must not do I/O. Never panics on any input.

use super::address::{self, AddressError, Mailbox};

pub use super::address::MAX_PATH;

/// One parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// HELO and its argument ("" if there is none).
    Helo(String),
    /// EHLO and its argument ("" if there is none).
    Ehlo(String),
    Mail(Result<MailFrom, AddressError>),
    Rcpt(Result<RcptTo, AddressError>),
    Data,
    Rset,
    Noop,
    Quit,
    /// VRFY and the address asked about ("" if there is none).
    Vrfy(String),
    Help,
    Expn,
    StartTls,
    /// AUTH and the rest of the line.
    Auth(String),
    /// `BDAT <size> [LAST]` (RFC 3030); `size` is `None` if it does not parse.
    Bdat {
        size: Option<u64>,
        last: bool,
    },
    /// Not a verb we know.
    Unknown,
}

/// How tolerant MAIL and RCPT are of a path without angle brackets
/// (`--server-smtp-config=nostrictparsing` makes them lenient).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressSyntax {
    #[default]
    Strict,
    Lenient,
}

/// A path given to MAIL or RCPT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// As the client wrote it, without brackets or source route: replies name it so.
    pub raw: String,
    /// The envelope form: a UTF-8 domain in A-labels (RFC 5890).
    pub mailbox: Mailbox,
}

impl Path {
    /// True if the local part is not ASCII (RFC 6531): the envelope's
    /// `Utf8MailboxNames` and the `smtputf8strict` checks look at this.
    pub fn has_utf8_local_part(&self) -> bool {
        self.mailbox.has_utf8_local_part()
    }
}

/// A parsed MAIL command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailFrom {
    pub path: Path,
    pub params: MailParams,
}

/// A parsed RCPT command; RCPT parameters are accepted and ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptTo {
    pub path: Path,
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

    /// The `BODY=` value; E-MailRelay compatibility: anything else is
    /// `unknown`, not an error.
    fn from_param(value: &str) -> Body {
        match value.to_ascii_uppercase().as_str() {
            "7BIT" => Body::SevenBit,
            "8BITMIME" => Body::EightBitMime,
            "BINARYMIME" => Body::BinaryMime,
            _ => Body::Unknown,
        }
    }
}

/// The ESMTP parameters of a MAIL command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=`; E-MailRelay compatibility: a value that is not a number is 0.
    pub size: Option<u64>,
    pub body: Body,
    /// The `SMTPUTF8` keyword, spelt in capitals as 2.6.1 wants it.
    pub smtputf8: bool,
    /// The decoded `AUTH=` value; `Some("")` for `AUTH=<>`.
    pub auth: Option<String>,
}

impl Command {
    /// Parses one command line (without its CRLF).
    pub fn parse(line: &str, syntax: AddressSyntax) -> Command {
        let verb = words(line).next().unwrap_or("");
        match verb.to_ascii_uppercase().as_str() {
            "HELO" => Command::Helo(helo_name(line)),
            "EHLO" => Command::Ehlo(helo_name(line)),
            "MAIL" => Command::Mail(parse_mail(line, syntax)),
            "RCPT" => Command::Rcpt(parse_rcpt(line, syntax)),
            "DATA" => Command::Data,
            "RSET" => Command::Rset,
            "NOOP" => Command::Noop,
            "QUIT" => Command::Quit,
            "VRFY" => Command::Vrfy(vrfy_address(line)),
            "HELP" => Command::Help,
            "EXPN" => Command::Expn,
            "STARTTLS" => Command::StartTls,
            "AUTH" => Command::Auth(after_verb(line).to_string()),
            "BDAT" => parse_bdat(line),
            _ => Command::Unknown,
        }
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The words of a line, separated by runs of spaces and tabs.
fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(is_blank).filter(|w| !w.is_empty())
}

/// Everything after the verb and the blanks that follow it.
fn after_verb(line: &str) -> &str {
    let line = line.trim_start_matches(is_blank);
    match line.find(is_blank) {
        Some(end) => line[end..].trim_start_matches(is_blank),
        None => "",
    }
}

/// The HELO/EHLO argument. E-MailRelay compatibility: all of it, words
/// and all (the `Received` line shows the spaces as dashes).
fn helo_name(line: &str) -> String {
    after_verb(line).trim_end_matches(is_blank).to_string()
}

/// The VRFY argument; a trailing `SMTPUTF8` keyword (RFC 6531 section
/// 3.7.4.2) is not part of it.
fn vrfy_address(line: &str) -> String {
    let arg = after_verb(line).trim_end_matches(is_blank);
    let arg = match arg.rsplit_once(is_blank) {
        Some((head, tail)) if tail.eq_ignore_ascii_case("SMTPUTF8") => head,
        _ => arg,
    };
    arg.trim_end_matches(is_blank).to_string()
}

fn parse_bdat(line: &str) -> Command {
    let mut words = words(line).skip(1);
    // Only digits are a size (RFC 3030's `chunk-size = 1*DIGIT`): Rust's
    // parser would take `+5` as 5.
    let size = words
        .next()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse().ok());
    // E-MailRelay compatibility: a third word other than LAST makes a
    // chunk that is not the last, not an error.
    let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
    Command::Bdat { size, last }
}

/// `MAIL FROM:<path> [params]`.
fn parse_mail(line: &str, syntax: AddressSyntax) -> Result<MailFrom, AddressError> {
    if !second_word_starts(line, "FROM:") {
        return Err(AddressError::MailCommand);
    }
    let (path, tail) = address::parse_path(line, syntax, true)?;
    let params = parse_mail_params(tail)?;
    Ok(MailFrom { path, params })
}

/// `RCPT TO:<path> [params]`.
fn parse_rcpt(line: &str, syntax: AddressSyntax) -> Result<RcptTo, AddressError> {
    if !second_word_starts(line, "TO:") {
        return Err(AddressError::RcptCommand);
    }
    let (path, _params) = address::parse_path(line, syntax, false)?;
    Ok(RcptTo { path })
}

fn second_word_starts(line: &str, keyword: &str) -> bool {
    words(line)
        .nth(1)
        .and_then(|w| w.get(..keyword.len()))
        .is_some_and(|head| head.eq_ignore_ascii_case(keyword))
}

/// The words after the path. E-MailRelay compatibility: the first word
/// that starts with a keyword counts, values that do not parse are
/// ignored, and `SMTPUTF8` is only that word in capitals.
fn parse_mail_params(tail: &str) -> Result<MailParams, AddressError> {
    let value = |key: &str| {
        words(tail).find_map(|w| {
            let head = w.get(..key.len())?;
            (head.eq_ignore_ascii_case(key) && w.len() > key.len()).then(|| &w[key.len()..])
        })
    };
    if value("SMTPUTF8=").is_some() {
        return Err(AddressError::MailParameter);
    }
    Ok(MailParams {
        size: value("SIZE=").map(parse_size),
        body: value("BODY=").map_or(Body::Unknown, Body::from_param),
        smtputf8: words(tail).any(|w| w == "SMTPUTF8"),
        auth: value("AUTH=").map(|v| match v {
            "<>" => String::new(),
            v => address::xtext_decode(v),
        }),
    })
}

/// A `SIZE=` value: digits, saturating; anything else is 0.
fn parse_size(value: &str) -> u64 {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    value.parse().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Command {
        Command::parse(line, AddressSyntax::Strict)
    }

    fn mail(line: &str) -> Result<(String, String, MailParams), AddressError> {
        match parse(line) {
            Command::Mail(r) => r.map(|m| (m.path.raw, m.path.mailbox.to_string(), m.params)),
            other => panic!("not MAIL: {other:?}"),
        }
    }

    fn rcpt(line: &str, syntax: AddressSyntax) -> Result<String, AddressError> {
        match Command::parse(line, syntax) {
            Command::Rcpt(r) => r.map(|r| r.path.raw),
            other => panic!("not RCPT: {other:?}"),
        }
    }

    #[test]
    fn verbs_are_the_first_word_in_any_case() {
        assert_eq!(parse("ehlo vm"), Command::Ehlo("vm".into()));
        assert_eq!(parse("HELO vm extra "), Command::Helo("vm extra".into()));
        assert_eq!(parse("EHLO"), Command::Ehlo(String::new()));
        assert_eq!(parse("EHLO  \t "), Command::Ehlo(String::new()));
        assert_eq!(parse(" \tEHLO x"), Command::Ehlo("x".into()));
        assert_eq!(parse("QUIT now"), Command::Quit);
        assert_eq!(parse("DATA x"), Command::Data);
        assert_eq!(parse("STARTTLS extra"), Command::StartTls);
        assert_eq!(parse("NOOP anything"), Command::Noop);
        assert_eq!(parse("EXPN list"), Command::Expn);
        assert_eq!(parse("XYZZY"), Command::Unknown);
        assert_eq!(parse(""), Command::Unknown);
        assert_eq!(parse(" "), Command::Unknown);
        assert_eq!(parse("QUIT\nQUIT"), Command::Unknown);
        assert_eq!(
            parse("AUTH PLAIN  AGE="),
            Command::Auth("PLAIN  AGE=".into())
        );
    }

    #[test]
    fn vrfy_takes_the_rest_of_the_line() {
        assert_eq!(parse("VRFY bob"), Command::Vrfy("bob".into()));
        assert_eq!(parse("VRFY"), Command::Vrfy(String::new()));
        assert_eq!(parse("VRFY Bob Smith "), Command::Vrfy("Bob Smith".into()));
        assert_eq!(
            parse("VRFY b\u{f6}b SMTPUTF8"),
            Command::Vrfy("b\u{f6}b".into())
        );
    }

    #[test]
    fn bdat_sizes_and_last() {
        let bdat = |size, last| Command::Bdat { size, last };
        assert_eq!(parse("BDAT 10 last"), bdat(Some(10), true));
        assert_eq!(parse("BDAT 10"), bdat(Some(10), false));
        assert_eq!(parse("BDAT 10 FOO"), bdat(Some(10), false));
        assert_eq!(parse("BDAT"), bdat(None, false));
        assert_eq!(parse("BDAT x"), bdat(None, false));
        assert_eq!(parse("BDAT -1 LAST"), bdat(None, true));
        assert_eq!(parse("BDAT +5"), bdat(None, false));
        assert_eq!(parse("BDAT +5 LAST"), bdat(None, true));
        assert_eq!(parse("BDAT 5x"), bdat(None, false));
        assert_eq!(parse("BDAT 99999999999999999999999"), bdat(None, false));
    }

    #[test]
    fn mail_paths_and_parameters() {
        let params = MailParams {
            size: Some(1000),
            body: Body::EightBitMime,
            smtputf8: true,
            auth: Some("bob+x".into()),
        };
        assert_eq!(
            mail("MAIL FROM:<a@b> SIZE=1000 BODY=8bitmime SMTPUTF8 AUTH=bob+2Bx XFOO=1"),
            Ok(("a@b".into(), "a@b".into(), params))
        );
        let plain = |a: &str| Ok((a.to_string(), a.to_string(), MailParams::default()));
        assert_eq!(mail("mail from: <a@b>"), plain("a@b"));
        assert_eq!(mail("MAIL  FROM:\t<a@b>"), plain("a@b"));
        assert_eq!(mail("MAIL FROM:<>"), plain(""));
        let auth = mail("MAIL FROM:<> AUTH=<>").map(|m| m.2.auth);
        assert_eq!(auth, Ok(Some(String::new())));
    }

    #[test]
    fn lenient_mail_parameters() {
        let params = |line: &str| mail(line).map(|m| m.2);
        let p = params("MAIL FROM:<a@b> BODY=NONSENSE SIZE=xyz smtputf8").unwrap();
        assert_eq!(
            (p.body, p.size, p.smtputf8),
            (Body::Unknown, Some(0), false)
        );
        let p = params("MAIL FROM:<a@b> SIZE=99999999999999999999999 SIZE=1").unwrap();
        assert_eq!(p.size, Some(u64::MAX));
        let p = params("MAIL FROM:<a@b> BODY= SIZE=").unwrap();
        assert_eq!((p.body, p.size), (Body::Unknown, None));
        assert_eq!(
            params("MAIL FROM:<a@b> SMTPUTF8=yes"),
            Err(AddressError::MailParameter)
        );
    }

    #[test]
    fn mail_and_rcpt_errors_as_2_6_1_words_them() {
        use AddressError::*;
        assert_eq!(mail("MAIL"), Err(MailCommand));
        assert_eq!(mail("MAIL TO:<a@b>"), Err(MailCommand));
        assert_eq!(mail("MAIL FROM:"), Err(Brackets));
        assert_eq!(mail("MAIL FROM:<a@b"), Err(Brackets));
        assert_eq!(mail("MAIL FROM:a@b"), Err(NoBrackets));
        assert_eq!(mail("MAIL FROM:<a@b>x"), Err(TrailingText));
        assert_eq!(rcpt("RCPT", AddressSyntax::Strict), Err(RcptCommand));
        assert_eq!(
            rcpt("RCPT FROM:<a@b>", AddressSyntax::Strict),
            Err(RcptCommand)
        );
        assert_eq!(rcpt("RCPT TO:", AddressSyntax::Strict), Err(Brackets));
        assert_eq!(rcpt("RCPT TO:<>", AddressSyntax::Strict), Err(Empty));
        assert_eq!(rcpt("RCPT TO:b@c", AddressSyntax::Strict), Err(NoBrackets));
        assert_eq!(
            rcpt("RCPT TO:b@c NOTIFY=NEVER", AddressSyntax::Lenient),
            Ok("b@c".into())
        );
        assert_eq!(
            rcpt("RCPT TO:<a b@c>", AddressSyntax::Strict),
            Err(BadCharacter)
        );
        assert_eq!(
            rcpt("RCPT TO:<postmaster> NOTIFY=NEVER", AddressSyntax::Strict),
            Ok("postmaster".into())
        );
    }
}
