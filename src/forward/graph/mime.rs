//! The top-level structure of a spooled message, for a message too large
//! for one `sendMail`: which parts of a `multipart/*` message (RFC 2046
//! section 5.1) are attachments that can leave the MIME text and go to
//! Graph on their own, and the draft that is left.
//!
//! ```text
//!   TopHeader --blank line--> Body (multipart: the preamble) | Single (not)
//!   Body --"--b"--> PartHeader --blank--> Body --"--b"--> PartHeader
//!                                         Body --"--b--"--> Epilogue (or, nested, Body)
//! ```
//!
//! The scanner is fed the content a line (or a slice of a long line) at a
//! time with its offset, so that the caller streams the file and nothing
//! here holds more than a header. Parts of multiparts nested in parts
//! (to a depth of 8) are found too, so an attachment inside a
//! `multipart/related` or a forwarded `multipart/mixed` can leave as well.
//!
//! Must not do I/O; must not decide anything from a part's text beyond
//! its header and the validity and length of its base64.

use std::ops::Range;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::bcc::BccEdit;
use super::upload::QpDecoder;

/// The most of a header (the message's or a part's) that is read.
const MAX_HEADER: usize = 256 * 1024;

/// How a part's body is encoded (RFC 2045 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `base64`: decoded on the way out.
    Base64,
    /// `7bit`, `8bit`, `binary` or none: the bytes as they are.
    Identity,
    /// `quoted-printable`: decoded on the way out (`upload::QpDecoder`).
    QuotedPrintable,
    /// Unknown: stays in the draft.
    Other,
}

/// One outermost part of a multipart message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// From its delimiter line to the next one: what leaves the draft.
    pub span: Range<u64>,
    /// Its body, without the line ending that belongs to the next delimiter.
    pub body: Range<u64>,
    pub encoding: Encoding,
    /// `type/subtype`, lower case (`application/octet-stream` if none).
    pub content_type: String,
    /// The file name (`filename` or `name`), if any.
    pub name: Option<String>,
    /// `Content-ID` without its angle brackets.
    pub content_id: Option<String>,
    /// `Content-Disposition: inline`.
    pub inline: bool,
    /// `Content-Disposition: attachment`.
    pub attachment: bool,
    /// Its size decoded.
    pub decoded: u64,
    /// Base64 that decodes (alphabet, padding only at the end, whole
    /// quads); quoted-printable with no line over `upload::MAX_QP_LINE`.
    pub valid: bool,
    /// The multipart it is a part of (an index into
    /// `Structure::multiparts`; 0 is the message's own).
    pub parent: usize,
}

impl Part {
    /// Whether it can go to Graph as a file attachment: a file (named,
    /// an attachment, or an inline part with a Content-ID), not a
    /// multipart or message, in an encoding that decodes here.
    pub fn detachable(&self) -> bool {
        let file = self.attachment || self.name.is_some() || self.content_id.is_some();
        let container = self.content_type.starts_with("multipart/")
            || self.content_type.starts_with("message/");
        file && !container && self.valid && self.encoding != Encoding::Other
    }

    /// The name Graph shows.
    pub fn file_name(&self) -> &str {
        self.name.as_deref().unwrap_or("attachment")
    }
}

/// What the scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Structure {
    /// The boundary of a multipart message.
    pub boundary: Option<String>,
    /// The boundaries of the message's multiparts, its own first, then
    /// those nested in its parts as they come.
    pub multiparts: Vec<String>,
    /// The parts of all of them, each as it ends (a nested multipart's
    /// parts before the part that holds them).
    pub parts: Vec<Part>,
    /// The line ending the message uses (`\r\n` or `\n`).
    pub eol: &'static str,
}

/// A piece of the draft: bytes of the content file, or text put in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    File(Range<u64>),
    Text(Vec<u8>),
}

