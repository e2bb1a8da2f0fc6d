//! `emailrelay-submit`'s command line: 2.6.1's options with their letters,
//! levels and value names (what `--help` and scripts see), our own
//! descriptions, and what they ask for as a [`SubmitRequest`].
//!
//! E-MailRelay compatibility: up to two `--debug` words anywhere on the
//! command line are taken out before parsing and turn on diagnostic lines
//! (one: what was found and added; two: the files as well);
//! `--auth` is accepted and, as in 2.6.1, has no effect.

use std::path::Path;

use super::SubmitError;
use crate::codec::xtext_encode;
use crate::getopt::{self, HelpLayout, Takes, ToolOption};

/// 2.6.1's option table (its letters, levels and value names).
pub static OPTIONS: &[ToolOption] = &[
    opt(
        b'h',
        "help",
        Takes::Nothing,
        1,
        "",
        "prints this help and exits",
    ),
    opt(
        b'v',
        "verbose",
        Takes::Nothing,
        1,
        "",
        "prints the path of each content file written",
    ),
    opt(
        b's',
        "spool-dir",
        Takes::Value,
        1,
        "dir",
        "the spool directory to write to",
    ),
    opt(
        b'x',
        "input-file",
        Takes::Value,
        1,
        "file",
        "reads the message from this file instead of standard input",
    ),
    opt(
        b'f',
        "from",
        Takes::Value,
        1,
        "envelope-from-address",
        "the envelope sender (by default the From or Sender field's address, else \"anonymous\")",
    ),
    ToolOption {
        many: true,
        ..opt(
            0,
            "to",
            Takes::Value,
            2,
            "envelope-to-address",
            "an envelope recipient, as well as any after the options",
        )
    },
    opt(
        b't',
        "content-to",
        Takes::Nothing,
        2,
        "",
        "writes a To field listing the envelope recipients, replacing To, Cc and Bcc fields",
    ),
    opt(
        b'F',
        "content-from",
        Takes::Nothing,
        2,
        "",
        "writes a From field holding the envelope sender, replacing From and Sender fields",
    ),
    opt(
        b'b',
        "bcc-split",
        Takes::Nothing,
        2,
        "",
        "writes one message per Bcc recipient, and one for the others, when there are two or more",
    ),
    opt(
        b'd',
        "content-date",
        Takes::Nothing,
        2,
        "",
        "writes a Date field if there is none",
    ),
    opt(
        b'I',
        "content-message-id",
        Takes::OptionalValue,
        2,
        "domain-part",
        "writes a Message-ID field if there is none",
    ),
    opt(
        b'c',
        "copy",
        Takes::Nothing,
        2,
        "",
        "copies the envelope into each subdirectory of the spool directory, and removes it from the spool directory if every copy succeeds",
    ),
    opt(
        b'n',
        "filename",
        Takes::Nothing,
        2,
        "",
        "prints the name of each content file written",
    ),
    ToolOption {
        many: true,
        ..opt(
            b'C',
            "content",
            Takes::Value,
            3,
            "base64",
            "a line of content, base64-encoded: header lines, then a blank line, then body lines",
        )
    },
    opt(
        b'N',
        "no-stdin",
        Takes::Nothing,
        3,
        "",
        "does not read standard input (for use with --content)",
    ),
    opt(
        b'B',
        "body",
        Takes::Nothing,
        3,
        "",
        "the input is all body: header lines come from --content only",
    ),
    opt(
        b'a',
        "auth",
        Takes::Value,
        3,
        "name",
        "accepted for compatibility; has no effect",
    ),
    opt(
        b'i',
        "from-auth-in",
        Takes::Value,
        3,
        "name",
        "the envelope's MailFromAuthIn value",
    ),
    opt(
        b'o',
        "from-auth-out",
        Takes::Value,
        3,
        "name",
        "the envelope's MailFromAuthOut value",
    ),
    opt(
        b'V',
        "version",
        Takes::Nothing,
        2,
        "",
        "prints the version and exits",
    ),
];

