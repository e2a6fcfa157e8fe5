//! The apply journal (`<state dir>/journal.jsonl`): every step's intent is written and flushed
//! to disk before the change, and its result after. A run killed in between leaves intents
//! without results; the next run reports them (their outcome is unknown, and since every write
//! is safe to repeat, the new plan simply converges).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::plan::Action;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Intent,
    Applied,
    Failed,
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub run: String,
    pub at: String,
    pub address: Address,
    pub action: Action,
    pub event: Event,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub struct Journal {
    path: PathBuf,
    run: String,
    file: Mutex<std::fs::File>,
}

/// A step an earlier run started and never finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupted {
    pub run: String,
    pub at: String,
    pub address: Address,
    pub action: Action,
}

impl Journal {
    /// Opens the journal for a new run.
    pub fn open(state_dir: &Path, run: String) -> std::io::Result<Journal> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join("journal.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Journal {
            path,
            run,
            file: Mutex::new(file),
        })
    }

    /// Steps of earlier runs with an intent and no result.
    pub fn interrupted(&self) -> Vec<Interrupted> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut open: BTreeMap<(String, Address), Entry> = BTreeMap::new();
        for entry in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        {
            let key = (entry.run.clone(), entry.address.clone());
            if entry.event == Event::Intent {
                open.insert(key, entry);
            } else {
                open.remove(&key);
            }
        }
        open.into_values()
            .filter(|e| e.run != self.run)
            .map(|e| Interrupted {
                run: e.run,
                at: e.at,
                address: e.address,
                action: e.action,
            })
            .collect()
    }

    /// Appends an entry and flushes it to disk before returning.
    pub fn record(
        &self,
        address: &Address,
        action: Action,
        event: Event,
        detail: Option<String>,
    ) -> std::io::Result<()> {
        let entry = Entry {
            run: self.run.clone(),
            at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            address: address.clone(),
            action,
            event,
            detail,
        };
        let mut line = serde_json::to_vec(&entry).expect("entry serialises");
        line.push(b'\n');
        let mut file = self.file.lock().expect("journal lock");
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Marks interrupted steps of earlier runs as settled (reported), so they are reported once.
    pub fn settle(&self, interrupted: &[Interrupted]) -> std::io::Result<()> {
        let mut file = self.file.lock().expect("journal lock");
        for i in interrupted {
            let entry = Entry {
                run: i.run.clone(),
                at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                address: i.address.clone(),
                action: i.action,
                event: Event::Skipped,
                detail: Some(format!("interrupted; reported by run {}", self.run)),
            };
            let mut line = serde_json::to_vec(&entry).expect("entry serialises");
            line.push(b'\n');
            file.write_all(&line)?;
        }
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_without_results_are_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = Address::User {
            username: "a".into(),
        };
        let b = Address::User {
            username: "b".into(),
        };
        let first = Journal::open(dir.path(), "run-1".into()).unwrap();
        first
            .record(&a, Action::Create, Event::Intent, None)
            .unwrap();
        first
            .record(&a, Action::Create, Event::Applied, None)
            .unwrap();
        first
            .record(&b, Action::Create, Event::Intent, None)
            .unwrap();
        drop(first); // killed here
        let second = Journal::open(dir.path(), "run-2".into()).unwrap();
        let interrupted = second.interrupted();
        assert_eq!(interrupted.len(), 1);
        assert_eq!(interrupted[0].address, b);
        second.settle(&interrupted).unwrap();
        assert!(
            Journal::open(dir.path(), "run-3".into())
                .unwrap()
                .interrupted()
                .is_empty()
        );
    }
}
