//! Which envelope recipients the message's own header does not name.
//!
//! Graph's `sendMail` in MIME form takes its recipients from the `To`,
//! `Cc` and `Bcc` fields (RFC 5322 section 3.6.3), not from an envelope;
//! the relay's envelope may hold others (a Bcc stripped by the sender's
//! client, a mailing list's members, a filter's additions). Those go in
//! the message's own `Bcc` field, or in a new one put before the message
//! if it has none (never a second one); Exchange strips it on delivery.
//!
//! The field scan is deliberately loose: any word with an `@` in it, in
//! angle brackets or not, counts as named, outside quoted strings and
//! comments. Naming one address too many only costs a Bcc line that was
//! not needed; a recipient wrongly thought named would be lost, so
//! the comparison is of whole addresses, ignoring case.

use std::collections::HashSet;

/// The header fields whose addresses Graph delivers to.
const RECIPIENT_FIELDS: [&str; 3] = ["to", "cc", "bcc"];

/// Where the recipients go: `insert` is put into the content at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BccEdit {
    /// An offset into the header section.
    pub at: usize,
    /// The text to put there.
    pub insert: Vec<u8>,
}

/// How to name the recipients in `to` that `header` does not name: added
/// to the end of its first `Bcc` field if it has one (a second `Bcc`
/// field would break RFC 5322 section 3.6's "at most once"), otherwise a
/// new `Bcc` field put before the header; folded after each address (a
/// line of a few hundred recipients stays under RFC 5322's 998 octets),
/// with the header's own line ending (CRLF or LF). `None` if the header
/// names them all.
pub fn bcc_edit(header: &[u8], to: &[String]) -> Option<BccEdit> {
    let named = named_recipients(header);
    let mut seen = HashSet::new();
    let missing: Vec<&str> = to
        .iter()
        .map(|a| a.trim())
        .filter(|a| !named.contains(&a.to_ascii_lowercase()))
        .filter(|a| seen.insert(a.to_ascii_lowercase()))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let eol: &[u8] = if line_ending_is_lf(header) {
        b"\n"
    } else {
        b"\r\n"
    };
    let separator = [b",", eol, b" "].concat();
    let mut list = Vec::new();
    for (i, address) in missing.iter().enumerate() {
        if i > 0 {
            list.extend_from_slice(&separator);
        }
        list.extend_from_slice(address.as_bytes());
    }
    match existing_bcc(header) {
        Some((at, empty)) => {
            let mut insert = if empty { b" ".to_vec() } else { separator };
            insert.extend_from_slice(&list);
            Some(BccEdit { at, insert })
        }
        None => {
            let mut insert = b"Bcc: ".to_vec();
            insert.extend_from_slice(&list);
            insert.extend_from_slice(eol);
            Some(BccEdit { at: 0, insert })
        }
    }
}

/// The first `Bcc` field of `header`: the offset of the line ending of
/// its last line (where more addresses go), and whether its value is
/// empty (RFC 5322 allows `Bcc:` alone).
fn existing_bcc(header: &[u8]) -> Option<(usize, bool)> {
    let mut found: Option<(usize, Vec<u8>)> = None;
    let mut offset = 0;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let text = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        let end = offset + text.len();
        offset += line.len();
        if text.is_empty() {
            break;
        }
        let continuation = text.starts_with(b" ") || text.starts_with(b"\t");
        match (&mut found, continuation) {
            (Some((at, value)), true) => {
                *at = end;
                value.extend_from_slice(text);
            }
            (Some(_), false) => break,
            (None, true) => {}
            (None, false) => {
                let Some(colon) = text.iter().position(|&b| b == b':') else {
                    continue;
                };
                if text[..colon].trim_ascii().eq_ignore_ascii_case(b"bcc") {
                    found = Some((end, text[colon + 1..].to_vec()));
                }
            }
        }
    }
    let (at, value) = found?;
    let value = strip_quotes_and_comments(&String::from_utf8_lossy(&value));
    Some((at, value.trim().is_empty()))
}

