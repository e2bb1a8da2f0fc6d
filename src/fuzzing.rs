//! A small bounded fuzz driver, for where cargo-fuzz (fuzz/) cannot be
//! installed: seeds, stacked random mutations (bits, bytes, ranges,
//! dictionary tokens, splices, line ends), a corpus that keeps an input
//! when its output shows a behaviour not seen before, and a time budget.
//! Not coverage-guided: the "features" a target reports (reply codes and
//! the like) stand in for coverage.
//!
//! A failure is a panic in the target (its own oracles assert) or an
//! input that takes longer than [`SLOW`]; each is saved under
//! `target/fuzz/<name>/` and reported. A watchdog thread aborts the
//! process, after saving the input, if one execution hangs.
//!
//! The targets are `#[ignore]`d tests (never run by scripts/test), run by
//! `scripts/fuzz <target> <seconds>` with the budget in `FUZZ_SECONDS`.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One execution longer than this is a finding.
pub const SLOW: Duration = Duration::from_secs(2);
/// No progress for this long: the watchdog saves the input and aborts.
const HANG: Duration = Duration::from_secs(20);
/// Most inputs kept in the corpus.
const MAX_CORPUS: usize = 4096;

/// A xorshift64* generator: seeded from the clock, and printed, so a run
/// can be repeated (`FUZZ_SEED`).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// What a fuzz target is: its seeds, its tokens, and the check that runs
/// one input (panicking on a broken oracle) and returns the features of
/// what it saw.
pub struct Target<'a> {
    pub name: &'a str,
    pub seeds: &'a [&'a [u8]],
    pub dictionary: &'a [&'a [u8]],
    pub max_len: usize,
    pub check: &'a (dyn Fn(&[u8], &mut Rng) -> Vec<u64> + Sync),
}

/// A run's figures.
#[derive(Debug)]
pub struct Report {
    pub executions: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub features: usize,
    pub failures: Vec<String>,
    pub seed: u64,
}

/// The budget: `FUZZ_SECONDS`, else 10 s.
pub fn budget() -> Duration {
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(seconds)
}

/// Fuzzes `target` for `budget`; see the module documentation.
pub fn run(target: &Target<'_>, budget: Duration) -> Report {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let mut rng = Rng::new(seed);
    // The targets' warnings (refused requests, say) would flood the
    // terminal: a logger with no file, its standard error closed.
    let _ = crate::log::init(crate::log::LogSettings::default(), "fuzz");
    crate::log::close_stderr();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/fuzz")
        .join(target.name);
    let _ = std::fs::create_dir_all(&dir);
    let current = Arc::new(Mutex::new(Vec::new()));
    let executions = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = spawn_watchdog(&dir, &current, &executions, &done);
    // Panics are findings, recorded here rather than printed.
    let message = Arc::new(Mutex::new(String::new()));
    let hook_message = Arc::clone(&message);
    let old_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        *hook_message.lock().unwrap_or_else(|p| p.into_inner()) = format!("{text}{location}");
    }));
    let mut corpus: Vec<Vec<u8>> = target.seeds.iter().map(|s| s.to_vec()).collect();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut failures = Vec::new();
    let mut signatures = HashSet::new();
    let started = Instant::now();
    while started.elapsed() < budget {
        let input = if executions.load(Ordering::Relaxed) < corpus.len() as u64 {
            corpus[executions.load(Ordering::Relaxed) as usize].clone()
        } else {
            mutate(&corpus, target, &mut rng)
        };
        current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(&input);
        let one = Instant::now();
        let mut check_rng = Rng::new(rng.next());
        let outcome =
            panic::catch_unwind(AssertUnwindSafe(|| (target.check)(&input, &mut check_rng)));
        let took = one.elapsed();
        executions.fetch_add(1, Ordering::Relaxed);
        let failure = match outcome {
            Ok(features) => {
                let before = seen.len();
                seen.extend(features);
                if seen.len() > before && corpus.len() < MAX_CORPUS {
                    corpus.push(input.clone());
                }
                (took > SLOW).then(|| format!("slow: {} ms", took.as_millis()))
            }
            Err(_) => Some(std::mem::take(
                &mut *message.lock().unwrap_or_else(|p| p.into_inner()),
            )),
        };
        if let Some(why) = failure {
            // One file per distinct failure.
            if signatures.insert(why.clone()) {
                let path = dir.join(format!("failure-{}", failures.len() + 1));
                let _ = std::fs::write(&path, &input);
                failures.push(format!("{why} (input: {})", path.display()));
            }
        }
    }
    panic::set_hook(old_hook);
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    Report {
        executions: executions.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        corpus: corpus.len(),
        features: seen.len(),
        failures,
        seed,
    }
}

