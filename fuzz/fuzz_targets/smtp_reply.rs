//! Arbitrary server output, cut into lines as the client session cuts it
//! (LF with an optional CR, 4096 bytes at most), through the reply
//! parser (RFC 5321 section 4.2). It must never panic, no reply may hold
//! more than `MAX_REPLY_LINES` lines or a code outside 200-599, and every
//! reply it completes must come back unchanged from its own wire form
//! (`Reply::write_to`) read by a fresh parser.
#![no_main]
use emailrelay_proto::line::{scan_line, skip_to_terminator, Scan, Terminator};
use emailrelay_proto::smtp::reply::{ReplyLine, ReplyParser, MAX_REPLY_LINES};
use emailrelay_proto::smtp::Reply;
use libfuzzer_sys::fuzz_target;

const MAX_REPLY_LINE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut parser = ReplyParser::default();
    for line in lines(data) {
        if let ReplyLine::Complete(reply) = parser.handle_line(&line) {
            assert!((200..600).contains(&reply.code));
            assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
            assert_eq!(reparse(&reply), reply);
        }
    }
});

/// The reply written out and read back by a fresh parser: every line but
/// the last must be a continuation.
fn reparse(reply: &Reply) -> Reply {
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    assert!(wire.ends_with(b"\r\n"));
    // Not `lines`: replacement characters may have made a line longer
    // than the limit, and the wire form is ours, not a peer's.
    let mut lines: Vec<&[u8]> = wire[..wire.len() - 1]
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").expect("CRLF only"))
        .collect();
    let mut parser = ReplyParser::default();
    let last = lines.pop().expect("at least one line");
    for line in &lines {
        assert_eq!(parser.handle_line(line), ReplyLine::More);
    }
    match parser.handle_line(&last) {
        ReplyLine::Complete(again) => again,
        other => panic!("last line gave {other:?}"),
    }
}

/// Lines without their terminators, as `ClientSession::handle_input` scans
/// them; an overlong line is skipped (the session would fail instead).
fn lines(data: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut rest = data;
    std::iter::from_fn(move || loop {
        match scan_line(rest, MAX_REPLY_LINE, Terminator::Lf) {
            Scan::Line { content, total } => {
                let line = rest[..content].to_vec();
                rest = &rest[total..];
                return Some(line);
            }
            Scan::Overflow => {
                let skip = skip_to_terminator(rest, Terminator::Lf)?;
                rest = &rest[skip..];
            }
            Scan::Incomplete => {
                // The unterminated tail, as if the peer closed after it.
                if rest.is_empty() {
                    return None;
                }
                let line = rest.to_vec();
                rest = &[];
                return Some(line);
            }
        }
    })
}