/// The parts to take out (indexes into `structure.parts`) so that the
/// draft is at most `budget` octets: the largest detachable ones first,
/// as few as will do. `raw` is the message's size with its Bcc edit.
/// `Err` says why no choice fits.
pub fn plan(structure: &Structure, raw: u64, budget: u64) -> Result<Vec<usize>, String> {
    let mut order: Vec<usize> = (0..structure.parts.len())
        .filter(|&i| structure.parts[i].detachable())
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(span_len(&structure.parts[i])));
    let mut size = raw;
    let mut cut = Vec::new();
    for i in order {
        if size <= budget {
            break;
        }
        size -= span_len(&structure.parts[i]);
        cut.push(i);
    }
    for id in emptied(structure, &cut) {
        size += placeholder(structure, id).len() as u64;
    }
    if size > budget {
        let why = match (&structure.boundary, cut.is_empty()) {
            (None, _) => "it is not multipart, so no attachment can go by upload session",
            (Some(_), true) => "it has no attachment that can go by upload session",
            (Some(_), false) => "its text without the attachments is still too large",
        };
        return Err(format!(
            "{size} octets left for the draft, over {budget}: {why}"
        ));
    }
    cut.sort_unstable();
    Ok(cut)
}

/// The draft: the content of `size` octets with the Bcc edit and without
/// the parts in `cut`; where every part of a multipart goes, an empty
/// text part keeps it well-formed (RFC 2046 requires one part).
pub fn draft_pieces(
    size: u64,
    bcc: Option<&BccEdit>,
    structure: &Structure,
    cut: &[usize],
) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut at = 0u64;
    if let Some(edit) = bcc {
        pieces.push(Piece::File(0..edit.at as u64));
        pieces.push(Piece::Text(edit.insert.clone()));
        at = edit.at as u64;
    }
    let emptied = emptied(structure, cut);
    let mut placed = Vec::new();
    let mut order = cut.to_vec();
    order.sort_by_key(|&i| structure.parts[i].span.start);
    for i in order {
        let part = &structure.parts[i];
        pieces.push(Piece::File(at..part.span.start));
        if emptied.contains(&part.parent) && !placed.contains(&part.parent) {
            placed.push(part.parent);
            pieces.push(Piece::Text(placeholder(structure, part.parent)));
        }
        at = part.span.end;
    }
    pieces.push(Piece::File(at..size));
    pieces.retain(|p| !matches!(p, Piece::File(r) if r.is_empty()));
    pieces
}

/// The draft's size.
pub fn pieces_len(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .map(|p| match p {
            Piece::File(r) => r.end - r.start,
            Piece::Text(t) => t.len() as u64,
        })
        .sum()
}

fn span_len(part: &Part) -> u64 {
    part.span.end - part.span.start
}

/// The multiparts (indexes into `Structure::multiparts`) all of whose
/// parts are in `cut`.
fn emptied(structure: &Structure, cut: &[usize]) -> Vec<usize> {
    (0..structure.multiparts.len())
        .filter(|&id| {
            let mut parts = (0..structure.parts.len()).filter(|&i| structure.parts[i].parent == id);
            let mut any = false;
            let all = parts.all(|i| {
                any = true;
                cut.contains(&i)
            });
            any && all
        })
        .collect()
}

/// An empty part with no header (so text/plain, RFC 2045 section 5.2)
/// for the multipart `id`.
fn placeholder(structure: &Structure, id: usize) -> Vec<u8> {
    let eol = structure.eol;
    let boundary = structure.multiparts.get(id).map_or("", String::as_str);
    format!("--{boundary}{eol}{eol}{eol}").into_bytes()
}

/// What the scanner waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    TopHeader,
    Single,
    PartHeader,
    /// A part's body, or a multipart's preamble or (nested) epilogue.
    Body,
    Epilogue,
}

/// Nested multiparts deeper than this are taken as they are.
const MAX_DEPTH: usize = 8;

/// A multipart being read: its index in `Structure::multiparts` and its
/// part open (span start, body start, header).
struct Frame {
    id: usize,
    open: Option<(u64, u64, PartHead)>,
}

/// The streaming scanner.
pub struct Scanner {
    state: State,
    header: Vec<u8>,
    structure: Structure,
    /// The multiparts open, outermost first.
    frames: Vec<Frame>,
    base64: Base64Count,
    /// A quoted-printable part's decoded size so far, or `None` once a
    /// line is too long to decode.
    qp: Option<(QpDecoder, u64)>,
    at_line_start: bool,
    /// The line ending length of the last whole line.
    last_eol: u64,
    eol_seen: bool,
    ended_with_cr: bool,
}

