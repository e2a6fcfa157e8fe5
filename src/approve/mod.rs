//! Approval checkpoints: approvals bound to a plan's sha256 and to a GitLab identity proven by
//! GitLab ([`proof`]), and the gates of `reconcile.yaml` (how many approvals, who may approve,
//! self-approval by GitLab user id).
//!
//! Pure, except [`verify_approval`] and [`verify_author`], which ask GitLab through the
//! [`Directory`] trait. The approvals file (`<plan file>.approvals.json`) has one writer:
//! [`add_approval`].
//!
//! Must never: count an approval without a valid proof, count one person twice, or trust a
//! name that GitLab did not vouch for.

pub mod proof;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{AuthorVia, Plan, PlanFile};
use crate::secret::FingerprintKey;
use crate::spec::config::{Config, Gate};
use crate::trust::Trusted;

/// A GitLab user as GitLab reported them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitlabUser {
    pub id: u64,
    pub username: String,
}

/// One approval as stored in an approvals file. It counts only once its [`Proof`] is verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The plan this approves; an approval is worth nothing for any other plan.
    pub plan_sha256: String,
    /// The GitLab username the approval claims; the proof must show that user.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether this approval also covers the plan's promotion overrides (`approve --override`).
    #[serde(rename = "override", default, skip_serializing_if = "is_false")]
    pub promotion_override: bool,
    /// Who GitLab says approved. Without it the approval never counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Proof of an approver's identity ([`proof`] module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proof {
    /// An SSHSIG signature (armored) of [`proof::payload`] by a key registered in GitLab.
    Ssh { signature: String },
    /// Made inside a GitLab CI job of the plan's pipeline.
    CiJob { project_id: u64, job_id: u64 },
    /// Verified by the daemon with the approver's own GitLab token (`GET /user`) and
    /// attested with the reconcile key.
    GitlabSignIn { user_id: u64, attestation: String },
}

impl Proof {
    pub fn describe(&self) -> String {
        match self {
            Self::Ssh { .. } => "SSH signature".into(),
            Self::CiJob { job_id, .. } => format!("GitLab CI job {job_id}"),
            Self::GitlabSignIn { .. } => "GitLab sign-in on the daemon".into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvals {
    pub approvals: Vec<Approval>,
}

/// An approval whose proof GitLab vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedApproval {
    pub user: GitlabUser,
    pub promotion_override: bool,
    /// How it was proven, for messages and the audit log.
    pub via: String,
}

/// The plan's author, as far as it could be verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifiedAuthor {
    Known(GitlabUser),
    /// Why it is not known; self-approval rules cannot be checked.
    Unknown(String),
}

/// What verification needs to ask GitLab (implemented over the REST API by the GitLab
/// provider; a fake in unit tests).
#[async_trait::async_trait]
pub trait Directory: Send + Sync {
    /// The user who registered the SSH key with this `SHA256:…` fingerprint.
    async fn key_owner(&self, fingerprint: &str) -> Result<Option<GitlabUser>, String>;
    /// A CI job of a project.
    async fn job(&self, project_id: u64, job_id: u64) -> Result<Option<CiJob>, String>;
    /// A CI job's log.
    async fn job_trace(&self, project_id: u64, job_id: u64) -> Result<String, String>;
}

/// A GitLab CI job as GitLab reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CiJob {
    pub id: u64,
    pub status: String,
    pub user: GitlabUser,
    pub pipeline_id: u64,
    pub project_id: u64,
}

/// The approvals file of a plan file.
pub fn approvals_path(plan_file: &Path) -> PathBuf {
    let mut name = plan_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".approvals.json");
    plan_file.with_file_name(name)
}

/// Reads the approvals of a plan file (none when the file does not exist).
pub fn read_approvals(plan_file: &Path) -> Result<Approvals, String> {
    let path = approvals_path(plan_file);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("`{}` is not an approvals file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Approvals::default()),
        Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
    }
}

/// Adds `approval` to the approvals file of `plan_file` (replacing an earlier one by the same
/// person of the same kind), atomically. The only writer of approvals files.
pub fn add_approval(plan_file: &Path, approval: Approval) -> Result<Approvals, String> {
    let mut approvals = read_approvals(plan_file).unwrap_or_default();
    approvals.approvals.retain(|a| {
        !(a.plan_sha256 == approval.plan_sha256
            && a.by.eq_ignore_ascii_case(&approval.by)
            && a.promotion_override == approval.promotion_override)
    });
    approvals.approvals.push(approval);
    let text = serde_json::to_string_pretty(&approvals).expect("approvals serialise") + "\n";
    let path = approvals_path(plan_file);
    crate::files::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    Ok(approvals)
}

