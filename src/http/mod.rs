//! The operator HTTP endpoint (`--http-port`; not in E-MailRelay 2.6.1):
//! `GET /metrics` (Prometheus text), `GET /healthz`, `GET /queue` (JSON),
//! `POST /queue/<id>/retry` and `DELETE /queue/<id>`, and the status page
//! for people at `/` with its data (`/status.json`, `/status/...`), over
//! HTTP/1.1 with hyper on the instance's runtime. This file: one
//! connection's server, its limits, the access rules and the routing;
//! `origin` checks `Host` and the origin of state-changing requests,
//! `slots` keeps idle connections from crowding out probes; `metrics`,
//! `health` and `queue` make the scripts' answers, `page`, `status` and
//! `browse` the status page's.
//!
//! Must not: act on the spool or the forwarder except through `control`
//! (the admin port and this must always agree), show the queue or act on
//! it for a peer the admin port would refuse, read the spool on the
//! runtime's threads (spool work runs on the blocking pool), or read a
//! request body (none is needed, so none is buffered).

mod access;
mod browse;
mod health;
mod metrics;
mod origin;
mod page;
mod queue;
mod slots;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

pub use access::HttpAuth;
use slots::{Admission, Slots};

use crate::control::Control;
use crate::net::{display_addr, Listen, Stream};

/// `/healthz` fails while a queued message is older than this, unless
/// `--http-max-queue-age` says otherwise.
pub const DEFAULT_MAX_QUEUE_AGE: Duration = Duration::from_secs(60 * 60);

/// A request's head must arrive within this, and an idle keep-alive
/// connection closes after it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The most a request head may take in memory (hyper's minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Connections open at once, per instance; a new one beyond this closes
/// the connection idle longest (`slots`), or is closed at once when every
/// connection is answering a request.
const MAX_CONNECTIONS: usize = 32;

/// How long a connection has to finish its request at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// HTTP endpoint settings; built by `config`.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub listen: Vec<Listen>,
    /// `--remote-clients`: the queue is shown to any peer, as the admin
    /// port is then open to any.
    pub remote_clients: bool,
    /// `--http-max-queue-age`.
    pub max_queue_age: Duration,
    /// The names a request's `Host` may give besides an address (the
    /// `--domain`; `localhost` is always one).
    pub names: Vec<String>,
    /// `--http-auth`: the names and secrets that may log in.
    pub auth: Option<Arc<HttpAuth>>,
    /// `--http-tls`: HTTPS with the server certificate.
    pub tls: Option<crate::tls::ServerTls>,
}

/// What every connection of one instance's endpoint shares.
pub struct HttpContext {
    settings: HttpSettings,
    control: Arc<Control>,
    stop: watch::Receiver<bool>,
    slots: Arc<Slots>,
    /// `Host` names answered to (`origin::host_names`).
    hosts: Vec<String>,
    /// The status page's history and route waits.
    status: Arc<status::StatusState>,
    /// The status page's anti-forgery token (`page`).
    token: String,
}

impl HttpContext {
    /// The context, and the status page's sampler started on the
    /// current runtime; `instance` is the instance's name, with several.
    pub fn new(
        settings: HttpSettings,
        control: Arc<Control>,
        stop: watch::Receiver<bool>,
        instance: Option<String>,
    ) -> Arc<HttpContext> {
        let status = status::StatusState::new(instance);
        tokio::spawn(status::sampler(
            Arc::clone(&status),
            Arc::clone(&control),
            stop.clone(),
        ));
        Arc::new(HttpContext {
            hosts: origin::host_names(&settings.names),
            settings,
            control,
            stop,
            slots: Slots::new(MAX_CONNECTIONS),
            status,
            token: page::new_token(),
        })
    }
}

