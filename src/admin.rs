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

/// Serves one admin connection.
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
    let mut reader = BufReader::new(reader);
    if writer.write_all(PROMPT.as_bytes()).await.is_err() {
        return;
    }
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
        let command = AdminCommand::parse(line.trim_end_matches(['\r', '\n']));
        if command == AdminCommand::Quit {
            return;
        }
        let answer = run_command(&command, &ctx).await;
        let mut text = answer.unwrap_or_default();
        if !text.is_empty() {
            text = text.replace('\n', "\r\n") + "\r\n";
        }
        text.push_str(PROMPT);
        if writer.write_all(text.as_bytes()).await.is_err() {
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
        AdminCommand::Notify => "error: notifications are not supported yet".into(),
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
