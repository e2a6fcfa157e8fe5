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
use crate::live::{Desired, Fields, Live, LiveState, Observed, Value};

/// Version of the plan file format (2: identities, typed preconditions, scope digests, gate
/// changes, hash over the canonical JSON).
pub const FORMAT: u32 = 2;

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
    /// The live state the step was computed against: apply writes only while the resource
    /// still is exactly so (every field, not only the planned ones).
    pub precondition: Precondition,
    /// Steps of this plan that must succeed first.
    pub depends_on: Vec<Address>,
    pub notes: Vec<String>,
}

/// What a step expects to find live before it writes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precondition {
    /// Nothing there (a create).
    Absent,
    /// A live object whose fields have this fingerprint ([`crate::live::Live::fingerprint`]).
    Present(String),
}

impl Precondition {
    pub fn of(observed: Option<&Live>) -> Self {
        observed.map_or(Self::Absent, |l| Self::Present(l.fingerprint()))
    }
}

/// In the plan file: `"absent"` or the fingerprint (`sha256:…`).
impl Serialize for Precondition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Absent => s.serialize_str("absent"),
            Self::Present(fp) => s.serialize_str(fp),
        }
    }
}

impl<'de> Deserialize<'de> for Precondition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "absent" => Ok(Self::Absent),
            fp if fp.starts_with("sha256:") => Ok(Self::Present(text)),
            other => Err(serde::de::Error::custom(format!(
                "a precondition is `absent` or `sha256:…`, not `{other}`"
            ))),
        }
    }
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

/// Who made a plan, as GitLab knows them. Self-approval rules compare approvers with it by
/// GitLab user id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    /// How it is known; apply checks it again ([`AuthorVia`]).
    pub via: AuthorVia,
}

impl Plan {
    /// A plan with no step, for `revision`.
    pub fn empty(revision: &str) -> Self {
        Self {
            format: FORMAT,
            revision: revision.to_string(),
            created_at: String::new(),
            author: Author::unverified("none"),
            origin: None,
            digests: BTreeMap::new(),
            gate_changes: Vec::new(),
            steps: Vec::new(),
            unmanaged: Vec::new(),
            blocked: Vec::new(),
            policies: Vec::new(),
            overrides: Vec::new(),
        }
    }
}

impl Author {
    pub fn unverified(why: &str) -> Self {
        Self {
            username: format!("unverified ({why})"),
            user_id: None,
            via: AuthorVia::Unverified,
        }
    }

    /// For messages: `alice (GitLab user 7, token)`.
    pub fn describe(&self) -> String {
        match (self.via, self.user_id) {
            (AuthorVia::Token, Some(id)) => {
                format!("{} (GitLab user {id}, by token)", self.username)
            }
            (AuthorVia::CiJob, Some(id)) => format!("{} (GitLab user {id}, in CI)", self.username),
            _ => self.username.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorVia {
    /// The owner of the GitLab token that made the plan (`GET /user`); the plan file carries
    /// an attestation made with the reconcile key.
    Token,
    /// The user who ran the GitLab CI job in [`Plan::origin`]; apply asks GitLab about the job.
    CiJob,
    /// Nothing proves who made it (no GitLab identity was available).
    Unverified,
}

/// The GitLab CI job a plan was made in (from `GET /job` with the job's token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiOrigin {
    pub project_id: u64,
    pub pipeline_id: u64,
    pub job_id: u64,
}

/// A change of a scope's approval gate in `reconcile.yaml` since the gate in force (the one
/// recorded with the scope's last approved apply). It takes effect once a plan that shows it
/// is approved under both gates and applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateChange {
    pub scope: String,
    pub before: crate::spec::config::Gate,
    pub after: crate::spec::config::Gate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    /// Revision of the desired state the plan was computed from (`git:<commit>` or
    /// `content:<hash>`).
    pub revision: String,
    /// When the plan was made (RFC 3339, UTC); apply refuses plans older than `plan.max_age`.
    pub created_at: String,
    /// Who made the plan.
    pub author: Author,
    /// The GitLab CI job the plan was made in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<CiOrigin>,
    /// Digest of the desired state of each scope the plan covers: after an approved apply it
    /// is recorded, and the daemon corrects drift in a gated scope only back to that.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    /// Approval gates changed in `reconcile.yaml` since the gates in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gate_changes: Vec<GateChange>,
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
        self.steps.is_empty() && self.gate_changes.is_empty()
    }

    /// The scopes (`gitlab`, environments) the plan changes: its steps' and its gate changes'.
    pub fn scopes(&self) -> BTreeSet<&str> {
        self.steps
            .iter()
            .map(|s| s.scope.as_str())
            .chain(self.gate_changes.iter().map(|g| g.scope.as_str()))
            .collect()
    }

    /// The part of the plan for `scopes` whose steps `keep` selects, with the blocked
    /// resources, policy findings, gate changes and digests of those scopes; dependencies on
    /// steps left out are dropped.
    pub fn part(&self, scopes: &BTreeSet<String>, keep: impl Fn(&Step) -> bool) -> Plan {
        let steps: Vec<Step> = self
            .steps
            .iter()
            .filter(|s| scopes.contains(&s.scope) && keep(s))
            .cloned()
            .collect();
        let kept: BTreeSet<Address> = steps.iter().map(|s| s.address.clone()).collect();
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
            digests: self
                .digests
                .iter()
                .filter(|(s, _)| scopes.contains(*s))
                .map(|(s, d)| (s.clone(), d.clone()))
                .collect(),
            gate_changes: self
                .gate_changes
                .iter()
                .filter(|g| scopes.contains(&g.scope))
                .cloned()
                .collect(),
            overrides: self
                .overrides
                .iter()
                .filter(|o| scopes.contains(&o.env))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    pub fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }

