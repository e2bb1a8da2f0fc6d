//! Arbitrary admin-port input, cut into lines the way the driver reads them
//! (at LF, at most 4096 bytes each), through `AdminCommand::parse` and the
//! reply writer. Besides never panicking, the parse must not depend on
//! the case of the line or on the blanks around it, `--admin-terminate`
//! may change nothing but `terminate`, and every reply must end with the
//! prompt and use only the client's line ending.
#![no_main]
use emailrelay_proto::admin::{line_ending, reply, AdminCommand, PROMPT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for raw in lines(data) {
        let eol = line_ending(raw);
        let text = String::from_utf8_lossy(raw);
        let line = text.trim_end_matches(['\r', '\n']);
        let command = AdminCommand::parse(line, false);
        assert_eq!(
            command,
            AdminCommand::parse(&line.to_ascii_uppercase(), false)
        );
        assert_eq!(
            command,
            AdminCommand::parse(&line.to_ascii_lowercase(), false)
        );
        assert_eq!(command, AdminCommand::parse(&format!(" \t{line} "), false));
        match AdminCommand::parse(line, true) {
            AdminCommand::Terminate => assert_eq!(command, AdminCommand::Unrecognised),
            other => assert_eq!(command, other),
        }
        check_reply(&reply(line, eol), eol);
    }
    // Answers with several lines (`list`, `status`) may hold anything.
    let text = String::from_utf8_lossy(data);
    check_reply(&reply(&text, "\r\n"), "\r\n");
    check_reply(&reply(&text, "\n"), "\n");
});

/// The driver's lines: up to and including each LF, at most 4096 bytes.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let window = &rest[..rest.len().min(4096)];
        let end = window
            .iter()
            .position(|&b| b == b'\n')
            .map_or(window.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

fn check_reply(out: &str, eol: &str) {
    assert!(out.ends_with(PROMPT));
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('\n') {
        if eol == "\r\n" {
            assert!(i > 0 && bytes[i - 1] == b'\r', "a bare LF in a CRLF reply");
        }
    }
}
