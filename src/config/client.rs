//! The forwarding side of an instance: `--forward*`, `--poll`, timeouts,
//! `--client-smtp-config`, `--client-tls*` and `--client-auth*`.

use std::sync::Arc;

use super::instance::Common;
use super::process::Mode;
use super::values::{bad, ip, number, optional_period, optional_seconds, seconds, Switches};
use super::ConfigError;
use crate::auth::ClientAuth;
use crate::forward::ForwardSettings;
use crate::tls::{ClientTls, ClientTlsOptions, TlsConfig};
use emailrelay_proto::sasl::MechanismPolicy;
use emailrelay_proto::smtp::{Strictness, TlsPolicy};

/// Builds the forwarding settings of one instance.
pub fn forward_settings(
    common: &Common<'_>,
    warnings: &mut Vec<String>,
) -> Result<ForwardSettings, ConfigError> {
    let args = common.args;
    let target = match common.mode {
        Mode::Client => args.value("as-client"),
        Mode::Proxy => args.value("as-proxy"),
        _ => None,
    };
    let forward_to = match (args.value("forward-to"), target) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Conflict(
                "--forward-to cannot be used with --as-client or --as-proxy".into(),
            ))
        }
        (a, b) => a.or(b),
    };
    let (pipelining, strict) = client_smtp_config(common, warnings);
    let (tls, tls_policy, tls_connection) = client_tls(common)?;
    let forward = ForwardSettings {
        on_start: args.has("forward") || common.mode == Mode::Client,
        on_disconnect: args.has("forward-on-disconnect") || common.mode == Mode::Proxy,
        poll: optional_seconds(args, "poll")?,
        immediate: args.has("immediate"),
        exit_when_done: common.dont_serve,
        to_some: args.has("forward-to-some"),
        client_interface: ip(args, "client-interface")?,
        connection_timeout: seconds(args, "connection-timeout", 40)?,
        response_timeout: seconds(args, "response-timeout", 60)?,
        prompt_timeout: seconds(args, "prompt-timeout", 20)?,
        pipelining,
        strict,
        helo_domain: common.domain.clone(),
        anonymous_client: super::server::anonymous(args)?.client,
        trace: common.trace,
        max_connections: match number(args, "client-connections", 3)? {
            0 => return Err(bad("client-connections", "0", "expecting at least 1")),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        },
        max_age: optional_period(args, "max-age")?,
        rate: match args.value("client-rate") {
            None => None,
            Some(_) => match number(args, "client-rate", 0)? {
                0 => return Err(bad("client-rate", "0", "expecting at least 1")),
                n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            },
        },
        tls,
        tls_policy,
        tls_connection,
        auth: client_auth(common)?,
        forward_to,
    };
    // E-MailRelay 2.6.1 starts anyway and never forwards; a clear error
    // is better than mail that silently stays.
    if forward.forward_to.is_none() {
        for (given, name) in [
            (forward.poll.is_some(), "poll"),
            (forward.immediate, "immediate"),
        ] {
            if given {
                return Err(ConfigError::Conflict(format!(
                    "--{name} requires --forward-to"
                )));
            }
        }
    }
    Ok(forward)
}

/// `--tls-config`: protocol versions and options, shared by both sides.
pub fn tls_config(
    args: &super::Instance,
    warnings: &mut Vec<String>,
) -> Result<TlsConfig, ConfigError> {
    let Some(text) = args.value("tls-config") else {
        return Ok(TlsConfig::default());
    };
    let (config, tls_warnings) = TlsConfig::parse(&text)?;
    warnings.extend(tls_warnings);
    Ok(config)
}

/// `--client-smtp-config`: pipelining (on unless `nopipelining`) and the
/// `*strict` keywords; unknown items are warnings.
fn client_smtp_config(common: &Common<'_>, warnings: &mut Vec<String>) -> (bool, Strictness) {
    let mut switches = Switches::new(common.args, "client-smtp-config");
    let pipelining = switches.take("pipelining", true);
    // E-MailRelay compatibility: 2.6.1's defaults, strict about SMTPUTF8
    // and BINARYMIME, lenient about 8BITMIME.
    let strict = Strictness {
        smtputf8: switches.take("smtputf8strict", true),
        eightbit: switches.take("eightbitstrict", false),
        binarymime: switches.take("binarymimestrict", true),
    };
    warnings.extend(switches.leftovers());
    (pipelining, strict)
}

/// `--client-tls*`: the context (loaded now, before any privilege drop),
/// the STARTTLS policy and whether TLS is implicit.
fn client_tls(common: &Common<'_>) -> Result<(Option<ClientTls>, TlsPolicy, bool), ConfigError> {
    let args = common.args;
    let connection = args.has("client-tls-connection");
    let policy = if args.has("client-tls-required") {
        TlsPolicy::Required
    } else if args.has("client-tls") {
        TlsPolicy::Offered
    } else {
        TlsPolicy::Off
    };
    if !connection && policy == TlsPolicy::Off {
        return Ok((None, policy, false));
    }
    let options = ClientTlsOptions {
        certificate: common.paths("client-tls-certificate"),
        verify: common
            .path("client-tls-verify")
            .map(|p| p.display().to_string()),
        verify_name: args.value("client-tls-verify-name"),
        server_name: args.value("client-tls-server-name"),
        config: common.tls_config.clone(),
    };
    Ok((Some(ClientTls::new(&options)?), policy, connection))
}

/// `--client-auth` and `--client-auth-config`. The secrets file is read
/// here, at startup and before any privilege drop, so a root-only file
/// works and a malformed one stops the start.
fn client_auth(common: &Common<'_>) -> Result<Option<Arc<ClientAuth>>, ConfigError> {
    let args = common.args;
    let Some(spec) = common.path("client-auth").map(|p| p.display().to_string()) else {
        if args.has("client-auth-config") {
            return Err(ConfigError::Conflict(
                "the --client-auth-config option requires --client-auth".into(),
            ));
        }
        return Ok(None);
    };
    let policy = match args.value("client-auth-config") {
        None => MechanismPolicy::default(),
        Some(v) => MechanismPolicy::parse(&v).map_err(|e| bad("client-auth-config", &v, e))?,
    };
    Ok(Some(Arc::new(ClientAuth::load(&spec, policy)?)))
}
