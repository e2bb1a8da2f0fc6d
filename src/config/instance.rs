//! One instance's settings: its spool, servers, forwarding, filters and
//! verifier, each built by its subsystem's builder.

use std::path::PathBuf;

use super::process::{Mode, ProcessSettings};
use super::values::seconds;
use super::{client, server, ConfigError, Instance};
use crate::admin::AdminSettings;
use crate::filter::{FilterConfig, FilterSettings, FilterSpec};
use crate::forward::ForwardSettings;
use crate::smtp::server::ServerSettings;
use crate::verify::VerifierSpec;

/// Everything one relay instance needs, typed.
#[derive(Clone, Debug)]
pub struct InstanceSettings {
    /// The instance's name; empty for the unnamed one.
    pub name: String,
    pub spool_dir: PathBuf,
    /// `None` with `--no-smtp` or `--dont-serve`.
    pub smtp: Option<ServerSettings>,
    pub admin: Option<AdminSettings>,
    /// `--http-port`.
    pub http: Option<crate::http::HttpSettings>,
    /// `--pop`.
    pub pop: Option<crate::pop::PopSettings>,
    pub forward: ForwardSettings,
    /// `--filter`, `--client-filter` and what their built-ins need.
    pub filters: FilterConfig,
    /// `--address-verifier`.
    pub verifier: Option<VerifierSpec>,
    /// `--proxy-protocol`: the load balancers whose PROXY headers the SMTP
    /// and POP listeners read.
    pub proxy_protocol: Option<crate::serve::ProxyProtocol>,
    /// Startup warnings (options that have no effect as given).
    pub warnings: Vec<String>,
    /// The secrets files of `--server-auth`, `--client-auth` and
    /// `--pop-auth` (not `pam:` or an inline `plain:` account), for the
    /// startup check of who else can read them.
    pub secrets_files: Vec<PathBuf>,
}

/// What the builders of one instance share.
pub struct Common<'a> {
    pub args: &'a Instance,
    pub mode: Mode,
    pub domain: String,
    /// Protocol traces in the log (`--log --verbose`).
    pub trace: bool,
    pub dont_serve: bool,
    /// The process runs as a daemon, so relative file names are made absolute.
    pub daemon: bool,
    /// `--tls-config`, for both sides.
    pub tls_config: crate::tls::TlsConfig,
}

impl Common<'_> {
    /// A file name option's value (see [`Instance::path`]).
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.args.path(name, self.daemon)
    }

    /// A many-valued file name option's values.
    pub fn paths(&self, name: &str) -> Vec<PathBuf> {
        self.args
            .values(name)
            .iter()
            .map(|v| self.args.absolute(&self.args.expand_app(v), self.daemon))
            .collect()
    }
}

impl InstanceSettings {
    /// Builds one instance's settings; `default_domain` is called only
    /// without `--domain`.
    pub fn build(
        args: &Instance,
        default_domain: &dyn Fn() -> String,
        process: &ProcessSettings,
    ) -> Result<InstanceSettings, ConfigError> {
        let mode = Mode::of(args)?;
        let mut warnings = Vec::new();
        let common = Common {
            tls_config: client::tls_config(args, &mut warnings)?,
            args,
            mode,
            domain: args.value("domain").unwrap_or_else(default_domain),
            trace: process.log.verbose && process.log.enabled,
            dont_serve: args.has("dont-serve") || mode == Mode::Client,
            daemon: process.daemon,
        };
        let spool_dir = common
            .path("spool-dir")
            .unwrap_or_else(crate::platform::host::default_spool_dir);
        let filters = filter_config(&common, &spool_dir, &mut warnings)?;
        let verifier = args
            .value("address-verifier")
            .map(|v| VerifierSpec::parse(&args.expand_app(&v)))
            .transpose()?;
        check_programs(&filters, verifier.as_ref())?;
        let forward: ForwardSettings = client::forward_settings(&common, &mut warnings)?;
        let smtp: Option<ServerSettings> = server::smtp_settings(&common, &mut warnings)?;
        let admin: Option<AdminSettings> = server::admin_settings(&common)?;
        let pop = server::pop_settings(&common)?;
        let http = server::http_settings(&common)?;
        let proxy_protocol = server::proxy_protocol(args)?;
        warnings.extend(common.tls_config.legacy_warnings(
            smtp.as_ref().is_some_and(|s| s.tls.is_some()),
            forward.tls.is_some(),
        ));
        Ok(InstanceSettings {
            name: args.name.clone(),
            spool_dir,
            smtp,
            admin,
            http,
            pop,
            forward,
            filters,
            verifier,
            proxy_protocol,
            warnings,
            secrets_files: secrets_files(&common),
        })
    }
}

/// The secrets file options' values that name files.
fn secrets_files(common: &Common<'_>) -> Vec<PathBuf> {
    ["server-auth", "client-auth", "pop-auth"]
        .into_iter()
        .filter_map(|name| common.path(name))
        .filter(|path| {
            let text = path.to_string_lossy();
            let special = text == "pam:" || text == "/pam" || text.starts_with('<');
            let inline = text.starts_with("plain:") && !path.exists();
            !special && !inline
        })
        .collect()
}

/// `--filter`, `--client-filter`, `--filter-timeout` and `--delivery-dir`.
fn filter_config(
    common: &Common<'_>,
    spool_dir: &std::path::Path,
    warnings: &mut Vec<String>,
) -> Result<FilterConfig, ConfigError> {
    let args = common.args;
    let chain = |name| {
        args.value(name)
            .map(|v| FilterSpec::parse_chain(&args.expand_app(&v)))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let filters = FilterConfig {
        server: chain("filter")?,
        client: chain("client-filter")?,
        settings: FilterSettings {
            timeout: seconds(args, "filter-timeout", 60)?,
            delivery_dir: common
                .path("delivery-dir")
                .unwrap_or_else(|| spool_dir.to_path_buf()),
            domain: common.domain.clone(),
        },
    };
    let delivers = |specs: &[FilterSpec]| specs.iter().any(|f| matches!(f, FilterSpec::Deliver(_)));
    if args.has("delivery-dir") && !delivers(&filters.server) && !delivers(&filters.client) {
        warnings.push("the --delivery-dir option has no effect without a deliver: filter".into());
    }
    Ok(filters)
}

/// Filter and verifier programs must exist and be executable: better a
/// startup error than a 451 for every message.
fn check_programs(
    filters: &FilterConfig,
    verifier: Option<&VerifierSpec>,
) -> Result<(), ConfigError> {
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
            Ok(m) if !crate::platform::files::is_executable(&m) => "not executable".into(),
            Ok(_) => continue,
        };
        return Err(super::values::bad(option, &path.display().to_string(), why));
    }
    Ok(())
}
