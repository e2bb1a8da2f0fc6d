//! Startup warnings about files other users can reach: a secrets file
//! anyone can read (its passwords), a spool directory anyone can write
//! (anyone could add, change or remove messages). Not in E-MailRelay
//! 2.6.1 (docs/compatibility.md).
//!
//! Only the permission bits are looked at, where the system has them
//! (`platform::files::mode`); Windows' ACLs are not checked. A warning,
//! never a refusal: the relay starts as 2.6.1 would.

use std::path::{Path, PathBuf};

use crate::config::InstanceSettings;
use crate::platform::files::mode;

/// Logs one warning for each secrets file others can read and each spool
/// directory others can write, each file once however many options or
/// instances name it.
pub fn log_exposed(instances: &[InstanceSettings]) {
    for text in exposed(instances) {
        crate::warning!("{text}");
    }
}

/// The warnings' texts, in the order of the instances and options.
fn exposed(instances: &[InstanceSettings]) -> Vec<String> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut first = |path: &Path| {
        let new = !seen.iter().any(|p| p == path);
        if new {
            seen.push(path.to_path_buf());
        }
        new
    };
    let mut texts = Vec::new();
    for settings in instances {
        for path in &settings.secrets_files {
            if first(path) {
                texts.extend(secrets_warning(path));
            }
        }
        if first(&settings.spool_dir) {
            texts.extend(spool_warning(&settings.spool_dir));
        }
    }
    texts
}

/// World permission bits: read, write.
const OTHERS_READ: u32 = 0o004;
const OTHERS_WRITE: u32 = 0o002;

/// The warning for a secrets file others can read, if it is one.
pub fn secrets_warning(path: &Path) -> Option<String> {
    let mode = mode_of(path).filter(|m| m & OTHERS_READ != 0)?;
    Some(format!(
        "secrets file [{}] can be read by any user (mode {mode:04o}): chmod o-rwx it",
        path.display()
    ))
}

/// The warning for a spool directory others can write, if it is one.
pub fn spool_warning(path: &Path) -> Option<String> {
    let mode = mode_of(path).filter(|m| m & OTHERS_WRITE != 0)?;
    Some(format!(
        "spool directory [{}] can be written by any user (mode {mode:04o}): chmod o-w it",
        path.display()
    ))
}

/// The permission bits of what `path` names (through a link); `None` for
/// a missing file, or on a system without permission bits.
fn mode_of(path: &Path) -> Option<u32> {
    mode(&std::fs::metadata(path).ok()?)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::platform::files::set_mode;

    #[test]
    fn only_the_world_bits_count() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.auth");
        std::fs::write(&file, "server plain a b\n").unwrap();
        for (m, warned) in [
            (0o600, false),
            (0o640, false),
            (0o660, false),
            (0o644, true),
        ] {
            set_mode(&file, m).unwrap();
            assert_eq!(secrets_warning(&file).is_some(), warned, "{m:o}");
        }
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        for (m, warned) in [
            (0o700, false),
            (0o775, false),
            (0o757, true),
            (0o1777, true),
        ] {
            set_mode(&spool, m).unwrap();
            assert_eq!(spool_warning(&spool).is_some(), warned, "{m:o}");
        }
        assert_eq!(
            spool_warning(&spool).unwrap(),
            format!(
                "spool directory [{}] can be written by any user (mode 1777): chmod o-w it",
                spool.display()
            )
        );
        assert_eq!(secrets_warning(&dir.path().join("missing")), None);
    }
}
