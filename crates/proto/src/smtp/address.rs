//! Mailbox syntax (RFC 5321 section 4.1.2) as E-MailRelay 2.6.1 parses the
//! path of MAIL and RCPT, and xtext (RFC 3461 section 4).
//!
//! E-MailRelay compatibility: a space after the colon is tolerated, a path
//! without angle brackets only with `nostrictparsing`, a source route is
//! dropped, and a UTF-8 domain is stored in A-labels. The errors carry
//! 2.6.1's reply texts. On top of 2.6.1's checks, anything that could
//! break the envelope file or a later protocol line is refused: control
//! characters, invalid UTF-8, unquoted spaces and paths over [`MAX_PATH`].
//!
//! Must not do I/O. Never panics on any input.

use std::fmt;

use super::command::{AddressSyntax, Path};
use super::idn;

/// The longest path we accept, RFC 5321 section 4.5.3.1.3.
pub const MAX_PATH: usize = 256;

/// A checked envelope address. Empty for the null reverse-path `<>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox(String);

/// Why a MAIL or RCPT command was refused; [`AddressError::text`] is
/// E-MailRelay 2.6.1's reply text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// MAIL without `FROM:` as its second word.
    MailCommand,
    /// RCPT without `TO:` as its second word.
    RcptCommand,
    /// A path without `<...>` (allowed with `nostrictparsing`).
    NoBrackets,
    /// No closing `>`, or nothing after the colon.
    Brackets,
    /// Text straight after the `>`.
    TrailingText,
    /// `<@...` without the `:` that ends a source route.
    SourceRoute,
    /// A quoted local part without its closing quote.
    Quoting,
    /// `RCPT TO:<>`.
    Empty,
    /// Control characters, invalid UTF-8, an unquoted space, or an `@` at
    /// either end.
    BadCharacter,
    /// Longer than [`MAX_PATH`].
    TooLong,
    /// `SMTPUTF8=` with a value.
    MailParameter,
}

impl AddressError {
    /// The reply text: after `553 mailbox name not allowed: ` for MAIL,
    /// after `550 ` for RCPT.
    pub fn text(self) -> &'static str {
        match self {
            AddressError::MailCommand => "invalid mail-from command",
            AddressError::RcptCommand => "invalid rcpt-to command",
            AddressError::NoBrackets => "missing angle brackets in mailbox name",
            AddressError::Brackets => "invalid angle brackets in mailbox name",
            AddressError::TrailingText => "invalid angle brackets",
            AddressError::SourceRoute => "invalid source route in mailbox name",
            AddressError::Quoting => "invalid quoting",
            AddressError::Empty => "invalid empty mailbox",
            AddressError::BadCharacter => "invalid character in mailbox name",
            AddressError::TooLong => "mailbox name too long",
            AddressError::MailParameter => "invalid mail-from parameter",
        }
    }
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Parses the path of a whole MAIL or RCPT line: what follows the first
/// colon. Returns the path and the rest of the line (the parameters).
pub(super) fn parse_path(
    line: &str,
    syntax: AddressSyntax,
    allow_empty: bool,
) -> Result<(Path, &str), AddressError> {
    if line.contains(['\0', '\r', '\n']) {
        return Err(AddressError::BadCharacter);
    }
    let colon = line.find(':').ok_or(AddressError::MailCommand)?;
    let after = line[colon + 1..].trim_start_matches([' ', '\t']);
    let (raw, tail) = if after.is_empty() || after.starts_with('<') {
        bracketed(after)?
    } else if syntax == AddressSyntax::Lenient {
        let end = after.find([' ', '\t']).unwrap_or(after.len());
        (&after[..end], &after[end..])
    } else {
        return Err(AddressError::NoBrackets);
    };
    if raw.is_empty() && !allow_empty {
        return Err(AddressError::Empty);
    }
    Mailbox::check(raw)?;
    let path = Path {
        raw: raw.to_string(),
        mailbox: Mailbox(a_labels(raw)),
    };
    Ok((path, tail))
}

