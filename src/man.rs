//! Manual pages for the three programs, generated from the same option
//! tables as their `--help`, so that the two never drift apart:
//! emailrelay(1) from `config::OPTIONS`, emailrelay-submit(1) and
//! emailrelay-passwd(1) from their `getopt` tables. The pages in
//! `packaging/man` are this module's output; a test fails when they are
//! stale, and rewrites them with `UPDATE_MAN=1`.
//!
//! Must not: say anything about an option that its table does not say.

use crate::config::{OptionSpec, Section, Support, System, OPTIONS};
use crate::getopt::{Takes, ToolOption};

/// One option as a page lists it.
struct Entry {
    short: Option<char>,
    long: String,
    help: String,
}

/// What a page says besides its options.
struct Page<'a> {
    name: &'a str,
    summary: &'a str,
    synopsis: &'a str,
    description: &'a [&'a str],
    sections: Vec<(&'a str, Vec<Entry>)>,
    see_also: &'a str,
}

/// emailrelay(1).
pub fn emailrelay_page() -> String {
    let sections = Section::ALL
        .iter()
        .map(|&section| {
            let mut options: Vec<&OptionSpec> = OPTIONS
                .iter()
                .filter(|o| o.section == section && o.shown_on(System::Unix))
                .collect();
            options.sort_by_key(|o| (o.level, o.name));
            let entries = options.iter().map(|o| relay_entry(o)).collect();
            (section.title(), entries)
        })
        .filter(|(_, entries): &(&str, Vec<Entry>)| !entries.is_empty())
        .collect();
    render(&Page {
        name: "emailrelay",
        summary: "SMTP store-and-forward mail server and proxy",
        synopsis: "[options] [config-file]",
        description: &[
            "emailrelay is a store-and-forward mail server and proxy, compatible with \
             E-MailRelay 2.6: it accepts mail over SMTP, keeps it in a spool directory \
             (fsynced before it is acknowledged) and forwards it to a smarthost, with \
             TLS and authentication on both sides, filters, address verifiers and a \
             POP3 server.",
            "Options may also be given in a configuration file named as the last \
             argument, one per line, without the leading dashes.",
        ],
        sections,
        see_also: "emailrelay-submit(1), emailrelay-passwd(1)",
    })
}

/// emailrelay-submit(1).
pub fn submit_page() -> String {
    tool_page(
        "emailrelay-submit",
        "submit a message into an emailrelay spool directory",
        "[options] [envelope-to-address ...]",
        &[
            "emailrelay-submit reads a message from its standard input and writes it \
             into the spool directory as emailrelay does, for the relay to forward.",
        ],
        crate::submit::options::OPTIONS,
    )
}

/// emailrelay-passwd(1).
pub fn passwd_page() -> String {
    tool_page(
        "emailrelay-passwd",
        "hash a password for an emailrelay secrets file",
        "[options]",
        &[
            "emailrelay-passwd reads a password from its standard input and prints the \
             hashed form that emailrelay secrets files take for CRAM-MD5.",
        ],
        crate::passwd::OPTIONS,
    )
}

fn tool_page(
    name: &str,
    summary: &str,
    synopsis: &str,
    description: &[&str],
    table: &[ToolOption],
) -> String {
    let mut options: Vec<&ToolOption> = table.iter().filter(|o| o.level > 0).collect();
    options.sort_by_key(|o| (o.level, o.name));
    let entries = options
        .iter()
        .map(|o| Entry {
            short: o.letter.map(char::from),
            long: match o.takes {
                Takes::Nothing => format!("--{}", o.name),
                Takes::Value => format!("--{}={}", o.name, o.value_name),
                Takes::OptionalValue => format!("--{}[={}]", o.name, o.value_name),
            },
            help: o.help.to_string(),
        })
        .collect();
    render(&Page {
        name,
        summary,
        synopsis,
        description,
        sections: vec![("Options", entries)],
        see_also: "emailrelay(1)",
    })
}

fn relay_entry(o: &OptionSpec) -> Entry {
    let mut help = o.help.to_string();
    if let Support::Later(feature) = o.support {
        help.push_str(&format!(" (not supported yet: {feature})"));
    }
    Entry {
        short: o.short,
        long: match o.takes {
            Takes::Nothing => format!("--{}", o.name),
            Takes::Value => format!("--{}={}", o.name, o.value_name),
            Takes::OptionalValue => format!("--{}[={}]", o.name, o.value_name),
        },
        help,
    }
}

fn render(page: &Page<'_>) -> String {
    let upper = page.name.to_ascii_uppercase();
    let version = env!("CARGO_PKG_VERSION");
    let mut out = format!(
        ".\\\" Generated from the option table by src/man.rs: do not edit.\n\
         .TH {upper} 1 \"\" \"emailrelay-rs {version}\" \"User Commands\"\n\
         .SH NAME\n{} \\- {}\n\
         .SH SYNOPSIS\n.B {}\n{}\n\
         .SH DESCRIPTION\n",
        escape(page.name),
        escape(page.summary),
        escape(page.name),
        escape(page.synopsis),
    );
    for (i, paragraph) in page.description.iter().enumerate() {
        if i > 0 {
            out.push_str(".PP\n");
        }
        out.push_str(&escape(paragraph));
        out.push('\n');
    }
    for (title, entries) in &page.sections {
        out.push_str(&format!(".SH {}\n", escape(&title.to_ascii_uppercase())));
        for entry in entries {
            let head = match entry.short {
                Some(c) => format!("\\fB\\-{c}\\fR, \\fB{}\\fR", escape(&entry.long)),
                None => format!("\\fB{}\\fR", escape(&entry.long)),
            };
            out.push_str(&format!(".TP\n{head}\n{}\n", escape(&entry.help)));
        }
    }
    out.push_str(&format!(".SH SEE ALSO\n{}\n", escape(page.see_also)));
    out
}

/// Text as roff takes it literally: backslashes doubled, hyphens and
/// dashes as `\-`, and a line that would start with `.` or `'` guarded.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed pages are the generator's output (`UPDATE_MAN=1`
    /// rewrites them).
    #[test]
    fn the_pages_in_packaging_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man");
        for (file, text) in [
            ("emailrelay.1", emailrelay_page()),
            ("emailrelay-submit.1", submit_page()),
            ("emailrelay-passwd.1", passwd_page()),
        ] {
            let path = dir.join(file);
            if std::env::var_os("UPDATE_MAN").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "{file} is stale: run UPDATE_MAN=1 cargo test man"
            );
        }
    }

    #[test]
    fn every_listed_option_of_help_is_on_the_page() {
        let page = emailrelay_page();
        for o in OPTIONS.iter().filter(|o| o.shown_on(System::Unix)) {
            assert!(
                page.contains(&escape(&format!("--{}", o.name))),
                "--{} missing",
                o.name
            );
        }
    }

    #[test]
    fn roff_specials_are_escaped() {
        assert_eq!(escape(".x -y \\z"), "\\&.x \\-y \\ez");
    }
}
