//! External filter programs, run by [`crate::child`] with the content and
//! envelope paths as arguments. The exit code decides (see
//! [`super::outcome`]); for a failure, the first `<<text>>` or `[[text]]`
//! line of stdout is the response and a second one the reason.
//!
//! Log lines are 2.6.1's: `filter [name]: [id]: running <path>` before,
//! `filter [name] failed: exit code <n>: [<response>]` or
//! `filter [name] timed out after <n>s` after; but a filter that abandons
//! the message (exit 100) gets `filter [name]: exit code 100: message
//! abandoned`, an info line, where 2.6.1 warns that it failed.

use std::path::Path;
use std::time::Duration;

use super::{FilterJob, FilterOutcome, FilterResult, FilterType};
use crate::child::ChildError;

/// Runs one program filter to its outcome, within `timeout`.
pub async fn run(ty: FilterType, path: &Path, job: &FilterJob, timeout: Duration) -> FilterOutcome {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{} [{name}]", ty.name());
    // E-MailRelay compatibility: a verbose line (not in the Event Log or
    // syslog, nor in the log without --verbose).
    crate::verbose!(
        "{prefix}: [{}]: running {}",
        job.message_id(),
        path.display()
    );
    let args = [job.content.as_os_str(), job.envelope.as_os_str()];
    let (code, output) = match crate::child::run(path, &args, timeout).await {
        Ok(exit) => (exit.code, exit.output),
        Err(ChildError::Timeout(seconds)) => {
            crate::warning!("{prefix} timed out after {seconds}s");
            return FilterOutcome::fail("error", 0, "timeout");
        }
        // E-MailRelay compatibility: a program that cannot be started
        // answers as if it printed `<<filter exec error: ...>>` and
        // exited 127, but with `rejected` as the response.
        Err(e @ ChildError::Spawn { .. }) => {
            crate::warning!("{prefix} failed: exit code 127: [rejected]");
            return FilterOutcome::fail("rejected", 0, &format!("filter exec error: {e}"));
        }
        Err(e) => {
            crate::warning!("{prefix} failed: {e}");
            return FilterOutcome::fail("rejected", 0, &e.to_string());
        }
    };
    let outcome = FilterOutcome::of_exit(code, ty, &output);
    if outcome.result == FilterResult::Abandon {
        // Not 2.6.1's: it says `failed: exit code 100: [rejected]` as a
        // warning, though its own documentation gives 100 as the way for
        // a filter that dealt with the message itself (and removed its
        // files) to stop "spurious warning messages" (docs/compatibility.md).
        crate::info!("{prefix}: exit code {code}: message abandoned");
    } else if outcome.result != FilterResult::Ok {
        // 2.6.1 words this line from the output whatever the result.
        let (response, reply_code, _) = super::outcome::parse_output(&output, "rejected");
        let coded = match reply_code {
            0 => String::new(),
            code => format!("({code})"),
        };
        crate::warning!("{prefix} failed: exit code {code}: [{response}]{coded}");
    }
    outcome
}
