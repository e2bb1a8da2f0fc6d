//! The envelope file format, byte-compatible with E-MailRelay 2.6
//! (`X-MailRelay-Format: #2821.8`, CRLF lines, fields in a fixed order).
//!
//! Reading is tolerant (LF or CRLF, older `#2821.x` formats, missing
//! optional fields, unknown fields ignored) so that any E-MailRelay spool
//! forwards unchanged; writing is exact.

use emailrelay_proto::smtp::address::AddressError;
use emailrelay_proto::smtp::{xtext_decode, xtext_encode, Body, Mailbox};

/// The format written.
pub const FORMAT: &str = "#2821.8";

/// One message's envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub body: Body,
    pub from: String,
    /// Local recipients: mailbox names, not forwarded.
    pub to_local: Vec<String>,
    /// Remote recipients: forwarded.
    pub to_remote: Vec<String>,
    /// The AUTH name the client authenticated with ("" if none).
    pub authentication: String,
    /// The client's IP address.
    pub client: String,
    pub client_certificate: String,
    /// The MAIL FROM AUTH= value received; `None` if absent, `Some("")` for `<>`.
    pub mail_from_auth_in: Option<String>,
    /// The AUTH= value to send; "" for the default policy, `<>` for none.
    pub mail_from_auth_out: String,
    pub forward_to: String,
    pub forward_to_address: String,
    pub client_account_selector: String,
    pub utf8_mailbox_names: bool,
    /// Lines after the end marker other than the reason, kept as they are
    /// (E-MailRelay 2.6.1's `split:` writes `X-MailRelay-SplitGroup` lines
    /// there, and its tools keep what they do not know).
    pub extra: Vec<String>,
    /// Set when the message has failed.
    pub reason: Option<String>,
    pub reason_code: Option<u16>,
}

