//! The admin interface driver (`--admin PORT`): a telnet-friendly line
//! dialogue with the `E-MailRelay> ` prompt, parsed by the proto crate.
//! Answers are byte for byte E-MailRelay 2.6.1's (see
//! `emailrelay_proto::admin` for the rules).

use std::net::SocketAddr;
use std::sync::Arc;

use emailrelay_proto::admin::{
    line_ending, reply, AdminCommand, DnsblAction, DNSBL_USAGE, ERROR_LIMIT, SMTP_USAGE,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::control::{Control, ControlError};
use crate::net::{display_addr, Listen, Stream};

/// Admin settings; built by `config`.
#[derive(Clone, Debug)]
pub struct AdminSettings {
    pub listen: Vec<Listen>,
    /// `--admin-terminate`.
    pub terminate: bool,
    /// `--remote-clients` applies to the admin port too.
    pub remote_clients: bool,
}

/// What the admin commands act on.
pub struct AdminContext {
    pub settings: AdminSettings,
    pub control: Arc<Control>,
}

/// Why an admin connection ended, for the log line.
enum End {
    /// `terminate`: the relay is on its way out.
    Terminated,
    Quit,
    PeerClosed,
    TooManyErrors,
    WriteFailed,
}

/// Serves one admin connection. Lines are read by a separate task so that
/// `notify` events can be written while waiting for the next command.
pub async fn serve(stream: Box<dyn Stream>, peer: Option<SocketAddr>, ctx: Arc<AdminContext>) {
    let peer_text = peer
        .as_ref()
        .map(display_addr)
        .unwrap_or_else(|| "unix".into());
    if let Some(addr) = peer {
        if !ctx.settings.remote_clients && !crate::net::is_local_address(addr.ip()) {
            crate::warning!("admin connection rejected from {peer_text}: not a local address");
            return;
        }
    }
    crate::info!("admin connection from {peer_text}");
    let end = dialogue(stream, &ctx, &peer_text).await;
    let reason = match end {
        // E-MailRelay compatibility: 2.6.1 exits with the connection
        // still open, so no line says it closed (and however quickly the
        // client hangs up, none can race the exit here).
        End::Terminated => return,
        End::Quit => "",
        End::PeerClosed => "peer disconnected: ",
        End::TooManyErrors => "too many errors: ",
        End::WriteFailed => "write failed: ",
    };
    crate::info!("admin connection closed: {reason}{peer_text}");
}

async fn dialogue(stream: Box<dyn Stream>, ctx: &AdminContext, peer_text: &str) -> End {
    let (reader, mut writer) = tokio::io::split(stream);
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reader_task = tokio::spawn(read_lines(reader, line_tx));
    let mut events = None;
    // E-MailRelay compatibility: no prompt until the first command, and
    // answers end the way the client's first line ended.
    let mut eol: Option<&'static str> = None;
    let mut errors = 0;
    let end = loop {
        let event = async {
            match events.as_mut() {
                Some(rx) => recv_event(rx).await,
                None => std::future::pending().await,
            }
        };
        let out = tokio::select! {
            line = lines.recv() => {
                let Some(raw) = line else { break End::PeerClosed };
                let eol = *eol.get_or_insert_with(|| line_ending(&raw));
                let text = String::from_utf8_lossy(&raw);
                let command = AdminCommand::parse(text.trim_end_matches(['\r', '\n']), ctx.settings.terminate);
                match command {
                    AdminCommand::Quit => break End::Quit,
                    AdminCommand::Notify => {
                        events = Some(ctx.control.events());
                        continue;
                    }
                    AdminCommand::Terminate => {
                        crate::info!("received a terminate command from {peer_text}");
                        ctx.control.terminate();
                        break End::Terminated;
                    }
                    AdminCommand::Unrecognised => errors += 1,
                    _ => {}
                }
                let answer = run_command(&command, ctx, eol).await;
                reply(&answer, eol)
            }
            Some(event) = event => event.render(eol.unwrap_or("\r\n")),
        };
        if writer.write_all(out.as_bytes()).await.is_err() {
            break End::WriteFailed;
        }
        if errors >= ERROR_LIMIT {
            break End::TooManyErrors;
        }
    };
    reader_task.abort();
    end
}

async fn recv_event(
    rx: &mut tokio::sync::broadcast::Receiver<crate::monitor::Event>,
) -> Option<crate::monitor::Event> {
    loop {
        match rx.recv().await {
            Ok(event) => return Some(event),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// Reads bounded lines, with their line endings, until the peer closes.
async fn read_lines(
    reader: tokio::io::ReadHalf<Box<dyn Stream>>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Each line is bounded, so a peer cannot grow the buffer without limit.
        match tokio::io::AsyncReadExt::take(&mut reader, 4096)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if tx.send(line.clone()).await.is_err() {
            return;
        }
    }
}

/// The answer to one command, without line ending or prompt.
async fn run_command(command: &AdminCommand, ctx: &AdminContext, eol: &str) -> String {
    let control = &ctx.control;
    match command {
        AdminCommand::Empty
        | AdminCommand::Quit
        | AdminCommand::Notify
        | AdminCommand::Terminate => String::new(),
        AdminCommand::Help => AdminCommand::help_text(ctx.settings.terminate),
        AdminCommand::Forward => answer(control.forward()),
        AdminCommand::Flush => answer(control.flush().await),
        AdminCommand::List => id_list(control.list(), eol),
        AdminCommand::Failures => id_list(control.failures(), eol),
        AdminCommand::UnfailAll => match control.unfail_all() {
            Ok(_) => String::new(),
            Err(e) => format!("error: {e}"),
        },
        AdminCommand::Smtp(Some(enable)) => {
            control.set_smtp_enabled(*enable);
            "OK".into()
        }
        AdminCommand::Smtp(None) => SMTP_USAGE.into(),
        // E-MailRelay compatibility: report lines are joined with the
        // client's line ending before its newlines are turned into line
        // endings again, so a CRLF client sees CR CR LF between them.
        AdminCommand::Status => control.status_report().join(eol),
        AdminCommand::Pid => control.pid().to_string(),
        AdminCommand::Info(None) => AdminCommand::info_usage(),
        AdminCommand::Info(Some(key)) => info(key),
        AdminCommand::Dnsbl(DnsblAction::Usage) => DNSBL_USAGE.into(),
        AdminCommand::Dnsbl(action) => {
            control.dnsbl(*action);
            "OK".into()
        }
        AdminCommand::Unrecognised => "error: unrecognised command".into(),
    }
}

/// `OK`, or E-MailRelay's `error: <reason>`.
fn answer(result: Result<(), ControlError>) -> String {
    match result {
        Ok(()) => "OK".into(),
        Err(e) => format!("error: {e}"),
    }
}

/// `info <key>`: facts about this program, in our own words.
fn info(key: &str) -> String {
    match key {
        "version" => env!("CARGO_PKG_VERSION").into(),
        "copyright" => "emailrelay-rs, an E-MailRelay-compatible mail relay; copyright its authors".into(),
        "credit" => format!("TLS by {}", crate::tls::library()),
        _ => "This program comes with ABSOLUTELY NO WARRANTY; it is free software under the\nGNU General Public License, version 3 or later.".into(),
    }
}

fn id_list(ids: Result<Vec<crate::store::MessageId>, ControlError>, eol: &str) -> String {
    match ids {
        Ok(ids) if ids.is_empty() => "<none>".into(),
        // Joined like the status report (see there).
        Ok(ids) => ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(eol),
        Err(e) => format!("error: {e}"),
    }
}
