//! The executor: applies a plan's steps in dependency order, independent steps concurrently;
//! a failed step skips its dependents and the rest go on. Protected-branch replacements (CE's
//! unprotect + protect) run last for their project, and run even when another step of the
//! project failed, so that a branch is never left unprotected by an unrelated failure.
//!
//! Ends with the convergence check: the touched resources are read again and must show no diff.

use std::collections::BTreeMap;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::address::Address;
use crate::graph::Graph;
use crate::journal::{Event, Interrupted, Journal};
use crate::live::Desired;
use crate::lock::{Lock, LockError};
use crate::plan::{self, Action, FieldChange, Step};
use crate::providers::Providers;
use crate::verify::ApprovedPlan;

/// What an apply holds while it runs: the lock of the state directory and this run's journal.
pub struct Session {
    pub lock: Lock,
    pub journal: Journal,
    /// Steps a dead earlier run started without a result; settled (this run reads them again).
    pub interrupted: Vec<Interrupted>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot open the journal in `{dir}`: {source}")]
    Journal {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl Session {
    /// Takes the lock and opens a journal for run `<now>-<pid><tag>`.
    pub fn open(state_dir: &std::path::Path, owner: &str, tag: &str) -> Result<Self, SessionError> {
        let lock = Lock::acquire(state_dir, owner)?;
        let run = format!(
            "{}-{}{tag}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            std::process::id()
        );
        let journal = Journal::open(state_dir, run).map_err(|source| SessionError::Journal {
            dir: state_dir.to_path_buf(),
            source,
        })?;
        let interrupted = journal.interrupted();
        if !interrupted.is_empty() {
            let _ = journal.settle(&interrupted);
        }
        Ok(Self {
            lock,
            journal,
            interrupted,
        })
    }
}

/// What happened to one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The resource already was as the step wants it (an earlier apply of this plan wrote it
    /// and was interrupted): nothing written.
    AlreadyApplied,
    Failed(String),
    Skipped(String),
}

impl Outcome {
    /// Whether the resource is now as the step wants it.
    pub fn succeeded(&self) -> bool {
        matches!(self, Self::Applied | Self::AlreadyApplied)
    }
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub outcomes: BTreeMap<Address, Outcome>,
    /// Touched resources that still differ after apply, with their remaining changes.
    pub not_converged: BTreeMap<Address, Vec<FieldChange>>,
}

impl ApplyReport {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.values().filter(|o| f(o)).count()
    }

    pub fn applied(&self) -> usize {
        self.count(|o| *o == Outcome::Applied)
    }

    pub fn already_applied(&self) -> usize {
        self.count(|o| *o == Outcome::AlreadyApplied)
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }
}

/// The desired resources of a run, by address (looked up once per step).
struct Wanted<'a> {
    all: &'a [Desired],
    by_address: std::collections::HashMap<&'a Address, &'a Desired>,
}

impl<'a> Wanted<'a> {
    fn new(desired: &'a [Desired]) -> Self {
        Self {
            all: desired,
            by_address: desired.iter().map(|d| (&d.address, d)).collect(),
        }
    }
}

/// Why a step is not started once a shutdown was requested.
pub const STOPPED: &str = "not started: shutdown requested";

/// Runs one step: its intent on disk before the change, its result after. Once `stop` is
/// cancelled no new step starts (a running one finishes and is journaled).
async fn execute(
    providers: &Providers,
    journal: Option<&Journal>,
    stop: Option<&CancellationToken>,
    desired: &Wanted<'_>,
    step: &Step,
) -> Outcome {
    if stop.is_some_and(|s| s.is_cancelled()) {
        return Outcome::Skipped(STOPPED.into());
    }
    if let Some(j) = journal
        && let Err(e) = j.record(&step.address, step.action, Event::Intent, None)
    {
        return Outcome::Failed(format!("cannot write the journal, step not run: {e}"));
    }
    let wanted = desired.by_address.get(&step.address).copied();
    let outcome = match providers.apply(step, wanted).await {
        Ok(()) => Outcome::Applied,
        // An error from GitLab or AWS may hide a write that happened (a 500 after the change,
        // a lost response): read the resource back before calling the step failed.
        Err(e @ crate::providers::StepError::Api { .. }) => {
            if read_back_matches(providers, desired.all, step).await {
                tracing::info!(address = %step.address, error = %e, "The write happened despite the error: read back as wanted");
                Outcome::Applied
            } else {
                Outcome::Failed(e.to_string())
            }
        }
        Err(e) => Outcome::Failed(e.to_string()),
    };
    record(journal, step, &outcome);
    outcome
}

/// Whether the step's resource is now as the step wants it (absent for a delete; every
/// desired field equal otherwise).
async fn read_back_matches(providers: &Providers, desired: &[Desired], step: &Step) -> bool {
    let live = providers
        .observe_only(desired, std::slice::from_ref(&step.address))
        .await;
    let Ok(now) = live.current(&step.address) else {
        return false;
    };
    match (step.action, now) {
        (Action::Delete, None) => true,
        (Action::Delete, Some(_)) | (_, None) => false,
        (_, Some(live)) => live.is_as_wanted(&step.desired),
    }
}

