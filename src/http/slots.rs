//! The endpoint's connections: at most a fixed number at once, and when a
//! new one comes while all are taken, the one idle longest (waiting for a
//! request head, or kept alive after its last answer) is closed to make
//! room. So idle connections, however many one client opens, cannot keep
//! a load balancer's `/healthz` or Prometheus' `/metrics` out: only as
//! many requests actually being answered at once can.
//!
//! Must not: close a connection while its request is being answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The connection table of one endpoint.
#[derive(Debug)]
pub struct Slots {
    capacity: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// Requests being answered on it now.
    busy: usize,
    /// Since when it has been idle (or when it opened).
    idle_since: Instant,
    evict: Arc<Notify>,
}

/// One connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evicted: Arc<Notify>,
}

/// What became of a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Served; `evicted` says whether an idle connection was closed for it.
    Admitted { slot: Slot, evicted: bool },
    /// Every connection is answering a request: none can be closed.
    Full,
}

impl Slots {
    pub fn new(capacity: usize) -> Arc<Slots> {
        Arc::new(Slots {
            capacity,
            table: Mutex::new(Table::default()),
        })
    }

    /// A place for a new connection, made by closing the connection idle
    /// longest if need be.
    pub fn admit(self: &Arc<Slots>) -> Admission {
        let mut table = self.lock();
        let mut evicted = false;
        if table.open.len() >= self.capacity {
            let oldest = table
                .open
                .iter()
                .filter(|(_, e)| e.busy == 0)
                .min_by_key(|(id, e)| (e.idle_since, **id))
                .map(|(id, _)| *id);
            let Some(oldest) = oldest else {
                return Admission::Full;
            };
            if let Some(entry) = table.open.remove(&oldest) {
                entry.evict.notify_one();
            }
            evicted = true;
        }
        let id = table.next;
        table.next += 1;
        let evict = Arc::new(Notify::new());
        table.open.insert(
            id,
            Entry {
                busy: 0,
                idle_since: Instant::now(),
                evict: Arc::clone(&evict),
            },
        );
        let slot = Slot {
            slots: Arc::clone(self),
            id,
            evicted: evict,
        };
        Admission::Admitted { slot, evicted }
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slot {
    /// Resolves when the connection has been closed to make room.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }

    /// Marks a request as being answered until the guard drops; then the
    /// connection is idle again, from that moment.
    pub fn busy(&self) -> Busy {
        if let Some(entry) = self.slots.lock().open.get_mut(&self.id) {
            entry.busy += 1;
        }
        Busy {
            slots: Arc::clone(&self.slots),
            id: self.id,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
    }
}

/// A request being answered; see [`Slot::busy`].
#[derive(Debug)]
pub struct Busy {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(entry) = self.slots.lock().open.get_mut(&self.id) {
            entry.busy = entry.busy.saturating_sub(1);
            entry.idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn admitted(a: Admission) -> (Slot, bool) {
        match a {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            Admission::Full => panic!("full"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_longest_makes_room() {
        let slots = Slots::new(3);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(admitted(slots.admit()).0);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // The first is answering a request; the second is idle longest.
        let busy = held[0].busy();
        let (new, evicted) = admitted(slots.admit());
        assert!(evicted);
        assert_eq!(slots.open(), 3);
        tokio::time::timeout(Duration::from_millis(1), held[1].evicted())
            .await
            .expect("the second was told to close");
        assert!(
            tokio::time::timeout(Duration::from_millis(1), held[2].evicted())
                .await
                .is_err()
        );
        // Its request answered, the first is idle from now: the third,
        // idle since before, goes next.
        drop(busy);
        tokio::time::advance(Duration::from_secs(1)).await;
        let (_newer, evicted) = admitted(slots.admit());
        assert!(evicted);
        tokio::time::timeout(Duration::from_millis(1), held[2].evicted())
            .await
            .expect("the third was told to close");
        drop(new);
        drop(held);
        assert_eq!(slots.open(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_all_answering_requests_are_never_closed() {
        let slots = Slots::new(2);
        let a = admitted(slots.admit()).0;
        let b = admitted(slots.admit()).0;
        let _busy = (a.busy(), b.busy());
        assert!(matches!(slots.admit(), Admission::Full));
        assert_eq!(slots.open(), 2);
    }
}
