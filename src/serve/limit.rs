//! A cap on open client sessions, derived from the open-file limit, so
//! that a flood of connections can never take the last descriptors.
//!
//! Every SMTP or POP session holds a socket, usually a content file, and
//! while a filter runs, its pipes. When descriptors run out, `accept`
//! fails for every listener alike: the admin port goes dark and a client
//! cannot even be told to come back later. With a cap below the limit,
//! the sessions over it are accepted, told so (`421` or `-ERR`) and
//! closed, and a reserve stays for the admin port, the log, forwarding
//! connections and the spool.
//!
//! Must not: refuse admin connections (they are not counted), or warn
//! more than once a minute.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Descriptors kept back for everything that is not a client session.
pub const RESERVED_FDS: u64 = 32;
/// Descriptors one session may need at once: its socket, its content
/// file, a filter's pipes.
pub const FDS_PER_SESSION: u64 = 4;

/// Open sessions and their cap, shared by every listener of the process.
#[derive(Debug)]
pub struct SessionLimit {
    active: AtomicUsize,
    max: usize,
    /// Unix seconds of the last "too many connections" warning.
    warned: AtomicU64,
}

/// One admitted session; dropping it frees its place.
#[derive(Debug)]
pub struct SessionPermit(Arc<SessionLimit>);

impl SessionLimit {
    /// A cap of `max` sessions.
    pub fn new(max: usize) -> Arc<SessionLimit> {
        Arc::new(SessionLimit {
            active: AtomicUsize::new(0),
            max: max.max(1),
            warned: AtomicU64::new(0),
        })
    }

    /// The cap that the process's open-file limit allows.
    pub fn from_file_limit() -> Arc<SessionLimit> {
        SessionLimit::new(max_sessions(crate::platform::process::file_limit()))
    }

    /// A place for one more session, or `None` at the cap (with a warning
    /// at most once a minute).
    pub fn try_admit(self: &Arc<Self>, peer: &str) -> Option<SessionPermit> {
        let admitted = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            return Some(SessionPermit(Arc::clone(self)));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.warned.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            crate::warning!(
                "too many connections: {} sessions open, the most the open-file limit allows: refusing {peer} and others for now",
                self.max
            );
        }
        None
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sessions that fit in `soft` descriptors beside the reserve.
pub fn max_sessions(soft: u64) -> usize {
    let sessions = soft.saturating_sub(RESERVED_FDS) / FDS_PER_SESSION;
    usize::try_from(sessions).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_open_file_limit() {
        assert_eq!(max_sessions(64), 8);
        assert_eq!(max_sessions(1024), 248);
        assert_eq!(max_sessions(16), 1, "always at least one");
    }

    #[test]
    fn permits_are_counted_and_given_back() {
        let limit = SessionLimit::new(2);
        let a = limit.try_admit("a").unwrap();
        let _b = limit.try_admit("b").unwrap();
        assert!(limit.try_admit("c").is_none());
        drop(a);
        assert!(limit.try_admit("d").is_some());
    }
}
