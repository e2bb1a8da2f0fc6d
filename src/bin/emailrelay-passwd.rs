//! `emailrelay-passwd`: prints the `md5` secrets-file form of a password
//! (E-MailRelay's format, so hashes move between the two), or with
//! `--oauth <account-file>` does the device-code sign-in for an OAuth 2.0
//! account and saves its refresh token.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use emailrelay_proto::sasl::HmacMd5Key;

const USAGE: &str = "usage: emailrelay-passwd [--oauth <account-file>]
  Reads a password from the terminal (or one line of standard input) and
  prints its HMAC-MD5 hash for an \"md5\" line of a secrets file.

  --oauth <file>   sign in to an OAuth 2.0 account (Microsoft 365, Google or
                   a token-url) with the device code flow and save the
                   refresh token in <file>, readable by its owner only
  -h, --help       this help
  -V, --version    version
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => hash(),
        ["-h" | "--help"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["-V" | "--version"] => {
            println!("emailrelay-passwd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--oauth", file] => oauth(Path::new(file)),
        _ => {
            eprint!("emailrelay-passwd: error: invalid arguments\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn hash() -> ExitCode {
    let password = match read_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("emailrelay-passwd: error: cannot read the password: {e}");
            return ExitCode::from(1);
        }
    };
    println!("{}", HmacMd5Key::new(password.as_bytes()).to_base64());
    ExitCode::SUCCESS
}

/// One line, without its line ending; not echoed on a terminal.
fn read_password() -> std::io::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = if stdin.is_terminal() {
        eprint!("password: ");
        std::io::stderr().flush()?;
        let saved = tcgetattr(&stdin).map_err(std::io::Error::from)?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let result = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
    }
    result?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn oauth(file: &Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("emailrelay-passwd: error: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(emailrelay::auth::oauth::device_consent(file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emailrelay-passwd: error: {e}");
            ExitCode::from(1)
        }
    }
}
