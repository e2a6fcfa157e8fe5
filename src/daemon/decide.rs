//! What the daemon does with a plan (pure): per scope, the drift policy of `reconcile.yaml`
//! (`correct`, `hold`, `report`), minus resources marked as not converging and scopes whose
//! compliance policies fail.
//!
//! `correct` is not a way around a gate: in a gated scope the daemon corrects only while the
//! scope's desired state is the one of its last approved apply (a standing approval, see
//! [`crate::verify`]); an unapproved change of the desired state, a deletion in a gated scope,
//! or more deletions and replacements than `plan.max_deletes` in any scope is held for
//! approval instead.

use std::collections::{BTreeMap, BTreeSet};

use crate::address::Address;
use crate::approve::Gates;
use crate::plan::{Action, Plan};
use crate::spec::config::{Config, DriftPolicy, Severity};

/// The steps of a plan, sorted by what happens to them this cycle.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Applied now (`correct`).
    pub correct: BTreeSet<Address>,
    /// Held for approval, per scope (`hold`).
    pub hold: BTreeMap<String, BTreeSet<Address>>,
    /// Only notified, per scope (`report`).
    pub report: BTreeMap<String, BTreeSet<Address>>,
    /// Left alone this cycle, with why.
    pub withheld: BTreeMap<Address, String>,
    /// Scopes whose policy is `correct` but whose changes are held, with why.
    pub escalated: BTreeMap<String, String>,
}

/// What a `correct` scope's changes need to be corrected without an approval.
pub struct Rules<'a> {
    pub gates: &'a Gates,
    /// Scopes whose desired state is the one of their last approved apply.
    pub standing: &'a BTreeSet<String>,
    pub max_deletes: u32,
}

/// Sorts the plan's steps. `marked` tells whether an address is marked as not converging
/// (and not due for a retry this cycle).
pub fn decide(
    plan: &Plan,
    config: &Config,
    rules: &Rules<'_>,
    marked: &dyn Fn(&Address) -> bool,
) -> Decision {
    let mut d = Decision::default();
    let failing: BTreeSet<String> = plan
        .policies
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.address.scope_name())
        .collect();
    for step in &plan.steps {
        if failing.contains(&step.scope) {
            d.withheld.insert(
                step.address.clone(),
                format!("compliance policy errors in {}", step.scope),
            );
        } else if marked(&step.address) {
            d.withheld.insert(
                step.address.clone(),
                "marked as not converging; retried later".into(),
            );
        }
    }
    // Whatever depends on a withheld step waits for it.
    loop {
        let more: Vec<(Address, String)> = plan
            .steps
            .iter()
            .filter(|s| !d.withheld.contains_key(&s.address))
            .filter_map(|s| {
                s.depends_on
                    .iter()
                    .find(|dep| d.withheld.contains_key(*dep))
                    .map(|dep| {
                        (
                            s.address.clone(),
                            format!("depends on {dep}, which is withheld"),
                        )
                    })
            })
            .collect();
        if more.is_empty() {
            break;
        }
        d.withheld.extend(more);
    }
    let active = || {
        plan.steps
            .iter()
            .filter(|s| !d.withheld.contains_key(&s.address))
    };
    let mut escalated = BTreeMap::new();
    for scope in active().map(|s| s.scope.clone()).collect::<BTreeSet<_>>() {
        if config.drift_policy(&scope) != DriftPolicy::Correct {
            continue;
        }
        let steps: Vec<_> = active().filter(|s| s.scope == scope).collect();
        let deletes = steps.iter().filter(|s| s.action == Action::Delete).count();
        let destructive = steps
            .iter()
            .filter(|s| matches!(s.action, Action::Delete | Action::Replace))
            .count();
        let gated = rules.gates.required(&scope) > 0;
        let why = if gated && !rules.standing.contains(&scope) {
            Some(format!(
                "{scope} is gated and its desired state is not the one of its last approved apply: the change needs its approvals"
            ))
        } else if gated && deletes > 0 {
            Some(format!(
                "{scope} is gated and the correction deletes {deletes} object(s)"
            ))
        } else if destructive > rules.max_deletes as usize {
            Some(format!(
                "the correction deletes or replaces {destructive} object(s) in {scope}, more than plan.max_deletes ({})",
                rules.max_deletes
            ))
        } else {
            None
        };
        if let Some(why) = why {
            escalated.insert(scope, why);
        }
    }
    for step in active() {
        let address = step.address.clone();
        let policy = match config.drift_policy(&step.scope) {
            DriftPolicy::Correct if escalated.contains_key(&step.scope) => DriftPolicy::Hold,
            policy => policy,
        };
        match policy {
            DriftPolicy::Correct => {
                d.correct.insert(address);
            }
            DriftPolicy::Hold => {
                d.hold
                    .entry(step.scope.clone())
                    .or_default()
                    .insert(address);
            }
            DriftPolicy::Report => {
                d.report
                    .entry(step.scope.clone())
                    .or_default()
                    .insert(address);
            }
        }
    }
    d.escalated = escalated;
    d
}

