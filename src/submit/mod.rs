//! `emailrelay-submit`: writes a message (or one per Bcc recipient) into
//! the spool directory, option for option as E-MailRelay 2.6.1's tool
//! does: envelope recipients from the command line, else from the To, Cc
//! and Bcc header fields; the sender from `--from`, else from From or
//! Sender; content from standard input, `--input-file` and `--content`
//! lines, with the `--content-*` header edits.
//!
//! Every message is durable before its path is printed: content and
//! envelope fsynced, the envelope renamed to its final name and the
//! directory fsynced (`store::NewMessage::commit_now`). A message not yet
//! committed is removed on any error and on SIGINT, SIGTERM or SIGHUP
//! ([`remove_on_signal`]), so nothing half-written is left behind.
//!
//! Must not talk SMTP: the relay picks the files up like any other.

mod address;
mod content;
mod idn;
mod lex;
pub mod options;
mod spool;

use std::io::{BufRead, Write};
use std::sync::Arc;

pub use options::{help_text, request, Request, Show, SubmitRequest, OPTIONS};
pub use spool::Pending;

use crate::codec::base64_decode_strict;
use crate::store::{Envelope, SpoolFile};
use address::{style, Style};
use content::{HeaderRecipients, Lines, Part};

/// Why a submission failed: each is printed after the program name, and
/// the exit code is 1.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Option syntax errors, one line each (`error: ...`).
    #[error("option errors")]
    Usage(Vec<Vec<u8>>),
    /// `--input-file` cannot be opened.
    #[error("cannot open input file [{0}]")]
    InputFile(String),
    /// Standard input or the input file failed part-way. (2.6.1 would
    /// submit what it had read; a truncated message is worse than none.)
    #[error("cannot read input: {0}")]
    Read(String),
    /// A `--content` value is not base64.
    #[error("base64 encoding error")]
    Base64,
    /// A header's addresses cannot be read.
    #[error("{0}")]
    Header(#[from] address::ParseError),
    /// `--content-to` with no recipients.
    #[error("content-to option used but no envelope-to addresses have been defined")]
    ContentToWithoutRecipients,
    /// The spool directory cannot be used.
    #[error("invalid spool directory{0}")]
    SpoolDir(String),
    /// An envelope address 2.6.1 would refuse; `kind` is `sender`,
    /// `recipient`, `bcc` or `bcc-recipient`.
    #[error("invalid {kind} address: [{address}]")]
    Address { kind: &'static str, address: String },
    /// Writing the message failed; nothing of it is left.
    #[error("message store error: {0}")]
    Store(String),
}

/// Where the submission reads and writes, so tests can supply their own.
pub struct Io<'a> {
    pub stdin: &'a mut dyn BufRead,
    /// True if standard input is a terminal: then a line holding only a
    /// dot ends the body, as in 2.6.1.
    pub stdin_is_tty: bool,
    pub stdout: &'a mut dyn Write,
    /// Where `--debug` lines go.
    pub stderr: &'a mut dyn Write,
    /// The program name that starts `--debug` lines.
    pub program: &'a str,
    /// Files to remove if a signal ends the process.
    pub pending: &'a Pending,
}

