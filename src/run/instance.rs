//! One relay instance at run time: its spool, filters, verifier,
//! forwarder, SMTP, POP, admin and HTTP listeners, started from its settings.
//!
//! Several instances run side by side in one runtime; nothing here is
//! shared between them but the stop signal.

use std::sync::Arc;

use tokio::sync::watch;

use super::{spawn_acceptor, Accept, Bound};
use crate::admin::AdminContext;
use crate::config::InstanceSettings;
use crate::control::Control;
use crate::filter::{Filter, FilterSpec};
use crate::forward::Forwarder;
use crate::instance::Instance;
use crate::monitor::Connections;
use crate::pop::PopShared;
use crate::serve::SessionLimit;
use crate::smtp::server::Shared;
use crate::store::Spool;
use crate::verify::Verifier;
use crate::{info, verbose, warning};

/// The listeners one instance bound before the privilege drop.
pub struct Listeners {
    pub smtp: Bound,
    pub admin: Bound,
    pub pop: Bound,
    pub http: Bound,
}

/// A started instance.
pub struct Running {
    pub instance: Arc<Instance>,
    /// The SMTP server's state, if the instance serves SMTP.
    pub smtp: Option<Arc<Shared>>,
    pub pop: Option<Arc<PopShared>>,
    pub forward_task: tokio::task::JoinHandle<()>,
    /// What starts serving (the listeners, a forwarding pass at startup),
    /// held back until every instance has written its startup lines.
    pub deferred: Vec<Deferred>,
}

/// A start held back by `Running::deferred`.
pub type Deferred = Box<dyn FnOnce() -> anyhow::Result<()> + Send>;

impl Running {
    /// Starts what was held back.
    pub fn go(&mut self) -> anyhow::Result<()> {
        for start in self.deferred.drain(..) {
            start()?;
        }
        Ok(())
    }
}

/// The parts of an instance that exist before it serves anyone.
pub struct Prepared {
    pub settings: InstanceSettings,
    pub spool: Arc<Spool>,
    pub forwarder: Arc<Forwarder>,
    server_filter: Option<Arc<Filter>>,
    verifier: Option<Arc<Verifier>>,
}

