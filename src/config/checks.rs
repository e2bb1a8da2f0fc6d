//! Options that make no sense together, refused at startup with a reason,
//! as E-MailRelay 2.6.1 refuses them (the same combinations; our words).

use super::process::Mode;
use super::values::bad;
use super::{ConfigError, Instance};

/// Checks one instance's options for combinations that cannot work.
pub fn check_combinations(args: &Instance) -> Result<(), ConfigError> {
    let mode = Mode::of(args)?;
    let has = |name: &str| args.has(name);
    let conflict = |text: &str| Err(ConfigError::Conflict(text.to_string()));
    if has("poll") && args.value("poll").is_some_and(|v| v.trim() == "0") {
        return conflict(
            "the --poll period must be at least one second (or use --forward-on-disconnect)",
        );
    }
    let pop_options = ["pop-port", "pop-auth", "pop-by-name", "pop-no-delete"];
    if !has("pop") {
        if let Some(name) = pop_options.iter().find(|n| has(n)) {
            return conflict(&format!("the --{name} option needs --pop"));
        }
    } else if !has("pop-auth") {
        return conflict("the --pop option needs --pop-auth");
    }
    if has("admin-terminate") && !has("admin") {
        return conflict("the --admin-terminate option needs --admin");
    }
    let forward_to = has("forward-to") || matches!(mode, Mode::Client | Mode::Proxy);
    if has("forward-to") && matches!(mode, Mode::Client | Mode::Proxy) {
        return conflict("--forward-to cannot be used with --as-client or --as-proxy");
    }
    if !forward_to {
        for name in ["forward", "forward-on-disconnect", "client-filter"] {
            if has(name) {
                return conflict(&format!("the --{name} option needs --forward-to"));
            }
        }
    }
    let not_serving = has("dont-serve") || mode == Mode::Client;
    for (condition, why) in [
        (not_serving, "--as-client or --dont-serve"),
        (has("no-smtp"), "--no-smtp"),
    ] {
        if !condition {
            continue;
        }
        let serving_only: &[&str] = if not_serving {
            &["filter", "port", "server-auth", "pop", "admin"]
        } else {
            &["filter", "port", "server-auth"]
        };
        if let Some(name) = serving_only.iter().find(|n| has(n)) {
            return conflict(&format!("the --{name} option cannot be used with {why}"));
        }
    }
    check_tls(args)?;
    if has("dnsbl") && !has("remote-clients") {
        return conflict("the --dnsbl option needs --remote-clients");
    }
    if args.value("domain").is_some_and(|d| d.is_empty()) {
        return Err(bad("domain", "", "the domain must not be empty"));
    }
    if args
        .value("interface")
        .is_some_and(|v| v.contains("client="))
    {
        return conflict("--interface no longer takes client=: use --client-interface");
    }
    Ok(())
}

/// Checks the logging options of the first instance.
pub fn check_logging(args: &Instance) -> Result<(), ConfigError> {
    let log = args.has("log") || Mode::of(args)? != Mode::Plain;
    if args.has("verbose") && !(args.has("help") || log) {
        return Err(ConfigError::Conflict(
            "the --verbose option needs --log (or --help, --as-client, --as-server, --as-proxy)"
                .into(),
        ));
    }
    if args.has("debug") && !log {
        return Err(ConfigError::Conflict(
            "the --debug option needs --log (or --as-client, --as-server, --as-proxy)".into(),
        ));
    }
    Ok(())
}

fn check_tls(args: &Instance) -> Result<(), ConfigError> {
    let has = |name: &str| args.has(name);
    let conflict = |text: &str| Err(ConfigError::Conflict(text.to_string()));
    if has("client-tls") && has("client-tls-connection") {
        return conflict("use either --client-tls or --client-tls-connection, not both");
    }
    if has("server-tls") && has("server-tls-connection") {
        return conflict("use either --server-tls or --server-tls-connection, not both");
    }
    let server_tls = has("server-tls") || has("server-tls-connection");
    if server_tls && !has("server-tls-certificate") {
        return conflict("--server-tls and --server-tls-connection need --server-tls-certificate");
    }
    if (has("server-tls-certificate") || has("server-tls-verify")) && !server_tls {
        return conflict("the --server-tls-certificate and --server-tls-verify options need --server-tls or --server-tls-connection");
    }
    let client_tls = has("client-tls") || has("client-tls-connection");
    if (has("client-tls-certificate") || has("client-tls-verify") || has("client-tls-required"))
        && !client_tls
    {
        return conflict("the --client-tls-certificate, --client-tls-verify and --client-tls-required options need --client-tls or --client-tls-connection");
    }
    for side in ["server", "client"] {
        let name = format!("{side}-tls-certificate");
        if args.values(&name).len() > 2 {
            return conflict(&format!(
                "the --{name} option can be given at most twice (key, then certificate)"
            ));
        }
    }
    if has("client-tls-verify-name") && !has("client-tls-verify") {
        return conflict(
            "--client-tls-verify-name needs --client-tls-verify (the CA list to check against)",
        );
    }
    if has("server-tls-required") && !server_tls {
        return conflict("--server-tls-required needs --server-tls or --server-tls-connection");
    }
    Ok(())
}
