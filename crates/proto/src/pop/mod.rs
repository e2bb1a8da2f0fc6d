//! POP3 (RFC 1939) without I/O: the server session, with CAPA (RFC 2449),
//! STLS (RFC 2595), SASL AUTH (RFC 5034, mechanisms from [`crate::sasl`])
//! and APOP, speaking as E-MailRelay 2.6.1's POP server does.
//!
//! The session never touches a mailbox: it asks the driver to check
//! credentials, to list the maildrop, to stream a message and to delete
//! messages at QUIT, through [`Event`]s, and acts on the answers. See
//! [`session`] for the state diagram.

pub mod command;
pub mod content;
mod session;

pub use command::Command;
pub use content::ContentEncoder;
pub use session::{AuthMethod, Event, MessageInfo, PopConfig, PopSession};

/// Longest command line, CRLF included (RFC 2449 section 4: 255 octets).
/// An AUTH command whose initial response would not fit must be sent
/// without it (RFC 5034 section 4), and APOP's name and digest fit.
pub const MAX_COMMAND_LINE: usize = 255;
/// Longest AUTH response line (RFC 5034 section 4 sets no limit; SMTP's
/// 12288 of RFC 4954 is plenty).
pub const MAX_AUTH_LINE: usize = 12288;
