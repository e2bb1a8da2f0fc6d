//! emailrelay-rs: an E-MailRelay-compatible SMTP store-and-forward server
//! and proxy. The binaries in `src/bin` are thin; everything is here.
//!
//! Dependency direction: `run` -> {`admin`, `http`} -> `control` ->
//! {`smtp`, `forward`} -> `store` -> `net`;
//! `config` builds each subsystem's settings; all protocol logic lives in
//! the I/O-free `emailrelay-proto` crate.

pub mod admin;
pub mod auth;
pub mod child;
pub mod codec;
pub mod config;
pub mod control;
pub mod filter;
pub mod forward;
#[cfg(test)]
mod fuzzing;
pub mod getopt;
pub mod http;
pub mod log;
pub mod man;
pub mod monitor;
pub mod net;
pub mod passwd;
// The one module that makes system calls the standard library lacks.
#[allow(unsafe_code)]
pub mod platform;
pub mod pop;
pub mod run;
pub mod serve;
pub mod service;
pub mod smtp;
pub mod store;
pub mod submit;
pub mod tls;
pub mod verify;

pub use platform::host::{canonical_hostname, help_columns};
