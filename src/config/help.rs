//! `--help` and `--help --verbose`: the option list laid out as
//! E-MailRelay 2.6.1 lays it out (usage line, then the options by section,
//! level and name, descriptions in a column), with our own descriptions.

use super::options::{OptionSpec, Section, Support, System, OPTIONS};
use crate::getopt::{self, HelpLayout, ToolOption};

/// Plain `--help` shows the options up to this level.
const BASIC_LEVEL: u8 = 20;
/// 2.6.1's description column for `--help --verbose` (plain `--help`: 30).
const VERBOSE_COLUMN: usize = 42;

/// The help text, wrapped to `width` columns; `verbose` for every option,
/// by section. Laid out by 2.6.1's rules (`G::OptionsUsage`, shared with
/// the other two programs through `getopt`): the banner, a blank line, the
/// usage summary, a blank line, the options by level and name, a blank
/// line and the closing lines.
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
    let level_max = if verbose { u8::MAX } else { BASIC_LEVEL };
    let specs: Vec<&OptionSpec> = OPTIONS
        .iter()
        .filter(|o| o.shown_on(system))
        .filter(|o| o.level <= level_max)
        .collect();
    let tools: Vec<ToolOption> = specs.iter().map(|o| tool_option(o)).collect();
    let layout = HelpLayout {
        level_max,
        abbreviated: !verbose,
    };
    let mut text = format!("{banner}\n\n");
    if !verbose {
        text.push_str(&getopt::usage_at(
            &tools,
            program,
            layout,
            " [<config-file>]",
            width,
        ));
        text.push_str(&format!(
            "\nFor complete usage information run \"{program} --help --verbose\"\n"
        ));
        return text;
    }
    let mut sorted: Vec<(&OptionSpec, &ToolOption)> = specs.iter().copied().zip(&tools).collect();
    sorted.sort_by_key(|(o, _)| (o.level, o.name));
    let all: Vec<&ToolOption> = sorted.iter().map(|(_, t)| *t).collect();
    text.push_str(&getopt::summary(
        &all,
        program,
        layout,
        " [<config-file>]",
        width,
    ));
    text.push('\n');
    for section in Section::ALL {
        let in_section: Vec<&(&OptionSpec, &ToolOption)> = sorted
            .iter()
            .filter(|(o, _)| o.section == section)
            .collect();
        if in_section.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{}\n", section.title()));
        for (spec, tool) in in_section {
            text.push_str(&getopt::option_help(
                tool,
                &description(spec),
                VERBOSE_COLUMN,
                width,
            ));
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "\nTo store mail from the network in the background...\n   {program} --as-server\n\n\
         To forward stored mail to a smarthost...\n   {program} --as-client smarthost.example.com:smtp\n\n\
         To run as a proxy on port 10025 to a server on port 25...\n   {program} --port 10025 --as-proxy localhost:25\n"
    ));
    text
}

/// An option of the relay's table as `getopt` lays it out.
fn tool_option(o: &OptionSpec) -> ToolOption {
    ToolOption {
        letter: o.short.and_then(|c| u8::try_from(c).ok()),
        name: o.name,
        takes: o.takes,
        many: o.many,
        level: o.level.max(1),
        value_name: o.value_name.trim_start_matches('<').trim_end_matches('>'),
        help: o.help,
    }
}

/// The description, with a note for an option not supported yet.
fn description(o: &OptionSpec) -> String {
    match o.support {
        Support::Later(feature) => format!("{} (not supported yet: {feature})", o.help),
        _ => o.help.to_string(),
    }
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
        for unix in ["[--user=", "[--no-daemon]", "[--localedir=", "[--syslog="] {
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
