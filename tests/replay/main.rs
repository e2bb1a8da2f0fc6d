//! The golden transcripts: what E-MailRelay 2.6.1 said at every interface
//! (tests/golden, recorded by scripts/record-golden), replayed against our
//! binaries, one test case per scenario.
//!
//! Each scenario plays the recorded inputs into our program (same
//! arguments, files, bytes on the same kind of connection), normalises
//! what it says by the rules of tests/golden/README.md, and compares every
//! part exactly: `start`, `exit`, `dialog` (SMTP, POP and admin replies),
//! `stdout`, `stderr`, `log` (files named `log*`), `files` (spool, pid
//! file, everything else written) and `sink` (what ours sent to a
//! scripted server).
//!
//! A part where ours differs must be pinned, with its reason, in the
//! scenario's `.ours` file (`pins`): the case fails on a difference not
//! pinned, on a pinned part where either side has changed since it was
//! accepted, and on a pinned part that now matches. The test only reads;
//! scripts/golden-accept writes the pins (never under `CI`).
//!
//! Environment: `GOLDEN_REPORT=<dir>` also writes each scenario's
//! differences there for scripts/golden-accept (the outcome is the same);
//! `GOLDEN_BIN_DIR=<dir>` with `GOLDEN_VERSION=<x.y.z>` replays against
//! other binaries with no pins at all: against the reference itself
//! (`/work/ref/src/main`, `2.6.1`) every part must match, which checks the
//! fixtures and the replay together (refused under `CI`);
//! `GOLDEN_JOBS=<n>`: scenarios at once (default 4: they mostly wait, so
//! `--test-threads` other than 1 does not lower it).
//!
//! Needs root (the scenarios run with `--user root` and record file
//! owners): otherwise each case is reported ignored, with that reason. It
//! must not touch anything outside its temporary directories (but for
//! making `/var/spool/emailrelay`), leave a process running, or wait
//! without a bound.

#[cfg(unix)]
mod fixture;
#[cfg(unix)]
mod normalise;
#[cfg(unix)]
mod pins;
#[cfg(unix)]
mod replay;
#[cfg(unix)]
mod run;
#[cfg(unix)]
mod sink;

#[cfg(unix)]
fn main() {
    run::main();
}

/// The scenarios drive 2.6.1's Linux transcripts on the Linux host; the
/// Windows build is tested from there under Wine.
#[cfg(not(unix))]
fn main() {
    use libtest_mimic::{Arguments, Completion, Trial};
    let trial = Trial::ignorable_test("golden", || {
        Ok(Completion::ignored_with(
            "the golden transcripts run on the Linux host",
        ))
    });
    libtest_mimic::run(&Arguments::from_args(), vec![trial]).exit();
}
