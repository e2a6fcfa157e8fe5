//! The plan: the minimal change set from live to desired, immutable and hashed.
//!
//! Owns: computing steps from desired resources and live state (pure), the canonical JSON form
//! with its sha256, and rendering ([`render`]). A plan holds no secret value: sensitive fields
//! are keyed fingerprints, and apply resolves the values again.

pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::graph::Graph;
use crate::live::{Desired, Fields, LiveState, Observed, Value};

/// Version of the plan file format.
pub const FORMAT: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    /// Delete then create (a field that cannot change in place).
    Replace,
    Delete,
}

impl Action {
    /// The name used in plan files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Replace => "replace",
            Self::Delete => "delete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub address: Address,
    pub action: Action,
    /// `gitlab`, `aws`, or an environment name.
    pub scope: String,
    /// Changed fields (for a create: every field, before absent).
    pub changes: Vec<FieldChange>,
    /// The desired fields in full: what apply writes.
    pub desired: Fields,
    /// Fingerprint of the live state the step was computed against (`absent` for a create).
    pub precondition: String,
    /// Steps of this plan that must succeed first.
    pub depends_on: Vec<Address>,
    pub notes: Vec<String>,
}

impl Step {
    /// The names of the changed fields, comma-separated (no values: safe for any message).
    pub fn changed_fields(&self) -> String {
        let fields: Vec<&str> = self.changes.iter().map(|c| c.field.as_str()).collect();
        fields.join(", ")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub address: Address,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    /// Revision of the desired state the plan was computed from (`git:<commit>` or
    /// `content:<hash>`).
    pub revision: String,
    /// When the plan was made (RFC 3339, UTC); apply refuses plans older than `plan.max_age`.
    pub created_at: String,
    /// Who made the plan (`GITLAB_USER_LOGIN` in GitLab CI, else `USER`); self-approval rules
    /// compare approvers with it.
    pub author: String,
    pub steps: Vec<Step>,
    /// Live objects not in the desired state and not pruned (left alone).
    pub unmanaged: Vec<Address>,
    /// Resources that could not be planned (a failed read, or a dependency of one).
    pub blocked: Vec<Blocked>,
    /// Compliance findings on the desired state in scope; an `error` blocks apply.
    #[serde(default)]
    pub policies: Vec<crate::policy::Finding>,
    /// Promotion overrides (`plan --promotion-override ENV/SERVICE=REASON`): services of a
    /// promoted environment that may move to images their source environment does not run
    /// stable. Apply needs an approval with `override` for them. Absent from the file (and the
    /// hash) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<PromotionOverride>,
}

/// An override of the promotion rule for one service of a promoted environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionOverride {
    pub env: String,
    pub service: String,
    pub reason: String,
}

impl PromotionOverride {
    /// Parses `ENV/SERVICE=REASON` (the reason must not be empty).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (target, reason) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected ENV/SERVICE=REASON"))?;
        let (env, service) = target
            .split_once('/')
            .ok_or_else(|| format!("`{target}`: expected ENV/SERVICE"))?;
        let (env, service, reason) = (env.trim(), service.trim(), reason.trim());
        if env.is_empty() || service.is_empty() {
            return Err(format!("`{target}`: expected ENV/SERVICE"));
        }
        if reason.is_empty() {
            return Err(format!(
                "`{target}`: an override needs a reason (ENV/SERVICE=REASON)"
            ));
        }
        Ok(Self {
            env: env.into(),
            service: service.into(),
            reason: reason.into(),
        })
    }

    /// The override of `env/service` in `overrides`, if any.
    pub fn find<'a>(overrides: &'a [Self], env: &str, service: &str) -> Option<&'a Self> {
        overrides
            .iter()
            .find(|o| o.env == env && o.service == service)
    }
}

