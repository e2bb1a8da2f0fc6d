//! Async drivers of the SMTP sessions: the server side (`server`) and one
//! outgoing connection (`client`). Forwarding is `crate::forward`.

pub mod client;
pub mod server;
