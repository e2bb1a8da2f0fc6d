//! emailrelay-proto: the protocol logic of emailrelay-rs, with no I/O.
//!
//! Everything here is a state machine that is fed bytes (`handle_*`) and
//! hands back bytes and events (`poll_*`). It must not use sockets, files,
//! processes, clocks or environment variables: the `emailrelay` crate drives
//! these machines and owns all policy and I/O. That split is what lets the
//! bulk of the tests run in memory, in milliseconds.

#![forbid(unsafe_code)]

pub mod admin;
pub mod line;
pub mod pop;
pub mod printable;
pub mod proxy;
pub mod sasl;
pub mod smtp;
