//! Windows: a socket error in the words the C library uses for the same
//! error on Unix (2.6.1 says `address already in use` for a port in use),
//! a file error in the C runtime's words for the `errno` it maps the
//! error to, anything else in the system's message (`error <n>` where it
//! has none).

/// Windows Sockets errors, in the C library's words for their Unix twins.
const SOCKET_WORDS: [(i32, &str); 14] = [
    (10004, "interrupted system call"),             // WSAEINTR
    (10013, "permission denied"),                   // WSAEACCES
    (10022, "invalid argument"),                    // WSAEINVAL
    (10048, "address already in use"),              // WSAEADDRINUSE
    (10049, "cannot assign requested address"),     // WSAEADDRNOTAVAIL
    (10050, "network is down"),                     // WSAENETDOWN
    (10051, "network is unreachable"),              // WSAENETUNREACH
    (10053, "software caused connection abort"),    // WSAECONNABORTED
    (10054, "connection reset by peer"),            // WSAECONNRESET
    (10057, "transport endpoint is not connected"), // WSAENOTCONN
    (10060, "connection timed out"),                // WSAETIMEDOUT
    (10061, "connection refused"),                  // WSAECONNREFUSED
    (10064, "host is down"),                        // WSAEHOSTDOWN
    (10065, "no route to host"),                    // WSAEHOSTUNREACH
];

/// The C runtime's `errno` words for the system errors it maps (the
/// runtime's own table: missing files and paths are `ENOENT`, refusals
/// `EACCES`, and so on), for the errors a relay meets.
const FILE_WORDS: [(i32, &str); 17] = [
    (2, "no such file or directory"),   // ERROR_FILE_NOT_FOUND
    (3, "no such file or directory"),   // ERROR_PATH_NOT_FOUND
    (4, "too many open files"),         // ERROR_TOO_MANY_OPEN_FILES
    (5, "permission denied"),           // ERROR_ACCESS_DENIED
    (8, "not enough space"),            // ERROR_NOT_ENOUGH_MEMORY
    (15, "no such file or directory"),  // ERROR_INVALID_DRIVE
    (19, "permission denied"),          // ERROR_WRITE_PROTECT
    (32, "permission denied"),          // ERROR_SHARING_VIOLATION
    (33, "permission denied"),          // ERROR_LOCK_VIOLATION
    (53, "no such file or directory"),  // ERROR_BAD_NETPATH
    (67, "no such file or directory"),  // ERROR_BAD_NET_NAME
    (80, "file exists"),                // ERROR_FILE_EXISTS
    (109, "broken pipe"),               // ERROR_BROKEN_PIPE
    (112, "no space left on device"),   // ERROR_DISK_FULL
    (145, "directory not empty"),       // ERROR_DIR_NOT_EMPTY
    (161, "no such file or directory"), // ERROR_BAD_PATHNAME
    (183, "file exists"),               // ERROR_ALREADY_EXISTS
];

/// The words for `e`, as E-MailRelay prints them (see the module docs).
pub fn words(e: &std::io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return super::plain_words(e);
    };
    let known = SOCKET_WORDS.iter().chain(FILE_WORDS.iter());
    if let Some((_, words)) = known.into_iter().find(|(c, _)| *c == code) {
        return (*words).to_string();
    }
    // The system's message, as 2.6.1 trims it; where the system has none
    // (Rust then says that FormatMessageW failed), `error <n>`.
    let text = super::plain_words(e);
    let text = text.trim_end_matches(['.', '\r', '\n', ' ']);
    if text.is_empty() || text.contains("formatmessagew") || text.starts_with("os error") {
        format!("error {code}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_and_file_errors_in_the_c_library_words() {
        let words_of = |code| words(&std::io::Error::from_raw_os_error(code));
        assert_eq!(words_of(10048), "address already in use");
        assert_eq!(words_of(10061), "connection refused");
        assert_eq!(words_of(2), "no such file or directory");
        assert_eq!(words_of(3), "no such file or directory");
        assert_eq!(words_of(5), "permission denied");
        // Anything else: the system's message, trimmed, or its number.
        let other = words_of(1450);
        assert!(!other.ends_with('.') && !other.is_empty(), "{other}");
    }
}
