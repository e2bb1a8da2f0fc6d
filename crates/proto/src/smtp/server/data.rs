//! Message text in the server session: DATA (RFC 5321 section 4.1.1.4,
//! dot-stuffing of section 4.5.2) and BDAT (RFC 3030).
//!
//! ```text
//!   Rcpt --DATA--> [MessageStart?] --354--> Data --"."--> [MessageEnd?] --250--> Ready
//!   Rcpt --BDAT n [LAST]--> [MessageStart?] --> n octets --> 250 n bytes received --> Bdat
//!   Bdat --BDAT n--> n octets --> 250 ... --> Bdat
//!   Bdat --BDAT n LAST--> n octets --> [MessageEnd?] --250--> Ready
//!   too large at the end: 552 (MessageAbort)     bad BDAT size: 501 --> MustReset
//!   more Received lines than max_hops at the end: 554 (MessageAbort)
//! ```
//!
//! Sizes: as in E-MailRelay 2.6.1, everything written to the content file
//! counts, the `Received` line included, and a message reaching `--size`
//! octets is refused (`552`, with the warning `message content too big`).
//! A chunk's octets are always read as data, never as commands, whatever
//! the verdict on its BDAT (2.6.1 reads a refused chunk as commands, which
//! lets a client smuggle commands inside it).

use std::mem;

use super::{Event, LogLine, Reply, ServerSession, State, Waiting};
use crate::line::{partial_terminator, scan_line, skip_to_terminator, Scan, Terminator};
use crate::smtp::command::Body;
use crate::smtp::hops::HopCounter;

/// Text is scanned for line ends this many octets at a time; a longer line
/// (beyond RFC 5321 section 4.5.3.1.6) is passed on in pieces.
pub const MAX_TEXT_LINE: usize = 1000;
/// Message text is handed out in chunks of about this size.
const DATA_CHUNK: usize = 64 * 1024;

/// State of the DATA or BDAT phase.
#[derive(Debug, Default)]
pub(super) struct DataPhase {
    /// Text not yet handed out.
    chunk: Vec<u8>,
    /// Octets of content so far, `Received` line included.
    size: u64,
    /// At or over the size limit: nothing more is kept.
    too_large: bool,
    /// Inside a line longer than [`MAX_TEXT_LINE`]: the rest of it is
    /// content, up to its CRLF, whatever it holds.
    in_long_line: bool,
    /// Octets of that long line so far.
    long_line: usize,
    /// `Received:` lines in the header so far (loop detection).
    hops: HopCounter,
}

/// A BDAT chunk being consumed: its octets are always read as data, never
/// as commands, whether or not they are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chunk {
    size: u64,
    remaining: u64,
    last: bool,
    /// False for a refused BDAT: the octets are thrown away.
    keep: bool,
}

impl ServerSession {
    /// Answers [`Event::MessageStart`] with the octets already written
    /// (the `Received` line; they count towards the size limit), or
    /// refuses the message with a reply (451 if the content file could not
    /// be made).
    pub fn answer_message_start(&mut self, result: Result<u64, Reply>) {
        let Some(Waiting::MessageStart { first_chunk }) = self.waiting else {
            return;
        };
        self.waiting = None;
        self.data = DataPhase::default();
        match (result, first_chunk) {
            (Ok(written), None) => {
                self.add_size(written);
                self.state = State::Data;
                self.reply(354, "start mail input -- end with <CRLF>.<CRLF>");
            }
            (Ok(written), Some((size, last))) => {
                self.add_size(written);
                self.state = State::Bdat;
                self.start_chunk(size, last, true);
            }
            (Err(reply), chunk) => {
                self.send(&reply);
                self.abort_transaction();
                self.state = State::Ready;
                if let Some((size, last)) = chunk {
                    self.start_chunk(size, last, false);
                }
            }
        }
        self.process();
    }

