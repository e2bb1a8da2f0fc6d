//! Unix: systemd's readiness protocol (sd_notify(3)), sender side: one datagram
//! of `KEY=VALUE` lines to the socket named by `NOTIFY_SOCKET`, a path or
//! an abstract name written `@name`. `READY=1` once the relay serves,
//! `STOPPING=1` when it begins to shut down, `STATUS=` a line for
//! `systemctl status`.
//!
//! It must never block or fail the relay: the socket is non-blocking, a
//! datagram that cannot be sent is dropped, and the first such failure is
//! logged as a warning, the rest not at all.
//!
//! With `--user`, the relay is a child of the monitor (the process systemd
//! started), so the unit says `NotifyAccess=all`; see packaging/systemd.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::warning;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: SocketAddr,
    /// Whether a failed send has been logged already.
    warned: AtomicBool,
}

impl Notifier {
    /// Takes `NOTIFY_SOCKET` from the environment, or `None` when it is
    /// unset (not run by systemd) or unusable (said once as a warning).
    /// The variable is removed, as sd_notify's `unset_environment` does,
    /// so that filters and verifiers cannot speak for the relay. Must be
    /// called while the process is single-threaded (it changes the
    /// environment).
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        std::env::remove_var("NOTIFY_SOCKET");
        let name = name.to_string_lossy().into_owned();
        match Self::open(&name) {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                warning!("cannot use NOTIFY_SOCKET [{name}]: {e}");
                None
            }
        }
    }

    /// Sends `state`, one or more `KEY=VALUE` lines, without waiting.
    pub fn send(&self, state: &str) {
        let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.target) else {
            return;
        };
        if !self.warned.swap(true, Ordering::Relaxed) {
            warning!("cannot notify the service manager: {e}");
        }
    }

    fn open(name: &str) -> std::io::Result<Notifier> {
        let target = match name.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
            None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "neither an absolute path nor an abstract name",
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            target,
            warned: AtomicBool::new(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(server: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::open(path.to_str().unwrap()).unwrap();
        notifier.send("READY=1\nSTATUS=up");
        assert_eq!(receive(&server), "READY=1\nSTATUS=up");
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = format!("emailrelay-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::open(&format!("@{name}")).unwrap();
        notifier.send("STOPPING=1");
        assert_eq!(receive(&server), "STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_not_an_error_for_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::open(dir.path().join("gone").to_str().unwrap()).unwrap();
        notifier.send("READY=1");
        notifier.send("READY=1");
        assert!(notifier.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn a_relative_name_is_refused() {
        assert!(Notifier::open("notify").is_err());
    }
}
