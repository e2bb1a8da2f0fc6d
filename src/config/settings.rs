//! [`Args`] -> [`Settings`]: implied option bundles, defaults and typed
//! values, checked once here so that nothing later parses option text.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Args, ConfigError, Support, OPTIONS};
use crate::admin::AdminSettings;
use crate::auth::{ClientAuth, ServerAuth};
use crate::filter::{FilterConfig, FilterSettings, FilterSpec};
use crate::log::LogSettings;
use crate::net::dnsbl::DnsblConfig;
use crate::net::{self, Service};
use crate::smtp::forward::ForwardSettings;
use crate::smtp::server::{Anonymous, ServerSettings};
use crate::tls::{ClientTls, ClientTlsOptions, ServerTls, ServerTlsOptions, TlsConfig};
use crate::verify::VerifierSpec;
use emailrelay_proto::sasl::MechanismPolicy;
use emailrelay_proto::smtp::{Strictness, TlsPolicy};

/// E-MailRelay's default spool directory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/spool/emailrelay";

/// Everything `run` needs, typed.
#[derive(Clone, Debug)]
pub struct Settings {
    pub spool_dir: PathBuf,
    pub daemon: bool,
    pub pid_file: Option<PathBuf>,
    pub close_stderr: bool,
    /// The account to switch to when started as root; `None` for `--user root`.
    pub user: Option<String>,
    pub log: LogSettings,
    /// `None` with `--no-smtp` or `--dont-serve`.
    pub smtp: Option<ServerSettings>,
    pub admin: Option<AdminSettings>,
    pub forward: ForwardSettings,
    /// `--filter`, `--client-filter` and what their built-ins need.
    pub filters: FilterConfig,
    /// `--address-verifier`.
    pub verifier: Option<VerifierSpec>,
    /// Options accepted but meaningless here, for a startup warning.
    pub ignored: Vec<&'static str>,
    /// Other startup warnings (options that have no effect as given).
    pub warnings: Vec<String>,
}

