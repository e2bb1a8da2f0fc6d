//! Standard output and error as text: lines end as the system's text files
//! do (`\r\n` on Windows, as 2.6.1's console programs write them there;
//! `\n` on Unix). The [`stdoutln!`](crate::stdoutln) family of macros
//! writes through these.

use std::io::{self, Write};

use super::files::LINE_END;

/// A writer that ends lines as the system does.
pub struct Text<W: Write>(pub W);

impl<W: Write> Write for Text<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if LINE_END == "\n" || !buf.contains(&b'\n') {
            return self.0.write(buf);
        }
        // All or nothing per call, so that a short write never splits the
        // line end from what it translates.
        let mut translated = Vec::with_capacity(buf.len() + 8);
        for &b in buf {
            if b == b'\n' {
                translated.extend_from_slice(LINE_END.as_bytes());
            } else {
                translated.push(b);
            }
        }
        self.0.write_all(&translated)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The key that ends what is typed at the terminal, as help texts name
/// it: `^D` on Unix, `^Z` on Windows (as 2.6.1's emailrelay-submit says).
pub const END_OF_INPUT: &str = if super::WINDOWS { "^Z" } else { "^D" };

/// The program's name as E-MailRelay's top-level errors give it (a port
/// in use, a spool directory or secrets file that cannot be used): on
/// Windows the last part of the command as it was typed, so with `.exe`
/// where that was typed or where a shortcut or the service gives the full
/// path (`emailrelay.exe: error: ...`), as 2.6.1 says it there; errors in
/// the command line's syntax keep the bare name. On Unix, `name`.
pub fn name_as_typed(name: &str) -> String {
    if !super::WINDOWS {
        return name.to_string();
    }
    let argv0 = std::env::args_os()
        .next()
        .map(super::files::os_to_bytes)
        .unwrap_or_default();
    match argv0.rsplit(|&b| super::files::is_separator(b)).next() {
        Some(last) if !last.is_empty() => String::from_utf8_lossy(last).into_owned(),
        _ => name.to_string(),
    }
}

/// Standard output, as text.
pub fn stdout() -> Text<io::Stdout> {
    Text(io::stdout())
}

/// Standard error, as text.
pub fn stderr() -> Text<io::Stderr> {
    Text(io::stderr())
}

/// Writes formatted text to standard output (see [`Text`]); errors are dropped.
#[macro_export]
macro_rules! stdout {
    ($($t:tt)*) => {{
        use ::std::io::Write as _;
        let _ = write!($crate::platform::console::stdout(), $($t)*);
    }};
}

/// As [`stdout!`], with a line end.
#[macro_export]
macro_rules! stdoutln {
    () => { $crate::stdout!("\n") };
    ($($t:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!($crate::platform::console::stdout(), $($t)*);
    }};
}

/// Writes formatted text to standard error (see [`Text`]); errors are dropped.
#[macro_export]
macro_rules! stderr {
    ($($t:tt)*) => {{
        use ::std::io::Write as _;
        let _ = write!($crate::platform::console::stderr(), $($t)*);
    }};
}

/// As [`stderr!`], with a line end.
#[macro_export]
macro_rules! stderrln {
    () => { $crate::stderr!("\n") };
    ($($t:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!($crate::platform::console::stderr(), $($t)*);
    }};
}
