//! Assembly: bind, daemonise, pid file, privilege drop, then build the
//! runtime and run the listeners, the forwarder and signal handling until
//! shutdown. Exit codes: 0 success, 1 error, 2 a port could not be bound.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::admin::AdminContext;
use crate::config::Settings;
use crate::filter::{Filter, FilterSpec};
use crate::net::{self, BoundListener, Listen};
use crate::smtp::forward::Forwarder;
use crate::smtp::server::Shared;
use crate::store::Spool;
use crate::verify::Verifier;
use crate::{error, info, warning};

/// Exit code when a listening socket cannot be bound (E-MailRelay's 2).
pub const EXIT_BIND: i32 = 2;

/// Runs the relay; returns the process exit code.
pub fn run(settings: Settings) -> anyhow::Result<i32> {
    crate::log::init(settings.log.clone(), "emailrelay");
    // E-MailRelay's spool permissions: files rw-rw----, whatever the caller's umask.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o007));
    for name in &settings.ignored {
        warning!("the --{name} option is for Windows only and is ignored");
    }
    for text in &settings.warnings {
        warning!("{text}");
    }
    let spool_dir = settings.spool_dir.clone();
    crate::sys::raise_file_limit();
    let smtp_listen = settings
        .smtp
        .as_ref()
        .map_or(&[][..], |s| s.listen.as_slice());
    let admin_listen = settings
        .admin
        .as_ref()
        .map_or(&[][..], |a| a.listen.as_slice());
    let bound = bind_all(smtp_listen).and_then(|smtp| Ok((smtp, bind_all(admin_listen)?)));
    let (smtp_listeners, admin_listeners) = match bound {
        Ok(bound) => bound,
        Err(code) => return Ok(code),
    };
    let pop_listen = settings
        .pop
        .as_ref()
        .map_or(&[][..], |p| p.listen.as_slice());
    let pop_listeners = match bind_all(pop_listen) {
        Ok(bound) => bound,
        Err(code) => return Ok(code),
    };
    if settings.daemon {
        crate::sys::daemonise().context("cannot run in the background")?;
    }
    if let Some(path) = &settings.pid_file {
        write_pid_file(path)?;
    }
    if !spool_dir.exists() {
        // Created here, before any privilege drop, and given to the account
        // that will write it; `Spool::open` would otherwise create it later.
        std::fs::create_dir(&spool_dir)
            .with_context(|| format!("cannot create spool directory [{}]", spool_dir.display()))?;
        if let (true, Some(user)) = (crate::sys::is_root(), &settings.user) {
            crate::sys::give_to_user(&spool_dir, user).with_context(|| {
                format!(
                    "cannot give spool directory [{}] to user {user}",
                    spool_dir.display()
                )
            })?;
        }
    }
    if let (true, Some(user)) = (crate::sys::is_root(), &settings.user) {
        crate::sys::drop_privileges(user)
            .with_context(|| format!("cannot switch to user {user}"))?;
        nix::unistd::access(&spool_dir, nix::unistd::AccessFlags::W_OK).map_err(|e| {
            anyhow::anyhow!("spool directory [{}] is not writable by user {user}: {e} (use --user root or change its group)", spool_dir.display())
        })?;
    }
    if settings.close_stderr {
        crate::log::close_stderr();
        let _ = crate::sys::redirect_to_null(&[2]);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let pid_file = settings.pid_file.clone();
    let result = runtime.block_on(serve(
        settings,
        smtp_listeners,
        admin_listeners,
        pop_listeners,
    ));
    // E-MailRelay removes its pid file at exit (its test suite checks).
    if let Some(path) = pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

type Bound = Vec<(Listen, BoundListener)>;

fn bind_all(listen: &[Listen]) -> Result<Bound, i32> {
    let mut bound = Vec::new();
    let wildcard_pair = listen.len() == 2
        && listen
            .iter()
            .all(|l| matches!(l, Listen::Tcp(a) if a.ip().is_unspecified()));
    for l in listen {
        match net::bind(l) {
            Ok(b) => bound.push((l.clone(), b)),
            // The IPv6 wildcard is optional when IPv6 is not available at all.
            Err(e)
                if wildcard_pair
                    && matches!(l, Listen::Tcp(a) if a.is_ipv6())
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
                    ) => {}
            Err(e) => {
                error!("cannot bind the listening port {l}: {e}");
                return Err(EXIT_BIND);
            }
        }
    }
    Ok(bound)
}

fn write_pid_file(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir(parent);
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write pid file [{}]", path.display()))
}

async fn serve(
    settings: Settings,
    smtp_listeners: Bound,
    admin_listeners: Bound,
    pop_listeners: Bound,
) -> anyhow::Result<i32> {
    // Signal handlers go in before anything can accept a connection, so a
    // SIGTERM that follows a successful connect always shuts down cleanly.
    let signals = Signals::install()?;
    let spool = Spool::open(&settings.spool_dir)?;
    match spool.recover_busy() {
        Ok(0) => {}
        Ok(n) => info!("recovered {n} message(s) left locked by a previous run"),
        Err(e) => warning!("{e}"),
    }
    let filters = &settings.filters;
    let filter = |label, specs: &Vec<FilterSpec>| {
        (!specs.is_empty()).then(|| {
            Filter::new(
                label,
                specs.clone(),
                filters.settings.clone(),
                Arc::clone(&spool),
            )
        })
    };
    let server_filter = filter("filter", &filters.server);
    let client_filter = filter("client filter", &filters.client);
    let verifier = settings
        .verifier
        .clone()
        .map(|spec| Arc::new(Verifier::new(spec, filters.settings.timeout)));
    let forwarder = Forwarder::new(settings.forward.clone(), Arc::clone(&spool), client_filter);
    if settings.forward.exit_when_done {
        return Ok(forward_and_exit(&forwarder, settings.forward.on_start).await);
    }
    // A long-running relay keeps its OAuth tokens fresh in the background;
    // a one-shot --as-client run gets them as it needs them.
    if let Some(auth) = &settings.forward.auth {
        for account in auth.oauth_accounts() {
            tokio::spawn(Arc::clone(account).keep_fresh());
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let smtp_settings = settings
        .smtp
        .clone()
        .unwrap_or_else(|| dummy_smtp_settings(&settings));
    let shared = Arc::new(Shared {
        settings: smtp_settings,
        spool: Arc::clone(&spool),
        forwarder: Arc::clone(&forwarder),
        filter: server_filter,
        verifier,
        enabled: AtomicBool::new(true),
        in_started: Default::default(),
        in_finished: Default::default(),
        shutdown: stop_rx.clone(),
    });
    let mut listening = Vec::new();
    for (listen, listener) in smtp_listeners {
        info!("smtp server on {listen}");
        listening.push(listen.to_string());
        let shared = Arc::clone(&shared);
        crate::serve::spawn_acceptor(listener, stop_rx.clone(), move |stream, peer| {
            tokio::spawn(crate::smtp::server::serve(
                stream,
                peer,
                Arc::clone(&shared),
            ));
        })?;
    }
    let pop = start_pop(&settings, pop_listeners, stop_rx.clone())?;
    if let Some(admin) = settings.admin.clone() {
        let ctx = Arc::new(AdminContext {
            settings: admin,
            smtp: Arc::clone(&shared),
            listening: listening.clone(),
            terminate: stop_tx.clone(),
        });
        for (listen, listener) in admin_listeners {
            info!("admin server on {listen}");
            let ctx = Arc::clone(&ctx);
            crate::serve::spawn_acceptor(listener, stop_rx.clone(), move |stream, peer| {
                tokio::spawn(crate::admin::serve(stream, peer, Arc::clone(&ctx)));
            })?;
        }
    }
    let forward_task = tokio::spawn(Arc::clone(&forwarder).run(stop_rx.clone()));
    if settings.forward.on_start {
        forwarder.trigger();
    }
    wait_for_stop(signals, stop_rx.clone()).await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    // Idle sessions get 421 at once; a session inside DATA finishes its
    // message (and gets its 250) first. Wait a bounded time for them all.
    let drained =
        crate::smtp::server::wait_for_sessions(&shared, std::time::Duration::from_secs(10)).await;
    let pop_drained = match &pop {
        Some(pop) => {
            pop.wait_for_sessions(std::time::Duration::from_secs(2))
                .await
        }
        None => true,
    };
    if !drained || !pop_drained {
        warning!("shutting down with sessions still active");
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), forward_task).await;
    Ok(0)
}

/// `--pop`: a POP server on its listeners, sharing the spool directory.
fn start_pop(
    settings: &Settings,
    listeners: Bound,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Arc<crate::pop::PopShared>>> {
    let Some(pop) = settings.pop.clone() else {
        return Ok(None);
    };
    let shared = crate::pop::PopShared::new(pop, settings.spool_dir.clone(), stop.clone());
    for (listen, listener) in listeners {
        info!("pop server on {listen}");
        let shared = Arc::clone(&shared);
        crate::serve::spawn_acceptor(listener, stop.clone(), move |stream, peer| {
            tokio::spawn(crate::pop::serve(stream, peer, Arc::clone(&shared)));
        })?;
    }
    Ok(Some(shared))
}

async fn forward_and_exit(forwarder: &Arc<Forwarder>, on_start: bool) -> i32 {
    if !on_start || !forwarder.enabled() {
        return 0;
    }
    let summary = forwarder.pass().await;
    info!(
        "forwarding done: {} sent, {} failed, {} deferred",
        summary.sent, summary.failed, summary.deferred
    );
    i32::from(summary.failed + summary.deferred > 0)
}

fn dummy_smtp_settings(settings: &Settings) -> crate::smtp::server::ServerSettings {
    crate::smtp::server::ServerSettings {
        listen: Vec::new(),
        remote_clients: false,
        domain: settings.forward.helo_domain.clone(),
        anonymous: Default::default(),
        max_size: 0,
        idle_timeout: std::time::Duration::from_secs(60),
        pipelining: true,
        smtputf8: false,
        smtputf8_strict: false,
        chunking: false,
        trace: false,
        immediate: false,
        tls: None,
        tls_connection: false,
        tls_required: false,
        dnsbl: None,
        auth: None,
    }
}

/// SIGTERM and SIGINT, registered with the runtime.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }
}

async fn wait_for_stop(mut signals: Signals, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = signals.term.recv() => {}
        _ = signals.int.recv() => {}
        _ = stop.changed() => {}
    }
}
