//! Group commit of directory fsyncs.
//!
//! Every committed message needs the spool directory fsynced after its
//! rename. Concurrent sessions share that work: a caller asks for a sync
//! that covers its rename; if a sync is already running, it waits for the
//! next one, which covers every rename made before it started. So N
//! sessions committing together cost about two fsyncs, not N.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Debug)]
struct State {
    /// Highest ticket handed out.
    requested: u64,
    /// True while a sync task runs.
    running: bool,
}

/// Shared directory fsync. See the module documentation.
#[derive(Debug)]
pub struct DirSync {
    dir: Arc<File>,
    state: Arc<Mutex<State>>,
    /// Highest ticket covered by a finished sync, or the error of the last one.
    done: watch::Sender<(u64, Option<io::ErrorKind>)>,
}

impl DirSync {
    /// Opens the directory for syncing.
    pub fn open(dir: &Path) -> io::Result<DirSync> {
        let (done, _) = watch::channel((0, None));
        Ok(DirSync {
            dir: Arc::new(File::open(dir)?),
            state: Arc::new(Mutex::new(State {
                requested: 0,
                running: false,
            })),
            done,
        })
    }

    /// Waits until a directory fsync that started after this call has finished.
    pub async fn sync(&self) -> io::Result<()> {
        let mut rx = self.done.subscribe();
        let ticket = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.requested += 1;
            let ticket = state.requested;
            if !state.running {
                state.running = true;
                self.spawn_syncer();
            }
            ticket
        };
        loop {
            let (covered, error) = *rx.borrow_and_update();
            if covered >= ticket {
                return match error {
                    None => Ok(()),
                    Some(kind) => Err(io::Error::from(kind)),
                };
            }
            if rx.changed().await.is_err() {
                return Err(io::Error::other("directory sync stopped"));
            }
        }
    }

    /// A blocking sync, for startup and shutdown paths.
    pub fn sync_now(&self) -> io::Result<()> {
        self.dir.sync_all()
    }

    fn spawn_syncer(&self) {
        let dir = Arc::clone(&self.dir);
        let state = Arc::clone(&self.state);
        let done = self.done.clone();
        tokio::task::spawn_blocking(move || loop {
            let target = {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if s.requested <= done.borrow().0 {
                    s.running = false;
                    return;
                }
                s.requested
            };
            let error = dir.sync_all().err().map(|e| e.kind());
            done.send_replace((target, error));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::open(dir.path()).unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let sync = Arc::clone(&sync);
                tokio::spawn(async move { sync.sync().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            sync.done.borrow().0,
            50,
            "the last sync covers every ticket"
        );
    }
}
