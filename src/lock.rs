//! One apply at a time per desired state: a lock file (`<state dir>/lock`) created exclusively,
//! holding owner, host, pid and start time. A lock whose process is gone (same host, pid not
//! running) is reclaimed; any other holder is named in the refusal.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub started_at: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} (pid {}) since {}",
            self.owner, self.host, self.pid, self.started_at
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another apply holds the lock: {0}")]
    Held(Holder),
    #[error("cannot take the lock `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    /// A lock left by a process that is gone, reclaimed when this one was taken.
    pub reclaimed: Option<Holder>,
}

/// How long an empty or unreadable lock file is taken for one being written.
const UNREADABLE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn alive(pid: u32) -> bool {
    // Linux: a running process has /proc/<pid>. Elsewhere, assume it is alive (never steal).
    if Path::new("/proc/self").exists() {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

impl Lock {
    /// Takes the lock in `state_dir`.
    pub fn acquire(state_dir: &Path, owner: &str) -> Result<Lock, LockError> {
        let path = state_dir.join("lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let me = Holder {
            owner: owner.to_string(),
            host: hostname(),
            pid: std::process::id(),
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        let mut reclaimed = None;
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let body = serde_json::to_vec_pretty(&me).expect("holder serialises");
                    file.write_all(&body)
                        .and_then(|()| file.sync_all())
                        .map_err(io)?;
                    return Ok(Lock { path, reclaimed });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder: Option<Holder> = serde_json::from_str(&text).ok();
                    match holder {
                        Some(h) if h.host == me.host && !alive(h.pid) => {
                            // The holder is gone: reclaim. If two runs race here, only one of
                            // them creates the file afterwards.
                            let _ = std::fs::remove_file(&path);
                            reclaimed = Some(h);
                        }
                        Some(h) => return Err(LockError::Held(h)),
                        // Empty or unreadable: a run is writing it right now, or one crashed
                        // between creating and writing it. A writer takes microseconds, so a
                        // file that stays so for UNREADABLE_GRACE is a crash's: reclaimed.
                        None => {
                            let age = std::fs::metadata(&path)
                                .and_then(|m| m.modified())
                                .ok()
                                .and_then(|t| t.elapsed().ok())
                                .unwrap_or_default();
                            if age < UNREADABLE_GRACE {
                                return Err(LockError::Held(Holder {
                                    owner: format!(
                                        "unknown (the lock file is empty or unreadable; it is reclaimed once it is {}s old)",
                                        UNREADABLE_GRACE.as_secs()
                                    ),
                                    host: "?".into(),
                                    pid: 0,
                                    started_at: "?".into(),
                                }));
                            }
                            let _ = std::fs::remove_file(&path);
                            reclaimed = Some(Holder {
                                owner: "unknown (empty lock file left by a crash)".into(),
                                host: me.host.clone(),
                                pid: 0,
                                started_at: "?".into(),
                            });
                        }
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(io(std::io::Error::other(
            "the lock was taken by another run while reclaiming it",
        )))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path(), "alice").unwrap();
        match Lock::acquire(dir.path(), "bob") {
            Err(LockError::Held(h)) => {
                assert_eq!((h.owner.as_str(), h.pid), ("alice", std::process::id()))
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(Lock::acquire(dir.path(), "bob").is_ok(), "released on drop");
    }

    #[test]
    fn a_dead_holder_is_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = Holder {
            owner: "ghost".into(),
            host: hostname(),
            pid: u32::MAX - 1,
            started_at: "then".into(),
        };
        std::fs::write(dir.path().join("lock"), serde_json::to_vec(&dead).unwrap()).unwrap();
        let lock = Lock::acquire(dir.path(), "bob").unwrap();
        assert_eq!(lock.reclaimed, Some(dead));
    }

    #[test]
    fn a_holder_on_another_host_is_never_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Holder {
            owner: "ci".into(),
            host: "other-host".into(),
            pid: u32::MAX - 1,
            started_at: "then".into(),
        };
        std::fs::write(
            dir.path().join("lock"),
            serde_json::to_vec(&remote).unwrap(),
        )
        .unwrap();
        assert!(
            matches!(Lock::acquire(dir.path(), "bob"), Err(LockError::Held(h)) if h.host == "other-host")
        );
    }

    #[test]
    fn an_empty_lock_file_is_reclaimed_once_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, "").unwrap();
        // Fresh: maybe being written; refused, and the message says when it is reclaimed.
        match Lock::acquire(dir.path(), "bob") {
            Err(LockError::Held(h)) => assert!(h.owner.contains("reclaimed once it is 30s old")),
            other => panic!("{other:?}"),
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let lock = Lock::acquire(dir.path(), "bob").expect("reclaimed");
        assert!(
            lock.reclaimed
                .as_ref()
                .unwrap()
                .owner
                .contains("empty lock file")
        );
    }
}
