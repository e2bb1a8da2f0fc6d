//! `emailrelay-passwd`: hashes a password for a secrets file as
//! E-MailRelay 2.6.1's tool does (see `emailrelay::passwd`), or with
//! `--oauth <account-file>` does the device-code sign-in for an OAuth 2.0
//! account and saves its refresh token; `--check <account-file>` says
//! whether an account file works.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use emailrelay::getopt;
use emailrelay::passwd::{self, Request};

fn main() -> ExitCode {
    let (argv0, argv) = getopt::args_os();
    let program = getopt::program_name(&argv0, "emailrelay-passwd");
    let request = match passwd::request(&argv) {
        Ok(r) => r,
        Err(e) => return ExitCode::from(passwd::report(&program, &e)),
    };
    match request {
        Request::Help { verbose } => {
            emailrelay::stdout!("{}", passwd::help_text(&program, verbose));
            ExitCode::SUCCESS
        }
        Request::OAuth(file) => oauth(&program, &file),
        Request::Check(file) => check(&program, &file),
        Request::Hash(request) => {
            let result = if request.password.is_none() && std::io::stdin().is_terminal() {
                hash_from_terminal(&request)
            } else {
                passwd::hash(&request, &mut std::io::stdin().lock())
            };
            match result {
                Ok(line) => {
                    emailrelay::stdoutln!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => ExitCode::from(passwd::report(&program, &e)),
            }
        }
    }
}

/// Reads the password from the terminal without echoing it (2.6.1 echoes).
fn hash_from_terminal(request: &passwd::HashRequest) -> Result<String, passwd::PasswdError> {
    let line = emailrelay::platform::host::read_secret_line("password: ");
    passwd::hash(request, &mut line.as_slice())
}

/// A runtime for the one network task of `--check` or `--oauth`; an error
/// is said and gives exit 1.
fn runtime(program: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            emailrelay::stderrln!("{program}: error: {e}");
            ExitCode::from(1)
        })
}

fn check(program: &str, file: &Path) -> ExitCode {
    let runtime = match runtime(program) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (said, error) = runtime.block_on(passwd::check_account(file));
    for line in said {
        emailrelay::stdoutln!("{line}");
    }
    match error {
        None => {
            emailrelay::stdoutln!("ok: {} works", file.display());
            ExitCode::SUCCESS
        }
        Some(e) => {
            emailrelay::stderrln!("{program}: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn oauth(program: &str, file: &Path) -> ExitCode {
    let runtime = match runtime(program) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(emailrelay::auth::oauth::device_consent(file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            emailrelay::stderrln!("{program}: error: {e}");
            ExitCode::from(1)
        }
    }
}
