//! External filter programs, run by [`crate::child`] with the content and
//! envelope paths as arguments.
//!
//! The exit code decides (E-MailRelay's reference, "Filters"): 0 ok, 1-99
//! rejected, 100 abandoned, 102 stop scanning, 103 rescan. The first
//! `<<text>>` or `[[text]]` line of stdout is the reason, a second one is
//! only logged.

use std::path::Path;
use std::time::Duration;

use emailrelay_proto::smtp::Reply;

use super::{FilterJob, FilterOutcome};

/// Runs one program filter to its outcome, within `timeout`.
pub async fn run(label: &str, path: &Path, job: &FilterJob, timeout: Duration) -> FilterOutcome {
    let args = [job.content.as_os_str(), job.envelope.as_os_str()];
    match crate::child::run(path, &args, timeout).await {
        Ok(exit) => outcome_of_exit(exit.code, &exit.output),
        Err(e) => FilterOutcome::Error(format!("{label} {e}")),
    }
}

/// The outcome of exit code `code` with stdout `output`.
pub fn outcome_of_exit(code: i32, output: &str) -> FilterOutcome {
    match code {
        0 | 101 => FilterOutcome::Ok,
        1..=99 => {
            let (reply, detail) = parse_response(output);
            FilterOutcome::Reject { reply, detail }
        }
        100 => FilterOutcome::Abandon,
        102 => FilterOutcome::StopScanning,
        103 => FilterOutcome::Rescan,
        other => FilterOutcome::Error(format!("filter exit code {other} is reserved")),
    }
}

/// The reply a rejecting filter asked for: the first `<<text>>` or
/// `[[text]]` line (a leading `NNN ` from 400 to 599 is the reply code,
/// else 550), and the second such line as a detail for the log.
pub fn parse_response(output: &str) -> (Reply, Option<String>) {
    let mut marked = output.lines().filter_map(|line| {
        let line = line.trim();
        line.strip_prefix("<<")
            .and_then(|l| l.strip_suffix(">>"))
            .or_else(|| line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")))
            .map(str::to_string)
    });
    let text = marked.next().unwrap_or_default();
    let detail = marked.next().filter(|d| !d.is_empty());
    let coded = text
        .split_once(' ')
        .and_then(|(code, rest)| Some((code.parse::<u16>().ok()?, rest)))
        .filter(|(code, _)| (400..=599).contains(code) && text.as_bytes()[3] == b' ');
    let reply = match coded {
        Some((code, rest)) => Reply::new(code, rest.trim()),
        None if text.is_empty() => Reply::new(550, "rejected by filter"),
        None => Reply::new(550, text.trim()),
    };
    (reply, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_carry_an_optional_code_and_a_logged_detail() {
        let (reply, detail) = parse_response("junk\n<<452 try later>>\n[[spam score 9]]\n");
        assert_eq!(reply, Reply::new(452, "try later"));
        assert_eq!(detail.as_deref(), Some("spam score 9"));
        let (reply, detail) = parse_response("[[no thanks]]\n");
        assert_eq!(reply, Reply::new(550, "no thanks"));
        assert_eq!(detail, None);
        assert_eq!(parse_response("").0, Reply::new(550, "rejected by filter"));
        // Not a code: out of range, or no space after it.
        assert_eq!(
            parse_response("<<250 fine>>").0,
            Reply::new(550, "250 fine")
        );
        assert_eq!(parse_response("<<5500 x>>").0, Reply::new(550, "5500 x"));
    }

    #[test]
    fn exit_codes_follow_e_mailrelay() {
        assert_eq!(outcome_of_exit(0, ""), FilterOutcome::Ok);
        assert!(matches!(
            outcome_of_exit(1, ""),
            FilterOutcome::Reject { .. }
        ));
        assert!(matches!(
            outcome_of_exit(99, ""),
            FilterOutcome::Reject { .. }
        ));
        assert_eq!(outcome_of_exit(100, ""), FilterOutcome::Abandon);
        assert_eq!(outcome_of_exit(102, ""), FilterOutcome::StopScanning);
        assert_eq!(outcome_of_exit(103, ""), FilterOutcome::Rescan);
        assert_eq!(
            outcome_of_exit(104, ""),
            FilterOutcome::Error("filter exit code 104 is reserved".into())
        );
    }
}
