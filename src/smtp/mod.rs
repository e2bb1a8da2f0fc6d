//! Async drivers of the SMTP sessions: the server side (`server`), one
//! outgoing connection (`client`) and the forwarding scheduler (`forward`).

pub mod client;
pub mod forward;
pub mod server;
