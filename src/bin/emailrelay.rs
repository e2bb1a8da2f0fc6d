//! `emailrelay`: the relay. Parses the command line and config file,
//! handles `--help`/`--version`, and hands the settings to `run`.

use std::process::ExitCode;

use emailrelay::config::{help_text, Args, Config, ConfigError};

const PROGRAM: &str = "emailrelay";

fn main() -> ExitCode {
    // Bytes: an argument need not be UTF-8.
    let (_, argv) = emailrelay::getopt::args_os();
    let app_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .unwrap_or_default();
    let (args, usage) = match Args::parse_command_line(&argv, &app_dir) {
        Ok(parsed) => parsed,
        Err(e) => return fail(&e, false),
    };
    // E-MailRelay compatibility: 2.6.1 shows the help whatever else the
    // command line holds, then its syntax errors, then the version, then
    // too many arguments.
    if args.has("help") {
        // E-MailRelay compatibility: `$COLUMNS`, else 79, as 2.6.1 and
        // our other two programs wrap their help.
        let width = emailrelay::getopt::help_width();
        emailrelay::stdout!(
            "{}",
            help_text(PROGRAM, &banner(), args.has("verbose"), width)
        );
        return ExitCode::SUCCESS;
    }
    if let Some(e @ ConfigError::Usage(_)) = &usage {
        return fail(e, false);
    }
    if args.has("version") {
        emailrelay::stdout!("{}", version_text(args.has("verbose")));
        return ExitCode::SUCCESS;
    }
    if let Some(e) = &usage {
        return fail(e, false);
    }
    let config = match Config::build(&args, emailrelay::canonical_hostname) {
        Ok(config) => config,
        Err(e) => return fail(&e, args.has("log-time")),
    };
    let result = emailrelay::run::run(config);
    emailrelay::log::close();
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // E-MailRelay's startup errors go to standard error only.
        Err(e) => {
            let name = emailrelay::platform::console::name_as_typed(PROGRAM);
            emailrelay::stderrln!("{name}: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// E-MailRelay's startup error shape: `emailrelay: [<time>: ]error: <text>`,
/// and for command-line syntax a pointer to the full help; exit code 1.
fn fail(error: &ConfigError, with_time: bool) -> ExitCode {
    let time = if with_time {
        chrono::Local::now()
            .format("%Y%m%d.%H%M%S%.3f: ")
            .to_string()
    } else {
        String::new()
    };
    let name = match error.from_parser() {
        true => PROGRAM.to_string(),
        false => emailrelay::platform::console::name_as_typed(PROGRAM),
    };
    for line in error.line_bytes() {
        use std::io::Write as _;
        let mut stderr = emailrelay::platform::console::stderr();
        let _ = write!(stderr, "{name}: {time}");
        let _ = stderr.write_all(&line);
        let _ = writeln!(stderr);
    }
    if error.is_usage() {
        emailrelay::stderrln!(
            "{:indent$}try \"{PROGRAM} --help --verbose\" for more information",
            "",
            indent = PROGRAM.len() + 2
        );
    }
    ExitCode::from(1)
}

fn banner() -> String {
    format!("E-MailRelay-rs V{}", env!("CARGO_PKG_VERSION"))
}

fn version_text(verbose: bool) -> String {
    let mut text = format!("{}\n", banner());
    if verbose {
        text.push('\n');
        // The feature lines E-MailRelay prints, which its test suite reads.
        text.push_str("Multi-threading: enabled\n");
        text.push_str("Unix domain sockets: enabled\n");
        text.push_str("POP server: enabled\n");
        text.push_str("Admin server: enabled\n");
        // Not in 2.6.1.
        text.push_str("HTTP endpoint: enabled (--http-port: /metrics, /healthz, /queue)\n");
        text.push_str(&format!("TLS library: {}\n", emailrelay::tls::library()));
        text.push_str(
            "Authentication: PLAIN, LOGIN, CRAM-MD5 both ways; XOAUTH2 client, with OAuth 2.0 token renewal\n",
        );
        text.push_str(if cfg!(feature = "pam") {
            "PAM: enabled (libpam loaded when pam: is used)\n"
        } else {
            "PAM: disabled\n"
        });
        text.push_str("Filters: enabled\n");
        text.push_str("Fsync before 250: enabled\n");
        text.push_str("\nLicense: GPL-3.0-or-later\n");
    }
    text
}