/// The header section of `content`: up to and including the empty line,
/// or all of it if there is none in `content`.
pub fn header_section(content: &[u8]) -> &[u8] {
    let crlf = content.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = content.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) if b + 1 < a => &content[..b + 2],
        (Some(a), _) => &content[..a + 4],
        (None, Some(b)) => &content[..b + 2],
        (None, None) => content,
    }
}

/// Every address the `To`, `Cc` and `Bcc` fields name, lower-cased.
pub fn named_recipients(header: &[u8]) -> HashSet<String> {
    let text = String::from_utf8_lossy(header);
    let mut named = HashSet::new();
    for field in unfold(&text) {
        let Some((name, value)) = field.split_once(':') else {
            continue;
        };
        if !RECIPIENT_FIELDS.contains(&name.trim().to_ascii_lowercase().as_str()) {
            continue;
        }
        for word in strip_quotes_and_comments(value)
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | ':'))
        {
            if word.contains('@') {
                named.insert(word.to_ascii_lowercase());
            }
        }
    }
    named
}

/// Header fields with their continuation lines joined (RFC 5322 2.2.3),
/// up to the first empty line.
fn unfold(text: &str) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        match (line.starts_with([' ', '\t']), fields.last_mut()) {
            (true, Some(last)) => {
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => fields.push(line.to_string()),
        }
    }
    fields
}

/// The value with quoted strings and comments blanked out, so that a
/// display name's `@` is not taken for an address.
fn strip_quotes_and_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut quoted, mut depth, mut escaped) = (false, 0u32, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if quoted || depth > 0 => {}
            _ => out.push(c),
        }
        if quoted || depth > 0 {
            // Keep words apart where the blanked text was.
            if !out.ends_with(' ') {
                out.push(' ');
            }
        }
    }
    out
}

