//! The option table: every option of `emailrelay --help --verbose` (E-MailRelay
//! 2.6 doc/reference.md), with its short letter, whether it takes a value,
//! its help text and whether this build implements it.
//!
//! Must not interpret values: that is `settings.rs`' job.

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A flag.
    None,
    /// `--opt value` or `--opt=value`.
    Required,
    /// Only `--opt=value`; `--opt` alone is allowed.
    Optional,
}

/// Whether this build does what the option asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented.
    Yes,
    /// Not yet: refused at startup, naming the feature.
    Later(&'static str),
    /// Windows-only in E-MailRelay: accepted and ignored with a warning.
    WindowsOnly,
}

/// One row of the table.
#[derive(Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub short: Option<char>,
    pub arg: Arg,
    /// May be given more than once (values accumulate).
    pub repeatable: bool,
    /// Shown by plain `--help` as well as `--help --verbose`.
    pub basic: bool,
    pub support: Support,
    pub value_name: &'static str,
    pub help: &'static str,
}

const fn opt(
    name: &'static str,
    short: Option<char>,
    arg: Arg,
    value_name: &'static str,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        short,
        arg,
        repeatable: false,
        basic: false,
        support: Support::Yes,
        value_name,
        help,
    }
}

const fn basic(mut o: OptionSpec) -> OptionSpec {
    o.basic = true;
    o
}

const fn repeatable(mut o: OptionSpec) -> OptionSpec {
    o.repeatable = true;
    o
}

const fn later(mut o: OptionSpec, feature: &'static str) -> OptionSpec {
    o.support = Support::Later(feature);
    o
}

const fn windows(mut o: OptionSpec) -> OptionSpec {
    o.support = Support::WindowsOnly;
    o
}

use Arg::{None as F, Optional as O, Required as R};

