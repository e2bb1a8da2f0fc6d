//! Unix: the C library's words.

/// The words for `e`, as E-MailRelay prints them (see the module docs).
pub fn words(e: &std::io::Error) -> String {
    super::plain_words(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_errors_in_the_c_library_words() {
        let e = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(words(&e), "address already in use");
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(words(&e), "no such file or directory");
    }
}
