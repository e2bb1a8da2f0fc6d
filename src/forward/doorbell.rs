//! How the rest of the relay asks the forwarding loop for a pass.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use super::Reason;

/// Requests for forwarding passes, each with its reason, taken in turn by
/// the forwarding loop ([`super::Forwarder::run`]). Shared with what
/// writes messages into the spool behind the servers' backs (Graph's
/// delivery reports), so that those go out at once, not at the next poll.
#[derive(Default)]
pub struct Doorbell {
    wake: Notify,
    reasons: Mutex<VecDeque<Reason>>,
}

impl Doorbell {
    /// Asks for a pass for `reason`. The same request twice in a row is
    /// one pass.
    pub fn ring(&self, reason: Reason) {
        {
            let mut pending = self.reasons.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.back() != Some(&reason) {
                pending.push_back(reason);
            }
        }
        self.wake.notify_one();
    }

    /// The oldest request not yet taken.
    pub(super) fn next(&self) -> Option<Reason> {
        self.reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// Until the next ring (at once if one came since the last wait).
    pub(super) async fn rung(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_taken_in_turn_and_a_repeat_is_one() {
        let bell = Doorbell::default();
        bell.ring(Reason::ClientDisconnect);
        bell.ring(Reason::ClientDisconnect);
        bell.ring(Reason::Rescan);
        bell.ring(Reason::ClientDisconnect);
        // The ring came before the wait: the wait ends at once.
        tokio::time::timeout(std::time::Duration::from_secs(10), bell.rung())
            .await
            .expect("a ring before the wait ends it");
        assert_eq!(bell.next(), Some(Reason::ClientDisconnect));
        assert_eq!(bell.next(), Some(Reason::Rescan));
        assert_eq!(bell.next(), Some(Reason::ClientDisconnect));
        assert_eq!(bell.next(), None);
    }
}
