//! Addresses in From, Sender, To, Cc and Bcc header fields, read as
//! `emailrelay-submit` 2.6.1 reads them: RFC 5322 section 3.4 without the
//! obsolete syntax, with RFC 6532 UTF-8, tokenised by its section 3.2
//! lexical rules; and the checks 2.6.1 makes of envelope addresses.
//!
//! Two 2.6.1 mistakes are not copied (see docs/compatibility.md):
//! an `<addr-spec>` with whitespace or a comment but no display name
//! before it (`To: <bob@example.com>`) is read as that address, where
//! 2.6.1 takes the wrong tokens and fails or picks a wrong address; and
//! each non-ASCII domain label is punycoded on its own.
//!
//! Must not do I/O.

use super::idn;
use super::lex::utf8_valid;
use super::lex::{lex, Kind, Token};
use emailrelay_proto::printable::{is_printable, printable_lossy as printable};

/// A mailbox found in a header: local part, domain and display name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mailbox {
    pub local: Vec<u8>,
    pub domain: Vec<u8>,
    pub display: Vec<u8>,
}

/// Why a header's addresses could not be read; `line` is the header's
/// line number in the content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("rfc-5322/6532 parsing error: {what}: line {line}")]
pub struct ParseError {
    pub what: Problem,
    pub line: usize,
}

/// What was wrong, in 2.6.1's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    /// The lexer stopped at this byte offset.
    #[error("parsing error at position {0}")]
    Position(usize),
    #[error("invalid address-list")]
    AddressList,
    #[error("invalid address")]
    Address,
    #[error("invalid address: too many parts")]
    TooManyParts,
    /// A domain that is not printable, or not UTF-8.
    #[error("invalid domain encoding [{0}]")]
    DomainEncoding(String),
}

/// How an address is written, as 2.6.1 classifies envelope addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Ascii,
    Utf8Domain,
    /// A UTF-8 local part (with an ASCII or UTF-8 domain): the envelope
    /// says `Utf8MailboxNames: 1`.
    Utf8Mailbox,
}

/// Classifies an envelope address; `None` if 2.6.1 refuses it: empty,
/// starting or ending with `@`, holding control characters, or not UTF-8.
pub fn style(address: &[u8]) -> Option<Style> {
    if address.is_empty() || address[0] == b'@' || address[address.len() - 1] == b'@' {
        return None;
    }
    if !is_printable(address) {
        return None;
    }
    let (mailbox, domain) = match address.iter().rposition(|&c| c == b'@') {
        Some(at) => (&address[..at], &address[at + 1..]),
        None => (address, &address[..0]),
    };
    let ascii = |s: &[u8]| s.iter().all(|c| (0x20..0x7f).contains(c));
    let mailbox_ascii = ascii(mailbox);
    let domain_ascii = ascii(domain);
    if (!mailbox_ascii && !utf8_valid(mailbox)) || (!domain_ascii && !utf8_valid(domain)) {
        return None;
    }
    Some(match (mailbox_ascii, domain_ascii) {
        (true, true) => Style::Ascii,
        (true, false) => Style::Utf8Domain,
        (false, _) => Style::Utf8Mailbox,
    })
}

/// An address-list header field body (To, Cc, Bcc, and From after RFC
/// 6854) as envelope addresses.
pub fn address_list(body: &[u8], line: usize) -> Result<Vec<Vec<u8>>, ParseError> {
    let tokens = lex(body).map_err(|p| error(Problem::Position(p), line))?;
    if !is_address_list(&tokens) {
        return Err(error(Problem::AddressList, line));
    }
    let mut out = Vec::new();
    for mailbox in parse_address_list(&tokens) {
        out.push(for_envelope(&mailbox, line)?);
    }
    Ok(out)
}

/// An address-list header field body as header text: `"Name" <a@b>` or
/// `a@b`, as 2.6.1 writes a Bcc field for each Bcc recipient.
pub fn address_list_for_content(body: &[u8], line: usize) -> Result<Vec<Vec<u8>>, ParseError> {
    let tokens = lex(body).map_err(|p| error(Problem::Position(p), line))?;
    if !is_address_list(&tokens) {
        return Err(error(Problem::AddressList, line));
    }
    Ok(parse_address_list(&tokens)
        .iter()
        .map(for_content)
        .collect())
}