impl Settings {
    /// Builds settings; `default_domain` is called only if `--domain` is absent.
    pub fn build(
        args: &Args,
        default_domain: impl FnOnce() -> String,
    ) -> Result<Settings, ConfigError> {
        let ignored = check_support(args)?;
        let as_client = args.value("as-client");
        let as_proxy = args.value("as-proxy");
        let as_server = args.has("as-server");
        if usize::from(as_client.is_some())
            + usize::from(as_proxy.is_some())
            + usize::from(as_server)
            > 1
        {
            return Err(ConfigError::Conflict(
                "use only one of --as-client, --as-proxy and --as-server".into(),
            ));
        }
        let forward_to = match (args.value("forward-to"), as_client.or(as_proxy)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Conflict(
                    "--forward-to cannot be used with --as-client or --as-proxy".into(),
                ))
            }
            (a, b) => a.or(b).map(str::to_string),
        };
        let log_enabled = args.has("log") || as_client.is_some() || as_proxy.is_some() || as_server;
        let dont_serve = args.has("dont-serve") || as_client.is_some();
        let domain = args
            .value("domain")
            .map(str::to_string)
            .unwrap_or_else(default_domain);
        let anonymous = parse_anonymous(args)?;
        let verbose = args.has("verbose");
        let interfaces = net::parse_interfaces(args.values("interface"))
            .map_err(|e| bad("interface", &args.values("interface").join(","), e))?;
        let server_config = parse_server_config(args)?;
        let (client_pipelining, client_strict) = parse_client_config(args)?;
        let mut warnings = Vec::new();
        let tls_config = match args.value("tls-config") {
            None => TlsConfig::default(),
            Some(v) => {
                let (config, tls_warnings) = TlsConfig::parse(v)?;
                warnings.extend(tls_warnings);
                config
            }
        };
        let (client_tls, tls_policy, tls_connection) =
            parse_client_tls(args, &tls_config, &mut warnings)?;
        let server_tls = parse_server_tls(args, &tls_config)?;
        warnings.extend(tls_config.legacy_warnings(server_tls.is_some(), client_tls.is_some()));
        let (server_auth, client_auth) = parse_auth(args)?;

        let spool_dir = PathBuf::from(args.value("spool-dir").unwrap_or(DEFAULT_SPOOL_DIR));
        let chain = |name| {
            args.value(name)
                .map(FilterSpec::parse_chain)
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let filters = FilterConfig {
            server: chain("filter")?,
            client: chain("client-filter")?,
            settings: FilterSettings {
                timeout: seconds(args, "filter-timeout", 60)?,
                delivery_dir: args
                    .value("delivery-dir")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| spool_dir.clone()),
                domain: domain.clone(),
            },
        };
        let verifier = args
            .value("address-verifier")
            .map(VerifierSpec::parse)
            .transpose()?;
        check_programs(&filters, verifier.as_ref())?;
        let delivers =
            |specs: &[FilterSpec]| specs.iter().any(|f| matches!(f, FilterSpec::Deliver(_)));
        if args.has("delivery-dir") && !delivers(&filters.server) && !delivers(&filters.client) {
            warnings
                .push("the --delivery-dir option has no effect without a deliver: filter".into());
        }
        let forward = ForwardSettings {
            forward_to: forward_to.clone(),
            on_start: args.has("forward") || as_client.is_some(),
            on_disconnect: args.has("forward-on-disconnect") || as_proxy.is_some(),
            poll: optional_seconds(args, "poll")?,
            immediate: args.has("immediate"),
            exit_when_done: dont_serve,
            to_some: args.has("forward-to-some"),
            client_interface: parse_ip(args, "client-interface")?,
            connection_timeout: seconds(args, "connection-timeout", 40)?,
            response_timeout: seconds(args, "response-timeout", 60)?,
            prompt_timeout: seconds(args, "prompt-timeout", 20)?,
            pipelining: client_pipelining,
            strict: client_strict,
            helo_domain: domain.clone(),
            anonymous_client: anonymous.client,
            trace: verbose && log_enabled,
            max_connections: 4,
            tls: client_tls,
            tls_policy,
            tls_connection,
            auth: client_auth,
        };
        let needs_target = forward.on_start
            || forward.on_disconnect
            || forward.poll.is_some()
            || forward.immediate;
        if needs_target && forward_to.is_none() {
            return Err(ConfigError::Conflict(
                "forwarding options need --forward-to (or --as-client/--as-proxy)".into(),
            ));
        }
        let smtp = (!dont_serve && !args.has("no-smtp")).then(
            || -> Result<ServerSettings, ConfigError> {
                Ok(ServerSettings {
                    listen: net::listen_addresses(
                        &interfaces,
                        Service::Smtp,
                        port(args, "port", 25)?,
                    ),
                    remote_clients: args.has("remote-clients"),
                    domain: domain.clone(),
                    anonymous,
                    max_size: number(args, "size", 0)?,
                    idle_timeout: seconds(args, "idle-timeout", 60)?,
                    pipelining: server_config.0,
                    smtputf8: server_config.1,
                    smtputf8_strict: server_config.2,
                    chunking: server_config.3,
                    trace: verbose && log_enabled,
                    immediate: args.has("immediate"),
                    tls: server_tls.clone(),
                    tls_connection: args.has("server-tls-connection"),
                    tls_required: args.has("server-tls-required"),
                    auth: server_auth.clone(),
                    dnsbl: args
                        .value("dnsbl")
                        .map(|v| DnsblConfig::parse(v).map_err(|e| bad("dnsbl", v, e)))
                        .transpose()?,
                })
            },
        );
        let admin = match (args.value("admin"), dont_serve) {
            (Some(_), false) => Some(AdminSettings {
                listen: net::listen_addresses(&interfaces, Service::Admin, port(args, "admin", 0)?),
                terminate: args.has("admin-terminate"),
                remote_clients: args.has("remote-clients"),
            }),
            _ => None,
        };
        let user = match args.value("user") {
            Some("root") => None,
            Some(name) => Some(name.to_string()),
            None => Some("daemon".to_string()),
        };
        Ok(Settings {
            spool_dir,
            daemon: !(args.has("no-daemon") || as_client.is_some()),
            pid_file: args.value("pid-file").map(PathBuf::from),
            close_stderr: args.has("close-stderr") || as_server || as_proxy.is_some(),
            user,
            log: parse_log(args, log_enabled, as_client.is_some())?,
            smtp: smtp.transpose()?,
            admin,
            forward,
            ignored,
            warnings,
            filters,
            verifier,
        })
    }
}

/// The server's and the client's authentication, each optional.
type AuthPair = (Option<Arc<ServerAuth>>, Option<Arc<ClientAuth>>);

/// `--server-auth`, `--client-auth` and their `-config` lists. The
/// secrets files are read here, at startup and before any privilege drop,
/// so a root-only secrets file works and a malformed one stops the start.
fn parse_auth(args: &Args) -> Result<AuthPair, ConfigError> {
    let policy = |option: &'static str| match args.value(option) {
        None => Ok(MechanismPolicy::default()),
        Some(v) => MechanismPolicy::parse(v).map_err(|e| bad(option, v, e)),
    };
    for (config, main) in [
        ("server-auth-config", "server-auth"),
        ("client-auth-config", "client-auth"),
    ] {
        if args.has(config) && !args.has(main) {
            return Err(ConfigError::Conflict(format!(
                "the --{config} option requires --{main}"
            )));
        }
    }
    let server = match args.value("server-auth") {
        Some(spec) => Some(Arc::new(ServerAuth::load(
            spec,
            policy("server-auth-config")?,
        )?)),
        None => None,
    };
    let client = match args.value("client-auth") {
        Some(spec) => Some(Arc::new(ClientAuth::load(
            spec,
            policy("client-auth-config")?,
        )?)),
        None => None,
    };
    Ok((server, client))
}

