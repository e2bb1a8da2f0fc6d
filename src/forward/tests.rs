//! The scheduler driven through a fake transport with tokio's clock
//! paused: connection limits, the rate limit, a throttled route and a
//! route whose upstream refuses our login, with a real spool in a
//! temporary directory and no network.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emailrelay_proto::sasl::{ClientSecret, Mechanism};
use emailrelay_proto::smtp::{OutgoingMessage, Reply, SendOutcome};
use tokio::time::Instant;

use super::client::ConnectionError;
use super::transport::{BoxFuture, Link, Transport};
use super::{ForwardSettings, Forwarder, Reason};
use crate::monitor::Connections;
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
    /// Logins are refused (535) while this is set.
    refuse_logins: std::sync::atomic::AtomicBool,
    /// When each login was tried (a connection with a secret).
    logins: Mutex<Vec<Instant>>,
    /// How long a login takes.
    login_delay: Duration,
    /// The wait a throttling answer asks for (Graph's Retry-After).
    asked_wait: Option<Duration>,
    /// Errors the next sends break with, before the answers.
    send_errors: Mutex<VecDeque<ConnectionError>>,
}

struct FakeTransport(Arc<Upstream>);

struct FakeLink(Arc<Upstream>);

impl Transport for FakeTransport {
    fn open<'a>(
        &'a self,
        _target: &'a str,
        secret: Option<ClientSecret>,
    ) -> BoxFuture<'a, Result<Box<dyn Link>, ConnectionError>> {
        let upstream = Arc::clone(&self.0);
        Box::pin(async move {
            if secret.is_some() {
                upstream.logins.lock().unwrap().push(Instant::now());
                tokio::time::sleep(upstream.login_delay).await;
                if upstream.refuse_logins.load(Ordering::SeqCst) {
                    return Err(ConnectionError::AuthRefused(Reply::new(
                        535,
                        "5.7.8 Username and Password not accepted",
                    )));
                }
            }
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
            if let Some(e) = self.0.send_errors.lock().unwrap().pop_front() {
                return Err(e);
            }
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

    fn retry_after(&self) -> Option<Duration> {
        self.0.asked_wait
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
    let first = forwarder.pass_for(Reason::Poll).await;
    // One attempt, refused: the other four were not tried.
    assert_eq!((first.sent, first.deferred), (0, 5));
    assert_eq!(forwarder.stats.routes()[0].1.deferred, 1);
    // Polls within the wait (at least 48 s: a minute less 20%) send nothing.
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(forwarder.pass_for(Reason::Poll).await.sent, 0);
    }
    assert_eq!(spool.ready().unwrap().len(), 5);
    // After the wait (at most 72 s) the route takes mail again: the four
    // that only waited for the route go; the refused one keeps its own
    // backoff, which is over too by then.
    tokio::time::advance(Duration::from_secs(35)).await;
    let later = forwarder.pass_for(Reason::Poll).await;
    assert_eq!(later.sent, 5);
    assert!(spool.ready().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_throttling_answer_with_retry_after_waits_exactly_that_long() {
    // Graph's 429 with Retry-After: 7: not the route's minute, and the
    // refused message keeps no backoff of its own beyond the 7 s.
    let upstream = Arc::new(Upstream {
        asked_wait: Some(Duration::from_secs(7)),
        ..Upstream::default()
    });
    upstream
        .answers
        .lock()
        .unwrap()
        .push_back(SendOutcome::Retry(Reply::new(421, "4.7.0 graph: HTTP 429")));
    let settings = ForwardSettings {
        max_connections: 1,
        poll: Some(Duration::from_secs(1)),
        ..ForwardSettings::default()
    };
    let (_dir, spool, forwarder) = setup(3, settings, &upstream);
    let start = Instant::now();
    assert_eq!(forwarder.pass_for(Reason::Poll).await.deferred, 3);
    assert_eq!(forwarder.throttled_routes(), ["upstream.example:25"]);
    for _ in 0..6 {
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(forwarder.pass_for(Reason::Poll).await.sent, 0);
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(forwarder.pass_for(Reason::Poll).await.sent, 3);
    assert!(spool.ready().unwrap().is_empty());
    let sent = upstream.sent.lock().unwrap();
    assert!(sent
        .iter()
        .all(|(_, t)| *t - start == Duration::from_secs(7)));
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
    assert_eq!(forwarder.pass_for(Reason::Poll).await.sent, 0);
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

/// A TLS refusal fails the message whether the connection was being set
/// up or was carrying it (both go through `Forwarder::broken`); a TLS
/// stream that was only lost defers it.
#[tokio::test(start_paused = true)]
async fn a_tls_refusal_while_sending_fails_the_message_and_a_lost_stream_defers_it() {
    let tls = |refusal: bool, text: &str| {
        ConnectionError::Tls(std::io::Error::other(crate::tls::TlsError::Failed {
            refusal,
            text: text.into(),
        }))
    };
    let upstream = Arc::new(Upstream::default());
    upstream.send_errors.lock().unwrap().extend([
        tls(true, "certificate verify failed"),
        tls(false, "unexpected eof"),
    ]);
    let (_dir, spool, forwarder) = setup(2, ForwardSettings::default(), &upstream);
    let summary = forwarder.pass().await;
    assert_eq!(summary.sent, 0);
    let failed = spool.failed().unwrap();
    assert_eq!(failed.len(), 1, "the refused one is .bad");
    let bad =
        std::fs::read_to_string(spool.dir().join(format!("{}.envelope.bad", failed[0]))).unwrap();
    assert!(
        bad.contains("X-MailRelay-Reason: tls error: certificate verify failed\r\nX-MailRelay-ReasonCode: 554\r\n"),
        "{bad}"
    );
    assert_eq!(spool.ready().unwrap().len(), 1, "the lost one waits");
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
    assert_eq!(forwarder.pass_for(Reason::Poll).await.deferred, 1);
    // The message now waits for its own retry time (a minute or so); the
    // pass renamed files, so the time moved: one more walk, then none.
    set_old();
    forwarder.pass_for(Reason::Poll).await;
    assert!(!forwarder.poll_due(), "nothing changed, nothing due");
    // A new file in the spool makes the next poll look.
    std::fs::write(spool.dir().join("x"), "").unwrap();
    assert!(forwarder.poll_due());
}

/// Settings that log in as bob with a password.
fn with_login(settings: ForwardSettings) -> ForwardSettings {
    let auth = crate::auth::ClientAuth::load("plain:Ym9i:d3Jvbmc=", Default::default()).unwrap();
    ForwardSettings {
        auth: Some(Arc::new(auth)),
        ..settings
    }
}

/// The polls of `--poll 1` for `seconds`, one a second.
async fn poll_for(forwarder: &Arc<Forwarder>, seconds: u64) {
    poll_every(forwarder, seconds, 1).await
}

/// Polls every `step` seconds for `seconds` (a multiple of `step`).
async fn poll_every(forwarder: &Arc<Forwarder>, seconds: u64, step: u64) {
    for _ in 0..seconds / step {
        tokio::time::advance(Duration::from_secs(step)).await;
        forwarder.pass_for(Reason::Poll).await;
    }
}

/// Issue 25: 20 queued messages at `--poll 1` made 24 refused logins in
/// 20 s, enough for Microsoft Entra's smart lockout. A paused route logs
/// in once per step of its wait (one minute doubling to an hour, ±20%),
/// whatever the queue holds, over three connections at once.
#[tokio::test(start_paused = true)]
async fn a_refused_login_is_tried_once_per_backoff_step_whatever_the_queue() {
    let upstream = Arc::new(Upstream {
        login_delay: Duration::from_millis(300),
        ..Upstream::default()
    });
    upstream.refuse_logins.store(true, Ordering::SeqCst);
    let settings = with_login(ForwardSettings {
        max_connections: 3,
        poll: Some(Duration::from_secs(1)),
        ..ForwardSettings::default()
    });
    // 40 messages: a pass opens three connections at once.
    let (_dir, spool, forwarder) = setup(40, settings, &upstream);
    let start = Instant::now();
    let first = forwarder.pass_for(Reason::Startup).await;
    assert_eq!((first.sent, first.deferred), (0, 40));
    assert_eq!(
        upstream.logins.lock().unwrap().len(),
        1,
        "one login, not one per connection"
    );
    assert_eq!(forwarder.paused_routes(), ["upstream.example:25"]);
    // The first 20 s, as the probe ran them: no further login.
    poll_for(&forwarder, 20).await;
    assert_eq!(upstream.logins.lock().unwrap().len(), 1);
    // Three hours of polls, every 30 s (a pass reads the spool, which is
    // slow under Wine): each login comes at the first poll after the
    // route's wait is over (the schedule of `route_wait`), never sooner,
    // never more than one.
    poll_every(&forwarder, 3 * 3600 - 30, 30).await;
    let logins: Vec<Duration> = upstream
        .logins
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(start))
        .collect();
    // The model: a poll every second for 20 s after the startup pass
    // (which ended with its refused login, 300 ms in), then every 30 s; a
    // poll that logs in takes those 300 ms too, and the wait starts at the
    // refusal.
    let mut expected = vec![Duration::ZERO];
    let mut now = Duration::from_millis(300);
    let mut next = now + super::backoff::route_wait("upstream.example:25", 1);
    let steps = std::iter::repeat_n(1, 20).chain(std::iter::repeat_n(30, (3 * 3600 - 30) / 30));
    for step in steps {
        now += Duration::from_secs(step);
        if now >= next {
            expected.push(now);
            now += Duration::from_millis(300);
            let refusals = expected.len() as u32;
            next = now + super::backoff::route_wait("upstream.example:25", refusals);
        }
    }
    assert_eq!(logins, expected);
    // 1 + 1 min + 2 + 4 + 8 + 16 + 32 + 60 + 60 (±20%): 8 or 9 in three hours.
    assert!((8..=10).contains(&logins.len()), "{logins:?}");
    assert_eq!(spool.ready().unwrap().len(), 40, "all still queued");
    assert_eq!(
        forwarder.stats.routes()[0].1.auth_failures as usize,
        logins.len()
    );
}

/// When the password is fixed, the next attempt the wait allows logs in,
/// the pause is over, and the queue drains over parallel connections.
#[tokio::test(start_paused = true)]
async fn a_paused_route_resumes_at_its_next_attempt_and_drains() {
    let upstream = Arc::new(Upstream::default());
    upstream.refuse_logins.store(true, Ordering::SeqCst);
    let settings = with_login(ForwardSettings {
        max_connections: 3,
        poll: Some(Duration::from_secs(1)),
        ..ForwardSettings::default()
    });
    let (_dir, spool, forwarder) = setup(20, settings, &upstream);
    forwarder.pass_for(Reason::Startup).await;
    upstream.refuse_logins.store(false, Ordering::SeqCst);
    // Within the first wait (at least 48 s) nothing tries.
    poll_for(&forwarder, 47).await;
    assert_eq!(upstream.logins.lock().unwrap().len(), 1);
    assert_eq!(spool.ready().unwrap().len(), 20);
    // By its end (at most 72 s) one login, accepted, and then the rest.
    poll_for(&forwarder, 30).await;
    assert!(forwarder.paused_routes().is_empty());
    assert!(spool.ready().unwrap().is_empty());
    assert_eq!(upstream.sent.lock().unwrap().len(), 20);
    let logins = upstream.logins.lock().unwrap().len();
    assert!(
        (2..=4).contains(&logins),
        "{logins}: the probe, then up to three connections"
    );
}

/// An admin `forward` or `flush` tries a paused route at once, but with
/// one login, not one per connection.
#[tokio::test(start_paused = true)]
async fn an_admin_flush_tries_a_paused_route_once() {
    let upstream = Arc::new(Upstream {
        login_delay: Duration::from_millis(300),
        ..Upstream::default()
    });
    upstream.refuse_logins.store(true, Ordering::SeqCst);
    let settings = with_login(ForwardSettings {
        max_connections: 3,
        ..ForwardSettings::default()
    });
    let (_dir, _spool, forwarder) = setup(40, settings, &upstream);
    forwarder.pass_for(Reason::Startup).await;
    assert_eq!(upstream.logins.lock().unwrap().len(), 1);
    let summary = forwarder.pass().await;
    assert_eq!(summary.deferred, 40);
    assert_eq!(upstream.logins.lock().unwrap().len(), 2);
}

/// `--immediate` (proxy): after a refused login, the next client's
/// message is not tried either; the client hears the refusal and the
/// message is kept as `.bad`, as the first one was.
#[tokio::test(start_paused = true)]
async fn a_proxy_message_to_a_paused_route_hears_the_refusal_without_a_login() {
    let upstream = Arc::new(Upstream::default());
    upstream.refuse_logins.store(true, Ordering::SeqCst);
    let (_dir, spool, forwarder) = setup(2, with_login(ForwardSettings::default()), &upstream);
    let ids = spool.ready().unwrap();
    let refused = Reply::new(535, "5.7.8 Username and Password not accepted");
    for id in &ids {
        let mut link = super::ProxyLink::default();
        let verdict = forwarder.forward_now(id, &mut link).await;
        assert_eq!(verdict, super::Verdict::Failed(refused.clone()));
    }
    assert_eq!(upstream.logins.lock().unwrap().len(), 1);
    assert_eq!(spool.failed().unwrap().len(), 2);
}

/// `--immediate` (proxy): a refusal for now goes to `.bad` with the
/// upstream's words at once, and is a throttling answer all the same: the
/// route waits, so the next client's message is kept queued, not tried.
#[tokio::test(start_paused = true)]
async fn a_proxy_message_refused_for_now_is_failed_and_a_throttle_still_holds_the_route() {
    let upstream = Arc::new(Upstream::default());
    let busy = Reply::new(451, "4.7.500 Server busy. Please try again later");
    upstream
        .answers
        .lock()
        .unwrap()
        .push_back(SendOutcome::Retry(busy.clone()));
    let (_dir, spool, forwarder) = setup(2, ForwardSettings::default(), &upstream);
    let ids = spool.ready().unwrap();
    let mut link = super::ProxyLink::default();
    let verdict = forwarder.forward_now(&ids[0], &mut link).await;
    assert_eq!(verdict, super::Verdict::Failed(busy));
    assert_eq!(spool.failed().unwrap(), [ids[0].clone()]);
    assert_eq!(forwarder.throttled_routes(), ["upstream.example:25"]);
    assert_eq!(forwarder.stats.routes()[0].1.failed, 1);
    let verdict = forwarder.forward_now(&ids[1], &mut link).await;
    assert_eq!(verdict, super::Verdict::Deferred(None));
    assert_eq!(spool.ready().unwrap(), [ids[1].clone()]);
    assert!(upstream.sent.lock().unwrap().is_empty());
}

/// An admin `flush` forces its own pass only: a proxy message after it
/// does not try the paused route again (one pass's force used to stay
/// with the scheduler until the next pass).
#[tokio::test(start_paused = true)]
async fn an_admin_flush_leaves_no_force_behind_for_the_next_proxy_message() {
    let upstream = Arc::new(Upstream::default());
    upstream.refuse_logins.store(true, Ordering::SeqCst);
    let (_dir, spool, forwarder) = setup(2, with_login(ForwardSettings::default()), &upstream);
    let ids = spool.ready().unwrap();
    forwarder.pass_for(Reason::Startup).await;
    forwarder.pass().await;
    assert_eq!(
        upstream.logins.lock().unwrap().len(),
        2,
        "the start and the flush"
    );
    let mut link = super::ProxyLink::default();
    let verdict = forwarder.forward_now(&ids[0], &mut link).await;
    let refused = Reply::new(535, "5.7.8 Username and Password not accepted");
    assert_eq!(verdict, super::Verdict::Failed(refused));
    assert_eq!(upstream.logins.lock().unwrap().len(), 2, "no login for it");
}
