//! Async drivers of the SMTP sessions: the server side (`server`), one
//! outgoing connection (`client`), the forwarding scheduler (`forward`)
//! and its retry timing (`backoff`).

pub mod backoff;
pub mod client;
pub mod forward;
pub mod server;