/// An address header field body (Sender after RFC 6854): one mailbox, or
/// one group of them.
pub fn address(body: &[u8], line: usize) -> Result<Vec<Vec<u8>>, ParseError> {
    let tokens = lex(body).map_err(|p| error(Problem::Position(p), line))?;
    if tokens.is_empty() || !(is_group(&tokens) || is_mailbox(&tokens)) {
        return Err(error(Problem::Address, line));
    }
    let mailboxes = if is_group(&tokens) {
        let (end, mailboxes) = parse_group(&tokens);
        if end != tokens.len() {
            return Err(error(Problem::TooManyParts, line));
        }
        mailboxes
    } else {
        vec![parse_mailbox(&tokens)]
    };
    mailboxes.iter().map(|m| for_envelope(m, line)).collect()
}

fn error(what: Problem, line: usize) -> ParseError {
    ParseError { what, line }
}

fn for_envelope(mailbox: &Mailbox, line: usize) -> Result<Vec<u8>, ParseError> {
    if !idn::valid(&mailbox.domain) {
        let what = Problem::DomainEncoding(printable(&mailbox.domain));
        return Err(error(what, line));
    }
    Ok([&mailbox.local[..], b"@", &idn::encode(&mailbox.domain)].concat())
}

fn for_content(mailbox: &Mailbox) -> Vec<u8> {
    let addr_spec = [&mailbox.local[..], b"@", &mailbox.domain].concat();
    let plain_name = !mailbox.display.is_empty()
        && is_printable(&mailbox.display)
        && !mailbox
            .display
            .iter()
            .any(|c| matches!(c, b'\\' | b'"' | b'\t'));
    if plain_name {
        [b"\"", &mailbox.display[..], b"\" <", &addr_spec, b">"].concat()
    } else {
        addr_spec
    }
}

// ---- grammar, on token slices ----

fn is_word(t: &Token) -> bool {
    matches!(t.kind, Kind::Atom | Kind::DotAtom | Kind::Quote)
}

fn is_atom(t: &Token) -> bool {
    matches!(t.kind, Kind::Atom | Kind::DotAtom)
}

fn is_char(t: &Token, c: u8) -> bool {
    t.kind == Kind::Char && t.text.first() == Some(&c)
}

fn is_cfws(t: &Token) -> bool {
    matches!(t.kind, Kind::Space | Kind::Comment)
}

/// Index of the first token that is not whitespace or a comment.
fn skip_cfws(s: &[Token]) -> usize {
    s.iter().position(|t| !is_cfws(t)).unwrap_or(s.len())
}

/// Index of the first token that is not a word.
fn skip_words(s: &[Token]) -> usize {
    s.iter().position(|t| !is_word(t)).unwrap_or(s.len())
}

/// Index of the first `c` at or after `from`, or the end.
fn find_char(s: &[Token], from: usize, c: u8) -> usize {
    (from..s.len())
        .find(|&i| is_char(&s[i], c))
        .unwrap_or(s.len())
}

/// `local@domain`.
fn is_addr_spec(s: &[Token]) -> bool {
    s.len() == 3 && is_word(&s[0]) && is_char(&s[1], b'@') && is_atom(&s[2])
}

/// `<local@domain>`, perhaps with whitespace or comments around it.
fn is_angle_addr(s: &[Token]) -> bool {
    let s = &s[skip_cfws(s)..];
    s.len() >= 5
        && is_char(&s[0], b'<')
        && is_addr_spec(&s[1..4])
        && is_char(&s[4], b'>')
        && s[5..].iter().all(is_cfws)
}

fn is_name_addr(s: &[Token]) -> bool {
    is_angle_addr(&s[skip_words(s)..])
}

fn is_mailbox(s: &[Token]) -> bool {
    is_addr_spec(s) || is_name_addr(s)
}

fn parse_addr_spec(s: &[Token]) -> Mailbox {
    Mailbox {
        local: s[0].text.clone(),
        domain: s[2].text.clone(),
        display: Vec::new(),
    }
}

fn parse_name_addr(s: &[Token]) -> Mailbox {
    let words = skip_words(s);
    let display = s[..words]
        .iter()
        .map(|t| t.text.clone())
        .collect::<Vec<_>>()
        .join(&b' ');
    // Not 2.6.1's mistake: it looks for the address right after the
    // display name even when whitespace or a comment comes first.
    let angle = words + skip_cfws(&s[words..]);
    Mailbox {
        local: s[angle + 1].text.clone(),
        domain: s[angle + 3].text.clone(),
        display,
    }
}