/// Per-collection prune settings: the owner address of each collection that prunes, with the
/// kind it prunes (`gitlab.member`, ...).
pub type Prune = BTreeSet<(Address, &'static str)>;

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The scopes (`gitlab`, environments) the plan's steps touch.
    pub fn scopes(&self) -> BTreeSet<&str> {
        self.steps.iter().map(|s| s.scope.as_str()).collect()
    }

    /// The part of the plan whose steps `keep` selects, with the blocked resources and policy
    /// findings of the scopes kept; dependencies on steps left out are dropped.
    pub fn part(&self, keep: impl Fn(&Step) -> bool) -> Plan {
        let steps: Vec<Step> = self.steps.iter().filter(|s| keep(s)).cloned().collect();
        let kept: BTreeSet<Address> = steps.iter().map(|s| s.address.clone()).collect();
        let scopes: BTreeSet<String> = steps.iter().map(|s| s.scope.clone()).collect();
        let in_scope = |a: &Address| scopes.contains(&a.scope_name());
        Plan {
            steps: steps
                .into_iter()
                .map(|mut s| {
                    s.depends_on.retain(|d| kept.contains(d));
                    s
                })
                .collect(),
            unmanaged: self
                .unmanaged
                .iter()
                .filter(|a| in_scope(a))
                .cloned()
                .collect(),
            blocked: self
                .blocked
                .iter()
                .filter(|b| in_scope(&b.address))
                .cloned()
                .collect(),
            policies: self
                .policies
                .iter()
                .filter(|f| in_scope(&f.address))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    pub fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }

    /// Whether this (approved) plan's steps are still what would be done now: each step
    /// recomputed from fresh live state writes the same thing (a changed precondition is fine
    /// when the step is the same). The error lists the steps that changed.
    pub fn still_current(&self, fresh: &Plan) -> Result<(), String> {
        let mut changed = Vec::new();
        for step in &self.steps {
            match fresh.steps.iter().find(|s| s.address == step.address) {
                Some(now) if now.action == step.action && now.desired == step.desired => {}
                Some(now) => changed.push(format!(
                    "  {}: the plan says {}, now it would be {} ({})",
                    step.address,
                    step.action.as_str(),
                    now.action.as_str(),
                    now.changed_fields()
                )),
                None if fresh.blocked.iter().any(|b| b.address == step.address) => {
                    changed.push(format!("  {}: cannot be read now", step.address))
                }
                None => changed.push(format!("  {}: needs no change any more", step.address)),
            }
        }
        if changed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "live state changed since the plan:\n{}",
                changed.join("\n")
            ))
        }
    }

    /// sha256 of the canonical JSON of the plan.
    pub fn hash(&self) -> String {
        let body = serde_json::to_vec(self).expect("plan serialises");
        hex::encode(Sha256::digest(body))
    }

    /// The plan file: `{"sha256": ..., "plan": ...}`, canonical (fields in a fixed order, maps sorted).
    pub fn to_file(&self) -> String {
        let file = serde_json::json!({ "sha256": self.hash(), "plan": self });
        serde_json::to_string_pretty(&file).expect("plan serialises") + "\n"
    }

    /// Reads a plan file, refusing one whose body does not match its hash.
    pub fn from_file(text: &str) -> Result<Self, PlanFileError> {
        #[derive(Deserialize)]
        struct File {
            sha256: String,
            plan: Plan,
        }
        let file: File =
            serde_json::from_str(text).map_err(|e| PlanFileError::Malformed(e.to_string()))?;
        if file.plan.format != FORMAT {
            return Err(PlanFileError::Format(file.plan.format));
        }
        let actual = file.plan.hash();
        if actual != file.sha256 {
            return Err(PlanFileError::HashMismatch {
                recorded: file.sha256,
                actual,
            });
        }
        Ok(file.plan)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("not a reconcile plan file: {0}")]
    Malformed(String),
    #[error("plan file format {0} is not supported (expected {FORMAT})")]
    Format(u32),
    #[error("plan file was edited: its body hashes to {actual}, not the recorded {recorded}")]
    HashMismatch { recorded: String, actual: String },
}

