//! `--help` for the tools, laid out as E-MailRelay 2.6.1's
//! `G::OptionsUsage` lays it out: the usage summary wrapped with a
//! two-space indent, then one entry per option (by level, then name) with
//! the descriptions in a column.
//!
//! Must not hold descriptions: the option tables do.

use super::{Takes, ToolOption};

/// How much of the table `--help` shows.
#[derive(Clone, Copy, Debug)]
pub struct HelpLayout {
    /// Options of levels 1 to this are listed.
    pub level_max: u8,
    /// `abbreviated usage:` rather than `usage:`.
    pub abbreviated: bool,
}

/// The usage summary and the option list, as `G::OptionsUsage` lays them
/// out: the summary wrapped with a two-space indent, then one entry per
/// option with the descriptions in a column at 30, all within the
/// terminal width (`$COLUMNS`, else 79).
pub fn usage(table: &[ToolOption], program: &str, layout: HelpLayout, trailer: &str) -> String {
    usage_at(table, program, layout, trailer, help_width())
}

/// The width help is wrapped to, as 2.6.1 chooses it: `$COLUMNS`, else 79
/// (never the terminal's own width).
pub fn help_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .unwrap_or(79)
}

/// As [`usage`], wrapped to `width` columns.
pub fn usage_at(
    table: &[ToolOption],
    program: &str,
    layout: HelpLayout,
    trailer: &str,
    width: usize,
) -> String {
    let mut options: Vec<&ToolOption> = table
        .iter()
        .filter(|o| o.level >= 1 && o.level <= layout.level_max)
        .collect();
    options.sort_by(|a, b| {
        (a.level, a.name.to_ascii_lowercase()).cmp(&(b.level, b.name.to_ascii_lowercase()))
    });
    let mut text = summary(&options, program, layout, trailer, width);
    text.push_str("\n\n");
    for option in options {
        text.push_str(&option_entry(option, width));
        text.push('\n');
    }
    text
}

/// The usage summary alone: `usage: <program> [-flags] [--name=<value>]
/// ...<trailer>`, wrapped to `width` with a two-space indent.
pub fn summary(
    options: &[&ToolOption],
    program: &str,
    layout: HelpLayout,
    trailer: &str,
    width: usize,
) -> String {
    let label = if layout.abbreviated {
        "abbreviated usage: "
    } else {
        "usage: "
    };
    let flags: String = options
        .iter()
        .filter(|o| o.takes == Takes::Nothing)
        .filter_map(|o| o.letter.map(char::from))
        .collect();
    let mut line = format!("{label}{program} ");
    if !flags.is_empty() {
        line.push_str(&format!("[-{flags}] "));
    }
    let long: Vec<String> = options
        .iter()
        .map(|o| match o.takes {
            Takes::Nothing => format!("[--{}]", o.name),
            _ => format!("[--{}=<{}>]", o.name, o.value_name),
        })
        .collect();
    line.push_str(&long.join(" "));
    if !trailer.is_empty() && !trailer.starts_with(' ') {
        line.push(' ');
    }
    line.push_str(trailer);
    wrap(&line, "", "  ", width)
}

/// `  -x, --name=<value>   description...`, wrapped.
fn option_entry(option: &ToolOption, width: usize) -> String {
    option_help(option, option.help, 30, width)
}

/// One option's entry as `G::OptionsUsage` lays it out: a two-space
/// margin, the syntax, the description from `column` (or one space after
/// a longer syntax), wrapped lines indented to `column`, all within
/// `width`; below 23 columns the description goes under the syntax.
pub fn option_help(option: &ToolOption, help: &str, column: usize, width: usize) -> String {
    const MARGIN: usize = 2;
    let mut syntax = match option.letter {
        Some(c) => format!("-{}, --{}", char::from(c), option.name),
        // Placeholders, so that wrapping keeps the indent (as 2.6.1's).
        None => format!("\u{1}\u{1}\u{1}\u{1}--{}", option.name),
    };
    match option.takes {
        Takes::Nothing => {}
        Takes::Value => syntax.push_str(&format!("=<{}>", option.value_name)),
        Takes::OptionalValue => syntax.push_str(&format!("[=<{}>]", option.value_name)),
    }
    let inner = width.saturating_sub(MARGIN).max(1);
    let margin = " ".repeat(MARGIN);
    let body = if inner <= 20 {
        // E-MailRelay's 'overflow' layout for very narrow terminals.
        format!("{syntax}\n{}", wrap(help, " ", " ", inner))
    } else {
        let gap = if MARGIN + syntax.len() >= column {
            1
        } else {
            column - MARGIN - syntax.len()
        };
        let text = format!("{syntax}{}{help}", " ".repeat(gap));
        wrap(&text, "", &" ".repeat(column - MARGIN), inner)
    };
    format!("{margin}{}", body.replace('\n', &format!("\n{margin}"))).replace('\u{1}', " ")
}

/// Greedy word wrap that keeps the spaces between words on a line, each
/// line (prefix included) at most `width` long unless one word is longer.
fn wrap(text: &str, first_prefix: &str, other_prefix: &str, width: usize) -> String {
    let mut out = String::new();
    let mut column = 0;
    let mut emit = |word: &str, space: usize, out: &mut String| {
        if column == 0 {
            out.push_str(first_prefix);
            out.push_str(word);
            column = first_prefix.len() + word.len();
        } else if column + space.max(1) + word.len() > width {
            out.push('\n');
            out.push_str(other_prefix);
            out.push_str(word);
            column = other_prefix.len() + word.len();
        } else {
            out.push_str(&" ".repeat(space.max(1)));
            out.push_str(word);
            column += space.max(1) + word.len();
        }
    };
    let mut space = 0;
    for word in text.split(' ') {
        if word.is_empty() {
            space += 1;
            continue;
        }
        emit(word, space + 1, &mut out);
        space = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The option table of getopt's own tests, which includes a hidden
    // (level 0) option.
    use crate::getopt::tests::TABLE;

    #[test]
    fn help_layout() {
        let text = usage(
            TABLE,
            "prog",
            HelpLayout {
                level_max: 2,
                abbreviated: false,
            },
            " [<to> ...]",
        );
        assert_eq!(
            text,
            "usage: prog [-v] [--from=<address>] [--verbose] [--message-id=<domain>]\n  \
             [--to=<address>] [<to> ...]\n\n  \
             -f, --from=<address>        the sender\n  \
             -v, --verbose               says more\n  \
             -I, --message-id[=<domain>] adds a Message-ID\n      \
             --to=<address>          a recipient\n"
        );
        assert_eq!(wrap("aaa bbb  ccc", "", "  ", 9), "aaa bbb\n  ccc");
    }
}
