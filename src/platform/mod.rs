//! What differs between Linux (and other Unix systems) and Windows, one
//! module per concern, so that nothing else in the crate carries a
//! `cfg(unix)` or `cfg(windows)`:
//!
//! - [`process`]: running in the background, accounts and privileges,
//!   the open-file limit, the file-creation mask;
//! - [`signals`]: the events that stop the relay or reopen its log
//!   (signals on Unix; console and service events on Windows);
//! - [`files`]: spool-file primitives: opening without following links,
//!   holding a file against crash recovery without blocking its readers,
//!   flushing, durable renames, free space, permissions;
//! - [`listen`]: binding listeners (exclusively on Windows), inherited
//!   sockets, local (Unix-domain) sockets, interface addresses, the words
//!   for a client that closed its end;
//! - [`console`]: standard output and error with the system's line ends,
//!   the program's name as typed;
//! - [`errors`]: the words for a system error, as E-MailRelay prints them;
//! - [`child`]: how a filter or verifier program is started, how its
//!   whole process tree is ended, what its exit status means;
//! - [`syslog`]: the system log (syslog on Unix, the Event Log on Windows);
//! - [`host`]: the host's canonical name, its DNS server, default paths,
//!   the terminal;
//! - [`notify`]: telling the service manager (systemd) how startup went;
//! - [`pam`]: PAM, on Unix;
//! - [`service`]: the Windows service manager (`emailrelay-service`).
//!
//! Each concern has the same public items on both systems (a feature a
//! system lacks answers [`unsupported`]). Every `unsafe` block of the
//! crate outside the PAM module is here, each with its reason.

pub mod child;
pub mod console;
pub mod errors;
pub mod files;
pub mod host;
pub mod listen;
pub mod notify;
pub mod pam;
pub mod process;
pub mod service;
pub mod signals;
pub mod syslog;

/// True when built for Windows (for tables that list both systems' forms).
pub const WINDOWS: bool = cfg!(windows);

/// The error for something this system does not do, naming it.
pub fn unsupported(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("{what} is not available on this system"),
    )
}
