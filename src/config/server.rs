//! The serving side of an instance: the SMTP server (`--port`,
//! `--interface`, `--server-*`, `--anonymous`, `--dnsbl`, `--size`, `--max-hops`,
//! `--min-data-rate`, `--proxy-protocol`), the admin server and the operator HTTP endpoint
//! (`--http-*`).

use std::path::PathBuf;
use std::sync::Arc;

use super::instance::Common;
use super::values::{bad, number, optional_period, port, seconds, Switches};
use super::{ConfigError, Instance};
use crate::admin::AdminSettings;
use crate::auth::ServerAuth;
use crate::http::HttpSettings;
use crate::net::dnsbl::DnsblConfig;
use crate::net::{self, InterfaceSpec, Service};
use crate::pop::PopSettings;
use crate::serve::DEFAULT_MIN_DATA_RATE;
use crate::smtp::server::{Anonymous, ServerSettings};
use crate::tls::{ServerTls, ServerTlsOptions};
use emailrelay_proto::sasl::MechanismPolicy;
use emailrelay_proto::smtp::server::DEFAULT_MAX_HOPS;

/// The SMTP server's settings, or `None` with `--no-smtp`/`--dont-serve`.
pub fn smtp_settings(
    common: &Common<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<ServerSettings>, ConfigError> {
    let args = common.args;
    if common.dont_serve || args.has("no-smtp") {
        return Ok(None);
    }
    let config = SmtpConfig::parse(args, warnings);
    Ok(Some(ServerSettings {
        listen: net::listen_addresses(&interfaces(args)?, Service::Smtp, port(args, "port", 25)?),
        remote_clients: args.has("remote-clients"),
        domain: common.domain.clone(),
        anonymous: anonymous(args)?,
        max_size: number(args, "size", 0)?,
        max_hops: usize::try_from(number(args, "max-hops", DEFAULT_MAX_HOPS as u64)?)
            .unwrap_or(usize::MAX),
        idle_timeout: seconds(args, "idle-timeout", 60)?,
        min_data_rate: number(args, "min-data-rate", DEFAULT_MIN_DATA_RATE)?,
        pipelining: config.pipelining,
        smtputf8: config.smtputf8 || config.smtputf8_strict,
        smtputf8_strict: config.smtputf8_strict,
        chunking: config.chunking,
        lenient_addresses: !config.strict_parsing,
        trace: common.trace,
        immediate: args.has("immediate"),
        tls: server_tls(common)?,
        tls_connection: args.has("server-tls-connection"),
        tls_required: args.has("server-tls-required"),
        auth: server_auth(common)?,
        dnsbl: args
            .value("dnsbl")
            .map(|v| DnsblConfig::parse(&v).map_err(|e| bad("dnsbl", &v, e)))
            .transpose()?,
    }))
}

/// The admin server's settings, or `None` without `--admin`.
pub fn admin_settings(common: &Common<'_>) -> Result<Option<AdminSettings>, ConfigError> {
    let args = common.args;
    if common.dont_serve || !args.has("admin") {
        return Ok(None);
    }
    Ok(Some(AdminSettings {
        listen: net::listen_addresses(&interfaces(args)?, Service::Admin, port(args, "admin", 0)?),
        terminate: args.has("admin-terminate"),
        remote_clients: args.has("remote-clients"),
    }))
}

/// The HTTP endpoint's settings, or `None` without `--http-port`.
pub fn http_settings(common: &Common<'_>) -> Result<Option<HttpSettings>, ConfigError> {
    let args = common.args;
    if common.dont_serve || !args.has("http-port") {
        return Ok(None);
    }
    let remote_clients = args.has("remote-clients");
    Ok(Some(HttpSettings {
        listen: net::http_listen_addresses(
            &interfaces(args)?,
            remote_clients,
            port(args, "http-port", 0)?,
        ),
        remote_clients,
        max_queue_age: optional_period(args, "http-max-queue-age")?
            .unwrap_or(crate::http::DEFAULT_MAX_QUEUE_AGE),
        names: vec![common.domain.clone()],
        auth: match common.path("http-auth") {
            Some(path) => Some(Arc::new(
                crate::http::HttpAuth::load(&path)
                    .map_err(|e| ConfigError::Conflict(e.to_string()))?,
            )),
            None => None,
        },
        tls: if args.has("http-tls") {
            Some(ServerTls::new(&ServerTlsOptions {
                certificate: common.paths("server-tls-certificate"),
                verify: None,
                config: common.tls_config.clone(),
            })?)
        } else {
            None
        },
    }))
}

/// The POP server's settings, or `None` without `--pop`. The `--pop-auth`
/// secrets are read now, before any privilege drop; the mechanisms follow
/// `--server-auth-config`, as in 2.6.1.
pub fn pop_settings(common: &Common<'_>) -> Result<Option<PopSettings>, ConfigError> {
    let args = common.args;
    if common.dont_serve || !args.has("pop") {
        return Ok(None);
    }
    let Some(spec) = common.path("pop-auth").map(|p| p.display().to_string()) else {
        return Err(ConfigError::Conflict(
            "the --pop option needs --pop-auth".into(),
        ));
    };
    Ok(Some(PopSettings {
        listen: net::listen_addresses(
            &interfaces(args)?,
            Service::Pop,
            port(args, "pop-port", 110)?,
        ),
        remote_clients: args.has("remote-clients"),
        domain: common.domain.clone(),
        idle_timeout: seconds(args, "idle-timeout", 60)?,
        auth: Arc::new(ServerAuth::load(&spec, auth_policy(args)?)?),
        by_name: args.has("pop-by-name"),
        no_delete: args.has("pop-no-delete"),
        tls: server_tls(common)?,
        tls_required: args.has("server-tls-required"),
        trace: common.trace,
        secrets: args.value("pop-auth").unwrap_or_default(),
    }))
}

/// `--proxy-protocol=<address-list>`: the load balancers' addresses.
pub fn proxy_protocol(args: &Instance) -> Result<Option<crate::serve::ProxyProtocol>, ConfigError> {
    args.value("proxy-protocol")
        .map(|v| crate::serve::ProxyProtocol::parse(&v).map_err(|e| bad("proxy-protocol", &v, e)))
        .transpose()
}

/// `--anonymous[=<scope>]`: everything without a scope.
pub fn anonymous(args: &Instance) -> Result<Anonymous, ConfigError> {
    let Some(scope) = args.value("anonymous") else {
        return Ok(Anonymous::default());
    };
    if scope.is_empty() {
        return Ok(Anonymous {
            vrfy: true,
            server: true,
            content: true,
            client: true,
        });
    }
    let mut anonymous = Anonymous::default();
    for word in scope.split(',').map(str::trim) {
        match word {
            "vrfy" => anonymous.vrfy = true,
            "server" => anonymous.server = true,
            "content" => anonymous.content = true,
            "client" => anonymous.client = true,
            other => {
                return Err(bad(
                    "anonymous",
                    other,
                    "expecting vrfy, server, content or client",
                ))
            }
        }
    }
    Ok(anonymous)
}

/// `--interface`, or else the sockets systemd passed (socket activation).
fn interfaces(args: &Instance) -> Result<Vec<InterfaceSpec>, ConfigError> {
    if args.values("interface").is_empty() {
        if let Some(specs) = net::systemd_listeners(&args.name) {
            return Ok(specs);
        }
    }
    net::parse_interfaces(&args.values("interface"))
        .map_err(|e| bad("interface", &args.values("interface").join(","), e))
}

/// `--server-smtp-config`.
struct SmtpConfig {
    pipelining: bool,
    smtputf8: bool,
    smtputf8_strict: bool,
    chunking: bool,
    /// `nostrictparsing` turns it off: MAIL and RCPT paths without brackets.
    strict_parsing: bool,
}

impl SmtpConfig {
    /// `alabels` is taken and changes nothing: as in 2.6.1, a UTF-8 domain
    /// in an address is always stored in A-labels. Unknown items are
    /// warnings.
    fn parse(args: &Instance, warnings: &mut Vec<String>) -> SmtpConfig {
        let mut switches = Switches::new(args, "server-smtp-config");
        let config = SmtpConfig {
            pipelining: switches.take("pipelining", true),
            chunking: switches.take("chunking", false),
            smtputf8: switches.take("smtputf8", false),
            smtputf8_strict: switches.take("smtputf8strict", false),
            strict_parsing: switches.take("strictparsing", true),
        };
        switches.take("alabels", true);
        switches.take("linger", true);
        warnings.extend(switches.leftovers());
        config
    }
}

/// `--server-tls*`: the context, loaded now, or `None` without TLS.
fn server_tls(common: &Common<'_>) -> Result<Option<ServerTls>, ConfigError> {
    let args = common.args;
    if !(args.has("server-tls") || args.has("server-tls-connection")) {
        return Ok(None);
    }
    let certificate: Vec<PathBuf> = common.paths("server-tls-certificate");
    let options = ServerTlsOptions {
        certificate,
        verify: common
            .path("server-tls-verify")
            .map(|p| p.display().to_string()),
        config: common.tls_config.clone(),
    };
    Ok(Some(ServerTls::new(&options)?))
}

/// `--server-auth` and `--server-auth-config`, read now (see
/// `client::client_auth`).
fn server_auth(common: &Common<'_>) -> Result<Option<Arc<ServerAuth>>, ConfigError> {
    let args = common.args;
    let Some(spec) = common.path("server-auth").map(|p| p.display().to_string()) else {
        // E-MailRelay compatibility: POP follows --server-auth-config too.
        if args.has("server-auth-config") && !args.has("pop-auth") {
            return Err(ConfigError::Conflict(
                "the --server-auth-config option requires --server-auth".into(),
            ));
        }
        return Ok(None);
    };
    // A file without `server` lines still asks every untrusted client to
    // authenticate, which none can: closed, as in 2.6.1 (see `auth`).
    Ok(Some(Arc::new(ServerAuth::load(&spec, auth_policy(args)?)?)))
}

/// `--server-auth-config`, for SMTP and POP alike.
fn auth_policy(args: &Instance) -> Result<MechanismPolicy, ConfigError> {
    match args.value("server-auth-config") {
        None => Ok(MechanismPolicy::default()),
        Some(v) => MechanismPolicy::parse(&v).map_err(|e| bad("server-auth-config", &v, e)),
    }
}