/// Filter and verifier programs must exist and be executable: better a
/// startup error than a 451 for every message.
fn check_programs(
    filters: &FilterConfig,
    verifier: Option<&VerifierSpec>,
) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let programs = filters
        .server
        .iter()
        .map(|f| ("filter", f))
        .chain(filters.client.iter().map(|f| ("client-filter", f)))
        .filter_map(|(option, f)| match f {
            FilterSpec::Program(path) => Some((option, path)),
            _ => None,
        })
        .chain(verifier.and_then(|v| match v {
            VerifierSpec::Program(path) => Some(("address-verifier", path)),
            _ => None,
        }));
    for (option, path) in programs {
        let why = match std::fs::metadata(path) {
            Err(e) => e.to_string(),
            Ok(m) if !m.is_file() => "not a file".into(),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => "not executable".into(),
            Ok(_) => continue,
        };
        return Err(bad(option, &path.display().to_string(), why));
    }
    Ok(())
}

/// `--client-tls*`: the context (loaded now, before any privilege drop),
/// the STARTTLS policy and whether TLS is implicit.
fn parse_client_tls(
    args: &Args,
    tls_config: &TlsConfig,
    warnings: &mut Vec<String>,
) -> Result<(Option<ClientTls>, TlsPolicy, bool), ConfigError> {
    let connection = args.has("client-tls-connection");
    let policy = if args.has("client-tls-required") {
        TlsPolicy::Required
    } else if args.has("client-tls") {
        TlsPolicy::Offered
    } else {
        TlsPolicy::Off
    };
    if !connection && policy == TlsPolicy::Off {
        for name in [
            "client-tls-certificate",
            "client-tls-verify",
            "client-tls-verify-name",
            "client-tls-server-name",
        ] {
            if args.has(name) {
                warnings.push(format!(
                    "the --{name} option has no effect without --client-tls, --client-tls-required or --client-tls-connection"
                ));
            }
        }
        return Ok((None, policy, false));
    }
    let options = ClientTlsOptions {
        certificate: args
            .values("client-tls-certificate")
            .iter()
            .map(PathBuf::from)
            .collect(),
        verify: args.value("client-tls-verify").map(str::to_string),
        verify_name: args.value("client-tls-verify-name").map(str::to_string),
        server_name: args.value("client-tls-server-name").map(str::to_string),
        config: tls_config.clone(),
    };
    if options.verify_name.is_some() && options.verify.is_none() {
        return Err(ConfigError::Conflict(
            "--client-tls-verify-name needs --client-tls-verify (the CA list to check against)"
                .into(),
        ));
    }
    Ok((Some(ClientTls::new(&options)?), policy, connection))
}

/// `--server-tls*`: the context, loaded now, or `None` without TLS.
fn parse_server_tls(args: &Args, tls_config: &TlsConfig) -> Result<Option<ServerTls>, ConfigError> {
    let wanted = args.has("server-tls") || args.has("server-tls-connection");
    if !wanted {
        if args.has("server-tls-required") {
            return Err(ConfigError::Conflict(
                "--server-tls-required needs --server-tls".into(),
            ));
        }
        return Ok(None);
    }
    let certificate: Vec<PathBuf> = args
        .values("server-tls-certificate")
        .iter()
        .map(PathBuf::from)
        .collect();
    if certificate.is_empty() {
        return Err(ConfigError::Conflict(
            "--server-tls and --server-tls-connection need --server-tls-certificate".into(),
        ));
    }
    let options = ServerTlsOptions {
        certificate,
        verify: args.value("server-tls-verify").map(str::to_string),
        config: tls_config.clone(),
    };
    Ok(Some(ServerTls::new(&options)?))
}

/// Refuses options that need a later feature; lists the Windows-only ones.
fn check_support(args: &Args) -> Result<Vec<&'static str>, ConfigError> {
    let mut ignored = Vec::new();
    for name in args.names() {
        let Some(spec) = OPTIONS.iter().find(|o| o.name == name) else {
            continue;
        };
        match spec.support {
            Support::Yes => {}
            Support::Later(feature) => {
                return Err(ConfigError::NotYet {
                    option: spec.name,
                    feature,
                })
            }
            Support::WindowsOnly => ignored.push(spec.name),
        }
    }
    Ok(ignored)
}