/// Serves one connection until the peer closes, a limit is hit, or the
/// relay stops (then the request under way is finished first).
pub async fn serve(stream: Box<dyn Stream>, peer: Option<SocketAddr>, ctx: Arc<HttpContext>) {
    let slot = match ctx.slots.admit() {
        Admission::Admitted { slot, evicted } => {
            if evicted {
                crate::debug!(
                    "http connection from {}: the connection idle longest closed to make room",
                    peer_text(peer)
                );
            }
            Arc::new(slot)
        }
        Admission::Full => {
            crate::debug!(
                "http connection from {}: too many requests at once",
                peer_text(peer)
            );
            return;
        }
    };
    let stream = match &ctx.settings.tls {
        None => stream,
        Some(tls) => match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(e)) => {
                crate::debug!("http connection from {}: tls: {e}", peer_text(peer));
                return;
            }
            Err(_) => {
                crate::debug!("http connection from {}: tls: timed out", peer_text(peer));
                return;
            }
        },
    };
    let mut stop = ctx.stop.clone();
    let service_slot = Arc::clone(&slot);
    let service = hyper::service::service_fn(move |request| {
        let ctx = Arc::clone(&ctx);
        let busy = service_slot.busy();
        async move {
            let response = handle(request, peer, &ctx).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1_builder().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        // Dropping the connection closes it.
        _ = slot.evicted() => return,
        _ = stop.changed() => connection.as_mut().graceful_shutdown(),
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
}

/// HTTP/1.1 as this endpoint speaks it: the head's limits in time and size.
fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .writev(false);
    builder
}

/// What a request path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route<'a> {
    Metrics,
    Health,
    Queue,
    /// `/queue/<id>`.
    Message(&'a str),
    /// `/queue/<id>/retry`.
    Retry(&'a str),
    /// `/`, `/status.js`, `/status.css`.
    Page(page::Asset),
    /// `/status.json`.
    Status,
    /// `/status/queue`.
    Browse,
    /// `/status/message/<id>`.
    Headers(&'a str),
    /// `/status/message/<id>/<action>`.
    Act(&'a str, &'a str),
    Unknown,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Route<'a> {
        let parts: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        match parts.as_slice() {
            ["metrics"] => Route::Metrics,
            ["healthz"] => Route::Health,
            ["queue"] => Route::Queue,
            ["queue", id] => Route::Message(id),
            ["queue", id, "retry"] => Route::Retry(id),
            [""] => Route::Page(page::Asset::Html),
            ["status.js"] => Route::Page(page::Asset::Script),
            ["status.css"] => Route::Page(page::Asset::Style),
            ["status.json"] => Route::Status,
            ["status", "queue"] => Route::Browse,
            ["status", "message", id] => Route::Headers(id),
            ["status", "message", id, action] => Route::Act(id, action),
            _ => Route::Unknown,
        }
    }

    /// The methods the route answers, for the `Allow` header of a 405.
    fn allowed(self) -> &'static str {
        match self {
            Route::Message(_) => "DELETE",
            Route::Retry(_) | Route::Act(..) => "POST",
            _ => "GET, HEAD",
        }
    }

    /// True for the routes behind the admin port's access rule.
    fn is_queue(self) -> bool {
        matches!(
            self,
            Route::Queue
                | Route::Message(_)
                | Route::Retry(_)
                | Route::Browse
                | Route::Headers(_)
                | Route::Act(..)
        )
    }
}

/// One request's answer, and its log line.
async fn handle(
    request: Request<Incoming>,
    peer: Option<SocketAddr>,
    ctx: &HttpContext,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path();
    let route = Route::parse(path);
    let response = match refusal(&request, &method, &ctx.hosts) {
        Some(response) => response,
        None => match authenticate(&request, route, ctx) {
            Err(response) => *response,
            Ok(user) => {
                let token = page::token_ok(request.headers(), &ctx.token);
                let who = Who { peer, user, token };
                answer(&method, route, request.uri().query(), &who, ctx).await
            }
        },
    };
    let line = format!(
        "http request from {}: {method} {}: {}",
        peer_text(peer),
        path.escape_debug(),
        response.status().as_u16()
    );
    // Reads are what scrapers and probes do all day: not worth a line each
    // but with --debug. An action on the queue is an operator's act.
    if method == Method::GET || method == Method::HEAD {
        crate::debug!("{line}");
    } else {
        crate::info!("{line}");
    }
    response
}

/// The answer to a request the origin rules refuse (see `origin`), with
/// its warning: 421 for a `Host` that is not ours, 403 for a
/// state-changing request from another origin.
fn refusal(
    request: &Request<Incoming>,
    method: &Method,
    hosts: &[String],
) -> Option<Response<Full<Bytes>>> {
    let headers = request.headers();
    if !origin::host_allowed(headers, hosts) {
        let host = headers.get(hyper::header::HOST).map_or(String::new(), |h| {
            emailrelay_proto::printable::printable(h.as_bytes())
        });
        crate::warning!(
            "http request rejected: Host [{host}] is not a name of this relay (DNS rebinding?)"
        );
        return Some(text(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected request: not a name of this relay\n",
        ));
    }
    if *method == Method::GET || *method == Method::HEAD {
        return None;
    }
    let why = origin::cross_origin(headers)?;
    crate::warning!(
        "http request rejected: {method} from another origin: {}",
        emailrelay_proto::printable::printable(why.as_bytes())
    );
    Some(text(
        StatusCode::FORBIDDEN,
        "forbidden: cross-origin request\n",
    ))
}

/// Who asks: the peer, the name it authenticated as (`--http-auth`), and
/// whether it showed the status page's token.
struct Who {
    peer: Option<SocketAddr>,
    user: Option<String>,
    token: bool,
}

/// With `--http-auth`, the name a request authenticated as, or its 401;
/// `/healthz` is open to probes.
fn authenticate(
    request: &Request<Incoming>,
    route: Route<'_>,
    ctx: &HttpContext,
) -> Result<Option<String>, Box<Response<Full<Bytes>>>> {
    let Some(auth) = &ctx.settings.auth else {
        return Ok(None);
    };
    if route == Route::Health {
        return Ok(None);
    }
    if let Some(user) = auth.check(request.headers()) {
        return Ok(Some(user));
    }
    if request.headers().contains_key(hyper::header::AUTHORIZATION) {
        crate::warning!("http request rejected: authentication failed");
    }
    let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized: log in\n");
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static(auth.challenge()),
    );
    Err(Box::new(response))
}

