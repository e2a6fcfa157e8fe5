//! Approval checkpoints: approvals bound to a plan's sha256 and to the scopes it covers, and the
//! gates of `reconcile.yaml` (how many approvals, who may approve, self-approval).
//!
//! Pure: the CLI reads and writes the approvals file (`<plan file>.approvals.json`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::spec::config::{Config, Gate};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The plan this approves; an approval is worth nothing for any other plan.
    pub plan_sha256: String,
    pub by: String,
    /// RFC 3339.
    pub at: String,
    /// Scopes of the plan this approval counts for (those the approver may approve).
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether this approval also covers the plan's promotion overrides (`approve --override`).
    #[serde(rename = "override", default, skip_serializing_if = "is_false")]
    pub promotion_override: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvals {
    pub approvals: Vec<Approval>,
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

/// The gate of a scope: `gitlab` or an environment. Other scopes have none.
pub fn gate<'a>(config: &'a Config, scope: &str) -> Option<&'a Gate> {
    match scope {
        "gitlab" => Some(&config.gitlab.approval),
        env => config.environments.get(env).map(|e| &e.approval),
    }
}

/// Scopes of a plan that need approvals, with the number each needs.
pub fn gated_scopes(config: &Config, plan: &Plan) -> BTreeMap<String, u32> {
    plan.scopes()
        .into_iter()
        .filter_map(|s| {
            gate(config, s)
                .filter(|g| g.required > 0)
                .map(|g| (s.to_string(), g.required))
        })
        .collect()
}

/// Why `by` may not approve `scope` of `plan`, if they may not.
fn ineligible(config: &Config, plan: &Plan, by: &str, scope: &str) -> Option<String> {
    let gate = gate(config, scope)?;
    if !gate.approvers.is_empty() && !gate.approvers.iter().any(|a| a.eq_ignore_ascii_case(by)) {
        return Some(format!(
            "`{by}` is not an approver of {scope} (approvers: {})",
            gate.approvers.join(", ")
        ));
    }
    if !gate.allow_self_approval && plan.author.eq_ignore_ascii_case(by) {
        return Some(format!(
            "`{by}` made this plan and {scope} does not allow self-approval"
        ));
    }
    None
}

/// Records an approval by `by` for every gated scope of the plan they may approve.
pub fn approve(
    config: &Config,
    plan: &Plan,
    by: &str,
    comment: Option<String>,
    at: String,
) -> Result<Approval, String> {
    let gated = gated_scopes(config, plan);
    if gated.is_empty() {
        return Err("this plan touches no gated scope: it needs no approval".into());
    }
    let mut scopes = Vec::new();
    let mut refused = Vec::new();
    for scope in gated.keys() {
        match ineligible(config, plan, by, scope) {
            None => scopes.push(scope.clone()),
            Some(why) => refused.push(why),
        }
    }
    if scopes.is_empty() {
        return Err(refused.join("; "));
    }
    Ok(Approval {
        plan_sha256: plan.hash(),
        by: by.to_string(),
        at,
        scopes,
        comment,
        promotion_override: false,
    })
}

/// The environments with a promotion override in the plan.
pub fn override_envs(plan: &Plan) -> BTreeSet<&str> {
    plan.overrides.iter().map(|o| o.env.as_str()).collect()
}

/// Records an approval by `by` that covers the plan's promotion overrides (and counts as an
/// approval of every gated scope they may approve). `by` must be an eligible approver of every
/// environment with an override (its gate's approvers and self-approval rule apply even when
/// the gate requires no approval).
pub fn approve_override(
    config: &Config,
    plan: &Plan,
    by: &str,
    comment: Option<String>,
    at: String,
) -> Result<Approval, String> {
    if plan.overrides.is_empty() {
        return Err("this plan has no promotion override: approve it without --override".into());
    }
    let refused: Vec<String> = override_envs(plan)
        .into_iter()
        .filter_map(|env| ineligible(config, plan, by, env))
        .collect();
    if !refused.is_empty() {
        return Err(refused.join("; "));
    }
    let mut scopes: BTreeSet<String> = gated_scopes(config, plan)
        .into_keys()
        .filter(|s| ineligible(config, plan, by, s).is_none())
        .collect();
    scopes.extend(override_envs(plan).into_iter().map(String::from));
    Ok(Approval {
        plan_sha256: plan.hash(),
        by: by.to_string(),
        at,
        scopes: scopes.into_iter().collect(),
        comment,
        promotion_override: true,
    })
}