/// Submits; returns the ids written, in order.
pub fn submit(request: &SubmitRequest, io: &mut Io) -> Result<Vec<String>, SubmitError> {
    let mut log = Log {
        out: &mut *io.stderr,
        program: io.program,
        level: request.debug,
    };
    let mut input_file = match &request.input_file {
        Some(path) => Some(open_input(path)?),
        None => None,
    };
    let reads_input = request.read_stdin || input_file.is_some();
    let stream: &mut dyn BufRead = match input_file.as_mut() {
        Some(file) => file,
        None => &mut *io.stdin,
    };
    let (mut lines, body_words) = header_lines(request, reads_input, stream)?;
    let mut from = request.from.clone();
    if from.is_empty() {
        from = lines.sender()?;
        log.line(&[b"submit: content: from/sender: [", &from, b"]"]);
    }
    let recipients = recipients(request, &lines, &mut log)?;
    edit_headers(request, &from, &recipients.to, &mut lines, &mut log)?;
    for word in body_words {
        lines.0.push(decode_line(word)?);
    }
    let spool = spool::open(&request.spool_dir)?;
    let parts = parts(request, &recipients);
    let mut messages = Vec::with_capacity(parts.len());
    for part in &parts {
        let envelope = envelope(request, &from, &recipients, part)?;
        let mut message = spool::Message::create(&spool, envelope, io.pending)?;
        let name = message.content_name();
        log.file_line(&[
            b"GStore::NewFile: new content file [",
            name.as_bytes(),
            b"]",
        ]);
        for line in lines.for_part(part) {
            message.write_line(&line)?;
        }
        messages.push(message);
    }
    if reads_input {
        copy_body(stream, io.stdin_is_tty, &mut messages)?;
    }
    let mut ids = Vec::with_capacity(messages.len());
    for message in messages {
        let name = message.envelope_new_name();
        log.file_line(&[
            b"GStore::NewFile: new envelope file [",
            name.as_bytes(),
            b"]",
        ]);
        let id = message.commit(request.copy, io.pending)?;
        match request.show {
            Show::Path => {
                let _ = writeln!(
                    io.stdout,
                    "{}",
                    spool.display_path(&id.file_name(SpoolFile::Content))
                );
            }
            Show::Name => {
                let _ = writeln!(io.stdout, "{}", id.file_name(SpoolFile::Content));
            }
            Show::Nothing => {}
        }
        let _ = io.stdout.flush();
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// Prints a failure the way 2.6.1 does; returns the exit code.
pub fn report(program: &str, error: &SubmitError, stderr: &mut dyn Write) -> u8 {
    match error {
        SubmitError::Usage(lines) => {
            for line in lines {
                let _ = stderr.write_all(format!("{program}: error: ").as_bytes());
                let _ = stderr.write_all(line);
                let _ = stderr.write_all(b"\n");
            }
            // E-MailRelay 2.6.1 exits 0 here, having submitted nothing; a
            // caller must not take that for success (docs/compatibility.md).
            1
        }
        other => {
            let _ = writeln!(stderr, "{program}: {other}");
            1
        }
    }
}

/// On an interrupt (SIGINT, SIGTERM, SIGHUP; Ctrl-C on Windows), removes
/// the files of messages not yet committed (waiting for a commit under way
/// to finish) and then lets the interrupt end the process as it would have
/// (see `platform::signals::on_interrupt`).
pub fn remove_on_signal(pending: Arc<Pending>) -> std::io::Result<()> {
    crate::platform::signals::on_interrupt(move || pending.remove_all())
}

/// Opens `--input-file` with the caller's own permissions: a set-group-id
/// (or set-user-id) install must not read files for its caller that only
/// the spool group may read. (2.6.1 opens it with the borrowed ones.)
fn open_input(path: &[u8]) -> Result<Box<dyn BufRead>, SubmitError> {
    let shown = spool::normalise(path);
    let file = crate::platform::process::as_caller(|| std::fs::File::open(spool::os_path(path)))
        .map_err(|_| SubmitError::InputFile(String::from_utf8_lossy(&shown).into_owned()))?;
    Ok(Box::new(std::io::BufReader::new(file)))
}

/// The header lines: `--content` lines up to the first blank one, then
/// the input's up to its first blank line (unless `--body`). Returns the
/// `--content` words left for the body.
fn header_lines<'r>(
    request: &'r SubmitRequest,
    reads_input: bool,
    stream: &mut dyn BufRead,
) -> Result<(Lines, &'r [Vec<u8>]), SubmitError> {
    let mut lines = Lines::default();
    let mut rest = &request.content[..];
    while let Some((word, tail)) = rest.split_first() {
        let line = decode_line(word)?;
        if line.is_empty() {
            break;
        }
        lines.0.push(line);
        rest = tail;
    }
    if reads_input && !request.body {
        while let Some(line) = read_line(stream)? {
            if line.is_empty() {
                break;
            }
            lines.0.push(line);
        }
    }
    Ok((lines, rest))
}

/// A `--content` word as a line: one character or none is a blank line.
fn decode_line(word: &[u8]) -> Result<Vec<u8>, SubmitError> {
    if word.len() <= 1 {
        return Ok(Vec::new());
    }
    base64_decode_strict(word).map_err(|_| SubmitError::Base64)
}

/// One line without its LF and at most one CR; `None` at the end.
fn read_line(stream: &mut dyn BufRead) -> Result<Option<Vec<u8>>, SubmitError> {
    let mut line = Vec::new();
    let read = stream.read_until(b'\n', &mut line);
    if read.map_err(|e| SubmitError::Read(spool::strerror(&e)))? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// The command line's recipients (`\` taken off the front of each), or
/// if there are none the header fields'.
fn recipients(
    request: &SubmitRequest,
    lines: &Lines,
    log: &mut Log,
) -> Result<HeaderRecipients, SubmitError> {
    let given: Vec<Vec<u8>> = request
        .to
        .iter()
        .map(|to| to.strip_prefix(b"\\").unwrap_or(to).to_vec())
        .collect();
    if !given.is_empty() {
        return Ok(HeaderRecipients {
            to: given,
            ..HeaderRecipients::default()
        });
    }
    let found = lines.recipients()?;
    log.line(&[b"submit: content: to/cc: [", &found.to.join(&b','), b"]"]);
    log.line(&[b"submit: content: bcc: [", &found.bcc.join(&b','), b"]"]);
    Ok(found)
}

/// `--content-date`, `--content-message-id`, `--content-from` and
/// `--content-to`, each putting its field first.
fn edit_headers(
    request: &SubmitRequest,
    from: &[u8],
    to: &[Vec<u8>],
    lines: &mut Lines,
    log: &mut Log,
) -> Result<(), SubmitError> {
    if request.content_date && !lines.has(b"Date") {
        lines.insert_first(date_field().into_bytes());
    }
    if let Some(domain) = request
        .message_id
        .as_ref()
        .filter(|_| !lines.has(b"Message-ID"))
    {
        let field = [message_id_field().as_bytes(), domain, b">"].concat();
        log.line(&[b"submit: added: message-id: [", &field, b"]"]);
        lines.insert_first(field);
    }
    if request.content_from {
        lines.truncate_at_first(&[b"From", b"Sender"]);
        let from: &[u8] = if from.is_empty() {
            b"anonymous:;"
        } else {
            from
        };
        log.line(&[b"submit: added: from: [", from, b"]"]);
        lines.insert_first([b"From: ", from].concat());
    }
    if request.content_to {
        if to.is_empty() {
            return Err(SubmitError::ContentToWithoutRecipients);
        }
        lines.truncate_at_first(&[b"To", b"cc", b"bcc"]);
        let list = to.join(&b',');
        log.line(&[b"submit: added: to: [", &list, b"]"]);
        lines.insert_first([&b"To: "[..], &list].concat());
    }
    Ok(())
}

/// `Date: 26 Nov 2026 04:33:40 +0000`, local time, as 2.6.1 writes it
/// (no day of the week).
fn date_field() -> String {
    use chrono::Offset;
    let now = chrono::Local::now();
    let offset = now.offset().fix().local_minus_utc();
    let seconds = offset.unsigned_abs() + 30;
    let (hh, mm) = (seconds / 3600, (seconds / 60) % 60);
    let sign = if offset >= 0 || (hh == 0 && mm == 0) {
        '+'
    } else {
        '-'
    };
    format!(
        "Date: {} {sign}{hh:02}{mm:02}",
        now.format("%d %b %Y %H:%M:%S")
    )
}

/// `Message-ID: <seconds.microseconds.pid@`, the domain and `>` to follow.
fn message_id_field() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "Message-ID: <{}.{:06}.{}@",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    )
}

