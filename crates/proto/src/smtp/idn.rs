//! Internationalised domain names in envelope addresses: each non-ASCII
//! label becomes `xn--` and its punycode (RFC 3492), as E-MailRelay 2.6.1
//! stores the domain of a MAIL or RCPT address. Like 2.6.1, no IDNA
//! mapping (case folding, normalisation) is applied, and empty labels are
//! skipped (`a..b` is `a.b` once encoded). Each label is encoded on its
//! own (2.6.1 carries code points over into the next non-ASCII label,
//! which gives a wrong A-label; that is not copied).
//!
//! Must not do I/O. Inputs are bounded by the caller (a path is at most
//! 256 octets), so the arithmetic cannot overflow.

/// The domain with each non-ASCII label punycoded; an ASCII domain as it is.
pub fn encode(domain: &str) -> String {
    let encoded = encode_bytes(domain.as_bytes(), |label| {
        String::from_utf8_lossy(label)
            .chars()
            .map(u32::from)
            .collect()
    });
    // ASCII in, as it was; otherwise all ASCII: nothing is replaced.
    String::from_utf8_lossy(&encoded).into_owned()
}

/// As [`encode`], for a domain given as bytes: `code_points` decodes each
/// non-ASCII label (`emailrelay-submit` decodes header bytes as 2.6.1
/// does, which Rust's UTF-8 does not).
pub fn encode_bytes(domain: &[u8], code_points: impl Fn(&[u8]) -> Vec<u32>) -> Vec<u8> {
    if domain.is_ascii() {
        return domain.to_vec();
    }
    let mut out = Vec::with_capacity(domain.len() * 2);
    for (i, label) in labels(domain).enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if label.is_ascii() {
            out.extend_from_slice(label);
        } else {
            out.extend_from_slice(b"xn--");
            out.extend_from_slice(punycode(&code_points(label)).as_bytes());
        }
    }
    out
}

/// The labels of a domain: what lies between dots, empty ones skipped.
pub fn labels(domain: &[u8]) -> impl Iterator<Item = &[u8]> {
    domain.split(|&c| c == b'.').filter(|l| !l.is_empty())
}

/// RFC 3492 section 6.3: the punycode of one label, given as code points
/// (without the `xn--`).
pub fn punycode(input: &[u32]) -> String {
    const BASE: u64 = 36;
    const T_MIN: u64 = 1;
    const T_MAX: u64 = 26;
    let digit = |d: u64| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[d as usize]);
    let mut out: String = input
        .iter()
        .filter(|&&c| c < 0x80)
        .map(|&c| char::from(c as u8))
        .collect();
    let basic = out.len();
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias, mut handled) = (0x80u64, 0u64, 72u64, basic);
    while handled < input.len() {
        let Some(m) = input
            .iter()
            .map(|&c| u64::from(c))
            .filter(|&c| c >= n)
            .min()
        else {
            break;
        };
        delta += (m - n) * (handled as u64 + 1);
        n = m;
        for &c in input {
            let c = u64::from(c);
            if c < n {
                delta += 1;
            }
            if c != n {
                continue;
            }
            let mut q = delta;
            let mut k = BASE;
            loop {
                let t = k.saturating_sub(bias).clamp(T_MIN, T_MAX);
                if q < t {
                    break;
                }
                out.push(digit(t + (q - t) % (BASE - t)));
                q = (q - t) / (BASE - t);
                k += BASE;
            }
            out.push(digit(q));
            bias = adapt(delta, handled as u64 + 1, handled == basic);
            delta = 0;
            handled += 1;
        }
        delta += 1;
        n += 1;
    }
    out
}

fn adapt(delta: u64, points: u64, first: bool) -> u64 {
    let mut delta = delta / if first { 700 } else { 2 };
    delta += delta / points;
    let mut k = 0;
    while delta > ((36 - 1) * 26) / 2 {
        delta /= 36 - 1;
        k += 36;
    }
    k + (36 * delta) / (delta + 38)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punycode_labels() {
        assert_eq!(encode("example.com"), "example.com");
        assert_eq!(encode("b\u{fc}cher.example"), "xn--bcher-kva.example");
        assert_eq!(encode("m\u{fc}nchen.de"), "xn--mnchen-3ya.de");
        assert_eq!(encode("\u{fc}.\u{fc}.de"), "xn--tda.xn--tda.de");
        assert_eq!(encode("\u{fc}..de."), "xn--tda.de");
        // RFC 3492 section 7.1 (A): Arabic (Egyptian).
        let arabic = "\u{644}\u{64A}\u{647}\u{645}\u{627}\u{628}\u{62A}\u{643}\u{644}\u{645}\u{648}\u{634}\u{639}\u{631}\u{628}\u{64A}\u{61F}";
        assert_eq!(encode(arabic), "xn--egbpdaj6bu4bxfgehfvwxn");
    }
}