/// What a part's header says.
#[derive(Clone, Debug, Default)]
struct PartHead {
    encoding: Option<Encoding>,
    content_type: String,
    name: Option<String>,
    content_id: Option<String>,
    inline: bool,
    attachment: bool,
    /// A multipart's boundary.
    boundary: Option<String>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::TopHeader,
            header: Vec::new(),
            structure: Structure {
                eol: "\r\n",
                ..Structure::default()
            },
            frames: Vec::new(),
            base64: Base64Count::default(),
            qp: None,
            at_line_start: true,
            last_eol: 0,
            eol_seen: false,
            ended_with_cr: false,
        }
    }
}

impl Scanner {
    /// Feeds the content at `offset`: a whole line with its ending, or a
    /// slice of a longer one.
    pub fn handle_input(&mut self, offset: u64, bytes: &[u8]) {
        let line_start = self.at_line_start;
        let whole = bytes.ends_with(b"\n");
        self.at_line_start = whole;
        // A CR at the end of the slice before counts with this LF.
        let crlf = bytes.ends_with(b"\r\n") || (bytes == b"\n" && self.ended_with_cr);
        self.ended_with_cr = bytes.ends_with(b"\r");
        if whole && !self.eol_seen {
            self.eol_seen = true;
            if !crlf {
                self.structure.eol = "\n";
            }
        }
        let text = trim_eol(bytes);
        let blank = line_start && whole && text.is_empty();
        match self.state {
            State::TopHeader | State::PartHeader if blank => {
                self.header_done(offset + bytes.len() as u64)
            }
            State::TopHeader | State::PartHeader => {
                if self.header.len() + bytes.len() > MAX_HEADER {
                    // Too strange to take apart: the rest stays whole.
                    self.frames.clear();
                    self.state = State::Epilogue;
                } else {
                    self.header.extend_from_slice(bytes);
                }
            }
            State::Single | State::Epilogue => {}
            State::Body => {
                let delimiter = if line_start && whole {
                    self.delimiter(text)
                } else {
                    None
                };
                match delimiter {
                    Some((k, close)) => {
                        // Multiparts inside this one left open: their open
                        // parts are left out (they stay in the draft).
                        self.frames.truncate(k + 1);
                        self.close_part(offset);
                        if close {
                            self.frames.pop();
                            if self.frames.is_empty() {
                                self.state = State::Epilogue;
                            }
                        } else {
                            self.frames[k].open = Some((offset, 0, PartHead::default()));
                            self.state = State::PartHeader;
                        }
                    }
                    None => {
                        self.base64.handle(bytes);
                        self.count_qp(bytes);
                    }
                }
            }
        }
        if whole {
            self.last_eol = if crlf { 2 } else { 1 };
        }
    }

    /// The structure found; a part left open (no close delimiter) is
    /// left out, so it stays in the draft.
    pub fn finish(self) -> Structure {
        self.structure
    }

    fn header_done(&mut self, body_start: u64) {
        let header = std::mem::take(&mut self.header);
        let fields = fields(&header);
        if self.state == State::TopHeader {
            let boundary = fields
                .iter()
                .find(|(n, _)| n == "content-type")
                .and_then(|(_, v)| boundary_of(v));
            self.state = match &boundary {
                Some(b) => {
                    self.structure.multiparts.push(b.clone());
                    self.frames.push(Frame { id: 0, open: None });
                    State::Body
                }
                None => State::Single,
            };
            self.structure.boundary = boundary;
            return;
        }
        let head = part_head(&fields);
        let nested = head.boundary.clone().filter(|b| {
            self.frames.len() < MAX_DEPTH
                && !self
                    .frames
                    .iter()
                    .any(|f| &self.structure.multiparts[f.id] == b)
        });
        if let Some((_, body, open)) = self.frames.last_mut().and_then(|f| f.open.as_mut()) {
            *body = body_start;
            *open = head;
        }
        self.base64 = Base64Count::default();
        self.qp = Some((QpDecoder::default(), 0));
        self.state = State::Body;
        if let Some(boundary) = nested {
            let id = self.structure.multiparts.len();
            self.structure.multiparts.push(boundary);
            self.frames.push(Frame { id, open: None });
        }
    }

