//! One verified plan type and one way to get it.
//!
//! [`ApprovedPlan`] can only be made by [`verify`], which checks everything a plan must satisfy
//! before anything is written: the desired-state revision it was made from, its age, the
//! compliance policies, the destructive-change guard, the identity of its author and of every
//! approver (proofs GitLab vouches for), the gates (counts, approvers, self-approval by user id,
//! gates changed in `reconcile.yaml`), and, live, the precondition of every step and the
//! promotion rule. The executor ([`crate::apply::run`]) takes only an `ApprovedPlan`; the CLI's
//! `apply` and the daemon both come through here.
//!
//! Must never: let a step write when the live state of its resource is not the one the plan
//! was computed against (unless the resource already is as the step wants it), or count an
//! approval GitLab did not vouch for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::address::Address;
use crate::approve::{
    self, Approvals, Directory, Gates, VerifiedApproval, VerifiedAuthor, verify_approval,
    verify_author,
};
use crate::live::{Desired, Fields, LiveState};
use crate::plan::{Action, Blocked, Destructive, Plan, PlanFile, Precondition, PromotionOverride};
use crate::policy::Finding;
use crate::providers::Providers;
use crate::providers::aws::Aws;
use crate::secret::FingerprintKey;
use crate::spec::DesiredState;
use crate::spec::config::Severity;
use crate::trust::Trusted;

/// Where the plan to verify comes from.
pub enum Source {
    /// A plan file with its approvals (`reconcile apply PLANFILE`, the daemon's held plans).
    File {
        file: PlanFile,
        approvals: Approvals,
    },
    /// A plan made now by this process (`apply --auto-approve`): no approvals, so only
    /// ungated scopes pass.
    Fresh { plan: Plan, author: VerifiedAuthor },
    /// The daemon's drift corrections, made now: a gated scope passes without approvals only
    /// while its desired state is the one of its last approved apply (a standing approval),
    /// with no deletion, gate change or promotion override in it.
    Correction { plan: Plan, author: VerifiedAuthor },
}

/// What verification compares the plan with: the desired state now and the settings.
pub struct Inputs<'a> {
    pub state: &'a DesiredState,
    /// The desired state's revision now.
    pub revision: &'a str,
    pub trusted: &'a Trusted,
    pub gates: &'a Gates,
    /// The reconcile key (attestations of authors and daemon approvals).
    pub key: Option<&'a FingerprintKey>,
    /// `apply --allow-deletes`.
    pub allow_deletes: bool,
    pub now: SystemTime,
}

/// What verification reads live.
pub struct Io<'a> {
    pub providers: &'a Providers,
    /// Every desired resource in scope (promotion needs the source environment's too).
    pub desired: &'a [Desired],
    pub aws: Option<&'a Aws>,
    /// GitLab, to check identities; `None` when no GitLab URL is known.
    pub directory: Option<&'a dyn Directory>,
}

/// A plan that passed every check: the only thing the executor accepts.
#[derive(Debug)]
pub struct ApprovedPlan {
    plan: Plan,
    hash: String,
    approvals: Vec<VerifiedApproval>,
    /// Steps whose resource already is as the step wants it (an earlier apply of this plan
    /// was interrupted after writing them): not written again.
    done: BTreeSet<Address>,
    /// Whether this is an approved change (recorded after apply), not a drift correction.
    records: bool,
}

impl ApprovedPlan {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn approvals(&self) -> &[VerifiedApproval] {
        &self.approvals
    }

    /// Whether the step of `address` is already done.
    pub fn is_done(&self, address: &Address) -> bool {
        self.done.contains(address)
    }

    /// Whether a successful apply records the scopes' desired state as approved.
    pub fn records(&self) -> bool {
        self.records
    }
}

/// A step whose resource changed live since the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    pub address: Address,
    pub what: String,
}