/// One message, or with `--bcc-split` and two or more Bcc recipients one
/// for To and Cc and one per Bcc recipient (RFC 5322 section 3.6.3).
fn parts(request: &SubmitRequest, recipients: &HeaderRecipients) -> Vec<Part> {
    if !request.bcc_split || recipients.bcc.len() <= 1 {
        return vec![Part::All];
    }
    let mut parts = vec![Part::ToAndCc];
    for (address, text) in recipients.bcc.iter().zip(&recipients.bcc_text) {
        parts.push(Part::OneBcc(address.clone(), text.clone()));
    }
    parts
}

/// The envelope of one part, every address checked as 2.6.1 checks it.
fn envelope(
    request: &SubmitRequest,
    from: &[u8],
    recipients: &HeaderRecipients,
    part: &Part,
) -> Result<Envelope, SubmitError> {
    let from: &[u8] = if from.is_empty() { b"anonymous" } else { from };
    let mut utf8 = checked(from, "sender")? == Style::Utf8Mailbox;
    let mut to_remote = Vec::new();
    let mut add = |address: &[u8], kind: &'static str| -> Result<(), SubmitError> {
        utf8 |= checked(address, kind)? == Style::Utf8Mailbox;
        to_remote.push(text(address));
        Ok(())
    };
    match part {
        Part::All | Part::ToAndCc => {
            for to in &recipients.to {
                add(to, "recipient")?;
            }
        }
        Part::OneBcc(bcc, _) => add(bcc, "bcc")?,
    }
    if *part == Part::All {
        for bcc in &recipients.bcc {
            add(bcc, "bcc-recipient")?;
        }
    }
    Ok(Envelope {
        from: text(from),
        to_remote,
        client: "127.0.0.1".into(),
        mail_from_auth_in: request.from_auth_in.as_ref().map(|v| text(v)),
        mail_from_auth_out: request.from_auth_out.clone().unwrap_or_default(),
        utf8_mailbox_names: utf8,
        ..Envelope::default()
    })
}

