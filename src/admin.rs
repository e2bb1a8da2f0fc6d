//! The admin interface driver (`--admin PORT`): a telnet-friendly line
//! dialogue with the `E-MailRelay> ` prompt, parsed by the proto crate.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use emailrelay_proto::admin::{AdminCommand, PROMPT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::net::{display_addr, Listen, Stream};
use crate::smtp::server::Shared;

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
    pub smtp: Arc<Shared>,
    /// Listening endpoints, for `status`.
    pub listening: Vec<String>,
    /// Set to request a clean shutdown (`terminate`).
    pub terminate: watch::Sender<bool>,
}

/// Serves one admin connection. Lines are read by a separate task so that
/// `notify` events can be written while waiting for the next command.
pub async fn serve(stream: Box<dyn Stream>, peer: Option<SocketAddr>, ctx: Arc<AdminContext>) {
    if let Some(addr) = peer {
        if !ctx.settings.remote_clients && !crate::net::is_local_address(addr.ip()) {
            crate::warning!(
                "admin connection rejected from {}: not a local address",
                display_addr(&addr)
            );
            return;
        }
    }
    let (reader, mut writer) = tokio::io::split(stream);
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<String>(4);
    let reader_task = tokio::spawn(read_lines(reader, line_tx));
    let mut events: Option<tokio::sync::broadcast::Receiver<String>> = None;
    let mut out = PROMPT.to_string();
    loop {
        if !out.is_empty() && writer.write_all(out.as_bytes()).await.is_err() {
            break;
        }
        out.clear();
        let event = async {
            match events.as_mut() {
                Some(rx) => rx.recv().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let command = AdminCommand::parse(&line);
                if command == AdminCommand::Quit {
                    break;
                }
                if command == AdminCommand::Notify {
                    events = Some(ctx.smtp.forwarder.events.subscribe());
                    out = format!("OK\r\n{PROMPT}");
                    continue;
                }
                let answer = run_command(&command, &ctx).await.unwrap_or_default();
                if !answer.is_empty() {
                    out = answer.replace('\n', "\r\n") + "\r\n";
                }
                out.push_str(PROMPT);
            }
            Some(event) = event => out = format!("EVENT: {event}\r\n"),
        }
    }
    reader_task.abort();
}

/// Reads bounded lines until the peer closes.
async fn read_lines(
    reader: tokio::io::ReadHalf<Box<dyn Stream>>,
    tx: tokio::sync::mpsc::Sender<String>,
) {
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    loop {
        line.clear();
        // Each line is bounded, so a peer cannot grow the buffer without limit.
        match tokio::io::AsyncReadExt::take(&mut reader, 4096)
            .read_line(&mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if tx
            .send(line.trim_end_matches(['\r', '\n']).to_string())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn run_command(command: &AdminCommand, ctx: &AdminContext) -> Option<String> {
    let spool = &ctx.smtp.spool;
    let forwarder = &ctx.smtp.forwarder;
    Some(match command {
        AdminCommand::Empty | AdminCommand::Quit => return None,
        AdminCommand::Help => AdminCommand::help_text(),
        AdminCommand::Forward if !forwarder.enabled() => {
            "error: no remote server configured: use --forward-to".into()
        }
        AdminCommand::Forward => {
            forwarder.trigger();
            "OK".into()
        }
        AdminCommand::Flush if !forwarder.enabled() => {
            "error: no remote server configured: use --forward-to".into()
        }
        AdminCommand::Flush => match spool.ready() {
            Ok(ids) if ids.is_empty() => "error: no messages to send".into(),
            Ok(_) => {
                let s = forwarder.pass().await;
                if s.failed + s.deferred == 0 {
                    "OK".into()
                } else {
                    format!(
                        "error: {} sent, {} failed, {} deferred",
                        s.sent, s.failed, s.deferred
                    )
                }
            }
            Err(e) => format!("error: {e}"),
        },
        AdminCommand::List => id_list(spool.ready().and_then(|mut r| {
            r.extend(spool.busy()?);
            Ok(r)
        })),
        AdminCommand::Failures => id_list(spool.failed()),
        AdminCommand::UnfailAll => match spool.unfail_all() {
            Ok(_) => "OK".into(),
            Err(e) => format!("error: {e}"),
        },
        AdminCommand::SmtpDisable => {
            ctx.smtp.enabled.store(false, Ordering::Relaxed);
            "OK".into()
        }
        AdminCommand::SmtpEnable => {
            ctx.smtp.enabled.store(true, Ordering::Relaxed);
            "OK".into()
        }
        AdminCommand::Status => status(ctx),
        AdminCommand::Pid => std::process::id().to_string(),
        AdminCommand::Info => format!(
            "E-MailRelay-rs V{}\nspool: {}",
            env!("CARGO_PKG_VERSION"),
            spool.dir().display()
        ),
        AdminCommand::Notify => "OK".into(),
        AdminCommand::Dnsbl(_) => "error: no dnsbl configured".into(),
        AdminCommand::Terminate if !ctx.settings.terminate => {
            "error: terminate is disabled: use --admin-terminate".into()
        }
        AdminCommand::Terminate => {
            let _ = ctx.terminate.send(true);
            "OK".into()
        }
        AdminCommand::Invalid(why) => format!("error: {why}"),
    })
}

fn id_list(ids: Result<Vec<crate::store::MessageId>, crate::store::StoreError>) -> String {
    match ids {
        Ok(ids) if ids.is_empty() => "<none>".into(),
        Ok(ids) => ids
            .iter()
            .map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error: {e}"),
    }
}

fn status(ctx: &AdminContext) -> String {
    let mut lines: Vec<String> = ctx
        .listening
        .iter()
        .map(|l| format!("LISTEN: {l}"))
        .collect();
    let f = &ctx.smtp.forwarder.stats;
    lines.push(format!(
        "OUT started: {}",
        f.out_started.load(Ordering::Relaxed)
    ));
    lines.push(format!(
        "OUT finished: {}",
        f.out_finished.load(Ordering::Relaxed)
    ));
    lines.push(format!(
        "IN started: {}",
        ctx.smtp.in_started.load(Ordering::Relaxed)
    ));
    lines.push(format!(
        "IN finished: {}",
        ctx.smtp.in_finished.load(Ordering::Relaxed)
    ));
    lines.join("\n")
}
