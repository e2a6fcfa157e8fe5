//! `reconcile daemon`: keeps live state matching the desired state.
//!
//! ```text
//! tick | spec changed | plan approved | shutdown ──► sync source ──► pipeline::plan ──► decide
//!   correct ──► apply now        hold ──► held plan (approve over HTTP or CLI) ──► apply
//!   report  ──► notify
//! ```
//! One cycle at a time. Owns scheduling (interval with jitter, exponential backoff after
//! failures), the drift policies, marking resources that do not converge, the HTTP endpoints
//! ([`http`]) and notifications ([`notify`]). It never decides a change itself: steps come from
//! the same plan pipeline as `reconcile plan`, and writes go through [`crate::apply::run`] under
//! the same lock and journal as `reconcile apply`.

pub mod decide;
pub mod held;
pub mod http;
pub mod notify;
pub mod source;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use metrics::{counter, gauge};
use tokio_util::sync::CancellationToken;

use crate::apply::{self, ApplyReport, Outcome};
use crate::approve::{Directory, Gates};
use crate::lock::LockError;
use crate::pipeline::{self, PipelineError, Planned, Settings};
use crate::plan::{Plan, render};
use crate::providers::gitlab::GitlabClient;
use crate::secret::{FingerprintKey, SecretValue};
use crate::spec::config::{Config, DriftPolicy};
use crate::verify::{self, ApprovedPlan, Inputs, Io, Refusal};
use decide::{Decision, Marks, Rules, decide};
use held::Held;
use notify::Notifier;
use source::Source;

/// How long a cycle woken by a system hook waits for the rest of the burst.
const HOOK_DEBOUNCE: Duration = Duration::from_secs(1);

/// Consecutive failed cycles after which the daemon reports itself unhealthy.
pub(crate) const UNHEALTHY_AFTER: u32 = 3;

pub struct Options {
    pub source: Source,
    pub interval: Duration,
    /// Checks of the desired state for a change between cycles.
    pub probe_interval: Duration,
    /// HTTP endpoints; none with `--once`.
    pub listen: Option<SocketAddr>,
    pub once: bool,
    pub state_dir: PathBuf,
    pub webhook: Option<SecretValue>,
    pub settings: Settings,
    /// Longest time until a drift no hook or inventory reveals is read (0: read everything
    /// every cycle).
    pub sweep_period: Duration,
    /// Secret token of GitLab's system hook; with it the daemon registers the hook and accepts
    /// its events at `/hooks/gitlab`.
    pub hook_token: Option<SecretValue>,
    /// URL GitLab calls (default: `http://<listen address>/hooks/gitlab`).
    pub hook_url: Option<String>,
}

/// How a cycle ended, for `--once`, metrics and scheduling.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleOutcome {
    /// Live state matches (or only `report` scopes differ).
    Converged,
    /// Corrections were applied and converged.
    Corrected,
    /// Plans wait for approval.
    Held,
    Failed,
    /// Shutdown requested during the cycle.
    Stopped,
}

/// What the HTTP endpoints show about the cycles.
#[derive(Default, Clone, serde::Serialize)]
pub struct Status {
    pub cycles: u64,
    pub consecutive_failures: u32,
    pub last_cycle: Option<CycleSummary>,
    /// Seconds until the next scheduled cycle.
    pub next_cycle_in_seconds: Option<f64>,
    pub not_converging: Vec<String>,
    /// What the last cycle read, for the approval endpoint.
    #[serde(skip)]
    pub context: Option<Arc<Context>>,
}