/// Why a plan may not be applied. Nothing was written.
#[derive(Debug)]
pub enum Refusal {
    Revision {
        plan: String,
        now: String,
    },
    CreatedAt(String),
    TooOld {
        age: Duration,
        max: String,
    },
    Blocked(Vec<Blocked>),
    Policies(Vec<Finding>),
    Deletes {
        destructive: Destructive,
        max: u32,
    },
    Approvals {
        problems: Vec<String>,
        /// Approvals in the file that did not count, with why.
        unproven: Vec<String>,
    },
    Stale(Vec<Stale>),
    Promotion(Vec<String>),
    /// Steps that are not what the desired state asks for (a hand-made or edited plan).
    NotTheDesiredState(Vec<String>),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revision { plan, now } => write!(
                f,
                "the desired state changed since the plan (plan: {plan}, now: {now})\nhelp: plan again from the current desired state and have that plan approved; nothing was changed"
            ),
            Self::CreatedAt(t) => write!(f, "its creation time `{t}` is not a time"),
            Self::TooOld { age, max } => write!(
                f,
                "the plan is {} old, more than plan.max_age ({max})\nhelp: plan again and have the new plan approved; nothing was changed",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            ),
            Self::Blocked(blocked) => {
                writeln!(
                    f,
                    "the plan is incomplete: some resources could not be read when it was made:"
                )?;
                for b in blocked {
                    writeln!(f, "  {}: {}", b.address, b.reason)?;
                }
                write!(f, "help: fix the cause and plan again; nothing was changed")
            }
            Self::Policies(findings) => {
                let promotion = findings.iter().any(|x| x.rule == "promotion");
                write!(
                    f,
                    "{} compliance policy error(s) block apply:\n{}{}",
                    findings.len(),
                    crate::policy::render(findings),
                    if promotion {
                        "help: [promotion]: roll the images out to the source environment first and plan again, or plan with `--promotion-override ENV/SERVICE=REASON` and have it approved with `reconcile approve --override`; other rules: fix the desired state, or lower the rule's severity in reconcile.yaml `policies:`"
                    } else {
                        "help: fix the desired state, or lower the rule's severity in reconcile.yaml `policies:`"
                    }
                )
            }
            Self::Deletes { destructive, max } => write!(
                f,
                "the plan deletes or replaces {} object(s), more than plan.max_deletes ({max}): {}\nhelp: review the deletions; if they are intended, apply again with `--allow-deletes` (the approvals are still needed); nothing was changed",
                destructive.total(),
                destructive.describe()
            ),
            Self::Approvals { problems, unproven } => {
                write!(f, "missing approvals:\n  {}", problems.join("\n  "))?;
                if !unproven.is_empty() {
                    write!(
                        f,
                        "\napprovals that do not count:\n  {}",
                        unproven.join("\n  ")
                    )?;
                }
                Ok(())
            }
            Self::Stale(stale) => {
                writeln!(
                    f,
                    "the live state changed since the plan was made; nothing was changed:"
                )?;
                for s in stale {
                    writeln!(f, "  {}: {}", s.address, s.what)?;
                }
                write!(
                    f,
                    "help: plan again (`reconcile plan --out FILE`), review the new plan and have it approved"
                )
            }
            Self::NotTheDesiredState(wrong) => write!(
                f,
                "the plan is not what the desired state asks for:\n  {}\nhelp: make plans with `reconcile plan --out FILE` from the desired state; nothing was changed",
                wrong.join("\n  ")
            ),
            Self::Promotion(failed) => write!(
                f,
                "the promotion rule no longer holds:\n{}\nhelp: bring the source environment back to a stable rollout of these images and apply again, or plan again with `--promotion-override ENV/SERVICE=REASON`; nothing was changed",
                failed.join("\n")
            ),
        }
    }
}

