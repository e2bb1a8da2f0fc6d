//! syslog over `/dev/log`, reconnected after syslogd restarts.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use super::Severity;

/// The syslog socket, connected again after syslogd restarts. Lines it had
/// no room for are counted and reported once it reads again.
#[derive(Debug)]
pub struct SystemLog {
    socket: Option<UnixDatagram>,
    path: PathBuf,
    facility: u8,
    dropped: u64,
}

impl SystemLog {
    /// Opens the system log; `facility` is a syslog facility code.
    pub fn open(facility: u8) -> SystemLog {
        SystemLog::open_at(Path::new("/dev/log"), facility)
    }

    /// As [`SystemLog::open`], with another socket (tests).
    pub fn open_at(path: &Path, facility: u8) -> SystemLog {
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.connect(path).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        SystemLog {
            socket,
            path: path.to_path_buf(),
            facility,
            dropped: 0,
        }
    }

    /// Nothing on Unix (Windows registers its Event Log source at every
    /// start, as 2.6.1 does).
    pub fn announce() {}

    /// Done with the system log, at the end of the process: nothing to do
    /// (the socket goes with the process).
    pub fn close(&mut self) {}

    /// Sends one line (`body` is the line after the program name).
    pub fn send(&mut self, severity: Severity, program: &str, body: &str) {
        if self.dropped > 0 {
            let note = format!(
                "warning: syslog: {} line(s) dropped: the syslog daemon was not reading",
                self.dropped
            );
            if self.try_send(Severity::Warning, program, &note) {
                self.dropped = 0;
            } else {
                self.dropped += 1;
                return;
            }
        }
        if !self.try_send(severity, program, body) {
            self.dropped += 1;
        }
    }

    /// False if the daemon had no room for the line.
    fn try_send(&mut self, severity: Severity, program: &str, body: &str) -> bool {
        let level = match severity {
            Severity::Error => 3,
            Severity::Warning => 4,
            Severity::Info | Severity::Verbose => 6,
            Severity::Debug => 7,
        };
        let pri = self.facility * 8 + level;
        let msg = format!("<{pri}>{program}[{}]: {body}", std::process::id());
        let Some(socket) = self.socket.as_ref() else {
            self.reconnect();
            return self
                .socket
                .as_ref()
                .is_none_or(|s| s.send(msg.as_bytes()).is_ok());
        };
        match socket.send(msg.as_bytes()) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => {
                // The log socket went away (syslogd restarted): connect once more.
                self.reconnect();
                self.socket
                    .as_ref()
                    .is_none_or(|s| s.send(msg.as_bytes()).is_ok())
            }
        }
    }

    fn reconnect(&mut self) {
        let dropped = self.dropped;
        *self = SystemLog::open_at(&self.path, self.facility);
        self.dropped = dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syslog_daemon_that_stops_reading_costs_lines_not_progress() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("log");
        let daemon = UnixDatagram::bind(&path).expect("a datagram socket");
        let mut syslog = SystemLog::open_at(&path, 3);
        // Far more lines than any socket queue holds: none of them blocks.
        for n in 0..5000 {
            syslog.send(Severity::Info, "emailrelay", &format!("info: line {n}"));
        }
        assert!(syslog.dropped > 0);
        let dropped = syslog.dropped;
        // Once the daemon reads again, the loss is reported first.
        daemon.set_nonblocking(true).expect("non-blocking");
        let mut buf = [0u8; 512];
        while daemon.recv(&mut buf).is_ok() {}
        syslog.send(Severity::Info, "emailrelay", "info: after");
        let pid = std::process::id();
        let mut got = Vec::new();
        while let Ok(n) = daemon.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            got,
            [
                format!("<28>emailrelay[{pid}]: warning: syslog: {dropped} line(s) dropped: the syslog daemon was not reading"),
                format!("<30>emailrelay[{pid}]: info: after"),
            ]
        );
        assert_eq!(syslog.dropped, 0);
    }
}
