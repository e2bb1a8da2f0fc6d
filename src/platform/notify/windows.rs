//! Windows: no readiness protocol (see the module above).

/// Never made on Windows.
#[derive(Debug)]
pub struct Notifier(());

impl Notifier {
    /// `None`: there is no notification socket on Windows.
    pub fn from_env() -> Option<Notifier> {
        None
    }

    /// Nothing to send.
    pub fn send(&self, _state: &str) {}
}