/// Resources that did not converge after a correction: retried after 2, 4, 8, ... 64 cycles
/// instead of every cycle, and forgotten once they match or the desired state changes.
#[derive(Debug, Default)]
pub struct Marks {
    marks: BTreeMap<Address, Mark>,
}

#[derive(Clone, Debug)]
pub struct Mark {
    pub failures: u32,
    /// The first cycle that tries again.
    pub retry_at: u64,
    pub why: String,
}

impl Marks {
    /// Whether `address` is left alone in `cycle`.
    pub fn withheld(&self, address: &Address, cycle: u64) -> bool {
        self.marks.get(address).is_some_and(|m| cycle < m.retry_at)
    }

    pub fn mark(&mut self, address: &Address, cycle: u64, why: String) {
        let m = self.marks.entry(address.clone()).or_insert(Mark {
            failures: 0,
            retry_at: 0,
            why: String::new(),
        });
        m.failures += 1;
        m.retry_at = cycle + (1u64 << m.failures.min(6));
        m.why = why;
    }

    /// Forgets marks of resources the plan no longer changes (they converged); a resource that
    /// could not be read keeps its mark.
    pub fn keep_only(&mut self, plan: &Plan) {
        self.marks.retain(|a, _| {
            plan.steps.iter().any(|s| &s.address == a)
                || plan.blocked.iter().any(|b| &b.address == a)
        });
    }

