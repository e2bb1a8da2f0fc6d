//! `spam:` and `spam-edit:`: SpamAssassin's spamd protocol (SPAMC/1.5).
//! `spam:` sends CHECK and rejects the message when spamd says
//! `Spam: True`; `spam-edit:` sends PROCESS and replaces the content with
//! what spamd returns (headers added, spam wrapped as an attachment),
//! without rejecting. One connection per message, as spamd expects.
//!
//! E-MailRelay compatibility: a rejection, or a spamd that cannot be
//! used, is the response `rejected` with the reason (`spam: <score>` or
//! the error) for the log and the envelope.
//!
//! Like spamc, messages above [`MAX_SIZE`] are not sent: spamd would load
//! them whole, and spam is small.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{FilterJob, FilterOutcome};
use crate::platform::files::{AtomicFile, DirSync};

/// spamc's default size limit.
pub const MAX_SIZE: u64 = 512 * 1024;

/// Runs one spamd exchange for `job` within `timeout`.
pub async fn run(address: &str, edit: bool, job: &FilterJob, timeout: Duration) -> FilterOutcome {
    let size = match tokio::fs::metadata(&job.content).await {
        Ok(m) => m.len(),
        Err(e) => return rejected(&format!("spam filter: {e}")),
    };
    if size > MAX_SIZE {
        crate::info!(
            "spam filter: [{}] not checked: {size} bytes is over {MAX_SIZE}",
            job.content.display()
        );
        return FilterOutcome::ok();
    }
    let exchange = exchange(address, edit, &job.content, size);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            crate::warning!("spamd interaction failed: {address}: {e}");
            rejected(&format!("{address}: {e}"))
        }
        Err(_) => {
            let reason = format!(
                "response timeout: no response after {}s while connected to {address}",
                timeout.as_secs()
            );
            crate::warning!("spamd interaction failed: {reason}");
            rejected(&reason)
        }
    }
}

fn rejected(reason: &str) -> FilterOutcome {
    FilterOutcome::fail("rejected", 0, reason)
}

async fn exchange(
    address: &str,
    edit: bool,
    content: &Path,
    size: u64,
) -> std::io::Result<FilterOutcome> {
    let mut stream = crate::net::connect(address, None, Duration::from_secs(30))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let command = if edit { "PROCESS" } else { "CHECK" };
    stream
        .write_all(format!("{command} SPAMC/1.5\r\nContent-length: {size}\r\n\r\n").as_bytes())
        .await?;
    let mut file = tokio::fs::File::open(content).await?;
    tokio::io::copy(&mut (&mut file).take(size), &mut stream).await?;
    stream.flush().await?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader).await?;
    let verdict = parse_head(&head).map_err(std::io::Error::other)?;
    if !edit {
        return Ok(match verdict.spam {
            true => rejected(&format!("spam: {}", verdict.score)),
            false => FilterOutcome::ok(),
        });
    }
    let length = verdict
        .length
        .ok_or_else(|| std::io::Error::other("spamd sent no Content-length"))?;
    replace_content(&mut reader, content, length).await?;
    crate::info!(
        "spam filter: [{}] spam {}: score {}",
        content.display(),
        verdict.spam,
        verdict.score
    );
    Ok(FilterOutcome::ok())
}

/// The response line and headers, up to the blank line.
async fn read_head(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    for _ in 0..64 {
        let mut line = Vec::new();
        reader.take(4096).read_until(b'\n', &mut line).await?;
        if line.is_empty() {
            return Err(std::io::Error::other("spamd closed the connection"));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            return Ok(lines);
        }
        lines.push(text);
    }
    Err(std::io::Error::other("spamd sent too many header lines"))
}

/// What spamd said.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    spam: bool,
    /// `score / threshold`, as spamd wrote it.
    score: String,
    length: Option<u64>,
}

/// A spamd answer that is not a verdict.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum SpamdError {
    /// Nothing at all.
    #[error("empty response")]
    Empty,
    /// An error status line, as spamd wrote it.
    #[error("spamd error: {0}")]
    Status(String),
}

fn parse_head(lines: &[String]) -> Result<Verdict, SpamdError> {
    let status = lines.first().ok_or(SpamdError::Empty)?;
    let mut words = status.split_whitespace();
    let (protocol, code) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if !protocol.starts_with("SPAMD/") || code != "0" {
        return Err(SpamdError::Status(status.clone()));
    }
    let mut verdict = Verdict {
        spam: false,
        score: String::new(),
        length: None,
    };
    for line in &lines[1..] {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "spam" => {
                let (flag, score) = value.split_once(';').unwrap_or((value, ""));
                verdict.spam = flag.trim().eq_ignore_ascii_case("true")
                    || flag.trim().eq_ignore_ascii_case("yes");
                verdict.score = score.trim().to_string();
            }
            "content-length" => verdict.length = value.trim().parse().ok(),
            _ => {}
        }
    }
    Ok(verdict)
}

/// Writes `length` bytes from spamd over the content file, atomically
/// (the spool directory is synced when the message is committed).
async fn replace_content(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    content: &Path,
    length: u64,
) -> std::io::Result<()> {
    let mut tmp = content.as_os_str().to_owned();
    tmp.push(".spam.tmp");
    let (content, tmp) = (content.to_path_buf(), PathBuf::from(tmp));
    let mut atomic = blocking(move || Ok(AtomicFile::create(content, tmp, 0o660)?)).await?;
    // A second handle to the temporary file for the runtime to write
    // through; closed before the commit renames the file.
    let mut out = tokio::fs::File::from_std(atomic.file().try_clone()?);
    let copied = tokio::io::copy(&mut reader.take(length), &mut out).await?;
    out.flush().await?;
    drop(out);
    if copied != length {
        return Err(std::io::Error::other("spamd sent a short message"));
    }
    blocking(move || Ok(atomic.commit(DirSync::Caller)?)).await
}

/// Runs file system calls that block (opening, fsync, rename) off the
/// runtime's threads.
async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(op)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spamd_headers_parse() {
        let head = |t: &str| t.lines().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            parse_head(&head("SPAMD/1.1 0 EX_OK\nSpam: True ; 1003.7 / 5.0")),
            Ok(Verdict {
                spam: true,
                score: "1003.7 / 5.0".into(),
                length: None
            })
        );
        assert_eq!(
            parse_head(&head(
                "SPAMD/1.1 0 EX_OK\nContent-length: 12\nSpam: False ; 0.1 / 5.0"
            )),
            Ok(Verdict {
                spam: false,
                score: "0.1 / 5.0".into(),
                length: Some(12)
            })
        );
        assert_eq!(
            parse_head(&head("SPAMD/1.0 76 Bad header line")),
            Err(SpamdError::Status("SPAMD/1.0 76 Bad header line".into()))
        );
    }
}
