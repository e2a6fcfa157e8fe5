//! The audit log (`<state dir>/audit.jsonl`): one JSON line per plan, approve, apply and refusal
//! (who, when, plan hash, outcome). Append-only; never holds a secret value.

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub at: String,
    pub event: &'a str,
    pub by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_sha256: Option<&'a str>,
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Appends a record; a failure to write is reported on stderr, never fatal.
pub fn append(
    state_dir: &Path,
    event: &str,
    by: &str,
    plan_sha256: Option<&str>,
    outcome: &str,
    detail: Option<String>,
) {
    let record = Record {
        at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        event,
        by,
        plan_sha256,
        outcome,
        detail,
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.join("audit.jsonl"))?;
        let mut line = serde_json::to_vec(&record).expect("record serialises");
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()
    };
    if let Err(e) = write() {
        eprintln!(
            "warning: cannot write the audit log in `{}`: {e}",
            state_dir.display()
        );
    }
}
