// Quoted-printable as a mailer writes it, for tests (included by the
// Graph unit tests in src/forward/graph/large.rs and by the integration
// tests): `=XX` for all but printable ASCII, CRLF kept as a line break,
// soft line breaks before 76 characters.

/// `data` encoded as quoted-printable.
pub fn quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3);
    let mut width = 0;
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
            width = 0;
            i += 2;
            continue;
        }
        let b = data[i];
        let text = match b {
            b'!'..=b'<' | b'>'..=b'~' => vec![b],
            _ => format!("={b:02X}").into_bytes(),
        };
        if width + text.len() > 75 {
            out.extend_from_slice(b"=\r\n");
            width = 0;
        }
        width += text.len();
        out.extend(text);
        i += 1;
    }
    out
}
