//! What a send's outcome does to the message: deleted, failed to `.bad`
//! (in part or whole) or left for later.

use super::pass::Pass;
use super::*;
use crate::store::SpoolFile::{Content, EnvelopeBad, EnvelopeBusy};

impl Forwarder {
    pub(super) fn apply(&self, pass: &Pass, locked: Locked, outcome: SendOutcome) -> Verdict {
        match outcome {
            SendOutcome::Sent { rejected } if rejected.is_empty() => {
                let id = locked.id().clone();
                info!("deleting envelope [{}]", id.file_name(EnvelopeBusy));
                info!("deleting content [{}]", id.file_name(Content));
                match locked.delete() {
                    Ok(()) => {
                        self.connections.emit(&["client", "sent", id.as_str()]);
                        Verdict::Sent
                    }
                    Err(e) => {
                        error!("{e}");
                        Verdict::Sent
                    }
                }
            }
            SendOutcome::Sent { rejected } => {
                let remaining: Vec<String> = rejected.iter().map(|(a, _)| a.clone()).collect();
                let code = rejected.first().map(|(_, r)| r.code);
                let id = locked.id().clone();
                // E-MailRelay's words for a message that went to some of
                // its recipients: the rest stay behind as `.bad`.
                warning!("smtp client protocol: one or more recipients rejected");
                info!(
                    "failing envelope [{}] -> [{}]",
                    id.file_name(EnvelopeBusy),
                    id.file_name(EnvelopeBad)
                );
                if let Err(e) =
                    locked.fail_recipients(remaining, "one or more recipients rejected", code)
                {
                    error!("{e}");
                }
                Verdict::Sent
            }
            SendOutcome::Failed(reply) => self.fail(locked, reply),
            SendOutcome::Unsendable(reason) => {
                // E-MailRelay compatibility: this warning, and no reason code.
                warning!("smtp client protocol: failed: {reason}");
                self.fail_as(locked, reason, None, Reply::new(554, reason))
            }
            SendOutcome::Retry(reply) => {
                warning!("forwarding [{}] deferred: {reply}", locked.id());
                self.defer(pass, locked, reply)
            }
        }
    }

    /// A message the upstream refused for now: it waits for a later
    /// pass, or, in a pass that fails what it cannot send (`--immediate`,
    /// proxy mode), goes to `.bad` with the refusal at once.
    pub(super) fn defer(&self, pass: &Pass, locked: Locked, reply: Reply) -> Verdict {
        match pass.fails_refused {
            true => self.fail(locked, reply),
            false => Verdict::Deferred(Some(reply)),
        }
    }

    pub(super) fn fail(&self, locked: Locked, reply: Reply) -> Verdict {
        let (reason, code) = (reply.text(), Some(reply.code));
        self.fail_as(locked, &reason, code, reply)
    }

    /// Fails the message to `.bad` with `reason` and `code`; a proxy's
    /// client is told `heard`.
    pub(super) fn fail_as(
        &self,
        locked: Locked,
        reason: &str,
        code: Option<u16>,
        heard: Reply,
    ) -> Verdict {
        let id = locked.id().clone();
        // E-MailRelay compatibility: this exact line shape.
        info!(
            "failing envelope [{}] -> [{}]",
            id.file_name(EnvelopeBusy),
            id.file_name(EnvelopeBad)
        );
        if let Err(e) = locked.fail(reason, code) {
            error!("{e}");
        }
        self.connections
            .emit(&["client", "sent", id.as_str(), &format!("{heard}")]);
        Verdict::Failed(heard)
    }
}

/// What 2.6.1 adds to `forwarding [<id>]`: the routing fields that are set.
pub(super) fn message_info(envelope: &crate::store::Envelope) -> String {
    let mut info = String::new();
    for (name, value) in [
        ("selector", &envelope.client_account_selector),
        ("forward-to", &envelope.forward_to),
        ("forward-to-address", &envelope.forward_to_address),
    ] {
        if !value.is_empty() {
            info.push_str(&format!(" {name}=[{value}]"));
        }
    }
    info
}