/// What approving a held plan needs from the last cycle.
pub struct Context {
    pub config: Config,
    /// The gates of the held scopes (a `hold` scope needs at least one approval).
    pub gates: Gates,
    pub gitlab_url: String,
    /// GitLab with the daemon's token, to check proofs (SSH keys, CI jobs).
    pub directory: Option<GitlabClient>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CycleSummary {
    pub outcome: CycleOutcome,
    pub revision: Option<String>,
    pub finished_at: String,
    #[serde(skip)]
    pub finished: Option<SystemTime>,
    pub duration_seconds: f64,
    pub drift: usize,
    pub applied: usize,
    pub held: usize,
    pub errors: Vec<String>,
}

/// State shared by the cycle loop and the HTTP handlers.
pub struct Shared {
    pub status: Mutex<Status>,
    /// Held plans: the loop replaces them, HTTP adds approvals; one at a time.
    pub held: tokio::sync::Mutex<Held>,
    /// The reconcile key: attests approvals made on the approval endpoint.
    pub key: Option<FingerprintKey>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub state_dir: PathBuf,
    /// Wakes the loop (a held plan got its last approval).
    pub wake: tokio::sync::Notify,
    pub interval: Duration,
    /// The bound address of the HTTP endpoints.
    pub listen: Option<SocketAddr>,
    /// What system hooks and the daemon's writes say may have changed since the last cycle.
    pub dirty: Mutex<watch::Dirty>,
    /// The system hook's secret token (hooks are refused without one).
    pub hook_token: Option<SecretValue>,
    /// Wakes the loop (a system hook arrived).
    pub hooked: tokio::sync::Notify,
}

/// Runs the daemon until shutdown (or one cycle with `--once`). Exit: 0 converged, 2 plans
/// held, 1 failure (with `--once`); 0 after a graceful shutdown.
pub async fn run(options: Options) -> Result<u8, String> {
    let metrics = if options.once {
        None
    } else {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
        crate::metrics::describe();
        Some(handle)
    };
    let listener = match options.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
        ),
        None => None,
    };
    let bound = match &listener {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let shared = Arc::new(Shared {
        status: Mutex::new(Status::default()),
        held: tokio::sync::Mutex::new(Held::new(&options.state_dir)),
        key: options.settings.key(),
        metrics,
        state_dir: options.state_dir.clone(),
        wake: tokio::sync::Notify::new(),
        interval: options.interval,
        listen: bound,
        dirty: Mutex::new(watch::Dirty::default()),
        hook_token: options.hook_token.clone(),
        hooked: tokio::sync::Notify::new(),
    });
    let stop = CancellationToken::new();
    tokio::spawn(signals(stop.clone()));
    let server = match (listener, bound) {
        (Some(listener), Some(bound)) => {
            eprintln!("reconcile daemon: listening on http://{bound}");
            let app = http::router(Arc::clone(&shared));
            let stop = stop.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            }))
        }
        _ => None,
    };
    let notifier = Notifier::start(
        options.webhook.clone(),
        options
            .settings
            .client
            .min_backoff
            .max(Duration::from_millis(50)),
    );
    let sweep_period = options.sweep_period;
    let mut daemon = Daemon {
        options,
        shared,
        notifier,
        stop: stop.clone(),
        marks: Marks::default(),
        revision: None,
        reported: BTreeMap::new(),
        last_error: None,
        differing: Default::default(),
        watch: tokio::sync::Mutex::new(watch::Watch::new(sweep_period)),
        hook_registered: false,
    };
    let code = daemon.run_loop().await;
    stop.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    daemon.notifier.drain(Duration::from_secs(10)).await;
    Ok(code)
}

/// SIGTERM or SIGINT: stop after the running step.
async fn signals(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("reconcile daemon: shutdown requested; finishing the running step");
    stop.cancel();
}

struct Daemon {
    options: Options,
    shared: Arc<Shared>,
    notifier: Notifier,
    stop: CancellationToken,
    marks: Marks,
    /// The source fingerprint the last cycle started from.
    revision: Option<String>,
    /// What was last notified for each `report` scope (not repeated every cycle).
    reported: BTreeMap<String, String>,
    /// The last failure notified (not repeated every cycle).
    last_error: Option<String>,
    /// Addresses that differed in the last planned cycle.
    differing: std::collections::BTreeSet<crate::address::Address>,
    /// What GitLab looked like, between cycles.
    watch: tokio::sync::Mutex<watch::Watch>,
    hook_registered: bool,
}

/// What one cycle did.
#[derive(Default)]
struct Cycle {
    revision: Option<String>,
    drift: usize,
    applied: usize,
    held: usize,
    errors: Vec<String>,
    stopped: bool,
}

