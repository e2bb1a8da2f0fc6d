//! The integration tests: our binaries against real programs on loopback.
//!
//! - `auth`: SMTP AUTH on our server (swaks, PAM), trusted addresses.
//! - `client_auth`: AUTH on our client (relay, Postfix with Dovecot SASL).
//! - `cli`: option spellings, config files, help/version, startup errors.
//! - `server`: swaks and Python smtplib submitting; the spool files.
//! - `submit`: emailrelay-submit and emailrelay-passwd against 2.6.1's golden fixtures.
//! - `forward`: forwarding to smtp-sink and to refusing peers; admin.
//! - `instances`: several named instances in one process (`--in-spool-dir`...).
//! - `golden`: transcripts recorded from E-MailRelay 2.6.1, replayed (tests/golden).
//! - `durability`: SIGKILL under load, disk full.
//! - `hostile`: hostile input, upstreams and spool files (issue 18).
//! - `filter`: filters and address verifiers, program, net: and built-in.
//! - `http`: the operator HTTP endpoint: /metrics (Prometheus' parser), /healthz, /queue.
//! - `load`: smtp-source into the relay, smtp-sink behind it.
//! - `oauth`: OAuth 2.0 tokens (loopback token endpoint), XOAUTH2, emailrelay-passwd --oauth.
//! - `package`: the Debian package: cargo-deb, dpkg-deb, lintian, install, upgrade, purge.
//! - `pop`: the POP3 server: golden transcripts, poplib, mpop, fetchmail, s_client.
//! - `postfix`: Postfix as the smarthost.
//! - `routes`: per-upstream limits, throttling, a large spool drained (issue 16).
//! - `process`: signals, `--user`, log options, IPv6, `--anonymous`.
//! - `service`: systemd's `Type=notify` protocol, `systemd-analyze verify` on the units.
//! - `tls`: TLS both ways (openssl, swaks, Postfix), injection, SOCKS 4a.
//! - `windows_service`: `emailrelay-service.exe` under Wine: 2.6.1's
//!   service transcripts, an installed service relaying and draining.
//!
//! These run on the Linux host only (they drive real Linux programs);
//! the Windows build is driven from here under Wine (`windows`).

#![cfg(unix)]

mod auth;
mod cli;
mod client_auth;
mod durability;
mod filter;
mod forward;
mod golden;
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
mod routes;
mod server;
mod service;
mod submit;
mod tls;
mod windows_service;
