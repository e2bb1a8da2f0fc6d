//! A message over Graph's single-request limit, sent through a draft
//! (learn.microsoft.com/graph/outlook-large-attachments):
//!
//! ```text
//!   POST /users/{id}/messages            the MIME text without the
//!        (text/plain, base64)            largest attachments -> 201, id
//!   per attachment taken out, decoded:
//!     under 3 MB  POST .../messages/{mid}/attachments (fileAttachment)
//!     3 MB up     POST .../attachments/createUploadSession -> uploadUrl
//!                 PUT uploadUrl (no Authorization; Content-Range,
//!                 Content-Length, octet-stream) < 4 MB each, in order
//!   POST /users/{id}/messages/{mid}/send  (Content-Length: 0) -> 202
//! ```
//!
//! On any failure after the draft was made, the draft is deleted (best
//! effort) and the message's outcome is what the failing answer means
//! (`answer`), so a retry starts again from a new draft.
//!
//! Memory stays flat: the content file is scanned a line at a time
//! (`mime`), the draft is at most one request (4 MB of base64), and an
//! attachment is read, decoded and sent one range at a time.
//!
//! Must not: hold a message whole; put the access token on an upload
//! URL's requests (it carries its own).

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use emailrelay_proto::smtp::{OutgoingMessage, Reply, SendOutcome};
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::super::client::ConnectionError;
use super::answer::{self, Answer};
use super::mime::{self, Encoding, Part, Piece, Scanner, Structure};
use super::upload::{self, Base64Decoder, Progress, QpDecoder};
use super::{bcc, Call, GraphLink, MAX_REQUEST, SLICE};
use crate::auth::http::Url;
use crate::debug;

/// Exchange Online's largest message, and the largest attachment an
/// upload session takes: 150 MB
/// (learn.microsoft.com/graph/outlook-large-attachments: "you can attach
/// files up to 150 MB"; Exchange Online limits: maximum message size
/// 150 MB). A tenant's own limit (35 MB by default) may be lower; Graph
/// then answers with an error and the message fails with it.
pub const MAX_MESSAGE: u64 = 150 * 1024 * 1024;

/// The most of raw MIME text in one request: 4 MB of base64.
const MAX_DRAFT: u64 = MAX_REQUEST / 4 * 3;

/// The longest slice of a line the scan takes at once.
const SCAN_SLICE: u64 = 8192;

/// A step's result: go on, or what it means for the message.
type Step<T> = Result<Result<T, SendOutcome>, ConnectionError>;

