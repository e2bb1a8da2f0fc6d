//! The one command of a start-up batch file (`emailrelay-start.bat`), as
//! E-MailRelay 2.6.1's installer writes it and its service wrapper reads
//! it:
//!
//! ```text
//! start "emailrelay" "C:\Program Files\E-MailRelay\emailrelay.exe" "C:\ProgramData\E-MailRelay\emailrelay.cfg"
//! ```
//!
//! - Lines are trimmed, tabs become spaces and runs of spaces one space;
//!   blank lines and lines starting `@echo ` or `rem ` (any case) are
//!   ignored. Exactly one other line must remain.
//! - A leading `start` is dropped, with a quoted window title after it
//!   (`start "title" command...`); `start` options such as `/min` are not
//!   understood (the first word after `start` is the command).
//! - `%%` is `%` (batch files double their percent signs).
//! - The service runs the command with ` --hidden` put after the program
//!   (the first word, quotes respected).
//!
//! Pure text in, text out: reading the file (in the OEM code page) is the
//! caller's.

use thiserror::Error;

/// Why a batch file gives no command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchProblem {
    /// The file could not be read.
    #[error("cannot open batch file")]
    CannotOpen,
    /// More than one line is a command.
    #[error("too many lines in batch file")]
    TooManyLines,
    /// No line is a command.
    #[error("batch file is empty")]
    Empty,
    /// `start "title` without the closing quote.
    #[error("mismatched quotes in batch file")]
    MismatchedQuotes,
    /// `start "title"` not followed by a space and a command.
    #[error("invalid window name in batch file")]
    InvalidWindowName,
}

/// The command a batch file runs: the line, and where its arguments
/// start (the first space outside quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCommand {
    pub line: String,
    pub args_at: usize,
}

impl BatchCommand {
    /// Reads the command out of a batch file's text.
    pub fn parse(text: &str) -> Result<BatchCommand, BatchProblem> {
        let line = relevant_line(text)?;
        let line = without_start(&line)?.replace("%%", "%");
        let args_at = args_position(&line);
        Ok(BatchCommand { line, args_at })
    }

    /// The line with ` --hidden` after the program.
    pub fn hidden(&self) -> String {
        let mut line = self.line.clone();
        line.insert_str(self.args_at, " --hidden");
        line
    }

    /// The program, its quotes removed.
    pub fn program(&self) -> String {
        self.line[..self.args_at].replace('"', "")
    }
}

/// Batch-file white space.
const WS: &[char] = &[' ', '\t', '\r', '\n'];

/// The only line that is a command, tidied.
fn relevant_line(text: &str) -> Result<String, BatchProblem> {
    let mut found = None;
    for raw in text.split('\n') {
        let line = squeeze(raw.trim_matches(WS));
        if is_ignorable(&line) {
            continue;
        }
        if found.is_some() {
            return Err(BatchProblem::TooManyLines);
        }
        found = Some(line);
    }
    found.ok_or(BatchProblem::Empty)
}