    pub fn clear(&mut self) {
        self.marks.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Address, &Mark)> {
        self.marks.iter()
    }

    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Step};

    fn config() -> Config {
        serde_json::from_value(serde_json::json!({
            "gitlab": {"url": "http://gitlab.invalid"},
            "environments": {
                "staging": {},
                "production": {"promote_from": "staging"},
                "qa": {"drift": "report"},
            },
        }))
        .unwrap()
    }

    fn step(address: Address, depends_on: &[Address]) -> Step {
        Step {
            scope: address.scope_name(),
            address,
            action: Action::Update,
            changes: Vec::new(),
            desired: Default::default(),
            precondition: crate::plan::Precondition::Absent,
            depends_on: depends_on.to_vec(),
            notes: Vec::new(),
        }
    }

    fn service(env: &str) -> Address {
        Address::Service {
            env: env.into(),
            service: "app".into(),
        }
    }

    fn task(env: &str) -> Address {
        Address::TaskDefinition {
            env: env.into(),
            service: "app".into(),
        }
    }

    fn plan(steps: Vec<Step>) -> Plan {
        Plan {
            steps,
            ..Plan::empty("content:x")
        }
    }

    /// Decides with the gates of `config` (no trust record) and no standing approval.
    fn decide_plain(p: &Plan, c: &Config, marked: &dyn Fn(&Address) -> bool) -> Decision {
        let gates = Gates::new(c, &crate::trust::Trusted::default());
        let rules = Rules {
            gates: &gates,
            standing: &BTreeSet::new(),
            max_deletes: 5,
        };
        decide(p, c, &rules, marked)
    }

    #[test]
    fn default_policies_per_scope() {
        let c = config();
        assert_eq!(c.drift_policy("gitlab"), DriftPolicy::Correct);
        assert_eq!(c.drift_policy("staging"), DriftPolicy::Correct);
        assert_eq!(c.drift_policy("production"), DriftPolicy::Hold);
        assert_eq!(c.drift_policy("qa"), DriftPolicy::Report);
    }

    #[test]
    fn steps_are_sorted_by_policy_and_marks_hold_back_dependents() {
        let user = Address::User {
            username: "dev1".into(),
        };
        let p = plan(vec![
            step(user.clone(), &[]),
            step(task("staging"), &[]),
            step(service("staging"), &[task("staging")]),
            step(service("production"), &[]),
            step(service("qa"), &[]),
        ]);
        let d = decide_plain(&p, &config(), &|a: &Address| *a == task("staging"));
        assert_eq!(d.correct, BTreeSet::from([user]));
        assert_eq!(
            d.hold["production"],
            BTreeSet::from([service("production")])
        );
        assert_eq!(d.report["qa"], BTreeSet::from([service("qa")]));
        assert_eq!(
            d.withheld.keys().cloned().collect::<Vec<_>>(),
            [task("staging"), service("staging")]
        );
        assert!(d.withheld[&service("staging")].contains("depends on"));
    }

    #[test]
    fn policy_errors_withhold_their_scope_only() {
        let mut p = plan(vec![
            step(service("staging"), &[]),
            step(service("qa"), &[]),
        ]);
        p.policies.push(crate::policy::Finding {
            rule: "production_circuit_breaker".into(),
            severity: Severity::Error,
            address: service("staging"),
            message: String::new(),
            location: String::new(),
        });
        let d = decide_plain(&p, &config(), &|_: &Address| false);
        assert!(d.correct.is_empty());
        assert!(d.withheld[&service("staging")].contains("compliance"));
        assert!(d.report.contains_key("qa"));
    }

    fn member(n: usize) -> Address {
        Address::Member {
            project: "g/app".into(),
            user: format!("dev{n}"),
        }
    }

    fn deleting(n: usize) -> Vec<Step> {
        (0..n)
            .map(|i| Step {
                action: Action::Delete,
                ..step(member(i), &[])
            })
            .collect()
    }

    fn gated_gitlab() -> Config {
        serde_json::from_value(serde_json::json!({
            "gitlab": {"url": "http://gitlab.invalid", "approval": {"required": 1}},
        }))
        .unwrap()
    }

    #[test]
    fn a_gated_correct_scope_is_corrected_only_under_a_standing_approval() {
        let c = gated_gitlab();
        let gates = Gates::new(&c, &crate::trust::Trusted::default());
        let p = plan(vec![step(member(1), &[])]);
        let none = BTreeSet::new();
        let rules = |standing| Rules {
            gates: &gates,
            standing,
            max_deletes: 5,
        };
        // An unapproved change of the desired state: held, with why.
        let d = decide(&p, &c, &rules(&none), &|_| false);
        assert!(d.correct.is_empty());
        assert_eq!(d.hold["gitlab"], BTreeSet::from([member(1)]));
        assert!(d.escalated["gitlab"].contains("not the one of its last approved apply"));
        // Positive control: drift from the approved desired state is corrected.
        let standing = BTreeSet::from(["gitlab".to_string()]);
        let d = decide(&p, &c, &rules(&standing), &|_| false);
        assert_eq!(d.correct, BTreeSet::from([member(1)]));
        assert!(d.hold.is_empty() && d.escalated.is_empty());
        // Deletions in a gated scope are never corrected without an approval.
        let d = decide(&plan(deleting(1)), &c, &rules(&standing), &|_| false);
        assert!(d.correct.is_empty());
        assert!(d.escalated["gitlab"].contains("deletes 1"));
    }

    #[test]
    fn mass_deletion_is_held_even_where_no_gate_is_set() {
        let c = config();
        let gates = Gates::new(&c, &crate::trust::Trusted::default());
        let none = BTreeSet::new();
        let rules = Rules {
            gates: &gates,
            standing: &none,
            max_deletes: 5,
        };
        let d = decide(&plan(deleting(6)), &c, &rules, &|_| false);
        assert!(d.correct.is_empty());
        assert_eq!(d.hold["gitlab"].len(), 6);
        assert!(d.escalated["gitlab"].contains("more than plan.max_deletes (5)"));
        // Positive control: at the threshold, corrected.
        let d = decide(&plan(deleting(5)), &c, &rules, &|_| false);
        assert_eq!(d.correct.len(), 5);
    }

    #[test]
    fn marks_back_off_and_are_forgotten_on_convergence() {
        let a = service("staging");
        let mut marks = Marks::default();
        marks.mark(&a, 10, "still differs".into());
        assert!(marks.withheld(&a, 11));
        assert!(!marks.withheld(&a, 12), "retried 2 cycles later");
        marks.mark(&a, 12, "still differs".into());
        assert!(marks.withheld(&a, 15));
        assert!(!marks.withheld(&a, 16), "then 4 cycles later");
        for _ in 0..10 {
            marks.mark(&a, 100, "x".into());
        }
        assert!(
            marks.withheld(&a, 163) && !marks.withheld(&a, 164),
            "at most 64 cycles"
        );
        marks.keep_only(&plan(vec![step(a.clone(), &[])]));
        assert_eq!(marks.len(), 1);
        let mut unreadable = plan(Vec::new());
        unreadable.blocked.push(crate::plan::Blocked {
            address: a.clone(),
            reason: "GitLab answered 500".into(),
        });
        marks.keep_only(&unreadable);
        assert_eq!(marks.len(), 1, "a failed read is not convergence");
        marks.keep_only(&plan(Vec::new()));
        assert!(marks.is_empty());
    }
}
