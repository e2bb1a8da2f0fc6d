//! What a filter decided, in E-MailRelay 2.6.1's terms: a tri-state result
//! (ok, abandon, fail), a "special" flag, and for failures a response (the
//! reply text), an optional reply code and a reason (for the log and the
//! `.bad` envelope). The callers turn this into SMTP replies and spool
//! actions; this module only interprets exit codes and filter output and
//! formats the summary that goes into the log.
//!
//! Exit codes (2.6.1's `GSmtp::Filter::Exit`):
//!
//! ```text
//!             server (--filter)        client/routing (--client-filter)
//!   0, 101    ok                       ok
//!   1-99      fail                     fail
//!   100       abandon                  abandon
//!   102       abandon + rescan         ok + stop scanning
//!   103       ok + rescan              ok
//!   104       fail + rescan            abandon + stop scanning
//!   105       fail                     fail + stop scanning
//!   other     fail                     fail
//! ```

/// Which side runs a filter: it decides what exit codes 102-105 mean and
/// how log lines name the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterType {
    /// `--filter`, as a message is stored.
    Server,
    /// `--client-filter`, as a message is forwarded.
    Client,
    /// `--client-filter` for a message that has a `ForwardTo` address.
    Routing,
}

impl FilterType {
    /// The name in log lines.
    pub fn name(self) -> &'static str {
        match self {
            FilterType::Server => "filter",
            FilterType::Client => "client-filter",
            FilterType::Routing => "routing-filter",
        }
    }
}

/// The tri-state result, plus our own deferral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterResult {
    /// Carry on with the message.
    Ok,
    /// The filter took the message over (it may have removed the files).
    Abandon,
    /// Refused, with a response and a reason.
    Fail,
    /// Not now (a DNS failure in `mx:`): the message waits for a later
    /// attempt; on the server side it is refused like a failure (4xx).
    Retry,
}

/// One filter's (or a chain's) outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterOutcome {
    pub result: FilterResult,
    /// Server side: rescan the spool for forwarding afterwards. Client
    /// side: end the forwarding pass after this message.
    pub special: bool,
    /// For a failure, the reply text for the client ("" otherwise).
    pub response: String,
    /// A reply code the filter asked for (4xx or 5xx), or 0.
    pub code: u16,
    /// For a failure, why: logged and written into a `.bad` envelope.
    pub reason: String,
}

impl FilterOutcome {
    pub fn ok() -> FilterOutcome {
        FilterOutcome::of(FilterResult::Ok, "", 0, "")
    }

    pub fn abandon() -> FilterOutcome {
        FilterOutcome::of(FilterResult::Abandon, "", 0, "")
    }

    /// A failure; an empty reason means the response is the reason.
    pub fn fail(response: &str, code: u16, reason: &str) -> FilterOutcome {
        let reason = if reason.is_empty() { response } else { reason };
        FilterOutcome::of(FilterResult::Fail, response, code, reason)
    }

    /// E-MailRelay compatibility: built-in filters that fail answer
    /// `failed`, with the error as the reason.
    pub fn failed(reason: &str) -> FilterOutcome {
        FilterOutcome::fail("failed", 0, reason)
    }

    /// Our deferral: refused for now, with `reason`.
    pub fn retry(reason: &str) -> FilterOutcome {
        FilterOutcome::of(FilterResult::Retry, "failed", 0, reason)
    }

    fn of(result: FilterResult, response: &str, code: u16, reason: &str) -> FilterOutcome {
        FilterOutcome {
            result,
            special: false,
            response: response.to_string(),
            code,
            reason: reason.to_string(),
        }
    }

    /// The same outcome with the special flag set.
    pub fn with_special(mut self, special: bool) -> FilterOutcome {
        self.special = special;
        self
    }

    /// An external program's exit code and stdout, read as `ty` reads them.
    pub fn of_exit(code: i32, ty: FilterType, output: &str) -> FilterOutcome {
        let (result, special) = exit_meaning(code, ty);
        match result {
            FilterResult::Fail => {
                let (response, code, reason) = parse_output(output, "rejected");
                FilterOutcome::fail(&response, code, &reason)
            }
            other => FilterOutcome::of(other, "", 0, ""),
        }
        .with_special(special)
    }

    /// True if the message goes on to the next filter of a chain.
    pub fn carries_on(&self) -> bool {
        self.result == FilterResult::Ok
    }

    /// The summary for the log, as 2.6.1 words it: `ok response=[]`,
    /// `ok +rescan response=[]`, `failed response=[x] reason=[y]`.
    pub fn describe(&self, ty: FilterType) -> String {
        let head = match self.result {
            FilterResult::Ok => "ok ",
            FilterResult::Abandon => "ok(abandon) ",
            FilterResult::Fail | FilterResult::Retry => "failed ",
        };
        let special = match (self.special, ty) {
            (false, _) => "",
            (true, FilterType::Server) => "+rescan ",
            (true, _) => "+break ",
        };
        let mut text = format!("{head}{special}response=[{}]", self.response);
        if self.reason != self.response {
            text.push_str(&format!(" reason=[{}]", self.reason));
        }
        text
    }