/// A feature from some bytes (a reply code, a status line).
pub fn feature(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Aborts the process, saving the input, when no execution finishes
/// within [`HANG`].
fn spawn_watchdog(
    dir: &std::path::Path,
    current: &Arc<Mutex<Vec<u8>>>,
    executions: &Arc<AtomicU64>,
    done: &Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (dir, current, executions, done) = (
        dir.to_path_buf(),
        Arc::clone(current),
        Arc::clone(executions),
        Arc::clone(done),
    );
    std::thread::spawn(move || {
        let mut last = (executions.load(Ordering::Relaxed), Instant::now());
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let now = executions.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > HANG {
                let input = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let path = dir.join("hang");
                let _ = std::fs::write(&path, input);
                eprintln!(
                    "fuzz: HANG: no progress for {HANG:?}; input in {}",
                    path.display()
                );
                std::process::abort();
            }
        }
    })
}

/// One new input: a corpus entry with 1 to 8 mutations stacked.
fn mutate(corpus: &[Vec<u8>], target: &Target<'_>, rng: &mut Rng) -> Vec<u8> {
    let mut data = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(8) {
        mutate_once(&mut data, corpus, target.dictionary, rng);
    }
    data.truncate(target.max_len);
    data
}

fn mutate_once(data: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]], rng: &mut Rng) {
    let len = data.len();
    let at = rng.below(len + 1);
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = interesting_byte(rng);
        }
        2 => data.insert(at, interesting_byte(rng)),
        3 if len > 0 => {
            let end = (at + 1 + rng.below(16)).min(len);
            data.drain(at.min(len - 1)..end);
        }
        4 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(64)).min(len);
            let piece = data[start..end].to_vec();
            let most = if rng.one_in(8) { 300 } else { 4 };
            let times = 1 + rng.below(most);
            for _ in 0..times {
                data.splice(at..at, piece.iter().copied());
            }
        }
        5 | 6 if !dictionary.is_empty() => {
            let token = dictionary[rng.below(dictionary.len())];
            data.splice(at..at, token.iter().copied());
        }
        7 if !dictionary.is_empty() && len > 0 => {
            let token = dictionary[rng.below(dictionary.len())];
            let end = (at + rng.below(12)).min(len);
            data.splice(at..end, token.iter().copied());
        }
        8 => {
            let other = &corpus[rng.below(corpus.len())];
            let from = rng.below(other.len() + 1);
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        9 => {
            let ending: &[u8] = [b"\r\n".as_slice(), b"\n", b"\r", b"\r\n\r\n"][rng.below(4)];
            data.splice(at..at, ending.iter().copied());
        }
        _ => data.truncate(at),
    }
}

fn interesting_byte(rng: &mut Rng) -> u8 {
    const BYTES: &[u8] = b"\0\r\n \t:.+-/\\%\"'<>@=\x1b\x7f\x80\xc3\xff0123456789";
    if rng.one_in(2) {
        BYTES[rng.below(BYTES.len())]
    } else {
        rng.next() as u8
    }
}

/// Prints a run's figures and fails on any finding.
pub fn finish(name: &str, report: &Report) {
    println!(
        "fuzz {name}: {} executions in {:.1} s ({:.0}/s), corpus {}, features {}, seed {}, failures {}",
        report.executions,
        report.elapsed.as_secs_f64(),
        report.executions as f64 / report.elapsed.as_secs_f64().max(0.001),
        report.corpus,
        report.features,
        report.seed,
        report.failures.len()
    );
    for failure in &report.failures {
        println!("  {failure}");
    }
    assert!(report.failures.is_empty(), "fuzz {name} found failures");
}
