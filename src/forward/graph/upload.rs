//! The arithmetic and bodies of Graph's requests for a large message:
//! the byte ranges of an upload session's `PUT`s and their headers, the
//! upload session's answers, the JSON of `createUploadSession` and of a
//! small file attachment, and a base64 decoder fed a slice at a time.
//!
//! Microsoft's contract (learn.microsoft.com/graph/outlook-large-attachments):
//! each `PUT` carries `Content-Range: bytes {start}-{end}/{total}` (end
//! inclusive), `Content-Length` equal to the range's length and
//! `Content-Type: application/octet-stream`, in order, no `Authorization`
//! (the upload URL carries its own token); each answers `200` with
//! `nextExpectedRanges` until the last, which answers `201 Created`.
//!
//! Must not do I/O.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::mime::Part;

/// The most of an attachment in one `PUT`: ten of the 320 KiB units
/// upload sessions count in, under Graph's 4 MB per request.
pub const CHUNK: u64 = 10 * 320 * 1024;
const _: () = assert!(CHUNK < 4 * 1024 * 1024 && CHUNK % (320 * 1024) == 0);

/// Attachments this large (decoded) or larger go by upload session;
/// smaller ones in one `POST .../attachments` ("under 3 MB").
pub const UPLOAD_SESSION_FROM: u64 = 3_000_000;

/// The inclusive byte ranges of an attachment of `total` octets, in
/// order, each at most `chunk` long.
pub fn ranges(total: u64, chunk: u64) -> Vec<(u64, u64)> {
    (0..total.div_ceil(chunk))
        .map(|i| (i * chunk, ((i + 1) * chunk).min(total) - 1))
        .collect()
}

/// The `Content-Range` value of one `PUT` (RFC 9110 section 14.4).
pub fn content_range(start: u64, end: u64, total: u64) -> String {
    format!("bytes {start}-{end}/{total}")
}

/// What an answer to a `PUT` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// `200`: the next range starts here.
    Next(u64),
    /// `201 Created`: the attachment is whole.
    Done,
    /// Anything else the session's rules do not allow.
    Wrong(String),
}

/// Reads the answer to the `PUT` of `start..=end` of `total`.
pub fn progress(status: u16, body: &[u8], end: u64, total: u64) -> Progress {
    let last = end + 1 == total;
    match (status, last) {
        (201, true) => Progress::Done,
        (200, false) => match next_expected(body) {
            Some(next) if next == end + 1 => Progress::Next(next),
            Some(next) => Progress::Wrong(format!(
                "the upload session expects octet {next}, not {}",
                end + 1
            )),
            None => Progress::Wrong("the upload session's answer has no nextExpectedRanges".into()),
        },
        (s, _) => Progress::Wrong(format!(
            "the upload session answered {s} to octets {end} of {total}"
        )),
    }
}

/// The start of the first of `nextExpectedRanges` (`"2097152"` for
/// Outlook, `"2097152-"` or `"0-26"` as OneDrive writes them).
pub fn next_expected(body: &[u8]) -> Option<u64> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let first = json["nextExpectedRanges"].as_array()?.first()?.as_str()?;
    first.split('-').next()?.trim().parse().ok()
}

/// The body of `createUploadSession` for a part (the `attachmentItem`
/// resource: type, name, size, contentType, isInline, contentId).
pub fn session_request(part: &Part) -> String {
    let mut item = serde_json::json!({
        "attachmentType": "file",
        "name": part.file_name(),
        "size": part.decoded,
        "contentType": part.content_type,
        "isInline": part.inline || (part.content_id.is_some() && !part.attachment),
    });
    if let Some(id) = &part.content_id {
        item["contentId"] = serde_json::Value::String(id.clone());
    }
    serde_json::json!({ "AttachmentItem": item }).to_string()
}

/// The body of `POST .../attachments` for a small part, its decoded
/// content given as base64 (a `fileAttachment` with `contentBytes`).
pub fn attachment_request(part: &Part, content_base64: &str) -> String {
    let mut item = serde_json::json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": part.file_name(),
        "contentType": part.content_type,
        "isInline": part.inline || (part.content_id.is_some() && !part.attachment),
        "contentBytes": content_base64,
    });
    if let Some(id) = &part.content_id {
        item["contentId"] = serde_json::Value::String(id.clone());
    }
    item.to_string()
}