/// Why an envelope file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The first line is not an `X-MailRelay-Format: #2821.x` line.
    #[error("not an envelope file: bad format line")]
    Format,
    /// The `X-MailRelay-End` line is missing: the file is incomplete.
    #[error("envelope file is incomplete: no end marker")]
    Truncated,
    /// A required field is missing.
    #[error("envelope file has no {0} field")]
    Missing(&'static str),
    /// A field that may appear once appears again.
    #[error("envelope file has more than one {0} field")]
    Duplicate(&'static str),
    /// `ToCount` does not match the recipient lines.
    #[error("envelope file says ToCount {said} but has {found} recipients")]
    ToCount { said: String, found: usize },
    /// An address that would not make a valid SMTP command (control
    /// characters, a space outside quotes, extra parameters, too long):
    /// a filter or a person edited the file wrongly, or maliciously.
    #[error("envelope file has an invalid {field} address: {reason}")]
    Address {
        field: &'static str,
        reason: &'static str,
    },
    /// A line before the end marker that is not UTF-8: read lossily, an
    /// address would be forwarded as another one (`\xe9` as U+FFFD), so
    /// the file is set aside instead. Not in 2.6.1, which reads bytes.
    #[error("envelope file has invalid UTF-8 in {0}")]
    Encoding(String),
}

impl Envelope {
    /// The file's bytes, as E-MailRelay writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512);
        // An empty name writes `value` as the whole line (extra lines).
        let mut field = |name: &str, value: &str| {
            if !name.is_empty() {
                out.push_str("X-MailRelay-");
                out.push_str(name);
                out.push_str(": ");
            }
            out.push_str(value);
            out.push_str("\r\n");
        };
        field("Format", FORMAT);
        field("Content", self.body.envelope_keyword());
        field("From", &self.from);
        field(
            "ToCount",
            &(self.to_local.len() + self.to_remote.len()).to_string(),
        );
        for to in &self.to_local {
            field("To-Local", to);
        }
        for to in &self.to_remote {
            field("To-Remote", to);
        }
        field("Authentication", &xtext_encode(&self.authentication));
        field("Client", &self.client);
        // E-MailRelay compatibility: a PEM certificate is folded, each line
        // after the first starting with a space. Trailing line ends go
        // first: `lines` drops only the last one, and a folded empty line
        // would read back as one line end less, so a second write would
        // differ.
        let certificate: Vec<&str> = self
            .client_certificate
            .trim_end_matches(['\r', '\n'])
            .lines()
            .collect();
        field("ClientCertificate", &certificate.join("\r\n "));
        let auth_in = match &self.mail_from_auth_in {
            None => String::new(),
            Some(a) if a.is_empty() => "<>".to_string(),
            Some(a) => xtext_encode(a),
        };
        field("MailFromAuthIn", &auth_in);
        field("MailFromAuthOut", &self.mail_from_auth_out);
        field("ForwardTo", &self.forward_to);
        field("ForwardToAddress", &self.forward_to_address);
        field("ClientAccountSelector", &self.client_account_selector);
        field(
            "Utf8MailboxNames",
            if self.utf8_mailbox_names { "1" } else { "0" },
        );
        field("End", "1");
        for line in &self.extra {
            field("", &sanitise(line));
        }
        if let Some(reason) = &self.reason {
            field("Reason", &sanitise(reason));
            field(
                "ReasonCode",
                &self.reason_code.map(|c| c.to_string()).unwrap_or_default(),
            );
        }
        out.into_bytes()
    }

    /// Parses an envelope file. Fields before the end marker must be
    /// UTF-8: a lossy reading would forward a different address than the
    /// file holds (see [`EnvelopeError::Encoding`]); lines after it (a
    /// reason, a tool's extra lines) are only kept, so read leniently.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut raw_lines = bytes
            .strip_suffix(b"\n")
            .unwrap_or(bytes)
            .split(|&b| b == b'\n');
        let first = raw_lines.next().map(String::from_utf8_lossy);
        let format = first
            .as_deref()
            .map(|l| l.trim_end_matches('\r'))
            .and_then(|l| l.strip_prefix("X-MailRelay-Format: "))
            .ok_or(EnvelopeError::Format)?;
        if !format.starts_with("#2821.") {
            return Err(EnvelopeError::Format);
        }
        let mut env = Envelope::default();
        let (mut have_from, mut ended) = (false, false);
        let mut to_count = None;
        let mut last_field = String::new();
        for raw in raw_lines {
            let line = match std::str::from_utf8(raw) {
                Ok(line) => std::borrow::Cow::Borrowed(line),
                Err(_) if ended => String::from_utf8_lossy(raw),
                Err(_) => return Err(not_utf8(raw, &last_field)),
            };
            let line = line.trim_end_matches('\r');
            // Only fields before the end marker are folded: after it, a line
            // starting with a space is an extra line like any other (the
            // writer makes one of a line that started with a control).
            if let Some(more) = line.strip_prefix(' ').filter(|_| !ended) {
                if last_field == "ClientCertificate" {
                    env.client_certificate.push('\n');
                    env.client_certificate.push_str(more);
                }
                continue;
            }
            let Some((name, value)) = line
                .strip_prefix("X-MailRelay-")
                .and_then(|l| l.split_once(':'))
            else {
                if ended && !line.is_empty() {
                    env.extra.push(line.to_string());
                }
                continue;
            };
            if ended && !matches!(name, "Reason" | "ReasonCode") {
                env.extra.push(line.to_string());
                continue;
            }
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            last_field = name.to_string();
            match name {
                "Content" => env.body = Body::from_envelope_keyword(&value),
                "From" if have_from => return Err(EnvelopeError::Duplicate("From")),
                "From" => {
                    env.from = value;
                    have_from = true;
                }
                "ToCount" => to_count = Some(value),
                "To-Local" => env.to_local.push(value),
                "To-Remote" => env.to_remote.push(value),
                "Authentication" => env.authentication = xtext_decode(&value),
                "Client" => env.client = value,
                "ClientCertificate" => env.client_certificate = value,
                "MailFromAuthIn" => env.mail_from_auth_in = parse_auth_in(&value),
                "MailFromAuthOut" => env.mail_from_auth_out = value,
                "ForwardTo" => env.forward_to = value,
                "ForwardToAddress" => env.forward_to_address = value,
                "ClientAccountSelector" => env.client_account_selector = value,
                "Utf8MailboxNames" => env.utf8_mailbox_names = value == "1",
                "End" => ended = true,
                "Reason" => env.reason = Some(value),
                "ReasonCode" => env.reason_code = value.parse().ok(),
                _ => {}
            }
        }
        if !ended {
            return Err(EnvelopeError::Truncated);
        }
        if !have_from {
            return Err(EnvelopeError::Missing("From"));
        }
        env.check(to_count)?;
        Ok(env)
    }

    /// The checks that keep a wrongly edited file from becoming a wrong
    /// SMTP command upstream: every address a valid path (the server's own
    /// rules), recipients not empty, and as many as `ToCount` says.
    fn check(&self, to_count: Option<String>) -> Result<(), EnvelopeError> {
        let found = self.to_local.len() + self.to_remote.len();
        if let Some(said) = to_count.filter(|said| said.trim().parse() != Ok(found)) {
            return Err(EnvelopeError::ToCount { said, found });
        }
        check_address("From", &self.from)?;
        for (field, list) in [("To-Local", &self.to_local), ("To-Remote", &self.to_remote)] {
            for to in list {
                if to.is_empty() {
                    return Err(EnvelopeError::Address {
                        field,
                        reason: "empty",
                    });
                }
                check_address(field, to)?;
            }
        }
        Ok(())
    }
}

