//! Message trace's look-ups still to do, kept in the spool directory
//! (`.emailrelay-graph-traces`, JSON, rewritten whole and atomically with
//! the store's atomic write on every change) so that a relay stopped
//! with look-ups pending does them when it starts again.
//!
//! One table per spool directory for the whole process: each change is
//! made in the table and the file is written from it under one lock, so
//! two look-ups finishing at once cannot lose each other's change.
//!
//! Must not: fail a look-up because its file could not be written (the
//! look-up goes on; the error is logged).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::warning;

/// The file's name in the spool directory.
pub const FILE: &str = ".emailrelay-graph-traces";
/// The name it is written under first.
const TEMP: &str = ".emailrelay-graph-traces.new";

/// One message's look-ups to come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The account (the secrets file's user name) it was sent with.
    pub account: String,
    /// Its `Message-ID`, with the angle brackets.
    pub id: String,
    /// Its `Subject` (for a report), as written.
    pub subject: String,
    /// Whether a failure is to be reported (not for a report, or a
    /// message whose envelope sender was empty, or an automatic one).
    pub report: bool,
    /// When the next look-up is due, in milliseconds since the epoch.
    pub due: u64,
    /// The wait before the look-up after it.
    pub wait: Duration,
    /// Look-ups left.
    pub left: u32,
}

type Table = BTreeMap<(String, String), Pending>;

static TABLES: Mutex<Option<HashMap<PathBuf, Table>>> = Mutex::new(None);

/// Milliseconds since the epoch at `t`.
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Pending {
    /// How long until the next look-up is due at `now` (zero if past).
    pub fn until_due(&self, now: SystemTime) -> Duration {
        Duration::from_millis(self.due.saturating_sub(millis(now)))
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "account": self.account,
            "id": self.id,
            "subject": self.subject,
            "report": self.report,
            "due": self.due,
            "wait": u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
            "left": self.left,
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<Pending> {
        Some(Pending {
            account: v["account"].as_str()?.to_string(),
            id: v["id"].as_str()?.to_string(),
            subject: v["subject"].as_str().unwrap_or("").to_string(),
            report: v["report"].as_bool().unwrap_or(false),
            due: v["due"].as_u64()?,
            wait: Duration::from_millis(v["wait"].as_u64()?),
            left: u32::try_from(v["left"].as_u64()?).ok()?,
        })
    }
}

/// Records `entry` (new, or its next look-up) for the spool `dir`.
pub fn save(dir: &Path, entry: &Pending) {
    change(dir, |table| {
        table.insert((entry.account.clone(), entry.id.clone()), entry.clone());
    });
}

/// Forgets `id` sent with `account`: its look-ups are over.
pub fn remove(dir: &Path, account: &str, id: &str) {
    change(dir, |table| {
        table.remove(&(account.to_string(), id.to_string()));
    });
}

/// What the spool `dir`'s file holds (read at start), now in the table.
pub fn load(dir: &Path) -> Vec<Pending> {
    let text = match std::fs::read(dir.join(FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warning!("graph: message trace: {}: {e}", dir.join(FILE).display());
            return Vec::new();
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    let entries: Vec<Pending> = json
        .as_array()
        .map(|list| list.iter().filter_map(Pending::from_json).collect())
        .unwrap_or_default();
    let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    let table = tables
        .get_or_insert_with(HashMap::new)
        .entry(dir.to_path_buf())
        .or_default();
    for entry in &entries {
        table.insert((entry.account.clone(), entry.id.clone()), entry.clone());
    }
    entries
}

fn change(dir: &Path, edit: impl FnOnce(&mut Table)) {
    let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    let table = tables
        .get_or_insert_with(HashMap::new)
        .entry(dir.to_path_buf())
        .or_default();
    edit(table);
    let list: Vec<serde_json::Value> = table.values().map(Pending::to_json).collect();
    let result = match list.is_empty() {
        true => match std::fs::remove_file(dir.join(FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        false => crate::platform::files::write_atomic(
            &dir.join(FILE),
            &dir.join(TEMP),
            serde_json::Value::Array(list).to_string().as_bytes(),
            0o660,
        ),
    };
    if let Err(e) = result {
        warning!(
            "graph: message trace: cannot write {}: {e}",
            dir.join(FILE).display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_what_is_pending_and_goes_when_nothing_is() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pending {
            account: "me@x".into(),
            id: "<a@x>".into(),
            subject: "s \"q\"".into(),
            report: true,
            due: 1_000,
            wait: Duration::from_secs(2),
            left: 5,
        };
        let b = Pending {
            id: "<b@x>".into(),
            report: false,
            left: 1,
            ..a.clone()
        };
        save(dir.path(), &a);
        save(dir.path(), &b);
        let moved = Pending {
            due: 5_000,
            left: 4,
            ..a.clone()
        };
        save(dir.path(), &moved);
        // As a restarted process would read it.
        TABLES.lock().unwrap().as_mut().unwrap().remove(dir.path());
        assert_eq!(load(dir.path()), vec![moved.clone(), b.clone()]);
        remove(dir.path(), "me@x", "<a@x>");
        remove(dir.path(), "me@x", "<b@x>");
        assert!(!dir.path().join(FILE).exists());
        assert!(!dir.path().join(TEMP).exists());
        assert_eq!(
            moved.until_due(UNIX_EPOCH + Duration::from_millis(4_000)),
            Duration::from_secs(1)
        );
        assert_eq!(
            moved.until_due(UNIX_EPOCH + Duration::from_secs(9)),
            Duration::ZERO
        );
    }
}