    /// Records the innermost multipart's open part, which ends at the
    /// delimiter line at `delimiter`.
    fn close_part(&mut self, delimiter: u64) {
        let Some(frame) = self.frames.last_mut() else {
            return;
        };
        let parent = frame.id;
        let Some((start, body_start, head)) = frame.open.take() else {
            return;
        };
        let body_end = delimiter.saturating_sub(self.last_eol).max(body_start);
        let encoding = head.encoding.unwrap_or(Encoding::Identity);
        let (decoded, valid) = match (encoding, self.qp.take()) {
            (Encoding::Base64, _) => self.base64.result(),
            (Encoding::QuotedPrintable, Some((mut decoder, count))) => {
                // The line break fed last is the delimiter's.
                decoder.finish_at_delimiter();
                (count, true)
            }
            (Encoding::QuotedPrintable, None) => (0, false),
            _ => (body_end - body_start, true),
        };
        self.structure.parts.push(Part {
            span: start..delimiter,
            body: body_start..body_end,
            encoding,
            content_type: head.content_type,
            name: head.name,
            content_id: head.content_id,
            inline: head.inline,
            attachment: head.attachment,
            decoded,
            valid,
            parent,
        });
    }

    /// Counts a quoted-printable part's body as it decodes.
    fn count_qp(&mut self, bytes: &[u8]) {
        let quoted = matches!(
            self.frames.last().and_then(|f| f.open.as_ref()),
            Some((_, _, head)) if head.encoding == Some(Encoding::QuotedPrintable)
        );
        if !quoted {
            return;
        }
        if let Some((decoder, count)) = &mut self.qp {
            let mut out = Vec::new();
            match decoder.handle_input(bytes, &mut out) {
                Ok(()) => *count += out.len() as u64,
                Err(_) => self.qp = None,
            }
        }
    }

    /// `Some((frame, close))` if `line` is a delimiter line of one of the
    /// open multiparts (the innermost first).
    fn delimiter(&self, line: &[u8]) -> Option<(usize, bool)> {
        let rest = line.strip_prefix(b"--")?;
        self.frames.iter().enumerate().rev().find_map(|(k, frame)| {
            let boundary = &self.structure.multiparts[frame.id];
            let rest = rest.strip_prefix(boundary.as_bytes())?;
            let (close, rest) = match rest.strip_prefix(b"--") {
                Some(rest) => (true, rest),
                None => (false, rest),
            };
            // Transport padding (RFC 2046 section 5.1.1): whitespace only.
            rest.iter()
                .all(|b| matches!(b, b' ' | b'\t'))
                .then_some((k, close))
        })
    }
}

/// A `multipart/*` Content-Type's boundary, as written: no decoding (RFC
/// 2046 section 5.1.1).
fn boundary_of(content_type: &str) -> Option<String> {
    let (kind, params) = parse_parameters(content_type);
    kind.starts_with("multipart/")
        .then(|| params.into_iter().find(|(n, _)| n == "boundary"))
        .flatten()
        .map(|(_, b)| b)
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// Counts a base64 body's decoded size and checks it decodes.
#[derive(Clone, Debug, Default)]
struct Base64Count {
    chars: u64,
    padding: u64,
    bad: bool,
}

impl Base64Count {
    fn handle(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => {
                    // Nothing may follow padding.
                    self.bad |= self.padding > 0;
                    self.chars += 1;
                }
                b'=' => {
                    self.padding += 1;
                    self.chars += 1;
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => self.bad = true,
            }
        }
    }

    /// (decoded size, valid).
    fn result(&self) -> (u64, bool) {
        let valid = !self.bad && self.chars % 4 == 0 && self.padding <= 2;
        ((self.chars / 4 * 3).saturating_sub(self.padding), valid)
    }
}

