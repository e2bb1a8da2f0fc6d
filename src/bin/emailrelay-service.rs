//! `emailrelay-service`: the Windows service wrapper (see
//! `emailrelay::service`): `--install`, `--remove`, `--help`, or, started
//! by the service manager, the service that runs the relay.

use std::process::ExitCode;

use emailrelay::getopt;

fn main() -> ExitCode {
    let (argv0, argv) = getopt::args_os();
    let program = getopt::program_name(&argv0, "emailrelay-service");
    let argv: Vec<String> = argv
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    ExitCode::from(emailrelay::service::main(&program, &argv))
}