impl Daemon {
    async fn run_loop(&mut self) -> u8 {
        let mut number = 0u64;
        loop {
            number += 1;
            let started = std::time::Instant::now();
            let cycle = self.cycle(number).await;
            let outcome = if cycle.stopped {
                CycleOutcome::Stopped
            } else if !cycle.errors.is_empty() {
                CycleOutcome::Failed
            } else if cycle.held > 0 {
                CycleOutcome::Held
            } else if cycle.applied > 0 {
                CycleOutcome::Corrected
            } else {
                CycleOutcome::Converged
            };
            let failures = self.record(&cycle, &outcome, started.elapsed());
            tracing::info!(cycle = number, outcome = ?outcome, drift = cycle.drift, applied = cycle.applied, held = cycle.held, errors = cycle.errors.len(), "Cycle finished");
            if self.options.once || self.stop.is_cancelled() {
                return match outcome {
                    CycleOutcome::Failed => 1,
                    CycleOutcome::Held => 2,
                    _ => 0,
                };
            }
            let delay = next_delay(self.options.interval, failures);
            self.shared.status.lock().unwrap().next_cycle_in_seconds = Some(delay.as_secs_f64());
            let reason = self.wait(delay).await;
            if reason == "shutdown" {
                return 0;
            }
            if reason == "GitLab system hook" {
                // Events come in bursts (one change, several hooks): one cycle reads them all,
                // and a flood of hooks starts at most one cycle per second.
                tokio::select! {
                    _ = tokio::time::sleep(HOOK_DEBOUNCE) => {}
                    _ = self.stop.cancelled() => return 0,
                }
            }
            tracing::info!(reason, "Cycle starting");
        }
    }

    /// Records the cycle's outcome in the status, metrics and notifications; returns the number
    /// of consecutive failures.
    fn record(&mut self, cycle: &Cycle, outcome: &CycleOutcome, took: Duration) -> u32 {
        let label = match outcome {
            CycleOutcome::Converged => "converged",
            CycleOutcome::Corrected => "corrected",
            CycleOutcome::Held => "held",
            CycleOutcome::Failed => "failed",
            CycleOutcome::Stopped => "stopped",
        };
        counter!("reconcile_cycles_total", "outcome" => label).increment(1);
        let now = SystemTime::now();
        let mut status = self.shared.status.lock().unwrap();
        status.cycles += 1;
        if *outcome == CycleOutcome::Failed {
            status.consecutive_failures += 1;
        } else {
            if status.consecutive_failures >= UNHEALTHY_AFTER {
                self.notifier.send(format!(
                    "reconcile daemon recovered after {} failed cycles",
                    status.consecutive_failures
                ));
            }
            status.consecutive_failures = 0;
            self.last_error = None;
            let unix = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            gauge!("reconcile_last_success_timestamp_seconds").set(unix);
        }
        let failures = status.consecutive_failures;
        gauge!("reconcile_consecutive_failures").set(f64::from(failures));
        if failures == UNHEALTHY_AFTER {
            self.notifier.send(format!(
                "reconcile daemon unhealthy: {failures} cycles failed in a row; last error: {}",
                cycle.errors.first().map_or("", String::as_str)
            ));
        }
        status.not_converging = self
            .marks
            .iter()
            .map(|(a, m)| format!("{a}: {}", m.why))
            .collect();
        gauge!("reconcile_not_converging").set(self.marks.len() as f64);
        status.last_cycle = Some(CycleSummary {
            outcome: outcome.clone(),
            revision: cycle.revision.clone(),
            finished_at: humantime::format_rfc3339_seconds(now).to_string(),
            finished: Some(now),
            duration_seconds: took.as_secs_f64(),
            drift: cycle.drift,
            applied: cycle.applied,
            held: cycle.held,
            errors: cycle.errors.clone(),
        });
        failures
    }

    /// Waits for the next cycle: the delay, a spec change, an approved plan, or shutdown.
    async fn wait(&self, delay: Duration) -> &'static str {
        let poll = self.options.interval.min(self.options.probe_interval);
        let changed = async {
            loop {
                tokio::time::sleep(poll).await;
                match self.options.source.probe().await {
                    Ok(now) if self.revision.as_ref() != Some(&now) => return,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "Cannot probe the desired state"),
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => "interval",
            _ = changed => "desired state changed",
            _ = self.shared.wake.notified() => "plan approved",
            _ = self.shared.hooked.notified() => "GitLab system hook",
            _ = self.stop.cancelled() => "shutdown",
        }
    }

