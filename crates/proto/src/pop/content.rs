//! Message text on its way out in a RETR or TOP reply (RFC 1939 section 3,
//! "byte-stuffing"; section 7, TOP).
//!
//! ```text
//!   Header --blank line--> Body --(TOP: n body lines sent)--> Done
//!   any --end of file--> Done            every line: "." first -> ".."
//! ```
//!
//! The encoder streams: it is fed the content file in chunks of any size
//! and never holds more than one byte back, so a large message costs no
//! memory. Every line goes out with CRLF, whether the file had CRLF or a
//! bare LF, and a last line without a terminator is terminated: a client
//! can never see a line "." that is not the end of the message.

/// Streams one message's text, stuffed and terminated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentEncoder {
    /// TOP's body lines still to send; `None` for RETR (everything).
    body_lines: Option<u64>,
    in_body: bool,
    at_line_start: bool,
    /// The current line has text (the blank line ends the header).
    line_has_text: bool,
    /// A CR ended the last chunk: whether it ends the line depends on
    /// what comes next.
    pending_cr: bool,
    done: bool,
    lines: u64,
}

impl ContentEncoder {
    /// For RETR: the whole message.
    pub fn retr() -> ContentEncoder {
        ContentEncoder::new(None)
    }

    /// For TOP: the header, the blank line and `n` lines of the body.
    pub fn top(n: u64) -> ContentEncoder {
        ContentEncoder::new(Some(n))
    }

    fn new(body_lines: Option<u64>) -> ContentEncoder {
        ContentEncoder {
            body_lines,
            in_body: false,
            at_line_start: true,
            line_has_text: false,
            pending_cr: false,
            done: false,
            lines: 0,
        }
    }

    /// True once the terminating "." has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Lines written so far, for the protocol trace.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Encodes the next chunk of the file into `out`. Returns false once
    /// TOP has all it wants (the terminator is then written): the caller
    /// stops reading.
    pub fn encode(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.done {
            return false;
        }
        if self.at_line_start && self.top_is_complete() {
            self.terminate(out);
            return false;
        }
        if self.pending_cr && !input.is_empty() {
            self.pending_cr = false;
            if input[0] == b'\n' {
                self.end_line(out);
                input = &input[1..];
            } else {
                self.text(b"\r", out);
            }
        }
        while !input.is_empty() {
            if self.at_line_start && self.top_is_complete() {
                self.terminate(out);
                return false;
            }
            match input.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    let text = &input[..lf];
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    self.text(text, out);
                    self.end_line(out);
                    input = &input[lf + 1..];
                }
                None => {
                    let (text, cr) = match input.strip_suffix(b"\r") {
                        Some(text) => (text, true),
                        None => (input, false),
                    };
                    self.text(text, out);
                    self.pending_cr = cr;
                    input = &[];
                }
            }
        }
        // A pending CR here starts a line TOP does not want.
        if self.at_line_start && self.top_is_complete() {
            self.terminate(out);
            return false;
        }
        true
    }

    /// The end of the file: ends a last unterminated line, then writes the
    /// terminating ".".
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if std::mem::take(&mut self.pending_cr) {
            self.text(b"\r", out);
        }
        if !self.at_line_start {
            self.end_line(out);
        }
        self.terminate(out);
    }

    /// TOP has sent the blank line and all the body lines it asked for.
    fn top_is_complete(&self) -> bool {
        self.in_body && self.body_lines == Some(0)
    }

    fn text(&mut self, text: &[u8], out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        if self.at_line_start {
            self.start_line();
            if text[0] == b'.' {
                out.push(b'.');
            }
        }
        self.line_has_text = true;
        out.extend_from_slice(text);
    }

    fn start_line(&mut self) {
        self.at_line_start = false;
        if self.in_body {
            if let Some(n) = self.body_lines.as_mut() {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        if self.at_line_start {
            self.start_line();
        }
        out.extend_from_slice(b"\r\n");
        self.lines += 1;
        if !self.in_body && !self.line_has_text {
            self.in_body = true;
        }
        self.line_has_text = false;
        self.at_line_start = true;
    }

    fn terminate(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b".\r\n");
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut encoder: ContentEncoder, chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for chunk in chunks {
            if !encoder.encode(chunk, &mut out) {
                return String::from_utf8(out).unwrap();
            }
        }
        encoder.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    const MESSAGE: &[u8] = b"Subject: a\r\n\r\nline1\r\n.dot\r\n..two\r\n.\r\nlast";

    #[test]
    fn retr_stuffs_dots_and_terminates_the_last_line() {
        assert_eq!(
            run(ContentEncoder::retr(), &[MESSAGE]),
            "Subject: a\r\n\r\nline1\r\n..dot\r\n...two\r\n..\r\nlast\r\n.\r\n"
        );
        assert_eq!(run(ContentEncoder::retr(), &[b""]), ".\r\n");
        assert_eq!(run(ContentEncoder::retr(), &[b"a\r\n"]), "a\r\n.\r\n");
    }

    #[test]
    fn top_sends_the_header_the_blank_line_and_n_body_lines() {
        assert_eq!(
            run(ContentEncoder::top(0), &[MESSAGE]),
            "Subject: a\r\n\r\n.\r\n"
        );
        assert_eq!(
            run(ContentEncoder::top(2), &[MESSAGE]),
            "Subject: a\r\n\r\nline1\r\n..dot\r\n.\r\n"
        );
        assert_eq!(
            run(ContentEncoder::top(100), &[MESSAGE]),
            run(ContentEncoder::retr(), &[MESSAGE])
        );
    }

    #[test]
    fn bare_lf_lines_go_out_with_crlf_and_are_stuffed() {
        // A filter may write LF-only content: "\n.\n" must not end the reply.
        assert_eq!(
            run(ContentEncoder::retr(), &[b"a\n.\nb\n"]),
            "a\r\n..\r\nb\r\n.\r\n"
        );
    }

    #[test]
    fn chunk_boundaries_change_nothing() {
        let whole = run(ContentEncoder::retr(), &[MESSAGE]);
        let top = run(ContentEncoder::top(1), &[MESSAGE]);
        for i in 0..MESSAGE.len() {
            let (a, b) = MESSAGE.split_at(i);
            assert_eq!(run(ContentEncoder::retr(), &[a, b]), whole, "split at {i}");
            assert_eq!(run(ContentEncoder::top(1), &[a, b]), top, "split at {i}");
        }
        let bytes: Vec<&[u8]> = MESSAGE.chunks(1).collect();
        assert_eq!(run(ContentEncoder::retr(), &bytes), whole);
    }

    #[test]
    fn a_lone_cr_is_text() {
        assert_eq!(
            run(ContentEncoder::retr(), &[b"a\rb\r", b"c\r"]),
            "a\rb\rc\r\r\n.\r\n"
        );
    }
}
