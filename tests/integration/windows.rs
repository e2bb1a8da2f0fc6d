//! The Windows build under Wine: swaks and Python's smtplib on Linux send
//! into `emailrelay.exe`, whose JScript filter (run by `cscript.exe //nologo
//! //B`, as 2.6.1 runs a `.js` filter) edits one message and rejects the
//! other; the edited one arrives at Postfix's smtp-sink, the rejected one
//! gets 2.6.1's `452 <reason>`; the log file's lines end in CRLF and the
//! warning reaches the Event Log API. (What Wine cannot show, NTFS and the
//! real Event Log among it, is listed in the README's Windows checklist.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, greets, program, run, wait_until, Client, Proc, Sink};
use crate::wine::{windows_bin, winpath, Wine};

/// Our own filter: rejects a subject, adds a header to anything else.
/// Output through `WScript.Echo` (Wine has no `WScript.StdOut`).
const FILTER_JS: &str = r#"var fs = new ActiveXObject("Scripting.FileSystemObject");
var path = WScript.Arguments(0);
var file = fs.OpenTextFile(path, 1);
var text = file.ReadAll();
file.Close();
if (text.indexOf("Subject: reject me") >= 0) {
    WScript.Echo("<<rejected by filter.js>>");
    WScript.Quit(1);
}
file = fs.OpenTextFile(path, 2);
file.Write("X-Filtered: jscript\r\n" + text);
file.Close();
WScript.Quit(0);
"#;

#[test]
fn a_jscript_filter_edits_one_message_and_rejects_another_under_wine() {
    let wine = Wine::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("spool")).unwrap();
    std::fs::write(d.join("filter.js"), FILTER_JS.replace('\n', "\r\n")).unwrap();
    let sink = Sink::start(d);
    let port = free_port();
    let stderr = std::fs::File::create(d.join("stderr.txt")).unwrap();
    let mut relay = Proc::spawn(
        wine.debug_command(&windows_bin("emailrelay.exe"), "-all,warn+eventlog")
            .args(["--log", "--verbose", "--interface", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--spool-dir")
            .arg(winpath(&d.join("spool")))
            .arg("--log-file")
            .arg(winpath(&d.join("log.txt")))
            .arg("--filter")
            .arg(winpath(&d.join("filter.js")))
            .args(["--forward-on-disconnect", "--forward-to"])
            .arg(sink.address())
            .stdout(Stdio::null())
            .stderr(stderr),
    );
    assert!(
        wait_until(Duration::from_secs(60), || greets(port)),
        "the relay did not start under Wine"
    );

    // swaks: accepted, edited by the filter, forwarded.
    let (code, out, err) = run(
        Command::new(program("swaks"))
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args(["--from", "alice@example.com", "--to", "bob@example.org"])
            .args(["--header", "Subject: hello", "--body", "first"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("<-  250 message processed"), "{out}");

    // smtplib: rejected by the filter with its reason.
    let script = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=60)\n\
         try:\n    s.sendmail('alice@example.com', ['bob@example.org'], 'Subject: reject me\\r\\n\\r\\nsecond\\r\\n')\n\
         except smtplib.SMTPDataError as e:\n    print(e.smtp_code, e.smtp_error.decode())\n\
         s.quit()\n"
    );
    let (code, out, err) = run(
        Command::new("python3").args(["-c", &script]),
        Duration::from_secs(60),
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "452 rejected by filter.js\n"),
        "{err}"
    );

    assert!(
        wait_until(Duration::from_secs(30), || sink.messages().len() == 1),
        "forwarded: {:?}",
        sink.messages()
    );
    let forwarded = &sink.messages()[0];
    // smtp-sink's own lines first, then the content: the filter's header
    // ahead of our Received line.
    assert!(
        forwarded.contains("\nX-Filtered: jscript\nReceived: from "),
        "{forwarded}"
    );
    assert!(forwarded.contains("\nSubject: hello\n"), "{forwarded}");
    assert!(
        wait_until(Duration::from_secs(20), || spool_is_empty(&d.join("spool"))),
        "spool: {:?}",
        std::fs::read_dir(d.join("spool"))
            .unwrap()
            .collect::<Vec<_>>()
    );

    let log = std::fs::read_to_string(d.join("log.txt")).unwrap();
    assert!(
        log.ends_with("\r\n") && !log.replace("\r\n", "").contains('\n'),
        "{log:?}"
    );
    let warning =
        "emailrelay: warning: filter [filter.js] failed: exit code 1: [rejected by filter.js]";
    assert!(log.contains(&format!("{warning}\r\n")), "{log}");
    assert!(
        log.contains("emailrelay: info: tx>>: \"452 rejected by filter.js\"\r\n"),
        "{log}"
    );
    // The warning went to the Event Log as the whole line, id 1002.
    let debug = std::fs::read_to_string(d.join("stderr.txt")).unwrap();
    assert!(
        debug.contains(&format!("warn:eventlog:ReportEventW L\"{warning}\"")),
        "{debug}"
    );
    // Ctrl-C (Wine turns SIGINT into the console's Ctrl-C event) drains as
    // SIGTERM does on Linux: an idle session is told 421, then the relay ends.
    let mut idle = Client::connect(port);
    assert!(idle.reply().starts_with("220 "));
    assert!(idle.command("EHLO client.example").starts_with("250 "));
    relay.signal(nix::sys::signal::Signal::SIGINT);
    let farewell = idle.reply();
    assert!(
        farewell.starts_with("421 ") && farewell.ends_with(" service shutting down\r\n"),
        "{farewell:?}"
    );
    assert!(wait_until(Duration::from_secs(20), || relay
        .child
        .try_wait()
        .is_ok_and(|s| s.is_some())));
}

/// No message files left (the journal's segment may be: it goes at the
/// checkpoint, half a minute on, or at shutdown).
fn spool_is_empty(spool: &Path) -> bool {
    spool.is_dir() && crate::harness::spool_files(spool, "").is_empty()
}