/// `<...>` with an optional source route; `text` starts at the `<` (or is
/// empty). Returns the address and what follows the `>`.
fn bracketed(text: &str) -> Result<(&str, &str), AddressError> {
    if text.len() < 2 || !text[1..].contains('>') {
        return Err(AddressError::Brackets);
    }
    // The address starts after `start`, the `<` or a source route's `:`.
    let mut start = 0;
    if text[1..].starts_with('@') {
        start = match text[1..].find(':') {
            Some(colon) if colon + 3 < text.len() => colon + 1,
            _ => return Err(AddressError::SourceRoute),
        };
    }
    let end = match text[start + 1..].strip_prefix('"') {
        Some(quoted) => {
            let close = closing_quote(quoted).ok_or(AddressError::TrailingText)?;
            let after_quote = start + 2 + close + 1;
            text[after_quote..]
                .find('>')
                .map(|i| after_quote + i)
                .ok_or(AddressError::Quoting)?
        }
        None => match text[start + 1..].find('>') {
            Some(i) => start + 1 + i,
            None => return Err(AddressError::Brackets),
        },
    };
    let tail = &text[end + 1..];
    if !tail.is_empty() && !tail.starts_with(' ') {
        return Err(AddressError::TrailingText);
    }
    Ok((&text[start + 1..end], tail))
}

/// Index of the quote that closes a quoted string (whose opening quote is
/// already stripped), skipping backslash escapes.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The address with a UTF-8 domain turned into A-labels, as 2.6.1 stores it.
fn a_labels(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => {
            format!("{local}@{}", idn::encode(domain))
        }
        _ => address.to_string(),
    }
}

impl Mailbox {
    /// Builds a mailbox from trusted text (an envelope file), with the same checks.
    pub fn new(text: &str) -> Result<Mailbox, AddressError> {
        Self::check(text)?;
        Ok(Mailbox(text.to_string()))
    }

    /// The address without angle brackets.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the null reverse-path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if the address is not all ASCII.
    pub fn is_utf8(&self) -> bool {
        !self.0.is_ascii()
    }

    /// True if the part before the last `@` is not ASCII (RFC 6531).
    pub fn has_utf8_local_part(&self) -> bool {
        let local = self.0.rsplit_once('@').map_or(self.0.as_str(), |(l, _)| l);
        !local.is_ascii()
    }

    /// 2.6.1's checks (`@` at either end, control characters) and ours
    /// (length, unquoted spaces, an unclosed quote). The text is UTF-8 by
    /// construction: the session refuses invalid UTF-8 before parsing.
    fn check(text: &str) -> Result<(), AddressError> {
        if text.is_empty() {
            return Ok(());
        }
        if text.len() > MAX_PATH {
            return Err(AddressError::TooLong);
        }
        if text.starts_with('@') || text.ends_with('@') {
            return Err(AddressError::BadCharacter);
        }
        let mut quoted = false;
        let mut escaped = false;
        for c in text.chars() {
            if c.is_control() {
                return Err(AddressError::BadCharacter);
            }
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') if quoted => escaped = true,
                (false, '"') => quoted = !quoted,
                (false, ' ') if !quoted => return Err(AddressError::BadCharacter),
                _ => {}
            }
        }
        if quoted {
            return Err(AddressError::Quoting);
        }
        Ok(())
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Encodes text as xtext: `+XX` for `+`, `=`, controls, space and non-ASCII.
pub fn xtext_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Decodes xtext; a malformed `+XX` is kept literally rather than refused,
/// because E-MailRelay's secrets files in the wild are not always strict.
pub fn xtext_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'+', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(line: &str, syntax: AddressSyntax) -> Result<(String, String, String), AddressError> {
        parse_path(line, syntax, true)
            .map(|(p, tail)| (p.raw, p.mailbox.to_string(), tail.to_string()))
    }