/// The error for a line before the end marker that is not UTF-8: the
/// field it belongs to (its own name, or the field a folded line
/// continues), as an address error for the address fields.
fn not_utf8(raw: &[u8], last_field: &str) -> EnvelopeError {
    let name = raw
        .strip_prefix(b"X-MailRelay-")
        .and_then(|rest| rest.split(|&b| b == b':').next())
        .map(|name| String::from_utf8_lossy(name).into_owned());
    let name = match (name, raw.first()) {
        (Some(name), _) => name,
        (None, Some(b' ')) if !last_field.is_empty() => last_field.to_string(),
        (None, _) => String::new(),
    };
    let address = ["From", "To-Local", "To-Remote"]
        .into_iter()
        .find(|field| *field == name);
    match (address, name.as_str()) {
        (Some(field), _) => EnvelopeError::Address {
            field,
            reason: "not valid UTF-8",
        },
        (None, "") => EnvelopeError::Encoding("a line".into()),
        (None, other) => EnvelopeError::Encoding(format!(
            "the {} field",
            emailrelay_proto::printable::printable(other.as_bytes())
        )),
    }
}

fn check_address(field: &'static str, address: &str) -> Result<(), EnvelopeError> {
    Mailbox::new(address)
        .map(|_| ())
        .map_err(|e| EnvelopeError::Address {
            field,
            reason: match e {
                AddressError::TooLong => "too long",
                AddressError::Quoting => "unclosed quote",
                _ => "control character, space or misplaced @",
            },
        })
}

fn parse_auth_in(value: &str) -> Option<String> {
    match value {
        "" => None,
        "<>" => Some(String::new()),
        other => Some(xtext_decode(other)),
    }
}