    /// One cycle: plan everything, then correct, hold or report per scope.
    async fn cycle(&mut self, number: u64) -> Cycle {
        let mut cycle = Cycle::default();
        let source = &self.options.source;
        let probe = source.probe().await.ok();
        if probe.is_some() && probe != self.revision {
            if self.revision.is_some() {
                tracing::info!(source = %source.describe(), "Desired state changed");
            }
            self.marks.clear();
            self.revision = probe;
        }
        // Reading and planning write nothing: a shutdown cancels them at once.
        let planned = tokio::select! {
            planned = self.plan() => planned,
            _ = self.stop.cancelled() => {
                cycle.stopped = true;
                return cycle;
            }
        };
        let planned = match planned {
            Ok(p) => p,
            Err(e) => {
                self.fail(&mut cycle, e);
                return cycle;
            }
        };
        cycle.revision = Some(planned.plan.revision.clone());
        self.register_hook(&planned).await;
        let config = planned.state.config.clone();
        let gates =
            Gates::for_state(&planned.state, &planned.trusted).at_least(&held_scopes(&config), 1);
        let context = Arc::new(Context {
            gitlab_url: self.options.settings.gitlab_url(&planned.state),
            directory: pipeline::directory_client(&planned.state, &self.options.settings),
            config: config.clone(),
            gates,
        });
        self.shared.status.lock().unwrap().context = Some(Arc::clone(&context));
        for b in &planned.plan.blocked {
            tracing::warn!(address = %b.address, reason = %b.reason, "Cannot plan");
        }
        if let Some(first) = planned.plan.blocked.first() {
            cycle.errors.push(format!(
                "{} resource(s) could not be read (first: {}: {})",
                planned.plan.blocked.len(),
                first.address,
                first.reason
            ));
        }
        self.marks.keep_only(&planned.plan);
        cycle.drift = planned.plan.steps.len();
        // Counted when a difference appears, not again each cycle it stays (held, reported).
        for step in &planned.plan.steps {
            if !self.differing.contains(&step.address) {
                counter!("reconcile_drift_found_total", "kind" => step.address.kind(), "env" => step.scope.clone()).increment(1);
            }
        }
        // An unreadable resource keeps what was known of it.
        let unread: Vec<_> = planned
            .plan
            .blocked
            .iter()
            .map(|b| &b.address)
            .filter(|a| self.differing.contains(*a))
            .cloned()
            .collect();
        self.differing = planned
            .plan
            .steps
            .iter()
            .map(|s| s.address.clone())
            .collect();
        self.differing.extend(unread);
        let standing = verify::standing(&planned.plan, &planned.trusted);
        let rules = Rules {
            gates: &context.gates,
            standing: &standing,
            max_deletes: config.plan.max_deletes,
        };
        let decision = decide(&planned.plan, &config, &rules, &|a| {
            self.marks.withheld(a, number)
        });
        for (address, why) in &decision.withheld {
            tracing::warn!(%address, why, "Withheld");
        }
        for (scope, why) in &decision.escalated {
            tracing::warn!(scope, why, "Held for approval instead of corrected");
        }
        self.report(&planned.plan, &decision);

        let key = self.options.settings.key();
        let revision = pipeline::revision(&planned.state);
        let inputs = |allow_deletes| Inputs {
            state: &planned.state,
            revision: &revision,
            trusted: &planned.trusted,
            gates: &context.gates,
            key: key.as_ref(),
            allow_deletes,
            now: SystemTime::now(),
        };
        let io = Io {
            providers: &planned.providers,
            desired: &planned.desired,
            aws: planned.aws.as_deref(),
            directory: context.directory.as_ref().map(|c| c as &dyn Directory),
        };
        // Corrections, one verified plan per scope.
        let mut to_apply: Vec<(ApprovedPlan, Option<held::HeldPlan>)> = Vec::new();
        let author = pipeline::verified_author(&planned.plan.author);
        let correct_scopes: std::collections::BTreeSet<String> = planned
            .plan
            .steps
            .iter()
            .filter(|s| decision.correct.contains(&s.address))
            .map(|s| s.scope.clone())
            .collect();
        for scope in correct_scopes {
            let part = planned.plan.part(&[scope.clone()].into(), |s| {
                decision.correct.contains(&s.address)
            });
            let source = verify::Source::Correction {
                plan: part,
                author: author.clone(),
            };
            match verify::verify(source, &inputs(false), &io).await {
                Ok(approved) => to_apply.push((approved, None)),
                Err(refusal) => cycle
                    .errors
                    .push(format!("cannot correct {scope}: {refusal}")),
            }
        }
        // Held plans: approved ones are applied now.
        let approved = self
            .hold(&planned, &decision, &inputs(true), &io, &mut cycle)
            .await;
        to_apply.extend(approved.into_iter().map(|(a, h)| (a, Some(h))));
        if !to_apply.is_empty() {
            {
                let mut dirty = self.shared.dirty.lock().unwrap();
                for (approved, _) in &to_apply {
                    for step in &approved.plan().steps {
                        dirty.wrote(&step.address);
                    }
                }
            }
            let report = self.apply(&planned, &to_apply, &mut cycle).await;
            if let Some(report) = report {
                let held: Vec<held::HeldPlan> =
                    to_apply.into_iter().filter_map(|(_, h)| h).collect();
                self.after_apply(&planned, &report, &held, number, &mut cycle)
                    .await;
            }
        }
        gauge!("reconcile_plans_held").set(self.shared.held.lock().await.list().len() as f64);
        if let Some(first) = cycle.errors.first().cloned()
            && self.last_error.as_ref() != Some(&first)
        {
            self.last_error = Some(first);
        }
        cycle
    }