fn line_ending_is_lf(header: &[u8]) -> bool {
    header
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i == 0 || header[i - 1] != b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The new `Bcc` field for a header without one.
    fn extra_bcc(header: &[u8], to: &[String]) -> Option<Vec<u8>> {
        bcc_edit(header, to).map(|edit| {
            assert_eq!(edit.at, 0);
            edit.insert
        })
    }

    /// The header after the edit.
    fn merged(header: &[u8], list: &[&str]) -> String {
        let edit = bcc_edit(header, &to(list)).unwrap();
        let mut out = header[..edit.at].to_vec();
        out.extend_from_slice(&edit.insert);
        out.extend_from_slice(&header[edit.at..]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_existing_bcc_field_takes_the_others_and_no_second_one_is_added() {
        let header = b"To: bob@example.com\r\nBcc: carol@example.com\r\nSubject: x\r\n\r\n";
        assert_eq!(
            merged(header, &["bob@example.com", "carol@example.com", "eve@example.com", "f@x.org"]),
            "To: bob@example.com\r\nBcc: carol@example.com,\r\n eve@example.com,\r\n f@x.org\r\nSubject: x\r\n\r\n"
        );
        // Named there already: nothing to do.
        assert_eq!(bcc_edit(header, &to(&["CAROL@example.com"])), None);
    }

    #[test]
    fn a_folded_or_empty_bcc_field_and_lf_endings() {
        // Folded: the addresses go after its last line.
        let folded = b"BCC: a@x.org,\r\n\tb@x.org\r\nTo: c@x.org\r\n\r\n";
        assert_eq!(
            merged(folded, &["d@x.org"]),
            "BCC: a@x.org,\r\n\tb@x.org,\r\n d@x.org\r\nTo: c@x.org\r\n\r\n"
        );
        // Empty (RFC 5322 allows it): no leading comma.
        assert_eq!(
            merged(b"Bcc:\r\nTo: c@x.org\r\n\r\n", &["d@x.org", "e@x.org"]),
            "Bcc: d@x.org,\r\n e@x.org\r\nTo: c@x.org\r\n\r\n"
        );
        assert_eq!(
            merged(b"Bcc: (nobody)\nTo: c@x.org\n\n", &["d@x.org"]),
            "Bcc: (nobody) d@x.org\nTo: c@x.org\n\n"
        );
        // An undisclosed-recipients group is a value: a comma, then the address.
        assert_eq!(
            merged(b"Bcc: undisclosed-recipients:;\r\n\r\n", &["d@x.org"]),
            "Bcc: undisclosed-recipients:;,\r\n d@x.org\r\n\r\n"
        );
        // Two Bcc fields (against RFC 5322): the first takes them.
        assert_eq!(
            merged(b"Bcc: a@x.org\r\nBcc: b@x.org\r\n\r\n", &["d@x.org"]),
            "Bcc: a@x.org,\r\n d@x.org\r\nBcc: b@x.org\r\n\r\n"
        );
        // A "Bcc:" in the body is not a field.
        assert_eq!(
            merged(b"To: c@x.org\r\n\r\nBcc: z@x.org\r\n", &["d@x.org"]),
            "Bcc: d@x.org\r\nTo: c@x.org\r\n\r\nBcc: z@x.org\r\n"
        );
        // Nor is X-Bcc or a field name that only starts so.
        assert_eq!(
            merged(b"X-Bcc: a@x.org\r\nBccX: b\r\n\r\n", &["d@x.org"]),
            "Bcc: d@x.org\r\nX-Bcc: a@x.org\r\nBccX: b\r\n\r\n"
        );
    }

    #[test]
    fn recipients_the_header_names_need_no_bcc() {
        let header = b"From: a@example.com\r\nTo: \"Bob\" <Bob@Example.com>, carol@example.com\r\nCc: (team) dave@example.com\r\nSubject: hi\r\n\r\n";
        assert_eq!(
            extra_bcc(
                header,
                &to(&["bob@example.com", "carol@example.com", "dave@example.com"])
            ),
            None
        );
    }

    #[test]
    fn the_others_go_in_one_bcc_field_with_the_headers_line_ending() {
        let header = b"To: bob@example.com\r\nSubject: x\r\n\r\n";
        let bcc = extra_bcc(
            header,
            &to(&[
                "bob@example.com",
                "eve@example.com",
                "Eve@example.com",
                "f@x.org",
            ]),
        );
        assert_eq!(
            bcc.as_deref(),
            Some(&b"Bcc: eve@example.com,\r\n f@x.org\r\n"[..])
        );
        let lf = extra_bcc(b"To: b@x\n\n", &to(&["c@x"]));
        assert_eq!(lf.as_deref(), Some(&b"Bcc: c@x\n"[..]));
    }

    #[test]
    fn display_names_comments_and_other_fields_do_not_name_anyone() {
        let header = b"To: \"eve@example.com\" <bob@example.com>\r\nReply-To: mallory@example.com\r\nX-Note: f@x.org\r\nCc: (g@x.org) h@x.org\r\n\r\nTo: body@example.com\r\n";
        let named = named_recipients(header_section(header));
        let mut list: Vec<_> = named.into_iter().collect();
        list.sort();
        assert_eq!(list, ["bob@example.com", "h@x.org"]);
    }

    #[test]
    fn folded_fields_groups_and_bcc_count() {
        let header = b"To: team: a@x.org,\r\n\tb@x.org;\r\nBCC: c@x.org\r\n\r\n";
        assert_eq!(
            extra_bcc(header, &to(&["a@x.org", "b@x.org", "c@x.org"])),
            None
        );
        // The BCC field there takes d (a second one was added before).
        assert_eq!(
            merged(header, &["d@x.org"]),
            "To: team: a@x.org,\r\n\tb@x.org;\r\nBCC: c@x.org,\r\n d@x.org\r\n\r\n"
        );
    }

    #[test]
    fn the_header_section_ends_at_the_first_empty_line() {
        assert_eq!(header_section(b"A: 1\r\n\r\nbody\r\n\r\n"), b"A: 1\r\n\r\n");
        assert_eq!(header_section(b"A: 1\n\nbody"), b"A: 1\n\n");
        assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
    }
}
