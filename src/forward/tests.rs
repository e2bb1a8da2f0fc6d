//! The scheduler driven through a fake transport with tokio's clock
//! paused: connection limits, the rate limit and a throttled route, with
//! a real spool in a temporary directory and no network.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emailrelay_proto::sasl::{ClientSecret, Mechanism};
use emailrelay_proto::smtp::{OutgoingMessage, Reply, SendOutcome};
use tokio::time::Instant;

use super::transport::{BoxFuture, Link, Transport};
use super::{ForwardSettings, Forwarder};
use crate::monitor::Connections;
use crate::smtp::client::ConnectionError;
use crate::store::{Envelope, Spool};

/// What the fake upstream saw and will answer.
#[derive(Default)]
struct Upstream {
    open: AtomicUsize,
    most_open: AtomicUsize,
    /// Each message's sender and the (paused) time it was sent.
    sent: Mutex<Vec<(String, Instant)>>,
    /// Answers to give before the default (accept).
    answers: Mutex<VecDeque<SendOutcome>>,
    /// How long a send takes.
    delay: Duration,
}

struct FakeTransport(Arc<Upstream>);

struct FakeLink(Arc<Upstream>);

impl Transport for FakeTransport {
    fn open<'a>(
        &'a self,
        _target: &'a str,
        _secret: Option<ClientSecret>,
    ) -> BoxFuture<'a, Result<Box<dyn Link>, ConnectionError>> {
        let upstream = Arc::clone(&self.0);
        Box::pin(async move {
            let open = upstream.open.fetch_add(1, Ordering::SeqCst) + 1;
            upstream.most_open.fetch_max(open, Ordering::SeqCst);
            Ok(Box::new(FakeLink(upstream)) as Box<dyn Link>)
        })
    }
}

impl Link for FakeLink {
    fn authenticated(&self) -> Option<&str> {
        None
    }

    fn auth_mechanism(&self) -> Option<Mechanism> {
        None
    }

    fn send<'a>(
        &'a mut self,
        message: OutgoingMessage,
        _content: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<SendOutcome, ConnectionError>> {
        Box::pin(async move {
            tokio::time::sleep(self.0.delay).await;
            let answer = self.0.answers.lock().unwrap().pop_front();
            let answer = answer.unwrap_or(SendOutcome::Sent { rejected: vec![] });
            if matches!(answer, SendOutcome::Sent { .. }) {
                self.0
                    .sent
                    .lock()
                    .unwrap()
                    .push((message.from, Instant::now()));
            }
            Ok(answer)
        })
    }

    fn quit(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { drop(self) })
    }
}

impl Drop for FakeLink {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A spool with `count` messages from `sender-<n>@example.com`, and a
/// forwarder over it sending through `upstream`.
fn setup(
    count: usize,
    settings: ForwardSettings,
    upstream: &Arc<Upstream>,
) -> (tempfile::TempDir, Arc<Spool>, Arc<Forwarder>) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let content = dir.path().join("template");
    std::fs::write(&content, "Subject: test\r\n\r\nbody\r\n").unwrap();
    for n in 0..count {
        let envelope = Envelope {
            from: format!("sender-{n}@example.com"),
            to_remote: vec!["rcpt@example.com".into()],
            ..Envelope::default()
        };
        spool.add_copy(&content, &envelope).unwrap();
    }
    std::fs::remove_file(&content).unwrap();
    let settings = ForwardSettings {
        forward_to: Some("upstream.example:25".into()),
        ..settings
    };
    let transport = Arc::new(FakeTransport(Arc::clone(upstream)));
    let forwarder = Forwarder::with_transport(
        settings,
        Arc::clone(&spool),
        None,
        Connections::new(),
        transport,
    );
    (dir, spool, forwarder)
}

#[tokio::test(start_paused = true)]
async fn forty_messages_never_take_more_than_the_connection_limit() {
    let upstream = Arc::new(Upstream {
        delay: Duration::from_millis(200),
        ..Upstream::default()
    });
    let settings = ForwardSettings {
        max_connections: 3,
        ..ForwardSettings::default()
    };
    let (_dir, spool, forwarder) = setup(40, settings, &upstream);
    let summary = forwarder.pass().await;
    assert_eq!((summary.sent, summary.failed, summary.deferred), (40, 0, 0));
    assert_eq!(upstream.most_open.load(Ordering::SeqCst), 3);
    assert_eq!(
        upstream.open.load(Ordering::SeqCst),
        0,
        "every link was closed"
    );
    assert!(spool.ready().unwrap().is_empty());
    assert_eq!(forwarder.stats.routes()[0].1.forwarded, 40);
}

