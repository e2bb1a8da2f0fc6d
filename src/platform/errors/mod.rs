//! The words for a system error, as E-MailRelay prints them after its own
//! (`socket bind error: address already in use`, `invalid spool
//! directory: <dir>: no such file or directory`): lower case (when ASCII),
//! without Rust's ` (os error N)`.
//!
//! On Unix they are the C library's (`strerror`). On Windows 2.6.1 says a
//! socket error in its own words (`address already in use`, `connection
//! refused`), a file error in the C library's words for the `errno` the
//! C runtime maps it to (`no such file or directory` for a missing file
//! or path), and anything else in the system's message text.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// Rust's text for `e` without its ` (os error N)`, lower case when ASCII.
fn plain_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(end) => text[..end].to_string(),
        None => text,
    };
    if text.is_ascii() {
        text.to_lowercase()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lower_case_without_the_error_number() {
        let e = std::io::Error::other("Not Here");
        assert_eq!(words(&e), "not here");
    }
}