    /// Registers GitLab's system hook once (when a hook token is set).
    async fn register_hook(&mut self, planned: &Planned) {
        if self.hook_registered {
            return;
        }
        let (Some(token), Some(gitlab)) = (&self.options.hook_token, &planned.gitlab) else {
            return;
        };
        let url = match (&self.options.hook_url, self.shared.listen) {
            (Some(url), _) => url.clone(),
            (None, Some(bound)) => format!("http://{bound}/hooks/gitlab"),
            (None, None) => return,
        };
        match gitlab.register_system_hook(&url, token).await {
            Ok(()) => {
                tracing::info!(url, "GitLab system hook registered");
                self.hook_registered = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot register the GitLab system hook: drift is seen by the inventory and the sweep only")
            }
        }
    }

    async fn plan(&self) -> Result<Planned, String> {
        let dir = self
            .options
            .source
            .sync()
            .await
            .map_err(|e| e.to_string())?;
        let mut watch = self.watch.lock().await;
        pipeline::plan_watched(&dir, &self.options.settings, &mut watch, &self.shared.dirty)
            .await
            .map(|(planned, reads)| {
                tracing::info!(
                    full = reads.full,
                    projects = reads.projects,
                    users = reads.users,
                    "Observed GitLab"
                );
                planned
            })
            .map_err(|e| match e {
                PipelineError::Spec(errors) => {
                    let mut out = codespan_reporting::term::termcolor::Buffer::no_color();
                    let _ = errors.render(&mut out);
                    eprint!("{}", String::from_utf8_lossy(out.as_slice()));
                    format!(
                        "the desired state has {} error(s); nothing was changed (run `reconcile validate`)",
                        errors.diagnostics.len()
                    )
                }
                PipelineError::Config(message) | PipelineError::Preflight(message) => message,
            })
    }

    fn fail(&mut self, cycle: &mut Cycle, error: String) {
        tracing::error!(error = %error, "Cycle failed");
        if self.last_error.as_ref() != Some(&error) {
            self.notifier
                .send(format!("reconcile: cycle failed: {error}"));
            self.last_error = Some(error.clone());
        }
        cycle.errors.push(error);
    }

    /// `report` scopes: notify what differs, once per distinct difference.
    fn report(&mut self, plan: &Plan, decision: &Decision) {
        self.reported
            .retain(|scope, _| decision.report.contains_key(scope));
        for (scope, addresses) in &decision.report {
            let part = plan.part(&[scope.clone()].into(), |s| addresses.contains(&s.address));
            let lines = step_lines(&part);
            if self.reported.get(scope) == Some(&lines) {
                continue;
            }
            self.notifier.send(format!(
                "reconcile: drift in {scope} (policy `report`, nothing changed): {}\n{lines}",
                render::summary(&part)
            ));
            self.reported.insert(scope.clone(), lines);
        }
    }

