//! Options that make no sense together, refused at startup as E-MailRelay
//! 2.6.1 refuses them: the same combinations, in its words (a script or a
//! person comparing the two sees the same `usage error:` line).

use super::process::Mode;
use super::values::bad;
use super::{ConfigError, Instance};

/// Checks one instance's options for combinations that cannot work.
pub fn check_combinations(args: &Instance) -> Result<(), ConfigError> {
    let mode = Mode::of(args)?;
    let has = |name: &str| args.has(name);
    if has("poll") && args.value("poll").is_some_and(|v| v.trim() == "0") {
        return usage("invalid --poll period: try --forward-on-disconnect");
    }
    let pop_options = ["pop-port", "pop-auth", "pop-by-name", "pop-no-delete"];
    if !has("pop") && pop_options.iter().any(|n| has(n)) {
        return usage("pop options require --pop");
    }
    if has("pop") && !has("pop-auth") {
        return usage("the --pop option requires --pop-auth");
    }
    if has("admin-terminate") && !has("admin") {
        return usage("the --admin-terminate option requires --admin");
    }
    if has("http-max-queue-age") && !has("http-port") {
        return usage("the --http-max-queue-age option requires --http-port");
    }
    for name in ["http-auth", "http-tls"] {
        if has(name) && !has("http-port") {
            return usage(&format!("the --{name} option requires --http-port"));
        }
    }
    if has("http-tls") && !(has("server-tls") || has("server-tls-connection")) {
        return usage("the --http-tls option requires --server-tls or --server-tls-connection (it uses the server certificate)");
    }
    let relayed = matches!(mode, Mode::Client | Mode::Proxy);
    if has("forward-to") && relayed {
        return usage("--forward-to cannot be used with --as-client or --as-proxy");
    }
    if !(has("forward-to") || relayed) {
        for name in ["forward", "forward-on-disconnect", "client-filter"] {
            if has(name) {
                return usage(&format!("--{name} requires --forward-to"));
            }
        }
    }
    let not_serving = has("dont-serve") || mode == Mode::Client;
    if not_serving {
        for name in ["filter", "port", "server-auth", "pop", "admin", "http-port"] {
            if has(name) {
                return usage(&format!(
                    "the --{name} option cannot be used with --as-client or --dont-serve"
                ));
            }
        }
    }
    if has("no-smtp") {
        for name in ["filter", "port", "server-auth"] {
            if has(name) {
                return usage(&format!(
                    "the --{name} option cannot be used with --no-smtp"
                ));
            }
        }
    }
    if has("server-auth-config") && !has("server-auth") && !has("pop-auth") {
        return usage("the --server-auth-config option requires --server-auth");
    }
    if has("client-auth-config") && !has("client-auth") {
        return usage("the --client-auth-config option requires --client-auth");
    }
    check_tls(args)?;
    if args
        .value("interface")
        .is_some_and(|v| v.contains("client="))
    {
        return usage(
            "using --interface with client= is no longer supported: use --client-interface instead",
        );
    }
    if has("dnsbl") && !has("remote-clients") {
        return usage("--dnsbl requires --remote-clients or -r");
    }
    if args.value("domain").is_some_and(|d| d.is_empty()) {
        return Err(bad("domain", "", "the --domain value must not be empty"));
    }
    Ok(())
}

/// Checks the logging options of the first instance.
pub fn check_logging(args: &Instance) -> Result<(), ConfigError> {
    // 2.6.1's first check: one of its facilities, or `yes` (what `-k`
    // stands for), or none.
    let facility = args.value("syslog").unwrap_or_default();
    let local = |n: &str| {
        n.len() == 6 && n.starts_with("local") && (b'0'..=b'7').contains(&n.as_bytes()[5])
    };
    if !(matches!(facility.as_str(), "" | "yes" | "mail" | "user" | "daemon") || local(&facility)) {
        return usage(
            "invalid --syslog facility: use 'mail', 'user', 'daemon', or 'local0' to 'local7'",
        );
    }
    let log = args.has("log") || Mode::of(args)? != Mode::Plain;
    if args.has("verbose") && !(args.has("help") || log) {
        return usage("the --verbose option must be used with --log, --help, --as-client, --as-server or --as-proxy");
    }
    if args.has("debug") && !log {
        return usage("the --debug option requires --log, --as-client, --as-server or --as-proxy");
    }
    Ok(())
}

fn check_tls(args: &Instance) -> Result<(), ConfigError> {
    let has = |name: &str| args.has(name);
    if has("client-tls") && has("client-tls-connection") {
        return usage(
            "the --client-tls and --client-tls-connection options cannot be used together",
        );
    }
    if has("server-tls") && has("server-tls-connection") {
        return usage(
            "the --server-tls and --server-tls-connection options cannot be used together",
        );
    }
    if has("server-tls") && !has("server-tls-certificate") {
        return usage("the --server-tls option requires --server-tls-certificate");
    }
    if has("server-tls-connection") && !has("server-tls-certificate") {
        return usage("the --server-tls-connection option requires --server-tls-certificate");
    }
    let server_tls = has("server-tls") || has("server-tls-connection");
    if (has("server-tls-certificate") || has("server-tls-verify")) && !server_tls {
        return usage(
            "the --server-tls options require either --server-tls or --server-tls-connection",
        );
    }
    let client_tls = has("client-tls") || has("client-tls-connection");
    if (has("client-tls-certificate") || has("client-tls-verify") || has("client-tls-required"))
        && !client_tls
    {
        return usage("the --client-tls- options require --client-tls or --client-tls-connection");
    }
    for side in ["server", "client"] {
        let name = format!("{side}-tls-certificate");
        if args.values(&name).len() > 2 {
            return usage(&format!(
                "the --{name} option cannot be used more than twice"
            ));
        }
    }
    if has("client-tls-verify-name") && !has("client-tls-verify") {
        return usage("the --client-tls-verify-name options requires --client-tls-verify");
    }
    if has("server-tls-required") && !server_tls {
        return usage("--server-tls-required requires --server-tls or --server-tls-connection");
    }
    Ok(())
}

fn usage(text: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Conflict(text.to_string()))
}