/// Every option, in the order `--help --verbose` lists them.
pub static OPTIONS: &[OptionSpec] = &[
    basic(opt("as-client", Some('q'), R, "<host:port>", "Runs as a client, forwarding all spooled mail to <host:port>: equivalent to --log, --no-syslog, --no-daemon, --dont-serve, --forward and --forward-to")),
    basic(opt("as-proxy", Some('y'), R, "<host:port>", "Runs as a proxy server, forwarding each mail immediately to <host:port>: equivalent to --log, --close-stderr, --forward-on-disconnect and --forward-to")),
    basic(opt("as-server", Some('d'), F, "", "Runs as a server, storing mail in the spool directory: equivalent to --log and --close-stderr")),
    basic(opt("spool-dir", Some('s'), R, "<dir>", "Specifies the spool directory")),
    basic(opt("help", Some('h'), F, "", "Displays help text and then exits; use with --verbose for more")),
    basic(opt("version", Some('V'), F, "", "Displays version information and then exits")),
    opt("client-smtp-config", Some('c'), R, "<config>", "Configures the SMTP client protocol with a comma-separated list of features: pipelining, nopipelining, smtputf8strict, eightbitstrict, binarymimestrict"),
    opt("forward", Some('f'), F, "", "Forwards stored mail on startup (requires --forward-to)"),
    opt("forward-on-disconnect", Some('1'), F, "", "Forwards stored mail once the submitting client disconnects"),
    basic(opt("forward-to", Some('o'), R, "<host:port>", "Specifies the remote SMTP server to forward to")),
    opt("poll", Some('O'), R, "<period>", "Forwards stored mail at regular intervals (in seconds)"),
    opt("client-filter", Some('Y'), R, "<program>", "Runs a filter as each message is forwarded: a program, net:<address>, spam:<address>, spam-edit:<address>, exit:<n> or a built-in (copy:, deliver:, split:, mx:, msgid:); comma-separated filters run in turn"),
    opt("client-interface", Some('6'), R, "<ip-address>", "Binds the local end of outgoing SMTP connections to this address"),
    opt("connection-timeout", Some('U'), R, "<time>", "Timeout in seconds for connecting to a remote server (default 40)"),
    opt("idle-timeout", None, R, "<time>", "Timeout in seconds for receiving traffic from SMTP clients (default 60)"),
    opt("response-timeout", Some('T'), R, "<time>", "Timeout in seconds for replies from a remote SMTP server (default 60)"),
    opt("forward-to-all", None, F, "", "Requires every recipient to be accepted by the remote server (the default)"),
    opt("forward-to-some", None, F, "", "Forwards to the accepted recipients even if some are rejected"),
    opt("immediate", Some('m'), F, "", "Forwards each message as it is received, before it is acknowledged"),
    basic(opt("port", Some('p'), R, "<port>", "Specifies the SMTP listening port (default 25)")),
    basic(opt("remote-clients", Some('r'), F, "", "Allows connections from addresses that are not local")),
    opt("address-verifier", None, R, "<program>", "Verifies recipient addresses: a program, net:<address>, or account: (system accounts)"),
    opt("anonymous", Some('A'), O, "<scope>", "Reduces the information given out: any of vrfy, server, content, client"),
    opt("delivery-dir", None, R, "<dir>", "Base directory for the mailboxes of local recipients (deliver: filter; default: the spool directory)"),
    opt("dnsbl", None, R, "<config>", "Drops connections from addresses listed by DNSBL servers: <server>[,<server>...][,<threshold>[,<timeout-ms>[,<dns-address>]]]"),
    basic(opt("domain", Some('D'), R, "<fqdn>", "Sets the domain name used in greetings, EHLO and Received lines")),
    opt("filter", Some('z'), R, "<program>", "Runs a filter as each message is stored, before it is acknowledged: a program (exit 1-99 rejects), net:<address>, spam:<address>, spam-edit:<address>, exit:<n> or a built-in (copy:, deliver:, split:, mx:, msgid:); comma-separated filters run in turn"),
    opt("filter-timeout", Some('W'), R, "<time>", "Timeout in seconds for filter programs (default 60)"),
    repeatable(opt("interface", Some('I'), R, "<ip-address-list>", "Listening addresses: a comma-separated list, with optional smtp=, pop= or admin= prefixes")),
    opt("prompt-timeout", Some('w'), R, "<time>", "Timeout in seconds for a remote server's greeting (default 20)"),
    opt("server-smtp-config", Some('Z'), R, "<config>", "Configures the SMTP server protocol: pipelining, nopipelining, smtputf8, smtputf8strict, chunking, nostrictparsing, noalabels"),
    opt("size", Some('M'), R, "<bytes>", "Limits the size of submitted messages"),
    opt("pop", Some('B'), F, "", "Enables the POP server"),
    opt("pop-by-name", Some('J'), F, "", "Serves POP clients from a sub-directory named after the user"),
    opt("pop-no-delete", Some('G'), F, "", "Disables the POP DELE command"),
    opt("pop-port", Some('E'), R, "<port>", "Specifies the POP listening port (default 110)"),
    opt("admin", Some('a'), R, "<port>", "Enables the administration interface on the given port"),
    opt("admin-terminate", Some('Q'), F, "", "Enables the admin terminate command"),
    opt("client-auth", Some('C'), R, "<file>", "Authenticates with the remote server using the given secrets file, or plain:<base64-id>:<base64-password>"),
    opt("client-auth-config", None, R, "<config>", "Configures client authentication mechanisms: m: preferred, x: avoided, a:/d: the same under TLS (eg. m:cram-md5,plain)"),
    opt("server-auth", Some('S'), R, "<file>", "Requires SMTP clients to authenticate, using the given secrets file or pam:"),
    opt("server-auth-config", None, R, "<config>", "Configures server authentication mechanisms: m: allowed, x: denied, a:/d: the same under TLS (eg. m:;a:plain)"),
    opt("pop-auth", Some('F'), R, "<file>", "Specifies the POP secrets file, or pam:"),
    opt("client-tls", Some('j'), F, "", "Enables STARTTLS for outgoing connections"),
    repeatable(opt("client-tls-certificate", None, R, "<pem-file>", "The client's TLS key and certificate")),
    opt("client-tls-connection", Some('b'), F, "", "Uses implicit TLS for outgoing connections"),
    opt("client-tls-required", None, F, "", "Requires TLS for outgoing connections"),
    opt("client-tls-server-name", None, R, "<hostname>", "The server name sent in the TLS handshake (SNI)"),
    opt("client-tls-verify", None, R, "<ca-list>", "Verifies the remote server's certificate"),
    opt("client-tls-verify-name", None, R, "<cname>", "Verifies the name in the remote server's certificate"),
    opt("server-tls", Some('K'), F, "", "Offers STARTTLS to SMTP clients"),
    repeatable(opt("server-tls-certificate", None, R, "<pem-file>", "The server's TLS key and certificate")),
    opt("server-tls-connection", None, F, "", "Uses implicit TLS for incoming connections"),
    opt("server-tls-required", None, F, "", "Requires TLS before MAIL and AUTH"),
    opt("server-tls-verify", None, R, "<ca-list>", "Verifies client certificates"),
    opt("tls-config", Some('9'), R, "<options>", "Configures the TLS library"),
    opt("dont-serve", Some('x'), F, "", "Disables all serving: SMTP, POP and admin"),
    later(opt("localedir", None, R, "<dir>", "Enables localisation from the given directory"), "localisation (--localedir)"),
    basic(opt("no-daemon", Some('t'), F, "", "Runs in the foreground")),
    windows(opt("hidden", Some('H'), F, "", "Hides the application window (Windows only)")),
    opt("no-smtp", Some('X'), F, "", "Disables the SMTP server"),
    opt("pid-file", Some('i'), R, "<path>", "Writes the process id to this file"),
    opt("user", Some('u'), R, "<username>", "The unprivileged user to run as when started as root (default daemon; root keeps root)"),
    windows(opt("show", None, R, "<style>", "The window style (Windows only)")),
    basic(opt("verbose", Some('v'), F, "", "More verbose logging, and more verbose help")),
    basic(opt("log", Some('l'), F, "", "Logs to standard error and syslog")),
    opt("debug", Some('g'), F, "", "Logs debug messages"),
    opt("log-address", None, F, "", "Adds the client address to log lines (same as --log-format=address)"),
    opt("log-file", Some('N'), R, "<file>", "Logs to this file instead of standard error; %d becomes the date"),
    opt("log-format", None, R, "<format>", "Adds fields to log lines: time, unit, address, port, msgid"),
    opt("log-time", Some('L'), F, "", "Adds a timestamp to log lines (same as --log-format=time)"),
    opt("no-syslog", Some('n'), F, "", "Disables logging to syslog"),
    opt("syslog", Some('k'), O, "<facility>", "Enables logging to syslog, even with --no-syslog"),
    opt("close-stderr", Some('e'), F, "", "Closes standard error soon after startup"),
];

/// Looks an option up by its long name.
pub fn find_long(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// Looks an option up by its short letter.
pub fn find_short(letter: char) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.short == Some(letter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_letters_are_unique() {
        for (i, a) in OPTIONS.iter().enumerate() {
            for b in &OPTIONS[i + 1..] {
                assert_ne!(a.name, b.name);
                if a.short.is_some() {
                    assert_ne!(a.short, b.short, "{} and {}", a.name, b.name);
                }
            }
        }
    }
}
