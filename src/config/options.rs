//! The option table: every option of E-MailRelay 2.6.1's
//! `emailrelay --help --verbose`, with its short letter, whether it takes
//! one value or many, its section and level in the help (both as the
//! reference binary has them), our help text, and whether this build
//! implements it.
//!
//! Must not interpret values: that is the settings builders' job.

use crate::getopt::Takes;

/// Whether this build does what the option asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented.
    Yes,
    /// Not yet: refused at startup, naming the feature.
    Later(&'static str),
    /// Windows-only in E-MailRelay: on Unix accepted and ignored with a
    /// warning (and not shown by `--help`); on Windows nothing to do (there
    /// is no window to hide or show).
    WindowsOnly,
}

/// A system an option list is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Unix,
    Windows,
}

impl System {
    /// The system this build is for.
    pub const HERE: System = match crate::platform::WINDOWS {
        true => System::Windows,
        false => System::Unix,
    };
}

/// Where an option is taken, and where `--help` shows it (as 2.6.1's two
/// builds have them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Systems {
    /// Taken and shown on both.
    Both,
    /// Not an option at all on Windows (`--user`).
    UnixOnly,
    /// Taken on both, shown on Unix only (`--no-daemon`).
    UnixHelp,
    /// Not an option at all on Unix (the Windows form of `--syslog`).
    WindowsOnly,
    /// Taken on both, shown on Windows only (`--hidden`).
    WindowsHelp,
}

/// The `--help --verbose` sections, in their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Basic,
    SmtpClient,
    SmtpServer,
    Pop,
    Admin,
    Auth,
    Tls,
    Process,
    Logging,
}

impl Section {
    /// Every section, in help order.
    pub const ALL: [Section; 9] = [
        Section::Basic,
        Section::SmtpClient,
        Section::SmtpServer,
        Section::Pop,
        Section::Admin,
        Section::Auth,
        Section::Tls,
        Section::Process,
        Section::Logging,
    ];

    /// The section's heading.
    pub fn title(self) -> &'static str {
        match self {
            Section::Basic => "Basic options",
            Section::SmtpClient => "SMTP client options",
            Section::SmtpServer => "SMTP server options",
            Section::Pop => "POP server options",
            Section::Admin => "Admin server options",
            Section::Auth => "Authentication options",
            Section::Tls => "TLS options",
            Section::Process => "Process options",
            Section::Logging => "Logging options",
        }
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub short: Option<char>,
    pub takes: Takes,
    /// May be given more than once, values accumulating (E-MailRelay's
    /// "many" options, read as one comma-separated list).
    pub many: bool,
    pub section: Section,
    /// The help level: plain `--help` shows levels up to 20; within a
    /// section options are listed by level, then name.
    pub level: u8,
    pub support: Support,
    pub systems: Systems,
    pub value_name: &'static str,
    pub help: &'static str,
}

const fn opt(
    name: &'static str,
    short: Option<char>,
    takes: Takes,
    value_name: &'static str,
    section: Section,
    level: u8,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        short,
        takes,
        many: false,
        section,
        level,
        support: Support::Yes,
        systems: Systems::Both,
        value_name,
        help,
    }
}

const fn many(mut o: OptionSpec) -> OptionSpec {
    o.many = true;
    o
}

const fn later(mut o: OptionSpec, feature: &'static str) -> OptionSpec {
    o.support = Support::Later(feature);
    o
}

const fn windows(mut o: OptionSpec) -> OptionSpec {
    o.support = Support::WindowsOnly;
    o.systems = Systems::WindowsHelp;
    o
}

const fn on(mut o: OptionSpec, systems: Systems) -> OptionSpec {
    o.systems = systems;
    o
}

impl OptionSpec {
    /// Whether `system`'s build takes the option.
    pub fn taken_on(&self, system: System) -> bool {
        !matches!(
            (self.systems, system),
            (Systems::UnixOnly, System::Windows) | (Systems::WindowsOnly, System::Unix)
        )
    }

    /// Whether `system`'s `--help` shows the option.
    pub fn shown_on(&self, system: System) -> bool {
        match self.systems {
            Systems::Both => true,
            Systems::UnixOnly | Systems::UnixHelp => system == System::Unix,
            Systems::WindowsOnly | Systems::WindowsHelp => system == System::Windows,
        }
    }
}

use Takes::{Nothing as F, OptionalValue as O, Value as R};