fn trim_eol(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// A header's fields, unfolded: (lower-case name, value).
fn fields(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

fn part_head(fields: &[(String, String)]) -> PartHead {
    let mut head = PartHead {
        content_type: "application/octet-stream".to_string(),
        ..PartHead::default()
    };
    let mut type_name = None;
    let mut file_name = None;
    for (name, value) in fields {
        match name.as_str() {
            "content-type" => {
                let (kind, params) = parse_parameters(value);
                if kind.contains('/') {
                    head.content_type = kind;
                }
                type_name = param(&params, "name");
                head.boundary = boundary_of(value);
            }
            "content-disposition" => {
                let (kind, params) = parse_parameters(value);
                head.inline = kind == "inline";
                head.attachment = kind == "attachment";
                file_name = param(&params, "filename");
            }
            "content-transfer-encoding" => {
                head.encoding = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "base64" => Encoding::Base64,
                    "7bit" | "8bit" | "binary" => Encoding::Identity,
                    "quoted-printable" => Encoding::QuotedPrintable,
                    _ => Encoding::Other,
                });
            }
            "content-id" => {
                let id = value.trim().trim_start_matches('<').trim_end_matches('>');
                head.content_id = (!id.is_empty()).then(|| id.to_string());
            }
            _ => {}
        }
    }
    head.name = file_name.or(type_name).filter(|n| !n.is_empty());
    head
}

/// `type/subtype; a=b; c="d"` as the lower-case first word and the
/// parameters as written (names lower case, quoted strings unquoted);
/// `param` decodes them.
fn parse_parameters(value: &str) -> (String, Vec<(String, String)>) {
    // Split at semicolons outside quoted strings, quotes kept.
    let mut items = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    let kind = items[0].trim().to_ascii_lowercase();
    let params = items[1..]
        .iter()
        .filter_map(|item| {
            let (name, value) = item.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), unquote(value.trim())))
        })
        .collect();
    (kind, params)
}

/// A quoted string's content (RFC 5322 section 3.2.4), or the text.
fn unquote(text: &str) -> String {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            _ => {
                out.push(c);
                escaped = false;
            }
        }
    }
    out
}

/// A parameter's value, decoded: RFC 2231's `name*=charset'lang'a%20b`
/// and its continuations `name*0*=`, `name*1=` (which win over a plain
/// `name=`, section 4), or a plain value with RFC 2047 encoded-words in
/// it (as some mail programs write file names, against the RFC).
fn param(params: &[(String, String)], name: &str) -> Option<String> {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if let Some(value) = get(&format!("{name}*")) {
        return Some(String::from_utf8_lossy(&percent_decode(without_charset(value))).into_owned());
    }
    let mut joined = Vec::new();
    let mut any = false;
    for i in 0..100 {
        if let Some(value) = get(&format!("{name}*{i}*")) {
            let value = if i == 0 {
                without_charset(value)
            } else {
                value
            };
            joined.extend(percent_decode(value));
        } else if let Some(value) = get(&format!("{name}*{i}")) {
            joined.extend_from_slice(value.as_bytes());
        } else {
            break;
        }
        any = true;
    }
    if any {
        return Some(String::from_utf8_lossy(&joined).into_owned());
    }
    get(name).map(decode_encoded_words)
}

