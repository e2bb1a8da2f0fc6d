//! The scripted servers a scenario's relay talks to: an SMTP server with
//! a few behaviours, or a line-answering `net:` filter or verifier. The
//! same behaviours as the `Sink` of scripts/record-golden.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per connection to a sink: the peer's port and the bytes it sent.
pub type SinkConns = Vec<(u16, Vec<u8>)>;

pub struct SinkServer {
    pub conns: Arc<Mutex<SinkConns>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SinkServer {
    pub fn start(port: u16, behaviour: &str, reply: &[u8]) -> SinkServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("sink port");
        listener.set_nonblocking(true).unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s, behaviour, reply) = (
            conns.clone(),
            stop.clone(),
            behaviour.to_string(),
            reply.to_vec(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let index = {
                            let mut list = c.lock().unwrap();
                            list.push((peer.port(), Vec::new()));
                            list.len() - 1
                        };
                        let _ = stream.set_nonblocking(false);
                        let (c, reply, behaviour) = (c.clone(), reply.clone(), behaviour.clone());
                        std::thread::spawn(move || {
                            if behaviour == "lines" {
                                line_session(stream, &reply, &c, index)
                            } else {
                                sink_session(stream, &behaviour, &c, index)
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SinkServer {
            conns,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SinkServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A net: filter or verifier: `reply` after each line received.
fn line_session(mut stream: TcpStream, reply: &[u8], conns: &Mutex<SinkConns>, index: usize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut chunk = [0u8; 65536];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        conns.lock().unwrap()[index].1.extend(&chunk[..n]);
        for _ in chunk[..n].iter().filter(|&&b| b == b'\n') {
            if stream.write_all(reply).is_err() {
                return;
            }
        }
    }
}

fn sink_session(mut stream: TcpStream, behaviour: &str, conns: &Mutex<SinkConns>, index: usize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let greeting: &[u8] = match behaviour {
        "greet-421" => {
            let _ = stream.write_all(b"421 sink.example busy\r\n");
            return;
        }
        "silent" => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
            b""
        }
        _ => b"220 sink.example ESMTP\r\n",
    };
    if stream.write_all(greeting).is_err() {
        return;
    }
    let (mut buf, mut state) = (Vec::new(), SinkState::default());
    let mut chunk = [0u8; 65536];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        conns.lock().unwrap()[index].1.extend(&chunk[..n]);
        if behaviour == "silent" {
            continue;
        }
        buf.extend(&chunk[..n]);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let reply = sink_reply(behaviour, &mut state, &line[..line.len() - 1]);
            if stream.write_all(reply).is_err() || state.quit {
                return;
            }
        }
    }
}

#[derive(Default)]
struct SinkState {
    data: bool,
    /// Waiting for a SASL response: "plain", "login-user" or "login-pass".
    auth: Option<&'static str>,
    quit: bool,
}

/// The scripted SMTP server's answer to one line (without its LF): the
/// same function as `sink_reply` in scripts/record-golden.
fn sink_reply(behaviour: &str, state: &mut SinkState, line: &[u8]) -> &'static [u8] {
    if state.data {
        if line == b".\r" || line == b"." {
            state.data = false;
            if behaviour == "silent-after-data" {
                return b"";
            }
            return b"250 sink.example queued\r\n";
        }
        return b"";
    }
    if let Some(step) = state.auth.take() {
        if step == "login-user" {
            state.auth = Some("login-pass");
            return b"334 UGFzc3dvcmQ6\r\n";
        }
        return b"235 authenticated\r\n";
    }
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.trim().split(' ').collect();
    let verb = words[0]
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" if behaviour == "auth" => {
            b"250-sink.example\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        }
        "EHLO" => b"250-sink.example\r\n250 8BITMIME\r\n",
        "HELO" => b"250 sink.example\r\n",
        "AUTH" if behaviour == "auth" => {
            let mech = words
                .get(1)
                .map(|m| m.to_ascii_uppercase())
                .unwrap_or_default();
            match (mech.as_str(), words.len() > 2) {
                ("PLAIN", true) => b"235 authenticated\r\n",
                ("PLAIN", false) => {
                    state.auth = Some("plain");
                    b"334 \r\n"
                }
                ("LOGIN", true) => {
                    state.auth = Some("login-pass");
                    b"334 UGFzc3dvcmQ6\r\n"
                }
                ("LOGIN", false) => {
                    state.auth = Some("login-user");
                    b"334 VXNlcm5hbWU6\r\n"
                }
                _ => b"504 unsupported\r\n",
            }
        }
        "RCPT" if behaviour == "reject-rcpt" && text.to_ascii_lowercase().contains("bob") => {
            b"550 no such user\r\n"
        }
        "DATA" => {
            state.data = true;
            b"354 go ahead\r\n"
        }
        "QUIT" => {
            state.quit = true;
            b"221 sink.example bye\r\n"
        }
        "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
        _ => b"500 unknown\r\n",
    }
}