    /// `hold` scopes: keep, replace or drop each scope's held plan; returns the held plans
    /// that pass verification (approved, current), to apply now.
    async fn hold(
        &mut self,
        planned: &Planned,
        decision: &Decision,
        inputs: &Inputs<'_>,
        io: &Io<'_>,
        cycle: &mut Cycle,
    ) -> Vec<(ApprovedPlan, held::HeldPlan)> {
        let plan = &planned.plan;
        let store = self.shared.held.lock().await;
        let mut approved = Vec::new();
        // A scope with unreadable resources is left as it is: a failed read is never "no
        // change needed" (its held plan and approvals stay).
        let unreadable: std::collections::BTreeSet<String> = plan
            .blocked
            .iter()
            .map(|b| b.address.scope_name())
            .collect();
        for existing in store.list() {
            if unreadable.contains(&existing.scope) {
                cycle.held += 1;
                continue;
            }
            if !decision.hold.contains_key(&existing.scope) {
                tracing::info!(scope = %existing.scope, "Held plan no longer needed: removed");
                crate::audit::append(
                    &self.shared.state_dir,
                    "discard",
                    &plan.author.username,
                    Some(existing.hash()),
                    "no longer needed",
                    None,
                );
                store.remove(&existing.scope);
            }
        }
        for (scope, addresses) in &decision.hold {
            if unreadable.contains(scope) {
                continue;
            }
            let fresh = plan.part(&[scope.clone()].into(), |s| addresses.contains(&s.address));
            if let Some(existing) = store.get(scope)
                && same_change(existing.plan(), &fresh)
            {
                let source = verify::Source::File {
                    file: existing.file.clone(),
                    approvals: existing.approvals.clone(),
                };
                match verify::verify(source, inputs, io).await {
                    Ok(a) => {
                        tracing::info!(scope, plan = %existing.hash(), "Held plan approved: applying");
                        approved.push((a, existing));
                        continue;
                    }
                    Err(Refusal::Approvals { .. }) => {
                        cycle.held += 1;
                        continue;
                    }
                    Err(refusal) => {
                        tracing::info!(scope, plan = %existing.hash(), why = %refusal, "Held plan can no longer be applied: replaced");
                    }
                }
            }
            let attestation = pipeline::author_attestation(&fresh, &self.options.settings);
            match store.put(scope, &fresh, attestation.as_deref()) {
                Ok(h) => {
                    cycle.held += 1;
                    crate::audit::append(
                        &self.shared.state_dir,
                        "hold",
                        &plan.author.username,
                        Some(h.hash()),
                        "held",
                        Some(render::summary(&fresh)),
                    );
                    tracing::info!(scope, plan = %h.hash(), "Plan held for approval");
                    let why = decision.escalated.get(scope).map(String::as_str);
                    self.notifier
                        .send(held_message(&h, inputs.gates, why, self.shared.listen));
                }
                Err(e) => cycle
                    .errors
                    .push(format!("cannot write the held plan for {scope}: {e}")),
            }
        }
        approved
    }

    /// Applies verified plans under the lock, journaled, one after the other; `None` when
    /// nothing could start.
    async fn apply(
        &mut self,
        planned: &Planned,
        plans: &[(ApprovedPlan, Option<held::HeldPlan>)],
        cycle: &mut Cycle,
    ) -> Option<ApplyReport> {
        let state_dir = &self.options.state_dir;
        let who = planned.plan.author.username.clone();
        let session = match apply::Session::open(state_dir, "reconcile daemon", "-daemon") {
            Ok(session) => session,
            Err(apply::SessionError::Lock(LockError::Held(holder))) => {
                cycle.errors.push(format!(
                    "another apply is running ({holder}); corrections wait for the next cycle"
                ));
                return None;
            }
            Err(e) => {
                cycle.errors.push(e.to_string());
                return None;
            }
        };
        for i in &session.interrupted {
            tracing::warn!(address = %i.address, run = %i.run, "An earlier apply was interrupted at this step; it is read again");
        }
        let mut total = ApplyReport::default();
        for (approved, _) in plans {
            if self.stop.is_cancelled() {
                break;
            }
            let report = apply::run(
                approved,
                &planned.providers,
                &planned.desired,
                &planned.graph,
                Some(&session.journal),
                Some(&self.stop),
                &|step, outcome| match outcome {
                    Outcome::Applied => tracing::info!(address = %step.address, action = step.action.as_str(), fields = %step.changed_fields(), "Applied"),
                    Outcome::AlreadyApplied => tracing::info!(address = %step.address, "Already applied"),
                    Outcome::Failed(why) => tracing::error!(address = %step.address, error = %why, "Step failed"),
                    Outcome::Skipped(why) => tracing::warn!(address = %step.address, why = %why, "Step skipped"),
                },
            )
            .await;
            let approvers: Vec<&str> = approved
                .approvals()
                .iter()
                .map(|a| a.user.username.as_str())
                .collect();
            crate::audit::append(
                state_dir,
                "apply",
                &who,
                Some(approved.hash()),
                if report.failed() + report.skipped() + report.not_converged.len() == 0 {
                    "applied"
                } else {
                    "partial"
                },
                Some(format!(
                    "{} applied, {} failed, {} skipped, {} not converged; {}",
                    report.applied(),
                    report.failed(),
                    report.skipped(),
                    report.not_converged.len(),
                    if approved.records() {
                        format!("approved by [{}]", approvers.join(", "))
                    } else {
                        "drift correction".to_string()
                    }
                )),
            );
            let key = self.options.settings.key();
            if let Err(e) = verify::record_applied(
                approved,
                &report.outcomes,
                &planned.state,
                state_dir,
                key.as_ref(),
                SystemTime::now(),
            ) {
                cycle.errors.push(e);
            }
            total.outcomes.extend(report.outcomes);
            total.not_converged.extend(report.not_converged);
        }
        drop(session);
        if self.stop.is_cancelled() {
            cycle.stopped = true;
        }
        Some(total)
    }

