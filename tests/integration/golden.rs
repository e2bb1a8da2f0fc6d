//! Golden transcripts: what E-MailRelay 2.6.1 said at every interface,
//! replayed against our binaries.
//!
//! `scripts/record-golden` ran the real 2.6.1 binaries through each scenario
//! and wrote `tests/golden/**/*.golden` (format and normalisations in
//! tests/golden/README.md). This module plays the same inputs into our
//! binaries (same arguments, same files, same bytes on the same kind of
//! connection), normalises what ours says with the same rules, and compares
//! every part exactly: `start`, `exit`, `dialog` (SMTP and admin replies),
//! `stdout`, `stderr`, `log` (files named `log*`), `files` (spool, pid file,
//! everything else written) and `sink` (what ours sent to a scripted SMTP
//! server).
//!
//! A part that differs must be listed in tests/golden/known-differences;
//! the test fails on a difference not listed there, and on a listed one
//! that no longer occurs (so the list only shrinks). `GOLDEN_ONLY=<text>`
//! runs the scenarios whose name contains the text; `GOLDEN_PRUNE=1`
//! deletes the lines of parts that now match; `GOLDEN_REWRITE=1` writes
//! the list afresh from the current differences; `GOLDEN_VERBOSE=1`
//! prints the differences of listed parts too; `GOLDEN_JOBS=<n>` sets how
//! many scenarios run at once (default 4). `GOLDEN_BIN_DIR=<dir>` with
//! `GOLDEN_VERSION=<x.y.z>` replays against other binaries, ignoring the
//! known differences: against the reference itself (`/work/ref/src/main`,
//! `2.6.1`) every scenario must match, which checks fixtures and replay.
//!
//! It must not: touch anything outside its temporary directories, leave a
//! process running (every child is stopped by PID), or wait without a bound.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::harness::free_port;

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

