//! Fuzzing the request head (`scripts/fuzz http <seconds>`): arbitrary
//! bytes, written in arbitrary pieces, into one connection served by
//! hyper as this endpoint configures it ([`super::http1_builder`]), with
//! the real `Host` and origin rules ([`super::refusal`]) and routing; the
//! answers stand in for the spool (no `Control`). Oracles: no panic or
//! hang, and what comes back is a sequence of whole HTTP/1.1 responses.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{origin, refusal, text, Route};
use crate::fuzzing::{self, feature, Rng, Target};

const SEEDS: &[&[u8]] = &[
    b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9025\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"GET /queue?state=failed HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\nGET /queue HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    b"DELETE /queue/emailrelay.1.2.3 HTTP/1.1\r\nHost: relay.example.com:9025\r\nOrigin: http://relay.example.com:9025\r\nSec-Fetch-Site: same-origin\r\n\r\n",
    b"POST /queue/x/retry HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\nx=1",
    b"POST /queue/x/retry HTTP/1.1\r\nHost: evil.example\r\nOrigin: null\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET http://127.0.0.1/queue HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n\r\n",
];

const DICTIONARY: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0\r\n",
    b"HTTP/2.0",
    b"/queue/",
    b"/retry",
    b"/metrics",
    b"/healthz",
    b"?",
    b"%2F",
    b"%00",
    b"..",
    b"Host: ",
    b"Origin: ",
    b"Sec-Fetch-Site: ",
    b"cross-site",
    b"same-origin",
    b"Content-Type: ",
    b"text/plain",
    b"multipart/form-data",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"Expect: 100-continue",
    b"Upgrade: h2c",
    b"localhost",
    b"127.0.0.1",
    b"[::1]",
    b"evil.example",
    b":9025",
    b"\r\n\r\n",
    b"\r\n",
    b"0\r\n\r\n",
    b"18446744073709551616",
    b"\xff",
    b"\x00",
    b" ",
    b"\t",
];

/// The names a `Host` may give here.
fn hosts() -> &'static Arc<Vec<String>> {
    static HOSTS: OnceLock<Arc<Vec<String>>> = OnceLock::new();
    HOSTS.get_or_init(|| Arc::new(origin::host_names(&["relay.example.com".to_string()])))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime")
    })
}

/// One input: the features of the answers, after the oracles.
fn check(data: &[u8], rng: &mut Rng) -> Vec<u64> {
    let cuts: Vec<usize> = (0..16).map(|_| 1 + rng.below(200)).collect();
    let half_close = rng.one_in(4);
    // The clock is paused: once nothing else can happen, time jumps to
    // the next timer, so the head timeout (20 s) costs nothing here.
    let out = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(120), exchange(data, &cuts, half_close))
            .await
            .expect("the connection was still open after 120 s")
    });
    check_responses(&out)
}

/// Serves one connection that sends `data` in pieces (`cuts`, cycled),
/// then waits with its sending side open (as a client waiting for its
/// answers does) or closed (`half_close`); everything the server said
/// until it closed.
async fn exchange(data: &[u8], cuts: &[usize], half_close: bool) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        let method = request.method().clone();
        let response = match refusal(&request, &method, hosts()) {
            Some(response) => response,
            // As `answer`, without the spool: the route says what it is.
            None => match Route::parse(request.uri().path()) {
                Route::Unknown => text(StatusCode::NOT_FOUND, "not found\n"),
                route => text(StatusCode::OK, format!("{method} {route:?}\n")),
            },
        };
        Ok::<_, Infallible>(response)
    });
    let connection = super::http1_builder().serve_connection(TokioIo::new(server), service);
    let (mut reader, mut writer) = tokio::io::split(client);
    let send = async move {
        let mut rest = data;
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at(cut.min(rest.len()));
            if writer.write_all(piece).await.is_err() {
                return writer;
            }
            rest = after;
        }
        if half_close {
            let _ = writer.shutdown().await;
        }
        writer
    };
    let receive = async move {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out).await;
        out
    };
    let serve = async move {
        let _ = connection.await;
    };
    let (writer, (), out) = tokio::join!(send, serve, receive);
    drop(writer);
    out
}

/// Whole responses one after another: a status line, a head, a body of
/// the length the head gives. Their status lines are the features.
fn check_responses(out: &[u8]) -> Vec<u64> {
    let mut features = vec![feature(&[u8::from(out.is_empty())])];
    let mut rest = out;
    while !rest.is_empty() {
        assert!(
            rest.len() > 12
                && rest.starts_with(b"HTTP/1.")
                && rest[9..12].iter().all(u8::is_ascii_digit),
            "not a status line: {:?}",
            String::from_utf8_lossy(rest)
        );
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "a head without its end: {:?}",
                    String::from_utf8_lossy(rest)
                )
            });
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let status = &rest[9..12];
        let body_start = end + 4;
        // An answer to HEAD gives the length of a body it does not send.
        let bodiless = rest.len() == body_start || rest[body_start..].starts_with(b"HTTP/1.");
        let body_end = body_start + if bodiless { 0 } else { length };
        assert!(
            rest.len() >= body_end,
            "a body cut short: {:?}",
            String::from_utf8_lossy(rest)
        );
        let body = &rest[body_start..body_end];
        // The status and the kind of answer: a route's name, not its
        // method or id (`POST Retry("x")`: `Retry`), and the how-manieth.
        let route = body.splitn(2, |&b| b == b' ').last().unwrap_or_default();
        let kind = route
            .split(|&b| b == b'(' || b == b'\n')
            .next()
            .unwrap_or_default();
        let nth = features.len().min(4) as u8;
        features.push(feature(&[status, kind, &[nth]].concat()));
        rest = &rest[body_end..];
    }
    features
}

#[test]
fn the_seeds_pass() {
    for seed in SEEDS {
        let features = check(seed, &mut Rng::new(7));
        assert!(
            features.len() > 1,
            "no answer to {:?}",
            String::from_utf8_lossy(seed)
        );
    }
}

#[test]
#[ignore = "a fuzz run: scripts/fuzz http <seconds>"]
fn fuzz_http_request_head() {
    let target = Target {
        name: "http",
        seeds: SEEDS,
        dictionary: DICTIONARY,
        max_len: 24 * 1024,
        check: &check,
    };
    let report = fuzzing::run(&target, fuzzing::budget());
    fuzzing::finish("http", &report);
}

/// Found by the fuzz run (the input as found, 14 KB): a refused request
/// with a body, then lines that make no request, on one connection. With
/// hyper's vectored writes the 400 for those went out between the
/// refusal's head and its body, so a client would have read the body as
/// the next response. `http1_builder` now turns vectored writes off.
#[test]
fn an_answer_and_the_400_after_it_go_out_in_order() {
    let data = include_bytes!("fuzz/out-of-order-400.http");
    let cuts = [
        166, 118, 104, 14, 129, 122, 154, 62, 145, 6, 159, 173, 25, 104, 194, 154,
    ];
    let out = runtime().block_on(exchange(data, &cuts, false));
    let text = String::from_utf8_lossy(&out);
    let first = text.find("HTTP/1.1 421 ").expect("the 421");
    let body = text
        .find("misdirected request: not a name")
        .expect("its body");
    let second = text.find("HTTP/1.1 400 ").expect("the 400");
    assert!(first < body && body < second, "{text:?}");
    check_responses(&out);
}