    fn strict(line: &str) -> Result<(String, String, String), AddressError> {
        path(line, AddressSyntax::Strict)
    }

    fn ok(raw: &str, tail: &str) -> Result<(String, String, String), AddressError> {
        Ok((raw.into(), raw.into(), tail.into()))
    }

    #[test]
    fn bracketed_paths_with_parameters() {
        assert_eq!(
            strict("MAIL FROM:<alice@example.com>"),
            ok("alice@example.com", "")
        );
        assert_eq!(
            strict("MAIL FROM: <a@b> SIZE=10 BODY=8BITMIME"),
            ok("a@b", " SIZE=10 BODY=8BITMIME")
        );
        assert_eq!(strict("MAIL FROM:<>"), ok("", ""));
        assert_eq!(strict("RCPT TO:<\"a b>c\"@d>"), ok("\"a b>c\"@d", ""));
        assert_eq!(strict("RCPT TO:<\"a\\\"b\"@d>"), ok("\"a\\\"b\"@d", ""));
    }

    #[test]
    fn source_routes_are_dropped() {
        assert_eq!(strict("RCPT TO:<@relay.a,@relay.b:bob@c>"), ok("bob@c", ""));
        assert_eq!(strict("RCPT TO:<@relay.a>"), Err(AddressError::SourceRoute));
    }

    #[test]
    fn brackets_are_required_unless_lenient() {
        assert_eq!(strict("MAIL FROM:a@b"), Err(AddressError::NoBrackets));
        assert_eq!(
            path("MAIL FROM:a@b X=1", AddressSyntax::Lenient),
            ok("a@b", " X=1")
        );
        assert_eq!(
            path("MAIL FROM: a@b", AddressSyntax::Lenient),
            ok("a@b", "")
        );
    }

    #[test]
    fn utf8_domains_become_a_labels() {
        let got = strict("RCPT TO:<bob@b\u{fc}cher.example>").unwrap();
        assert_eq!(got.0, "bob@b\u{fc}cher.example");
        assert_eq!(got.1, "bob@xn--bcher-kva.example");
        let local = Mailbox::new("j\u{f6}rg@example.com").unwrap();
        assert!(local.has_utf8_local_part());
        assert!(!Mailbox::new("bob@b\u{fc}cher.example")
            .unwrap()
            .has_utf8_local_part());
    }

    #[test]
    fn refuses_what_would_break_files_or_protocols() {
        use AddressError::*;
        assert_eq!(strict("RCPT TO:<a b@c>"), Err(BadCharacter));
        assert_eq!(strict("RCPT TO:<a\tb@c>"), Err(BadCharacter));
        assert_eq!(strict("RCPT TO:<a@b\r>"), Err(BadCharacter));
        assert_eq!(strict("RCPT TO:<a\0@b>"), Err(BadCharacter));
        assert_eq!(strict("RCPT TO:<a@>"), Err(BadCharacter));
        assert_eq!(strict("RCPT TO:<a@b"), Err(Brackets));
        assert_eq!(strict("RCPT TO:<"), Err(Brackets));
        assert_eq!(strict("RCPT TO:<a@b>x"), Err(TrailingText));
        assert_eq!(strict("RCPT TO:<a@b>\tX=1"), Err(TrailingText));
        assert_eq!(strict("RCPT TO:<\"ab@c>"), Err(TrailingText));
        assert_eq!(
            strict(&format!("RCPT TO:<{}@b>", "x".repeat(300))),
            Err(TooLong)
        );
    }

    #[test]
    fn xtext_round_trips() {
        assert_eq!(xtext_encode("my password=1+"), "my+20password+3D1+2B");
        assert_eq!(xtext_decode("my+20password+3D1+2B"), "my password=1+");
        assert_eq!(xtext_decode("e+3Dmc2"), "e=mc2");
        assert_eq!(xtext_decode("a+zz"), "a+zz");
    }
}
