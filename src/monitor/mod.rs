//! What the process and its instances know about themselves, for the
//! operator interfaces: the connection registry with its `notify` events
//! (`connections`), the activity counters (`stats`) and their recent
//! history for the status page's charts (`history`).
//!
//! A leaf: the servers and the forwarder record here, and `control`
//! reads; nothing here acts on anything.

pub mod connections;
pub mod history;
pub mod stats;

pub use connections::{Connections, Event, Registered};
pub use stats::{RouteCounts, Stats};
