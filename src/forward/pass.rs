//! A forwarding pass: the spool's ready messages shared out over a few
//! workers, each with its own connection; retry times and `--max-age`.

use super::batch::PassQueue;
use super::*;
use crate::store::SpoolFile;

/// One forwarding pass's own state, shared by its workers and gone with
/// it: nothing of it carries over to the next pass.
#[derive(Debug, Default)]
pub(super) struct Pass {
    /// Forced (admin `forward` or `flush`): no retry time and no route
    /// wait holds a message back.
    pub force: bool,
    /// `--immediate` and proxy mode: a message the upstream refuses, for
    /// now or for good, is failed to `.bad` at once, as E-MailRelay keeps
    /// it; its client hears the refusal and keeps its own copy.
    pub fails_refused: bool,
    /// A client filter asked to stop scanning: no more messages are taken.
    stopped: AtomicBool,
    /// Messages taken up.
    started: AtomicU64,
    /// The first error that was not a verdict on one message (a missing
    /// account, a broken session), for `--as-client`'s last word and the
    /// admin `flush` answer.
    error: Mutex<Option<String>>,
    /// Upstreams that could not be reached, with the first error: their
    /// other messages are skipped for the rest of the pass.
    unreachable: Mutex<HashMap<String, String>>,
}

impl Pass {
    /// A pass over the spool, forced or not.
    pub fn over_spool(force: bool) -> Pass {
        Pass {
            force,
            ..Pass::default()
        }
    }

    /// The one-message pass of `--immediate` and proxy mode.
    pub fn immediate() -> Pass {
        Pass {
            fails_refused: true,
            ..Pass::default()
        }
    }

    /// A client filter's special exit: the pass takes no more messages.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    pub fn took_up(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers the first error of the pass that is not about one message.
    pub fn note_error(&self, error: &str) {
        lock(&self.error).get_or_insert_with(|| error.to_string());
    }

    /// True if `target` could not be reached in this pass.
    pub fn is_unreachable(&self, target: &str) -> bool {
        lock(&self.unreachable).contains_key(target)
    }

    /// Records that `target` could not be reached; true if this is the
    /// first such failure of the pass (only that one is reported).
    pub fn unreachable(&self, target: &str, error: &str) -> bool {
        let mut unreachable = lock(&self.unreachable);
        let first = !unreachable.contains_key(target);
        unreachable
            .entry(target.to_string())
            .or_insert_with(|| error.to_string());
        first
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Forwarder {
    /// One pass over the spool, a connection for every few messages;
    /// returns counts. Deferred messages whose retry time has not come are
    /// left for a later pass unless `force`. The caller holds the pass lock.
    pub(super) async fn pass_locked(self: &Arc<Self>, force: bool) -> PassSummary {
        self.note_scan();
        if let Ok(mut backoff) = self.backoff.lock() {
            let spool = &self.spool;
            backoff.retain(|id| spool.path(id, SpoolFile::Envelope).exists());
        }
        let walk = match self.spool.walk_ready() {
            Ok(walk) => walk,
            Err(e) => {
                error!("{e}");
                return PassSummary::default();
            }
        };
        let keep = |id: &MessageId| force || self.is_due(id);
        self.count_backlog();
        let queue = PassQueue::new(walk, &keep);
        if queue.len() == 0 {
            return PassSummary::default();
        }
        let max = self.settings.max_connections.max(1);
        let workers = match queue.complete() {
            true => queue.len().div_ceil(MESSAGES_PER_CONNECTION).clamp(1, max),
            false => max,
        };
        crate::debug!(
            "forwarding pass: {}{} message(s) over {workers} connection(s)",
            queue.len(),
            if queue.complete() { "" } else { " or more" }
        );
        let pass = Arc::new(Pass::over_spool(force));
        let queue = Arc::new(Mutex::new(queue));
        let busy = Arc::new(AtomicUsize::new(workers));
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let this = Arc::clone(self);
                let (pass, queue, busy) =
                    (Arc::clone(&pass), Arc::clone(&queue), Arc::clone(&busy));
                // The pass's log context (the instance name) goes with it,
                // and each worker shows its own message's id.
                let context = crate::log::context().with_msgid_slot();
                tokio::spawn(crate::log::scope(context, async move {
                    this.worker(&pass, queue, busy).await
                }))
            })
            .collect();
        let mut summary = PassSummary::default();
        for task in tasks {
            if let Ok(s) = task.await {
                summary.sent += s.sent;
                summary.failed += s.failed;
                summary.deferred += s.deferred;
                summary.error = summary.error.or(s.error);
            }
        }
        // Only the forward-to address's failure is the pass's error (and
        // `--as-client`'s exit code); routed ones were warned about.
        let noted = lock(&pass.error).take();
        summary.error = lock(&pass.unreachable)
            .iter()
            .find(|(k, _)| self.is_default(k))
            .map(|(_, e)| e.clone())
            .or(noted);
        summary
    }