/// The gate `reconcile.yaml` sets for a scope: `gitlab` or an environment. Other scopes have
/// none.
pub fn gate<'a>(config: &'a Config, scope: &str) -> Option<&'a Gate> {
    match scope {
        "gitlab" => Some(&config.gitlab.approval),
        env => config.environments.get(env).map(|e| &e.approval),
    }
}

/// The gates a scope's approvals must satisfy: the one in `reconcile.yaml` and, when it
/// differs, the one in force (recorded with the scope's last approved apply). A change of a
/// gate thus needs the approvers of the gate it replaces.
#[derive(Clone, Debug, Default)]
pub struct Gates {
    by_scope: BTreeMap<String, Vec<ScopeGate>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeGate {
    pub gate: Gate,
    /// The recorded gate in force, which `reconcile.yaml` changes.
    pub in_force: bool,
    /// The recorded gate of another scope whose targets this scope writes to.
    pub inherited_from: Option<String>,
}

/// What each scope writes to, from the desired state: an environment's ECS clusters. The
/// gate recorded for a target follows it whatever the scope is called.
pub fn targets(state: &crate::spec::DesiredState) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &state.services {
        out.entry(s.spec.environment.clone())
            .or_default()
            .insert(format!("ecs cluster {}", s.spec.cluster));
    }
    out
}

impl Gates {
    pub fn new(config: &Config, trusted: &Trusted) -> Self {
        let mut scopes: BTreeSet<String> = config.environments.keys().cloned().collect();
        scopes.insert("gitlab".into());
        scopes.extend(trusted.scopes().map(String::from));
        let by_scope = scopes
            .into_iter()
            .map(|scope| {
                let current = gate(config, &scope).cloned().unwrap_or_default();
                let mut list = Vec::new();
                if let Some(recorded) = trusted.gate(&scope)
                    && *recorded != current
                {
                    list.push(ScopeGate {
                        gate: recorded.clone(),
                        in_force: true,
                        inherited_from: None,
                    });
                }
                list.push(ScopeGate {
                    gate: current,
                    in_force: false,
                    inherited_from: None,
                });
                (scope, list)
            })
            .collect();
        Self { by_scope }
    }

    /// The gates of the desired state: those of [`Gates::new`] and, for each scope, the
    /// recorded gate of every other scope whose targets (ECS clusters) it now writes to.
    pub fn for_state(state: &crate::spec::DesiredState, trusted: &Trusted) -> Self {
        let targets = targets(state);
        Self::new(&state.config, trusted)
            .with_targets(trusted, &targets)
            .with_shared_targets(&state.config, &targets)
    }

    /// Scopes of the desired state that write to the same target are each under the other's
    /// gate in `reconcile.yaml` (an ungated environment pointed at production's cluster).
    pub fn with_shared_targets(
        mut self,
        config: &Config,
        targets: &BTreeMap<String, BTreeSet<String>>,
    ) -> Self {
        for (scope, mine) in targets {
            for (other, theirs) in targets {
                if other == scope || mine.is_disjoint(theirs) {
                    continue;
                }
                if let Some(g) = gate(config, other).filter(|g| g.required > 0) {
                    self.by_scope
                        .entry(scope.clone())
                        .or_default()
                        .push(ScopeGate {
                            gate: g.clone(),
                            in_force: false,
                            inherited_from: Some(other.clone()),
                        });
                }
            }
        }
        self
    }

    /// Adds to each scope the recorded gates of other scopes that had any of its targets.
    pub fn with_targets(
        mut self,
        trusted: &Trusted,
        targets: &BTreeMap<String, BTreeSet<String>>,
    ) -> Self {
        for (scope, mine) in targets {
            for (other, record) in trusted.records() {
                if other == scope || record.targets.is_disjoint(mine) || record.gate.required == 0 {
                    continue;
                }
                let list = self.by_scope.entry(scope.clone()).or_default();
                list.push(ScopeGate {
                    gate: record.gate.clone(),
                    in_force: true,
                    inherited_from: Some(other.to_string()),
                });
            }
        }
        self
    }

