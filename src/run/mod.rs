//! Assembly: bind, daemonise, pid file, privilege drop, then build the
//! runtime and run every instance (listeners, forwarder) and the signal
//! handling until shutdown. Exit codes: 0 success, 1 error, 2 a port
//! could not be bound.
//!
//! Started as root with a `--user` other than root, the process splits in
//! two after binding: a small monitor that keeps E-MailRelay's identity
//! (real user root, effective user `--user`), owns the pid file, passes
//! signals on and removes the pid file at the end; and the relay itself,
//! which drops root for good before it reads a byte from the network.
//!
//! ```text
//!   start (root) -- bind -- [daemonise: parent waits for "ready"] -- pid file
//!        |
//!        +-- no --user drop needed: relay ........ exit: remove pid file
//!        |
//!        +-- fork: monitor (pid file's pid) --------- wait, forward signals
//!                  \-- relay (setuid --user) ..... exit -> monitor removes
//!                                                  pid file, exits alike
//! ```

mod exposure;
mod instance;
mod pidfile;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::{Config, InstanceSettings, ProcessSettings};
use crate::monitor::Connections;
use crate::net::{self, BoundListener, Listen};
use crate::platform::listen::is_unavailable_address;
use crate::platform::notify::Notifier;
use crate::platform::process::{self as sys, Ready, Role};
use crate::platform::signals::{self, StopEvent, StopEvents};
pub(crate) use crate::serve::{spawn_acceptor, Accept};
use crate::{info, warning};
use instance::{Listeners, Prepared};
use pidfile::PidFile;

/// Exit code when a listening socket cannot be bound (E-MailRelay's 2).
pub const EXIT_BIND: i32 = 2;

/// Runs the relay; returns the process exit code.
pub fn run(config: Config) -> anyhow::Result<i32> {
    let Config { process, instances } = config;
    // E-MailRelay's permissions: spool and log files rw-rw----, whatever
    // the caller's umask.
    sys::set_file_mask();
    signals::hold_stop_signals().context("cannot block signals")?;
    crate::log::init(process.log.clone(), "emailrelay")?;
    // Taken now, while single-threaded: it leaves the environment.
    let notifier = Notifier::from_env();
    log_warnings(&process, &instances);
    exposure::log_exposed(&instances);
    sys::raise_file_limit();
    let mut bound = Vec::new();
    let named = instances.len() > 1;
    for settings in &instances {
        match bind_instance(settings, named) {
            Ok(listeners) => bound.push(listeners),
            Err(code) => return Ok(code),
        }
    }
    let ready = if process.daemon {
        Some(sys::daemonise().context("cannot run in the background")?)
    } else {
        None
    };
    // Set-user-id root (started by an ordinary user): root was only for
    // binding, and goes for good now, back to that user, as 2.6.1 does.
    if sys::is_setuid_root() {
        sys::give_up_setuid_root().context("cannot give up set-user-id root")?;
    }
    let drop_to = process.user.as_deref().filter(|_| sys::is_root());
    let pid_file = match &process.pid_file {
        Some(path) => Some(PidFile::create(path, drop_to)?),
        None => None,
    };
    for settings in &instances {
        create_spool_dir(settings, drop_to)?;
    }
    let Some(user) = drop_to else {
        let started = Started {
            ready,
            notifier,
            pid: std::process::id(),
        };
        let code = relay(process, instances, bound, started);
        if let Some(pid_file) = pid_file {
            pid_file.remove();
        }
        return code;
    };
    let user = sys::Account::find(user)?;
    match sys::fork_monitor().context("cannot start the relay process")? {
        Role::Monitor(worker) => {
            // The monitor keeps no socket, spool or readiness pipe of the
            // relay's; the relay notifies systemd itself (NotifyAccess=all).
            drop((bound, instances, ready, notifier));
            let code = sys::monitor(worker, &user);
            if let Some(pid_file) = pid_file {
                sys::with_root(|| pid_file.remove());
            }
            Ok(code)
        }
        Role::Worker => {
            // The pid file is the monitor's to remove.
            drop(pid_file);
            let monitor_pid = sys::parent_pid();
            sys::drop_privileges(&user)
                .with_context(|| format!("cannot switch to user {}", user.name))?;
            for settings in &instances {
                check_spool_writable(settings, &user.name)?;
            }
            let started = Started {
                ready,
                notifier,
                pid: monitor_pid,
            };
            relay(process, instances, bound, started)
        }
    }
}