    /// `--max-age`: a deferred message received longer ago than that is
    /// failed, with the last reply's text and code if there was one; the
    /// new verdict, or `None` if the message may wait on.
    pub(super) fn expire(&self, id: &MessageId, last: Option<&Reply>) -> Option<Verdict> {
        let max_age = self.settings.max_age?;
        let age = std::time::SystemTime::now()
            .duration_since(id.created()?)
            .ok()?;
        if age < max_age {
            return None;
        }
        let locked = match self.spool.lock(id) {
            Ok(Some(locked)) => locked,
            Ok(None) => return None,
            Err(e) => {
                error!("{e}");
                return None;
            }
        };
        let why = last.map_or_else(|| "the upstream was not reached".to_string(), |r| r.text());
        let reason = format!("not sent within --max-age={}s: {why}", max_age.as_secs());
        warning!("forwarding [{id}]: {reason}");
        Some(self.fail_as(
            locked,
            &reason,
            last.map(|r| r.code),
            Reply::new(554, &reason),
        ))
    }

    /// Updates the retry schedule after a verdict on `id`.
    pub(super) fn schedule(&self, id: &MessageId, verdict: &Verdict) {
        let Ok(mut backoff) = self.backoff.lock() else {
            return;
        };
        match verdict {
            // The upstream takes mail again: nothing waits any longer.
            Verdict::Sent => backoff.clear(),
            Verdict::Failed(_) => backoff.forget(id),
            // No reply: the upstream could not be reached (or a token not
            // renewed). Each pass then costs one failed connect for the
            // whole route, and the queue must flow the moment it is back,
            // so the message keeps no wait of its own, and the next poll
            // looks again.
            Verdict::Deferred(None) => {
                backoff.forget(id);
                self.scan.again();
            }
            Verdict::Deferred(Some(reply)) => {
                let now = tokio::time::Instant::now().into_std();
                let wait = backoff.deferred(id, now, reply.to_string());
                crate::debug!(
                    "forwarding [{id}]: attempt {} deferred: next in {}s",
                    backoff.attempts(id),
                    wait.as_secs()
                );
            }
        }
    }

    /// Takes messages off the pass's queue until it is empty; `busy`
    /// counts the workers still at it.
    pub(super) async fn worker(
        &self,
        pass: &Pass,
        queue: Arc<Mutex<PassQueue>>,
        busy: Arc<AtomicUsize>,
    ) -> PassSummary {
        let mut summary = PassSummary::default();
        let mut conn: Option<(Key, Box<dyn Link>)> = None;
        let keep = |id: &MessageId| pass.force || self.is_due(id);
        // The queue's lock lives only inside this closure, never across an await.
        let next = || {
            if pass.is_stopped() {
                self.scan.again();
                return None;
            }
            let id = queue.lock().ok()?.pop(&keep)?;
            self.took_one();
            Some(id)
        };
        while let Some(id) = next() {
            let locked = match self.spool.lock(&id) {
                Ok(Some(locked)) => locked,
                Ok(None) => continue,
                Err(e) => {
                    error!("{e}");
                    summary.failed += 1;
                    continue;
                }
            };
            let mut verdict = self.forward_message(pass, locked, &mut conn).await;
            if let Verdict::Deferred(reply) = &verdict {
                if let Some(expired) = self.expire(&id, reply.as_ref()) {
                    verdict = expired;
                }
            }
            self.schedule(&id, &verdict);
            match verdict {
                Verdict::Sent => summary.sent += 1,
                Verdict::Failed(_) => summary.failed += 1,
                Verdict::Deferred(_) => summary.deferred += 1,
            }
        }
        // E-MailRelay compatibility: the pass's last word comes before the
        // last connection's QUIT.
        if busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.last_word(pass, conn.is_none());
        }
        if let Some((_, c)) = conn {
            c.quit().await;
        }
        summary
    }

    /// The pass's last word, said by its last worker (`unconnected` if
    /// that worker ends without a connection). A pass that a broken
    /// connection to the forward-to address cut short ends with that
    /// error instead (2.6.1 gives up the pass at the first one); a dead
    /// address that a message was routed to only has its messages
    /// skipped, and the pass ends as usual.
    fn last_word(&self, pass: &Pass, unconnected: bool) {
        let (default_dead, routed_dead) = {
            let u = lock(&pass.unreachable);
            let default_dead = u.keys().any(|k| self.is_default(k));
            (default_dead, u.len() > usize::from(default_dead))
        };
        let broken = default_dead || lock(&pass.error).is_some();
        if !broken && pass.started.load(Ordering::Relaxed) > 0 {
            info!("forwarding: no more messages to send");
            // E-MailRelay compatibility: 2.6.1 ends a pass whose last
            // connection was a routed one that failed with this warning.
            if unconnected && routed_dead {
                warning!("smtp client error: done");
            }
        }
    }
}
