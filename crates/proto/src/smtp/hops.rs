//! Hop counting: the `Received:` header fields of a message as its text
//! streams past (RFC 5321 section 6.3, "loop detection").
//!
//! A relay that forwards to itself, or two relays that forward to each
//! other, add one `Received:` line per pass; counting them and refusing a
//! message over a limit ends the loop (Postfix's `hopcount_limit`, 50 by
//! default). Only the header section counts: the scan stops at the first
//! empty line. Lines are matched whatever their case, and a header line
//! split across the pieces the scanner is fed is still recognised.
//!
//! Must not keep the message: it holds at most the first nine octets of
//! the current line.

/// The field name looked for, lower case, colon included.
const RECEIVED: &[u8] = b"received:";

impl Default for HopCounter {
    fn default() -> Self {
        HopCounter::new()
    }
}

/// Counts `Received:` lines in the header section of a message.
#[derive(Clone, Debug)]
pub struct HopCounter {
    /// `Received:` lines seen so far.
    count: usize,
    /// Octets of the current line seen so far (saturating).
    column: usize,
    /// Whether the current line still matches `Received:`.
    matching: bool,
    /// The empty line that ends the header section was seen.
    body: bool,
    /// The last octet was a CR at the start of a line (CRLF pending).
    cr_at_start: bool,
}

impl HopCounter {
    /// A counter at the start of a message.
    pub fn new() -> Self {
        HopCounter {
            count: 0,
            column: 0,
            matching: true,
            body: false,
            cr_at_start: false,
        }
    }

    /// Feeds the next octets of message text (dot-stuffing removed).
    pub fn handle_text(&mut self, text: &[u8]) {
        for &octet in text {
            if self.body {
                return;
            }
            self.handle_octet(octet);
        }
    }

    /// `Received:` lines in the header section so far.
    pub fn count(&self) -> usize {
        self.count
    }

    fn handle_octet(&mut self, octet: u8) {
        if octet == b'\n' {
            if self.column == 0 || (self.column == 1 && self.cr_at_start) {
                self.body = true;
            }
            self.column = 0;
            self.matching = true;
            self.cr_at_start = false;
            return;
        }
        self.cr_at_start = self.column == 0 && octet == b'\r';
        if self.matching && self.column < RECEIVED.len() {
            self.matching = octet.to_ascii_lowercase() == RECEIVED[self.column];
            if self.matching && self.column + 1 == RECEIVED.len() {
                self.count += 1;
            }
        }
        self.column = self.column.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &[u8]) -> usize {
        let mut counter = HopCounter::new();
        counter.handle_text(text);
        counter.count()
    }

    #[test]
    fn counts_received_lines_in_the_header_only() {
        let text = b"Received: from a\r\n\tby b\r\nSubject: x\r\nRECEIVED: from c\r\n\
                     received:from d\r\n\r\nReceived: in the body\r\n";
        assert_eq!(count(text), 3);
    }

    #[test]
    fn lf_only_lines_and_an_lf_only_blank_line() {
        assert_eq!(count(b"Received: a\nReceived: b\n\nReceived: c\n"), 2);
    }

    #[test]
    fn other_fields_and_continuations_do_not_count() {
        let text = b"X-Received: a\r\nReceived-SPF: pass\r\n Received: folded\r\nReceived\r\n\r\n";
        assert_eq!(count(text), 0);
    }

    #[test]
    fn lines_split_across_pieces_still_count() {
        let text = b"Subject: s\r\nReceived: one\r\nReceived: two\r\n\r\nReceived: body\r\n";
        for split in 0..text.len() {
            let mut counter = HopCounter::new();
            counter.handle_text(&text[..split]);
            counter.handle_text(&text[split..]);
            assert_eq!(counter.count(), 2, "split at {split}");
        }
    }

    #[test]
    fn a_message_of_many_hops() {
        let text = "Received: hop\r\n".repeat(101) + "\r\nbody\r\n";
        assert_eq!(count(text.as_bytes()), 101);
    }

    #[test]
    fn a_lone_cr_line_is_not_the_end_of_the_header() {
        assert_eq!(count(b"Subject: a\r\n\rx\r\nReceived: b\r\n\r\n"), 1);
    }
}
