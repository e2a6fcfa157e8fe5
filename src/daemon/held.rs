//! Plans held for approval: one per scope, as a plan file with its approvals file in
//! `<state dir>/held/` (`production.plan.json`, `production.plan.json.approvals.json`), so the
//! CLI (`reconcile approve`, `reconcile apply`) works on them too.

use std::path::{Path, PathBuf};

use crate::approve::{self, Approvals};
use crate::plan::{Plan, PlanFile};

pub struct HeldPlan {
    pub scope: String,
    pub path: PathBuf,
    pub file: PlanFile,
    pub approvals: Approvals,
}

impl HeldPlan {
    pub fn plan(&self) -> &Plan {
        &self.file.plan
    }

    pub fn hash(&self) -> &str {
        &self.file.hash
    }
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
        let file = match Plan::from_file(&text) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Ignoring a held plan file");
                return None;
            }
        };
        let approvals = approve::read_approvals(&path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Ignoring an approvals file");
            Approvals::default()
        });
        Some(HeldPlan {
            scope: scope.to_string(),
            path,
            file,
            approvals,
        })
    }

    pub fn find(&self, hash: &str) -> Option<HeldPlan> {
        self.list().into_iter().find(|h| h.hash() == hash)
    }

    /// Holds `plan` for `scope`, replacing the plan held before and its approvals.
    pub fn put(
        &self,
        scope: &str,
        plan: &Plan,
        author_attestation: Option<&str>,
    ) -> std::io::Result<HeldPlan> {
        let path = self.path(scope);
        let _ = std::fs::remove_file(approve::approvals_path(&path));
        let file = plan.write_file(&path, author_attestation)?;
        Ok(HeldPlan {
            scope: scope.to_string(),
            path,
            file,
            approvals: Approvals::default(),
        })
    }

    pub fn remove(&self, scope: &str) {
        let path = self.path(scope);
        let _ = std::fs::remove_file(approve::approvals_path(&path));
        let _ = std::fs::remove_file(path);
    }
}