const fn opt(
    letter: u8,
    name: &'static str,
    takes: Takes,
    level: u8,
    value_name: &'static str,
    help: &'static str,
) -> ToolOption {
    ToolOption {
        letter: if letter == 0 { None } else { Some(letter) },
        name,
        takes,
        many: false,
        level,
        value_name,
        help,
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Request {
    Help { verbose: bool },
    Version,
    Submit(Box<SubmitRequest>),
}

/// What to print for each message written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Nothing,
    /// `--verbose`: the content file's path.
    Path,
    /// `--filename`: its name.
    Name,
}

/// A submission, from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitRequest {
    /// `@app` already replaced.
    pub spool_dir: Vec<u8>,
    /// Empty to take it from the header fields.
    pub from: Vec<u8>,
    /// `--from-auth-in`, as given.
    pub from_auth_in: Option<Vec<u8>>,
    /// `--from-auth-out`, xtext-encoded (`<>` for an empty value).
    pub from_auth_out: Option<String>,
    /// `@app` already replaced.
    pub input_file: Option<Vec<u8>>,
    /// `--content` words, still base64.
    pub content: Vec<Vec<u8>>,
    /// False with `--no-stdin`.
    pub read_stdin: bool,
    pub body: bool,
    pub copy: bool,
    pub bcc_split: bool,
    pub content_date: bool,
    pub content_from: bool,
    pub content_to: bool,
    /// `--content-message-id`'s domain.
    pub message_id: Option<Vec<u8>>,
    /// `--to` values and the arguments after the options.
    pub to: Vec<Vec<u8>>,
    pub show: Show,
    /// How many `--debug` words: 1 for 2.6.1's summary lines on standard
    /// error, 2 for its file lines as well.
    pub debug: u8,
}