/// Tabs to spaces, and each run of spaces to one.
fn squeeze(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars().map(|c| if c == '\t' { ' ' } else { c }) {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out
}

fn is_ignorable(line: &str) -> bool {
    let word = format!("{} ", line.to_ascii_lowercase());
    line.is_empty() || word.starts_with("@echo ") || word.starts_with("rem ")
}

/// The line without a leading `start` and its quoted window title.
/// (2.6.1 looks for `start ` anywhere in the line, which spoils a
/// command whose path holds that word; here it is the first word only,
/// after an optional `@`.)
fn without_start(line: &str) -> Result<String, BatchProblem> {
    let body = line.strip_prefix('@').unwrap_or(line);
    if !body.to_ascii_lowercase().starts_with("start ") {
        return Ok(line.to_string());
    }
    let rest = body["start ".len()..].trim_start_matches(WS);
    let Some(titled) = rest.strip_prefix('"') else {
        return Ok(rest.to_string());
    };
    let close = titled.find('"').ok_or(BatchProblem::MismatchedQuotes)?;
    let after = &titled[close + 1..];
    if !after.starts_with(' ') || after.len() < 2 {
        return Err(BatchProblem::InvalidWindowName);
    }
    Ok(after.trim_start_matches(WS).to_string())
}

/// The index of the first white space outside double quotes (the end of
/// the program), or the line's length.
fn args_position(line: &str) -> usize {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if WS.contains(&c) && !quoted {
            return i;
        }
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BatchCommand, BatchProblem> {
        BatchCommand::parse(text)
    }

    #[test]
    fn the_installer_line_loses_start_and_title_and_gets_hidden() {
        let c = parse("start \"emailrelay\" \"C:\\E-MailRelay\\emailrelay.exe\" \"C:\\E-MailRelay\\emailrelay.cfg\"\r\n").unwrap();
        assert_eq!(
            c.line,
            "\"C:\\E-MailRelay\\emailrelay.exe\" \"C:\\E-MailRelay\\emailrelay.cfg\""
        );
        assert_eq!(c.args_at, 31);
        assert_eq!(
            c.hidden(),
            "\"C:\\E-MailRelay\\emailrelay.exe\" --hidden \"C:\\E-MailRelay\\emailrelay.cfg\""
        );
        assert_eq!(c.program(), "C:\\E-MailRelay\\emailrelay.exe");
    }

    #[test]
    fn spaces_inside_quotes_stay_in_the_program() {
        let c =
            parse("start \"x\" \"C:\\Program Files\\E-MailRelay\\emailrelay.exe\" --port 10025\n")
                .unwrap();
        assert_eq!(
            c.program(),
            "C:\\Program Files\\E-MailRelay\\emailrelay.exe"
        );
        assert_eq!(
            c.hidden(),
            "\"C:\\Program Files\\E-MailRelay\\emailrelay.exe\" --hidden --port 10025"
        );
    }

    #[test]
    fn echo_rem_and_blank_lines_are_ignored_any_case() {
        let text = "@echo off\r\nREM started by the service\r\n\r\n  \t\r\nrem\r\nemailrelay.exe --as-server\r\n";
        let c = parse(text).unwrap();
        assert_eq!(c.line, "emailrelay.exe --as-server");
        assert_eq!(c.hidden(), "emailrelay.exe --hidden --as-server");
    }

    #[test]
    fn tabs_and_runs_of_spaces_become_one_space() {
        let c = parse("\t start\t\"t\"   prog.exe\t\t--a  b \n").unwrap();
        assert_eq!(c.line, "prog.exe --a b");
    }

    #[test]
    fn start_without_a_title_and_with_an_at_sign() {
        assert_eq!(parse("start prog.exe x").unwrap().line, "prog.exe x");
        assert_eq!(parse("START prog.exe x").unwrap().line, "prog.exe x");
        assert_eq!(parse("@start \"t\" prog.exe x").unwrap().line, "prog.exe x");
    }

    #[test]
    fn start_elsewhere_in_the_line_is_left_alone() {
        let c = parse("\"C:\\Quick start here\\emailrelay.exe\" cfg").unwrap();
        assert_eq!(c.program(), "C:\\Quick start here\\emailrelay.exe");
    }

    #[test]
    fn doubled_percent_signs_are_undoubled() {
        let c = parse("start \"t\" prog.exe --log-file C:\\logs\\log-%%d.txt").unwrap();
        assert_eq!(c.line, "prog.exe --log-file C:\\logs\\log-%d.txt");
    }

    #[test]
    fn a_program_alone_gets_hidden_at_the_end() {
        let c = parse("start \"t\" prog.exe").unwrap();
        assert_eq!(c.hidden(), "prog.exe --hidden");
    }

    #[test]
    fn problems() {
        assert_eq!(parse(""), Err(BatchProblem::Empty));
        assert_eq!(parse("@echo off\r\nrem x\r\n"), Err(BatchProblem::Empty));
        assert_eq!(parse("a.exe\r\nb.exe\r\n"), Err(BatchProblem::TooManyLines));
        assert_eq!(
            parse("start \"title prog.exe"),
            Err(BatchProblem::MismatchedQuotes)
        );
        assert_eq!(
            parse("start \"title\"prog.exe"),
            Err(BatchProblem::InvalidWindowName)
        );
        assert_eq!(
            parse("start \"title\""),
            Err(BatchProblem::InvalidWindowName)
        );
        assert_eq!(
            BatchProblem::TooManyLines.to_string(),
            "too many lines in batch file"
        );
    }
}
