//! The integration tests: our binaries against real programs on loopback.
//!
//! - `auth`: SMTP AUTH on our server (swaks, PAM), trusted addresses.
//! - `client_auth`: AUTH on our client (relay, Postfix with Dovecot SASL).
//! - `cli`: option spellings, config files, help/version, startup errors.
//! - `server`: swaks and Python smtplib submitting; the spool files.
//! - `submit`: emailrelay-submit: option combinations, modes under any umask, signals.
//! - `forward`: forwarding to smtp-sink and to refusing peers; admin.
//! - `instances`: several named instances in one process (`--in-spool-dir`...).
//! - `durability`: SIGKILL under load, disk full.
//! - `hostile`: hostile input, upstreams and spool files (issue 18).
//! - `harden`: the second round (issue 25): trickles, the HTTP endpoint's
//!   origin rules and idle connections, POP limits, AUTH and RCPT limits.
//! - `filter`: filters and address verifiers, program, net: and built-in.
//! - `graph`: Microsoft Graph sendMail and app credentials (certificate, Google
//!   service account) against a strict stand-in (graph_standin.py, issue 26).
//! - `http`: the operator HTTP endpoint: /metrics (Prometheus' parser), /healthz, /queue.
//! - `load`: smtp-source into the relay, smtp-sink behind it.
//! - `oauth`: OAuth 2.0 tokens (loopback token endpoint), XOAUTH2, emailrelay-passwd --oauth.
//! - `package`: the Debian package: cargo-deb, dpkg-deb, lintian, install, upgrade, purge.
//! - `pop`: the POP3 server: poplib, mpop, fetchmail, s_client, safety rules.
//! - `postfix`: Postfix as the smarthost.
//! - `proxy`: two relays behind HAProxy with the PROXY protocol (v2 and v1), a relay killed behind it.
//! - `routes`: per-upstream limits, throttling, a large spool drained (issue 16).
//! - `process`: signals, `--user`, log options, IPv6, `--anonymous`.
//! - `status_page`: the status page at `/` in headless Chromium (Selenium): routes, charts,
//!   queue actions, cross-site refusal, a 200,000-message spool.
//! - `service`: systemd's `Type=notify` protocol, `systemd-analyze verify` on the units.
//! - `text_order`: the relay's code layout is written for this compiler and Cargo.lock.
//! - `tls`: TLS both ways (openssl, swaks, Postfix), injection, SOCKS 4a.
//! - `windows`: the Windows build under Wine: a JScript filter, the Event Log API.
//! - `windows_package`: the Windows zip and installer under Wine: contents,
//!   the example filters in cscript, silent install, service, uninstall.
//! - `windows_service`: `emailrelay-service.exe` under Wine: 2.6.1's
//!   service transcripts, an installed service relaying and draining.
//! - `windows_features`: the Windows build under Wine: TLS both ways and the ROOT store, OAuth over
//!   HTTPS, admin, POP, HTTP, named instances, submit and passwd.
//! - `wine` (tests/shared/wine.rs, shared with `golden`): a Wine prefix per test,
//!   Windows paths, the Windows build's programs.
//!
//! 2.6.1's own transcripts are replayed by the `golden` test target
//! (tests/replay); tests that can only check anything as root are in
//! `root` (tests/root), reported ignored with the reason elsewhere.
//!
//! These run on the Linux host only (they drive real Linux programs);
//! the Windows build is driven from here under Wine (`windows`).

#![cfg(unix)]

mod auth;
mod cli;
mod client_auth;
mod durability;
mod filter;
/// The golden fixture format (tests/golden/README.md), shared with the
/// `golden` target: the service test reads 2.6.1's service transcripts.
#[path = "../replay/fixture.rs"]
#[allow(dead_code)]
mod fixture;
mod forward;
mod graph;
mod harden;
mod harness;
mod hostile;
mod http;
mod instances;
mod load;
mod oauth;
mod package;
mod pop;
mod postfix;
mod process;
mod proxy;
#[path = "../shared/quoted_printable.rs"]
mod quoted_printable;
mod routes;
mod server;
mod service;
mod status_page;
mod submit;
mod text_order;
mod tls;
mod windows;
mod windows_features;
mod windows_package;
mod windows_service;
#[path = "../shared/wine.rs"]
mod wine;