/// `charset'lang'text` without its charset and language (any charset is
/// taken as UTF-8).
fn without_charset(value: &str) -> &str {
    let mut parts = value.splitn(3, '\'');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(text)) => text,
        _ => value,
    }
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Text with RFC 2047 encoded-words (`=?utf-8?B?...?=`, `=?iso-8859-1?Q?...?=`)
/// decoded; whitespace between two of them goes (section 6.2). A word
/// that does not decode stays as it is.
fn decode_encoded_words(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, word) = rest.split_at(start);
        let decoded = encoded_word(word);
        match decoded {
            Some((text, len)) => {
                if !(after_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &word[len..];
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &word[2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One encoded-word at the start of `word`: its text and its length.
fn encoded_word(word: &str) -> Option<(String, usize)> {
    let inner = word.strip_prefix("=?")?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let text = &inner[..end];
    let bytes = match encoding.to_ascii_uppercase().as_str() {
        "B" => STANDARD.decode(text).ok()?,
        "Q" => percent_decode(&text.replace('_', " ").replace('=', "%")),
        _ => return None,
    };
    let charset = charset.split('*').next().unwrap_or("").to_ascii_lowercase();
    let decoded = match charset.as_str() {
        "iso-8859-1" | "latin1" | "windows-1252" => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    };
    let len = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((decoded, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `content` a line at a time, long lines in slices of `cap`.
    fn scan(content: &[u8], cap: usize) -> Structure {
        let mut scanner = Scanner::default();
        let mut offset = 0;
        for line in content.split_inclusive(|&b| b == b'\n') {
            for slice in line.chunks(cap) {
                scanner.handle_input(offset as u64, slice);
                offset += slice.len();
            }
        }
        scanner.finish()
    }

    fn at(content: &[u8], r: &Range<u64>) -> Vec<u8> {
        content[r.start as usize..r.end as usize].to_vec()
    }

    fn apply(content: &[u8], pieces: &[Piece]) -> Vec<u8> {
        pieces
            .iter()
            .flat_map(|p| match p {
                Piece::File(r) => at(content, r),
                Piece::Text(t) => t.clone(),
            })
            .collect()
    }

    const MESSAGE: &[u8] = b"From: a@x.org\r\nTo: b@x.org\r\nContent-Type: multipart/mixed;\r\n boundary=\"=_b 1\"\r\n\r\npreamble\r\n--=_b 1\r\nContent-Type: text/plain\r\n\r\nHello.\r\n--=_b 1  \r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment;\r\n filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\nContent-Transfer-Encoding: BASE64\r\n\r\nAAEC\r\nAwQ=\r\n--=_b 1\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\r\n\x02\r\n--=_b 1--\r\nepilogue\r\n";

    #[test]
    fn the_outermost_parts_with_their_spans_bodies_and_headers() {
        // Slices shorter than a line, but not than a delimiter line (the
        // caller's are 8 KB).
        for cap in [12, 16, 8192] {
            let s = scan(MESSAGE, cap);
            assert_eq!(s.boundary.as_deref(), Some("=_b 1"));
            assert_eq!(s.eol, "\r\n");
            assert_eq!(s.parts.len(), 3, "cap {cap}");
            let [text, pdf, png] = &s.parts[..] else {
                panic!()
            };
            assert_eq!(at(MESSAGE, &text.body), b"Hello.");
            assert!(at(MESSAGE, &text.span).starts_with(b"--=_b 1\r\nContent-Type: text/plain"));
            assert!(!text.detachable());
            assert_eq!(at(MESSAGE, &pdf.body), b"AAEC\r\nAwQ=");
            assert!(at(MESSAGE, &pdf.span).starts_with(b"--=_b 1  \r\n"));
            assert!(at(MESSAGE, &pdf.span).ends_with(b"AwQ=\r\n"));
            assert_eq!(pdf.encoding, Encoding::Base64);
            assert_eq!((pdf.decoded, pdf.valid), (5, true));
            assert_eq!(pdf.name.as_deref(), Some("résumé.pdf"));
            assert_eq!(pdf.content_type, "application/pdf");
            assert!(pdf.attachment && !pdf.inline && pdf.detachable());
            assert_eq!(at(MESSAGE, &png.body), b"\x00\x01\r\n\x02");
            assert_eq!((png.decoded, png.encoding), (5, Encoding::Identity));
            assert_eq!(png.content_id.as_deref(), Some("logo@x"));
            assert!(png.inline && png.detachable());
            assert_eq!(png.file_name(), "attachment");
        }
    }

    #[test]
    fn file_names_in_rfc_2231_and_rfc_2047() {
        let name = |value: &str| {
            let (_, params) = parse_parameters(value);
            param(&params, "filename").or_else(|| param(&params, "name"))
        };
        assert_eq!(
            name("attachment; filename=\"a b.pdf\"").as_deref(),
            Some("a b.pdf")
        );
        assert_eq!(
            name("attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; filename=x").as_deref(),
            Some("résumé.pdf")
        );
        assert_eq!(
            name("attachment; filename*0*=utf-8''Gr%C3%BC; filename*1=\"sse \"; filename*2*=%E2%82%AC.txt")
                .as_deref(),
            Some("Grüsse €.txt")
        );
        assert_eq!(
            name("application/pdf; name=\"=?UTF-8?B?w6l0w6k=?= =?iso-8859-1?Q?_=E9t=E9?=.pdf\"")
                .as_deref(),
            Some("été été.pdf")
        );
        assert_eq!(name("x; name=\"=?bogus\"").as_deref(), Some("=?bogus"));
    }

    #[test]
    fn bad_base64_and_containers_stay_in_the_draft_quoted_printable_goes() {
        let message = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Disposition: attachment\nContent-Transfer-Encoding: base64\n\nAA=A\n--b\nContent-Disposition: attachment\nContent-Transfer-Encoding: base64\n\nAAA\n--b\nContent-Disposition: attachment; filename=q.txt\nContent-Transfer-Encoding: quoted-printable\n\na=3D\n--b\nContent-Type: multipart/alternative; boundary=c; name=x\n\n--c\n\n--c--\n--b\nContent-Type: message/rfc822; name=m.eml\n\nSubject: x\n--b--\n";
        let s = scan(message, 8192);
        assert_eq!(s.eol, "\n");
        // The nested multipart's one (empty) part ends before the part
        // that holds it.
        assert_eq!(s.parts.len(), 6);
        assert_eq!(s.multiparts, ["b", "c"]);
        let parents: Vec<usize> = s.parts.iter().map(|p| p.parent).collect();
        assert_eq!(parents, [0, 0, 0, 1, 0, 0]);
        let detachable: Vec<bool> = s.parts.iter().map(Part::detachable).collect();
        assert_eq!(
            detachable,
            [false, false, true, false, false, false],
            "{:?}",
            s.parts
        );
        assert!(!s.parts[0].valid && !s.parts[1].valid);
        // "a=3D" decodes to "a=".
        assert_eq!(
            (s.parts[2].encoding, s.parts[2].decoded),
            (Encoding::QuotedPrintable, 2)
        );
        // A line too long to be quoted-printable: it stays.
        let long = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Disposition: attachment\n\
             Content-Transfer-Encoding: quoted-printable\n\n{}\n--b--\n",
            "x".repeat(1001)
        );
        let s = scan(long.as_bytes(), 64);
        assert!(!s.parts[0].valid && !s.parts[0].detachable());
    }

    const NESTED: &[u8] = b"Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n--rel\r\nContent-Type: text/html\r\n\r\n<img src=cid:i>\r\n--rel\r\nContent-Type: image/png\r\nContent-ID: <i>\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--rel--\r\n\r\n--out\r\nContent-Type: multipart/mixed; boundary=fwd\r\n\r\n--fwd\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=41B\r\n--fwd--\r\n--out--\r\n";

    #[test]
    fn attachments_inside_nested_multiparts_are_found_and_cut() {
        let s = scan(NESTED, 8192);
        assert_eq!(s.multiparts, ["out", "rel", "fwd"]);
        let found: Vec<(usize, &str, bool, u64)> = s
            .parts
            .iter()
            .map(|p| (p.parent, p.content_type.as_str(), p.detachable(), p.decoded))
            .collect();
        assert_eq!(
            found,
            [
                (1, "text/html", false, 15),
                (1, "image/png", true, 3),
                (0, "multipart/related", false, found[2].3),
                (2, "application/octet-stream", true, 2),
                (0, "multipart/mixed", false, found[4].3),
            ]
        );
        // The image and the forwarded one's only attachment cut: that
        // multipart gets an empty part in its place.
        let pieces = draft_pieces(NESTED.len() as u64, None, &s, &[3, 1]);
        let draft = apply(NESTED, &pieces);
        assert_eq!(
            String::from_utf8_lossy(&draft),
            "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n--rel\r\nContent-Type: text/html\r\n\r\n<img src=cid:i>\r\n--rel--\r\n\r\n--out\r\nContent-Type: multipart/mixed; boundary=fwd\r\n\r\n--fwd\r\n\r\n\r\n--fwd--\r\n--out--\r\n"
        );
        // html, the related container, the empty part, the forwarded one.
        let again = scan(&draft, 8192);
        assert_eq!(again.parts.len(), 4);
        assert!(again.parts.iter().all(|p| !p.detachable()));
        // The plan counts the empty part in.
        let raw = NESTED.len() as u64;
        let cut = plan(&s, raw, pieces_len(&pieces)).unwrap();
        assert_eq!(cut, [1, 3]);
        assert!(plan(&s, raw, pieces_len(&pieces) - 1).is_err());
    }

    /// An outer delimiter ends a nested multipart left open; its open
    /// part stays in the draft.
    #[test]
    fn a_nested_multipart_that_never_closes_keeps_its_open_part() {
        let message = b"Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\n--i\nContent-Disposition: attachment; filename=x\n\nabc\n--o\nContent-Disposition: attachment; filename=y\n\nde\n--o--\n";
        let s = scan(message, 8192);
        let names: Vec<Option<&str>> = s.parts.iter().map(|p| p.name.as_deref()).collect();
        assert_eq!(names, [None, Some("y")]);
        assert_eq!(s.parts[1].decoded, 2);
    }

    #[test]
    fn a_message_that_is_not_multipart_or_never_closes_has_no_parts() {
        assert_eq!(scan(b"Subject: x\r\n\r\n--b\r\n", 8192).parts, []);
        let open = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment\r\n\r\nabc\r\n";
        let s = scan(open, 8192);
        assert_eq!((s.boundary.as_deref(), s.parts.len()), (Some("b"), 0));
    }

    #[test]
    fn the_plan_takes_the_largest_attachments_until_the_draft_fits() {
        let s = scan(MESSAGE, 8192);
        let size = MESSAGE.len() as u64;
        assert_eq!(plan(&s, size, size), Ok(vec![]));
        let pdf = s.parts[1].span.end - s.parts[1].span.start;
        let png = s.parts[2].span.end - s.parts[2].span.start;
        assert!(pdf > png);
        assert_eq!(plan(&s, size, size - 1), Ok(vec![1]));
        assert_eq!(plan(&s, size, size - pdf - 1), Ok(vec![1, 2]));
        let err = plan(&s, size, size - pdf - png - 1).unwrap_err();
        assert!(err.ends_with("still too large"), "{err}");
        let single = scan(b"Subject: x\r\n\r\nbody\r\n", 8192);
        assert!(plan(&single, 100, 10)
            .unwrap_err()
            .contains("not multipart"));
    }

    #[test]
    fn the_draft_is_the_message_with_the_bcc_edit_and_without_the_cut_parts() {
        let s = scan(MESSAGE, 8192);
        let size = MESSAGE.len() as u64;
        let edit = BccEdit {
            at: 26,
            insert: b"\r\nBcc: c@x.org".to_vec(),
        };
        let pieces = draft_pieces(size, Some(&edit), &s, &[1, 2]);
        let draft = apply(MESSAGE, &pieces);
        assert_eq!(pieces_len(&pieces), draft.len() as u64);
        let expected = b"From: a@x.org\r\nTo: b@x.org\r\nBcc: c@x.org\r\nContent-Type: multipart/mixed;\r\n boundary=\"=_b 1\"\r\n\r\npreamble\r\n--=_b 1\r\nContent-Type: text/plain\r\n\r\nHello.\r\n--=_b 1--\r\nepilogue\r\n";
        assert_eq!(
            String::from_utf8_lossy(&draft),
            String::from_utf8_lossy(expected)
        );
        // The draft scans as a message with the one text part left.
        let again = scan(&draft, 8192);
        assert_eq!(again.parts.len(), 1);
        // All cut: an empty part stands in.
        let all = apply(MESSAGE, &draft_pieces(size, None, &s, &[0, 1, 2]));
        assert!(all.ends_with(b"preamble\r\n--=_b 1\r\n\r\n\r\n--=_b 1--\r\nepilogue\r\n"));
        let again = scan(&all, 8192);
        assert_eq!(again.parts.len(), 1);
        assert_eq!(
            again.parts[0].body,
            again.parts[0].body.start..again.parts[0].body.start
        );
        // Nothing cut, no edit: the message itself.
        assert_eq!(apply(MESSAGE, &draft_pieces(size, None, &s, &[])), MESSAGE);
    }
}