async fn answer(
    method: &Method,
    route: Route<'_>,
    query: Option<&str>,
    who: &Who,
    ctx: &HttpContext,
) -> Response<Full<Bytes>> {
    let (peer, token) = (who.peer, who.token);
    if route == Route::Unknown {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if route.is_queue() && who.user.is_none() && !admitted(peer, &ctx.settings) {
        crate::warning!(
            "http request rejected from {}: not a local address: use --remote-clients to allow it",
            peer_text(peer)
        );
        return text(StatusCode::FORBIDDEN, "forbidden: not a local address\n");
    }
    let read = *method == Method::GET || *method == Method::HEAD;
    let control = Arc::clone(&ctx.control);
    match (route, method) {
        (Route::Metrics, _) if read => metrics::answer(control).await,
        (Route::Health, _) if read => {
            let serving = !*ctx.stop.borrow();
            health::answer(control, ctx.settings.max_queue_age, serving).await
        }
        (Route::Queue, _) if read => queue::list(control, query).await,
        (Route::Message(id), &Method::DELETE) => queue::delete(control, id).await,
        (Route::Retry(id), &Method::POST) => queue::retry(control, id).await,
        (Route::Page(asset), _) if read => page::answer(asset, &ctx.token),
        (Route::Status, _) if read => status::answer(Arc::clone(&ctx.status), control).await,
        (Route::Browse, _) if read => browse::list(control, query).await,
        (Route::Headers(id), _) if read => browse::headers(control, id).await,
        (Route::Act(id, action), &Method::POST) => {
            let Some(action) = browse::Action::parse(action) else {
                return text(StatusCode::NOT_FOUND, "not found\n");
            };
            if !token {
                crate::warning!(
                    "http request rejected from {}: the status page's token is missing or wrong",
                    peer_text(peer)
                );
                return text(
                    StatusCode::FORBIDDEN,
                    "forbidden: missing or wrong page token: reload the status page\n",
                );
            }
            browse::act(control, id, action).await
        }
        _ => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(route.allowed()));
            response
        }
    }
}

/// The admin port's rule: local addresses only, unless `--remote-clients`;
/// a unix-domain socket's peer is local.
fn admitted(peer: Option<SocketAddr>, settings: &HttpSettings) -> bool {
    settings.remote_clients || peer.is_none_or(|a| crate::net::is_local_address(a.ip()))
}

fn peer_text(peer: Option<SocketAddr>) -> String {
    peer.as_ref().map_or_else(|| "unix".into(), display_addr)
}

/// A plain-text answer.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body.into())
}

/// An answer with this body and content type.
fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Runs spool work on the blocking pool; a panic there is a 500, not a
/// lost connection.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response<Full<Bytes>>> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}\n"),
        )
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_routes() {
        assert_eq!(Route::parse("/metrics"), Route::Metrics);
        assert_eq!(Route::parse("/healthz"), Route::Health);
        assert_eq!(Route::parse("/queue"), Route::Queue);
        assert_eq!(
            Route::parse("/queue/emailrelay.1.2.3"),
            Route::Message("emailrelay.1.2.3")
        );
        assert_eq!(Route::parse("/queue/x/retry"), Route::Retry("x"));
        assert_eq!(Route::parse("/queue/"), Route::Message(""));
        assert_eq!(Route::parse("/"), Route::Page(page::Asset::Html));
        assert_eq!(Route::parse("/status/queue"), Route::Browse);
        assert_eq!(
            Route::parse("/status/message/x/retry"),
            Route::Act("x", "retry")
        );
        for unknown in [
            "/status/",
            "/status/message/x/y/z",
            "/metrics/",
            "/queue/x/y",
            "/queue/x/retry/",
            "/etc/passwd",
        ] {
            assert_eq!(Route::parse(unknown), Route::Unknown, "{unknown}");
        }
    }

    #[test]
    fn the_queue_is_for_local_peers_unless_remote_clients() {
        let mut settings = HttpSettings {
            listen: Vec::new(),
            remote_clients: false,
            max_queue_age: DEFAULT_MAX_QUEUE_AGE,
            names: Vec::new(),
            auth: None,
            tls: None,
        };
        let peer = |a: &str| Some(a.parse::<SocketAddr>().unwrap());
        assert!(admitted(peer("127.0.0.1:5"), &settings));
        assert!(admitted(peer("[::1]:5"), &settings));
        assert!(admitted(None, &settings));
        assert!(!admitted(peer("198.18.0.2:5"), &settings));
        settings.remote_clients = true;
        assert!(admitted(peer("198.18.0.2:5"), &settings));
        assert!(Route::Retry("x").is_queue() && !Route::Metrics.is_queue());
    }
}