fn record(journal: Option<&Journal>, step: &Step, outcome: &Outcome) {
    let Some(j) = journal else { return };
    let (event, detail) = match outcome {
        Outcome::Applied => (Event::Applied, None),
        Outcome::AlreadyApplied => (Event::Applied, Some("already applied".to_string())),
        Outcome::Failed(why) => (Event::Failed, Some(why.clone())),
        Outcome::Skipped(why) => (Event::Skipped, Some(why.clone())),
    };
    if let Err(e) = j.record(&step.address, step.action, event, detail) {
        tracing::error!(address = %step.address, error = %e, "Cannot write the journal");
    }
}

/// Whether a step must run after every other step of its project.
fn runs_last(step: &Step) -> bool {
    step.action == Action::Replace && matches!(step.address, Address::ProtectedBranch { .. })
}

/// Applies a verified plan and checks convergence. `on_step` is told each outcome as it
/// happens. When `stop` is cancelled, running steps finish, the rest are skipped (journaled as
/// such) and the convergence check is left to the next run.
pub async fn run<'a>(
    approved: &'a ApprovedPlan,
    providers: &Providers,
    desired: &[Desired],
    graph: &Graph,
    journal: Option<&Journal>,
    stop: Option<&CancellationToken>,
    on_step: &(dyn Fn(&Step, &Outcome) + Sync),
) -> ApplyReport {
    let plan = approved.plan();
    let wanted = Wanted::new(desired);
    let wanted = &wanted;
    let execute = |step: &'a Step| {
        let done = approved.is_done(&step.address);
        async move {
            if done {
                let outcome = Outcome::AlreadyApplied;
                record(journal, step, &outcome);
                outcome
            } else {
                execute(providers, journal, stop, wanted, step).await
            }
        }
    };
    let mut report = ApplyReport::default();
    let (last, first): (Vec<&Step>, Vec<&Step>) = plan.steps.iter().partition(|s| runs_last(s));

    let mut pending: Vec<&Step> = first;
    while !pending.is_empty() {
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for step in pending {
            let blocker = step
                .depends_on
                .iter()
                .find_map(|d| match report.outcomes.get(d) {
                    Some(o) if o.succeeded() => None,
                    Some(_) => Some(Some(d.clone())),
                    None => Some(None),
                });
            match blocker {
                None => ready.push(step),
                Some(Some(dep)) => {
                    let outcome =
                        Outcome::Skipped(format!("depends on {dep}, which did not apply"));
                    on_step(step, &outcome);
                    report.outcomes.insert(step.address.clone(), outcome);
                }
                Some(None) => waiting.push(step),
            }
        }
        if ready.is_empty() {
            // Only possible if a dependency is not in the plan's order: report, never loop.
            for step in waiting {
                let outcome = Outcome::Skipped("a dependency was never applied".into());
                on_step(step, &outcome);
                report.outcomes.insert(step.address.clone(), outcome);
            }
            break;
        }
        let results = join_all(ready.iter().map(|step| async move {
            let outcome = execute(step).await;
            on_step(step, &outcome);
            (step.address.clone(), outcome)
        }))
        .await;
        report.outcomes.extend(results);
        pending = waiting;
    }

    // Protected-branch replacements: after everything else, whatever failed elsewhere, unless
    // the branch's own dependency (its project) is missing.
    let results = join_all(last.iter().map(|step| {
        let blocked = step
            .depends_on
            .iter()
            .find(|d| report.outcomes.get(*d).is_some_and(|o| !o.succeeded()))
            .cloned();
        async move {
            let outcome = match blocked {
                Some(dep) => Outcome::Skipped(format!("depends on {dep}, which did not apply")),
                None => execute(step).await,
            };
            on_step(step, &outcome);
            (step.address.clone(), outcome)
        }
    }))
    .await;
    report.outcomes.extend(results);

    // Convergence: read the touched resources again; they must show no diff.
    let touched: Vec<Address> = plan.steps.iter().map(|s| s.address.clone()).collect();
    if !touched.is_empty() && !stop.is_some_and(|s| s.is_cancelled()) {
        let live = providers.observe_only(wanted.all, &touched).await;
        let wanted: Vec<Desired> = touched
            .iter()
            .filter_map(|a| wanted.by_address.get(a).map(|d| (*d).clone()))
            .collect();
        let prune: plan::Prune = plan
            .steps
            .iter()
            .filter(|s| s.action == Action::Delete)
            .filter_map(|s| plan::graph_owner(&s.address).map(|o| (o, s.address.kind())))
            .collect();
        let again = plan::compute(&plan.revision, &wanted, &live, graph, &prune, &|a| {
            providers.replace_note(a)
        });
        // Failed and skipped steps are reported as such; only applied ones must converge.
        let applied = |a: &Address| report.outcomes.get(a).is_some_and(Outcome::succeeded);
        let mut not_converged = BTreeMap::new();
        for step in again.steps.into_iter().filter(|s| applied(&s.address)) {
            not_converged.insert(step.address, step.changes);
        }
        for b in again.blocked.into_iter().filter(|b| applied(&b.address)) {
            not_converged.insert(b.address, Vec::new());
        }
        report.not_converged = not_converged;
    }
    report
}
