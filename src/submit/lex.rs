//! The lexical layer under `address`: RFC 5322 section 3.2 tokens (with
//! RFC 6532 UTF-8) as `emailrelay-submit` 2.6.1 forms them, and UTF-8 by
//! its decoder, which unlike Rust's also takes four-byte sequences above
//! U+10FFFF.
//!
//! ```text
//!   Idle --'"'--> Quote --'"'--> Idle      Idle --atext--> Atom --other--> Idle (again)
//!   Idle --'('--> Comment --')' at depth 1--> Idle
//!   Idle --space/tab--> Space --other--> Idle (again)
//!   Idle --@ : ; , < >--> (one-character token)   anything else --> Error
//! ```
//!
//! E-MailRelay compatibility: a character the lexer refuses is reported
//! at the position after it, and not at all when it is the last one.
//!
//! Must not do I/O.

/// A lexical token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub text: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Atom,
    /// An atom with dots in it.
    DotAtom,
    /// A quoted string, without its quotes and escapes.
    Quote,
    Comment,
    Space,
    /// One of `@ : ; , < >`.
    Char,
}

/// True if `text` is UTF-8 by 2.6.1's decoder (which, unlike Rust's, also
/// takes four-byte sequences above U+10FFFF).
pub fn utf8_valid(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        let (code, n) = utf8_char(&text[i..]);
        if code.is_none() {
            return false;
        }
        i += n;
    }
    true
}

/// One character: its code point (`None` if invalid) and its length (1
/// when invalid).
fn utf8_char(s: &[u8]) -> (Option<u32>, usize) {
    let cont = |i: usize| s.get(i).is_some_and(|&c| c & 0xc0 == 0x80);
    let bits = |i: usize, mask: u8, shift: u32| u32::from(s[i] & mask) << shift;
    match s.first() {
        None => (None, 1),
        Some(&c) if c & 0x80 == 0 => (Some(u32::from(c)), 1),
        Some(&c) if c & 0xe0 == 0xc0 && c & 0x1e != 0 && cont(1) => {
            (Some(bits(0, 0x1f, 6) | bits(1, 0x3f, 0)), 2)
        }
        Some(&c)
            if c & 0xf0 == 0xe0
                && cont(1)
                && cont(2)
                && !(c & 0x0f == 0 && s[1] & 0x20 == 0)
                && !(c & 0x0f == 0x0d && s[1] & 0x20 == 0x20) =>
        {
            (
                Some(bits(0, 0x0f, 12) | bits(1, 0x3f, 6) | bits(2, 0x3f, 0)),
                3,
            )
        }
        Some(&c)
            if c & 0xf8 == 0xf0
                && cont(1)
                && cont(2)
                && cont(3)
                && !(c & 0x07 == 0 && s[1] & 0x30 == 0) =>
        {
            let code = bits(0, 0x07, 18) | bits(1, 0x3f, 12) | bits(2, 0x3f, 6) | bits(3, 0x3f, 0);
            (Some(code), 4)
        }
        Some(_) => (None, 1),
    }
}

/// The code points of `text`, U+FFFD for each invalid byte.
pub fn code_points(text: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let (code, n) = utf8_char(&text[i..]);
        out.push(code.unwrap_or(0xfffd));
        i += n;
    }
    out
}

