//! Load: Postfix's smtp-source pushes a few thousand messages over 20
//! sessions into the relay, which forwards them to smtp-sink; none may be
//! missing. Timing goals live in scripts/bench, not here.

use std::process::Command;
use std::time::Duration;

use crate::harness::{program, run, wait_until, Relay, Sink};

#[test]
fn smtp_source_to_smtp_sink_loses_nothing() {
    const MESSAGES: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path());
    let relay = Relay::start(
        dir.path(),
        &[
            "--forward-on-disconnect",
            "--poll",
            "1",
            "--forward-to",
            &sink.address(),
        ],
    );
    let (code, out, err) = run(
        Command::new(program("smtp-source"))
            .args([
                "-s",
                "20",
                "-m",
                &MESSAGES.to_string(),
                "-l",
                "2000",
                "-f",
                "load@example.com",
                "-t",
                "sink@example.org",
            ])
            .arg(format!("127.0.0.1:{}", relay.port)),
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{out}{err}");
    let done = wait_until(Duration::from_secs(240), || {
        sink.messages().len() >= MESSAGES && relay.files("").is_empty()
    });
    assert!(
        done,
        "sink has {} of {MESSAGES}; spool has {}",
        sink.messages().len(),
        relay.files(".content").len()
    );
    assert_eq!(sink.messages().len(), MESSAGES);
    assert!(relay.files("").is_empty(), "{:?}", relay.files(""));
}

#[test]
fn a_burst_of_1000_simultaneous_connections_is_all_greeted() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &[]);
    let streams: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", relay.port)).expect("connect"))
        .collect();
    for mut s in streams {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut code = [0u8; 4];
        s.read_exact(&mut code).unwrap();
        assert_eq!(&code, b"220 ");
    }
}