impl GraphLink {
    /// Sends a message too large for one `sendMail`.
    pub(super) async fn send_large(
        &mut self,
        message: &OutgoingMessage,
        content: &Path,
    ) -> Result<SendOutcome, ConnectionError> {
        let t = Arc::clone(&self.transport);
        let size = tokio::fs::metadata(content)
            .await
            .map_err(ConnectionError::Content)?
            .len();
        if size > MAX_MESSAGE {
            return Ok(too_large(format!(
                "{size} octets, over Exchange Online's maximum of {MAX_MESSAGE} (150 MB)"
            )));
        }
        let path = content.to_path_buf();
        let (size, structure, start) = tokio::task::spawn_blocking(move || scan(&path))
            .await
            .map_err(|e| ConnectionError::Content(std::io::Error::other(e.to_string())))?
            .map_err(ConnectionError::Content)?;
        let edit = bcc::bcc_edit(bcc::header_section(&start), &message.to);
        let raw = size + edit.as_ref().map_or(0, |e| e.insert.len() as u64);
        let cut = match mime::plan(&structure, raw, MAX_DRAFT) {
            Ok(cut) => cut,
            Err(why) => return Ok(too_large(why)),
        };
        let pieces = mime::draft_pieces(size, edit.as_ref(), &structure, &cut);
        let path = content.to_path_buf();
        let draft = tokio::task::spawn_blocking(move || encode_pieces(&path, &pieces))
            .await
            .map_err(|e| ConnectionError::Content(std::io::Error::other(e.to_string())))?
            .map_err(ConnectionError::Content)?;
        let _permit = t.mailbox.permit().await?;
        let mut renewed = false;
        let messages = t.user_path("/messages");
        let create = |token: &str| {
            Call::graph(
                Method::POST,
                messages.clone(),
                Some("text/plain"),
                token,
                draft.clone(),
            )
            .carrying()
        };
        let answered = match self.authed(&mut renewed, create).await? {
            Ok(answered) => answered,
            Err(outcome) => return Ok(outcome),
        };
        drop(draft);
        let Some(id) = upload::draft_id(&answered.2) else {
            return Ok(SendOutcome::Retry(Reply::new(
                451,
                "4.4.0 graph: the answer to the draft has no id",
            )));
        };
        debug!(
            "graph: draft {id}: {} of {} part(s) to attach",
            cut.len(),
            structure.parts.len()
        );
        let parts: Vec<Part> = cut.iter().map(|&i| structure.parts[i].clone()).collect();
        match self.finish_draft(&mut renewed, &id, content, &parts).await {
            Ok(Ok(())) => {
                self.follow(message, content).await;
                Ok(SendOutcome::Sent {
                    rejected: Vec::new(),
                })
            }
            Ok(Err(outcome)) => {
                self.delete_draft(&id).await;
                Ok(outcome)
            }
            Err(e) => {
                self.delete_draft(&id).await;
                Err(e)
            }
        }
    }

    /// Attaches the parts to draft `id` and sends it.
    async fn finish_draft(
        &mut self,
        renewed: &mut bool,
        id: &str,
        content: &Path,
        parts: &[Part],
    ) -> Step<()> {
        for part in parts {
            let step = match part.decoded >= upload::UPLOAD_SESSION_FROM {
                true => self.upload_session(renewed, id, content, part).await?,
                false => self.small_attachment(renewed, id, content, part).await?,
            };
            if let Err(outcome) = step {
                return Ok(Err(outcome));
            }
        }
        let t = Arc::clone(&self.transport);
        let send = t.message_path(id, "/send");
        let call = |token: &str| Call::graph(Method::POST, send.clone(), None, token, Bytes::new());
        Ok(self.authed(renewed, call).await?.map(|_| ()))
    }

    /// A part under 3 MB, in one `POST .../attachments`.
    async fn small_attachment(
        &mut self,
        renewed: &mut bool,
        id: &str,
        content: &Path,
        part: &Part,
    ) -> Step<()> {
        let t = Arc::clone(&self.transport);
        let mut reader = PartReader::open(content, part)
            .await
            .map_err(ConnectionError::Content)?;
        let bytes = reader
            .read(part.decoded)
            .await
            .map_err(ConnectionError::Content)?;
        reader.done().map_err(ConnectionError::Content)?;
        let body = Bytes::from(upload::attachment_request(part, &STANDARD.encode(bytes)));
        let path = t.message_path(id, "/attachments");
        let call = |token: &str| {
            Call::graph(
                Method::POST,
                path.clone(),
                Some("application/json"),
                token,
                body.clone(),
            )
            .carrying()
        };
        Ok(self.authed(renewed, call).await?.map(|_| ()))
    }

