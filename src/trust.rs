//! What was approved and applied, per scope (`<state dir>/approved.json`): the digest of the
//! scope's desired state and the approval gate in force. Each entry is attested with the
//! reconcile key, so editing the file cannot forge one (an entry that does not verify is
//! ignored, with a warning).
//!
//! Two decisions rest on it: the daemon corrects drift in a gated scope only back to the
//! recorded digest (a new desired state is held until approved), and a gate changed in
//! `reconcile.yaml` needs the approvers of the recorded gate too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::FingerprintKey;
use crate::spec::config::Gate;

const PURPOSE: &str = "approved-scope";

/// The last approved apply of a scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRecord {
    /// Digest of the scope's desired state that was approved (see `Plan::digests`).
    pub digest: String,
    /// The gate in force from then on.
    pub gate: Gate,
    pub revision: String,
    pub plan_sha256: String,
    /// RFC 3339.
    pub at: String,
    /// What the scope writes to (e.g. `ecs cluster cloud-design-cluster-prod`): a scope under
    /// another name that writes there is under this gate too (renaming an environment, or
    /// pointing another one at its cluster, does not shed its gate).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub targets: BTreeSet<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    record: ScopeRecord,
    attestation: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    scopes: BTreeMap<String, Entry>,
}

/// The verified records of a state directory.
#[derive(Clone, Debug, Default)]
pub struct Trusted {
    scopes: BTreeMap<String, ScopeRecord>,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("approved.json")
}

fn message(scope: &str, record: &ScopeRecord) -> Vec<u8> {
    let body = serde_json::to_vec(&serde_json::to_value(record).expect("record serialises"))
        .expect("record serialises");
    [scope.as_bytes(), b"\0", &body].concat()
}

impl Trusted {
    /// Reads the records; entries that do not verify with `key` are left out and reported in
    /// the returned warnings. Without a key nothing can be verified.
    pub fn load(state_dir: &Path, key: Option<&FingerprintKey>) -> (Self, Vec<String>) {
        let p = path(state_dir);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return (Self::default(), Vec::new());
            }
            Err(e) => {
                return (
                    Self::default(),
                    vec![format!("cannot read `{}`: {e}", p.display())],
                );
            }
        };
        let file: File = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                return (
                    Self::default(),
                    vec![format!(
                        "`{}` is not a record of approved applies: {e}",
                        p.display()
                    )],
                );
            }
        };
        let mut warnings = Vec::new();
        let mut scopes = BTreeMap::new();
        for (scope, entry) in file.scopes {
            let ok = key.is_some_and(|k| {
                k.verify(PURPOSE, &message(&scope, &entry.record), &entry.attestation)
            });
            if ok {
                scopes.insert(scope, entry.record);
            } else {
                warnings.push(format!(
                    "the record of the last approved apply of {scope} in `{}` does not verify with this run's reconcile key: ignored",
                    p.display()
                ));
            }
        }
        (Self { scopes }, warnings)
    }

    pub fn get(&self, scope: &str) -> Option<&ScopeRecord> {
        self.scopes.get(scope)
    }

    pub fn gate(&self, scope: &str) -> Option<&Gate> {
        self.scopes.get(scope).map(|r| &r.gate)
    }

    pub fn records(&self) -> impl Iterator<Item = (&str, &ScopeRecord)> {
        self.scopes.iter().map(|(s, r)| (s.as_str(), r))
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.keys().map(String::as_str)
    }

    /// Records the approved apply of `scope` (attested), keeping the other scopes' records.
    /// Targets now written by `scope` move to it: the apply passed the gates of the scopes
    /// that had them (inherited gates), so those gates no longer follow them.
    pub fn record(
        state_dir: &Path,
        key: &FingerprintKey,
        scope: &str,
        record: ScopeRecord,
    ) -> std::io::Result<()> {
        let p = path(state_dir);
        let mut file: File = std::fs::read_to_string(&p)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        for (other, entry) in file.scopes.iter_mut() {
            let verified = key.verify(PURPOSE, &message(other, &entry.record), &entry.attestation);
            if other == scope || !verified || entry.record.targets.is_disjoint(&record.targets) {
                continue;
            }
            entry.record.targets.retain(|t| !record.targets.contains(t));
            entry.attestation = key.attest(PURPOSE, &message(other, &entry.record));
        }
        let attestation = key.attest(PURPOSE, &message(scope, &record));
        file.scopes.insert(
            scope.to_string(),
            Entry {
                record,
                attestation,
            },
        );
        let text = serde_json::to_string_pretty(&file).expect("records serialise") + "\n";
        crate::files::write_atomic(&p, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(digest: &str) -> ScopeRecord {
        ScopeRecord {
            digest: digest.into(),
            gate: Gate {
                required: 1,
                approvers: vec!["alice".into()],
                allow_self_approval: false,
            },
            revision: "r".into(),
            plan_sha256: "p".into(),
            at: "2026-12-04T00:00:00Z".into(),
            targets: Default::default(),
        }
    }

    #[test]
    fn records_verify_only_with_their_key_and_unedited() {
        let dir = tempfile::tempdir().unwrap();
        let key = FingerprintKey::new("k");
        Trusted::record(dir.path(), &key, "gitlab", record("d1")).unwrap();
        Trusted::record(dir.path(), &key, "production", record("d2")).unwrap();
        let (t, warnings) = Trusted::load(dir.path(), Some(&key));
        assert!(warnings.is_empty());
        assert_eq!(t.get("gitlab").unwrap().digest, "d1");
        assert_eq!(t.get("production").unwrap().digest, "d2");

        let (other, warnings) = Trusted::load(dir.path(), Some(&FingerprintKey::new("x")));
        assert!(other.get("gitlab").is_none());
        assert_eq!(warnings.len(), 2);

        // Lowering the gate by editing the file: the entry no longer verifies.
        let text = std::fs::read_to_string(dir.path().join("approved.json")).unwrap();
        std::fs::write(
            dir.path().join("approved.json"),
            text.replacen("\"required\": 1", "\"required\": 0", 1),
        )
        .unwrap();
        let (edited, warnings) = Trusted::load(dir.path(), Some(&key));
        assert_eq!(edited.scopes().count(), 1);
        assert_eq!(warnings.len(), 1);
    }
}
