//! Mailbox syntax (RFC 5321 section 4.1.2) and xtext (RFC 3461 section 4).
//!
//! Parsing is deliberately tolerant of what old devices send (a space after
//! the colon, a missing pair of angle brackets, a source route) but refuses
//! anything that could break the envelope file or a later protocol line:
//! control characters, CR/LF and unquoted spaces.

use std::fmt;

/// The longest path we accept, RFC 5321 section 4.5.3.1.3.
pub const MAX_PATH: usize = 256;

/// A checked envelope address. Empty for the null reverse-path `<>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox(String);

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// No `<...>` and not a bare address either.
    Syntax,
    /// Longer than [`MAX_PATH`].
    TooLong,
    /// A control character or an unquoted space.
    BadCharacter,
}

impl Mailbox {
    /// Parses the text after `FROM:` or `TO:` up to the first parameter.
    /// Returns the mailbox and the rest of the line (the ESMTP parameters).
    pub fn parse_path(text: &str) -> Result<(Mailbox, &str), AddressError> {
        let text = text.trim_start();
        let (inner, rest) = match text.strip_prefix('<') {
            Some(after) => {
                let end = closing_bracket(after).ok_or(AddressError::Syntax)?;
                (&after[..end], &after[end + 1..])
            }
            None => match text.find(' ') {
                Some(space) => (&text[..space], &text[space..]),
                None => (text, ""),
            },
        };
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(AddressError::Syntax);
        }
        let mailbox = strip_source_route(inner);
        Self::check(mailbox)?;
        Ok((Mailbox(mailbox.to_string()), rest.trim()))
    }

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

    /// True if the address needs SMTPUTF8 (RFC 6531).
    pub fn is_utf8(&self) -> bool {
        !self.0.is_ascii()
    }

    fn check(text: &str) -> Result<(), AddressError> {
        if text.len() > MAX_PATH {
            return Err(AddressError::TooLong);
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
            return Err(AddressError::Syntax);
        }
        Ok(())
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Index of the `>` that closes a path, skipping quoted strings.
fn closing_bracket(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') if quoted => escaped = true,
            (false, '"') => quoted = !quoted,
            (false, '>') if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Drops an obsolete source route: `@a,@b:user@host` becomes `user@host`.
fn strip_source_route(text: &str) -> &str {
    if text.starts_with('@') {
        if let Some(colon) = text.find(':') {
            return &text[colon + 1..];
        }
    }
    text
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

    fn path(text: &str) -> Result<(String, String), AddressError> {
        Mailbox::parse_path(text).map(|(m, rest)| (m.to_string(), rest.to_string()))
    }

    #[test]
    fn parses_bracketed_paths_with_parameters() {
        assert_eq!(
            path("<alice@example.com>"),
            Ok(("alice@example.com".into(), "".into()))
        );
        assert_eq!(
            path(" <a@b> SIZE=10 BODY=8BITMIME"),
            Ok(("a@b".into(), "SIZE=10 BODY=8BITMIME".into()))
        );
        assert_eq!(path("<>"), Ok(("".into(), "".into())));
        assert_eq!(path("<\"a b>c\"@d>"), Ok(("\"a b>c\"@d".into(), "".into())));
    }

    #[test]
    fn tolerates_old_clients() {
        assert_eq!(
            path("alice@example.com"),
            Ok(("alice@example.com".into(), "".into()))
        );
        assert_eq!(
            path("<@relay.a,@relay.b:bob@c>"),
            Ok(("bob@c".into(), "".into()))
        );
    }

    #[test]
    fn refuses_what_would_break_files_or_protocols() {
        assert_eq!(path("<a b@c>"), Err(AddressError::BadCharacter));
        assert_eq!(path("<a\tb@c>"), Err(AddressError::BadCharacter));
        assert_eq!(path("<a@b"), Err(AddressError::Syntax));
        assert_eq!(path("<a@b>x"), Err(AddressError::Syntax));
        assert_eq!(
            path(&format!("<{}@b>", "x".repeat(300))),
            Err(AddressError::TooLong)
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