/// Every option, in the order `--help --verbose` lists them.
pub static OPTIONS: &[OptionSpec] = &[
    opt("as-client", Some('q'), R, "<host:port>", Section::Basic, 10, "Runs as a client, forwarding all spooled mail to <host:port>: equivalent to --log, --no-syslog, --no-daemon, --dont-serve, --forward and --forward-to"),
    opt("as-proxy", Some('y'), R, "<host:port>", Section::Basic, 10, "Runs as a proxy server, forwarding each mail immediately to <host:port>: equivalent to --log, --close-stderr, --forward-on-disconnect and --forward-to"),
    opt("as-server", Some('d'), F, "", Section::Basic, 10, "Runs as a server, storing mail in the spool directory: equivalent to --log and --close-stderr"),
    opt("spool-dir", Some('s'), R, "<dir>", Section::Basic, 10, "Specifies the spool directory"),
    opt("help", Some('h'), F, "", Section::Basic, 11, "Displays help text and then exits; use with --verbose for more"),
    opt("version", Some('V'), F, "", Section::Basic, 20, "Displays version information and then exits"),
    many(opt("client-smtp-config", Some('c'), R, "<config>", Section::SmtpClient, 30, "Configures the SMTP client protocol with a comma-separated list of features: pipelining, nopipelining, smtputf8strict, eightbitstrict, binarymimestrict")),
    opt("forward", Some('f'), F, "", Section::SmtpClient, 30, "Forwards stored mail on startup (requires --forward-to)"),
    opt("forward-on-disconnect", Some('1'), F, "", Section::SmtpClient, 30, "Forwards stored mail once the submitting client disconnects"),
    opt("forward-to", Some('o'), R, "<host:port>", Section::SmtpClient, 30, "Specifies the remote SMTP server to forward to"),
    opt("poll", Some('O'), R, "<period>", Section::SmtpClient, 30, "Forwards stored mail at regular intervals (in seconds)"),
    many(opt("client-filter", Some('Y'), R, "<program>", Section::SmtpClient, 31, "Runs a filter as each message is forwarded: a program, net:<address>, spam:<address>, spam-edit:<address>, exit:<n> or a built-in (copy:, deliver:, split:, mx:, msgid:); comma-separated filters run in turn")),
    opt("client-interface", Some('6'), R, "<ip-address>", Section::SmtpClient, 31, "Binds the local end of outgoing SMTP connections to this address"),
    opt("connection-timeout", Some('U'), R, "<time>", Section::SmtpClient, 31, "Timeout in seconds for connecting to a remote server (default 40)"),
    opt("idle-timeout", None, R, "<time>", Section::SmtpClient, 31, "Timeout in seconds for receiving traffic from SMTP clients (default 60)"),
    opt("response-timeout", Some('T'), R, "<time>", Section::SmtpClient, 31, "Timeout in seconds for replies from a remote SMTP server (default 60)"),
    opt("forward-to-all", None, F, "", Section::SmtpClient, 32, "Requires every recipient to be accepted by the remote server (the default)"),
    opt("forward-to-some", None, F, "", Section::SmtpClient, 32, "Forwards to the accepted recipients even if some are rejected"),
    opt("client-connections", None, R, "<count>", Section::SmtpClient, 32, "Opens at most this many connections at once to forward a queue (default 3, as Microsoft 365 allows per mailbox)"),
    opt("client-rate", None, R, "<count>", Section::SmtpClient, 32, "Sends at most this many messages a minute to one server with one account, waiting when the limit is reached (default: no limit; Microsoft 365 takes 30)"),
    opt("max-age", None, R, "<time>", Section::SmtpClient, 32, "Fails a message to .bad that is still deferred this long after it was received: seconds, or a number with m, h or d (default: no limit)"),
    opt("immediate", Some('m'), F, "", Section::SmtpClient, 32, "Forwards each message as it is received, before it is acknowledged"),
    opt("port", Some('p'), R, "<port>", Section::SmtpServer, 20, "Specifies the SMTP listening port (default 25)"),
    opt("remote-clients", Some('r'), F, "", Section::SmtpServer, 20, "Allows connections from addresses that are not local"),
    opt("address-verifier", None, R, "<program>", Section::SmtpServer, 30, "Verifies recipient addresses: a program, net:<address>, or account: (system accounts)"),
    opt("anonymous", Some('A'), O, "<scope>", Section::SmtpServer, 30, "Reduces the information given out: any of vrfy, server, content, client"),
    opt("delivery-dir", Some('s'), R, "<dir>", Section::SmtpServer, 30, "Base directory for the mailboxes of local recipients (deliver: filter; default: the spool directory)"),
    many(opt("dnsbl", None, R, "<config>", Section::SmtpServer, 30, "Drops connections from addresses listed by DNSBL servers: <server>[,<server>...] with an optional threshold, timeout in milliseconds and DNS server address")),
    opt("domain", Some('D'), R, "<fqdn>", Section::SmtpServer, 30, "Sets the domain name used in greetings, EHLO and Received lines"),
    many(opt("filter", Some('z'), R, "<program>", Section::SmtpServer, 30, "Runs a filter as each message is stored, before it is acknowledged: a program (exit 1-99 rejects), net:<address>, spam:<address>, spam-edit:<address>, exit:<n> or a built-in (copy:, deliver:, split:, mx:, msgid:); comma-separated filters run in turn")),
    opt("filter-timeout", Some('W'), R, "<time>", Section::SmtpServer, 30, "Timeout in seconds for filter programs (default 60)"),
    many(opt("interface", Some('I'), R, "<ip-address-list>", Section::SmtpServer, 30, "Listening addresses: a comma-separated list, with optional smtp=, pop=, admin= or http= prefixes")),
    opt("prompt-timeout", Some('w'), R, "<time>", Section::SmtpServer, 30, "Timeout in seconds for a remote server's greeting (default 20)"),
    many(opt("server-smtp-config", Some('Z'), R, "<config>", Section::SmtpServer, 30, "Configures the SMTP server protocol: pipelining, nopipelining, smtputf8, smtputf8strict, chunking, nostrictparsing, noalabels")),
    opt("size", Some('M'), R, "<bytes>", Section::SmtpServer, 30, "Limits the size of submitted messages"),
    opt("max-hops", None, R, "<count>", Section::SmtpServer, 30, "Refuses messages that arrive with more Received lines than this, to end mail loops (default 50, 0 for no limit)"),
    opt("min-data-rate", None, R, "<bytes>", Section::SmtpServer, 30, "Drops a client whose message content arrives slower than this many bytes a second, once the --idle-timeout has passed (default 500, 0 for no minimum)"),
    on(many(opt("proxy-protocol", None, R, "<address-list>", Section::SmtpServer, 32, "Reads a PROXY protocol header (v1 or v2) on SMTP and POP connections from these load balancer addresses or CIDR ranges, and takes the client address it carries")), Systems::UnixHelp),
    opt("pop", Some('B'), F, "", Section::Pop, 30, "Enables the POP server"),
    opt("pop-by-name", Some('J'), F, "", Section::Pop, 30, "Serves POP clients from a sub-directory named after the user"),
    opt("pop-no-delete", Some('G'), F, "", Section::Pop, 30, "Disables the POP DELE command"),
    opt("pop-port", Some('E'), R, "<port>", Section::Pop, 30, "Specifies the POP listening port (default 110)"),
    opt("admin", Some('a'), R, "<port>", Section::Admin, 30, "Enables the administration interface on the given port"),
    opt("admin-terminate", Some('Q'), F, "", Section::Admin, 30, "Enables the admin terminate command"),
    opt("http-port", None, R, "<port>", Section::Admin, 32, "Serves /metrics (Prometheus), /healthz and /queue over HTTP on this port, on loopback unless --remote-clients or an http= interface says otherwise"),
    opt("http-max-queue-age", None, R, "<time>", Section::Admin, 32, "Makes /healthz fail while a queued message is older than this: seconds, or a number with m, h or d (default 1h)"),
    opt("http-auth", None, R, "<file>", Section::Admin, 32, "Requires HTTP Basic or Bearer authentication for everything but /healthz, from the secrets file's 'server basic <name> <password>' and 'server bearer <name> <token>' lines; an authenticated peer may use the queue from any address"),
    opt("http-tls", None, F, "", Section::Admin, 32, "Serves the HTTP endpoint over TLS (HTTPS) with the server's certificate (--server-tls-certificate)"),
    opt("client-auth", Some('C'), R, "<file>", Section::Auth, 30, "Authenticates with the remote server using the given secrets file, or plain:<base64-id>:<base64-password>"),
    opt("client-auth-config", None, R, "<config>", Section::Auth, 30, "Configures client authentication mechanisms: m: preferred, x: avoided, a:/d: the same under TLS (eg. m:cram-md5,plain)"),
    opt("server-auth", Some('S'), R, "<file>", Section::Auth, 30, "Requires SMTP clients to authenticate, using the given secrets file or pam:"),
    opt("server-auth-config", None, R, "<config>", Section::Auth, 30, "Configures server authentication mechanisms: m: allowed, x: denied, a:/d: the same under TLS (eg. m:;a:plain)"),
    opt("pop-auth", Some('F'), R, "<file>", Section::Auth, 31, "Specifies the POP secrets file, or pam:"),
    opt("client-tls", Some('j'), F, "", Section::Tls, 30, "Enables STARTTLS for outgoing connections"),
    many(opt("client-tls-certificate", None, R, "<pem-file>", Section::Tls, 30, "The client's TLS key and certificate")),
    opt("client-tls-connection", Some('b'), F, "", Section::Tls, 30, "Uses implicit TLS for outgoing connections"),
    opt("client-tls-required", None, F, "", Section::Tls, 30, "Requires TLS for outgoing connections"),
    opt("client-tls-server-name", None, R, "<hostname>", Section::Tls, 30, "The server name sent in the TLS handshake (SNI)"),
    opt("client-tls-verify", None, R, "<ca-list>", Section::Tls, 30, "Verifies the remote server's certificate"),
    opt("client-tls-verify-name", None, R, "<cname>", Section::Tls, 30, "Verifies the name in the remote server's certificate"),
    opt("server-tls", Some('K'), F, "", Section::Tls, 30, "Offers STARTTLS to SMTP clients"),
    many(opt("server-tls-certificate", None, R, "<pem-file>", Section::Tls, 30, "The server's TLS key and certificate")),
    opt("server-tls-connection", None, F, "", Section::Tls, 30, "Uses implicit TLS for incoming connections"),
    opt("server-tls-required", None, F, "", Section::Tls, 30, "Requires TLS before MAIL and AUTH"),
    opt("server-tls-verify", None, R, "<ca-list>", Section::Tls, 30, "Verifies client certificates"),
    many(opt("tls-config", Some('9'), R, "<options>", Section::Tls, 30, "Configures the TLS library")),
    opt("dont-serve", Some('x'), F, "", Section::Process, 30, "Disables all serving: SMTP, POP and admin"),
    on(later(opt("localedir", None, R, "<dir>", Section::Process, 30, "Enables localisation from the given directory"), "localisation (--localedir)"), Systems::UnixHelp),
    on(opt("no-daemon", Some('t'), F, "", Section::Process, 30, "Runs in the foreground"), Systems::UnixHelp),
    on(opt("drain-delay", None, R, "<time>", Section::Process, 32, "On SIGTERM, keeps accepting for this many seconds while /healthz and a load balancer's PROXY protocol health check fail, so that the balancer drains the relay first (default 0)"), Systems::UnixHelp),
    windows(opt("hidden", Some('H'), F, "", Section::Process, 30, "Hides the application window (Windows only)")),
    opt("no-smtp", Some('X'), F, "", Section::Process, 30, "Disables the SMTP server"),
    many(opt("pid-file", Some('i'), R, "<path>", Section::Process, 30, "Writes the process id to this file")),
    on(opt("user", Some('u'), R, "<username>", Section::Process, 30, "The unprivileged user to run as when started as root (default daemon; root keeps root)"), Systems::UnixOnly),
    windows(opt("show", None, R, "<style>", Section::Process, 30, "The window style (Windows only)")),
    opt("verbose", Some('v'), F, "", Section::Logging, 10, "More verbose logging, and more verbose help"),
    opt("log", Some('l'), F, "", Section::Logging, 20, "Logs to standard error and syslog"),
    opt("debug", Some('g'), F, "", Section::Logging, 30, "Logs debug messages"),
    opt("log-address", None, F, "", Section::Logging, 30, "Adds the client address to log lines (same as --log-format=address)"),
    opt("log-file", Some('N'), R, "<file>", Section::Logging, 30, "Logs to this file instead of standard error; %d becomes the date"),
    many(opt("log-format", None, R, "<value>", Section::Logging, 30, "Adds fields to log lines: time, unit, address, port, msgid")),
    opt("log-time", Some('L'), F, "", Section::Logging, 30, "Adds a timestamp to log lines (same as --log-format=time)"),
    opt("no-syslog", Some('n'), F, "", Section::Logging, 30, "Disables logging to syslog"),
    on(opt("syslog", Some('k'), O, "<facility>", Section::Logging, 30, "Enables logging to syslog, even with --no-syslog"), Systems::UnixOnly),
    on(opt("syslog", Some('k'), F, "", Section::Logging, 30, "Enables logging to the Event Log, even with --no-syslog"), Systems::WindowsOnly),
    opt("close-stderr", Some('e'), F, "", Section::Logging, 31, "Closes standard error soon after startup"),
];

/// Looks an option of this system's up by its long name.
pub fn find_long(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS
        .iter()
        .find(|o| o.name == name && o.taken_on(System::HERE))
}

/// Looks an option up by its short letter.
///
/// E-MailRelay compatibility: 2.6.1 gives `-s` to both `--spool-dir` and
/// `--delivery-dir`, and its parser takes the later one, `--delivery-dir`.
pub fn find_short(letter: char) -> Option<&'static OptionSpec> {
    OPTIONS
        .iter()
        .rev()
        .find(|o| o.short == Some(letter) && o.taken_on(System::HERE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_letters_are_unique_on_each_system() {
        for system in [System::Unix, System::Windows] {
            let taken: Vec<&OptionSpec> = OPTIONS.iter().filter(|o| o.taken_on(system)).collect();
            assert!(taken.len() > 70, "{system:?}");
            for (i, a) in taken.iter().enumerate() {
                for b in &taken[i + 1..] {
                    assert_ne!(a.name, b.name);
                    if a.short.is_some() && a.short != Some('s') {
                        assert_ne!(a.short, b.short, "{} and {}", a.name, b.name);
                    }
                }
            }
        }
    }
}
