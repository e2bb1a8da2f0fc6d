//! `delivery-trace-report = <address>`: when message trace says a message
//! sent through Graph failed, was quarantined or filtered as spam, a
//! report in plain words goes to that address. It is written into the
//! instance's spool as a complete message with its envelope, as any
//! received message is, and forwarded like one (at the next forwarding
//! pass: `--poll`, or the next message's).
//!
//! The report's envelope sender is empty (`<>`) and its header says
//! `Auto-Submitted: auto-generated` (RFC 3834), and a message sent with
//! either is traced but never reported on: a report about a report never
//! triggers another.
//!
//! Must not: put anything but 7-bit text in the report (the subject it
//! quotes is cut to printable ASCII).

use std::path::Path;

use emailrelay_proto::smtp::Body;

use crate::store::{Envelope, MessageId, Spool, StoreError};

/// Whether a message with this envelope sender and header section may be
/// reported on: not one with an empty sender, nor an automatic one.
pub fn reportable(from: &str, header: &[u8]) -> bool {
    if from.is_empty() || from == "<>" {
        return false;
    }
    let text = String::from_utf8_lossy(header);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("auto-submitted")
                && !value.trim().to_ascii_lowercase().starts_with("no")
            {
                return false;
            }
        }
    }
    true
}

/// The `Subject` field's value from a header section, unfolded.
pub fn subject(header: &[u8]) -> String {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("subject") {
            continue;
        }
        let mut value = value.trim().to_string();
        for more in lines.by_ref() {
            if !more.starts_with([' ', '\t']) {
                break;
            }
            value.push(' ');
            value.push_str(more.trim());
        }
        return value;
    }
    String::new()
}

/// What a final status means, in words.
fn explain(status: &str) -> &'static str {
    match status {
        "failed" => "Exchange could not deliver it",
        "quarantined" => "Exchange put it in quarantine (an administrator can release it in the Microsoft Defender portal)",
        "filteredAsSpam" => "Exchange filtered it as spam",
        _ => "Exchange did not deliver it",
    }
}

/// Printable ASCII only, at most `max` characters.
fn ascii(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c,
            _ => '?',
        })
        .take(max)
        .collect()
}

/// The report's content: header and body, CRLF lines.
pub fn content(
    to: &str,
    mailbox: &str,
    id: &str,
    subject: &str,
    problems: &[(String, String)],
    report_id: &str,
    date: &str,
) -> Vec<u8> {
    let id = ascii(id, 250);
    let subject = ascii(subject, 200);
    let mut worst: Vec<&str> = Vec::new();
    for (_, status) in problems {
        if !worst.contains(&status.as_str()) {
            worst.push(status);
        }
    }
    let mut text = String::new();
    text.push_str(&format!("From: Mail relay <{mailbox}>\r\n"));
    text.push_str(&format!("To: <{to}>\r\n"));
    text.push_str(&format!(
        "Subject: Not delivered ({}): {id}\r\n",
        worst.join(", ")
    ));
    text.push_str(&format!("Date: {date}\r\n"));
    text.push_str(&format!("Message-ID: {report_id}\r\n"));
    text.push_str("Auto-Submitted: auto-generated\r\n");
    text.push_str("MIME-Version: 1.0\r\n");
    text.push_str("Content-Type: text/plain; charset=us-ascii\r\n");
    text.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
    text.push_str(&format!(
        "A message this relay sent through Microsoft Graph as {mailbox} did not\r\n\
         reach every recipient, says Exchange's message trace.\r\n\r\n"
    ));
    text.push_str(&format!("Message-ID: {id}\r\n"));
    text.push_str(&format!("Subject: {subject}\r\n\r\n"));
    for (recipient, status) in problems {
        text.push_str(&format!(
            "{}: {status}: {}.\r\n",
            ascii(recipient, 250),
            explain(status)
        ));
    }
    text.push_str(
        "\r\nThe relay has no copy of the message any more. Search for it by its\r\n\
         Message-ID in the Exchange admin center's message trace for details.\r\n",
    );
    text.into_bytes()
}

/// Writes the report into the spool `dir` with an empty envelope sender,
/// for `to`; the new message's id.
pub async fn write(dir: &Path, to: &str, content: &[u8]) -> Result<MessageId, StoreError> {
    let spool = Spool::open(dir)?;
    let mut message = spool.new_message()?;
    message.write(content)?;
    let envelope = Envelope {
        body: Body::SevenBit,
        from: String::new(),
        to_remote: vec![to.to_string()],
        client: "127.0.0.1".into(),
        ..Envelope::default()
    };
    message.commit(envelope).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_and_automatic_mail_are_never_reported_on() {
        assert!(reportable("a@x", b"Subject: s\r\n\r\n"));
        assert!(!reportable("", b"Subject: s\r\n\r\n"));
        assert!(!reportable(
            "a@x",
            b"auto-submitted:  auto-generated\r\n\r\n"
        ));
        assert!(reportable("a@x", b"Auto-Submitted: no\r\n\r\n"));
        assert!(reportable(
            "a@x",
            b"Subject: s\r\n\r\nAuto-Submitted: x\r\n"
        ));
    }

    #[test]
    fn the_report_names_the_message_its_recipients_and_what_exchange_said() {
        let problems = vec![
            ("bob@x.org".to_string(), "failed".to_string()),
            ("eve@y.org".to_string(), "quarantined".to_string()),
        ];
        let text = content(
            "postmaster@x.org",
            "printer@x.org",
            "<m1@x.org>",
            "scan \u{e9}",
            &problems,
            "<r1@x.org>",
            "Mon, 7 Dec 2026 02:00:00 +0000",
        );
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with(
            "From: Mail relay <printer@x.org>\r\nTo: <postmaster@x.org>\r\n\
             Subject: Not delivered (failed, quarantined): <m1@x.org>\r\n\
             Date: Mon, 7 Dec 2026 02:00:00 +0000\r\nMessage-ID: <r1@x.org>\r\n\
             Auto-Submitted: auto-generated\r\n"
        ));
        assert!(text.contains("\r\n\r\nA message this relay sent"));
        assert!(text.contains("Message-ID: <m1@x.org>\r\nSubject: scan ?\r\n"));
        assert!(text.contains("bob@x.org: failed: Exchange could not deliver it.\r\n"));
        assert!(text.contains("eve@y.org: quarantined: Exchange put it in quarantine"));
        assert!(text.is_ascii());
        assert!(!reportable("", text.as_bytes()));
    }

    #[test]
    fn the_subject_is_unfolded_from_the_header_only() {
        assert_eq!(
            subject(b"To: a\r\nSubject: a\r\n b\r\n\r\nSubject: c\r\n"),
            "a b"
        );
        assert_eq!(subject(b"To: a\r\n\r\nSubject: c\r\n"), "");
    }
}