fn parse_log(args: &Args, enabled: bool, as_client: bool) -> Result<LogSettings, ConfigError> {
    let mut time = args.has("log-time");
    let mut address = args.has("log-address");
    for field in keywords(args, "log-format") {
        match field {
            "time" => time = true,
            "address" => address = true,
            "unit" | "port" | "msgid" => {}
            other => {
                return Err(bad(
                    "log-format",
                    other,
                    "expecting time, unit, address, port or msgid",
                ))
            }
        }
    }
    let syslog_wanted = (enabled && !args.has("no-syslog") && !as_client) || args.has("syslog");
    let facility = args
        .value("syslog")
        .filter(|f| !f.is_empty())
        .unwrap_or("mail")
        .to_string();
    if !crate::log::is_facility(&facility) {
        return Err(bad("syslog", &facility, "unknown syslog facility"));
    }
    Ok(LogSettings {
        enabled,
        verbose: args.has("verbose"),
        debug: args.has("debug"),
        time,
        address,
        file: args.value("log-file").map(str::to_string),
        syslog: syslog_wanted.then_some(facility),
    })
}

fn parse_anonymous(args: &Args) -> Result<Anonymous, ConfigError> {
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

/// `--server-smtp-config`: (pipelining, smtputf8, smtputf8strict, chunking).
/// `nostrictparsing` and `noalabels` ask for what we do anyway: tolerant
/// address parsing, and domains left as given (never converted to A-labels).
fn parse_server_config(args: &Args) -> Result<(bool, bool, bool, bool), ConfigError> {
    let (mut pipelining, mut smtputf8, mut strict, mut chunking) = (true, false, false, false);
    for word in keywords(args, "server-smtp-config") {
        match word {
            "pipelining" => pipelining = true,
            "nopipelining" => pipelining = false,
            "smtputf8" => smtputf8 = true,
            "smtputf8strict" => (smtputf8, strict) = (true, true),
            "nostrictparsing" | "noalabels" => {}
            "chunking" => chunking = true,
            other => return Err(bad("server-smtp-config", other, "unknown keyword")),
        }
    }
    Ok((pipelining, smtputf8, strict, chunking))
}

/// `--client-smtp-config`: pipelining (on unless `nopipelining`) and the
/// `*strict` keywords.
fn parse_client_config(args: &Args) -> Result<(bool, Strictness), ConfigError> {
    let mut pipelining = true;
    let mut strict = Strictness::default();
    for word in keywords(args, "client-smtp-config") {
        match word {
            "pipelining" => pipelining = true,
            "nopipelining" => pipelining = false,
            "smtputf8strict" => strict.smtputf8 = true,
            "eightbitstrict" => strict.eightbit = true,
            "binarymimestrict" => strict.binarymime = true,
            other => return Err(bad("client-smtp-config", other, "unknown keyword")),
        }
    }
    Ok((pipelining, strict))
}

/// The comma-separated keywords of an option, trimmed, empty ones skipped.
fn keywords<'a>(args: &'a Args, name: &str) -> impl Iterator<Item = &'a str> {
    args.value(name)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
}

fn bad(option: &'static str, value: &str, why: impl ToString) -> ConfigError {
    let option = OPTIONS
        .iter()
        .find(|o| o.name == option)
        .map_or("?", |o| o.name);
    ConfigError::BadValue {
        option,
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// A value that parses with `FromStr`, or `default` when the option is absent.
fn parsed<T: std::str::FromStr>(
    args: &Args,
    name: &'static str,
    default: T,
    expecting: &str,
) -> Result<T, ConfigError> {
    match args.value(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| bad(name, v, expecting)),
    }
}

fn number(args: &Args, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    parsed(args, name, default, "expecting a number")
}

fn port(args: &Args, name: &'static str, default: u16) -> Result<u16, ConfigError> {
    parsed(args, name, default, "expecting a port number 0-65535")
}

fn seconds(args: &Args, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    number(args, name, default).map(Duration::from_secs)
}

fn optional_seconds(args: &Args, name: &'static str) -> Result<Option<Duration>, ConfigError> {
    match args.value(name) {
        None => Ok(None),
        Some(_) => match seconds(args, name, 0)? {
            d if d.is_zero() => Err(bad(name, "0", "the period must be at least one second")),
            d => Ok(Some(d)),
        },
    }
}

fn parse_ip(args: &Args, name: &'static str) -> Result<Option<IpAddr>, ConfigError> {
    args.value(name)
        .map(|v| {
            v.parse()
                .map_err(|_| bad(name, v, "expecting an IP address"))
        })
        .transpose()
}