impl Prepared {
    /// Opens the spool (recovering messages a crash left locked) and
    /// builds the filters, verifier and forwarder.
    pub fn new(
        settings: InstanceSettings,
        connections: &Arc<Connections>,
    ) -> anyhow::Result<Prepared> {
        let (spool, journal) = Spool::open_journaled(&settings.spool_dir)?;
        match journal {
            Ok(replayed) if replayed.restored.is_empty() => {}
            Ok(replayed) => info!(
                "spool journal: {} message(s) restored after a crash: {}",
                replayed.restored.len(),
                replayed
                    .restored
                    .iter()
                    .map(|id| format!("[{id}]"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Err(e) => warning!("spool journal not used: {e}"),
        }
        match spool.recover_busy() {
            Ok(0) => {}
            Ok(n) => info!("recovered {n} message(s) left locked by a previous run"),
            Err(e) => warning!("{e}"),
        }
        spool.sweep(std::time::SystemTime::now());
        let filters = &settings.filters;
        let filter = |specs: &Vec<FilterSpec>| {
            (!specs.is_empty())
                .then(|| Filter::new(specs.clone(), filters.settings.clone(), Arc::clone(&spool)))
        };
        let server_filter = filter(&filters.server);
        let client_filter = filter(&filters.client);
        let verifier = settings
            .verifier
            .clone()
            .map(|spec| Arc::new(Verifier::new(spec, filters.settings.timeout)));
        let forwarder = Forwarder::new(
            settings.forward.clone(),
            Arc::clone(&spool),
            client_filter,
            Arc::clone(connections),
        );
        Ok(Prepared {
            settings,
            spool,
            forwarder,
            server_filter,
            verifier,
        })
    }

    /// Early warnings about forwarding, as E-MailRelay gives them: a proxy
    /// that makes clients wait, and a `--forward-to` name that does not
    /// resolve (a long-running relay only: a one-shot run will say so soon
    /// enough).
    pub async fn warn_early(&self) {
        // Not in E-MailRelay 2.6.1: an open relay is worth a line at startup.
        let open = (self.settings.smtp.as_ref())
            .is_some_and(|s| s.remote_clients && s.auth.is_none() && self.verifier.is_none());
        if open {
            warning!("--remote-clients with neither --server-auth nor --address-verifier: any host that can connect can relay mail through this server");
        }
        let forward = &self.settings.forward;
        if forward.immediate {
            warning!("using --immediate can result in client timeout errors: try --forward-on-disconnect instead");
        }
        let Some(target) = &forward.forward_to else {
            return;
        };
        let (target, _) = crate::net::split_proxy(target);
        if forward.on_start
            || target.starts_with('/')
            || !crate::log::enabled(crate::log::Level::Info)
        {
            return;
        }
        if let Err(e) = crate::net::resolve_target(target).await {
            warning!("dns lookup of forward-to address failed: {e}");
        }
    }

    /// Starts the listeners and the forwarder.
    pub fn start(
        self,
        listeners: Listeners,
        stop: &watch::Sender<bool>,
        pid: u32,
        connections: &Arc<Connections>,
        sessions: &Arc<SessionLimit>,
        unit: Option<Arc<str>>,
    ) -> anyhow::Result<Running> {
        let settings = &self.settings;
        // A long-running relay keeps its OAuth tokens fresh in the background.
        if let Some(auth) = &settings.forward.auth {
            for account in auth.oauth_accounts() {
                tokio::spawn(Arc::clone(account).keep_fresh());
            }
        }
        crate::forward::graph::trace::resume(
            &self.spool,
            &settings.forward,
            self.forwarder.doorbell(),
        );
        let stop_rx = stop.subscribe();
        let instance = Instance::new(Arc::clone(&self.spool), Arc::clone(&self.forwarder));
        let control = Control::new(
            Arc::clone(&instance),
            Arc::clone(connections),
            stop.clone(),
            pid,
        );
        let smtp = settings.smtp.clone().map(|smtp| {
            Arc::new(Shared {
                settings: smtp,
                instance: Arc::clone(&instance),
                filter: self.server_filter,
                verifier: self.verifier,
                in_started: Default::default(),
                in_finished: Default::default(),
                shutdown: stop_rx.clone(),
            })
        });
        // E-MailRelay compatibility: with several instances, the startup
        // lines say whose they are.
        let tag = unit.as_ref().map(|u| format!("[{u}] ")).unwrap_or_default();
        let domain = smtp
            .as_ref()
            .map_or(&settings.forward.helo_domain, |s| &s.settings.domain);
        let busy = format!("421 {domain} too many connections: try again later\r\n");
        let accept = Accept {
            connections: Arc::clone(connections),
            unit,
            log_peer: true,
            limit: Some((Arc::clone(sessions), Arc::from(busy.into_bytes()))),
            register: true,
            proxy: settings.proxy_protocol.clone().map(Arc::new),
        };
        // E-MailRelay compatibility: every startup line is out before the
        // first connection can be accepted (and logged), so the listeners
        // start only once the lines are written.
        let mut starting = Starting {
            tag,
            connections,
            stop: &stop_rx,
            acceptors: Vec::new(),
        };
        if let Some(smtp) = &smtp {
            starting.listen(
                "smtp",
                listeners.smtp,
                &accept,
                smtp,
                crate::smtp::server::serve,
            );
        }
        if let Some(admin) = settings.admin.clone() {
            let ctx = Arc::new(AdminContext {
                settings: admin,
                control: Arc::clone(&control),
            });
            let accept = Accept {
                log_peer: false,
                limit: None,
                proxy: None,
                ..accept.clone()
            };
            starting.listen("admin", listeners.admin, &accept, &ctx, crate::admin::serve);
        }
        let pop = settings.pop.clone().map(|pop| {
            let stats = Arc::clone(&self.forwarder.stats);
            let shared = PopShared::new(pop, settings.spool_dir.clone(), stats, stop_rx.clone());
            let accept = Accept {
                limit: Some((
                    Arc::clone(sessions),
                    Arc::from(&b"-ERR too many connections: try again later\r\n"[..]),
                )),
                ..accept.clone()
            };
            starting.listen("pop", listeners.pop, &accept, &shared, crate::pop::serve);
            // E-MailRelay's line, after the listeners'.
            info!(
                "{}pop server authentication secrets from \"{}\"",
                starting.tag, shared.settings.secrets
            );
            shared
        });
        // Not in E-MailRelay 2.6.1: after its lines.
        if let Some(http) = settings.http.clone() {
            let ctx = crate::http::HttpContext::new(
                http,
                Arc::clone(&control),
                stop_rx.clone(),
                accept.unit.as_deref().map(str::to_string),
            );
            let accept = Accept {
                log_peer: false,
                limit: None,
                register: false,
                proxy: None,
                ..accept.clone()
            };
            starting.listen("http", listeners.http, &accept, &ctx, crate::http::serve);
        }
        let Starting {
            tag, mut acceptors, ..
        } = starting;
        if let Some(target) = &settings.forward.forward_to {
            // E-MailRelay compatibility: a --verbose line, unlike the
            // listeners' lines.
            verbose!("{tag}forwarding to {target}");
        }
        let forward_task =
            start_background(&self.spool, &self.forwarder, accept.unit.clone(), &stop_rx);
        if settings.forward.on_start {
            let forwarder = Arc::clone(&self.forwarder);
            acceptors.push(Box::new(move || {
                forwarder.trigger(crate::forward::Reason::Startup);
                Ok(())
            }));
        }
        Ok(Running {
            instance,
            smtp,
            pop,
            forward_task,
            deferred: acceptors,
        })
    }
}

/// An instance's background tasks: the spool's sweep, and the forwarder's
/// loop (whose task is returned). With `--log-format=unit`, their lines say
/// whose they are, as E-MailRelay's forwarding lines do.
fn start_background(
    spool: &Arc<Spool>,
    forwarder: &Arc<Forwarder>,
    unit: Option<Arc<str>>,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let context = crate::log::Context {
        unit,
        ..Default::default()
    };
    tokio::spawn(crate::log::scope(
        context.clone(),
        sweep_spool(Arc::clone(spool), stop.clone()),
    ));
    tokio::spawn(crate::log::scope(
        context,
        Arc::clone(forwarder).run(stop.clone()),
    ))
}

/// An instance's listeners on their way to being started: each has its
/// startup line and its entry in the connection registry at once, and its
/// acceptor once every line is out.
struct Starting<'a> {
    /// `[<name>] ` with several instances, else empty.
    tag: String,
    connections: &'a Arc<Connections>,
    stop: &'a watch::Receiver<bool>,
    acceptors: Vec<Deferred>,
}

impl Starting<'_> {
    /// The `kind` server (`smtp`, `admin`, `pop`, `http`) on each of
    /// `listeners`, serving each connection with `serve` and its `state`.
    fn listen<S, F, Fut>(
        &mut self,
        kind: &str,
        listeners: Bound,
        accept: &Accept,
        state: &Arc<S>,
        serve: F,
    ) where
        S: Send + Sync + 'static,
        F: Fn(Box<dyn crate::net::Stream>, Option<std::net::SocketAddr>, Arc<S>) -> Fut
            + Clone
            + Send
            + Sync
            + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        for (listen, listener) in listeners {
            info!("{}{kind} server on {listen}", self.tag);
            self.connections.listening(listen.to_string());
            let (state, stop, accept, serve) = (
                Arc::clone(state),
                self.stop.clone(),
                accept.clone(),
                serve.clone(),
            );
            self.acceptors.push(Box::new(move || {
                spawn_acceptor(listener, stop, accept, move |stream, peer| {
                    serve(stream, peer, Arc::clone(&state))
                })
            }));
        }
    }
}

/// Sweeps the spool every [`crate::store::SWEEP_INTERVAL`] until shutdown
/// (see `store::sweep`: stale locks and orphans a crash left behind).
async fn sweep_spool(spool: Arc<Spool>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::store::SWEEP_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let spool = Arc::clone(&spool);
        let _ =
            tokio::task::spawn_blocking(move || spool.sweep(std::time::SystemTime::now())).await;
    }
}
