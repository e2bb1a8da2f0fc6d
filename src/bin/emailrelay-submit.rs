//! `emailrelay-submit`: writes a message into the spool directory, as
//! E-MailRelay 2.6.1's tool does (see `emailrelay::submit`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use emailrelay::getopt;
use emailrelay::platform::console::Text;
use emailrelay::submit::{self, Io, Pending, Request};

fn main() -> ExitCode {
    let (argv0, argv) = getopt::args_os();
    let program = getopt::program_name(&argv0, "emailrelay-submit");
    let app_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.to_path_buf()))
        .unwrap_or_default();
    let mut stderr = Text(std::io::stderr());
    // The relay's default spool directory (2.6.1's depends on how it was
    // built; %ProgramData%\E-MailRelay\spool on Windows).
    let spool = emailrelay::platform::host::default_spool_dir();
    let request = match submit::request(&argv, &app_dir, &spool.to_string_lossy()) {
        Ok(Request::Help { verbose }) => {
            emailrelay::stdout!("{}", submit::help_text(&program, verbose));
            return ExitCode::SUCCESS;
        }
        Ok(Request::Version) => {
            emailrelay::stdoutln!("{}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Request::Submit(request)) => request,
        Err(e) => return ExitCode::from(submit::report(&program, &e, &mut stderr)),
    };
    // E-MailRelay compatibility: spool files are rw-rw---- whatever the
    // caller's umask, their group the directory's (if set-group-id) or
    // ours (the spool group, when installed set-group-id).
    emailrelay::platform::process::set_file_mask();
    let pending = Arc::new(Pending::default());
    if let Err(e) = submit::remove_on_signal(Arc::clone(&pending)) {
        emailrelay::stderrln!("{program}: cannot handle signals: {e}");
        return ExitCode::from(1);
    }
    let stdin = std::io::stdin();
    let mut io = Io {
        stdin_is_tty: stdin.is_terminal(),
        stdin: &mut stdin.lock(),
        stdout: &mut Text(std::io::stdout().lock()),
        stderr: &mut Text(std::io::stderr()),
        program: &program,
        pending: &pending,
    };
    match submit::submit(&request, &mut io) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(submit::report(&program, &e, &mut stderr)),
    }
}
