//! The header section `emailrelay-submit` writes, and the envelope
//! addresses it finds there, with 2.6.1's rules: header names matched
//! without regard to case and with blanks allowed before the colon,
//! folded fields unfolded by plain concatenation, and the `--content-*`
//! edits made at the top of the section.
//!
//! E-MailRelay compatibility: `--content-from` and `--content-to` remove
//! every line from the first originator (recipient) field to the end of
//! the header section, not only those fields, as 2.6.1 does; and
//! splitting by Bcc writes one `bcc:` line in place of each Bcc field.
//!
//! Must not do I/O.

use super::address::{self, ParseError};

/// Which recipients one message of a `--bcc-split` gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Every recipient: no split.
    All,
    /// The To and Cc recipients, Bcc fields removed.
    ToAndCc,
    /// One Bcc recipient: (envelope address, its text for the Bcc field).
    OneBcc(Vec<u8>, Vec<u8>),
}

/// The header lines (and any `--content` body lines after a blank one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lines(pub Vec<Vec<u8>>);

/// Envelope recipients found in the header fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderRecipients {
    /// To, then Cc.
    pub to: Vec<Vec<u8>>,
    pub bcc: Vec<Vec<u8>>,
    /// The Bcc recipients as header text, one per `bcc`.
    pub bcc_text: Vec<Vec<u8>>,
}

impl Lines {
    /// The envelope sender from From and Sender fields (RFC 5322 section
    /// 3.6.2): a lone From address, else a lone Sender address, else the
    /// first of either; empty if there is none.
    pub fn sender(&self) -> Result<Vec<u8>, ParseError> {
        let (mut from, mut sender) = (Vec::new(), Vec::new());
        self.scan(|name, body, line| {
            if is_field(name, b"From") {
                from.extend(address::address_list(body, line)?);
            } else if is_field(name, b"Sender") {
                sender.extend(address::address(body, line)?);
            }
            Ok(())
        })?;
        let pick = if from.len() == 1 || (sender.len() != 1 && !from.is_empty()) {
            from.into_iter().next()
        } else {
            sender.into_iter().next()
        };
        Ok(pick.unwrap_or_default())
    }

    /// The envelope recipients from To, Cc and Bcc fields.
    pub fn recipients(&self) -> Result<HeaderRecipients, ParseError> {
        let mut found = HeaderRecipients::default();
        let mut cc = Vec::new();
        self.scan(|name, body, line| {
            if is_field(name, b"To") {
                found.to.extend(address::address_list(body, line)?);
            } else if is_field(name, b"cc") {
                cc.extend(address::address_list(body, line)?);
            } else if is_field(name, b"bcc") {
                found.bcc.extend(address::address_list(body, line)?);
                found
                    .bcc_text
                    .extend(address::address_list_for_content(body, line)?);
            }
            Ok(())
        })?;
        found.to.extend(cc);
        Ok(found)
    }

    /// True if any line is a `name` field.
    pub fn has(&self, name: &[u8]) -> bool {
        self.0.iter().any(|l| is_field(l, name))
    }

    /// Puts `line` first.
    pub fn insert_first(&mut self, line: Vec<u8>) {
        self.0.insert(0, line);
    }

    /// Removes everything from the first field named in `names` on.
    pub fn truncate_at_first(&mut self, names: &[&[u8]]) {
        if let Some(i) = self
            .0
            .iter()
            .position(|l| names.iter().any(|n| is_field(l, n)))
        {
            self.0.truncate(i);
        }
    }

