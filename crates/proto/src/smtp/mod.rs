//! SMTP (RFC 5321) codecs and sessions, with the ESMTP extensions the relay
//! speaks: PIPELINING (RFC 2920), 8BITMIME, SIZE (RFC 1870), SMTPUTF8
//! (RFC 6531) and AUTH= parameters (RFC 4954).

pub mod address;
pub mod client;
pub mod command;
pub mod dot;
pub mod hops;
pub mod idn;
pub mod reply;
pub mod server;

pub use address::{xtext_decode, xtext_encode, Mailbox};
pub use client::{
    ClientAuth, ClientConfig, ClientEvent, ClientSession, OutgoingMessage, SendOutcome, Strictness,
    TlsPolicy,
};
pub use command::{AddressSyntax, Body, Command, MailParams};
pub use dot::DotStuffer;
pub use hops::HopCounter;
pub use reply::Reply;
pub use server::{
    AuthConfig, AuthResult, Authenticated, Event, LogLine, MessageResult, ServerConfig,
    ServerSession, Transaction, VerifyResult,
};