/// Interprets the command line (without argv\[0\]); `app_dir` replaces
/// `@app` in file names; `default_spool` is used without `--spool-dir`.
pub fn request(
    argv: &[Vec<u8>],
    app_dir: &Path,
    default_spool: &str,
) -> Result<Request, SubmitError> {
    let mut argv = argv.to_vec();
    let mut debug = 0;
    for _ in 0..2 {
        if let Some(i) = argv.iter().position(|a| a == b"--debug") {
            argv.remove(i);
            debug += 1;
        }
    }
    let p = getopt::parse(OPTIONS, &argv);
    if !p.errors.is_empty() {
        return Err(SubmitError::Usage(p.errors));
    }
    if p.contains("help") {
        return Ok(Request::Help {
            verbose: p.contains("verbose"),
        });
    }
    if p.contains("version") {
        return Ok(Request::Version);
    }
    let app = |v: Vec<u8>| replace(&v, b"@app", app_dir.as_os_str().as_encoded_bytes());
    let auth = |name: &str| p.contains(name).then(|| p.value(name, b""));
    let mut to: Vec<Vec<u8>> = p
        .value("to", b"")
        .split(|&c| c == b',')
        .filter(|t| !t.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    to.extend(p.args.iter().cloned());
    let content = p.value("content", b"");
    Ok(Request::Submit(Box::new(SubmitRequest {
        spool_dir: app(p.value("spool-dir", default_spool.as_bytes())),
        from: p.value("from", b""),
        from_auth_in: auth("from-auth-in"),
        from_auth_out: auth("from-auth-out").map(|v| {
            if v.is_empty() {
                "<>".into()
            } else {
                xtext_encode(&v)
            }
        }),
        input_file: Some(app(p.value("input-file", b""))).filter(|f| !f.is_empty()),
        content: if content.is_empty() {
            Vec::new()
        } else {
            content.split(|&c| c == b',').map(<[u8]>::to_vec).collect()
        },
        read_stdin: !p.contains("no-stdin"),
        body: p.contains("body"),
        copy: p.contains("copy"),
        bcc_split: p.contains("bcc-split"),
        content_date: p.contains("content-date"),
        content_from: p.contains("content-from"),
        content_to: p.contains("content-to"),
        message_id: p
            .contains("content-message-id")
            .then(|| p.value("content-message-id", b"local")),
        to,
        show: if p.contains("verbose") {
            Show::Path
        } else if p.contains("filename") {
            Show::Name
        } else {
            Show::Nothing
        },
        debug,
    })))
}

/// The help text: 2.6.1's layout, our words.
pub fn help_text(program: &str, verbose: bool) -> String {
    let layout = HelpLayout {
        level_max: if verbose { 3 } else { 1 },
        abbreviated: !verbose,
    };
    let mut text = getopt::usage(OPTIONS, program, layout, " [<envelope-to-address> ...]");
    text.push_str(&format!(
        "\nEnd a message typed at the terminal with {}; there a line holding only \".\"\n\
         also ends its body.\n",
        crate::platform::console::END_OF_INPUT
    ));
    if !verbose {
        text.push_str("\nFor every option use \"--help -v\".\n");
    }
    text.push('\n');
    text.push_str(crate::passwd::NOTICE);
    text
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit_request(args: &[&str]) -> SubmitRequest {
        let argv: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        match request(&argv, Path::new("/opt/er"), "/var/spool/emailrelay") {
            Ok(Request::Submit(r)) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_sendmail_shim_and_dkim_signer_command_lines() {
        // bin/emailrelay-sendmail.pl
        let r = submit_request(&[
            "-f",
            "me@x",
            "--content-date",
            "--content-message-id=local",
            "--",
            "a@b",
            "-c",
        ]);
        assert_eq!(r.from, b"me@x");
        assert!(r.content_date && !r.copy);
        assert_eq!(r.message_id.as_deref(), Some(&b"local"[..]));
        assert_eq!(r.to, [b"a@b".to_vec(), b"-c".to_vec()]);
        // bin/emailrelay-dkim-signer.pl
        let r = submit_request(&[
            "-v",
            "-s",
            "/s",
            "-C",
            "DQo=",
            "-C",
            "aGVsbG8sIHdvcmxkIQ==",
            "-d",
            "-F",
            "-t",
            "-f",
            "me@example.com",
            "you@example.com",
        ]);
        assert_eq!(r.show, Show::Path);
        assert_eq!(
            r.content,
            [b"DQo=".to_vec(), b"aGVsbG8sIHdvcmxkIQ==".to_vec()]
        );
        assert!(r.content_date && r.content_from && r.content_to);
        assert_eq!(r.spool_dir, b"/s");
    }

    #[test]
    fn values_as_2_6_1_reads_them() {
        let r = submit_request(&[
            "--debug", "--to", "a,,b", "--to=c", "-I", "-o", "", "-i", "x y", "d", "--debug",
        ]);
        assert_eq!(r.debug, 2);
        assert_eq!(
            r.to,
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert_eq!(r.message_id.as_deref(), Some(&b"yes"[..]));
        assert_eq!(r.from_auth_out.as_deref(), Some("<>"));
        assert_eq!(r.from_auth_in.as_deref(), Some(&b"x y"[..]));
        let r = submit_request(&["-s", "@app/spool", "-x", "@app/m", "-n", "-C", "a,b"]);
        assert_eq!(r.spool_dir, b"/opt/er/spool");
        assert_eq!(r.input_file.as_deref(), Some(&b"/opt/er/m"[..]));
        assert_eq!(r.show, Show::Name);
        assert_eq!(r.content, [b"a".to_vec(), b"b".to_vec()]);
        let r = submit_request(&["-v", "-n", "--from-auth-out=a+b"]);
        assert_eq!(r.show, Show::Path);
        assert_eq!(r.from_auth_out.as_deref(), Some("a+2Bb"));
        assert_eq!(submit_request(&[]).spool_dir, b"/var/spool/emailrelay");
    }
}