/// Verifies a plan (see the module docs). Checks that need nothing live come first, so a
/// refused plan costs no read of managed resources.
pub async fn verify(
    source: Source,
    inputs: &Inputs<'_>,
    io: &Io<'_>,
) -> Result<ApprovedPlan, Refusal> {
    // A plan made now by this process was computed from what is live now: no second read.
    let recheck = matches!(source, Source::File { .. });
    let (plan, hash, verified_author, approvals, unproven, standing, records) = match source {
        Source::File { file, approvals } => {
            contract(&file.plan, inputs)?;
            let (author, verified, unproven) = identities(&file, &approvals, inputs, io).await;
            let hash = file.hash.clone();
            (
                file.plan,
                hash,
                author,
                verified,
                unproven,
                BTreeSet::new(),
                true,
            )
        }
        Source::Fresh { plan, author } => {
            let hash = plan.hash();
            (
                plan,
                hash,
                author,
                Vec::new(),
                Vec::new(),
                BTreeSet::new(),
                true,
            )
        }
        Source::Correction { plan, author } => {
            let standing = standing(&plan, inputs.trusted);
            let hash = plan.hash();
            (plan, hash, author, Vec::new(), Vec::new(), standing, false)
        }
    };
    if !plan.blocked.is_empty() {
        return Err(Refusal::Blocked(plan.blocked.clone()));
    }
    matches_desired_state(&plan, inputs, io)?;
    policies(&plan, inputs)?;
    let destructive = plan.destructive();
    let max = inputs.state.config.plan.max_deletes;
    if destructive.total() > max as usize && !inputs.allow_deletes {
        return Err(Refusal::Deletes { destructive, max });
    }
    approve::check(inputs.gates, &plan, &verified_author, &approvals, &standing)
        .map_err(|problems| Refusal::Approvals { problems, unproven })?;
    let done = if recheck {
        live(&plan, inputs, io).await?
    } else {
        BTreeSet::new()
    };
    Ok(ApprovedPlan {
        plan,
        hash,
        approvals,
        done,
        records,
    })
}

/// Revision and age.
fn contract(plan: &Plan, inputs: &Inputs<'_>) -> Result<(), Refusal> {
    if plan.revision != inputs.revision {
        return Err(Refusal::Revision {
            plan: plan.revision.clone(),
            now: inputs.revision.to_string(),
        });
    }
    let config = &inputs.state.config;
    let max_age =
        humantime::parse_duration(&config.plan.max_age).unwrap_or(Duration::from_secs(86_400));
    let created = humantime::parse_rfc3339(&plan.created_at)
        .map_err(|_| Refusal::CreatedAt(plan.created_at.clone()))?;
    let age = inputs.now.duration_since(created).unwrap_or_default();
    if age > max_age {
        return Err(Refusal::TooOld {
            age,
            max: config.plan.max_age.clone(),
        });
    }
    Ok(())
}

/// The author and the approvals GitLab vouches for; the others with why they do not count.
async fn identities(
    file: &PlanFile,
    approvals: &Approvals,
    inputs: &Inputs<'_>,
    io: &Io<'_>,
) -> (VerifiedAuthor, Vec<VerifiedApproval>, Vec<String>) {
    let Some(directory) = io.directory else {
        let unproven = approvals
            .approvals
            .iter()
            .map(|a| {
                format!(
                    "by {}: cannot be checked: no GitLab to ask (set GITLAB_URL and GITLAB_TOKEN)",
                    a.by
                )
            })
            .collect();
        return (
            VerifiedAuthor::Unknown("no GitLab to ask".into()),
            Vec::new(),
            unproven,
        );
    };
    let author = verify_author(file, directory, inputs.key).await;
    let mut verified = Vec::new();
    let mut unproven = Vec::new();
    for a in &approvals.approvals {
        match verify_approval(a, file, directory, inputs.key).await {
            Ok(v) => verified.push(v),
            Err(why) => unproven.push(format!("by {}: {why}", a.by)),
        }
    }
    (author, verified, unproven)
}

/// Every step is what the desired state (at the plan's revision, which is now's) asks for:
/// its scope is its address's, it writes exactly the desired fields, and a deletion is of
/// something the desired state prunes. Apply writes the step's own fields and gates are found
/// from its scope, so a hand-made plan file could otherwise write anything under a harmless
/// scope name.
fn matches_desired_state(plan: &Plan, inputs: &Inputs<'_>, io: &Io<'_>) -> Result<(), Refusal> {
    let prune = crate::providers::gitlab::Gitlab::prune(inputs.state);
    let mut wrong = Vec::new();
    for step in &plan.steps {
        let wanted = io.desired.iter().find(|d| d.address == step.address);
        let why = if step.scope != step.address.scope_name() {
            Some(format!(
                "is labelled scope `{}`, but it belongs to `{}`",
                step.scope,
                step.address.scope_name()
            ))
        } else {
            match (step.action, wanted) {
                (Action::Delete, Some(_)) => {
                    Some("deletes a resource the desired state declares".into())
                }
                (Action::Delete, None) => {
                    let pruned = crate::plan::graph_owner(&step.address)
                        .is_some_and(|o| prune.contains(&(o, step.address.kind())));
                    (!pruned).then(|| "deletes a resource the desired state does not prune".into())
                }
                (_, None) => Some("is not in the desired state (in this run's scope)".into()),
                (_, Some(d)) if d.fields != step.desired => {
                    Some("writes fields other than the desired state's".into())
                }
                _ => None,
            }
        };
        if let Some(why) = why {
            wrong.push(format!("{}: {why}", step.address));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Refusal::NotTheDesiredState(wrong))
    }
}