fn parse_mailbox(s: &[Token]) -> Mailbox {
    if is_addr_spec(s) {
        parse_addr_spec(s)
    } else {
        parse_name_addr(s)
    }
}

/// The comma-separated parts of `s`; a trailing comma ends the list.
fn comma_parts(s: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let mut first = 0;
    while first < s.len() {
        let last = find_char(s, first, b',');
        parts.push(&s[first..last]);
        first = (last + 1).min(s.len());
    }
    parts
}

fn is_mailbox_list(s: &[Token]) -> bool {
    !s.is_empty() && comma_parts(s).iter().all(|p| is_mailbox(p))
}

fn parse_mailbox_list(s: &[Token]) -> Vec<Mailbox> {
    comma_parts(s).into_iter().map(parse_mailbox).collect()
}

/// For `display-name: [mailbox-list] ; [CFWS]` at the start of `s`, the
/// index after it; 0 if `s` does not start with a group.
fn skip_group(s: &[Token]) -> usize {
    let colon = find_char(s, 0, b':');
    let semi = find_char(s, (colon + 1).min(s.len()), b';');
    let is_group = colon != s.len()
        && semi != s.len()
        && colon != 0
        && s[..colon].iter().all(is_word)
        && (colon + 1 == semi
            || (is_cfws(&s[colon + 1]) && (colon + 2).min(s.len()) == semi)
            || is_mailbox_list(&s[colon + 1..semi]));
    if is_group {
        semi + 1 + skip_cfws(&s[semi + 1..])
    } else {
        0
    }
}

fn starts_with_group(s: &[Token]) -> bool {
    skip_group(s) != 0
}

fn is_group(s: &[Token]) -> bool {
    skip_group(s) == s.len()
}

/// The mailboxes of the group at the start of `s`, and the index after it.
fn parse_group(s: &[Token]) -> (usize, Vec<Mailbox>) {
    let colon = find_char(s, 0, b':');
    let semi = find_char(s, colon + 1, b';');
    let list = &s[colon + 1..semi];
    let mailboxes = if is_mailbox_list(list) {
        parse_mailbox_list(list)
    } else {
        Vec::new()
    };
    (semi + 1 + skip_cfws(&s[semi + 1..]), mailboxes)
}

/// Walks an address list: groups, and comma-separated mailboxes. After a
/// group 2.6.1 steps over one token, the comma it expects there.
fn address_list_parts(s: &[Token]) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut first = 0;
    while first < s.len() {
        let last;
        if starts_with_group(&s[first..]) {
            last = first + skip_group(&s[first..]);
            parts.push(Part::Group(&s[first..]));
        } else {
            last = find_char(s, first, b',');
            let part = &s[first..last];
            if !is_addr_spec(part) && !is_name_addr(part) {
                return None;
            }
            parts.push(Part::Mailbox(part));
        }
        first = (last + 1).min(s.len());
    }
    Some(parts)
}