/// Tokenises a header field body; `Err` holds the byte offset 2.6.1
/// reports. Whitespace and comments next to atoms and quoted strings are
/// dropped, as RFC 5322's `[CFWS]` around them allows.
pub fn lex(line: &[u8]) -> Result<Vec<Token>, usize> {
    #[derive(PartialEq)]
    enum State {
        Idle,
        Atom,
        Quote,
        Comment,
        Space,
        Error,
    }
    let mut out: Vec<Token> = Vec::new();
    let mut state = State::Idle;
    let mut depth = 0;
    let mut escaped = false;
    let mut p = 0;
    while p < line.len() {
        let (code, n) = utf8_char(&line[p..]);
        if code.is_none() || state == State::Error {
            return Err(p);
        }
        let c = line[p];
        let char_bytes = &line[p..p + n];
        let mut again = false;
        let last = out.len().saturating_sub(1);
        match state {
            State::Idle if c == b'"' => {
                state = State::Quote;
                out.push(token(Kind::Quote, b""));
            }
            State::Idle if c == b'(' => {
                state = State::Comment;
                out.push(token(Kind::Comment, b""));
                depth = 1;
            }
            State::Idle if is_atext(c, n) => {
                state = State::Atom;
                out.push(token(Kind::Atom, char_bytes));
            }
            State::Idle if is_ws(c) => {
                state = State::Space;
                out.push(token(Kind::Space, b" "));
            }
            State::Idle if b"@:;,<>".contains(&c) => out.push(token(Kind::Char, &[c])),
            State::Idle => state = State::Error,
            State::Quote if escaped && (is_vchar(c, n) || is_ws(c)) => {
                out[last].text.extend_from_slice(char_bytes)
            }
            State::Quote if escaped => state = State::Error,
            State::Quote if c == b'"' => state = State::Idle,
            State::Quote if c == b'\\' => {}
            State::Quote if is_qtext(c, n) || is_ws(c) => {
                out[last].text.extend_from_slice(char_bytes)
            }
            State::Quote => state = State::Error,
            State::Comment if c == b')' && !escaped && depth == 1 => {
                state = State::Idle;
                depth = 0;
            }
            State::Comment if (c == b')' || c == b'(') && !escaped => {
                out[last].text.push(c);
                depth += if c == b'(' { 1 } else { -1 };
            }
            State::Comment if c == b'\\' && !escaped => {}
            State::Comment if is_ws(c) || is_ctext(c, n) => {
                out[last].text.extend_from_slice(char_bytes)
            }
            State::Comment => state = State::Error,
            State::Atom if c == b'.' => {
                out[last].kind = Kind::DotAtom;
                out[last].text.push(c);
            }
            State::Atom if is_atext(c, n) => out[last].text.extend_from_slice(char_bytes),
            State::Space if is_ws(c) => {}
            State::Atom | State::Space | State::Error => {
                // The token ends here: this character is read again.
                state = State::Idle;
                again = true;
            }
        }
        if again {
            escaped = false;
            continue;
        }
        escaped = !escaped && line[p + n - 1] == b'\\';
        p += n;
    }
    Ok(elide(out))
}

fn token(kind: Kind, text: &[u8]) -> Token {
    Token {
        kind,
        text: text.to_vec(),
    }
}

/// Drops every run of whitespace and comments that touches an atom or a
/// quoted string. (2.6.1 does atoms first and quoted strings second; one
/// pass over both drops the same tokens, runs being separated by other
/// tokens.)
fn elide(tokens: Vec<Token>) -> Vec<Token> {
    let major = |t: &Token| matches!(t.kind, Kind::Atom | Kind::DotAtom | Kind::Quote);
    let is_cfws = |t: &Token| matches!(t.kind, Kind::Space | Kind::Comment);
    let mut keep = vec![true; tokens.len()];
    let mut i = 0;
    while i < tokens.len() {
        if !is_cfws(&tokens[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < tokens.len() && is_cfws(&tokens[i]) {
            i += 1;
        }
        let touches =
            (start > 0 && major(&tokens[start - 1])) || (i < tokens.len() && major(&tokens[i]));
        if touches {
            keep[start..i].iter_mut().for_each(|k| *k = false);
        }
    }
    tokens
        .into_iter()
        .zip(keep)
        .filter_map(|(t, k)| k.then_some(t))
        .collect()
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// `n` is the character's length: any multi-byte character counts (RFC 6532).
fn is_atext(c: u8, n: usize) -> bool {
    n > 1 || c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

fn is_qtext(c: u8, n: usize) -> bool {
    n > 1 || c == 33 || (35..=91).contains(&c) || (93..=126).contains(&c)
}

fn is_ctext(c: u8, n: usize) -> bool {
    n > 1 || (33..=39).contains(&c) || (42..=91).contains(&c) || (93..=126).contains(&c)
}

fn is_vchar(c: u8, n: usize) -> bool {
    n > 1 || (0x21..=0xfe).contains(&c)
}