/// Checks that every gated scope of the plan has enough valid approvals. Approvals for another
/// plan, by someone who may not approve, or counted twice for one person, do not count.
pub fn check(config: &Config, plan: &Plan, approvals: &Approvals) -> Result<(), Vec<String>> {
    let hash = plan.hash();
    let mut problems = Vec::new();
    let stale = approvals
        .approvals
        .iter()
        .filter(|a| a.plan_sha256 != hash)
        .count();
    for (scope, required) in gated_scopes(config, plan) {
        let approvers: BTreeSet<String> = approvals
            .approvals
            .iter()
            .filter(|a| a.plan_sha256 == hash && a.scopes.contains(&scope))
            .filter(|a| ineligible(config, plan, &a.by, &scope).is_none())
            .map(|a| a.by.to_lowercase())
            .collect();
        if (approvers.len() as u32) < required {
            let have = if approvers.is_empty() {
                "none".to_string()
            } else {
                approvers.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            problems.push(format!(
                "{scope} needs {required} approval(s) of this plan, has {} ({have})",
                approvers.len()
            ));
        }
    }
    for env in override_envs(plan) {
        let approved = approvals.approvals.iter().any(|a| {
            a.plan_sha256 == hash
                && a.promotion_override
                && a.scopes.iter().any(|s| s == env)
                && ineligible(config, plan, &a.by, env).is_none()
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
    if !problems.is_empty() && stale > 0 {
        problems.push(format!(
            "{stale} approval(s) in the file are for another plan and do not count"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::plan::{Action, FORMAT, Step};

    fn config() -> Config {
        let yaml = "gitlab: {url: http://x.example, approval: {required: 1}}\nenvironments:\n  production: {approval: {required: 2, approvers: [alice, bob, carol]}}\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reconcile.yaml"), yaml).unwrap();
        crate::spec::load(dir.path()).unwrap().config
    }

    fn plan(scopes: &[&str]) -> Plan {
        Plan {
            format: FORMAT,
            revision: "r".into(),
            created_at: "2026-11-22T00:00:00Z".into(),
            author: "alice".into(),
            steps: scopes
                .iter()
                .map(|s| Step {
                    address: Address::Service {
                        env: s.to_string(),
                        service: "x".into(),
                    },
                    action: Action::Update,
                    scope: s.to_string(),
                    changes: vec![],
                    desired: Default::default(),
                    precondition: "p".into(),
                    depends_on: vec![],
                    notes: vec![],
                })
                .collect(),
            unmanaged: vec![],
            blocked: vec![],
            policies: vec![],
            overrides: vec![],
        }
    }

    fn approval(config: &Config, plan: &Plan, by: &str) -> Approval {
        approve(config, plan, by, None, "now".into()).unwrap()
    }

    #[test]
    fn two_approvals_required_and_one_given() {
        let (c, p) = (config(), plan(&["production"]));
        let one = Approvals {
            approvals: vec![approval(&c, &p, "bob")],
        };
        assert_eq!(
            check(&c, &p, &one).unwrap_err(),
            vec!["production needs 2 approval(s) of this plan, has 1 (bob)"]
        );
        let two = Approvals {
            approvals: vec![approval(&c, &p, "bob"), approval(&c, &p, "carol")],
        };
        assert!(check(&c, &p, &two).is_ok());
    }

    #[test]
    fn the_same_person_counts_once() {
        let (c, p) = (config(), plan(&["production"]));
        let twice = Approvals {
            approvals: vec![approval(&c, &p, "bob"), approval(&c, &p, "BOB")],
        };
        assert!(check(&c, &p, &twice).is_err());
    }

    #[test]
    fn non_approvers_and_authors_are_refused() {
        let (c, p) = (config(), plan(&["production"]));
        assert_eq!(
            approve(&c, &p, "mallory", None, "now".into()).unwrap_err(),
            "`mallory` is not an approver of production (approvers: alice, bob, carol)"
        );
        assert_eq!(
            approve(&c, &p, "alice", None, "now".into()).unwrap_err(),
            "`alice` made this plan and production does not allow self-approval"
        );
    }

    #[test]
    fn an_approval_of_another_plan_does_not_count() {
        let (c, p) = (config(), plan(&["production"]));
        let other = plan(&["production", "gitlab"]);
        let approvals = Approvals {
            approvals: vec![approval(&c, &other, "bob"), approval(&c, &other, "carol")],
        };
        let problems = check(&c, &p, &approvals).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|m| m.contains("2 approval(s) in the file are for another plan"))
        );
    }

    #[test]
    fn overrides_need_their_own_approval() {
        let c = config();
        let mut p = plan(&["production"]);
        p.overrides.push(crate::plan::PromotionOverride {
            env: "production".into(),
            service: "x".into(),
            reason: "hotfix".into(),
        });
        let plain = Approvals {
            approvals: vec![approval(&c, &p, "bob"), approval(&c, &p, "carol")],
        };
        assert_eq!(
            check(&c, &p, &plain).unwrap_err(),
            vec![
                "production has promotion override(s) (production/x) that need an approval with --override of this plan, has none"
            ]
        );
        assert!(approve_override(&c, &p, "mallory", None, "now".into()).is_err());
        assert!(approve_override(&c, &p, "alice", None, "now".into()).is_err());
        let mut with = plain.clone();
        with.approvals
            .push(approve_override(&c, &p, "bob", None, "now".into()).unwrap());
        assert!(check(&c, &p, &with).is_ok());
        assert!(approve_override(&c, &plan(&["production"]), "bob", None, "now".into()).is_err());
    }

    #[test]
    fn ungated_scopes_need_nothing() {
        let (c, p) = (config(), plan(&["staging"]));
        assert!(check(&c, &p, &Approvals::default()).is_ok());
        assert!(approve(&c, &p, "bob", None, "now".into()).is_err());
    }
}