    /// A part of 3 MB or more, through an upload session.
    async fn upload_session(
        &mut self,
        renewed: &mut bool,
        id: &str,
        content: &Path,
        part: &Part,
    ) -> Step<()> {
        let t = Arc::clone(&self.transport);
        let path = t.message_path(id, "/attachments/createUploadSession");
        let body = Bytes::from(upload::session_request(part));
        let call = |token: &str| {
            Call::graph(
                Method::POST,
                path.clone(),
                Some("application/json"),
                token,
                body.clone(),
            )
        };
        let answered = match self.authed(renewed, call).await? {
            Ok(answered) => answered,
            Err(outcome) => return Ok(Err(outcome)),
        };
        let url = match upload::upload_url(&answered.2).map(|u| Url::parse(&u)) {
            Some(Ok(url)) if url.https || !t.url.https => url,
            _ => {
                return Ok(Err(later(
                    "the upload session's uploadUrl is not an https URL",
                )))
            }
        };
        let mut reader = PartReader::open(content, part)
            .await
            .map_err(ConnectionError::Content)?;
        // The upload URL's host is another (outlook.office.com): its own connection.
        let mut slot = None;
        let total = part.decoded;
        for (start, end) in upload::ranges(total, upload::CHUNK) {
            let chunk = reader
                .read(end - start + 1)
                .await
                .map_err(ConnectionError::Content)?;
            let call = Call {
                method: Method::PUT,
                target: url.path.clone(),
                content_type: Some("application/octet-stream"),
                content_range: Some(upload::content_range(start, end, total)),
                bearer: None,
                body: Bytes::from(chunk),
                data: true,
            };
            self.wait_for_rate().await;
            self.wait_for_uploads(call.body.len()).await;
            let (status, retry_after, text) = match t.exchange(&mut slot, &url, call).await {
                Ok(answered) => answered,
                Err(unanswered) => return Ok(Err(unanswered.retry())),
            };
            match upload::progress(status, &text, end, total) {
                Progress::Next(_) | Progress::Done => {}
                Progress::Wrong(why) => {
                    return Ok(Err(self.upload_refused(status, retry_after, &text, why)))
                }
            }
        }
        reader.done().map_err(ConnectionError::Content)?;
        Ok(Ok(()))
    }

    /// What a wrong answer to a `PUT` means: Graph's own errors as for
    /// any request (a 401 there is the upload URL's token, not ours: a
    /// new session on the next attempt), a 2xx out of order a deferral.
    fn upload_refused(
        &mut self,
        status: u16,
        retry_after: Option<String>,
        text: &[u8],
        why: String,
    ) -> SendOutcome {
        match answer::decide(status, retry_after.as_deref(), text) {
            Answer::Accepted => later(&why),
            Answer::Unauthorized(reply) => {
                SendOutcome::Retry(Reply::new(451, format!("4.4.0 {}", reply.text())))
            }
            Answer::Throttled(reply, wait) => {
                self.retry_after = wait;
                SendOutcome::Retry(reply)
            }
            Answer::Failed(reply) => SendOutcome::Failed(reply),
            Answer::Later(reply) => SendOutcome::Retry(reply),
        }
    }

    /// Deletes draft `id`, as far as Graph lets us; a draft left over
    /// stays in the mailbox's Drafts folder and is logged.
    async fn delete_draft(&mut self, id: &str) {
        let t = Arc::clone(&self.transport);
        let path = t.message_path(id, "");
        let call =
            |token: &str| Call::graph(Method::DELETE, path.clone(), None, token, Bytes::new());
        let retry_after = self.retry_after;
        let mut renewed = true;
        match self.authed(&mut renewed, call).await {
            Ok(Ok(_)) => debug!("graph: draft {id} deleted"),
            _ => crate::warning!("graph: draft {id} could not be deleted: it stays in Drafts"),
        }
        // The failure's own wait stands.
        self.retry_after = retry_after;
    }
}

/// A deferral with this reason.
fn later(why: &str) -> SendOutcome {
    SendOutcome::Retry(Reply::new(451, format!("4.4.0 graph: {why}")))
}

/// The message fails: it cannot go through Graph at all.
fn too_large(why: String) -> SendOutcome {
    SendOutcome::Failed(Reply::new(
        552,
        format!("5.3.4 message too large for graph: {why}"),
    ))
}

