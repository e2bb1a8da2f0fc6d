//! Outbound message text: dot-stuffing and line-ending repair (RFC 5321
//! sections 4.5.2 and 2.3.8).
//!
//! Every line leaves with CRLF, whatever the spool file holds: a bare LF or
//! a bare CR becomes CRLF, and a line that starts with `.` gets a second one.
//! So a `<LF>.<LF>` smuggled into stored content can never end the DATA
//! phase at the next hop.

/// Streaming dot-stuffer; feed it content in chunks of any size.
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    pending_cr: bool,
    lines: u64,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            pending_cr: false,
            lines: 0,
        }
    }
}

impl DotStuffer {
    /// Appends the stuffed form of `input` to `out`.
    pub fn stuff(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 2);
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => self.end_line(out),
                _ => {
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    self.at_line_start = false;
                    out.push(b);
                }
            }
        }
    }

    /// Appends the end-of-data marker, completing an unterminated last line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            self.end_line(out);
        }
        if !self.at_line_start {
            self.end_line(out);
        }
        out.extend_from_slice(b".\r\n");
    }

    /// Lines of text written so far (not counting the end-of-data marker),
    /// for the protocol trace.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.at_line_start = true;
        self.lines += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff_all(chunks: &[&[u8]]) -> Vec<u8> {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            stuffer.stuff(chunk, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    #[test]
    fn stuffs_leading_dots() {
        assert_eq!(
            stuff_all(&[b".a\r\n..b\r\nc.\r\n"]),
            b"..a\r\n...b\r\nc.\r\n.\r\n"
        );
    }

    #[test]
    fn repairs_bare_line_endings_so_nothing_is_smuggled() {
        assert_eq!(
            stuff_all(&[b"a\n.\nMAIL FROM:<x>\r\n"]),
            b"a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"
        );
        assert_eq!(stuff_all(&[b"a\r.\rb"]), b"a\r\n..\r\nb\r\n.\r\n");
    }

    #[test]
    fn lines_are_counted_for_the_trace() {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        stuffer.stuff(b"a\r\nb\nc", &mut out);
        stuffer.finish(&mut out);
        assert_eq!(stuffer.lines(), 3);
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        assert_eq!(stuff_all(&[b"a\r", b"\n.", b"b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff_all(&[b""]), b".\r\n");
    }
}