/// Scopes of a correction whose gate is met by the last approved apply.
pub fn standing(plan: &Plan, trusted: &Trusted) -> BTreeSet<String> {
    plan.scopes()
        .into_iter()
        .filter(|scope| {
            let recorded = trusted.get(scope);
            let same = recorded.is_some_and(|r| plan.digests.get(*scope) == Some(&r.digest));
            let deletes = plan
                .steps
                .iter()
                .any(|s| s.scope == *scope && s.action == Action::Delete);
            let gate_change = plan.gate_changes.iter().any(|g| g.scope == *scope);
            let overrides = plan.overrides.iter().any(|o| o.env == *scope);
            same && !deletes && !gate_change && !overrides
        })
        .map(String::from)
        .collect()
}

/// Compliance policies, evaluated now on the desired state (a plan file's own findings could
/// have been edited out), for the scopes the plan changes.
fn policies(plan: &Plan, inputs: &Inputs<'_>) -> Result<(), Refusal> {
    let scopes = plan.scopes();
    let mut errors: Vec<Finding> = crate::policy::evaluate(inputs.state)
        .into_iter()
        .chain(plan.policies.iter().cloned())
        .filter(|f| f.severity == Severity::Error)
        .filter(|f| scopes.contains(f.address.scope_name().as_str()))
        .collect();
    // Both sources name the same findings: keep each once, in order.
    let mut seen: Vec<Finding> = Vec::new();
    errors.retain(|f| {
        let new = !seen.contains(f);
        if new {
            seen.push(f.clone());
        }
        new
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Policies(errors))
    }
}

/// Reads the touched resources again: every step's precondition must hold (or the resource
/// already is as the step wants it), and the promotion rule again.
async fn live(plan: &Plan, inputs: &Inputs<'_>, io: &Io<'_>) -> Result<BTreeSet<Address>, Refusal> {
    if plan.steps.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut touched: Vec<Address> = plan.steps.iter().map(|s| s.address.clone()).collect();
    // The promotion rule compares a service's running task definition with the wanted one.
    for s in &plan.steps {
        if let Address::Service { env, service } = &s.address {
            let td = Address::TaskDefinition {
                env: env.clone(),
                service: service.clone(),
            };
            if !touched.contains(&td) {
                touched.push(td);
            }
        }
    }
    let observed = io.providers.observe_only(io.desired, &touched).await;
    let mut stale = Vec::new();
    let mut done = BTreeSet::new();
    for step in &plan.steps {
        match compare(step, plan, io.desired, &observed) {
            Compared::Holds => {}
            Compared::Done => {
                done.insert(step.address.clone());
            }
            Compared::Stale(what) => stale.push(Stale {
                address: step.address.clone(),
                what,
            }),
        }
    }
    if !stale.is_empty() {
        return Err(Refusal::Stale(stale));
    }
    promotion(plan, inputs, io, &observed).await?;
    Ok(done)
}

enum Compared {
    Holds,
    Done,
    Stale(String),
}

