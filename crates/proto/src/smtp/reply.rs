//! SMTP replies (RFC 5321 section 4.2): formatting for the server and
//! incremental multi-line parsing for the client.

use std::fmt;

/// One SMTP reply: a three-digit code and one or more text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// All text lines joined with spaces, for logs and envelope reasons.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form, CRLF after every line. Reply text can come
    /// from a filter, a verifier or an upstream: a control character in it
    /// (a CR or LF that would start a forged reply or header above all)
    /// goes out as a space, so one line of text is always one reply line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        let code = self.code.min(999);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { b' ' } else { b'-' };
            out.extend_from_slice(&[
                b'0' + (code / 100) as u8,
                b'0' + (code / 10 % 10) as u8,
                b'0' + (code % 10) as u8,
                sep,
            ]);
            let start = out.len();
            out.extend_from_slice(line.as_bytes());
            for byte in &mut out[start..] {
                if byte.is_ascii_control() && *byte != b'\t' {
                    *byte = b' ';
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// The most lines one reply may have: an upstream that sends `250-`
/// lines forever must not grow our memory forever.
pub const MAX_REPLY_LINES: usize = 200;

/// Assembles replies from lines of server output.
#[derive(Debug, Default)]
pub struct ReplyParser {
    partial: Option<Reply>,
}

/// What one line of server output meant.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyLine {
    /// The last line of a reply arrived.
    Complete(Reply),
    /// A continuation line; more follow.
    More,
    /// Not a reply line at all.
    Invalid,
    /// More than [`MAX_REPLY_LINES`] lines in one reply.
    TooLong,
}

impl ReplyParser {
    /// Feeds one line, without its terminator.
    pub fn handle_line(&mut self, line: &[u8]) -> ReplyLine {
        let text = String::from_utf8_lossy(line);
        let code = match text.get(..3).and_then(|c| c.parse::<u16>().ok()) {
            Some(code) if (200..600).contains(&code) => code,
            _ => return ReplyLine::Invalid,
        };
        let sep = text.as_bytes().get(3).copied();
        let body = text.get(4..).unwrap_or("").to_string();
        let reply = self.partial.get_or_insert_with(|| Reply {
            code,
            lines: Vec::new(),
        });
        if reply.code != code {
            self.partial = None;
            return ReplyLine::Invalid;
        }
        if reply.lines.len() >= MAX_REPLY_LINES {
            self.partial = None;
            return ReplyLine::TooLong;
        }
        reply.lines.push(body);
        match sep {
            Some(b'-') => ReplyLine::More,
            Some(b' ') | None => ReplyLine::Complete(self.partial.take().expect("set above")),
            _ => {
                self.partial = None;
                ReplyLine::Invalid
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_reply_text_never_make_a_second_line() {
        let mut out = Vec::new();
        Reply::new(452, "multi\rX-Injected: 1\n250 ok\0").write_to(&mut out);
        assert_eq!(out, b"452 multi X-Injected: 1 250 ok \r\n");
        out.clear();
        Reply {
            code: 250,
            lines: vec!["a\tb".into(), "c".into()],
        }
        .write_to(&mut out);
        assert_eq!(out, b"250-a\tb\r\n250 c\r\n");
    }

    #[test]
    fn formats_multi_line_replies() {
        let reply = Reply {
            code: 250,
            lines: vec!["host says hello".into(), "VRFY".into(), "8BITMIME".into()],
        };
        let mut out = Vec::new();
        reply.write_to(&mut out);
        assert_eq!(out, b"250-host says hello\r\n250-VRFY\r\n250 8BITMIME\r\n");
    }

    #[test]
    fn parses_multi_line_replies() {
        let mut parser = ReplyParser::default();
        assert_eq!(parser.handle_line(b"250-mx says hi"), ReplyLine::More);
        assert_eq!(
            parser.handle_line(b"250 PIPELINING"),
            ReplyLine::Complete(Reply {
                code: 250,
                lines: vec!["mx says hi".into(), "PIPELINING".into()]
            })
        );
        assert_eq!(
            parser.handle_line(b"250"),
            ReplyLine::Complete(Reply {
                code: 250,
                lines: vec!["".into()]
            })
        );
        assert_eq!(parser.handle_line(b"hello"), ReplyLine::Invalid);
        assert_eq!(parser.handle_line(b"250-a"), ReplyLine::More);
        assert_eq!(parser.handle_line(b"354 b"), ReplyLine::Invalid);
    }

    #[test]
    fn an_endless_reply_is_cut_off() {
        let mut parser = ReplyParser::default();
        for _ in 1..MAX_REPLY_LINES {
            assert_eq!(parser.handle_line(b"250-more"), ReplyLine::More);
        }
        assert_eq!(parser.handle_line(b"250-more"), ReplyLine::More);
        assert_eq!(parser.handle_line(b"250-more"), ReplyLine::TooLong);
        // And the parser starts afresh.
        assert_eq!(
            parser.handle_line(b"221 bye"),
            ReplyLine::Complete(Reply::new(221, "bye"))
        );
    }
}