/// Whom the relay tells that it has started, and how it is known.
struct Started {
    /// The daemon's waiting parent.
    ready: Option<Ready>,
    /// systemd (`NOTIFY_SOCKET`).
    notifier: Option<Notifier>,
    /// The pid the pid file holds, for the admin `pid` command and
    /// systemd's `MAINPID=`.
    pid: u32,
}

impl Started {
    /// Tells systemd, then the daemon's parent, that the relay serves.
    /// systemd hears first: once the parent exits, systemd would otherwise
    /// see the process it started end before it was ready.
    fn notify(&mut self, status: &str, daemon: bool) {
        if let Some(notifier) = &self.notifier {
            let mut state = format!("READY=1\n{status}");
            // Daemonised, the process systemd started is gone: say which
            // one stays (the monitor with --user, else the relay).
            if daemon {
                state.push_str(&format!("\nMAINPID={}", self.pid));
            }
            notifier.send(&state);
        }
        if let Some(ready) = self.ready.take() {
            ready.notify();
        }
    }

    /// Tells systemd that the relay has begun to shut down.
    fn stopping(&self) {
        if let Some(notifier) = &self.notifier {
            notifier.send("STOPPING=1\nSTATUS=Shutting down");
        }
    }
}

/// The relay proper, once the process is what it will stay: the runtime
/// and every instance, until a signal or `terminate`.
fn relay(
    process: ProcessSettings,
    instances: Vec<InstanceSettings>,
    bound: Vec<Listeners>,
    started: Started,
) -> anyhow::Result<i32> {
    // One thread serves every session, as 2.6.1's event loop does; the
    // spool's commit thread and the blocking pool (filters' waits, spool
    // walks) run beside it. Measured on 2 cores with 20 sessions on a slow
    // disk: the multi-thread scheduler's hand-offs between its workers cost
    // 3.0-3.2 context switches and 152-158 us of CPU per accepted message,
    // this 2.6 and 140 us (2.6.1: 138-150 us), for 7-10% fewer messages a
    // second (still over twice Postfix's).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(process, instances, bound, started))
}

