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

    /// Forgets marks of resources the plan no longer changes (they converged).
    pub fn keep_only(&mut self, plan: &Plan) {
        self.marks
            .retain(|a, _| plan.steps.iter().any(|s| &s.address == a));
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
