//! `--help` and `--help --verbose`: the option list laid out as
//! E-MailRelay 2.6.1 lays it out (usage line, then the options by section,
//! level and name, descriptions in a column), with our own descriptions.

use super::options::{Arg, OptionSpec, Section, Support, System, OPTIONS};

/// Plain `--help` shows the options up to this level.
const BASIC_LEVEL: u8 = 20;
/// Descriptions are never squeezed narrower than this.
const MIN_DESCRIPTION: usize = 20;

/// The help text, wrapped to `width` columns; `verbose` for every option,
/// by section.
pub fn help_text(program: &str, banner: &str, verbose: bool, width: usize) -> String {
    help_text_for(System::HERE, program, banner, verbose, width)
}

/// [`help_text`] as `system`'s build shows it.
pub fn help_text_for(
    system: System,
    program: &str,
    banner: &str,
    verbose: bool,
    width: usize,
) -> String {
    let mut options: Vec<&OptionSpec> = OPTIONS
        .iter()
        .filter(|o| o.shown_on(system))
        .filter(|o| verbose || o.level <= BASIC_LEVEL)
        .collect();
    options.sort_by_key(|o| (o.level, o.name));
    let mut text = format!("{banner}\n\n");
    let label = if verbose {
        "usage:"
    } else {
        "abbreviated usage:"
    };
    text.push_str(&usage_line(label, program, &options, width));
    text.push('\n');
    if verbose {
        for section in Section::ALL {
            let in_section: Vec<&OptionSpec> = options
                .iter()
                .copied()
                .filter(|o| o.section == section)
                .collect();
            if in_section.is_empty() {
                continue;
            }
            text.push_str(&format!("{}\n", section.title()));
            push_options(&mut text, &in_section, 42, width);
            text.push('\n');
        }
        text.push_str(&format!(
            "To store mail from the network in the background...\n   {program} --as-server\n\n\
             To forward stored mail to a smarthost...\n   {program} --as-client smarthost.example.com:smtp\n\n\
             To run as a proxy on port 10025 to a server on port 25...\n   {program} --port 10025 --as-proxy localhost:25\n"
        ));
    } else {
        text.push('\n');
        push_options(&mut text, &options, 30, width);
        text.push_str(&format!(
            "\nFor complete usage information run \"{program} --help --verbose\"\n"
        ));
    }
    text
}

/// `usage: emailrelay [-dvh...] [--as-client=<host:port>] ... [<config-file>]`,
/// wrapped with a two-space indent.
fn usage_line(label: &str, program: &str, options: &[&OptionSpec], width: usize) -> String {
    let flags: String = options
        .iter()
        .filter(|o| o.arg == Arg::None)
        .filter_map(|o| o.short)
        .collect();
    let mut words = vec![format!("{label} {program}")];
    if !flags.is_empty() {
        words.push(format!("[-{flags}]"));
    }
    words.extend(options.iter().map(|o| format!("[{}]", long_form(o))));
    words.push("[<config-file>]".into());
    let mut text = String::new();
    let mut line = String::new();
    for word in words {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            text.push_str(&line);
            text.push('\n');
            line = "  ".into();
        } else if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    text.push_str(&line);
    text.push('\n');
    text
}

/// `--name`, `--name=<value>` or `--name[=<value>]`.
fn long_form(o: &OptionSpec) -> String {
    match o.arg {
        Arg::None => format!("--{}", o.name),
        Arg::Required => format!("--{}={}", o.name, o.value_name),
        Arg::Optional => format!("--{}[={}]", o.name, o.value_name),
    }
}

/// One entry per option: `  -x, --name=<value>` then the description
/// wrapped in a column starting at `column`.
fn push_options(text: &mut String, options: &[&OptionSpec], column: usize, width: usize) {
    for o in options {
        let short = o.short.map_or("    ".to_string(), |c| format!("-{c}, "));
        let head = format!("  {short}{}", long_form(o));
        let mut description = o.help.to_string();
        if let Support::Later(feature) = o.support {
            description.push_str(&format!(" (not supported yet: {feature})"));
        }
        let lines = wrap(
            &description,
            width.saturating_sub(column).max(MIN_DESCRIPTION),
        );
        let mut first = true;
        for line in lines {
            if first && head.len() < column {
                text.push_str(&format!("{head:<column$}{line}\n"));
            } else {
                if first {
                    text.push_str(&format!("{head}\n"));
                }
                text.push_str(&format!("{:column$}{line}\n", ""));
            }
            first = false;
        }
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_help_lists_the_basic_options_in_e_mailrelay_order() {
        let text = help_text("emailrelay", "banner", false, 80);
        let names: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  -"))
            .filter_map(|l| l.split("--").nth(1))
            .map(|l| l.split(['=', ' ']).next().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "as-client",
                "as-proxy",
                "as-server",
                "spool-dir",
                "verbose",
                "help",
                "log",
                "port",
                "remote-clients",
                "version"
            ]
        );
        assert!(text.contains("abbreviated usage: emailrelay [-dvhlrV] [--as-client=<host:port>]"));
    }

    #[test]
    fn verbose_help_has_every_section_and_the_full_flag_cluster() {
        let text = help_text_for(System::Unix, "emailrelay", "banner", true, 80);
        assert!(text.starts_with("banner\n\nusage: emailrelay [-dvhlrVQjbgxf1LtXnBJGKem]"));
        for section in Section::ALL {
            assert!(text.contains(&format!("\n{}\n", section.title())));
        }
        assert!(
            !text.contains("--hidden"),
            "Windows-only options are not shown"
        );
        let long: Vec<&str> = text
            .lines()
            .filter(|l| l.len() > 80 && l.trim().contains(' '))
            .collect();
        assert!(long.is_empty(), "{long:?}");
    }

    #[test]
    fn windows_help_shows_its_own_options() {
        let text = help_text_for(System::Windows, "emailrelay", "banner", true, 80);
        assert!(text.contains("--hidden") && text.contains("--show=<style>"));
        for unix in ["[--user=", "[--no-daemon]", "[--localedir=", "[--syslog[="] {
            assert!(!text.contains(unix), "{unix}");
        }
        assert!(text.contains("[--syslog]"));
    }

    #[test]
    fn help_wraps_to_the_width_it_is_given() {
        for width in [62, 100, 132] {
            let text = help_text("emailrelay", "banner", true, width);
            let long: Vec<&str> = text
                .lines()
                .filter(|l| l.len() > width && l.trim().contains(' '))
                .collect();
            assert!(long.is_empty(), "{width}: {long:?}");
        }
        let wide = help_text("emailrelay", "banner", true, 132);
        assert!(wide.lines().count() < help_text("emailrelay", "banner", true, 80).lines().count());
    }
}