#[test]
fn golden_transcripts() {
    // submit/default-spool writes into our default spool directory, which
    // the package test installs and purges: never both at once, and the
    // directory always there (as a relay started without --spool-dir
    // leaves it), so that the scenario's result does not depend on which
    // test ran first.
    let _machine = crate::harness::machine_lock();
    let _ = std::fs::create_dir_all("/var/spool/emailrelay");
    // Against other binaries (the reference itself) every part must match.
    let other_binaries = std::env::var("GOLDEN_BIN_DIR").is_ok_and(|d| !d.is_empty());
    let known = if other_binaries {
        KnownDifferences {
            entries: BTreeMap::new(),
        }
    } else {
        KnownDifferences::load()
    };
    let only = std::env::var("GOLDEN_ONLY").unwrap_or_default();
    let mut fixtures = Vec::new();
    collect_fixtures(Path::new(GOLDEN_DIR), &mut fixtures);
    fixtures.sort();
    assert!(!fixtures.is_empty(), "no fixtures under {GOLDEN_DIR}");
    let names: BTreeSet<String> = fixtures.iter().map(|p| fixture_name(p)).collect();
    let mut problems = known.stale_scenarios(&names);

    let selected: Vec<PathBuf> = fixtures
        .into_iter()
        .filter(|p| fixture_name(p).contains(&only))
        .collect();
    let queue = Arc::new(Mutex::new(selected));
    let results = Arc::new(Mutex::new(Vec::new()));
    let jobs: usize = std::env::var("GOLDEN_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(4);
    let workers: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let (queue, results) = (queue.clone(), results.clone());
            std::thread::spawn(move || loop {
                let Some(path) = queue.lock().unwrap().pop() else {
                    return;
                };
                let text = std::fs::read_to_string(&path).unwrap();
                let fixture = Fixture::parse(&fixture_name(&path), &text);
                let started = Instant::now();
                let outcome = Replay::run(&fixture);
                let took = started.elapsed();
                results
                    .lock()
                    .unwrap()
                    .push((fixture.name.clone(), outcome, took));
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a replay thread panicked");
    }

    let mut results = std::mem::take(&mut *results.lock().unwrap());
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut slow: Vec<_> = results.iter().map(|(n, _, t)| (*t, n.clone())).collect();
    slow.sort();
    let slow: Vec<String> = slow
        .iter()
        .rev()
        .take(5)
        .map(|(t, n)| format!("{n} {:.1}s", t.as_secs_f64()))
        .collect();
    let verbose = std::env::var("GOLDEN_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0");
    let (mut same, mut listed) = (0, 0);
    let mut fixed: Vec<(String, String)> = Vec::new();
    for (name, diffs, _) in &results {
        let expected = known.parts(name);
        for (part, (summary, detail)) in diffs {
            if expected.contains(part.as_str()) {
                listed += 1;
                if verbose {
                    eprintln!("known difference {name} {part}:\n{detail}\n");
                }
            } else {
                problems.push(format!(
                    "NEW difference {name} {part}:\n{detail}\n  suggested known-differences line:\n{name} {part}: {summary}"
                ));
            }
        }
        for part in &expected {
            if !diffs.contains_key(*part) {
                fixed.push((name.clone(), part.to_string()));
                problems.push(format!(
                    "FIXED {name} {part}: now matches the reference; remove it from tests/golden/known-differences"
                ));
            }
        }
        if diffs.is_empty() {
            same += 1;
        }
    }
    eprintln!(
        "golden: {} scenarios, {same} identical to 2.6.1, {listed} known differences, {} problems; slowest: {}",
        results.len(),
        problems.len(),
        slow.join(", ")
    );
    // GOLDEN_REWRITE=1: the list written afresh from this run, each line
    // with its current first difference (after a batch of fixes).
    if std::env::var("GOLDEN_REWRITE").is_ok_and(|v| v == "1") && !other_binaries {
        let lines: Vec<String> = results
            .iter()
            .flat_map(|(name, diffs, _)| {
                diffs
                    .iter()
                    .map(move |(part, (summary, _))| format!("{name} {part}: {summary}"))
            })
            .collect();
        KnownDifferences::rewrite(&lines);
        eprintln!(
            "golden: rewrote known-differences with {} lines",
            lines.len()
        );
        return;
    }
    if std::env::var("GOLDEN_PRUNE").is_ok_and(|v| v == "1") && !fixed.is_empty() && !other_binaries
    {
        KnownDifferences::prune(&fixed);
        eprintln!(
            "golden: removed {} fixed lines from known-differences",
            fixed.len()
        );
        problems.retain(|p| !p.starts_with("FIXED "));
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

/// The first line where two texts differ, for a one-line description:
/// "line N: 2.6.1 `...`, ours `...`".
fn first_difference(want: &[u8], got: &[u8]) -> String {
    let clip = |l: &[u8]| {
        let text = show_inline(l);
        if text.chars().count() > 120 {
            format!("{}...", text.chars().take(120).collect::<String>())
        } else {
            text
        }
    };
    let a: Vec<&[u8]> = want.split_inclusive(|&b| b == b'\n').collect();
    let b: Vec<&[u8]> = got.split_inclusive(|&b| b == b'\n').collect();
    let n = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let line = if a.len().max(b.len()) > 1 {
        format!("line {}: ", n + 1)
    } else {
        String::new()
    };
    match (a.get(n), b.get(n)) {
        (Some(x), Some(y)) => format!("{line}2.6.1 `{}`, ours `{}`", clip(x), clip(y)),
        (Some(x), None) => format!("{line}2.6.1 `{}`, ours nothing more", clip(x)),
        (None, Some(y)) => format!("{line}2.6.1 nothing more, ours `{}`", clip(y)),
        (None, None) => "the same".to_string(),
    }
}

fn collect_fixtures(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            // windows/: 2.6.1's Windows build under Wine (scripts/record-golden-windows),
            // for a Windows replay; not one of these.
            if path == Path::new(GOLDEN_DIR).join("windows") {
                continue;
            }
            collect_fixtures(&path, out);
        } else if path.extension().is_some_and(|e| e == "golden") {
            out.push(path);
        }
    }
}

fn fixture_name(path: &Path) -> String {
    let rel = path.strip_prefix(GOLDEN_DIR).unwrap().to_string_lossy();
    rel.trim_end_matches(".golden").to_string()
}

// ---------------------------------------------------------------------------
// The known-differences list.

/// tests/golden/known-differences: `<scenario> <part>: <description>` lines.
struct KnownDifferences {
    entries: BTreeMap<String, BTreeSet<String>>,
}

impl KnownDifferences {
    fn load() -> KnownDifferences {
        let text =
            std::fs::read_to_string(format!("{GOLDEN_DIR}/known-differences")).unwrap_or_default();
        let mut entries: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let head = line.split(':').next().unwrap_or("");
            let mut words = head.split_whitespace();
            let (Some(name), Some(part)) = (words.next(), words.next()) else {
                panic!("known-differences: bad line: {line}");
            };
            entries
                .entry(name.to_string())
                .or_default()
                .insert(part.to_string());
        }
        KnownDifferences { entries }
    }

    /// Rewrites the file: its comment header, then `lines` sorted.
    fn rewrite(lines: &[String]) {
        let path = format!("{GOLDEN_DIR}/known-differences");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut out: Vec<String> = text
            .lines()
            .take_while(|l| l.starts_with('#') || l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let mut sorted = lines.to_vec();
        sorted.sort();
        out.extend(sorted);
        std::fs::write(&path, out.join("\n") + "\n").expect("rewrite known-differences");
    }

    /// Rewrites the file without the lines of these (scenario, part)s.
    fn prune(fixed: &[(String, String)]) {
        let path = format!("{GOLDEN_DIR}/known-differences");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| {
                let head = line.split(':').next().unwrap_or("");
                let mut words = head.split_whitespace();
                let key = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                line.starts_with('#') || !fixed.iter().any(|(n, p)| (n.as_str(), p.as_str()) == key)
            })
            .collect();
        std::fs::write(&path, kept.join("\n") + "\n").expect("rewrite known-differences");
    }

    fn parts(&self, name: &str) -> BTreeSet<&str> {
        self.entries
            .get(name)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn stale_scenarios(&self, names: &BTreeSet<String>) -> Vec<String> {
        let parts = [
            "start", "exit", "dialog", "stdout", "stderr", "log", "files", "sink",
        ];
        let mut problems = Vec::new();
        for (name, listed) in &self.entries {
            if !names.contains(name) {
                problems.push(format!("known-differences names no scenario: {name}"));
            }
            for part in listed {
                if !parts.contains(&part.as_str()) {
                    problems.push(format!("known-differences: {name}: unknown part {part}"));
                }
            }
        }
        problems
    }
}

// ---------------------------------------------------------------------------
// The fixture format.

#[derive(Default)]
struct Fixture {
    name: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ports: Vec<String>,
    mkdirs: Vec<String>,
    inputs: Vec<(String, u32, Vec<u8>)>,
    /// (name, port name, behaviour, reply for `lines`).
    sinks: Vec<(String, String, String, Vec<u8>)>,
    stdin: Option<Vec<u8>>,
    /// `Some(ports)`: a server to wait for; `None`: run to completion.
    start: Option<Vec<String>>,
    /// For `run`: seconds after which 2.6.1 counted as still running.
    run_limit: u64,
    steps: Vec<Step>,
}

enum Step {
    Exit(String),
    Connect {
        c: String,
        port: String,
        cport: String,
    },
    Send {
        c: String,
        data: Vec<u8>,
    },
    Expect {
        c: String,
        data: Vec<u8>,
    },
    Eof(String),
    Close(String),
    Settle,
    WaitLog(String),
    WaitGone(String),
    WaitExists(String),
    Sleep(u64),
    Signal(String),
    StopPidfile(String),
    Capture(Vec<Captured>),
}

enum Captured {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    File {
        path: String,
        meta: String,
        data: Vec<u8>,
    },
    Dir {
        path: String,
        meta: String,
    },
    Gone(String),
    Sink {
        name: String,
        index: usize,
        data: Vec<u8>,
    },
}

impl Fixture {
    fn parse(name: &str, text: &str) -> Fixture {
        let mut f = Fixture {
            name: name.to_string(),
            ..Fixture::default()
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        // The `| ` lines after a header, as bytes.
        let data = |i: &mut usize| -> Vec<u8> {
            let mut out = Vec::new();
            while *i < lines.len() && lines[*i].starts_with("| ") {
                out.extend(unescape(&lines[*i][2..]));
                *i += 1;
            }
            out
        };
        let mut capture: Option<Vec<Captured>> = None;
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let fields: Vec<&str> = rest.split(' ').collect();
            if let Some(items) = capture.as_mut() {
                let item = match word {
                    "stdout" => Some(Captured::Stdout(data(&mut i))),
                    "stderr" => Some(Captured::Stderr(data(&mut i))),
                    "file" => Some(Captured::File {
                        path: fields[0].to_string(),
                        meta: fields[1..].join(" "),
                        data: data(&mut i),
                    }),
                    "dir" => Some(Captured::Dir {
                        path: fields[0].to_string(),
                        meta: fields[1..].join(" "),
                    }),
                    "gone" => Some(Captured::Gone(rest.to_string())),
                    "sink-data" => Some(Captured::Sink {
                        name: fields[0].to_string(),
                        index: fields[1].parse().unwrap(),
                        data: data(&mut i),
                    }),
                    _ => None,
                };
                if let Some(item) = item {
                    items.push(item);
                    continue;
                }
                f.steps.push(Step::Capture(capture.take().unwrap()));
            }
            match word {
                "scenario" | "note" => {}
                "program" => f.program = rest.to_string(),
                "arg" => f
                    .args
                    .push(String::from_utf8_lossy(&unescape(rest)).into_owned()),
                "env" => {
                    let (k, v) = rest.split_once('=').unwrap();
                    f.env.push((k.to_string(), v.to_string()));
                }
                "port" => f.ports.push(rest.to_string()),
                "mkdir" => f.mkdirs.push(rest.to_string()),
                "input" => {
                    let mode = u32::from_str_radix(fields[1], 8).unwrap();
                    let bytes = data(&mut i);
                    f.inputs.push((fields[0].to_string(), mode, bytes));
                }
                "sink" => f.sinks.push((
                    fields[0].to_string(),
                    fields[1].to_string(),
                    fields[2].to_string(),
                    fields.get(3).map(|r| unescape(r)).unwrap_or_default(),
                )),
                "stdin" => f.stdin = Some(data(&mut i)),
                "start" => f.start = Some(fields.iter().map(|s| s.to_string()).collect()),
                "run" => {
                    f.start = None;
                    f.run_limit = rest.parse().unwrap_or(20);
                }
                "exit" => f.steps.push(Step::Exit(rest.to_string())),
                "connect" => f.steps.push(Step::Connect {
                    c: fields[0].to_string(),
                    port: fields[1].to_string(),
                    cport: fields[2].to_string(),
                }),
                "C" => f.steps.push(Step::Send {
                    c: rest.to_string(),
                    data: data(&mut i),
                }),
                "S" => f.steps.push(Step::Expect {
                    c: rest.to_string(),
                    data: data(&mut i),
                }),
                "eof" => f.steps.push(Step::Eof(rest.to_string())),
                "close" => f.steps.push(Step::Close(rest.to_string())),
                "settle" => f.steps.push(Step::Settle),
                "wait-log" => f.steps.push(Step::WaitLog(
                    String::from_utf8_lossy(&unescape(rest)).into_owned(),
                )),
                "wait-gone" => f.steps.push(Step::WaitGone(rest.to_string())),
                "wait-exists" => f.steps.push(Step::WaitExists(rest.to_string())),
                "sleep" => f.steps.push(Step::Sleep(rest.parse().unwrap())),
                "signal" => f.steps.push(Step::Signal(rest.to_string())),
                "stop-pidfile" => f.steps.push(Step::StopPidfile(rest.to_string())),
                "capture" => capture = Some(Vec::new()),
                other => panic!("{name}: unknown fixture line: {other}"),
            }
        }
        if let Some(items) = capture {
            f.steps.push(Step::Capture(items));
        }
        f
    }
}

/// Undoes the fixture escapes: `\\`, `\r`, `\n`, `\t`, `\xHH`.
pub(crate) fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 >= bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'x' => {
                let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            other => out.push(other),
        }
        i += 2;
    }
    out
}