enum Part<'a> {
    /// Tokens starting with a group.
    Group(&'a [Token]),
    Mailbox(&'a [Token]),
}

fn is_address_list(s: &[Token]) -> bool {
    !s.is_empty() && address_list_parts(s).is_some()
}

fn parse_address_list(s: &[Token]) -> Vec<Mailbox> {
    let mut out = Vec::new();
    for part in address_list_parts(s).unwrap_or_default() {
        match part {
            Part::Group(tokens) => out.extend(parse_group(tokens).1),
            Part::Mailbox(tokens) => out.push(parse_mailbox(tokens)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(body: &str) -> Result<Vec<String>, ParseError> {
        address_list(body.as_bytes(), 1).map(|v| {
            v.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
    }

    #[test]
    fn address_lists_as_2_6_1_reads_them() {
        let ok: &[(&str, &[&str])] = &[
            (" \"Bob B\" <bob@example.org>", &["bob@example.org"]),
            (" group: g1@x, g2@y;, plain@z", &["g1@x", "g2@y", "plain@z"]),
            (" a@b, group: g1@x;", &["a@b", "g1@x"]),
            (" group:;", &[]),
            (" g: ;", &[]),
            (" g:(c);", &[]),
            (" g : a@b , c@d ;", &["a@b", "c@d"]),
            (" g:a@b;,", &["a@b"]),
            (" a.b@c.d.e", &["a.b@c.d.e"]),
            (" \"a b\"@c", &["a b@c"]),
            (" \"a\"@b", &["a@b"]),
            (" a@b]", &["a@b"]),
            (" a@b,", &["a@b"]),
            (" (x)a@b", &["a@b"]),
            (" a(x)@b", &["a@b"]),
            (" x y <a@b>", &["a@b"]),
            (" \"x\" y <a@b>", &["a@b"]),
            (" x.y <a@b>", &["a@b"]),
            (" =?utf-8?q?x?= <a@b>", &["a@b"]),
            (" a@b..c", &["a@b..c"]),
            (" a@b.", &["a@b."]),
            (" a@bü.de", &["a@xn--b-eha.de"]),
            (" a@Bücher.example", &["a@xn--Bcher-kva.example"]),
            (" ü@x", &["ü@x"]),
            (
                " a@münchen.de, b@xn--mnchen-3ya.de",
                &["a@xn--mnchen-3ya.de", "b@xn--mnchen-3ya.de"],
            ),
            (" a@ü", &["a@xn--tda"]),
            (" cc1@c (comment)", &["cc1@c"]),
            // A refused character that is the last one goes unreported.
            (" a@\u{e9}\u{1}", &["a@xn--9ca"]),
        ];
        for (body, want) in ok {
            assert_eq!(
                list(body),
                Ok(want.iter().map(|s| s.to_string()).collect()),
                "{body:?}"
            );
        }
        let bad: &[(&str, &str)] = &[
            (" a@[1.2.3.4]", "parsing error at position 4"),
            (" a", "invalid address-list"),
            (" ", "invalid address-list"),
            ("", "invalid address-list"),
            (" a@b c@d", "invalid address-list"),
            (" ,a@b", "invalid address-list"),
            (" a@b,,c@d", "invalid address-list"),
            (" a@b;", "invalid address-list"),
            (" \"a\\\\", "invalid address-list"),
            (" a@b\x01c", "parsing error at position 5"),
            (" a@\u{e9}\u{1}x", "parsing error at position 6"),
        ];
        for (body, want) in bad {
            assert_eq!(
                list(body).map_err(|e| e.to_string()),
                Err(format!("rfc-5322/6532 parsing error: {want}: line 1")),
                "{body:?}"
            );
        }
        let err = address_list(b" a@b\xff", 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rfc-5322/6532 parsing error: parsing error at position 4: line 3"
        );
    }

    #[test]
    fn angle_addresses_without_a_display_name_are_read() {
        // 2.6.1 reads these as "<@@" (or as the wrong tokens) and fails.
        assert_eq!(list(" <a@b>").unwrap(), ["a@b"]);
        assert_eq!(list("<a@b>").unwrap(), ["a@b"]);
        assert_eq!(list(" a@b, <c@d>").unwrap(), ["a@b", "c@d"]);
        assert_eq!(list(" (c) <a@b>").unwrap(), ["a@b"]);
        assert_eq!(list(" g: <a@b>;").unwrap(), ["a@b"]);
    }

    #[test]
    fn content_form_and_sender() {
        let body = b" \"Bee One\" <b1@x>, b2@y, \"Q\\\"x\" <b3@z>, Tab\tName <b4@w>";
        let got: Vec<String> = address_list_for_content(body, 1)
            .unwrap()
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(
            got,
            ["\"Bee One\" <b1@x>", "b2@y", "b3@z", "\"Tab Name\" <b4@w>"]
        );
        assert_eq!(
            address(b" \"Sen Der\" <s@x.y>", 2).unwrap(),
            [b"s@x.y".to_vec()]
        );
        assert_eq!(address(b" g: a@b, c@d;", 2).unwrap().len(), 2);
        assert_eq!(
            address(b" a@b, c@d", 2).unwrap_err().to_string(),
            "rfc-5322/6532 parsing error: invalid address: line 2"
        );
    }

    #[test]
    fn envelope_address_styles() {
        assert_eq!(style(b"a@b"), Some(Style::Ascii));
        assert_eq!(style(b"--from"), Some(Style::Ascii));
        assert_eq!(style("a@ü.de".as_bytes()), Some(Style::Utf8Domain));
        assert_eq!(style("é@b".as_bytes()), Some(Style::Utf8Mailbox));
        for bad in [
            &b""[..],
            b"@x",
            b"x@",
            b"a\x7fb@x",
            b"a\tb",
            b"\xe9@x",
            b"a@\xe9x",
        ] {
            assert_eq!(style(bad), None, "{bad:?}");
        }
        assert_eq!(
            printable(b"a\x7fb\\\x01\x1f\t@x"),
            "a\\x7fb\\\\\\x01\\x1f\\t@x"
        );
    }
}
