//! `emailrelay-submit`: writes a message from stdin, `--input-file` or
//! `--content` lines into the spool directory.

use std::path::PathBuf;
use std::process::ExitCode;

use emailrelay::submit::{submit, SubmitOptions};

const USAGE: &str = "usage: emailrelay-submit [<option> ...] [<to-address> ...]
  -s, --spool-dir <dir>      spool directory (default /var/spool/emailrelay)
  -f, --from <address>       envelope sender (default: the From header)
      --to <address>         envelope recipient (repeatable)
  -i, --input-file <file>    read the message from a file instead of stdin
  -c, --content <base64>     a base64-encoded content line (repeatable)
  -B, --body                 the input is the body; headers come from --content
      --bcc-split            recipients from To/Cc/Bcc headers, one message per Bcc
  -d, --add-date             add a Date header if missing
  -t, --add-to               add a To header if missing
  -F, --add-from             add a From header if missing
  -N, --add-message-id       add a Message-ID header if missing
  -v, --verbose              print the new content file's path
  -h, --help                 this help
  -V, --version              version
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&argv) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emailrelay-submit: error: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("emailrelay-submit: error: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(submit(&options, &mut std::io::stdin())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emailrelay-submit: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse(argv: &[String]) -> Result<Option<SubmitOptions>, String> {
    let mut o = SubmitOptions {
        spool_dir: PathBuf::from("/var/spool/emailrelay"),
        ..Default::default()
    };
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].clone();
        i += 1;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = argv
                .get(i)
                .cloned()
                .ok_or(format!("{name} needs a value"))?;
            i += 1;
            Ok(v)
        };
        match name.as_str() {
            "-s" | "--spool-dir" => o.spool_dir = PathBuf::from(value()?),
            "-f" | "--from" => o.from = Some(value()?),
            "--to" => o.to.push(value()?),
            "-i" | "--input-file" => o.input_file = Some(PathBuf::from(value()?)),
            "-c" | "--content" => o.content.push(value()?),
            "-B" | "--body" => o.body = true,
            "--bcc-split" => o.bcc_split = true,
            "-d" | "--add-date" => o.add_date = true,
            "-t" | "--add-to" => o.add_to = true,
            "-F" | "--add-from" => o.add_from = true,
            "-N" | "--add-message-id" => o.add_message_id = true,
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!(
                    "emailrelay-submit (E-MailRelay-rs V{})",
                    env!("CARGO_PKG_VERSION")
                );
                return Ok(None);
            }
            flags if flags.starts_with('-') && !flags.starts_with("--") && flags.len() > 2 => {
                for c in flags[1..].chars() {
                    match c {
                        'd' => o.add_date = true,
                        't' => o.add_to = true,
                        'F' => o.add_from = true,
                        'N' => o.add_message_id = true,
                        'B' => o.body = true,
                        'v' => o.verbose = true,
                        other => return Err(format!("invalid option -{other}")),
                    }
                }
            }
            other if other.starts_with('-') => return Err(format!("invalid option {other}")),
            address => o.to.push(address.to_string()),
        }
    }
    Ok(Some(o))
}
