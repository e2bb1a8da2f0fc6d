//! Async drivers of the SMTP sessions: the server side (`server`), one
//! outgoing connection (`client`), the forwarding scheduler (`forward`)
//! with its retry timing (`backoff`) and rate limit (`rate`).

pub mod backoff;
pub mod client;
pub mod forward;
pub mod rate;
pub mod server;