/// Computes the plan. Pure: same inputs, same plan.
///
/// `replace_notes` gives the note a replace of an address needs (e.g. the unprotected window of
/// a CE protected branch).
pub fn compute(
    revision: &str,
    desired: &[Desired],
    live: &LiveState,
    graph: &Graph,
    prune: &Prune,
    replace_note: &dyn Fn(&Address) -> Option<String>,
) -> Plan {
    let mut blocked: BTreeMap<Address, String> = BTreeMap::new();
    for d in desired {
        match live.objects.get(&d.address) {
            Some(Observed::Unknown(reason)) => {
                blocked.insert(d.address.clone(), format!("live state unknown: {reason}"));
            }
            None => {
                blocked.insert(d.address.clone(), "live state was not read".into());
            }
            _ => {}
        }
    }
    // Dependents of a blocked resource are blocked too.
    let mut frontier: Vec<Address> = blocked.keys().cloned().collect();
    while let Some(a) = frontier.pop() {
        for dependent in graph.dependents(&a) {
            if !blocked.contains_key(dependent) {
                blocked.insert(
                    dependent.clone(),
                    format!("depends on {a}, which could not be read"),
                );
                frontier.push(dependent.clone());
            }
        }
    }

    let mut steps: BTreeMap<Address, Step> = BTreeMap::new();
    for d in desired {
        if blocked.contains_key(&d.address) {
            continue;
        }
        let (action, changes, precondition) = match live.objects.get(&d.address) {
            Some(Observed::Present(l)) => {
                let changes: Vec<FieldChange> = d
                    .fields
                    .iter()
                    .filter_map(|(field, want)| match l.fields.get(field) {
                        // A field the live system does not expose cannot be compared.
                        None => None,
                        Some(have) if have == want => None,
                        Some(have) => Some(FieldChange {
                            field: field.clone(),
                            before: Some(have.clone()),
                            after: Some(want.clone()),
                        }),
                    })
                    .collect();
                if changes.is_empty() {
                    continue;
                }
                let replace = changes
                    .iter()
                    .any(|c| d.replace_on.contains(&c.field.as_str()));
                (
                    if replace {
                        Action::Replace
                    } else {
                        Action::Update
                    },
                    changes,
                    l.fingerprint(),
                )
            }
            _ => (
                Action::Create,
                d.fields
                    .iter()
                    .map(|(f, v)| FieldChange {
                        field: f.clone(),
                        before: None,
                        after: Some(v.clone()),
                    })
                    .collect(),
                "absent".to_string(),
            ),
        };
        let notes = match action {
            Action::Replace => replace_note(&d.address).into_iter().collect(),
            _ => Vec::new(),
        };
        steps.insert(
            d.address.clone(),
            Step {
                address: d.address.clone(),
                action,
                scope: d.address.scope_name(),
                changes,
                desired: d.fields.clone(),
                precondition,
                depends_on: Vec::new(),
                notes,
            },
        );
    }

    let mut unmanaged = Vec::new();
    for (address, l) in &live.unmanaged {
        let pruned =
            graph_owner(address).is_some_and(|owner| prune.contains(&(owner, address.kind())));
        if pruned && !blocked.contains_key(address) {
            steps.insert(
                address.clone(),
                Step {
                    address: address.clone(),
                    action: Action::Delete,
                    scope: address.scope_name(),
                    changes: l
                        .fields
                        .iter()
                        .map(|(f, v)| FieldChange {
                            field: f.clone(),
                            before: Some(v.clone()),
                            after: None,
                        })
                        .collect(),
                    desired: Fields::new(),
                    precondition: l.fingerprint(),
                    depends_on: Vec::new(),
                    notes: Vec::new(),
                },
            );
        } else {
            unmanaged.push(address.clone());
        }
    }

    // Order: apply waves (dependencies first), deletes last; record in-plan dependencies.
    let mut ordered = Vec::with_capacity(steps.len());
    for wave in graph.apply_order() {
        for address in wave {
            if let Some(mut step) = steps.remove(address) {
                step.depends_on = graph
                    .dependencies(address)
                    .into_iter()
                    .filter(|a| ordered_contains(&ordered, a))
                    .cloned()
                    .collect();
                ordered.push(step);
            }
        }
    }
    ordered.extend(steps.into_values());
    Plan {
        format: FORMAT,
        revision: revision.to_string(),
        created_at: String::new(),
        author: String::new(),
        steps: ordered,
        unmanaged,
        blocked: blocked
            .into_iter()
            .map(|(address, reason)| Blocked { address, reason })
            .collect(),
        policies: Vec::new(),
        overrides: Vec::new(),
    }
}

fn ordered_contains(steps: &[Step], address: &Address) -> bool {
    steps.iter().any(|s| &s.address == address)
}

