//! Unix: SIGTERM, SIGINT and SIGHUP; blocked early so that none is lost.

use std::io;

use nix::sys::signal::{pthread_sigmask, raise, SigSet, SigmaskHow, Signal};

use super::StopEvent;

/// The signals that stop the relay or reopen its log.
pub(crate) fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Holds SIGTERM, SIGINT and SIGHUP back from the start, before any port
/// listens, so that one sent as soon as a connection succeeds waits for
/// the handlers instead of killing the process. Called while
/// single-threaded; [`release_stop_signals`] lets them in.
pub fn hold_stop_signals() -> io::Result<()> {
    stop_signals().thread_block().map_err(io::Error::from)
}

/// Lets SIGTERM, SIGINT and SIGHUP in to this thread again, once their
/// handlers are installed (a pending one is delivered now). The runtime's
/// other threads keep them blocked, so they always reach this one; child
/// processes start with an empty mask (the standard library resets it).
pub fn release_stop_signals() -> io::Result<()> {
    stop_signals().thread_unblock().map_err(io::Error::from)
}

/// SIGTERM, SIGINT and SIGHUP, registered with the runtime.
pub struct StopEvents {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopEvents {
    /// Registers the handlers (inside the runtime).
    pub fn install() -> io::Result<StopEvents> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopEvents {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next event.
    pub async fn next(&mut self) -> StopEvent {
        tokio::select! {
            _ = self.term.recv() => StopEvent::Stop,
            _ = self.int.recv() => StopEvent::Stop,
            _ = self.hup.recv() => StopEvent::Reopen,
        }
    }
}

/// Runs `cleanup` on SIGINT, SIGTERM or SIGHUP, in a thread of its own,
/// and then lets the signal end the process as it would have.
///
/// A signal that was ignored when the program started (under `nohup`, or
/// as a background job of a script) stays ignored, as is the convention:
/// blocked for the waiting thread it would be taken in all the same (Linux
/// queues a blocked signal even when it is ignored), and `cleanup` would
/// run under a program that goes on.
pub fn on_interrupt(cleanup: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let ignored = ignored_signals();
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        if ignored & (1 << (signal as u64 - 1)) == 0 {
            set.add(signal);
        }
    }
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(signal) = set.wait() else {
                return;
            };
            cleanup();
            let mut one = SigSet::empty();
            one.add(signal);
            let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
            let _ = raise(signal);
        })?;
    Ok(())
}

/// The signals this process ignores, as a mask (bit n-1 for signal n),
/// from `/proc/self/status`; none if it cannot be read.
fn ignored_signals() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .unwrap_or(0)
}
