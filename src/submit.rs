//! `emailrelay-submit`: writes a message straight into the spool, with the
//! envelope recipients from the command line or (`--bcc-split`) from the
//! To/Cc/Bcc headers, one message per Bcc recipient.
//!
//! Must not talk SMTP: the relay picks the files up like any other.

use std::io::{BufRead, Read};
use std::path::PathBuf;

use base64::Engine;

use crate::store::{Envelope, Spool};

/// `emailrelay-submit` options.
#[derive(Clone, Debug, Default)]
pub struct SubmitOptions {
    pub spool_dir: PathBuf,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub input_file: Option<PathBuf>,
    /// Base64 content lines (`--content`), before any input file.
    pub content: Vec<String>,
    /// `--body`: the input file is the body only (headers come from `--content`).
    pub body: bool,
    pub bcc_split: bool,
    pub add_date: bool,
    pub add_to: bool,
    pub add_from: bool,
    pub add_message_id: bool,
    pub verbose: bool,
}

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no recipients: give them on the command line or use --bcc-split")]
    NoRecipients,
    #[error("invalid --content value: not base64: {0}")]
    Base64(String),
    #[error("cannot read input: {0}")]
    Input(std::io::Error),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("invalid address [{0}]")]
    Address(String),
}

/// Submits; returns the ids written.
pub async fn submit(
    options: &SubmitOptions,
    stdin: &mut dyn Read,
) -> Result<Vec<String>, SubmitError> {
    let lines = content_lines(options, stdin)?;
    let (headers, body) = split_headers(&lines);
    let from = options
        .from
        .clone()
        .or_else(|| header_addresses(headers, "from").into_iter().next())
        .unwrap_or_default();
    let mut batches: Vec<(Vec<String>, bool)> = Vec::new();
    if !options.to.is_empty() {
        batches.push((options.to.clone(), false));
    } else if options.bcc_split {
        let mut visible = header_addresses(headers, "to");
        visible.extend(header_addresses(headers, "cc"));
        if !visible.is_empty() {
            batches.push((visible, true));
        }
        for bcc in header_addresses(headers, "bcc") {
            batches.push((vec![bcc], true));
        }
    }
    if batches.is_empty() {
        return Err(SubmitError::NoRecipients);
    }
    for addr in batches
        .iter()
        .flat_map(|(b, _)| b)
        .chain(std::iter::once(&from))
    {
        emailrelay_proto::smtp::Mailbox::new(addr)
            .map_err(|_| SubmitError::Address(addr.clone()))?;
    }
    let spool = Spool::open(&options.spool_dir)?;
    let mut ids = Vec::new();
    for (recipients, strip_bcc) in batches {
        let mut message = spool.new_message()?;
        let mut text = extra_headers(options, &from, &recipients, headers);
        for line in headers
            .iter()
            .filter(|l| !(strip_bcc && is_header(l, "bcc")))
        {
            text.push_str(line);
            text.push_str("\r\n");
        }
        for line in body {
            text.push_str(line);
            text.push_str("\r\n");
        }
        message.write(text.as_bytes())?;
        let envelope = Envelope {
            from: from.clone(),
            utf8_mailbox_names: !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii()),
            to_remote: recipients,
            ..Envelope::default()
        };
        let id = message.commit(envelope).await?;
        if options.verbose {
            println!("{}", spool.path(&id, ".content").display());
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

fn content_lines(
    options: &SubmitOptions,
    stdin: &mut dyn Read,
) -> Result<Vec<String>, SubmitError> {
    let mut lines = Vec::new();
    for encoded in &options.content {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|_| SubmitError::Base64(encoded.clone()))?;
        lines.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    let read_input = options.input_file.is_some() || options.content.is_empty() || options.body;
    if read_input {
        let reader: Box<dyn BufRead> = match &options.input_file {
            Some(path) => Box::new(std::io::BufReader::new(
                std::fs::File::open(path).map_err(SubmitError::Input)?,
            )),
            None => Box::new(std::io::BufReader::new(stdin)),
        };
        if options.body && !lines.is_empty() && !lines.iter().any(String::is_empty) {
            lines.push(String::new());
        }
        for line in reader.lines() {
            let line = line.map_err(SubmitError::Input)?;
            // A lone "." line ends input, as with sendmail-style tools.
            if line == "." && options.input_file.is_none() {
                break;
            }
            lines.push(line.trim_end_matches('\r').to_string());
        }
    }
    Ok(lines)
}

fn split_headers(lines: &[String]) -> (&[String], &[String]) {
    match lines.iter().position(String::is_empty) {
        Some(blank) => (&lines[..blank], &lines[blank..]),
        None => (lines, &[]),
    }
}

fn is_header(line: &str, name: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
}

/// Addresses in a header (with folded continuation lines): `<...>` parts,
/// or bare comma-separated words containing `@`.
fn header_addresses(headers: &[String], name: &str) -> Vec<String> {
    let mut value = String::new();
    let mut inside = false;
    for line in headers {
        if line.starts_with([' ', '\t']) {
            if inside {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        inside = is_header(line, name);
        if inside {
            value.push(',');
            value.push_str(line.split_once(':').map(|(_, v)| v).unwrap_or(""));
        }
    }
    value
        .split(',')
        .filter_map(|part| match (part.find('<'), part.rfind('>')) {
            (Some(a), Some(b)) if a < b => Some(part[a + 1..b].trim().to_string()),
            _ => part
                .split_whitespace()
                .find(|w| w.contains('@'))
                .map(str::to_string),
        })
        .filter(|a| !a.is_empty())
        .collect()
}

fn extra_headers(options: &SubmitOptions, from: &str, to: &[String], headers: &[String]) -> String {
    let mut text = String::new();
    if options.add_date && !headers.iter().any(|h| is_header(h, "date")) {
        text.push_str(&format!(
            "Date: {}\r\n",
            chrono::Local::now().format("%a, %d %b %Y %H:%M:%S %z")
        ));
    }
    if options.add_from && !headers.iter().any(|h| is_header(h, "from")) {
        text.push_str(&format!("From: <{from}>\r\n"));
    }
    if options.add_to && !headers.iter().any(|h| is_header(h, "to")) {
        let list: Vec<String> = to.iter().map(|t| format!("<{t}>")).collect();
        text.push_str(&format!("To: {}\r\n", list.join(", ")));
    }
    if options.add_message_id && !headers.iter().any(|h| is_header(h, "message-id")) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        text.push_str(&format!(
            "Message-ID: <{nanos}.{}@{}>\r\n",
            std::process::id(),
            crate::sys::canonical_hostname()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_header_addresses() {
        let headers: Vec<String> = [
            "From: Alice <alice@example.com>",
            "To: bob@x, \"Carol\" <carol@y>",
            "Bcc: <d@z>,",
            " e@w",
            "Subject: hi",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(header_addresses(&headers, "from"), ["alice@example.com"]);
        assert_eq!(header_addresses(&headers, "to"), ["bob@x", "carol@y"]);
        assert_eq!(header_addresses(&headers, "bcc"), ["d@z", "e@w"]);
        assert!(header_addresses(&headers, "cc").is_empty());
    }
}
