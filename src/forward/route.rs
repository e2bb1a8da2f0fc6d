//! Routes (upstream address and account): paused after a refused
//! authentication, skipped when unreachable for the rest of a pass.

use super::*;

impl Forwarder {
    /// The upstream refused our authentication: the route is paused, not
    /// the mail failed. Its messages stay queued (the rest of this pass
    /// skips them, later passes retry with backoff) and one error says so
    /// per outage, with the upstream's words. Not in 2.6.1, which fails
    /// every message to `.bad` until the password is fixed.
    pub(super) fn pause(&self, target: &str, reply: Reply) -> Verdict {
        self.note_error(&format!("authentication refused by {target}: {reply}"));
        self.stats.route(target, |c| c.auth_failures += 1);
        let newly = self
            .paused
            .lock()
            .is_ok_and(|mut p| p.insert(target.to_string()));
        if newly {
            error!(
                "forwarding to {target} paused: the server refused our authentication: {reply}: mail stays queued"
            );
        }
        Verdict::Deferred(Some(reply))
    }

    /// The token endpoint would not renew the route's token: paused like
    /// a refused password, but the account has said why already.
    pub(super) fn pause_quietly(&self, target: &str) {
        if let Ok(mut paused) = self.paused.lock() {
            paused.insert(target.to_string());
        }
        self.stats.route(target, |c| c.auth_failures += 1);
    }

    /// A message went to `target`: a pause on it is over.
    pub(super) fn resume(&self, target: &str) {
        if self.paused.lock().is_ok_and(|mut p| p.remove(target)) {
            info!("forwarding to {target} resumed: authentication accepted");
        }
    }

    /// True if `target` is the `--forward-to` address.
    pub(super) fn is_default(&self, target: &str) -> bool {
        self.settings.forward_to.as_deref() == Some(target)
    }

    pub(super) fn skip_unconnectable(&self, id: &MessageId, target: &str) -> Verdict {
        info!("forwarding [{id}]: skipping message with unconnectable address [{target}]");
        Verdict::Deferred(None)
    }
}
