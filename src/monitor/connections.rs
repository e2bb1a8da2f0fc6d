//! What the operator interfaces see of the whole process: the listening
//! endpoints, the connections in and out with their counts, and the
//! event stream of the admin `notify` command. One per process, shared by
//! every instance, as E-MailRelay's network monitor is.
//!
//! Must stay cheap: every connection registers here, so a registration is
//! one short lock and nothing else.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// The registry of listeners and connections.
pub struct Connections {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
}

#[derive(Default)]
struct Inner {
    listeners: Vec<String>,
    in_started: u64,
    in_finished: u64,
    out_started: u64,
    out_finished: u64,
    next_id: u64,
    /// Open connections by registration order: (outgoing, local, remote).
    active: BTreeMap<u64, (bool, String, String)>,
}

/// One `notify` event: up to four fields, shown joined with `: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event(pub Vec<String>);

impl Event {
    /// The event as the admin interface writes it after `notify`: a line
    /// ending first, `EVENT: `, the fields, runs of spaces squeezed, and
    /// two trailing spaces (as E-MailRelay does).
    pub fn render(&self, eol: &str) -> String {
        let text: String = self
            .0
            .iter()
            .filter(|f| !f.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(": ")
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut squeezed = String::with_capacity(text.len());
        for c in text.chars() {
            if !(c == ' ' && squeezed.ends_with(' ')) {
                squeezed.push(c);
            }
        }
        format!("{eol}EVENT: {squeezed}  ")
    }
}

/// A registered connection; dropping it records its end.
pub struct Registered {
    registry: Arc<Connections>,
    id: u64,
    outgoing: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.registry.inner.lock() {
            inner.active.remove(&self.id);
            if self.outgoing {
                inner.out_finished += 1;
            } else {
                inner.in_finished += 1;
            }
        }
        let direction = if self.outgoing { "out" } else { "in" };
        self.registry.emit(&["network", direction, "stop"]);
    }
}

impl Connections {
    pub fn new() -> Arc<Connections> {
        let (events, _) = broadcast::channel(100);
        Arc::new(Connections {
            inner: Mutex::new(Inner::default()),
            events,
        })
    }

    /// Records a listening endpoint, for `status`.
    pub fn listening(&self, display: String) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.listeners.push(display);
        }
        self.emit(&["network", "listen", "start"]);
    }

    /// Records an accepted connection until the returned value is dropped.
    pub fn incoming(self: &Arc<Self>, local: String, peer: String) -> Registered {
        self.register(false, local, peer)
    }

    /// Records an outgoing connection until the returned value is dropped.
    pub fn outgoing(self: &Arc<Self>, local: String, remote: String) -> Registered {
        self.register(true, local, remote)
    }

    /// A receiver of the `notify` events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Sends a `notify` event to whoever listens.
    pub fn emit(&self, fields: &[&str]) {
        if self.events.receiver_count() > 0 {
            let _ = self
                .events
                .send(Event(fields.iter().map(|f| f.to_string()).collect()));
        }
    }

    /// The lines of the admin `status` report.
    pub fn report(&self) -> Vec<String> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut lines: Vec<String> = inner
            .listeners
            .iter()
            .map(|l| format!("LISTEN: {l}"))
            .collect();
        lines.push(format!("OUT started: {}", inner.out_started));
        lines.push(format!("OUT finished: {}", inner.out_finished));
        for (_, (outgoing, local, remote)) in inner.active.iter() {
            if *outgoing {
                lines.push(format!("OUT: {local} -> {remote}"));
            }
        }
        lines.push(format!("IN started: {}", inner.in_started));
        lines.push(format!("IN finished: {}", inner.in_finished));
        for (_, (outgoing, local, remote)) in inner.active.iter() {
            if !*outgoing {
                lines.push(format!("IN: {local} <- {remote}"));
            }
        }
        lines
    }

    /// Connections open now: (incoming, outgoing).
    pub fn open(&self) -> (usize, usize) {
        self.inner.lock().map_or((0, 0), |inner| {
            let out = inner.active.values().filter(|(o, _, _)| *o).count();
            (inner.active.len() - out, out)
        })
    }

    fn register(self: &Arc<Self>, outgoing: bool, local: String, remote: String) -> Registered {
        let id = match self.inner.lock() {
            Ok(mut inner) => {
                if outgoing {
                    inner.out_started += 1;
                } else {
                    inner.in_started += 1;
                }
                inner.next_id += 1;
                let id = inner.next_id;
                inner.active.insert(id, (outgoing, local, remote));
                id
            }
            Err(_) => 0,
        };
        self.emit(&["network", if outgoing { "out" } else { "in" }, "start"]);
        Registered {
            registry: Arc::clone(self),
            id,
            outgoing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_and_lists_open_connections() {
        let c = Connections::new();
        c.listening("0.0.0.0:25".into());
        let a = c.incoming("127.0.0.1:25".into(), "127.0.0.1:40000".into());
        let b = c.outgoing("127.0.0.1:50000".into(), "127.0.0.1:587".into());
        assert_eq!(
            c.report(),
            [
                "LISTEN: 0.0.0.0:25",
                "OUT started: 1",
                "OUT finished: 0",
                "OUT: 127.0.0.1:50000 -> 127.0.0.1:587",
                "IN started: 1",
                "IN finished: 0",
                "IN: 127.0.0.1:25 <- 127.0.0.1:40000",
            ]
        );
        drop((a, b));
        assert_eq!(
            c.report()[1..],
            [
                "OUT started: 1",
                "OUT finished: 1",
                "IN started: 1",
                "IN finished: 1"
            ]
        );
    }

    #[test]
    fn events_render_as_e_mailrelay_writes_them() {
        let e = Event(vec!["network".into(), "in".into(), "start".into()]);
        assert_eq!(e.render("\r\n"), "\r\nEVENT: network: in: start  ");
        let e = Event(vec!["client".into(), "".into(), "a  b\r\n".into()]);
        assert_eq!(e.render("\n"), "\nEVENT: client: a b   ");
    }
}