    /// Every gate of a scope needs at least `min` approvals (the daemon's held plans need one
    /// even where no gate is set, or holding would mean nothing).
    pub fn at_least(mut self, scopes: &BTreeSet<String>, min: u32) -> Self {
        for scope in scopes {
            let list = self.by_scope.entry(scope.clone()).or_insert_with(|| {
                vec![ScopeGate {
                    gate: Gate::default(),
                    in_force: false,
                    inherited_from: None,
                }]
            });
            for g in list {
                g.gate.required = g.gate.required.max(min);
            }
        }
        self
    }

    pub fn of(&self, scope: &str) -> &[ScopeGate] {
        self.by_scope.get(scope).map_or(&[], Vec::as_slice)
    }

    /// Approvals a scope needs (the most any of its gates needs).
    pub fn required(&self, scope: &str) -> u32 {
        self.of(scope)
            .iter()
            .map(|g| g.gate.required)
            .max()
            .unwrap_or(0)
    }

    /// The scopes of `plan` that need approvals, with how many.
    pub fn gated(&self, plan: &Plan) -> BTreeMap<String, u32> {
        plan.scopes()
            .into_iter()
            .map(|s| (s.to_string(), self.required(s)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Why `user` may not approve under `gate` a plan by `author`, if they may not.
fn ineligible(
    gate: &Gate,
    scope: &str,
    author: &VerifiedAuthor,
    user: &GitlabUser,
) -> Option<String> {
    if !gate.approvers.is_empty()
        && !gate
            .approvers
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&user.username))
    {
        return Some(format!(
            "`{}` is not an approver of {scope} (approvers: {})",
            user.username,
            gate.approvers.join(", ")
        ));
    }
    if !gate.allow_self_approval
        && let VerifiedAuthor::Known(a) = author
        && a.id == user.id
    {
        return Some(format!(
            "`{}` made this plan and {scope} does not allow self-approval",
            user.username
        ));
    }
    None
}

/// Whether `user` may approve at least one gated scope of the plan; the scopes they may
/// approve, or why not (for `reconcile approve`, before anything is recorded).
pub fn eligible_scopes(
    gates: &Gates,
    plan: &Plan,
    author: &VerifiedAuthor,
    user: &GitlabUser,
    promotion_override: bool,
) -> Result<Vec<String>, String> {
    let gated = gates.gated(plan);
    if gated.is_empty() && !promotion_override {
        return Err("this plan touches no gated scope: it needs no approval".into());
    }
    if promotion_override && plan.overrides.is_empty() {
        return Err("this plan has no promotion override: approve it without --override".into());
    }
    let mut scopes = BTreeSet::new();
    let mut refused = Vec::new();
    // Eligible under one gate of the scope is enough: each gate counts its own approvers (a
    // changed gate needs the approvers of the gate in force and of the new one).
    let consider = |scope: &str, scopes: &mut BTreeSet<String>, refused: &mut Vec<String>| {
        let of = gates.of(scope);
        let why: Vec<String> = of
            .iter()
            .filter_map(|g| ineligible(&g.gate, scope, author, user))
            .collect();
        if why.len() < of.len() {
            scopes.insert(scope.to_string());
        } else {
            refused.extend(why);
        }
    };
    if promotion_override {
        for env in override_envs(plan) {
            consider(env, &mut scopes, &mut refused);
        }
        if !refused.is_empty() {
            return Err(dedup(refused).join("; "));
        }
    }
    for scope in gated.keys() {
        consider(scope, &mut scopes, &mut refused);
    }
    if scopes.is_empty() {
        return Err(dedup(refused).join("; "));
    }
    Ok(scopes.into_iter().collect())
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

/// The environments with a promotion override in the plan.
pub fn override_envs(plan: &Plan) -> BTreeSet<&str> {
    plan.overrides.iter().map(|o| o.env.as_str()).collect()
}

/// Checks that every gated scope of the plan has enough approvals by eligible approvers under
/// each of its gates. `standing` lists scopes whose gate is met without approvals: the daemon
/// restoring a scope to the desired state of its last approved apply.
pub fn check(
    gates: &Gates,
    plan: &Plan,
    author: &VerifiedAuthor,
    approvals: &[VerifiedApproval],
    standing: &BTreeSet<String>,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (scope, _) in gates.gated(plan) {
        if standing.contains(&scope) {
            continue;
        }
        for g in gates.of(&scope) {
            if g.gate.required == 0 {
                continue;
            }
            let label = match (&g.inherited_from, g.in_force) {
                (Some(other), _) => {
                    format!("{scope} (under the gate of {other}, whose targets it writes to)")
                }
                (None, true) => {
                    format!("{scope} (under the gate in force, which reconcile.yaml changes)")
                }
                (None, false) => scope.clone(),
            };
            if !g.gate.allow_self_approval
                && let VerifiedAuthor::Unknown(why) = author
            {
                problems.push(format!(
                    "{label} does not allow self-approval, but the plan's author is not verified ({why}): plan again with GITLAB_TOKEN set or in GitLab CI"
                ));
                continue;
            }
            let counted: BTreeMap<u64, &str> = approvals
                .iter()
                .filter(|a| ineligible(&g.gate, &scope, author, &a.user).is_none())
                .map(|a| (a.user.id, a.user.username.as_str()))
                .collect();
            if (counted.len() as u32) < g.gate.required {
                let have = if counted.is_empty() {
                    "none".to_string()
                } else {
                    let mut names: Vec<&str> = counted.values().copied().collect();
                    names.sort_unstable();
                    names.join(", ")
                };
                problems.push(format!(
                    "{label} needs {} approval(s) of this plan, has {} ({have})",
                    g.gate.required,
                    counted.len()
                ));
            }
        }
    }
    for env in override_envs(plan) {
        if let VerifiedAuthor::Unknown(why) = author
            && gates.of(env).iter().any(|g| !g.gate.allow_self_approval)
        {
            problems.push(format!(
                "{env} has promotion override(s) and does not allow self-approval, but the plan's author is not verified ({why}): plan again with GITLAB_TOKEN set or in GitLab CI"
            ));
            continue;
        }
        let approved = approvals.iter().any(|a| {
            a.promotion_override
                && gates
                    .of(env)
                    .iter()
                    .all(|g| ineligible(&g.gate, env, author, &a.user).is_none())
        });
        if !approved {
            let services: Vec<String> = plan
                .overrides
                .iter()
                .filter(|o| o.env == env)
                .map(|o| format!("{}/{}", o.env, o.service))
                .collect();
            problems.push(format!(
                "{env} has promotion override(s) ({}) that need an approval with --override of this plan, has none",
                services.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Checks one approval's proof with GitLab. The error says why it does not count (never a
/// secret: signatures and attestations are not echoed).
pub async fn verify_approval(
    approval: &Approval,
    file: &PlanFile,
    directory: &dyn Directory,
    key: Option<&FingerprintKey>,
) -> Result<VerifiedApproval, String> {
    let hash = &file.hash;
    if &approval.plan_sha256 != hash {
        return Err(format!(
            "is for another plan ({})",
            short(&approval.plan_sha256)
        ));
    }
    let claims = |user: GitlabUser, via: String| {
        if user.username.eq_ignore_ascii_case(&approval.by) {
            Ok(VerifiedApproval {
                user,
                promotion_override: approval.promotion_override,
                via,
            })
        } else {
            Err(format!(
                "names `{}`, but its proof shows `{}`",
                approval.by, user.username
            ))
        }
    };
    match &approval.proof {
        None => Err(
            "has no proof of identity: sign it (`reconcile approve PLANFILE --sign KEY`), approve in a GitLab CI job of the plan's pipeline, or on the daemon's page".into(),
        ),
        Some(Proof::Ssh { signature }) => {
            let payload = proof::payload(hash, approval.promotion_override);
            let fingerprint =
                proof::verify_signature(signature, &payload).map_err(|e| e.to_string())?;
            match directory.key_owner(&fingerprint).await? {
                Some(user) => claims(user, format!("SSH key {fingerprint}")),
                None => Err(format!(
                    "is signed with the SSH key {fingerprint}, which no GitLab user has registered: add the public key to your GitLab profile (User settings → SSH keys)"
                )),
            }
        }
        Some(Proof::CiJob { project_id, job_id }) => {
            let Some(origin) = file.plan.origin else {
                return Err(format!(
                    "was made in CI job {job_id}, but the plan was not made in a GitLab CI pipeline"
                ));
            };
            if origin.project_id != *project_id {
                return Err(format!(
                    "was made in CI job {job_id} of project {project_id}, not of the plan's project {}",
                    origin.project_id
                ));
            }
            let job = directory
                .job(*project_id, *job_id)
                .await?
                .ok_or_else(|| format!("names CI job {job_id}, which GitLab does not know in project {project_id}"))?;
            if job.pipeline_id != origin.pipeline_id {
                return Err(format!(
                    "was made in CI job {job_id} of pipeline {}, not of the plan's pipeline {}",
                    job.pipeline_id, origin.pipeline_id
                ));
            }
            if job.status != "success" {
                return Err(format!(
                    "was made in CI job {job_id}, whose status is `{}`, not `success`",
                    job.status
                ));
            }
            let trace = directory.job_trace(*project_id, *job_id).await?;
            let line = proof::ci_approval_line(hash, approval.promotion_override, *job_id);
            if !trace.lines().any(|l| l.trim_end() == line) {
                return Err(format!(
                    "names CI job {job_id}, whose log does not show this approval"
                ));
            }
            claims(job.user, format!("GitLab CI job {job_id}"))
        }
        Some(Proof::GitlabSignIn {
            user_id,
            attestation,
        }) => {
            let Some(key) = key else {
                return Err(
                    "was made on the daemon, and this run has no reconcile key to check it (RECONCILE_FINGERPRINT_KEY or GITLAB_TOKEN)".into(),
                );
            };
            let message = proof::attestation_message(
                hash,
                *user_id,
                &approval.by,
                approval.promotion_override,
            );
            if !key.verify(proof::APPROVAL_ATTESTATION, &message, attestation) {
                return Err(
                    "claims a GitLab sign-in on the daemon, but its attestation does not verify (another reconcile key made it, or it was edited)".into(),
                );
            }
            Ok(VerifiedApproval {
                user: GitlabUser {
                    id: *user_id,
                    username: approval.by.clone(),
                },
                promotion_override: approval.promotion_override,
                via: "GitLab sign-in on the daemon".into(),
            })
        }
    }
}

/// Checks who made the plan.
pub async fn verify_author(
    file: &PlanFile,
    directory: &dyn Directory,
    key: Option<&FingerprintKey>,
) -> VerifiedAuthor {
    let author = &file.plan.author;
    let Some(user_id) = author.user_id else {
        return VerifiedAuthor::Unknown("no GitLab identity was available when it was made".into());
    };
    let user = GitlabUser {
        id: user_id,
        username: author.username.clone(),
    };
    match author.via {
        AuthorVia::Unverified => {
            VerifiedAuthor::Unknown("no GitLab identity was available when it was made".into())
        }
        AuthorVia::Token => {
            let attested = match (key, &file.author_attestation) {
                (Some(key), Some(att)) => {
                    key.verify(proof::AUTHOR_ATTESTATION, file.hash.as_bytes(), att)
                }
                _ => false,
            };
            if attested {
                VerifiedAuthor::Known(user)
            } else {
                VerifiedAuthor::Unknown(
                    "its author attestation is missing or was made with another reconcile key"
                        .into(),
                )
            }
        }
        AuthorVia::CiJob => {
            let Some(origin) = file.plan.origin else {
                return VerifiedAuthor::Unknown("it names no CI job".into());
            };
            let job = match directory.job(origin.project_id, origin.job_id).await {
                Ok(Some(job)) => job,
                Ok(None) => {
                    return VerifiedAuthor::Unknown(format!(
                        "GitLab does not know its CI job {}",
                        origin.job_id
                    ));
                }
                Err(e) => return VerifiedAuthor::Unknown(e),
            };
            let trace = directory
                .job_trace(origin.project_id, origin.job_id)
                .await
                .unwrap_or_default();
            let made_there = trace
                .lines()
                .any(|l| l.trim_end() == proof::ci_plan_line(&file.hash, origin.job_id));
            if job.user.id == user_id && job.pipeline_id == origin.pipeline_id && made_there {
                VerifiedAuthor::Known(job.user)
            } else {
                VerifiedAuthor::Unknown(format!(
                    "CI job {} does not show that {} made this plan",
                    origin.job_id, author.username
                ))
            }
        }
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests;