    /// The lines written to the content file for one part of a split,
    /// ending the header section with a blank line if none is there.
    pub fn for_part(&self, part: &Part) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut blank = false;
        let mut i = 0;
        while i < self.0.len() {
            let line = &self.0[i];
            let bcc = is_field(line, b"bcc");
            match part {
                Part::OneBcc(_, text) if bcc => {
                    i = self.unfolded_end(i);
                    out.push([&b"bcc: "[..], text].concat());
                }
                Part::ToAndCc if bcc => i = self.unfolded_end(i),
                _ => {
                    blank |= line.is_empty();
                    out.push(line.clone());
                }
            }
            i += 1;
        }
        if !blank {
            out.push(Vec::new());
        }
        out
    }

    /// Calls `f` with each line of the header section (the line, its
    /// field text unfolded after the first colon, its 1-based number), up
    /// to the first blank line.
    fn scan(
        &self,
        mut f: impl FnMut(&[u8], &[u8], usize) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        for (i, line) in self.0.iter().enumerate() {
            if line.is_empty() {
                break;
            }
            // Continuation lines start with a blank, so never match a name.
            let unfolded = self.0[i..=self.unfolded_end(i)].concat();
            let body = match unfolded.iter().position(|&c| c == b':') {
                Some(colon) => &unfolded[colon + 1..],
                None => &unfolded[..0],
            };
            f(line, body, i + 1)?;
        }
        Ok(())
    }

    /// The index of the last continuation line of the field at `i`.
    fn unfolded_end(&self, i: usize) -> usize {
        let mut end = i;
        while end + 1 < self.0.len() && matches!(self.0[end + 1].first(), Some(b' ' | b'\t')) {
            end += 1;
        }
        end
    }
}

/// True if `line` starts a field called `name`: the name in any case,
/// then optional spaces or tabs, then a colon.
pub fn is_field(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len()
        && line[..name.len()].eq_ignore_ascii_case(name)
        && line[name.len()..]
            .iter()
            .find(|c| !matches!(c, b' ' | b'\t'))
            == Some(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Lines {
        Lines(text.lines().map(|l| l.as_bytes().to_vec()).collect())
    }

    fn strings(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    #[test]
    fn field_names() {
        assert!(is_field(b"To: a", b"To"));
        assert!(is_field(b"to \t: a", b"To"));
        assert!(is_field(b"CC:", b"cc"));
        assert!(!is_field(b"Toxic: a", b"To"));
        assert!(!is_field(b"To", b"To"));
        assert!(!is_field(b" To: a", b"To"));
    }

    #[test]
    fn sender_choice() {
        let pick = |t: &str| String::from_utf8(lines(t).sender().unwrap()).unwrap();
        assert_eq!(pick("From: a@b\nSender: s@x"), "a@b");
        assert_eq!(pick("From: a@b, c@d\nSender: s@x"), "s@x");
        assert_eq!(pick("From: a@b, c@d"), "a@b");
        assert_eq!(pick("Sender: s@x\nFrom: a@b, c@d\nSender: t@x"), "a@b");
        assert_eq!(pick("Subject: x\n\nFrom: a@b"), "");
        assert_eq!(
            lines("Subject: s\nFrom: a@b, x")
                .sender()
                .unwrap_err()
                .to_string(),
            "rfc-5322/6532 parsing error: invalid address-list: line 2"
        );
    }

    #[test]
    fn recipients_and_folding() {
        let found = lines("To: a@b,\n c@d\nBcc: \"B\" <b@x>\nCc: e@f\nbcc: g@h\n\nTo: z@z")
            .recipients()
            .unwrap();
        assert_eq!(strings(&found.to), ["a@b", "c@d", "e@f"]);
        assert_eq!(strings(&found.bcc), ["b@x", "g@h"]);
        assert_eq!(strings(&found.bcc_text), ["\"B\" <b@x>", "g@h"]);
    }

    #[test]
    fn split_parts() {
        let l = lines("From: a@b\nBcc: x@y,\n z@w\nSubject: s");
        assert_eq!(
            strings(&l.for_part(&Part::ToAndCc)),
            ["From: a@b", "Subject: s", ""]
        );
        assert_eq!(
            strings(&l.for_part(&Part::OneBcc(b"z@w".to_vec(), b"z@w".to_vec()))),
            ["From: a@b", "bcc: z@w", "Subject: s", ""]
        );
        assert_eq!(strings(&l.for_part(&Part::All)).len(), 5);
        let mut l = lines("Subject: s\nFrom: a@b\nX: 1");
        l.truncate_at_first(&[b"From", b"Sender"]);
        assert_eq!(strings(&l.0), ["Subject: s"]);
    }
}
