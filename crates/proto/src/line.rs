//! Line assembly with a length limit (RFC 5321 section 4.5.3.1).
//!
//! Scans a byte buffer for the next line without copying it. Command lines
//! end at LF (a CR before it is stripped), so that old clients sending bare
//! LF still work; message text lines end only at CRLF, so that a bare LF can
//! never end the DATA phase (`<LF>.<LF>` is content, not a terminator).

/// What ends a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminator {
    /// LF, with an optional CR before it (SMTP command lines).
    Lf,
    /// CR LF only (SMTP message text).
    CrLf,
}

/// The result of scanning a buffer for one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole line: `content` bytes of text, `total` bytes including the terminator.
    Line { content: usize, total: usize },
    /// No terminator yet and still within the limit: wait for more input.
    Incomplete,
    /// No terminator within `limit` bytes: the caller discards up to the next terminator.
    Overflow,
}

/// Finds the next line in `buf`. `limit` counts the terminator too, as the
/// RFC does (512 octets for a command line, 1000 for a text line).
pub fn scan_line(buf: &[u8], limit: usize, terminator: Terminator) -> Scan {
    let window = &buf[..buf.len().min(limit)];
    let found = match terminator {
        Terminator::Lf => window.iter().position(|&b| b == b'\n').map(|lf| {
            let content = if lf > 0 && window[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            (content, lf + 1)
        }),
        Terminator::CrLf => window
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|cr| (cr, cr + 2)),
    };
    match found {
        Some((content, total)) => Scan::Line { content, total },
        None if buf.len() >= limit => Scan::Overflow,
        None => Scan::Incomplete,
    }
}

/// Finds the end of the next terminator in `buf`, for skipping the rest of
/// an overlong line. Returns the number of bytes to drop, terminator included.
pub fn skip_to_terminator(buf: &[u8], terminator: Terminator) -> Option<usize> {
    match terminator {
        Terminator::Lf => buf.iter().position(|&b| b == b'\n').map(|i| i + 1),
        Terminator::CrLf => buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2),
    }
}

/// How many bytes at the end of `buf` may still be the start of a terminator
/// and so must be kept when the rest is dropped.
pub fn partial_terminator(buf: &[u8], terminator: Terminator) -> usize {
    match (terminator, buf.last()) {
        (Terminator::CrLf, Some(b'\r')) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_end_at_lf_with_optional_cr() {
        assert_eq!(
            scan_line(b"NOOP\r\nX", 512, Terminator::Lf),
            Scan::Line {
                content: 4,
                total: 6
            }
        );
        assert_eq!(
            scan_line(b"NOOP\nX", 512, Terminator::Lf),
            Scan::Line {
                content: 4,
                total: 5
            }
        );
        assert_eq!(scan_line(b"NOO", 512, Terminator::Lf), Scan::Incomplete);
    }

    #[test]
    fn text_lines_end_only_at_crlf() {
        assert_eq!(
            scan_line(b"a\n.\nb\r\n", 1000, Terminator::CrLf),
            Scan::Line {
                content: 5,
                total: 7
            }
        );
        assert_eq!(
            scan_line(b"a\n.\n", 1000, Terminator::CrLf),
            Scan::Incomplete
        );
    }

    #[test]
    fn limit_counts_the_terminator() {
        let mut line = vec![b'x'; 510];
        line.extend_from_slice(b"\r\n");
        assert_eq!(
            scan_line(&line, 512, Terminator::Lf),
            Scan::Line {
                content: 510,
                total: 512
            }
        );
        let mut long = vec![b'x'; 511];
        long.extend_from_slice(b"\r\n");
        assert_eq!(scan_line(&long, 512, Terminator::Lf), Scan::Overflow);
    }

    #[test]
    fn skipping_finds_the_terminator() {
        assert_eq!(skip_to_terminator(b"xxx\r\nNOOP", Terminator::Lf), Some(5));
        assert_eq!(
            skip_to_terminator(b"xxx\nyy\r\n", Terminator::CrLf),
            Some(8)
        );
        assert_eq!(skip_to_terminator(b"xxx", Terminator::CrLf), None);
        assert_eq!(partial_terminator(b"xx\r", Terminator::CrLf), 1);
    }
}
