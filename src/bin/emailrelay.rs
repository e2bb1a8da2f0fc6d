//! `emailrelay`: the relay. Parses the command line and config file,
//! handles `--help`/`--version`, and hands the settings to `run`.

use std::process::ExitCode;

use emailrelay::config::{Arg, Args, Settings, Support, OPTIONS};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let app_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .unwrap_or_default();
    let args = match Args::parse(&argv, &app_dir) {
        Ok(args) => args,
        Err(e) => return fail(&e.to_string()),
    };
    if args.has("help") {
        print!("{}", help_text(args.has("verbose")));
        return ExitCode::SUCCESS;
    }
    if args.has("version") {
        print!("{}", version_text(args.has("verbose")));
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::build(&args, emailrelay::canonical_hostname) {
        Ok(s) => s,
        // E-MailRelay's startup error shape: with --log-time the line is timed.
        Err(e) if args.has("log-time") => {
            let time = chrono::Local::now().format("%Y%m%d.%H%M%S%.3f");
            eprintln!("emailrelay: {time}: error: {e}");
            return ExitCode::from(1);
        }
        Err(e) => return fail(&e.to_string()),
    };
    match emailrelay::run::run(settings) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(text: &str) -> ExitCode {
    eprintln!("emailrelay: error: {text}");
    ExitCode::from(1)
}

fn help_text(verbose: bool) -> String {
    let mut text = String::from("usage: emailrelay [<option> [<option> ...]] [<config-file>]\n\n");
    for spec in OPTIONS.iter().filter(|o| verbose || o.basic) {
        let short = spec
            .short
            .map(|c| format!("-{c}, "))
            .unwrap_or_else(|| "    ".into());
        let value = match spec.arg {
            Arg::None => String::new(),
            Arg::Required => format!(" {}", spec.value_name),
            Arg::Optional => format!("[={}]", spec.value_name),
        };
        let note = match spec.support {
            Support::Yes => "",
            Support::Later(_) => " (not yet supported)",
            Support::WindowsOnly => " (Windows only, ignored)",
        };
        text.push_str(&format!(
            "  {short}--{}{value}\n        {}{note}\n",
            spec.name, spec.help
        ));
    }
    if !verbose {
        text.push_str("\nFor complete usage information run \"emailrelay --help --verbose\"\n");
    }
    text
}

fn version_text(verbose: bool) -> String {
    let mut text = format!(
        "E-MailRelay-rs V{} (compatible with E-MailRelay 2.6)\n",
        env!("CARGO_PKG_VERSION")
    );
    if verbose {
        text.push_str(&format!("TLS library: {}\n", emailrelay::tls::library()));
        text.push_str(
            "Authentication: PLAIN, LOGIN, CRAM-MD5 both ways; XOAUTH2 client, with OAuth 2.0 token renewal\n",
        );
        text.push_str(if cfg!(feature = "pam") {
            "PAM: enabled (libpam loaded when pam: is used)\n"
        } else {
            "PAM: disabled\n"
        });
        text.push_str("POP server: enabled\n");
        text.push_str("Admin server: enabled\n");
        text.push_str("Filters: enabled\n");
        text.push_str("Fsync before 250: enabled\n");
        text.push_str("License: GPL-3.0-or-later\n");
    }
    text
}
