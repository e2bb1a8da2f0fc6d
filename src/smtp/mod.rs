//! The async driver of the SMTP server's sessions. The client side (one
//! outgoing connection) is `crate::forward::client`, beside the transport
//! that is its only user.

pub mod server;
