//! `net:` filters: a line protocol to a filter server (E-MailRelay's
//! reference, "Network filters"). We send the content file's path in one
//! line; the server answers `ok`, or an error text in which anything after
//! a tab is logged only. The connection is kept open between messages.

use std::time::Duration;

use super::{FilterJob, FilterOutcome};
use crate::net::line::LineClient;

/// One `net:` filter and its connection.
pub struct NetFilter {
    client: LineClient,
}

impl NetFilter {
    pub fn new(address: String) -> NetFilter {
        NetFilter {
            client: LineClient::new(address),
        }
    }

    /// One request and its answer, within `timeout`.
    pub async fn run(&self, job: &FilterJob, timeout: Duration) -> FilterOutcome {
        let path = job.content.to_string_lossy();
        match self.client.exchange(&path, timeout).await {
            Ok(line) => outcome_of_line(&line),
            Err(e) => FilterOutcome::Error(format!("net filter [{}]: {e}", self.client.address())),
        }
    }
}

/// `ok` carries on; anything else rejects, with the text after a tab kept
/// for the log only.
fn outcome_of_line(line: &str) -> FilterOutcome {
    if line.eq_ignore_ascii_case("ok") {
        return FilterOutcome::Ok;
    }
    let (text, detail) = match line.split_once('\t') {
        Some((text, detail)) => (text, Some(detail.to_string())),
        None => (line, None),
    };
    let (reply, _) = super::parse_response(&format!("<<{text}>>"));
    FilterOutcome::Reject { reply, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emailrelay_proto::smtp::Reply;

    #[test]
    fn replies_ok_or_a_reason_with_a_logged_part() {
        assert_eq!(outcome_of_line("ok"), FilterOutcome::Ok);
        assert_eq!(
            outcome_of_line("rejected\tscore 12"),
            FilterOutcome::Reject {
                reply: Reply::new(550, "rejected"),
                detail: Some("score 12".into())
            }
        );
        assert_eq!(
            outcome_of_line("452 busy"),
            FilterOutcome::Reject {
                reply: Reply::new(452, "busy"),
                detail: None
            }
        );
    }
}