/// The address of the collection owner of a child object (its project).
pub fn graph_owner(address: &Address) -> Option<Address> {
    match address {
        Address::Member { project, .. }
        | Address::ProtectedBranch { project, .. }
        | Address::Variable { project, .. } => Some(Address::Project {
            path: project.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::EdgeKind;
    use crate::live::Live;

    fn project() -> Address {
        Address::Project {
            path: "root/app".into(),
        }
    }

    fn var(key: &str) -> Address {
        Address::Variable {
            project: "root/app".into(),
            key: key.into(),
            scope: "*".into(),
        }
    }

    fn fields(pairs: &[(&str, Value)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn desired(address: Address, f: Fields) -> Desired {
        Desired {
            address,
            fields: f,
            replace_on: &["hidden"],
            secrets: Default::default(),
        }
    }

    fn setup(live_var: Observed) -> (Vec<Desired>, LiveState, Graph) {
        let d = vec![
            desired(project(), fields(&[("visibility", Value::str("private"))])),
            desired(
                var("A"),
                fields(&[("value", Value::str("x")), ("protected", Value::Bool(true))]),
            ),
        ];
        let mut live = LiveState::default();
        live.objects.insert(
            project(),
            Observed::Present(Live {
                fields: fields(&[("visibility", Value::str("private"))]),
                meta: Default::default(),
            }),
        );
        live.objects.insert(var("A"), live_var);
        let g = Graph::from_parts(
            [project(), var("A")],
            [(var("A"), project(), EdgeKind::Owner)],
        )
        .unwrap();
        (d, live, g)
    }

    #[test]
    fn no_diff_when_live_matches() {
        let (d, live, g) = setup(Observed::Present(Live {
            fields: fields(&[("value", Value::str("x")), ("protected", Value::Bool(true))]),
            meta: Default::default(),
        }));
        let plan = compute("r", &d, &live, &g, &Prune::new(), &|_| None);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn update_lists_only_changed_fields() {
        let (d, live, g) = setup(Observed::Present(Live {
            fields: fields(&[
                ("value", Value::str("x")),
                ("protected", Value::Bool(false)),
            ]),
            meta: Default::default(),
        }));
        let plan = compute("r", &d, &live, &g, &Prune::new(), &|_| None);
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].action, Action::Update);
        assert_eq!(
            plan.steps[0].changes,
            vec![FieldChange {
                field: "protected".into(),
                before: Some(Value::Bool(false)),
                after: Some(Value::Bool(true))
            }]
        );
    }

    #[test]
    fn unknown_blocks_and_never_creates() {
        let (d, mut live, g) = setup(Observed::Absent);
        live.objects
            .insert(project(), Observed::Unknown("500".into()));
        let plan = compute("r", &d, &live, &g, &Prune::new(), &|_| None);
        assert!(plan.steps.is_empty());
        assert_eq!(
            plan.blocked.len(),
            2,
            "the project and its dependent variable are blocked"
        );
    }

    #[test]
    fn unmanaged_objects_are_deleted_only_with_prune() {
        let (d, mut live, g) = setup(Observed::Present(Live {
            fields: fields(&[("value", Value::str("x")), ("protected", Value::Bool(true))]),
            meta: Default::default(),
        }));
        live.unmanaged.insert(
            var("EXTRA"),
            Live {
                fields: fields(&[("value", Value::str("y"))]),
                meta: Default::default(),
            },
        );
        let kept = compute("r", &d, &live, &g, &Prune::new(), &|_| None);
        assert_eq!(kept.unmanaged, vec![var("EXTRA")]);
        assert!(kept.steps.is_empty());
        let prune = Prune::from([(project(), "gitlab.variable")]);
        let pruned = compute("r", &d, &live, &g, &prune, &|_| None);
        assert_eq!(pruned.steps[0].action, Action::Delete);
        assert!(pruned.unmanaged.is_empty());
    }

    #[test]
    fn plan_file_round_trips_and_detects_edits() {
        let (d, live, g) = setup(Observed::Absent);
        let plan = compute("r", &d, &live, &g, &Prune::new(), &|_| None);
        let text = plan.to_file();
        assert_eq!(Plan::from_file(&text).unwrap(), plan);
        let edited = text.replace("\"x\"", "\"y\"");
        assert!(matches!(
            Plan::from_file(&edited),
            Err(PlanFileError::HashMismatch { .. })
        ));
    }
}
