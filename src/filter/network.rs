//! `net:` filters: a line protocol to a filter server (E-MailRelay's
//! reference, "Network filters"). We send the content file's path in one
//! line; the server answers with a line starting `ok`, or
//! `[<code> ]<response>[<tab><reason>]`, where a code of 100 abandons the
//! message and a 4xx/5xx code is the reply code. The connection is kept
//! open between messages.
//!
//! E-MailRelay compatibility: when the server cannot be reached or does
//! not answer in time, the outcome is the response `failed` with the error
//! as the reason, and the error is logged as a warning (`error: ...`).

use std::time::Duration;

use super::outcome::printable;
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
            Err(e) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::TimedOut => format!(
                        "response timeout: no response after {}s while connected to {}",
                        timeout.as_secs(),
                        self.client.address()
                    ),
                    _ => format!("{}: {e}", self.client.address()),
                };
                crate::warning!("error: {reason}");
                FilterOutcome::failed(&reason)
            }
        }
    }
}

/// An answer line read as 2.6.1 reads it.
fn outcome_of_line(line: &str) -> FilterOutcome {
    if line.starts_with("ok") {
        return FilterOutcome::ok();
    }
    let (head, reason) = match line.split_once('\t') {
        Some((head, tail)) => (head, printable(tail)),
        None => (line, printable(line)),
    };
    let mut response = printable(head);
    let bytes = response.as_bytes();
    let coded = bytes.len() >= 3
        && (bytes.len() == 3 || bytes[3] == b' ')
        && (bytes[..3] == *b"100"
            || (matches!(bytes[0], b'4' | b'5')
                && bytes[1].is_ascii_digit()
                && bytes[2].is_ascii_digit()));
    let mut code = 0;
    if coded {
        code = response[..3].parse().unwrap_or(0);
        response = response.get(4..).unwrap_or("").to_string();
    }
    if code == 100 {
        return FilterOutcome::abandon();
    }
    FilterOutcome::fail(&response, code, &reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FilterResult;

    #[test]
    fn answers_are_read_as_2_6_1_reads_them() {
        assert_eq!(outcome_of_line("ok"), FilterOutcome::ok());
        assert_eq!(outcome_of_line("ok, fine"), FilterOutcome::ok());
        assert_eq!(
            outcome_of_line("rejected\tscore 12"),
            FilterOutcome::fail("rejected", 0, "score 12")
        );
        assert_eq!(
            outcome_of_line("452 busy"),
            FilterOutcome::fail("busy", 452, "452 busy")
        );
        assert_eq!(
            outcome_of_line("foobar"),
            FilterOutcome::fail("foobar", 0, "foobar")
        );
        assert_eq!(
            outcome_of_line("100 mine now").result,
            FilterResult::Abandon
        );
        // Not a code: 2xx, or no space after it.
        assert_eq!(outcome_of_line("250 x").response, "250 x");
        assert_eq!(outcome_of_line("5501 x").response, "5501 x");
    }
}