    /// The reply to an SMTP client for a failure: the filter's own code
    /// if it gave one from 400 to 599, else 452; tabs and line breaks in
    /// the text become spaces.
    pub fn reply(&self) -> emailrelay_proto::smtp::Reply {
        let code = if (400..600).contains(&self.code) {
            self.code
        } else {
            452
        };
        let text: String = self
            .response
            .chars()
            .map(|c| {
                if matches!(c, '\t' | '\r' | '\n') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        emailrelay_proto::smtp::Reply::new(code, text)
    }
}

/// What an exit code means on side `ty`: the result and the special flag.
fn exit_meaning(code: i32, ty: FilterType) -> (FilterResult, bool) {
    use FilterResult::{Abandon, Fail, Ok};
    match (code, ty == FilterType::Server) {
        (0 | 101, _) => (Ok, false),
        (1..=99, _) => (Fail, false),
        (100, _) => (Abandon, false),
        (102, true) => (Abandon, true),
        (103, true) => (Ok, true),
        (104, true) => (Fail, true),
        (102, false) => (Ok, true),
        (103, false) => (Ok, false),
        (104, false) => (Abandon, true),
        (105, false) => (Fail, true),
        _ => (Fail, false),
    }
}

/// Reads a filter's stdout as 2.6.1 does: the lines that start with `<<`
/// and hold a `>>` (or `[[` ... `]]`) give, between the markers, the
/// response (first line, `default` if none or empty) and the reason
/// (second line, else the response). A response that starts with a 4xx
/// or 5xx code and a space (or is only the code) loses the code, which is
/// returned separately.
pub fn parse_output(output: &str, default: &str) -> (String, u16, String) {
    let normalised = output.replace("\r\n", "\n").replace('\r', "\n");
    let marked: Vec<String> = normalised
        .split('\n')
        .filter_map(|line| {
            let inner = marked_text(line, "<<", ">>").or_else(|| marked_text(line, "[[", "]]"))?;
            Some(printable(inner))
        })
        .collect();
    let mut response = match marked.first() {
        Some(first) if !first.is_empty() => first.clone(),
        _ => default.to_string(),
    };
    let mut code = 0;
    let bytes = response.as_bytes();
    if bytes.len() >= 3
        && matches!(bytes[0], b'4' | b'5')
        && bytes[1].is_ascii_digit()
        && bytes[2].is_ascii_digit()
        && (bytes.len() == 3 || matches!(bytes[3], b' ' | b'\t'))
    {
        code = response[..3].parse().unwrap_or(0);
        response = response.get(4..).unwrap_or("").to_string();
    }
    let reason = match marked.get(1) {
        Some(second) if !second.is_empty() => second.clone(),
        _ => response.clone(),
    };
    (response, code, reason)
}

/// The text between `start` (at the beginning of `line`) and the first
/// `end` after it.
fn marked_text<'a>(line: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(start)?;
    rest.find(end).map(|pos| &rest[..pos])
}

/// Control characters escaped, as 2.6.1's `G::Str::printable` does for
/// the common ones, so that a filter's text stays on one log line.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_gives_response_code_and_reason() {
        assert_eq!(
            parse_output("aaa\n<<foo bar>> yy\nzzz\n", "rejected"),
            ("foo bar".into(), 0, "foo bar".into())
        );
        assert_eq!(
            parse_output("<<550 no thanks>>\r\n[[spam score 9]]\r\n", "rejected"),
            ("no thanks".into(), 550, "spam score 9".into())
        );
        assert_eq!(
            parse_output("junk\n", "rejected"),
            ("rejected".into(), 0, "rejected".into())
        );
        // A code must be 4xx/5xx and stand alone.
        assert_eq!(parse_output("<<250 fine>>", "x").0, "250 fine");
        assert_eq!(parse_output("<<5500 x>>", "x").0, "5500 x");
        assert_eq!(
            parse_output("<<452>>", "x"),
            (String::new(), 452, String::new())
        );
        // The marker must start the line.
        assert_eq!(parse_output(" <<indented>>", "rejected").0, "rejected");
    }

    #[test]
    fn exit_codes_depend_on_the_side() {
        let of = |code, ty| {
            let o = FilterOutcome::of_exit(code, ty, "");
            (o.result, o.special)
        };
        use FilterResult::*;
        use FilterType::{Client, Routing, Server};
        assert_eq!(of(0, Server), (Ok, false));
        assert_eq!(of(101, Client), (Ok, false));
        assert_eq!(of(1, Server), (Fail, false));
        assert_eq!(of(100, Client), (Abandon, false));
        assert_eq!(of(102, Server), (Abandon, true));
        assert_eq!(of(103, Server), (Ok, true));
        assert_eq!(of(104, Server), (Fail, true));
        assert_eq!(of(105, Server), (Fail, false));
        assert_eq!(of(102, Client), (Ok, true));
        assert_eq!(of(103, Client), (Ok, false));
        assert_eq!(of(104, Routing), (Abandon, true));
        assert_eq!(of(105, Client), (Fail, true));
        assert_eq!(of(200, Client), (Fail, false));
        let failed = FilterOutcome::of_exit(3, Server, "");
        assert_eq!((failed.response.as_str(), failed.code), ("rejected", 0));
    }

    #[test]
    fn summaries_and_replies_read_as_2_6_1_writes_them() {
        assert_eq!(
            FilterOutcome::ok()
                .with_special(true)
                .describe(FilterType::Server),
            "ok +rescan response=[]"
        );
        assert_eq!(
            FilterOutcome::ok()
                .with_special(true)
                .describe(FilterType::Client),
            "ok +break response=[]"
        );
        assert_eq!(
            FilterOutcome::abandon().describe(FilterType::Server),
            "ok(abandon) response=[]"
        );
        let timeout = FilterOutcome::fail("error", 0, "timeout");
        assert_eq!(
            timeout.describe(FilterType::Server),
            "failed response=[error] reason=[timeout]"
        );
        assert_eq!(timeout.reply().to_string(), "452 error");
        let coded = FilterOutcome::fail("go\taway", 554, "");
        assert_eq!(coded.reply().to_string(), "554 go away");
        assert_eq!(
            coded.describe(FilterType::Server),
            "failed response=[go\taway]"
        );
    }
}
