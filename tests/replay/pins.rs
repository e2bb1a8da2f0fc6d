//! Accepted differences: `tests/golden/<area>/<name>.ours` beside a
//! scenario pins each part where ours does not say what 2.6.1 said, by
//! content: a one-line reason, then the whole part as a line diff of the
//! two views (`  ` both, `- ` 2.6.1 only, `+ ` ours only). Both sides can
//! be read back from it, so a pin holds exactly while neither the fixture
//! nor our output changes. Written by scripts/golden-accept, never by the
//! test.

use std::collections::BTreeMap;

use crate::replay::PARTS;

/// One pinned part.
pub struct Pin {
    pub reason: String,
    /// The diff lines, with their two-character prefixes.
    pub diff: Vec<String>,
}

impl Pin {
    /// The view on one side: `-` for 2.6.1's, `+` for ours.
    pub fn side(&self, mark: char) -> Vec<String> {
        self.diff
            .iter()
            .filter(|l| l.starts_with(' ') || l.starts_with(mark))
            .map(|l| l[2..].to_string())
            .collect()
    }
}

/// The pins of one scenario, by part.
pub type Pins = BTreeMap<String, Pin>;

/// Reads `text` (an `.ours` file); errors name the line.
pub fn parse(file: &str, text: &str) -> Result<Pins, String> {
    let mut pins = Pins::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let bad = |what: &str| format!("{file} line {}: {what}: {line}", n + 1);
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(part) = line.strip_prefix("part ") {
            if !PARTS.contains(&part) {
                return Err(bad("no such part"));
            }
            if pins.contains_key(part) {
                return Err(bad("the part is pinned twice"));
            }
            pins.insert(
                part.to_string(),
                Pin {
                    reason: String::new(),
                    diff: Vec::new(),
                },
            );
            current = Some(part.to_string());
            continue;
        }
        let Some(pin) = current.as_ref().and_then(|p| pins.get_mut(p)) else {
            return Err(bad("before any `part` line"));
        };
        if let Some(reason) = line.strip_prefix("reason ") {
            if !pin.reason.is_empty() || !pin.diff.is_empty() {
                return Err(bad("the reason comes once, first"));
            }
            pin.reason = reason.trim().to_string();
        } else if ["  ", "- ", "+ "].iter().any(|p| line.starts_with(p)) {
            if pin.reason.is_empty() {
                return Err(bad("a part needs its reason before its lines"));
            }
            pin.diff.push(line.to_string());
        } else {
            return Err(bad("not a pin line"));
        }
    }
    for (part, pin) in &pins {
        if pin.reason.is_empty() || pin.diff.is_empty() {
            return Err(format!("{file}: part {part} has no reason or no lines"));
        }
    }
    Ok(pins)
}

/// The whole of `b` against `a` as diff lines: `  ` in both, `- ` only in
/// `a`, `+ ` only in `b` (a longest common subsequence of lines).
pub fn full_diff(a: &[String], b: &[String]) -> Vec<String> {
    if a.len() * b.len() > 4_000_000 {
        let minus = a.iter().map(|l| format!("- {l}"));
        return minus.chain(b.iter().map(|l| format!("+ {l}"))).collect();
    }
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
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

/// A diff for a reader: the changed lines with three lines of context,
/// `...` where lines are left out; at most 200 lines.
pub fn context_diff(a: &[String], b: &[String]) -> String {
    let lines = full_diff(a, b);
    let changed: Vec<usize> = (0..lines.len())
        .filter(|&k| !lines[k].starts_with("  "))
        .collect();
    let near = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= 3);
    let mut out = Vec::new();
    let mut skipped = false;
    for (k, line) in lines.iter().enumerate() {
        if near(k) {
            out.push(format!("    {line}"));
            skipped = false;
        } else if !skipped {
            out.push("    ...".to_string());
            skipped = true;
        }
        if out.len() >= 200 {
            out.push(format!("    ... ({} lines in all)", lines.len()));
            break;
        }
    }
    out.join("\n")
}
