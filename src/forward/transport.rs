//! The seam between the scheduler and the wire: a [`Transport`] opens a
//! [`Link`] to an upstream, and a link sends messages one after another.
//! SMTP ([`SmtpTransport`]) is one transport; Microsoft Graph's `sendMail`
//! (`super::graph`) is the second, chosen by the account file. Tests put a fake one here to drive the
//! scheduler with paused time.
//!
//! Must not decide anything about a message: outcomes go back to the
//! scheduler as they came, a reply or a [`ConnectionError`].

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use emailrelay_proto::sasl::{ClientSecret, Mechanism};
use emailrelay_proto::smtp::{ClientConfig, OutgoingMessage, SendOutcome};

use super::client::{Connection, ConnectionError, Timeouts};
use super::doorbell::Doorbell;
use super::graph::{GraphTransport, Mailboxes};
use super::ForwardSettings;
use crate::info;
use crate::monitor::{Connections, Registered};

/// A boxed future, so that transports can sit behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens links to upstreams.
pub trait Transport: Send + Sync {
    /// Connects to `target` (an address as `--forward-to` gives it),
    /// greets and, with a secret, authenticates.
    fn open<'a>(
        &'a self,
        target: &'a str,
        secret: Option<ClientSecret>,
    ) -> BoxFuture<'a, Result<Box<dyn Link>, ConnectionError>>;
}

/// One open link to an upstream, reused for many messages.
pub trait Link: Send {
    /// The name the upstream accepted, if the link authenticated.
    fn authenticated(&self) -> Option<&str>;
    /// The mechanism the link authenticated with, if it did.
    fn auth_mechanism(&self) -> Option<Mechanism>;
    /// Sends one message, its content read from `content`.
    fn send<'a>(
        &'a mut self,
        message: OutgoingMessage,
        content: &'a Path,
    ) -> BoxFuture<'a, Result<SendOutcome, ConnectionError>>;
    /// The wait the upstream asked for in its last throttling answer
    /// (Graph's `Retry-After`), if it gave one: the route waits exactly
    /// that long instead of its own backoff.
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
    /// The line logged for each message sent over the link after its
    /// first, with the route's address.
    fn connection_line(&self, target: &str) -> String {
        // E-MailRelay compatibility: its words for SMTP.
        format!("smtp connection to {target}")
    }
    /// Ends the link politely.
    fn quit(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// SMTP to the upstream, with the instance's client settings; outgoing
/// connections are counted in the process's registry.
pub struct SmtpTransport {
    settings: ForwardSettings,
    connections: Arc<Connections>,
}

impl SmtpTransport {
    pub fn new(settings: ForwardSettings, connections: Arc<Connections>) -> SmtpTransport {
        SmtpTransport {
            settings,
            connections,
        }
    }

    /// Connects, greets and authenticates; the connection is counted in
    /// the registry (admin `status`) for as long as the link lives.
    async fn connect(
        &self,
        target: &str,
        secret: Option<ClientSecret>,
    ) -> Result<SmtpLink, ConnectionError> {
        let s = &self.settings;
        self.connections.emit(&["client", "connecting", target]);
        let connected = crate::net::connect_from(target, s.client_interface, s.connection_timeout)
            .await
            .map_err(|e| ConnectionError::Io(std::io::Error::other(e.to_string())))?;
        // E-MailRelay compatibility: said once the connection is made.
        info!("smtp connection to {target}");
        let local = connected
            .local
            .as_ref()
            .map(crate::net::display_addr)
            .unwrap_or_default();
        let registered = self.connections.outgoing(local, target.to_string());
        let mut stream = connected.stream;
        let host = crate::net::target_host(target);
        let implicit = match (&s.tls, s.tls_connection) {
            (Some(tls), true) => {
                let (tls_stream, info) =
                    tokio::time::timeout(s.response_timeout, tls.connect(stream, &host))
                        .await
                        .map_err(|_| ConnectionError::Timeout(s.response_timeout.as_secs()))?
                        .map_err(ConnectionError::Tls)?;
                info!("tls session established: {info}");
                stream = tls_stream;
                true
            }
            _ => false,
        };
        // E-MailRelay compatibility (RFC 5321 4.1.4): a domain that is not
        // a fully qualified name gives way to the connection's own address.
        let helo_domain = match connected.local {
            Some(local) if !s.helo_domain.contains('.') => local.ip().to_string(),
            _ => s.helo_domain.clone(),
        };
        let config = ClientConfig {
            helo_domain,
            pipelining: s.pipelining,
            forward_to_some: s.to_some,
            trace: s.trace,
            strict: s.strict,
            tls: s.tls_policy,
            implicit_tls: implicit,
            auth: secret.map(|secret| emailrelay_proto::smtp::ClientAuth {
                secret,
                policy: s
                    .auth
                    .as_ref()
                    .map(|a| a.policy.clone())
                    .unwrap_or_default(),
            }),
        };
        let connection = Connection::open(
            stream,
            config,
            Timeouts {
                response: s.response_timeout,
                prompt: s.prompt_timeout,
            },
            s.tls.clone().map(|tls| (tls, host)),
        )
        .await?;
        self.connections.emit(&["client", "connected", target]);
        Ok(SmtpLink {
            connection,
            _registered: registered,
        })
    }
}

impl Transport for SmtpTransport {
    fn open<'a>(
        &'a self,
        target: &'a str,
        secret: Option<ClientSecret>,
    ) -> BoxFuture<'a, Result<Box<dyn Link>, ConnectionError>> {
        Box::pin(async move {
            let link = self.connect(target, secret).await?;
            Ok(Box::new(link) as Box<dyn Link>)
        })
    }
}

