//! What the daemon does with a plan (pure): per scope, the drift policy of `reconcile.yaml`
//! (`correct`, `hold`, `report`), minus resources marked as not converging and scopes whose
//! compliance policies fail.

use std::collections::{BTreeMap, BTreeSet};

use crate::address::Address;
use crate::plan::Plan;
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
}

/// Sorts the plan's steps. `marked` tells whether an address is marked as not converging
/// (and not due for a retry this cycle).
pub fn decide(plan: &Plan, config: &Config, marked: &dyn Fn(&Address) -> bool) -> Decision {
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
    for step in plan
        .steps
        .iter()
        .filter(|s| !d.withheld.contains_key(&s.address))
    {
        let address = step.address.clone();
        match config.drift_policy(&step.scope) {
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
            precondition: String::new(),
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
            format: crate::plan::FORMAT,
            revision: "content:x".into(),
            created_at: String::new(),
            author: String::new(),
            steps,
            unmanaged: Vec::new(),
            blocked: Vec::new(),
            policies: Vec::new(),
            overrides: Vec::new(),
        }
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
        let d = decide(&p, &config(), &|a| *a == task("staging"));
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
        let d = decide(&p, &config(), &|_| false);
        assert!(d.correct.is_empty());
        assert!(d.withheld[&service("staging")].contains("compliance"));
        assert!(d.report.contains_key("qa"));
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