    async fn after_apply(
        &mut self,
        planned: &Planned,
        report: &ApplyReport,
        approved: &[held::HeldPlan],
        number: u64,
        cycle: &mut Cycle,
    ) {
        let mut corrected = Vec::new();
        let mut approved_lines: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut failed = Vec::new();
        let approved_scope = |a: &crate::address::Address| {
            approved
                .iter()
                .find(|h| h.plan().steps.iter().any(|s| &s.address == a))
                .map(|h| h.scope.as_str())
        };
        for step in &planned.plan.steps {
            match report.outcomes.get(&step.address) {
                Some(Outcome::AlreadyApplied) => {
                    counter!("reconcile_apply_steps_total", "outcome" => "already_applied")
                        .increment(1);
                }
                Some(Outcome::Applied) => {
                    counter!("reconcile_apply_steps_total", "outcome" => "applied").increment(1);
                    if !report.not_converged.contains_key(&step.address) {
                        counter!("reconcile_drift_corrected_total", "kind" => step.address.kind(), "env" => step.scope.clone()).increment(1);
                        let line = format!(
                            "• {} ({}: {})",
                            step.address,
                            step.action.as_str(),
                            step.changed_fields()
                        );
                        match approved_scope(&step.address) {
                            Some(scope) => approved_lines.entry(scope).or_default().push(line),
                            None => corrected.push(line),
                        }
                    }
                }
                Some(Outcome::Failed(why)) => {
                    counter!("reconcile_apply_steps_total", "outcome" => "failed").increment(1);
                    self.marks.mark(&step.address, number, why.clone());
                    failed.push(format!("• {}: {why}", step.address));
                }
                Some(Outcome::Skipped(why)) => {
                    counter!("reconcile_apply_steps_total", "outcome" => "skipped").increment(1);
                    if why != apply::STOPPED {
                        failed.push(format!("• {}: skipped ({why})", step.address));
                    }
                }
                None => {}
            }
        }
        for (address, changes) in &report.not_converged {
            let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
            let why = if fields.is_empty() {
                "could not be read back after the correction".to_string()
            } else {
                format!("still differs after the correction ({})", fields.join(", "))
            };
            tracing::warn!(%address, why, "Not converging: marked, retried less often");
            self.marks.mark(address, number, why.clone());
            failed.push(format!("• {address}: {why}"));
        }
        cycle.applied = report.applied();
        if !corrected.is_empty() {
            self.notifier.send(format!(
                "reconcile: drift corrected ({} change(s)):\n{}",
                corrected.len(),
                corrected.join("\n")
            ));
        }
        for (scope, lines) in &approved_lines {
            let hash = approved
                .iter()
                .find(|h| h.scope == *scope)
                .map_or("", |h| h.hash());
            self.notifier.send(format!(
                "reconcile: approved plan {hash} for {scope} applied ({} change(s)):\n{}",
                lines.len(),
                lines.join("\n")
            ));
        }
        if !failed.is_empty() {
            let message = format!(
                "reconcile: apply failed for {} resource(s):\n{}",
                failed.len(),
                failed.join("\n")
            );
            self.notifier.send(message);
            cycle
                .errors
                .push(format!("apply failed for {} resource(s)", failed.len()));
        }
        // Held plans applied in full are done.
        let store = self.shared.held.lock().await;
        for h in approved {
            let done = h.plan().steps.iter().all(|s| {
                report
                    .outcomes
                    .get(&s.address)
                    .is_some_and(Outcome::succeeded)
            });
            if done {
                store.remove(&h.scope);
                tracing::info!(scope = %h.scope, plan = %h.hash(), "Approved plan applied");
            }
        }
    }
}