/// Bytes as the fixture shows them, for messages.
fn show(data: &[u8]) -> String {
    let mut out = String::new();
    for &b in data {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Bytes as the fixture shows them, on one line; long ones shortened in
/// the middle.
fn show_inline(data: &[u8]) -> String {
    let text = show(data).replace('\n', "");
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 90 {
        return text;
    }
    let head: String = chars[..40].iter().collect();
    let tail: String = chars[chars.len() - 40..].iter().collect();
    format!("{head}...{tail}")
}

/// A line diff of two texts (as shown), marking removed `-` (2.6.1 said)
/// and added `+` (ours said) lines.
fn diff(expected: &[u8], got: &[u8]) -> String {
    let (a, b) = (show(expected), show(got));
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    if a.len() * b.len() > 4_000_000 {
        return format!("2.6.1 said {} lines, ours {} lines", a.len(), b.len());
    }
    // Longest common subsequence table, then walk it.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("   {}", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("  +{}", b[j]));
            j += 1;
        } else {
            out.push(format!("  -{}", a[i]));
            i += 1;
        }
    }
    out.join("\n")
}

// ---------------------------------------------------------------------------
// Normalisation: the same rules as scripts/record-golden (README.md).

struct Normaliser {
    dirs: Vec<String>,
    /// Our version number (2.6.1's is replaced by the recorder).
    version: String,
    numbers: BTreeMap<String, String>,
    /// The UTC date (`%d`) and hour (`%h`) when the scenario started.
    started: (String, String),
    hostname: String,
}

impl Normaliser {
    fn normalise(&self, data: &[u8]) -> Vec<u8> {
        let mut data = data.to_vec();
        for dir in &self.dirs {
            data = replace(&data, dir.as_bytes(), b"{DIR}");
        }
        data = replace_version_strings(&data);
        data = replace_version(&data, self.version.as_bytes());
        data = replace_spool_ids(&data);
        data = replace_angle_ids(&data);
        data = replace_log_times(&data);
        data = replace_dates(&data);
        data = replace_challenges(&data);
        self.replace_numbers(&data)
    }

    /// A file's path: as `normalise`; a maildir file name's time and
    /// hostname; and in a component starting with "log" (a --log-file
    /// name), the `%d` date and `%h` hour (UTC, as the programs run with
    /// TZ=UTC) at the start or end of the scenario.
    fn normalise_path(&self, rel: &str) -> String {
        let text = String::from_utf8_lossy(&self.normalise(rel.as_bytes())).into_owned();
        let now = date_and_hour();
        let dates = [&self.started.0, &now.0];
        let hours = [&self.started.1, &now.1];
        let component = |c: &str| -> String {
            if let Some(name) = maildir_name(c, &self.hostname) {
                return name;
            }
            if !c.starts_with("log") {
                return c.to_string();
            }
            let (mut out, mut run) = (String::new(), String::new());
            for ch in c.chars().chain(std::iter::once('/')) {
                if ch.is_ascii_digit() {
                    run.push(ch);
                    continue;
                }
                if dates.contains(&&run) {
                    out.push_str("{YYYYMMDD}");
                } else if hours.contains(&&run) {
                    out.push_str("{HH}");
                } else {
                    out.push_str(&run);
                }
                run.clear();
                if ch != '/' {
                    out.push(ch);
                }
            }
            out
        };
        text.split('/').map(component).collect::<Vec<_>>().join("/")
    }