    pub(super) fn data_command(&mut self) {
        let binary = self.transaction.params.body == Body::BinaryMime;
        match self.state {
            // RFC 3030 section 3: a BINARYMIME message goes by BDAT only.
            State::Mail | State::Rcpt if binary => {
                self.reply(
                    503,
                    "invalid data command with binarymime -- use RSET to resynchronise",
                );
                self.abort_transaction();
                self.state = State::MustReset;
                self.protocol_error();
            }
            State::Rcpt => {
                self.events.push_back(Event::MessageStart);
                self.waiting = Some(Waiting::MessageStart { first_chunk: None });
            }
            State::Mail => self.no_recipients(),
            _ => self.out_of_sequence(),
        }
    }

    /// BDAT, with CHUNKING on (otherwise it is an unknown command).
    pub(super) fn bdat(&mut self, size: Option<u64>, last: bool) {
        match self.state {
            State::Rcpt | State::Bdat => {
                // E-MailRelay compatibility: an empty chunk that is not the
                // last is refused like a size that does not parse.
                let Some(size) = size.filter(|&s| s > 0 || last) else {
                    self.reply(501, "invalid argument");
                    self.abort_transaction();
                    self.state = State::MustReset;
                    return;
                };
                if self.state == State::Bdat {
                    return self.start_chunk(size, last, true);
                }
                self.events.push_back(Event::MessageStart);
                self.waiting = Some(Waiting::MessageStart {
                    first_chunk: Some((size, last)),
                });
            }
            State::Mail => {
                self.no_recipients();
                self.refuse_chunk(size, last);
            }
            State::Ready => {
                self.reply(503, "command out of sequence -- use RSET to resynchronise");
                self.state = State::MustReset;
                self.refuse_chunk(size, last);
                self.protocol_error();
            }
            _ => {
                self.refuse_chunk(size, last);
                self.out_of_sequence();
            }
        }
    }

    /// DATA or BDAT after MAIL but no accepted RCPT.
    fn no_recipients(&mut self) {
        self.reply(554, "no valid recipients");
        self.abort_transaction();
        self.state = State::Ready;
    }

    /// The octets of a refused BDAT are read and dropped.
    fn refuse_chunk(&mut self, size: Option<u64>, last: bool) {
        if let Some(size) = size.filter(|&s| s > 0) {
            self.start_chunk(size, last, false);
        }
    }

    fn start_chunk(&mut self, size: u64, last: bool, keep: bool) {
        self.chunk = Some(Chunk {
            size,
            remaining: size,
            last,
            keep,
        });
        if keep {
            self.add_size(size);
        }
        if size == 0 {
            self.end_chunk();
        }
    }

    /// Takes as many of the chunk's octets as have arrived.
    pub(super) fn consume_chunk(&mut self) -> bool {
        let Some(mut chunk) = self.chunk else {
            return false;
        };
        let n = self
            .input
            .len()
            .min(usize::try_from(chunk.remaining).unwrap_or(usize::MAX));
        if n == 0 && chunk.remaining > 0 {
            return false;
        }
        if chunk.keep && !self.data.too_large {
            self.data.hops.handle_text(&self.input[..n]);
            self.data.chunk.extend_from_slice(&self.input[..n]);
            if self.data.chunk.len() >= DATA_CHUNK {
                self.flush_data();
            }
        }
        self.input.drain(..n);
        chunk.remaining -= n as u64;
        self.chunk = Some(chunk);
        if chunk.remaining == 0 {
            self.end_chunk();
        }
        true
    }

    fn end_chunk(&mut self) {
        let Some(chunk) = self.chunk.take() else {
            return;
        };
        if !chunk.keep {
            return;
        }
        self.flush_data();
        if chunk.last {
            self.finish_message();
        } else {
            self.reply(250, &format!("{} bytes received", chunk.size));
        }
    }

    // ---- DATA ----