/// The content file's size, structure and first 64 KB (its header).
fn scan(path: &Path) -> std::io::Result<(u64, Structure, Vec<u8>)> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
    let mut scanner = Scanner::default();
    let mut start = Vec::new();
    let mut line = Vec::new();
    let mut offset = 0u64;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(SCAN_SLICE)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if start.len() < 64 * 1024 {
            start.extend_from_slice(&line[..line.len().min(64 * 1024 - start.len())]);
        }
        scanner.handle_input(offset, &line);
        offset += n as u64;
    }
    Ok((size, scanner.finish(), start))
}

/// The base64 of the draft's pieces, read from the content file.
fn encode_pieces(path: &PathBuf, pieces: &[Piece]) -> std::io::Result<Bytes> {
    let mut file = std::fs::File::open(path)?;
    let raw = mime::pieces_len(pieces);
    let mut out = String::with_capacity(usize::try_from(raw.div_ceil(3) * 4).unwrap_or(0));
    let mut pending: Vec<u8> = Vec::new();
    let mut slice = vec![0u8; SLICE];
    for piece in pieces {
        match piece {
            Piece::Text(text) => pending.extend_from_slice(text),
            Piece::File(range) => {
                file.seek(SeekFrom::Start(range.start))?;
                let mut left = range.end - range.start;
                while left > 0 {
                    let want = usize::try_from(left.min(SLICE as u64)).unwrap_or(SLICE);
                    file.read_exact(&mut slice[..want])?;
                    pending.extend_from_slice(&slice[..want]);
                    left -= want as u64;
                    let whole = pending.len() / 3 * 3;
                    STANDARD.encode_string(&pending[..whole], &mut out);
                    pending.drain(..whole);
                }
            }
        }
    }
    STANDARD.encode_string(&pending, &mut out);
    Ok(Bytes::from(out))
}

/// How a part's body is decoded as it is read.
enum Decoder {
    Base64(Base64Decoder),
    Qp(QpDecoder),
}

/// A part's body, decoded as it is read.
struct PartReader {
    file: tokio::io::Take<tokio::fs::File>,
    decoder: Option<Decoder>,
    pending: Vec<u8>,
    slice: Vec<u8>,
}

impl PartReader {
    async fn open(path: &Path, part: &Part) -> std::io::Result<PartReader> {
        let mut file = tokio::fs::File::open(path).await?;
        file.seek(SeekFrom::Start(part.body.start)).await?;
        Ok(PartReader {
            file: file.take(part.body.end - part.body.start),
            decoder: match part.encoding {
                Encoding::Base64 => Some(Decoder::Base64(Base64Decoder::default())),
                Encoding::QuotedPrintable => Some(Decoder::Qp(QpDecoder::default())),
                _ => None,
            },
            pending: Vec::new(),
            slice: vec![0u8; SLICE],
        })
    }