    fn replace_numbers(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            if !data[i].is_ascii_digit() {
                out.push(data[i]);
                i += 1;
                continue;
            }
            let end = i + data[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let run = std::str::from_utf8(&data[i..end]).unwrap();
            match self.numbers.get(run) {
                Some(name) => out.extend(name.as_bytes()),
                None => out.extend(run.as_bytes()),
            }
            i = end;
        }
        out
    }
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// `E-MailRelay V2.6.1` or `E-MailRelay-rs V0.1.0` -> `{VERSION-STRING}`.
fn replace_version_strings(data: &[u8]) -> Vec<u8> {
    let shape = |d: &[u8]| -> Option<usize> {
        let mut j = b"E-MailRelay".len();
        if !d.starts_with(b"E-MailRelay") {
            return None;
        }
        if d[j..].starts_with(b"-rs") {
            j += 3;
        }
        if !d[j..].starts_with(b" V") {
            return None;
        }
        j += 2;
        let first = digits(&d[j..]);
        if first == 0 {
            return None;
        }
        j += first;
        let mut parts = 0;
        while d.get(j) == Some(&b'.') && digits(&d[j + 1..]) > 0 {
            j += 1 + digits(&d[j + 1..]);
            parts += 1;
        }
        (parts > 0).then_some(j)
    };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if let Some(len) = shape(&data[i..]) {
            out.extend(b"{VERSION-STRING}");
            i += len;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// The version number as a token: not inside a longer dotted number.
fn replace_version(data: &[u8], version: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let before_ok = i == 0 || !(data[i - 1].is_ascii_digit() || data[i - 1] == b'.');
        let end = i + version.len();
        let after_ok = end >= data.len()
            || !(data[end].is_ascii_digit()
                || (data[end] == b'.' && data.get(end + 1).is_some_and(u8::is_ascii_digit)));
        if before_ok && data[i..].starts_with(version) && after_ok {
            out.extend(b"{VERSION}");
            i = end;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Length of the run of ASCII digits at the start of `data`.
fn digits(data: &[u8]) -> usize {
    data.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `emailrelay.<pid>.<seconds>.<n>` -> `emailrelay.{PID}.{SECS}.<n>`.
fn replace_spool_ids(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"emailrelay.") {
            let mut j = i + 11;
            let a = digits(&data[j..]);
            if a > 0 && data.get(j + a) == Some(&b'.') {
                j += a + 1;
                let b = digits(&data[j..]);
                if b > 0 && data.get(j + b) == Some(&b'.') && digits(&data[j + b + 1..]) > 0 {
                    out.extend(b"emailrelay.{PID}.{SECS}.");
                    i = j + b + 1;
                    continue;
                }
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// Message-IDs and APOP challenges `<digits.digits[.digits]@` -> `<{ID}@`.
fn replace_angle_ids(data: &[u8]) -> Vec<u8> {
    let shape = |d: &[u8]| -> Option<usize> {
        if d.first() != Some(&b'<') {
            return None;
        }
        let mut j = 1;
        let mut groups = 0;
        loop {
            let n = digits(&d[j..]);
            if n == 0 {
                return None;
            }
            j += n;
            groups += 1;
            match d.get(j) {
                Some(b'.') => j += 1,
                Some(b'@') if groups >= 2 => return Some(j + 1),
                _ => return None,
            }
        }
    };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if let Some(len) = shape(&data[i..]) {
            out.extend(b"<{ID}@");
            i += len;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Log timestamps `YYYYMMDD.HHMMSS.mmm` -> `{LOGTIME}`.
fn replace_log_times(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let fresh = i == 0 || !data[i - 1].is_ascii_digit();
        let shape = |d: &[u8]| {
            d.len() >= 19
                && digits(d) == 8
                && d[8] == b'.'
                && digits(&d[9..]) == 6
                && d[15] == b'.'
                && digits(&d[16..]) == 3
        };
        if fresh && shape(&data[i..]) {
            out.extend(b"{LOGTIME}");
            i += 19;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// RFC 5322 dates `Tue, 24 Nov 2026 14:31:28 +0000` (the weekday
/// optional) -> `{DATE}`.
fn replace_dates(data: &[u8]) -> Vec<u8> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Length of `D Mon YYYY HH:MM:SS +ZZZZ` at the start of d.
    let date_len = |d: &[u8]| -> Option<usize> {
        let mut j = 0;
        let day = digits(d);
        if !(1..=2).contains(&day) || d.get(j + day) != Some(&b' ') {
            return None;
        }
        j += day + 1;
        if d.len() < j + 4 || !MONTHS.iter().any(|m| d[j..].starts_with(m)) || d[j + 3] != b' ' {
            return None;
        }
        j += 4;
        if digits(&d[j..]) != 4 || d.get(j + 4) != Some(&b' ') {
            return None;
        }
        j += 5;
        let time = d.get(j..j + 8)?;
        let time_ok = time.iter().enumerate().all(|(k, c)| {
            if k == 2 || k == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        });
        if !time_ok || d.get(j + 8) != Some(&b' ') {
            return None;
        }
        j += 9;
        let zone = d.get(j..j + 5)?;
        if !(zone[0] == b'+' || zone[0] == b'-') || digits(&zone[1..]) != 4 {
            return None;
        }
        Some(j + 5)
    };
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let rest = &data[i..];
        let weekday =
            rest.len() > 5 && DAYS.iter().any(|w| rest.starts_with(w)) && &rest[3..5] == b", ";
        let found = if weekday {
            date_len(&rest[5..]).map(|n| n + 5)
        } else if i == 0 || !data[i - 1].is_ascii_digit() {
            date_len(rest)
        } else {
            None
        };
        if let Some(len) = found {
            out.extend(b"{DATE}");
            i += len;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// `334 ` and a base64 run of 20 or more characters (a CRAM-MD5
/// challenge; LOGIN's prompts are shorter) -> `334 {CHALLENGE}`.
fn replace_challenges(data: &[u8]) -> Vec<u8> {
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"334 ") {
            let run = data[i + 4..].iter().take_while(|&&b| b64(b)).count();
            let pad = data[i + 4 + run..]
                .iter()
                .take_while(|&&b| b == b'=')
                .count();
            let next = data.get(i + 4 + run + pad).copied();
            if run >= 20 && !next.is_some_and(|b| b64(b) || b == b'=') {
                out.extend(b"334 {CHALLENGE}");
                i += 4 + run + pad;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// A maildir file name `<secs>.<usecs>.<pid>.<hostname>.<n>` ->
/// `{SECS}.{USECS}.<pid>.{HOSTNAME}.<n>`.
fn maildir_name(c: &str, hostname: &str) -> Option<String> {
    let is_num = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let (secs, rest) = c.split_once('.')?;
    let (usecs, rest) = rest.split_once('.')?;
    let (middle, n) = rest.rsplit_once('.')?;
    let pid = middle.strip_suffix(hostname)?.strip_suffix('.')?;
    let ok = is_num(secs) && is_num(usecs) && is_num(n) && !pid.is_empty() && !pid.contains('.');
    ok.then(|| format!("{{SECS}}.{{USECS}}.{pid}.{{HOSTNAME}}.{n}"))
}

/// The UTC date as `YYYYMMDD` and hour as `HH`.
fn date_and_hour() -> (String, String) {
    let now = chrono::Utc::now();
    (
        now.format("%Y%m%d").to_string(),
        now.format("%H").to_string(),
    )
}

// ---------------------------------------------------------------------------
// The scripted SMTP sink (the same behaviours as the recorder's).

/// Per connection to a sink: the peer's port and the bytes it sent.
type SinkConns = Vec<(u16, Vec<u8>)>;

struct SinkServer {
    conns: Arc<Mutex<SinkConns>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SinkServer {
    fn start(port: u16, behaviour: &str, reply: &[u8]) -> SinkServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("sink port");
        listener.set_nonblocking(true).unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s, behaviour, reply) = (
            conns.clone(),
            stop.clone(),
            behaviour.to_string(),
            reply.to_vec(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let index = {
                            let mut list = c.lock().unwrap();
                            list.push((peer.port(), Vec::new()));
                            list.len() - 1
                        };
                        let _ = stream.set_nonblocking(false);
                        let (c, reply, behaviour) = (c.clone(), reply.clone(), behaviour.clone());
                        std::thread::spawn(move || {
                            if behaviour == "lines" {
                                line_session(stream, &reply, &c, index)
                            } else {
                                sink_session(stream, &behaviour, &c, index)
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SinkServer {
            conns,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SinkServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A net: filter or verifier: `reply` after each line received.
fn line_session(mut stream: TcpStream, reply: &[u8], conns: &Mutex<SinkConns>, index: usize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut chunk = [0u8; 65536];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        conns.lock().unwrap()[index].1.extend(&chunk[..n]);
        for _ in chunk[..n].iter().filter(|&&b| b == b'\n') {
            if stream.write_all(reply).is_err() {
                return;
            }
        }
    }
}

fn sink_session(mut stream: TcpStream, behaviour: &str, conns: &Mutex<SinkConns>, index: usize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let greeting: &[u8] = match behaviour {
        "greet-421" => {
            let _ = stream.write_all(b"421 sink.example busy\r\n");
            return;
        }
        "silent" => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
            b""
        }
        _ => b"220 sink.example ESMTP\r\n",
    };
    if stream.write_all(greeting).is_err() {
        return;
    }
    let (mut buf, mut state) = (Vec::new(), SinkState::default());
    let mut chunk = [0u8; 65536];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        conns.lock().unwrap()[index].1.extend(&chunk[..n]);
        if behaviour == "silent" {
            continue;
        }
        buf.extend(&chunk[..n]);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let reply = sink_reply(behaviour, &mut state, &line[..line.len() - 1]);
            if stream.write_all(reply).is_err() || state.quit {
                return;
            }
        }
    }
}

#[derive(Default)]
struct SinkState {
    data: bool,
    /// Waiting for a SASL response: "plain", "login-user" or "login-pass".
    auth: Option<&'static str>,
    quit: bool,
}

/// The scripted SMTP server's answer to one line (without its LF): the
/// same function as `sink_reply` in scripts/record-golden.
fn sink_reply(behaviour: &str, state: &mut SinkState, line: &[u8]) -> &'static [u8] {
    if state.data {
        if line == b".\r" || line == b"." {
            state.data = false;
            if behaviour == "silent-after-data" {
                return b"";
            }
            return b"250 sink.example queued\r\n";
        }
        return b"";
    }
    if let Some(step) = state.auth.take() {
        if step == "login-user" {
            state.auth = Some("login-pass");
            return b"334 UGFzc3dvcmQ6\r\n";
        }
        return b"235 authenticated\r\n";
    }
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.trim().split(' ').collect();
    let verb = words[0]
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" if behaviour == "auth" => {
            b"250-sink.example\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        }
        "EHLO" => b"250-sink.example\r\n250 8BITMIME\r\n",
        "HELO" => b"250 sink.example\r\n",
        "AUTH" if behaviour == "auth" => {
            let mech = words
                .get(1)
                .map(|m| m.to_ascii_uppercase())
                .unwrap_or_default();
            match (mech.as_str(), words.len() > 2) {
                ("PLAIN", true) => b"235 authenticated\r\n",
                ("PLAIN", false) => {
                    state.auth = Some("plain");
                    b"334 \r\n"
                }
                ("LOGIN", true) => {
                    state.auth = Some("login-pass");
                    b"334 UGFzc3dvcmQ6\r\n"
                }
                ("LOGIN", false) => {
                    state.auth = Some("login-user");
                    b"334 VXNlcm5hbWU6\r\n"
                }
                _ => b"504 unsupported\r\n",
            }
        }
        "RCPT" if behaviour == "reject-rcpt" && text.to_ascii_lowercase().contains("bob") => {
            b"550 no such user\r\n"
        }
        "DATA" => {
            state.data = true;
            b"354 go ahead\r\n"
        }
        "QUIT" => {
            state.quit = true;
            b"221 sink.example bye\r\n"
        }
        "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
        _ => b"500 unknown\r\n",
    }
}

// ---------------------------------------------------------------------------
// Replaying one fixture against our binaries.

const PARTS_OF_FILES: &str = "log";

struct Replay<'a> {
    fixture: &'a Fixture,
    dir: tempfile::TempDir,
    capdir: tempfile::TempDir,
    values: BTreeMap<String, String>,
    norm: Normaliser,
    child: Option<Child>,
    daemon_pid: Option<i32>,
    conns: BTreeMap<String, Option<TcpStream>>,
    last_sent: BTreeMap<String, String>,
    sinks: BTreeMap<String, SinkServer>,
    _busy: Option<TcpListener>,
    /// part -> (one-line summary, full detail).
    diffs: BTreeMap<String, (String, String)>,
    /// part -> how many differences it has.
    counts: BTreeMap<String, usize>,
}

impl<'a> Replay<'a> {
    /// Runs the fixture; returns the parts that differ, with their diffs.
    fn run(fixture: &'a Fixture) -> BTreeMap<String, (String, String)> {
        let dir = tempfile::Builder::new()
            .prefix("golden-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let capdir = tempfile::Builder::new()
            .prefix("golden-cap-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_string_lossy().into_owned();
        let real = std::fs::canonicalize(dir.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| path.clone());
        let mut replay = Replay {
            fixture,
            capdir,
            values: BTreeMap::from([("DIR".to_string(), path.clone())]),
            norm: Normaliser {
                dirs: vec![real, path],
                version: std::env::var("GOLDEN_VERSION")
                    .unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_string()),
                numbers: BTreeMap::new(),
                started: date_and_hour(),
                hostname: nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
            dir,
            child: None,
            daemon_pid: None,
            conns: BTreeMap::new(),
            last_sent: BTreeMap::new(),
            sinks: BTreeMap::new(),
            _busy: None,
            diffs: BTreeMap::new(),
            counts: BTreeMap::new(),
        };
        replay.play();
        replay.stop();
        let mut diffs = std::mem::take(&mut replay.diffs);
        for (part, (summary, _)) in diffs.iter_mut() {
            let more = replay
                .counts
                .get(part)
                .copied()
                .unwrap_or(1)
                .saturating_sub(1);
            if more > 0 {
                summary.push_str(&format!(" (and {more} more)"));
            }
        }
        diffs
    }

    /// Records a difference in `part`; the first one's summary (by
    /// default the detail's first line) describes the part.
    fn differ(&mut self, part: &str, detail: String) {
        let summary = detail.lines().next().unwrap_or("").to_string();
        self.differ_with(part, summary, detail);
    }

    fn differ_with(&mut self, part: &str, summary: String, detail: String) {
        *self.counts.entry(part.to_string()).or_default() += 1;
        let entry = self.diffs.entry(part.to_string()).or_default();
        if entry.0.is_empty() {
            entry.0 = summary;
        }
        if entry.1.len() < 20_000 {
            if !entry.1.is_empty() {
                entry.1.push('\n');
            }
            entry.1.push_str(&detail);
        }
    }

    /// A difference between what 2.6.1 said and what ours said.
    fn differ_text(&mut self, part: &str, context: &str, want: &[u8], got: &[u8]) {
        let summary = format!("{context}{}", first_difference(want, got));
        let detail = format!("{context}\n{}", diff(want, got));
        self.differ_with(part, summary, detail.trim_start_matches('\n').to_string());
    }

    fn subst(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.values {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    fn subst_bytes(&self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        for (name, value) in &self.values {
            out = replace(&out, format!("{{{name}}}").as_bytes(), value.as_bytes());
        }
        out
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn play(&mut self) {
        let f = self.fixture;
        for name in &f.ports {
            let port = free_port();
            self.values.insert(name.clone(), port.to_string());
            self.norm
                .numbers
                .insert(port.to_string(), format!("{{{name}}}"));
        }
        for d in &f.mkdirs {
            std::fs::create_dir_all(self.path(d)).unwrap();
        }
        for (rel, mode, data) in &f.inputs {
            let full = self.path(rel);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, self.subst_bytes(data)).unwrap();
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        if let Some(port) = self.values.get("BUSY") {
            self._busy =
                Some(TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap());
        }
        for (name, port, behaviour, reply) in &f.sinks {
            let port: u16 = self.values[port].parse().unwrap();
            self.sinks
                .insert(name.clone(), SinkServer::start(port, behaviour, reply));
        }
        if !self.spawn() {
            return;
        }
        match &f.start {
            None => {
                self.feed_stdin();
                let expected = match f.steps.first() {
                    Some(Step::Exit(expected)) => expected.as_str(),
                    _ => "",
                };
                // 2.6.1 still ran after run_limit seconds, or exited before.
                let limit = match expected {
                    "timeout" => f.run_limit,
                    _ => f.run_limit.min(8),
                };
                let code = self.wait_exit(Duration::from_secs(limit));
                self.check_exit(expected, &code);
            }
            Some(ports) => {
                if let Some(mut stdin) = self.child.as_mut().and_then(|c| c.stdin.take()) {
                    let _ = stdin.flush();
                }
                let ports: Vec<u16> = ports
                    .iter()
                    .map(|p| self.values[p].parse().unwrap())
                    .collect();
                let limit = Instant::now() + Duration::from_secs(10);
                let mut seen_listening = None;
                loop {
                    // Listening counts once it lasts: a relay that binds
                    // its ports and then gives up on a later check (the
                    // spool's permissions, say) has not started.
                    if ports.iter().all(|&p| listening(p)) {
                        let since = *seen_listening.get_or_insert_with(Instant::now);
                        if since.elapsed() >= Duration::from_millis(100) {
                            break;
                        }
                    }
                    let exited = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    if exited.is_some() || Instant::now() > limit {
                        let err =
                            std::fs::read(self.capdir.path().join("stderr")).unwrap_or_default();
                        let log = std::fs::read(self.path("log")).unwrap_or_default();
                        let what = match exited {
                            Some(status) => {
                                format!("2.6.1 starts and listens, ours exits ({status}) with")
                            }
                            None => {
                                "2.6.1 listens, ours does not within 10 s; ours says".to_string()
                            }
                        };
                        let said = show(&self.norm.normalise(&[err, log].concat()));
                        self.differ(
                            "start",
                            format!("{what} `{}`", said.trim_end().replace("\\n\n", " / ")),
                        );
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let skip_first_exit = f.start.is_none();
        for (n, step) in f.steps.iter().enumerate() {
            if n == 0 && skip_first_exit && matches!(step, Step::Exit(_)) {
                continue;
            }
            if let Step::Settle = step {
                // What the next capture expects tells when the logs are complete.
                let next = f.steps[n..].iter().find_map(|s| match s {
                    Step::Capture(items) => Some(items.as_slice()),
                    _ => None,
                });
                self.settle(next.unwrap_or(&[]));
                continue;
            }
            // 2.6.1 has one event loop and acts on what one connection sent
            // before it accepts the next; ours serves connections in
            // parallel. A moment's pause lets a command sent just before a
            // new connection (an admin `notify`, say) take effect first, as
            // any client that waits for it would see.
            if n > 0 && matches!(step, Step::Connect { .. }) {
                if let Some(Step::Send { .. }) = f.steps.get(n - 1) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            self.step(step);
        }
    }

    fn spawn(&mut self) -> bool {
        let f = self.fixture;
        let program = match (std::env::var("GOLDEN_BIN_DIR"), f.program.as_str()) {
            (Ok(dir), name) if !dir.is_empty() => format!("{dir}/{name}"),
            (_, "emailrelay") => env!("CARGO_BIN_EXE_emailrelay").to_string(),
            (_, "emailrelay-submit") => env!("CARGO_BIN_EXE_emailrelay-submit").to_string(),
            (_, "emailrelay-passwd") => env!("CARGO_BIN_EXE_emailrelay-passwd").to_string(),
            (_, other) => panic!("{}: unknown program {other}", f.name),
        };
        let stdout = std::fs::File::create(self.capdir.path().join("stdout")).unwrap();
        let stderr = std::fs::File::create(self.capdir.path().join("stderr")).unwrap();
        let mut cmd = Command::new(&program);
        cmd.args(f.args.iter().map(|a| self.subst(a)))
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("TZ", "UTC")
            .env("LANG", "C")
            .envs(f.env.iter().map(|(k, v)| (k.clone(), v.clone())))
            .stdin(if f.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(stdout)
            .stderr(stderr);
        // SIGINT and SIGQUIT as a terminal leaves them: a background job of
        // a non-interactive shell (a CI step) inherits them ignored.
        // SAFETY: the closure only calls signal(2), which is
        // async-signal-safe, between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                use nix::sys::signal::{signal, SigHandler, Signal};
                let _ = signal(Signal::SIGINT, SigHandler::SigDfl);
                let _ = signal(Signal::SIGQUIT, SigHandler::SigDfl);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                self.norm
                    .numbers
                    .insert(child.id().to_string(), "{PID}".to_string());
                self.child = Some(child);
                true
            }
            Err(e) => {
                self.differ("start", format!("cannot start {program}: {e}"));
                false
            }
        }
    }

    fn feed_stdin(&mut self) {
        let input = self.fixture.stdin.clone();
        if let (Some(input), Some(mut stdin)) =
            (input, self.child.as_mut().and_then(|c| c.stdin.take()))
        {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
    }

    /// Waits for our process to exit: "0", "signal 15" or "timeout".
    fn wait_exit(&mut self, limit: Duration) -> String {
        let Some(child) = self.child.as_mut() else {
            return "timeout".to_string();
        };
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                return match (status.code(), status.signal()) {
                    (Some(code), _) => code.to_string(),
                    (None, Some(sig)) => format!("signal {sig}"),
                    _ => "unknown".to_string(),
                };
            }
            if Instant::now() > end {
                return "timeout".to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_exit(&mut self, expected: &str, got: &str) {
        if expected != got {
            let stderr = std::fs::read(self.capdir.path().join("stderr")).unwrap_or_default();
            let said = show(&self.norm.normalise(&stderr));
            let first = said
                .lines()
                .next()
                .unwrap_or("")
                .trim_end_matches("\\n")
                .to_string();
            self.differ(
                "exit",
                format!("2.6.1 exit {expected}, ours exit {got} (ours said `{first}`)"),
            );
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Exit(expected) => {
                let got = self.wait_exit(Duration::from_secs(10));
                self.check_exit(expected, &got);
            }
            Step::Connect { c, port, cport } => {
                let port: u16 = self.values[port].parse().unwrap();
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(stream) => {
                        let local = stream.local_addr().unwrap().port();
                        self.norm
                            .numbers
                            .insert(local.to_string(), format!("{{{cport}}}"));
                        self.conns.insert(c.clone(), Some(stream));
                    }
                    Err(e) => {
                        self.differ("dialog", format!("{c}: cannot connect to port {port}: {e}"));
                        self.conns.insert(c.clone(), None);
                    }
                }
                self.last_sent.insert(c.clone(), "(connect)".to_string());
            }
            Step::Send { c, data } => {
                let data = self.subst_bytes(data);
                if let Some(Some(stream)) = self.conns.get_mut(c) {
                    let _ = stream.write_all(&data);
                }
                self.last_sent.insert(c.clone(), show_inline(&data));
            }
            Step::Expect { c, data } => self.expect(c, data),
            Step::Eof(c) => self.expect_eof(c),
            Step::Close(c) => {
                if let Some(Some(mut stream)) = self.conns.insert(c.clone(), None) {
                    let (extra, _) = read_for(&mut stream, Duration::from_millis(300));
                    if !extra.is_empty() {
                        let got = self.norm.normalise(&extra);
                        self.differ(
                            "dialog",
                            format!(
                                "{c}: before the client closed, ours also said `{}`",
                                show_inline(&got)
                            ),
                        );
                    }
                }
            }
            Step::Settle => self.settle(&[]),
            Step::WaitLog(text) => {
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end && !self.watched_text().contains(text.as_str()) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::WaitGone(pattern) => {
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end && !self.glob(pattern).is_empty() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::WaitExists(pattern) => {
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end && self.glob(pattern).is_empty() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Step::Signal(name) => {
                use nix::sys::signal::Signal;
                let sig = match name.as_str() {
                    "TERM" => Signal::SIGTERM,
                    "INT" => Signal::SIGINT,
                    "HUP" => Signal::SIGHUP,
                    "USR1" => Signal::SIGUSR1,
                    other => panic!("unknown signal {other}"),
                };
                if let Some(child) = &self.child {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
                }
            }
            Step::StopPidfile(rel) => self.stop_pidfile(rel),
            Step::Capture(items) => self.compare_capture(items),
        }
    }

    fn expect(&mut self, c: &str, expected: &[u8]) {
        let Some(Some(stream)) = self.conns.get_mut(c) else {
            return;
        };
        let norm = &self.norm;
        let normalise = |buf: &[u8]| norm.normalise(buf);
        let mut buf = Vec::new();
        let start = Instant::now();
        let mut eof = false;
        loop {
            let got = normalise(&buf);
            if got == expected {
                break;
            }
            let wait = if !expected.starts_with(&got) {
                Duration::from_millis(150)
            } else if buf.is_empty() {
                Duration::from_secs(5)
            } else {
                Duration::from_millis(1500)
            };
            if start.elapsed() > Duration::from_secs(10) {
                break;
            }
            let (more, closed) = read_some(stream, wait);
            if more.is_empty() {
                eof = closed;
                break;
            }
            buf.extend(more);
        }
        let got = normalise(&buf);
        if got != expected {
            let after = self.last_sent.get(c).cloned().unwrap_or_default();
            let context = format!("{c} after `{after}`: ");
            self.differ_text("dialog", &context, expected, &got);
            if eof {
                if let Some(entry) = self.diffs.get_mut("dialog") {
                    entry.1.push_str("\n  (ours closed the connection)");
                }
            }
        }
        if eof {
            self.conns.insert(c.to_string(), None);
        }
    }

    fn expect_eof(&mut self, c: &str) {
        let Some(Some(mut stream)) = self.conns.insert(c.to_string(), None) else {
            return;
        };
        let (extra, closed) = read_for(&mut stream, Duration::from_secs(5));
        if !extra.is_empty() {
            let got = self.norm.normalise(&extra);
            let after = self.last_sent.get(c).cloned().unwrap_or_default();
            self.differ(
                "dialog",
                format!(
                    "{c} after `{after}`: 2.6.1 closed the connection, ours said `{}`",
                    show_inline(&got)
                ),
            );
        }
        if !closed {
            let after = self.last_sent.get(c).cloned().unwrap_or_default();
            self.differ(
                "dialog",
                format!("{c} after `{after}`: 2.6.1 closed the connection, ours kept it open"),
            );
        }
    }

    fn watched(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.capdir.path().join("stderr")];
        walk(self.dir.path(), &mut |p, is_dir| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !is_dir && name.starts_with(PARTS_OF_FILES) {
                paths.push(p.to_path_buf());
            }
        });
        paths
    }

    fn watched_text(&self) -> String {
        self.watched()
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned())
            .collect()
    }

    /// Waits until stderr and the log files stay unchanged: for 0.1 s once
    /// they hold what `expected` (the next capture) says, else for 1 s; at
    /// most 8 s. (2.6.1's were recorded after 0.5 s of quiet.)
    fn settle(&self, expected: &[Captured]) {
        let state = || -> Vec<(PathBuf, u64)> {
            self.watched()
                .into_iter()
                .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
                .collect()
        };
        let complete = || {
            let root = self.dir.path();
            expected.iter().all(|item| match item {
                Captured::Stderr(want) => {
                    let got = std::fs::read(self.capdir.path().join("stderr")).unwrap_or_default();
                    self.norm.normalise(&got) == *want
                }
                Captured::File { path, data, .. } if file_part(path) == "log" => {
                    self.watched().iter().any(|p| {
                        let rel = p
                            .strip_prefix(root)
                            .unwrap_or(p)
                            .to_string_lossy()
                            .into_owned();
                        self.norm.normalise_path(&rel) == *path
                            && self.norm.normalise(&std::fs::read(p).unwrap_or_default()) == *data
                    })
                }
                _ => true,
            })
        };
        let end = Instant::now() + Duration::from_secs(8);
        let (mut last, mut since) = (state(), Instant::now());
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            let now = state();
            if now != last {
                (last, since) = (now, Instant::now());
                continue;
            }
            let quiet = since.elapsed();
            if quiet >= Duration::from_millis(1000)
                || (quiet >= Duration::from_millis(100) && complete())
            {
                break;
            }
        }
    }

    /// Files matching a simple pattern: `dir/*suffix*` style, one `*` run per part.
    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let (dir, name) = pattern.rsplit_once('/').unwrap_or((".", pattern));
        let parts: Vec<&str> = name.split('*').collect();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.path(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = entry.file_name().to_string_lossy().into_owned();
            if wildcard(&parts, &n) {
                out.push(entry.path());
            }
        }
        out
    }

    fn stop_pidfile(&mut self, rel: &str) {
        let full = self.path(rel);
        let end = Instant::now() + Duration::from_secs(10);
        let mut pid = None;
        while Instant::now() < end {
            pid = std::fs::read_to_string(&full)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            if pid.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let Some(pid) = pid else {
            self.differ("files", format!("no pid in {rel} within 10 s"));
            return;
        };
        self.daemon_pid = Some(pid);
        self.norm
            .numbers
            .insert(pid.to_string(), "{DAEMONPID}".to_string());
        let target = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn compare_capture(&mut self, items: &[Captured]) {
        // A daemon's pid, from its pid file, is {DAEMONPID}.
        for step in &self.fixture.steps {
            if let Step::StopPidfile(rel) = step {
                if let Some(pid) = std::fs::read_to_string(self.path(rel))
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                {
                    self.norm
                        .numbers
                        .insert(pid.to_string(), "{DAEMONPID}".to_string());
                }
            }
        }
        let stdout = std::fs::read(self.capdir.path().join("stdout")).unwrap_or_default();
        let stderr = std::fs::read(self.capdir.path().join("stderr")).unwrap_or_default();
        let ours_files = self.our_files();
        let mut expected_paths = BTreeSet::new();
        let sink_conns: Vec<(String, SinkConns)> = self
            .sinks
            .iter()
            .map(|(n, s)| (n.clone(), s.conns.lock().unwrap().clone()))
            .collect();
        for (_, conns) in &sink_conns {
            for (i, (port, _)) in conns.iter().enumerate() {
                self.norm
                    .numbers
                    .insert(port.to_string(), format!("{{OPORT{}}}", i + 1));
            }
        }
        for item in items {
            match item {
                Captured::Stdout(want) => {
                    let got = self.norm.normalise(&stdout);
                    if &got != want {
                        self.differ_text("stdout", "", want, &got);
                    }
                }
                Captured::Stderr(want) => {
                    let got = self.norm.normalise(&stderr);
                    if &got != want {
                        self.differ_text("stderr", "", want, &got);
                    }
                }
                Captured::File { path, meta, data } => {
                    expected_paths.insert(path.clone());
                    let part = file_part(path);
                    match ours_files.get(path) {
                        Some(Entry::File { meta: m, full }) => {
                            if m != meta {
                                self.differ(
                                    part,
                                    format!("{path}: 2.6.1 made it {meta}, ours {m}"),
                                );
                            }
                            let got = self
                                .norm
                                .normalise(&std::fs::read(full).unwrap_or_default());
                            if &got != data {
                                self.differ_text(part, &format!("{path}: "), data, &got);
                            }
                        }
                        Some(Entry::Dir { .. }) => {
                            self.differ(part, format!("{path}: ours is a directory"))
                        }
                        None => self.differ(
                            part,
                            format!(
                                "{path}: 2.6.1 wrote it ({meta}), ours did not (ours wrote {})",
                                ours_files.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ),
                    }
                }
                Captured::Dir { path, meta } => {
                    expected_paths.insert(path.clone());
                    let part = file_part(path);
                    match ours_files.get(path) {
                        Some(Entry::Dir { meta: m }) if m == meta => {}
                        Some(Entry::Dir { meta: m }) => {
                            self.differ(part, format!("{path}/: 2.6.1 made it {meta}, ours {m}"))
                        }
                        _ => self.differ(
                            part,
                            format!("{path}/: 2.6.1 made this directory, ours did not"),
                        ),
                    }
                }
                Captured::Gone(path) => {
                    expected_paths.insert(path.clone());
                    if self.path(path).exists() {
                        self.differ(
                            "files",
                            format!("{path}: 2.6.1 removed this input, ours kept it"),
                        );
                    }
                }
                Captured::Sink { name, index, data } => {
                    let conns = sink_conns
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, c)| c.clone());
                    let got = conns
                        .as_ref()
                        .and_then(|c| c.get(index - 1))
                        .map(|(_, d)| self.norm.normalise(d));
                    match got {
                        Some(got) if &got == data => {}
                        Some(got) => {
                            self.differ_text("sink", &format!("connection {index}: "), data, &got)
                        }
                        None => self.differ(
                            "sink",
                            format!("2.6.1 made connection {index} to the sink, ours did not"),
                        ),
                    }
                }
            }
        }
        for (name, conns) in &sink_conns {
            let recorded = items
                .iter()
                .filter(|i| matches!(i, Captured::Sink { name: n, .. } if n == name))
                .count();
            if conns.len() > recorded {
                self.differ(
                    "sink",
                    format!(
                        "ours made {} connections to the sink, 2.6.1 {recorded}",
                        conns.len()
                    ),
                );
            }
        }
        for (path, _) in ours_files
            .iter()
            .filter(|(p, _)| !expected_paths.contains(*p))
        {
            self.differ(
                file_part(path),
                format!("{path}: ours wrote it, 2.6.1 did not"),
            );
        }
    }

    /// Everything in the scenario directory that is not an unchanged input
    /// or a directory the fixture made, by normalised path.
    fn our_files(&self) -> BTreeMap<String, Entry> {
        let mut out = BTreeMap::new();
        let root = self.dir.path().to_path_buf();
        walk(&root, &mut |p, is_dir| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let Ok(meta) = std::fs::symlink_metadata(p) else {
                return;
            };
            let shape = format!(
                "{:04o} {}:{}",
                meta.mode() & 0o7777,
                user_name(meta.uid()),
                group_name(meta.gid())
            );
            let key = self.norm.normalise_path(&rel);
            if is_dir {
                if !self.fixture.mkdirs.contains(&rel) {
                    out.insert(key, Entry::Dir { meta: shape });
                }
                return;
            }
            let input = self.fixture.inputs.iter().find(|(r, _, _)| *r == rel);
            if let Some((_, _, data)) = input {
                if std::fs::read(p).ok() == Some(self.subst_bytes(data)) {
                    return;
                }
            }
            out.insert(
                key,
                Entry::File {
                    meta: shape,
                    full: p.to_path_buf(),
                },
            );
        });
        out
    }

    fn stop(&mut self) {
        for (_, conn) in std::mem::take(&mut self.conns) {
            drop(conn);
        }
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let end = Instant::now() + Duration::from_secs(5);
                while Instant::now() < end && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        if let Some(pid) = self.daemon_pid.take() {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.sinks.clear();
    }
}

enum Entry {
    File { meta: String, full: PathBuf },
    Dir { meta: String },
}

/// Files whose path has a component starting with `log` are the `log` part.
fn file_part(path: &str) -> &'static str {
    if path.split('/').any(|c| c.starts_with(PARTS_OF_FILES)) {
        "log"
    } else {
        "files"
    }
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, bool)) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        visit(&path, is_dir);
        if is_dir {
            walk(&path, visit);
        }
    }
}

fn wildcard(parts: &[&str], name: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return name.is_empty();
    };
    if !name.starts_with(first) {
        return false;
    }
    let mut pos = first.len();
    for (k, part) in rest.iter().enumerate() {
        if k == rest.len() - 1 {
            return name.len() >= pos + part.len() && name.ends_with(part);
        }
        match name[pos..].find(part) {
            Some(at) => pos += at + part.len(),
            None => return false,
        }
    }
    pos == name.len()
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or(uid.to_string(), |u| u.name)
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or(gid.to_string(), |g| g.name)
}

/// True if something listens on `port` (from /proc: no connection is made,
/// so the relay logs nothing).
fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|name| {
        std::fs::read_to_string(name)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3
                    && fields[3] == "0A"
                    && fields[1]
                        .rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                        == Some(port)
            })
    })
}

/// One read with a timeout: (bytes, closed).
fn read_some(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let _ = stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
    let mut chunk = [0u8; 65536];
    match stream.read(&mut chunk) {
        Ok(0) => (Vec::new(), true),
        Ok(n) => (chunk[..n].to_vec(), false),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            (Vec::new(), false)
        }
        Err(_) => (Vec::new(), true),
    }
}

/// Reads until the peer closes or nothing comes for `quiet`: (bytes, closed).
fn read_for(stream: &mut TcpStream, quiet: Duration) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let (more, closed) = read_some(stream, quiet);
        if closed {
            return (all, true);
        }
        if more.is_empty() {
            return (all, false);
        }
        all.extend(more);
    }
    (all, false)
}