/// A step's precondition against what is live now.
fn compare(
    step: &crate::plan::Step,
    plan: &Plan,
    desired: &[Desired],
    observed: &LiveState,
) -> Compared {
    let now = match observed.current(&step.address) {
        Ok(now) => now,
        Err(why) => return Compared::Stale(format!("cannot be read now ({why})")),
    };
    if Precondition::of(now) == step.precondition {
        return Compared::Holds;
    }
    // Absent because its parent was: the parent's creation (this plan's own step, e.g. a
    // project that GitLab creates with its default branch protected) may have made it. The
    // step converges it as it would have in one uninterrupted run.
    let parent_created_here = step.depends_on.iter().any(|d| {
        plan.steps
            .iter()
            .any(|s| &s.address == d && s.action == Action::Create)
    });
    if step.precondition == Precondition::Absent && parent_created_here {
        return Compared::Holds;
    }
    let wanted: Option<&Fields> = desired
        .iter()
        .find(|d| d.address == step.address)
        .map(|d| &d.fields);
    match (step.action, now, wanted) {
        (Action::Delete, None, _) => return Compared::Done,
        (Action::Create | Action::Update | Action::Replace, Some(live), Some(want))
            if live.is_as_wanted(want) =>
        {
            return Compared::Done;
        }
        _ => {}
    }
    let what = match (&step.precondition, now) {
        (Precondition::Absent, Some(_)) => "was created live since the plan".to_string(),
        (Precondition::Present(_), None) => "was deleted live since the plan".to_string(),
        (_, Some(live)) => {
            // Fields planned to change must still have their old value; the others were
            // as desired when the plan was made.
            let mut changed: Vec<&str> = Vec::new();
            for c in &step.changes {
                if live.fields.get(&c.field) != c.before.as_ref() {
                    changed.push(&c.field);
                }
            }
            if let Some(want) = wanted {
                for (field, v) in want {
                    let planned = step.changes.iter().any(|c| &c.field == field);
                    if !planned && live.fields.get(field).is_some_and(|have| have != v) {
                        changed.push(field);
                    }
                }
            }
            if changed.is_empty() {
                "changed live since the plan (fields the desired state does not manage)".into()
            } else {
                changed.sort_unstable();
                changed.dedup();
                format!("changed live since the plan: {}", changed.join(", "))
            }
        }
        (Precondition::Absent, None) => unreachable!("an absent precondition holds when absent"),
    };
    Compared::Stale(what)
}

/// The promotion rule, live, for every service step of a promoted environment that changes
/// what it runs (found from the steps themselves, never from the plan's notes).
async fn promotion(
    plan: &Plan,
    inputs: &Inputs<'_>,
    io: &Io<'_>,
    observed: &LiveState,
) -> Result<(), Refusal> {
    let Some(aws) = io.aws else { return Ok(()) };
    let subjects =
        crate::providers::aws::promotion::subjects(inputs.state, plan, io.desired, observed);
    if subjects.is_empty() {
        return Ok(());
    }
    let checked =
        crate::providers::aws::promotion::check(aws, inputs.state, io.desired, &subjects).await;
    let failed: Vec<String> = checked
        .iter()
        .filter_map(|c| match (&c.outcome, &c.address) {
            (Err(why), Address::Service { env, service })
                if PromotionOverride::find(&plan.overrides, env, service).is_none() =>
            {
                Some(format!("  {}: {why}", c.address))
            }
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Promotion(failed))
    }
}

/// Records, after an apply, the approved desired state and gate of each scope whose steps all
/// applied (or were already done). Drift corrections record nothing.
pub fn record_applied(
    approved: &ApprovedPlan,
    outcomes: &BTreeMap<Address, crate::apply::Outcome>,
    state: &DesiredState,
    state_dir: &std::path::Path,
    key: Option<&FingerprintKey>,
    now: SystemTime,
) -> Result<Vec<String>, String> {
    if !approved.records {
        return Ok(Vec::new());
    }
    let Some(key) = key else {
        return Err("no reconcile key (RECONCILE_FINGERPRINT_KEY or GITLAB_TOKEN): the approved desired state is not recorded, so the daemon will hold drift corrections in gated scopes".into());
    };
    let plan = &approved.plan;
    let mut recorded = Vec::new();
    for scope in plan.scopes() {
        let complete = plan.steps.iter().filter(|s| s.scope == scope).all(|s| {
            approved.is_done(&s.address) || outcomes.get(&s.address).is_some_and(|o| o.succeeded())
        });
        let Some(digest) = plan.digests.get(scope) else {
            continue;
        };
        if !complete {
            continue;
        }
        let gate = approve::gate(&state.config, scope)
            .cloned()
            .unwrap_or_default();
        let targets = approve::targets(state).remove(scope).unwrap_or_default();
        let record = crate::trust::ScopeRecord {
            digest: digest.clone(),
            gate,
            revision: plan.revision.clone(),
            plan_sha256: approved.hash.clone(),
            at: humantime::format_rfc3339_seconds(now).to_string(),
            targets,
        };
        crate::trust::Trusted::record(state_dir, key, scope, record)
            .map_err(|e| format!("cannot record the approved apply of {scope}: {e}"))?;
        recorded.push(scope.to_string());
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests;
