//! Plans held for approval: one per scope, as a plan file with its approvals file in
//! `<state dir>/held/` (`production.plan.json`, `production.plan.json.approvals.json`), so the
//! CLI (`reconcile approve`, `reconcile apply`) works on them too.

use std::path::{Path, PathBuf};

use crate::approve::{self, Approval, Approvals};
use crate::plan::Plan;

pub struct HeldPlan {
    pub scope: String,
    pub path: PathBuf,
    pub plan: Plan,
    pub hash: String,
    pub approvals: Approvals,
}

pub struct Held {
    dir: PathBuf,
}

impl Held {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("held"),
        }
    }

    fn path(&self, scope: &str) -> PathBuf {
        self.dir.join(format!("{scope}.plan.json"))
    }

    /// Every held plan (unreadable files are logged and skipped).
    pub fn list(&self) -> Vec<HeldPlan> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut scopes: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".plan.json"))
                    .map(str::to_string)
            })
            .collect();
        scopes.sort();
        scopes.iter().filter_map(|s| self.get(s)).collect()
    }

    pub fn get(&self, scope: &str) -> Option<HeldPlan> {
        let path = self.path(scope);
        let text = std::fs::read_to_string(&path).ok()?;
        let plan = match Plan::from_file(&text) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Ignoring a held plan file");
                return None;
            }
        };
        let approvals = std::fs::read_to_string(approve::approvals_path(&path))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Some(HeldPlan {
            scope: scope.to_string(),
            hash: plan.hash(),
            path,
            plan,
            approvals,
        })
    }

    pub fn find(&self, hash: &str) -> Option<HeldPlan> {
        self.list().into_iter().find(|h| h.hash == hash)
    }

    /// Holds `plan` for `scope`, replacing the plan held before and its approvals.
    pub fn put(&self, scope: &str, plan: &Plan) -> std::io::Result<HeldPlan> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(scope);
        let _ = std::fs::remove_file(approve::approvals_path(&path));
        write_atomic(&path, plan.to_file().as_bytes())?;
        Ok(HeldPlan {
            scope: scope.to_string(),
            hash: plan.hash(),
            path,
            plan: plan.clone(),
            approvals: Approvals::default(),
        })
    }

    pub fn remove(&self, scope: &str) {
        let path = self.path(scope);
        let _ = std::fs::remove_file(approve::approvals_path(&path));
        let _ = std::fs::remove_file(path);
    }

    /// Adds an approval to a held plan (replacing an earlier one by the same person).
    pub fn add_approval(&self, held: &mut HeldPlan, approval: Approval) -> std::io::Result<()> {
        held.approvals.approvals.retain(|a| {
            !(a.plan_sha256 == approval.plan_sha256 && a.by.eq_ignore_ascii_case(&approval.by))
        });
        held.approvals.approvals.push(approval);
        let text = serde_json::to_string_pretty(&held.approvals).expect("approvals serialise");
        write_atomic(&approve::approvals_path(&held.path), text.as_bytes())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, path)
}
