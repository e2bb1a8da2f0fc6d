//! The pid file: written once the process is in the background, owned by
//! the account that started it (root, usually) with the group of `--user`
//! as E-MailRelay makes it, readable by all, and removed at a clean exit.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::platform::files;
use crate::platform::process::Account;

use anyhow::Context;

/// A pid file this process wrote.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id into `path`, creating its parent directory
    /// (one level) if needed; with `group_of` the file's group is that
    /// account's.
    pub fn create(path: &Path, group_of: Option<&str>) -> anyhow::Result<PidFile> {
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.exists() {
                    // rwxrwxr-x, as E-MailRelay makes it.
                    files::create_dir(parent, 0o775)?;
                }
            }
            let mut file = files::open_truncate(path, 0o644)?;
            // Whatever the umask: readable by the admin scripts that kill by it.
            files::set_mode(path, 0o644)?;
            if let Some(name) = group_of {
                match Account::find(name) {
                    Ok(account) => account.give_group(&file)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        write().with_context(|| format!("cannot write pid file [{}]", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }

    /// Removes the file, if it still holds our pid.
    pub fn remove(&self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