    /// The next `n` decoded octets.
    async fn read(&mut self, n: u64) -> std::io::Result<Vec<u8>> {
        let n = usize::try_from(n).map_err(std::io::Error::other)?;
        self.pending.reserve(n.saturating_sub(self.pending.len()));
        while self.pending.len() < n {
            let got = self.file.read(&mut self.slice).await?;
            if got == 0 {
                // Quoted-printable's last line is decoded at the end.
                if let Some(Decoder::Qp(decoder)) = &mut self.decoder {
                    let before = self.pending.len();
                    decoder.finish(&mut self.pending);
                    self.decoder = None;
                    if self.pending.len() > before {
                        continue;
                    }
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "an attachment ended early: the content file changed",
                ));
            }
            match &mut self.decoder {
                Some(Decoder::Base64(decoder)) => decoder
                    .handle_input(&self.slice[..got], &mut self.pending)
                    .map_err(std::io::Error::other)?,
                Some(Decoder::Qp(decoder)) => decoder
                    .handle_input(&self.slice[..got], &mut self.pending)
                    .map_err(std::io::Error::other)?,
                None => self.pending.extend_from_slice(&self.slice[..got]),
            }
        }
        // The range leaves without a copy; the few octets decoded past it stay.
        let rest = self.pending.split_off(n);
        Ok(std::mem::replace(&mut self.pending, rest))
    }

    /// `Err` if what was read is not all the part held (the scan
    /// counted it: the content file changed).
    fn done(&mut self) -> std::io::Result<()> {
        let decoded_all = match &mut self.decoder {
            Some(Decoder::Base64(decoder)) => decoder.finish().is_ok(),
            Some(Decoder::Qp(decoder)) => {
                let mut rest = Vec::new();
                decoder.finish(&mut rest);
                rest.is_empty()
            }
            None => true,
        };
        match (self.pending.is_empty(), decoded_all) {
            (true, true) => Ok(()),
            _ => Err(std::io::Error::other(
                "an attachment is longer than scanned: the content file changed",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_message_is_exchanges_150_mb_and_a_draft_is_one_request() {
        assert_eq!(MAX_MESSAGE, 157_286_400);
        assert_eq!(MAX_DRAFT.div_ceil(3) * 4, MAX_REQUEST);
    }

    #[tokio::test]
    async fn the_scan_the_draft_and_the_parts_read_back_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.content");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let encoded = STANDARD.encode(&data);
        let mut message = b"To: a@x.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n--b\r\nContent-Disposition: attachment; filename=d.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        for line in encoded.as_bytes().chunks(76) {
            message.extend_from_slice(line);
            message.extend_from_slice(b"\r\n");
        }
        message.extend_from_slice(b"--b--\r\n");
        std::fs::write(&path, &message).unwrap();
        let (size, structure, start) = scan(&path).unwrap();
        assert_eq!(size, message.len() as u64);
        assert_eq!(start, message[..start.len()]);
        assert_eq!(structure.parts.len(), 2);
        let part = &structure.parts[1];
        assert_eq!(
            (part.decoded, part.name.as_deref()),
            (300_000, Some("d.bin"))
        );
        let cut = mime::plan(&structure, size, 1000).unwrap();
        assert_eq!(cut, [1]);
        let edit = bcc::bcc_edit(bcc::header_section(&start), &["c@x.org".to_string()]);
        let pieces = mime::draft_pieces(size, edit.as_ref(), &structure, &cut);
        let draft = STANDARD
            .decode(encode_pieces(&path, &pieces).unwrap())
            .unwrap();
        assert_eq!(
            draft,
            b"Bcc: c@x.org\r\nTo: a@x.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n--b--\r\n"
        );
        // Read back in ranges of odd sizes: the bytes as they were.
        let mut reader = PartReader::open(&path, part).await.unwrap();
        let mut back = Vec::new();
        for (s, e) in upload::ranges(300_000, 70_001) {
            back.extend(reader.read(e - s + 1).await.unwrap());
        }
        assert_eq!(back, data);
        assert!(reader.read(1).await.is_err());
    }

    include!("../../../tests/shared/quoted_printable.rs");

    #[tokio::test]
    async fn a_quoted_printable_part_reads_back_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.content");
        for data in [
            (0..200_000u32)
                .map(|i| (i * 7 % 256) as u8)
                .collect::<Vec<u8>>(),
            b"line one\r\nline = two\r\n\r\n".repeat(3000),
        ] {
            let mut message = b"To: a@x.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n--b\r\nContent-Disposition: attachment; filename=q.bin\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".to_vec();
            message.extend(quoted_printable(&data));
            message.extend_from_slice(b"\r\n--b--\r\n");
            std::fs::write(&path, &message).unwrap();
            let (_, structure, _) = scan(&path).unwrap();
            let part = &structure.parts[1];
            assert_eq!(part.encoding, Encoding::QuotedPrintable);
            assert_eq!(part.decoded, data.len() as u64);
            assert!(part.detachable());
            let mut reader = PartReader::open(&path, part).await.unwrap();
            let mut back = Vec::new();
            for (s, e) in upload::ranges(part.decoded, 70_001) {
                back.extend(reader.read(e - s + 1).await.unwrap());
            }
            assert!(back == data);
            reader.done().unwrap();
        }
    }
}
