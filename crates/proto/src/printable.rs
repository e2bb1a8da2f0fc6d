//! Peer bytes made safe for one log line or one header field, escaped the
//! way E-MailRelay 2.6.1 escapes them, so that log watchers see the same
//! text: `\\` for a backslash, `\r`, `\n`, `\t`, `\0`, and `\xHH` for any
//! other control byte (and, for [`printable_ascii`], any byte that is not
//! ASCII). Nothing that came from a peer may start a new log line or a new
//! header (issue: EHLO `evil<CR>X-Spam-Flag: NO`).

/// Escapes control bytes; valid UTF-8 stays as it is (2.6.1 passes 8-bit
/// bytes through), invalid UTF-8 bytes are escaped as `\xHH`.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii() {
                push_ascii(&mut out, c as u8);
            } else if c.is_control() {
                // C1 controls, as 2.6.1 would see their bytes.
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_hex(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_hex(&mut out, b);
        }
    }
    out
}

/// Peer text echoed in a reply: control characters escaped as
/// [`printable`] escapes them (`\0`, `\x1b`, `\r`), everything else,
/// backslashes included, as it came (a `DOMAIN\user` name stays so).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            out.push_str(&printable(c.encode_utf8(&mut buf).as_bytes()));
        } else {
            out.push(c);
        }
    }
    out
}

/// As [`printable`], with every byte outside printable ASCII escaped too
/// (2.6.1's `toPrintableAscii`, used for the `Received` line).
pub fn printable_ascii(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii() {
            push_ascii(&mut out, b);
        } else {
            push_hex(&mut out, b);
        }
    }
    out
}

/// True if no byte is a control byte: each is 0x20 or above and not DEL
/// (2.6.1's test of an address; bytes from 0x80 up, UTF-8 among them,
/// pass).
pub fn is_printable(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b >= 0x20 && b != 0x7f)
}

/// ASCII escaped as [`printable`] escapes it, bytes from 0x80 up as they
/// are (2.6.1's `printable` for an error message), and the result read as
/// UTF-8 with U+FFFD for what is not.
pub fn printable_lossy(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut escaped = String::new();
    for &b in bytes {
        if b.is_ascii() {
            escaped.clear();
            push_ascii(&mut escaped, b);
            out.extend_from_slice(escaped.as_bytes());
        } else {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn push_ascii(out: &mut String, b: u8) {
    match b {
        b'\\' => out.push_str("\\\\"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        0 => out.push_str("\\0"),
        0x20..=0x7e => out.push(char::from(b)),
        _ => push_hex(out, b),
    }
}

fn push_hex(out: &mut String, b: u8) {
    out.push_str(&format!("\\x{b:02x}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_become_escapes_and_text_stays() {
        assert_eq!(
            printable(b"EHLO evil\rX-Spam-Flag: NO"),
            "EHLO evil\\rX-Spam-Flag: NO"
        );
        assert_eq!(printable(b"a\0b\nc\td\\e\x1b"), "a\\0b\\nc\\td\\\\e\\x1b");
        assert_eq!(printable("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(printable(b"a\xff\xfe@b"), "a\\xff\\xfe@b");
        assert_eq!(
            printable_ascii("caf\u{e9}\r".as_bytes()),
            "caf\\xc3\\xa9\\r"
        );
    }

    #[test]
    fn eight_bit_bytes_pass_in_the_lossy_form() {
        assert_eq!(
            printable_lossy(b"a\x7fb\\\x01\x1f\t@x"),
            "a\\x7fb\\\\\\x01\\x1f\\t@x"
        );
        assert_eq!(
            printable_lossy("\u{fc}\u{85}\r".as_bytes()),
            "\u{fc}\u{85}\\r"
        );
        assert_eq!(printable_lossy(b"a@\xe9x"), "a@\u{fffd}x");
        assert!(is_printable("a@\u{fc}\u{85}".as_bytes()) && is_printable(b"\xe9"));
        assert!(!is_printable(b"a\tb") && !is_printable(b"a\x7f") && !is_printable(b"\0"));
    }

    #[test]
    fn replies_escape_control_characters_only() {
        assert_eq!(
            escape_controls("a\0b\x1b[31mc\r\nd\u{85}"),
            "a\\0b\\x1b[31mc\\r\\nd\\xc2\\x85"
        );
        assert_eq!(escape_controls("DOM\\al\u{ef}ce"), "DOM\\al\u{ef}ce");
    }

    #[test]
    fn the_result_is_always_one_line() {
        for b in 0u8..=255 {
            let text = printable(&[b'x', b, b'y']);
            assert!(!text.contains(['\r', '\n']), "{b}");
            assert!(!printable_ascii(&[b]).contains(['\r', '\n']), "{b}");
            let text = escape_controls(&String::from_utf8_lossy(&[b'x', b, b'y']));
            assert!(!text.chars().any(char::is_control), "{b}");
        }
    }
}
