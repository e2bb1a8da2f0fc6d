//! emailrelay-rs: an E-MailRelay-compatible SMTP store-and-forward server
//! and proxy. The binaries in `src/bin` are thin; everything is here.
//!
//! Dependency direction: `run` -> {`admin`, `http`} -> `control` ->
//! {`smtp`, `forward`} -> `store` -> `net`;
//! `config` builds each subsystem's settings; all protocol logic lives in
//! the I/O-free `emailrelay-proto` crate.

pub(crate) mod admin;
pub mod auth;
pub(crate) mod child;
pub(crate) mod codec;
pub mod config;
pub(crate) mod control;
pub mod filter;
pub(crate) mod forward;
#[cfg(test)]
mod fuzzing;
pub mod getopt;
pub(crate) mod http;
pub(crate) mod instance;
pub mod log;
// The manual pages' generator: its test writes and checks packaging/man.
#[cfg(test)]
mod man;
pub(crate) mod monitor;
pub mod net;
pub mod passwd;
// The one module that makes system calls the standard library lacks.
#[allow(unsafe_code)]
pub mod platform;
pub(crate) mod pop;
pub mod run;
pub(crate) mod serve;
pub mod service;
pub(crate) mod smtp;
pub mod store;
pub mod submit;
pub mod tls;
pub mod verify;

pub use platform::host::{canonical_hostname, help_columns};