/// The `id` of the draft in the answer to `POST .../messages`.
pub fn draft_id(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    json["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The `uploadUrl` in the answer to `createUploadSession`.
pub fn upload_url(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    json["uploadUrl"].as_str().map(str::to_string)
}

/// An attachment whose transfer encoding does not decode.
#[derive(Debug)]
pub enum DecodeError {
    Base64(base64::DecodeError),
    /// The base64 ends with a partial quad.
    MidQuad,
    /// A quoted-printable line longer than [`MAX_QP_LINE`].
    LongLine,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Base64(e) => write!(f, "bad base64 in an attachment: {e}"),
            DecodeError::MidQuad => f.write_str("an attachment's base64 ends mid-quad"),
            DecodeError::LongLine => write!(
                f,
                "a quoted-printable line over {MAX_QP_LINE} octets in an attachment"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes base64 fed in slices of any size, skipping line breaks and
/// other whitespace (RFC 2045 section 6.8).
#[derive(Default)]
pub struct Base64Decoder {
    carry: Vec<u8>,
}

impl Base64Decoder {
    /// Decodes what `input` completes, appending to `out`.
    pub fn handle_input(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        self.carry
            .extend(input.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        let whole = self.carry.len() / 4 * 4;
        STANDARD
            .decode_vec(&self.carry[..whole], out)
            .map_err(DecodeError::Base64)?;
        self.carry.drain(..whole);
        Ok(())
    }

    /// `Err` if a partial quad is left over.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.carry.is_empty() {
            true => Ok(()),
            false => Err(DecodeError::MidQuad),
        }
    }
}

/// The longest quoted-printable line decoded (RFC 2045 allows 76
/// characters; RFC 5322 998): a longer one makes the part stay in the draft.
pub const MAX_QP_LINE: usize = 1000;

/// Decodes quoted-printable (RFC 2045 section 6.7) fed in slices of any
/// size: `=XX` is the octet, `=` at a line's end a soft break, a hard
/// line break (LF or CRLF) is CRLF, whitespace at a line's end is
/// transport padding and goes; an `=` that starts no escape stays as it
/// is. A line's break is written when the next line is, so what follows
/// the last line break fed is the body's last line.
#[derive(Default)]
pub struct QpDecoder {
    line: Vec<u8>,
    /// The last whole line ended with a hard break, not yet written.
    break_pending: bool,
}

impl QpDecoder {
    /// Decodes the lines `input` completes, appending to `out`.
    pub fn handle_input(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        for &b in input {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                self.end_line(&line, out);
                self.line = line;
                self.line.clear();
            } else {
                if self.line.len() >= MAX_QP_LINE {
                    return Err(DecodeError::LongLine);
                }
                self.line.push(b);
            }
        }
        Ok(())
    }

    /// The body's last line (what follows the last line break).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.line);
        self.end_line(&line, out);
        // The last line has no break of its own.
        self.break_pending = false;
    }

    /// For a scan that fed the line break before the next delimiter,
    /// which is not the body's: that break is dropped.
    pub fn finish_at_delimiter(&mut self) {
        self.break_pending = false;
        self.line.clear();
    }

    fn end_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let mut line = line.strip_suffix(b"\r").unwrap_or(line);
        while let Some(rest) = line.strip_suffix(b" ").or_else(|| line.strip_suffix(b"\t")) {
            line = rest;
        }
        if self.break_pending {
            out.extend_from_slice(b"\r\n");
        }
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let hex = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'A'..=b'F' => Some(b - b'A' + 10),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if b == b'=' {
                if let (Some(&h), Some(&l)) = (line.get(i + 1), line.get(i + 2)) {
                    if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                }
            }
            out.push(b);
            i += 1;
        }
        self.break_pending = !soft;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::graph::mime::Encoding;

    #[test]
    fn ranges_cover_the_attachment_in_order_each_under_four_megabytes() {
        assert_eq!(ranges(0, 10), []);
        assert_eq!(ranges(1, 10), [(0, 0)]);
        assert_eq!(ranges(10, 10), [(0, 9)]);
        assert_eq!(ranges(25, 10), [(0, 9), (10, 19), (20, 24)]);
        let total = 20 * 1024 * 1024 + 7;
        let all = ranges(total, CHUNK);
        assert_eq!(all.len() as u64, total.div_ceil(CHUNK));
        assert_eq!(all[0].0, 0);
        assert_eq!(all.last().unwrap().1, total - 1);
        for pair in all.windows(2) {
            assert_eq!(pair[1].0, pair[0].1 + 1);
        }
        assert!(all.iter().all(|(s, e)| e - s < CHUNK));
        // Microsoft's example, byte for byte.
        assert_eq!(
            content_range(2097152, 3483321, 3483322),
            "bytes 2097152-3483321/3483322"
        );
    }

    #[test]
    fn each_put_must_be_answered_as_the_session_rules_say() {
        let next = br#"{"expirationDateTime":"2019-09-25T01:09:30.7671707Z","nextExpectedRanges":["2097152"]}"#;
        assert_eq!(
            progress(200, next, 2097151, 3483322),
            Progress::Next(2097152)
        );
        assert_eq!(progress(201, b"", 3483321, 3483322), Progress::Done);
        assert!(
            matches!(progress(200, next, 99, 3483322), Progress::Wrong(w) if w.contains("expects octet 2097152"))
        );
        // A 200 to the last range, a 201 too early, an error: wrong.
        assert!(matches!(
            progress(200, next, 3483321, 3483322),
            Progress::Wrong(_)
        ));
        assert!(matches!(
            progress(201, b"", 2097151, 3483322),
            Progress::Wrong(_)
        ));
        assert!(matches!(
            progress(200, b"{}", 2097151, 3483322),
            Progress::Wrong(_)
        ));
        assert_eq!(
            next_expected(br#"{"nextExpectedRanges":["12-"]}"#),
            Some(12)
        );
        assert_eq!(
            next_expected(br#"{"nextExpectedRanges":["0-26","30-"]}"#),
            Some(0)
        );
    }

    #[test]
    fn request_bodies_name_the_part() {
        let part = Part {
            span: 0..1,
            body: 0..1,
            encoding: Encoding::Base64,
            content_type: "image/png".into(),
            name: Some("a \"b\".png".into()),
            content_id: Some("logo@x".into()),
            inline: true,
            attachment: false,
            decoded: 3483322,
            valid: true,
            parent: 0,
        };
        let session: serde_json::Value = serde_json::from_str(&session_request(&part)).unwrap();
        assert_eq!(
            session,
            serde_json::json!({"AttachmentItem": {"attachmentType": "file", "name": "a \"b\".png",
                "size": 3483322, "contentType": "image/png", "isInline": true, "contentId": "logo@x"}})
        );
        let small: serde_json::Value =
            serde_json::from_str(&attachment_request(&part, "AAEC")).unwrap();
        assert_eq!(small["@odata.type"], "#microsoft.graph.fileAttachment");
        assert_eq!(small["contentBytes"], "AAEC");
        assert_eq!(draft_id(br#"{"id":"AAMk="}"#).as_deref(), Some("AAMk="));
        assert_eq!(draft_id(br#"{"id":""}"#), None);
        assert_eq!(
            upload_url(br#"{"uploadUrl":"https://h/u?t=1"}"#).as_deref(),
            Some("https://h/u?t=1")
        );
    }

    fn qp(input: &[u8], slice: usize) -> Vec<u8> {
        let mut d = QpDecoder::default();
        let mut out = Vec::new();
        for piece in input.chunks(slice.max(1)) {
            d.handle_input(piece, &mut out).unwrap();
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn quoted_printable_decodes_across_any_slicing() {
        let input = b"caf=C3=A9 =3D x=\r\ny \t\r\n\r\nlast=0D=0A=00=\n= z=4";
        let want = b"caf\xc3\xa9 = xy\r\n\r\nlast\r\n\x00= z=4".to_vec();
        for slice in 1..input.len() + 1 {
            assert_eq!(qp(input, slice), want, "slice {slice}");
        }
        // LF alone is a line break too; a body ending in a break keeps it.
        assert_eq!(qp(b"a\nb\n", 2), b"a\r\nb\r\n");
        assert_eq!(qp(b"", 1), b"");
        let mut d = QpDecoder::default();
        assert!(d
            .handle_input(&vec![b'a'; MAX_QP_LINE + 1], &mut Vec::new())
            .is_err());
    }

    /// A scan feeds the delimiter's line break and then drops it: the
    /// same octets as decoding the body alone.
    #[test]
    fn a_scan_through_the_delimiter_break_counts_the_body() {
        for body in [&b"a=\r\nb\r\n"[..], b"a", b"a\r\n", b"=41=\r\n"] {
            let mut d = QpDecoder::default();
            let mut scanned = Vec::new();
            d.handle_input(body, &mut scanned).unwrap();
            d.handle_input(b"\r\n", &mut scanned).unwrap();
            d.finish_at_delimiter();
            assert_eq!(scanned, qp(body, 3), "{body:?}");
        }
    }

    #[test]
    fn base64_decodes_across_any_slicing() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        let text = STANDARD.encode(&data);
        let folded: Vec<u8> = text
            .as_bytes()
            .chunks(76)
            .flat_map(|l| [l, b"\r\n"].concat())
            .collect();
        for size in [1, 3, 5, 77, 4096] {
            let mut decoder = Base64Decoder::default();
            let mut out = Vec::new();
            for slice in folded.chunks(size) {
                decoder.handle_input(slice, &mut out).unwrap();
            }
            decoder.finish().unwrap();
            assert_eq!(out, data, "slices of {size}");
        }
        let mut decoder = Base64Decoder::default();
        assert!(decoder.handle_input(b"AA*A", &mut Vec::new()).is_err());
        let mut decoder = Base64Decoder::default();
        decoder.handle_input(b"AAA", &mut Vec::new()).unwrap();
        assert!(decoder.finish().is_err());
    }
}