/// An SMTP connection and its place in the registry.
struct SmtpLink {
    connection: Connection,
    _registered: Registered,
}

impl Link for SmtpLink {
    fn authenticated(&self) -> Option<&str> {
        self.connection.authenticated()
    }

    fn auth_mechanism(&self) -> Option<Mechanism> {
        self.connection.auth_mechanism()
    }

    fn send<'a>(
        &'a mut self,
        message: OutgoingMessage,
        content: &'a Path,
    ) -> BoxFuture<'a, Result<SendOutcome, ConnectionError>> {
        Box::pin(self.connection.send(message, content))
    }

    fn quit(self: Box<Self>) -> BoxFuture<'static, ()> {
        let SmtpLink {
            connection,
            _registered,
        } = *self;
        Box::pin(async move {
            connection.quit().await;
            drop(_registered);
        })
    }
}

/// How messages leave, by client account: SMTP, or Microsoft Graph for an
/// account file that says `transport = graph` (one transport per account,
/// made when first used; the mailboxes' limits are shared by all).
pub(super) struct Transports {
    smtp: Arc<dyn Transport>,
    graph: Mutex<HashMap<String, Arc<GraphTransport>>>,
    mailboxes: Mailboxes,
    /// Given to the Graph transports: a delivery report asks for a pass.
    doorbell: Arc<Doorbell>,
}

/// An account's Graph settings that cannot be used (a URL, a CA file).
#[derive(Debug)]
pub struct GraphSetupError {
    account: String,
    source: super::graph::SetupError,
}

impl std::fmt::Display for GraphSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "graph: account {}: {}", self.account, self.source)
    }
}

impl std::error::Error for GraphSetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl Transports {
    /// Everything by `smtp` but the Graph accounts.
    pub fn new(smtp: Arc<dyn Transport>, doorbell: Arc<Doorbell>) -> Transports {
        Transports {
            smtp,
            doorbell,
            graph: Mutex::new(HashMap::new()),
            mailboxes: Mailboxes::default(),
        }
    }

    /// The SMTP transport.
    pub fn smtp(&self) -> &dyn Transport {
        self.smtp.as_ref()
    }

    /// The transport for messages with account `selector`, under
    /// `settings`' client accounts.
    pub fn for_account(
        &self,
        selector: &str,
        settings: &ForwardSettings,
    ) -> Result<Arc<dyn Transport>, GraphSetupError> {
        let account = settings
            .auth
            .as_ref()
            .and_then(|auth| auth.oauth_account(selector));
        let Some((account, graph)) = account.and_then(|a| Some((a, a.graph()?))) else {
            return Ok(Arc::clone(&self.smtp));
        };
        let mut made = self
            .graph
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(transport) = made.get(selector) {
            return Ok(Arc::clone(transport) as Arc<dyn Transport>);
        }
        let transport = GraphTransport::new(
            Arc::clone(account),
            graph,
            &self.mailboxes,
            settings.connection_timeout,
            settings.response_timeout,
            Arc::clone(&self.doorbell),
        )
        .map_err(|source| GraphSetupError {
            account: account.user().to_string(),
            source,
        })?;
        let transport = Arc::new(transport);
        made.insert(selector.to_string(), Arc::clone(&transport));
        Ok(transport)
    }
}