fn checked(address: &[u8], kind: &'static str) -> Result<Style, SubmitError> {
    style(address).ok_or_else(|| SubmitError::Address {
        kind,
        address: emailrelay_proto::printable::printable_lossy(address),
    })
}

/// Envelope text. Checked addresses are UTF-8; an `--from-auth-in` name
/// that is not is written as its lossy conversion.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The rest of the input, line by line, into every message.
fn copy_body(
    stream: &mut dyn BufRead,
    stdin_is_tty: bool,
    messages: &mut [spool::Message],
) -> Result<(), SubmitError> {
    while let Some(line) = read_line(stream)? {
        if stdin_is_tty && line == b"." {
            break;
        }
        for message in messages.iter_mut() {
            message.write_line(&line)?;
        }
    }
    Ok(())
}

/// `--debug` lines on standard error.
struct Log<'a> {
    out: &'a mut dyn Write,
    program: &'a str,
    /// How many `--debug` words were given.
    level: u8,
}

impl Log<'_> {
    /// A line for one `--debug` or more.
    fn line(&mut self, parts: &[&[u8]]) {
        self.write(1, parts);
    }

    /// A line for two `--debug`s.
    fn file_line(&mut self, parts: &[&[u8]]) {
        self.write(2, parts);
    }

    fn write(&mut self, level: u8, parts: &[&[u8]]) {
        if self.level >= level {
            let _ = self.out.write_all(format!("{}: ", self.program).as_bytes());
            let _ = self.out.write_all(&parts.concat());
            let _ = self.out.write_all(b"\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `args` with `input` against a spool in a fresh directory;
    /// returns the directory, the result and what was printed.
    fn run(
        args: &[&str],
        input: &mut dyn BufRead,
        tty: bool,
    ) -> (tempfile::TempDir, Result<Vec<String>, SubmitError>, String) {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("s");
        std::fs::create_dir(&spool).unwrap();
        let mut argv = vec![
            b"-s".to_vec(),
            spool.as_os_str().as_encoded_bytes().to_vec(),
        ];
        argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        let Ok(Request::Submit(request)) = request(&argv, std::path::Path::new("/"), "/none")
        else {
            panic!("not a submission");
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let pending = Pending::default();
        let mut io = Io {
            stdin: input,
            stdin_is_tty: tty,
            stdout: &mut out,
            stderr: &mut err,
            program: "test",
            pending: &pending,
        };
        let result = submit(&request, &mut io);
        (dir, result, String::from_utf8_lossy(&out).into_owned())
    }

    fn content(dir: &tempfile::TempDir, id: &str) -> String {
        std::fs::read_to_string(dir.path().join("s").join(format!("{id}.content"))).unwrap()
    }

    #[test]
    fn a_dot_line_ends_the_body_only_at_a_terminal() {
        let input = "Subject: s\n\none\n.\ntwo\n";
        let (dir, ids, _) = run(&["r@x"], &mut input.as_bytes(), true);
        let ids = ids.unwrap();
        assert_eq!(content(&dir, &ids[0]), "Subject: s\r\n\r\none\r\n");
        let (dir, ids, _) = run(&["r@x"], &mut input.as_bytes(), false);
        assert_eq!(
            content(&dir, &ids.unwrap()[0]),
            "Subject: s\r\n\r\none\r\n.\r\ntwo\r\n"
        );
    }

    /// Input that fails after its first read.
    struct Failing(bool);

    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if std::mem::replace(&mut self.0, true) {
                return Err(std::io::Error::other("input/output error"));
            }
            buf[..14].copy_from_slice(b"Sub: s\n\nbody\nb");
            Ok(14)
        }
    }

    #[test]
    fn a_failed_read_leaves_no_message() {
        let mut input = std::io::BufReader::new(Failing(false));
        let (dir, result, out) = run(&["-n", "r@x"], &mut input, false);
        assert_eq!(
            result.unwrap_err().to_string(),
            "cannot read input: input/output error"
        );
        assert_eq!(out, "");
        assert_eq!(std::fs::read_dir(dir.path().join("s")).unwrap().count(), 0);
    }

    #[test]
    fn printed_paths_follow_the_commits() {
        let input = &mut &b"Bcc: a@x, b@y\n\nbody\n"[..];
        let (dir, ids, out) = run(&["-v", "--bcc-split"], input, false);
        let ids = ids.unwrap();
        assert_eq!(ids.len(), 3);
        let spool = dir.path().join("s");
        let want: String = ids
            .iter()
            .map(|id| {
                let separator = char::from(crate::platform::files::SEPARATOR);
                format!("{}{separator}{id}.content\n", spool.display())
            })
            .collect();
        assert_eq!(out, want);
    }
}
