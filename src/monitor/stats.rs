//! One instance's activity counters: messages received, and per upstream
//! route the messages forwarded, deferred and failed and the
//! authentications it refused; authentication failures of our own
//! clients. Counted from startup, never reset (Prometheus counters).
//!
//! Must stay cheap: a count is an atomic add, or one short lock for the
//! per-route table, which holds one entry per upstream address seen.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The counters. See the module documentation.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages accepted (stored and acknowledged), over SMTP.
    pub received: AtomicU64,
    /// AUTH attempts our SMTP and POP servers refused.
    pub auth_failures_in: AtomicU64,
    /// Messages handed to an upstream (MAIL FROM sent).
    pub out_started: AtomicU64,
    /// Messages whose upstream dialogue ended, one way or another.
    pub out_finished: AtomicU64,
    /// Per upstream address, the outcomes.
    routes: Mutex<BTreeMap<String, RouteCounts>>,
}

/// The outcomes of forwarding to one upstream address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCounts {
    /// Sent (the upstream took the message).
    pub forwarded: u64,
    /// Left in the spool for a later attempt.
    pub deferred: u64,
    /// Failed to `.bad`.
    pub failed: u64,
    /// Times the upstream refused our authentication.
    pub auth_failures: u64,
}

impl Stats {
    /// Adds one to a route's counter, chosen by `count`.
    pub fn route(&self, route: &str, count: impl FnOnce(&mut RouteCounts)) {
        if let Ok(mut routes) = self.routes.lock() {
            if let Some(counts) = routes.get_mut(route) {
                count(counts);
            } else {
                count(routes.entry(route.to_string()).or_default());
            }
        }
    }

    /// Every route's counts, by address.
    pub fn routes(&self) -> Vec<(String, RouteCounts)> {
        self.routes
            .lock()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Adds one to an atomic counter.
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads an atomic counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_count_apart_and_list_in_order() {
        let stats = Stats::default();
        stats.route("b:25", |c| c.forwarded += 1);
        stats.route("a:25", |c| c.failed += 1);
        stats.route("b:25", |c| c.forwarded += 1);
        stats.route("b:25", |c| c.auth_failures += 1);
        let routes = stats.routes();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].0, "a:25");
        assert_eq!(routes[0].1.failed, 1);
        assert_eq!(
            routes[1].1,
            RouteCounts {
                forwarded: 2,
                deferred: 0,
                failed: 0,
                auth_failures: 1
            }
        );
    }
}