    /// Deletions and replacements per kind (replacements delete before they create).
    pub fn destructive(&self) -> Destructive {
        let mut d = Destructive::default();
        for step in &self.steps {
            match step.action {
                Action::Delete => *d.deletes.entry(step.address.kind()).or_default() += 1,
                Action::Replace => *d.replaces.entry(step.address.kind()).or_default() += 1,
                Action::Create | Action::Update => {}
            }
        }
        d
    }

    /// sha256 of the plan's canonical JSON: the `plan` member of the plan file with object
    /// keys sorted and no whitespace (serde_json's compact form, UTF-8 unescaped):
    /// `jq -cjS .plan FILE | sha256sum` gives the same digest (checked with non-ASCII names).
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_value(self).expect("plan serialises");
        let body = serde_json::to_vec(&canonical).expect("plan serialises");
        hex::encode(Sha256::digest(body))
    }

    /// The plan file: `{"sha256": ..., "plan": ..., "author_attestation": ...}` with sorted keys.
    pub fn to_file(&self, author_attestation: Option<&str>) -> String {
        let mut file = serde_json::json!({ "sha256": self.hash(), "plan": self });
        if let Some(a) = author_attestation {
            file["author_attestation"] = serde_json::Value::String(a.to_string());
        }
        serde_json::to_string_pretty(&file).expect("plan serialises") + "\n"
    }

    /// Writes the plan file at `path` atomically and returns it as a reader will see it: the
    /// one writer of plan files (`reconcile plan --out`, the daemon's held plans).
    pub fn write_file(
        &self,
        path: &std::path::Path,
        author_attestation: Option<&str>,
    ) -> std::io::Result<PlanFile> {
        let text = self.to_file(author_attestation);
        crate::files::write_atomic(path, text.as_bytes())?;
        Self::from_file(&text).map_err(std::io::Error::other)
    }

    /// Reads a plan file, refusing one whose body does not match its hash.
    pub fn from_file(text: &str) -> Result<PlanFile, PlanFileError> {
        #[derive(Deserialize)]
        struct Head {
            plan: Head2,
        }
        #[derive(Deserialize)]
        struct Head2 {
            format: u32,
        }
        #[derive(Deserialize)]
        struct File {
            sha256: String,
            plan: Plan,
            #[serde(default)]
            author_attestation: Option<String>,
        }
        if let Ok(head) = serde_json::from_str::<Head>(text)
            && head.plan.format != FORMAT
        {
            return Err(PlanFileError::Format(head.plan.format));
        }
        let file: File =
            serde_json::from_str(text).map_err(|e| PlanFileError::Malformed(e.to_string()))?;
        let actual = file.plan.hash();
        if actual != file.sha256 {
            return Err(PlanFileError::HashMismatch {
                recorded: file.sha256,
                actual,
            });
        }
        Ok(PlanFile {
            hash: actual,
            plan: file.plan,
            author_attestation: file.author_attestation,
        })
    }
}

/// A plan file as read: the plan, its verified hash, and the attestation of its author.
#[derive(Clone, Debug)]
pub struct PlanFile {
    pub plan: Plan,
    pub hash: String,
    pub author_attestation: Option<String>,
}

/// Deletions and replacements of a plan, per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destructive {
    pub deletes: BTreeMap<&'static str, usize>,
    pub replaces: BTreeMap<&'static str, usize>,
}

impl Destructive {
    pub fn total(&self) -> usize {
        self.deletes.values().sum::<usize>() + self.replaces.values().sum::<usize>()
    }

    /// `6 deletions (gitlab.member: 6), 1 replacement (gitlab.protected_branch: 1)`.
    pub fn describe(&self) -> String {
        let part = |n: usize, one: &str, many: &str, by: &BTreeMap<&str, usize>| {
            let kinds: Vec<String> = by.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            format!(
                "{n} {} ({})",
                if n == 1 { one } else { many },
                kinds.join(", ")
            )
        };
        let mut parts = Vec::new();
        let d: usize = self.deletes.values().sum();
        if d > 0 {
            parts.push(part(d, "deletion", "deletions", &self.deletes));
        }
        let r: usize = self.replaces.values().sum();
        if r > 0 {
            parts.push(part(r, "replacement", "replacements", &self.replaces));
        }
        parts.join(", ")
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
                    Precondition::of(Some(l)),
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
                Precondition::Absent,
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
                    precondition: Precondition::of(Some(l)),
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
    let mut placed: BTreeSet<Address> = BTreeSet::new();
    for wave in graph.apply_order() {
        for address in wave {
            if let Some(mut step) = steps.remove(address) {
                step.depends_on = graph
                    .dependencies(address)
                    .into_iter()
                    .filter(|a| placed.contains(*a))
                    .cloned()
                    .collect();
                placed.insert(address.clone());
                ordered.push(step);
            }
        }
    }
    ordered.extend(steps.into_values());
    Plan {
        format: FORMAT,
        revision: revision.to_string(),
        created_at: String::new(),
        author: Author::unverified("not stamped"),
        origin: None,
        digests: BTreeMap::new(),
        gate_changes: Vec::new(),
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
        let text = plan.to_file(None);
        assert_eq!(Plan::from_file(&text).unwrap().plan, plan);
        let edited = text.replace("\"x\"", "\"y\"");
        assert!(matches!(
            Plan::from_file(&edited),
            Err(PlanFileError::HashMismatch { .. })
        ));
    }
}
