//! The test runner: one test case per scenario, and the pins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::fixture::Fixture;
use crate::pins;
use crate::replay::{self, Replay, Target, Views};

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// What every case shares.
struct Setup {
    target: Target,
    /// `GOLDEN_REPORT`: where to write each scenario's differences.
    report: Option<PathBuf>,
}

pub fn main() {
    let mut args = Arguments::from_args();
    let jobs = std::env::var("GOLDEN_JOBS")
        .ok()
        .and_then(|j| j.parse::<usize>().ok());
    args.test_threads = Some(match (jobs, args.test_threads) {
        (Some(n), _) => n.max(1),
        (None, Some(1)) => 1,
        (None, n) => n.unwrap_or(4).max(4),
    });
    let bin_dir = std::env::var("GOLDEN_BIN_DIR")
        .ok()
        .filter(|d| !d.is_empty());
    if bin_dir.is_some() && std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
        eprintln!("golden: GOLDEN_BIN_DIR replays other binaries than ours: refused under CI");
        std::process::exit(2);
    }
    let version = match &bin_dir {
        Some(_) => std::env::var("GOLDEN_VERSION").unwrap_or_else(|_| "2.6.1".to_string()),
        None => env!("CARGO_PKG_VERSION").to_string(),
    };
    let setup = Arc::new(Setup {
        target: Target { bin_dir, version },
        report: std::env::var("GOLDEN_REPORT")
            .ok()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    });
    let root = nix::unistd::Uid::effective().is_root();
    if root {
        // submit/default-spool writes into our default spool directory,
        // which is always there where the relay has run: so here too,
        // whichever test ran first.
        let _ = std::fs::create_dir_all("/var/spool/emailrelay");
    }
    let mut fixtures = Vec::new();
    collect(Path::new(GOLDEN_DIR), "golden", &mut fixtures);
    fixtures.sort();
    // windows/: 2.6.1's Windows build under Wine, replayed against our
    // Windows programs under Wine (README.md, Windows scenarios). They do
    // not need root; a missing Wine or Windows build fails them.
    let windows = Path::new(GOLDEN_DIR).join("windows");
    if setup.target.bin_dir.is_none() {
        let dir = crate::wine::windows_bin_dir();
        if !dir.join("emailrelay.exe").is_file() {
            eprintln!(
                "golden: no emailrelay.exe in {}: the windows/ scenarios fail; {}",
                dir.display(),
                crate::wine::BUILD_HINT
            );
        }
    }
    let mut trials = vec![Trial::test("pins-name-scenarios", check_pin_files)];
    for path in fixtures {
        let name = scenario_name(&path);
        let setup = setup.clone();
        let on_windows = path.starts_with(&windows);
        trials.push(Trial::ignorable_test(name.clone(), move || {
            if !root && !on_windows {
                return Ok(Completion::ignored_with(
                    "needs root: the scenarios run the relay with --user root and record file owners",
                ));
            }
            scenario(&setup, &path, &name).map(|()| Completion::Completed)
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// True if our program ended at startup with status 1 and no output at
/// all (stderr and log empty), which is Wine failing to start it.
fn wine_did_not_start(observed: &replay::Observed) -> bool {
    observed
        .get("start")
        .is_some_and(|views| views.ours == ["exited at startup (exit status: 1)", "stderr", "log"])
}

/// Replays one scenario and holds the outcome against its pins.
fn scenario(setup: &Setup, path: &Path, name: &str) -> Result<(), Failed> {
    let mut text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.lines().any(|l| l == "platform windows") {
        // `{PROGRAM}` is the console program: ours is `emailrelay`.
        text = text.replace("{PROGRAM}", setup.target.windows_console());
    }
    let fixture = Fixture::parse(name, &text)?;
    let mut observed = Replay::run(&fixture, &setup.target)?;
    if fixture.windows && wine_did_not_start(&observed) {
        // Under load Wine now and then ends a program it could not start
        // with status 1 and not a word; our relay always says why it
        // stops. Once more, and a second silent exit is a failure.
        eprintln!("{name}: the program exited at once without a word; replayed once more");
        observed = Replay::run(&fixture, &setup.target)?;
    }
    let differing: Vec<(&str, &Views)> = replay::PARTS
        .iter()
        .filter_map(|p| observed.get(p).map(|v| (*p, v)))
        .filter(|(_, v)| v.fixture != v.ours)
        .collect();
    if let Some(dir) = &setup.report {
        write_report(dir, name, &differing)?;
    }
    let accept = format!("scripts/golden-accept {name}");
    let mut problems = Vec::new();
    if setup.target.bin_dir.is_some() {
        for (part, views) in &differing {
            problems.push(format!(
                "{name} {part}: differs (fixture `-`, these binaries `+`):\n{}",
                pins::context_diff(&views.fixture, &views.ours)
            ));
        }
        return finish(problems);
    }
    let pin_file = path.with_extension("ours");
    let pinned = match std::fs::read_to_string(&pin_file) {
        Ok(text) => pins::parse(&pin_file.display().to_string(), &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => pins::Pins::new(),
        Err(e) => return Err(format!("{}: {e}", pin_file.display()).into()),
    };
    for (part, views) in &differing {
        let Some(pin) = pinned.get(*part) else {
            problems.push(format!(
                "{name} {part}: NEW difference from 2.6.1 (2.6.1 `-`, ours `+`):\n{}\n  \
                 fix it, or if it is right: scripts/golden-accept --reason '<why>' {name}",
                pins::context_diff(&views.fixture, &views.ours)
            ));
            continue;
        };
        let (theirs, ours) = (pin.side('-'), pin.side('+'));
        if theirs != views.fixture {
            problems.push(format!(
                "{name} {part}: the fixture changed since the difference was pinned \
                 (pinned `-`, fixture now `+`):\n{}\n  review, then: {accept}",
                pins::context_diff(&theirs, &views.fixture)
            ));
        }
        if ours != views.ours {
            problems.push(format!(
                "{name} {part}: ours changed in a pinned difference (pinned `-`, ours now `+`; \
                 reason pinned: {}):\n{}\n  if the change is right: {accept}",
                pin.reason,
                pins::context_diff(&ours, &views.ours)
            ));
        }
    }
    for part in pinned.keys() {
        if !differing.iter().any(|(p, _)| p == part) {
            problems.push(format!(
                "{name} {part}: FIXED: ours now says what 2.6.1 said; remove the pin: {accept}"
            ));
        }
    }
    finish(problems)
}

fn finish(problems: Vec<String>) -> Result<(), Failed> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n\n").into())
    }
}

/// `GOLDEN_REPORT`: `<dir>/<name>.parts` holds `part <name>` and the
/// part's whole diff for each differing part (empty when all match).
fn write_report(dir: &Path, name: &str, differing: &[(&str, &Views)]) -> Result<(), String> {
    let mut text = String::new();
    for (part, views) in differing {
        text.push_str(&format!("part {part}\n"));
        for line in pins::full_diff(&views.fixture, &views.ours) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let file = dir.join(format!("{name}.parts"));
    std::fs::create_dir_all(file.parent().unwrap())
        .and_then(|()| std::fs::write(&file, text))
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Every `.ours` file belongs to a scenario and parses.
fn check_pin_files() -> Result<(), Failed> {
    let mut files = Vec::new();
    collect(Path::new(GOLDEN_DIR), "ours", &mut files);
    let mut problems = Vec::new();
    for file in files {
        if !file.with_extension("golden").exists() {
            problems.push(format!("{}: no such scenario", file.display()));
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Err(e) = pins::parse(&file.display().to_string(), &text) {
            problems.push(e);
        }
    }
    finish(problems)
}

fn collect(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

/// `tests/golden/smtp/size.golden` is `smtp/size`.
fn scenario_name(path: &Path) -> String {
    let rel = path.strip_prefix(GOLDEN_DIR).unwrap().to_string_lossy();
    rel.trim_end_matches(".golden").to_string()
}

/// A free loopback port (bound and released), never the same twice in
/// this process: two ports picked before either is bound could otherwise
/// coincide (a replay once got its relay's port as its "nothing listens
/// here" port).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
        std::sync::Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(Default::default);
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no fresh loopback port after 1000 tries");
}