/// A reason goes on one line: no CR, LF or other control characters.
fn sanitise(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            from: "alice@example.com".into(),
            to_remote: vec!["bob@example.org".into(), "carol@example.net".into()],
            client: "127.0.0.1".into(),
            ..Envelope::default()
        }
    }

    #[test]
    fn writes_the_emailrelay_layout() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        let expected = "X-MailRelay-Format: #2821.8\r\nX-MailRelay-Content: unknown\r\n\
            X-MailRelay-From: alice@example.com\r\nX-MailRelay-ToCount: 2\r\n\
            X-MailRelay-To-Remote: bob@example.org\r\nX-MailRelay-To-Remote: carol@example.net\r\n\
            X-MailRelay-Authentication: \r\nX-MailRelay-Client: 127.0.0.1\r\n\
            X-MailRelay-ClientCertificate: \r\nX-MailRelay-MailFromAuthIn: \r\n\
            X-MailRelay-MailFromAuthOut: \r\nX-MailRelay-ForwardTo: \r\n\
            X-MailRelay-ForwardToAddress: \r\nX-MailRelay-ClientAccountSelector: \r\n\
            X-MailRelay-Utf8MailboxNames: 0\r\nX-MailRelay-End: 1\r\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn round_trips_with_reason() {
        let mut env = sample();
        env.to_local.push("postmaster".into());
        env.mail_from_auth_in = Some("bob smith".into());
        env.authentication = "bob=x".into();
        env.reason = Some("one or more\r\nrecipients rejected".into());
        env.reason_code = Some(550);
        let text = String::from_utf8(env.to_bytes()).unwrap();
        assert!(text.ends_with("X-MailRelay-End: 1\r\nX-MailRelay-Reason: one or more  recipients rejected\r\nX-MailRelay-ReasonCode: 550\r\n"));
        assert!(text.contains("X-MailRelay-MailFromAuthIn: bob+20smith\r\n"));
        let back = Envelope::parse(text.as_bytes()).unwrap();
        assert_eq!(back.to_local, ["postmaster"]);
        assert_eq!(back.authentication, "bob=x");
        assert_eq!(back.reason_code, Some(550));
    }

    #[test]
    fn lines_after_the_end_marker_are_kept() {
        let mut env = sample();
        env.extra = vec![
            "X-MailRelay-SplitGroupCount: 2".into(),
            "X-MailRelay-SplitGroup: emailrelay.1.2.3".into(),
        ];
        env.reason = Some("failed".into());
        let text = String::from_utf8(env.to_bytes()).unwrap();
        assert!(text.ends_with(
            "X-MailRelay-End: 1\r\nX-MailRelay-SplitGroupCount: 2\r\n\
             X-MailRelay-SplitGroup: emailrelay.1.2.3\r\nX-MailRelay-Reason: failed\r\n\
             X-MailRelay-ReasonCode: \r\n"
        ));
        let back = Envelope::parse(text.as_bytes()).unwrap();
        assert_eq!(back.extra, env.extra);
        assert_eq!(back.reason.as_deref(), Some("failed"));
    }

    #[test]
    fn extra_lines_made_to_start_with_a_space_read_back() {
        // Found by fuzz/fuzz_targets/envelope.rs: a tab became a space when
        // written, and the line then read back as a folded continuation and
        // was dropped, so a second write differed from the first.
        let mut text = String::from_utf8(sample().to_bytes()).unwrap();
        text.push_str("\tX-MailRelay-SplitGroup: a\r\n \r\n");
        let env = Envelope::parse(text.as_bytes()).unwrap();
        assert_eq!(env.extra, ["\tX-MailRelay-SplitGroup: a", " "]);
        let again = Envelope::parse(&env.to_bytes()).unwrap();
        assert_eq!(again.extra, [" X-MailRelay-SplitGroup: a", " "]);
        assert_eq!(again.to_bytes(), env.to_bytes());
    }

    #[test]
    fn client_certificates_are_folded_and_unfolded() {
        let mut env = sample();
        env.client_certificate =
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into();
        let text = String::from_utf8(env.to_bytes()).unwrap();
        assert!(text.contains(
            "X-MailRelay-ClientCertificate: -----BEGIN CERTIFICATE-----\r\n MIIB\r\n -----END CERTIFICATE-----\r\nX-MailRelay-MailFromAuthIn: \r\n"
        ));
        let back = Envelope::parse(text.as_bytes()).unwrap();
        assert_eq!(
            back.client_certificate,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
        );
        assert_eq!(back.to_remote, env.to_remote);
    }

    #[test]
    fn folded_empty_lines_at_the_end_of_a_certificate_write_stably() {
        // Found by fuzz/fuzz_targets/envelope.rs: "A\n\n" was written as "A"
        // and one folded empty line, which read back as "A\n" and was then
        // written without it.
        let mut env = sample();
        env.client_certificate = "A\n\n".into();
        let once = env.to_bytes();
        assert!(String::from_utf8_lossy(&once)
            .contains("X-MailRelay-ClientCertificate: A\r\nX-MailRelay-MailFromAuthIn"));
        let back = Envelope::parse(&once).unwrap();
        assert_eq!(back.client_certificate, "A");
        assert_eq!(back.to_bytes(), once);
        env.client_certificate = "A\n\nB\n".into();
        let back = Envelope::parse(&env.to_bytes()).unwrap();
        assert_eq!(back.client_certificate, "A\n\nB");
        assert_eq!(back.to_bytes(), env.to_bytes());
    }

    #[test]
    fn fields_that_are_not_utf8_make_a_malformed_envelope_not_a_lossy_one() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        let with = |from: &str, to: &[u8]| {
            let (head, tail) = text.split_once(from).unwrap();
            let mut bytes = head.as_bytes().to_vec();
            bytes.extend_from_slice(to);
            bytes.extend_from_slice(tail.as_bytes());
            Envelope::parse(&bytes)
        };
        let address = |field| EnvelopeError::Address {
            field,
            reason: "not valid UTF-8",
        };
        assert_eq!(
            with("bob@example.org", b"b\xe9b@example.org"),
            Err(address("To-Remote"))
        );
        assert_eq!(
            with("alice@example.com", b"\xff@example.com"),
            Err(address("From"))
        );
        assert_eq!(
            with("ForwardToAddress: ", b"ForwardToAddress: h\xc3st:25"),
            Err(EnvelopeError::Encoding("the ForwardToAddress field".into()))
        );
        assert_eq!(
            with("ClientCertificate: ", b"ClientCertificate: A\r\n \xff"),
            Err(EnvelopeError::Encoding(
                "the ClientCertificate field".into()
            ))
        );
        assert_eq!(
            Envelope::parse(
                &[
                    &b"X-MailRelay-Format: #2821.8\r\n\xff\r\n"[..],
                    text.as_bytes()
                ]
                .concat()
            ),
            Err(EnvelopeError::Encoding("a line".into()))
        );
        assert_eq!(
            address("To-Remote").to_string(),
            "envelope file has an invalid To-Remote address: not valid UTF-8"
        );
        // Valid UTF-8 addresses read as they are; after the end marker,
        // lines are only kept, so they are read leniently.
        let env = with("bob@example.org", "b\u{e9}b@example.org".as_bytes()).unwrap();
        assert_eq!(env.to_remote[0], "b\u{e9}b@example.org");
        let mut failed = text.clone().into_bytes();
        failed.extend_from_slice(b"X-MailRelay-Reason: caf\xe9\r\n");
        let env = Envelope::parse(&failed).unwrap();
        assert_eq!(env.reason.as_deref(), Some("caf\u{fffd}"));
    }

    #[test]
    fn reads_lf_files_and_older_formats_and_refuses_truncated_ones() {
        let text =
            "X-MailRelay-Format: #2821.5\nX-MailRelay-Content: 8bit\nX-MailRelay-From: a@b\n\
            X-MailRelay-ToCount: 1\nX-MailRelay-To-Remote: c@d\nX-MailRelay-Client: 10.0.0.1\n\
            X-MailRelay-ForwardToAddress: 127.0.0.1:2525\nX-MailRelay-End: 1\n";
        let env = Envelope::parse(text.as_bytes()).unwrap();
        assert_eq!(env.body, Body::EightBitMime);
        assert_eq!(env.forward_to_address, "127.0.0.1:2525");
        let cut = &text[..text.len() - 20];
        assert_eq!(
            Envelope::parse(cut.as_bytes()),
            Err(EnvelopeError::Truncated)
        );
        assert_eq!(Envelope::parse(b"hello\r\n"), Err(EnvelopeError::Format));
    }
}
