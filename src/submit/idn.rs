//! Internationalised domain names for the envelope: each non-ASCII label
//! becomes `xn--` and its punycode (RFC 3492), as `emailrelay-submit`
//! 2.6.1 writes the domains it takes from header fields. Like 2.6.1, no
//! IDNA mapping (case folding, normalisation) is applied.
//!
//! E-MailRelay compatibility: labels are what lies between dots, empty
//! ones skipped (`a..b` is `a.b` once encoded); a domain is valid if it is
//! printable and each label is printable ASCII or UTF-8. Not copied: 2.6.1
//! carries the code points of one label over into the next, so a second
//! non-ASCII label comes out wrong; here each label is encoded alone.
//!
//! Must not do I/O.

use super::lex::{code_points, utf8_valid};
use emailrelay_proto::printable::is_printable;
use emailrelay_proto::smtp::idn::{encode_bytes, labels};

/// True if 2.6.1 accepts `domain` for encoding.
pub fn valid(domain: &[u8]) -> bool {
    !domain.is_empty()
        && is_printable(domain)
        && labels(domain).all(|label| label.is_ascii() || utf8_valid(label))
}

/// The domain with each non-ASCII label punycoded (the proto crate's
/// encoding, each label decoded as 2.6.1 decodes header bytes); an ASCII
/// domain as it is.
pub fn encode(domain: &[u8]) -> Vec<u8> {
    encode_bytes(domain, code_points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(domain: &str) -> String {
        String::from_utf8(encode(domain.as_bytes())).unwrap()
    }

    #[test]
    fn punycode_labels() {
        assert_eq!(enc("example.com"), "example.com");
        assert_eq!(enc("münchen.de"), "xn--mnchen-3ya.de");
        assert_eq!(enc("Bücher.example"), "xn--Bcher-kva.example");
        assert_eq!(enc("bü.de"), "xn--b-eha.de");
        assert_eq!(enc("ü"), "xn--tda");
        assert_eq!(enc("ü.ü.de"), "xn--tda.xn--tda.de");
        assert_eq!(enc("ü..de."), "xn--tda.de");
        // RFC 3492 section 7.1 (A): Arabic (Egyptian).
        let arabic = "\u{644}\u{64A}\u{647}\u{645}\u{627}\u{628}\u{62A}\u{643}\u{644}\u{645}\u{648}\u{634}\u{639}\u{631}\u{628}\u{64A}\u{61F}";
        assert_eq!(enc(arabic), "xn--egbpdaj6bu4bxfgehfvwxn");
        assert!(valid(b"a..b") && valid("ü.de".as_bytes()));
        assert!(!valid(b"") && !valid(b"a\x01") && !valid(b"\xe9.de"));
    }
}