#[tokio::test(start_paused = true)]
async fn a_rate_of_thirty_a_minute_holds_the_rest_for_the_next_minute() {
    let upstream = Arc::new(Upstream::default());
    let settings = ForwardSettings {
        max_connections: 3,
        rate: Some(30),
        ..ForwardSettings::default()
    };
    let (_dir, _spool, forwarder) = setup(40, settings, &upstream);
    let start = Instant::now();
    let summary = forwarder.pass().await;
    assert_eq!(summary.sent, 40);
    let times: Vec<Duration> = upstream
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| t.duration_since(start))
        .collect();
    let first_minute = times
        .iter()
        .filter(|t| **t < Duration::from_secs(60))
        .count();
    assert_eq!(first_minute, 30, "sent at {times:?}");
    // The 31st goes when the first is a minute old, not before.
    let mut sorted = times.clone();
    sorted.sort();
    assert!(sorted[30] >= Duration::from_secs(60), "sent at {sorted:?}");
    assert!(sorted[39] < Duration::from_secs(62), "sent at {sorted:?}");
}

#[tokio::test(start_paused = true)]
async fn a_throttling_answer_makes_the_route_wait_then_it_drains() {
    let upstream = Arc::new(Upstream::default());
    upstream
        .answers
        .lock()
        .unwrap()
        .push_back(SendOutcome::Retry(Reply::new(
            432,
            "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
        )));
    let settings = ForwardSettings {
        max_connections: 1,
        poll: Some(Duration::from_secs(1)),
        ..ForwardSettings::default()
    };
    let (_dir, spool, forwarder) = setup(5, settings, &upstream);
    let first = forwarder.pass_for("poll").await;
    // One attempt, refused: the other four were not tried.
    assert_eq!((first.sent, first.deferred), (0, 5));
    assert_eq!(forwarder.stats.routes()[0].1.deferred, 1);
    // Polls within the wait (at least 48 s: a minute less 20%) send nothing.
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(forwarder.pass_for("poll").await.sent, 0);
    }
    assert_eq!(spool.ready().unwrap().len(), 5);
    // After the wait (at most 72 s) the route takes mail again: the four
    // that only waited for the route go; the refused one keeps its own
    // backoff, which is over too by then.
    tokio::time::advance(Duration::from_secs(35)).await;
    let later = forwarder.pass_for("poll").await;
    assert_eq!(later.sent, 5);
    assert!(spool.ready().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_admin_flush_does_not_wait_for_a_throttled_route() {
    let upstream = Arc::new(Upstream::default());
    upstream
        .answers
        .lock()
        .unwrap()
        .push_back(SendOutcome::Retry(Reply::new(451, "4.7.500 Server busy")));
    let settings = ForwardSettings {
        max_connections: 1,
        ..ForwardSettings::default()
    };
    let (_dir, spool, forwarder) = setup(3, settings, &upstream);
    assert_eq!(forwarder.pass_for("poll").await.sent, 0);
    assert_eq!(forwarder.pass().await.sent, 3);
    assert!(spool.ready().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_pass_over_more_than_a_batch_forwards_every_message() {
    let upstream = Arc::new(Upstream::default());
    let settings = ForwardSettings {
        max_connections: 3,
        ..ForwardSettings::default()
    };
    let count = super::batch::BATCH * 2 + 7;
    let (_dir, spool, forwarder) = setup(count, settings, &upstream);
    let summary = forwarder.pass().await;
    assert_eq!(summary.sent, count);
    assert!(spool.ready().unwrap().is_empty());
    assert_eq!(forwarder.backlog(), 0, "every message taken");
    let mut senders: Vec<String> = upstream
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    senders.sort();
    senders.dedup();
    assert_eq!(senders.len(), count, "each message once");
}

#[tokio::test(start_paused = true)]
async fn an_idle_poll_does_not_walk_the_spool_again() {
    let upstream = Arc::new(Upstream::default());
    upstream
        .answers
        .lock()
        .unwrap()
        .push_back(SendOutcome::Retry(Reply::new(450, "mailbox busy")));
    let settings = ForwardSettings {
        max_connections: 1,
        ..ForwardSettings::default()
    };
    let (_dir, spool, forwarder) = setup(1, settings, &upstream);
    // The directory's time must be settled for a poll to trust it.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    let set_old = || {
        crate::platform::files::set_modified(spool.dir(), old).unwrap();
    };
    set_old();
    assert_eq!(forwarder.pass_for("poll").await.deferred, 1);
    // The message now waits for its own retry time (a minute or so); the
    // pass renamed files, so the time moved: one more walk, then none.
    set_old();
    forwarder.pass_for("poll").await;
    assert!(!forwarder.poll_due(), "nothing changed, nothing due");
    // A new file in the spool makes the next poll look.
    std::fs::write(spool.dir().join("x"), "").unwrap();
    assert!(forwarder.poll_due());
}