    pub(super) fn process_data(&mut self) -> bool {
        if self.data.in_long_line {
            return self.continue_long_line();
        }
        match scan_line(&self.input, MAX_TEXT_LINE, Terminator::CrLf) {
            Scan::Incomplete => false,
            Scan::Overflow => {
                // E-MailRelay compatibility: accepted, and passed on as it came.
                self.data.in_long_line = true;
                let keep = partial_terminator(&self.input[..MAX_TEXT_LINE], Terminator::CrLf);
                self.data.long_line = MAX_TEXT_LINE - keep;
                self.take_text(MAX_TEXT_LINE - keep, true);
                true
            }
            Scan::Line { content, total } => {
                if &self.input[..content] == b"." {
                    self.input.drain(..total);
                    self.end_of_data();
                } else {
                    self.take_text(total, true);
                }
                true
            }
        }
    }

    /// The rest of a long line: everything up to and including its CRLF.
    fn continue_long_line(&mut self) -> bool {
        match skip_to_terminator(&self.input, Terminator::CrLf) {
            Some(n) => {
                self.take_text(n, false);
                self.data.in_long_line = false;
                let length = mem::take(&mut self.data.long_line) + n - 2;
                self.warn_long_line(length);
                true
            }
            None => {
                let keep = partial_terminator(&self.input, Terminator::CrLf);
                let n = self.input.len() - keep;
                if n > 0 {
                    self.data.long_line += n;
                    self.take_text(n, false);
                }
                false
            }
        }
    }

    /// Moves `total` octets of text into the chunk; at the start of a line
    /// the stuffed dot is removed (RFC 5321 section 4.5.2).
    fn take_text(&mut self, total: usize, line_start: bool) {
        let start = usize::from(line_start && self.input[0] == b'.');
        self.add_size((total - start) as u64);
        if !self.data.too_large {
            self.data.hops.handle_text(&self.input[start..total]);
            self.data.chunk.extend_from_slice(&self.input[start..total]);
        }
        self.input.drain(..total);
        if self.data.chunk.len() >= DATA_CHUNK {
            self.flush_data();
        }
    }

    /// Counts content octets; E-MailRelay compatibility: a message of
    /// exactly `--size` octets is already too large.
    fn add_size(&mut self, n: u64) {
        self.data.size = self.data.size.saturating_add(n);
        let max = self.config.max_size;
        if max > 0 && self.data.size >= max {
            self.data.too_large = true;
            self.data.chunk.clear();
        }
    }

    /// The `Received:` count when it is over `max_hops` (0: no limit).
    fn too_many_hops(&self) -> Option<usize> {
        let hops = self.data.hops.count();
        (self.config.max_hops > 0 && hops > self.config.max_hops).then_some(hops)
    }

    pub(super) fn flush_data(&mut self) {
        if !self.data.chunk.is_empty() {
            self.events
                .push_back(Event::MessageData(mem::take(&mut self.data.chunk)));
        }
    }

    fn end_of_data(&mut self) {
        self.flush_data();
        self.trace_line("rx<<: [message content not logged]".into());
        self.trace_line("rx<<: \".\"".into());
        self.finish_message();
    }

    /// The end of DATA or the LAST chunk: too large, or over to the driver.
    fn finish_message(&mut self) {
        self.state = State::Ready;
        if self.data.too_large {
            self.log
                .push(LogLine::Warning("message content too big".into()));
            self.reply(552, "message size exceeds fixed maximum message size");
            self.abort_transaction();
        } else if let Some(hops) = self.too_many_hops() {
            // Not in E-MailRelay 2.6.1, which relays a looping message for ever.
            self.log.push(LogLine::Warning(format!(
                "message refused: {hops} Received lines, more than {}: a mail loop?",
                self.config.max_hops
            )));
            self.reply(
                554,
                &format!("too many hops: {hops} Received header lines (mail loop?)"),
            );
            self.abort_transaction();
        } else {
            self.events.push_back(Event::MessageEnd);
            self.waiting = Some(Waiting::MessageEnd);
        }
    }
}
