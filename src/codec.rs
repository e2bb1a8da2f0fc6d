//! The two encodings E-MailRelay 2.6.1's tools apply to command-line
//! values: its strict base64 decoder (`emailrelay-submit --content`,
//! `emailrelay-passwd --base64`) and xtext (RFC 3461 section 4) over
//! bytes, which need not be UTF-8.
//!
//! Must not be used for protocol data: SMTP and SASL have their own,
//! more forgiving, decoders in the proto crate.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a base64 value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Base64Error {
    /// Not strictly base64: E-MailRelay's one message for every case.
    #[error("base64 encoding error")]
    Invalid,
}

/// Decodes base64 as E-MailRelay 2.6.1 does in its strict mode: the
/// standard alphabet only (no spaces or line breaks), padding optional
/// but, if present, one or two `=` at the end of a multiple of four
/// characters, and the bits left over after the last octet all zero.
pub fn base64_decode_strict(text: &[u8]) -> Result<Vec<u8>, Base64Error> {
    let pads = text.iter().rev().take_while(|&&c| c == b'=').count();
    let data = &text[..text.len() - pads];
    let padding_ok = pads == 0 || (pads <= 2 && text.len() % 4 == 0);
    if !padding_ok || text.len() == 1 || data.contains(&b'=') {
        return Err(Base64Error::Invalid);
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for group in data.chunks(4) {
        let mut bits: u32 = 0;
        for &c in group {
            let index = ALPHABET
                .iter()
                .position(|&a| a == c)
                .ok_or(Base64Error::Invalid)?;
            bits = (bits << 6) | index as u32;
        }
        let have = group.len() * 6;
        if have < 8 {
            return Err(Base64Error::Invalid);
        }
        let octets = have / 8;
        let spare = have - octets * 8;
        if bits & ((1 << spare) - 1) != 0 {
            return Err(Base64Error::Invalid);
        }
        let value = bits >> spare;
        for k in (0..octets).rev() {
            out.push((value >> (8 * k)) as u8);
        }
    }
    Ok(out)
}

/// xtext: bytes from `!` to `~` except `+` and `=` as themselves, every
/// other byte as `+XX` in upper-case hex.
pub fn xtext_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
        base64_decode_strict(text.as_bytes())
    }

    #[test]
    fn strict_base64_as_e_mailrelay() {
        assert_eq!(decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(decode("Zm9vYmE=").unwrap(), b"fooba");
        assert_eq!(decode("Zm9vYmE").unwrap(), b"fooba");
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(decode("DQo=").unwrap(), b"\r\n");
        for bad in [
            "Zm9vYmF",
            "Zm9vYh==",
            "Zm9vY",
            "Z",
            "Zm9vYg=",
            "Zm9=vYg=",
            "====",
            "Zm9v YmFy",
            "Zm9v\nYmFy",
            "Zm9vYmFy=",
            "Zm9vYmFy-",
            "A===",
        ] {
            assert_eq!(decode(bad), Err(Base64Error::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn xtext_of_bytes() {
        assert_eq!(xtext_encode(b"a b+="), "a+20b+2B+3D");
        assert_eq!(xtext_encode(b"bo\xe9~"), "bo+E9~");
    }
}