async fn serve(
    process: ProcessSettings,
    instances: Vec<InstanceSettings>,
    bound: Vec<Listeners>,
    mut started: Started,
) -> anyhow::Result<i32> {
    let pid = started.pid;
    // Signal handlers go in before anything can accept a connection, so a
    // SIGTERM that follows a successful connect always shuts down cleanly.
    let mut events = StopEvents::install().context("cannot handle signals")?;
    signals::release_stop_signals().context("cannot unblock signals")?;
    let connections = Connections::new();
    let mut prepared = Vec::new();
    for settings in instances {
        let instance = Prepared::new(settings, &connections)?;
        instance.warn_early().await;
        prepared.push(instance);
    }
    if prepared.iter().all(|p| p.settings.forward.exit_when_done) {
        started.notify("STATUS=Forwarding", process.daemon);
        return Ok(forward_and_exit(&prepared).await);
    }
    let queued: usize = prepared
        .iter()
        .map(|p| p.spool.walk_ready().map_or(0, |walk| walk.count()))
        .sum();
    // E-MailRelay compatibility: standard error closes before the
    // listening lines (they still go to a log file or syslog); the sockets
    // are bound already, so what can still fail is rare.
    if process.close_stderr {
        crate::log::close_stderr();
        let _ = sys::close_stderr();
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let sessions = crate::serve::SessionLimit::from_file_limit();
    let named = prepared.len() > 1;
    let mut running = Vec::new();
    for (instance, listeners) in prepared.into_iter().zip(bound) {
        let unit: Option<Arc<str>> = named.then(|| Arc::from(instance.settings.name.as_str()));
        running.push(instance.start(listeners, &stop_tx, pid, &connections, &sessions, unit)?);
    }
    // E-MailRelay compatibility: every instance's startup lines come
    // before the first connection is accepted (2.6.1 logs them all before
    // its event loop runs).
    for instance in &mut running {
        instance.go()?;
    }
    started.notify(&serving_status(queued), process.daemon);
    wait_for_stop(&mut events, stop_rx.clone()).await;
    started.stopping();
    drain(&process, &running, &mut events, stop_rx).await;
    let _ = stop_tx.send(true);
    // Idle sessions get 421 at once; a session inside DATA finishes its
    // message (and gets its 250) first. Wait a bounded time for them all.
    for instance in &running {
        let drained = match &instance.smtp {
            Some(smtp) => {
                crate::smtp::server::wait_for_sessions(smtp, Duration::from_secs(10)).await
            }
            None => true,
        };
        let pop_drained = match &instance.pop {
            Some(pop) => pop.wait_for_sessions(Duration::from_secs(2)).await,
            None => true,
        };
        if !drained || !pop_drained {
            warning!("shutting down with sessions still active");
        }
    }
    for instance in running {
        let _ = tokio::time::timeout(Duration::from_secs(5), instance.forward_task).await;
        let spool = Arc::clone(instance.instance.spool());
        let _ = tokio::task::spawn_blocking(move || spool.close()).await;
    }
    Ok(0)
}

/// `--as-client` (or `--dont-serve --forward`): one forwarding pass per
/// instance, then exit 1 if anything was left unsent.
async fn forward_and_exit(instances: &[Prepared]) -> i32 {
    let mut worked = false;
    let mut code = 0;
    for instance in instances {
        let forwarder = &instance.forwarder;
        let forward = &instance.settings.forward;
        let (true, Some(target)) = (forward.on_start, &forward.forward_to) else {
            continue;
        };
        worked = true;
        info!("forwarding to {target}");
        if !instance.spool.has_ready().unwrap_or(true) {
            // E-MailRelay compatibility: said on standard error, not logged.
            crate::stderrln!("emailrelay: no messages to send");
            continue;
        }
        // E-MailRelay compatibility: a message the upstream refused is a
        // .bad file, not a failed run; a connection that failed is.
        if let Some(error) = forwarder
            .pass_for(crate::forward::Reason::Startup)
            .await
            .error
        {
            let name = crate::platform::console::name_as_typed("emailrelay");
            crate::stderrln!("{name}: error: {error}");
            code = 1;
        }
    }
    if !worked {
        crate::stderrln!("emailrelay: nothing to do");
    }
    code
}

fn log_warnings(process: &ProcessSettings, instances: &[InstanceSettings]) {
    for name in &process.ignored {
        warning!("the --{name} option is for Windows only and is ignored");
    }
    let per_instance = instances.iter().flat_map(|i| &i.warnings);
    for text in process.warnings.iter().chain(per_instance) {
        warning!("{text}");
    }
}

type Bound = Vec<(Listen, BoundListener)>;

/// Binds one instance's listeners; `named` when there are several
/// instances, so that a failure says whose listener it was.
fn bind_instance(settings: &InstanceSettings, named: bool) -> Result<Listeners, i32> {
    let smtp = settings.smtp.as_ref().map_or(&[][..], |s| &s.listen[..]);
    let admin = settings.admin.as_ref().map_or(&[][..], |a| &a.listen[..]);
    let pop = settings.pop.as_ref().map_or(&[][..], |p| &p.listen[..]);
    let http = settings.http.as_ref().map_or(&[][..], |h| &h.listen[..]);
    let name = named.then_some(settings.name.as_str());
    Ok(Listeners {
        smtp: bind_all(smtp, name)?,
        admin: bind_all(admin, name)?,
        pop: bind_all(pop, name)?,
        http: bind_all(http, name)?,
    })
}

fn bind_all(listen: &[Listen], instance: Option<&str>) -> Result<Bound, i32> {
    let mut bound = Vec::new();
    // The default pair of an IPv4 and an IPv6 address: the wildcards, or
    // the loopback addresses (the HTTP endpoint's).
    let default_pair = |pick: fn(&std::net::IpAddr) -> bool| {
        listen.len() == 2
            && listen
                .iter()
                .all(|l| matches!(l, Listen::Tcp(a) if pick(&a.ip())))
    };
    let wildcard_pair =
        default_pair(|ip| ip.is_unspecified()) || default_pair(|ip| ip.is_loopback());
    for l in listen {
        match net::bind(l) {
            Ok(b) => bound.push((l.clone(), b)),
            // The IPv6 one of the pair is optional when IPv6 is not
            // available at all.
            Err(e)
                if wildcard_pair
                    && matches!(l, Listen::Tcp(a) if a.is_ipv6())
                    && is_unavailable_address(&e) => {}
            Err(e) => {
                // E-MailRelay's words, on standard error only (the log may
                // belong to the instance already running on the port).
                let words = crate::platform::errors::words(&e);
                let program = crate::platform::console::name_as_typed("emailrelay");
                match instance {
                    None => crate::stderrln!("{program}: error: socket bind error: {words}"),
                    // Several instances: which one, and which of its
                    // addresses (2.6.1 says neither).
                    Some(name) => {
                        crate::stderrln!(
                            "{program}: error: [{name}] socket bind error: {words}: {l}"
                        )
                    }
                }
                return Err(EXIT_BIND);
            }
        }
    }
    Ok(bound)
}

/// Creates a missing spool directory (one level), before any privilege
/// drop, and gives it to the account that will write it.
fn create_spool_dir(settings: &InstanceSettings, user: Option<&str>) -> anyhow::Result<()> {
    let dir = &settings.spool_dir;
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create spool directory [{}]: {}",
            dir.display(),
            crate::platform::errors::words(&e)
        )
    })?;
    if let Some(user) = user {
        sys::Account::find(user)
            .and_then(|account| account.give(dir))
            .with_context(|| {
                format!(
                    "cannot give spool directory [{}] to user {user}",
                    dir.display()
                )
            })?;
    }
    Ok(())
}