/// Scopes whose drift policy is `hold`: their held plans need at least one approval even
/// without a gate, or holding would mean nothing.
pub fn held_scopes(config: &Config) -> std::collections::BTreeSet<String> {
    std::iter::once("gitlab".to_string())
        .chain(config.environments.keys().cloned())
        .filter(|scope| config.drift_policy(scope) == DriftPolicy::Hold)
        .collect()
}

/// Whether a held plan is the same change as the one planned now (same steps against the same
/// live state, same overrides and gate changes): its approvals still apply.
fn same_change(held: &Plan, fresh: &Plan) -> bool {
    held.revision == fresh.revision
        && held.steps == fresh.steps
        && held.overrides == fresh.overrides
        && held.gate_changes == fresh.gate_changes
}

/// The delay before the next cycle: the interval with ±10 % jitter; after `failures` failed
/// cycles in a row, doubled per failure up to 16× the interval (never above 30 minutes, unless
/// the interval itself is longer).
pub fn next_delay(interval: Duration, failures: u32) -> Duration {
    let base = if failures == 0 {
        interval
    } else {
        let backed = interval.saturating_mul(1 << failures.min(4));
        backed.min(interval.max(Duration::from_secs(30 * 60)))
    };
    base.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// One line per step: address, action, changed fields (no values).
fn step_lines(plan: &Plan) -> String {
    plan.steps
        .iter()
        .map(|s| {
            format!(
                "• {} ({}: {})",
                s.address,
                s.action.as_str(),
                s.changed_fields()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn held_message(
    h: &held::HeldPlan,
    gates: &Gates,
    why: Option<&str>,
    listen: Option<SocketAddr>,
) -> String {
    let needed = gates.required(&h.scope);
    let approvers: Vec<String> = gates
        .of(&h.scope)
        .iter()
        .flat_map(|g| g.gate.approvers.iter().cloned())
        .collect();
    let approvers = if approvers.is_empty() {
        String::new()
    } else {
        format!(" by one of {}", approvers.join(", "))
    };
    let cli = format!(
        "`reconcile approve {} --sign ~/.ssh/id_ed25519.pub`",
        h.path.display()
    );
    let how = match listen {
        Some(addr) => format!(
            "POST http://{addr}/api/plans/{}/approve with `Authorization: Bearer <your GitLab token>`, or {cli}",
            h.hash()
        ),
        None => cli,
    };
    let why = why.map(|w| format!("\nWhy held: {w}")).unwrap_or_default();
    format!(
        "reconcile: plan held for approval in {} ({needed} approval(s) needed{approvers}): {}{why}\n{}\nplan {}\nApprove: {how}",
        h.scope,
        render::summary(h.plan()),
        step_lines(h.plan()),
        h.hash()
    )
}

#[cfg(test)]
mod tests {
    use super::next_delay;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let i = Duration::from_secs(60);
        let around = |d: Duration, want: u64| {
            let w = want as f64;
            assert!(
                d.as_secs_f64() >= w * 0.9 && d.as_secs_f64() <= w * 1.1,
                "{d:?} vs {want}"
            );
        };
        around(next_delay(i, 0), 60);
        around(next_delay(i, 1), 120);
        around(next_delay(i, 3), 480);
        around(next_delay(i, 4), 960);
        around(next_delay(i, 9), 960);
        around(next_delay(Duration::from_secs(300), 9), 1800);
        around(next_delay(Duration::from_secs(3600), 5), 3600);
    }
}