fn check_spool_writable(settings: &InstanceSettings, user: &str) -> anyhow::Result<()> {
    let dir = &settings.spool_dir;
    sys::can_write(dir).map_err(|e| {
        anyhow::anyhow!(
            "spool directory [{}] is not writable by user {user}: {e} (use --user root or change its group)",
            dir.display()
        )
    })
}

/// Waits for a stop event (SIGTERM, SIGINT; Ctrl-C and the service's
/// stop on Windows) or a stop request (`terminate`); a reopen event
/// (SIGHUP, from logrotate) opens the log file again and goes on.
async fn wait_for_stop(events: &mut StopEvents, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            event = events.next() => match event {
                StopEvent::Stop => return,
                StopEvent::Reopen => crate::log::reopen(),
            },
            _ = stop.changed() => return,
        }
    }
}

/// `--drain-delay`: the health checks fail while the listeners still
/// accept, so that a load balancer takes the relay out before it stops
/// accepting. A second stop event, or `terminate`, cuts it short.
async fn drain(
    process: &ProcessSettings,
    running: &[instance::Running],
    events: &mut StopEvents,
    stop: watch::Receiver<bool>,
) {
    if process.drain_delay.is_zero() {
        return;
    }
    for instance in running {
        instance.instance.start_draining();
    }
    info!(
        "draining: health checks fail for {}s before the listeners close",
        process.drain_delay.as_secs()
    );
    let _ = tokio::time::timeout(process.drain_delay, wait_for_stop(events, stop)).await;
}

/// The `STATUS=` text while serving: how many messages wait to be sent.
pub fn serving_status(queued: usize) -> String {
    let noun = if queued == 1 { "message" } else { "messages" };
    format!("STATUS=Accepting mail; {queued} {noun} queued")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_the_queue() {
        assert_eq!(
            serving_status(0),
            "STATUS=Accepting mail; 0 messages queued"
        );
        assert_eq!(serving_status(1), "STATUS=Accepting mail; 1 message queued");
    }
}
