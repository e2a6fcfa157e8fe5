//! `reconcile apply PLANFILE` and `reconcile apply --auto-approve`.
//!
//! Before anything is written, a plan file must pass: its sha256, the desired-state revision it
//! was made from, its age (`plan.max_age`), the approvals its gated scopes need, and per-step
//! staleness (only the resources it touches are read again; a step whose recomputation differs
//! stops the apply, unrelated changes elsewhere do not). `--auto-approve` refuses plans that
//! touch a gated scope. One apply at a time (lock); every step journaled.
//!
//! Exit codes: 0 all applied and converged, 3 partial, 1 nothing applied or refused.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{DirArgs, Exit};
use crate::address::Address;
use crate::apply::{self, ApplyReport, Outcome};
use crate::approve::{self, Approvals};
use crate::lock::LockError;
use crate::pipeline::{self, Settings};
use crate::plan::{Plan, PromotionOverride, Step, render};
use crate::spec::config::Config;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Plan file written by `reconcile plan --out`.
    #[arg(
        required_unless_present = "auto_approve",
        conflicts_with = "auto_approve"
    )]
    pub plan: Option<PathBuf>,
    /// Plan and apply at once, without a plan file (like `terraform apply -auto-approve`);
    /// refused for gated scopes.
    #[arg(long)]
    pub auto_approve: bool,
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub scope: super::ScopeArgs,
}

/// A refusal: printed, audited, exit 1, nothing written.
struct Refusal(String);

pub fn run(args: &ApplyArgs) -> Exit {
    let settings = Settings {
        scope: args.scope.scope.clone(),
        ..Settings::from_env(|k| std::env::var(k).ok())
    };
    let state_dir = pipeline::state_dir(&args.dir.dir, &settings);
    super::runtime().block_on(async {
        let session = match apply::Session::open(&state_dir, &settings.user, "") {
            Ok(session) => session,
            Err(apply::SessionError::Lock(LockError::Held(holder))) => {
                eprintln!("error: another apply is running: {holder}\nhelp: wait for it to finish; a lock whose process is gone is reclaimed automatically");
                return Exit::Error;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Error;
            }
        };
        if let Some(previous) = &session.lock.reclaimed {
            eprintln!("warning: reclaimed the lock of an apply that is gone: {previous}");
        }
        if !session.interrupted.is_empty() {
            eprintln!("An earlier apply was interrupted; these steps had started and their outcome is unknown (this run reads them again):");
            for i in &session.interrupted {
                eprintln!("  {} ({:?}) in run {} at {}", i.address, i.action, i.run, i.at);
            }
        }

        let prepared = match pipeline::prepare(&args.dir.dir, &settings).await {
            Ok(p) => p,
            Err(e) => return super::plan::report_error(e),
        };
        let (planned, full_desired) = match &args.plan {
            Some(path) => {
                let config = prepared.state.config.clone();
                let revision = pipeline::revision(&prepared.state);
                let approved = match verify(path, &config, &revision) {
                    Ok(plan) => plan,
                    Err(Refusal(why)) => return refuse(&state_dir, &settings.user, None, &format!("refusing to apply `{}`: {why}", path.display())),
                };
                // Staleness: read only what the plan touches and recompute those steps.
                let touched: Vec<_> = approved.steps.iter().map(|s| s.address.clone()).collect();
                let mut prepared = prepared;
                let full_desired = prepared.desired.clone();
                prepared.desired.retain(|d| touched.contains(&d.address));
                let live = prepared.providers.observe_only(&prepared.desired, &touched).await;
                let mut planned = prepared.plan(live, &settings);
                if let Err(why) = approved.still_current(&planned.plan) {
                    return refuse(&state_dir, &settings.user, Some(&approved.hash()), &format!("refusing to apply `{}`: {why}\nhelp: run `reconcile plan --out FILE` again, review it and have it approved; nothing was changed", path.display()));
                }
                planned.plan = approved;
                (planned, Some(full_desired))
            }
            None => {
                let live = prepared.providers.observe(&prepared.desired).await;
                let mut planned = prepared.plan(live, &settings);
                planned.check_promotion().await;
                super::plan::print_plan(&planned, false);
                let gated = approve::gated_scopes(&planned.state.config, &planned.plan);
                if !gated.is_empty() {
                    let scopes: Vec<String> = gated.iter().map(|(s, n)| format!("{s} ({n} approval(s))")).collect();
                    return refuse(&state_dir, &settings.user, None, &format!("--auto-approve cannot apply changes to gated scopes: {}\nhelp: `reconcile plan --out FILE`, `reconcile approve FILE --by NAME`, then `reconcile apply FILE`", scopes.join(", ")));
                }
                (planned, None)
            }
        };
        let policy_errors = crate::policy::errors(&planned.plan.policies);
        if policy_errors > 0 {
            let found = crate::policy::render(&planned.plan.policies);
            let promotion = planned.plan.policies.iter().any(|f| f.rule == "promotion" && f.severity == crate::spec::config::Severity::Error);
            let help = if promotion {
                "help: [promotion]: roll the images out to the source environment first and plan again, or plan with `--promotion-override ENV/SERVICE=REASON` and have it approved with `reconcile approve --override`; other rules: fix the desired state, or lower the rule's severity in reconcile.yaml `policies:`"
            } else {
                "help: fix the desired state, or lower the rule's severity in reconcile.yaml `policies:`"
            };
            return refuse(&state_dir, &settings.user, Some(&planned.plan.hash()), &format!("{policy_errors} compliance policy error(s) block apply:\n{found}{help}"));
        }
        if !planned.plan.blocked.is_empty() {
            eprintln!("error: some resources could not be read; nothing was changed");
            return Exit::Error;
        }
        if planned.plan.is_empty() {
            eprintln!("Nothing to apply.");
            return Exit::Ok;
        }
        let hash = planned.plan.hash();
        // The promotion rule again, live, before anything is written.
        if let (Some(full_desired), Some(aws)) = (&full_desired, &planned.aws) {
            let marked = crate::providers::aws::promotion::marked(&planned.plan);
            if !marked.is_empty() {
                let checked = crate::providers::aws::promotion::check(aws, &planned.state, full_desired, &marked).await;
                let failed: Vec<String> = checked
                    .iter()
                    .filter_map(|c| match (&c.outcome, &c.address) {
                        (Err(why), Address::Service { env, service })
                            if PromotionOverride::find(&planned.plan.overrides, env, service).is_none() =>
                        {
                            Some(format!("  {}: {why}", c.address))
                        }
                        _ => None,
                    })
                    .collect();
                if !failed.is_empty() {
                    return refuse(&state_dir, &settings.user, Some(&hash), &format!("refusing to apply `{}`: the promotion rule no longer holds:\n{}\nhelp: bring the source environment back to a stable rollout of these images and apply again, or plan again with `--promotion-override ENV/SERVICE=REASON`; nothing was changed", args.plan.as_deref().unwrap_or(Path::new("")).display(), failed.join("\n")));
                }
            }
        }
        for o in &planned.plan.overrides {
            crate::audit::append(&state_dir, "override", &settings.user, Some(&hash), "applied", Some(format!("{}/{}: {}", o.env, o.service, o.reason)));
        }
        let progress = Progress::new(planned.plan.steps.len());
        let report = apply::run(&planned.plan, &planned.providers, &planned.desired, &planned.graph, Some(&session.journal), None, &|step, outcome| progress.step(step, outcome)).await;
        progress.finish();
        print_report(&report);
        eprintln!("API requests: {}", planned.providers.requests());
        let exit = exit_code(&report);
        let outcome = match exit {
            Exit::Ok => "applied",
            Exit::Partial => "partial",
            _ => "failed",
        };
        crate::audit::append(&state_dir, "apply", &settings.user, Some(&hash), outcome, Some(format!("{} applied, {} failed, {} skipped, {} not converged", report.applied(), report.failed(), report.skipped(), report.not_converged.len())));
        drop(session);
        exit
    })
}

fn refuse(state_dir: &Path, user: &str, plan: Option<&str>, message: &str) -> Exit {
    eprintln!("error: {message}");
    crate::audit::append(
        state_dir,
        "refuse",
        user,
        plan,
        "refused",
        Some(message.lines().next().unwrap_or_default().to_string()),
    );
    Exit::Error
}

/// Reads a plan file and checks everything that needs no live read: hash, revision, age,
/// approvals.
fn verify(path: &Path, config: &Config, revision: &str) -> Result<Plan, Refusal> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Refusal(format!("cannot read it: {e}")))?;
    let plan = Plan::from_file(&text).map_err(|e| Refusal(e.to_string()))?;
    if plan.revision != revision {
        return Err(Refusal(format!(
            "the desired state changed since the plan (plan: {}, now: {revision})",
            plan.revision
        )));
    }
    let max_age =
        humantime::parse_duration(&config.plan.max_age).unwrap_or(Duration::from_secs(86_400));
    let created = humantime::parse_rfc3339(&plan.created_at).map_err(|_| {
        Refusal(format!(
            "its creation time `{}` is not a time",
            plan.created_at
        ))
    })?;
    let age = SystemTime::now()
        .duration_since(created)
        .unwrap_or_default();
    if age > max_age {
        return Err(Refusal(format!(
            "the plan is {} old, more than plan.max_age ({})",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            config.plan.max_age
        )));
    }
    let approvals_file = approve::approvals_path(path);
    let approvals: Approvals = match std::fs::read_to_string(&approvals_file) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            Refusal(format!(
                "`{}` is not an approvals file: {e}",
                approvals_file.display()
            ))
        })?,
        Err(_) => Approvals::default(),
    };
    approve::check(config, &plan, &approvals)
        .map_err(|problems| Refusal(format!("missing approvals:\n  {}", problems.join("\n  "))))?;
    Ok(plan)
}

fn exit_code(report: &ApplyReport) -> Exit {
    let problems = report.failed() + report.skipped() + report.not_converged.len();
    match (report.applied(), problems) {
        (_, 0) => Exit::Ok,
        (0, _) => Exit::Error,
        _ => Exit::Partial,
    }
}

fn print_report(report: &ApplyReport) {
    println!(
        "Apply: {} applied, {} failed, {} skipped.",
        report.applied(),
        report.failed(),
        report.skipped()
    );
    for (address, outcome) in &report.outcomes {
        match outcome {
            Outcome::Failed(why) => println!("  failed  {address}: {why}"),
            Outcome::Skipped(why) => println!("  skipped {address}: {why}"),
            Outcome::Applied => {}
        }
    }
    if report.not_converged.is_empty() {
        println!("Convergence check: every touched resource matches the desired state.");
    } else {
        println!(
            "Convergence check: {} resource(s) do not converge:",
            report.not_converged.len()
        );
        for (address, changes) in &report.not_converged {
            let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
            println!(
                "  {address}: {}",
                if fields.is_empty() {
                    "could not be read back".to_string()
                } else {
                    fields.join(", ")
                }
            );
        }
    }
}

/// A progress bar on a terminal, plain lines otherwise; always on stderr.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("valid template"),
            );
            bar
        });
        Self { bar }
    }

    fn step(&self, step: &Step, outcome: &Outcome) {
        let line = match outcome {
            Outcome::Applied => format!(
                "applied {} ({})",
                step.address,
                render::summary_word(step.action)
            ),
            Outcome::Failed(why) => format!("FAILED  {}: {why}", step.address),
            Outcome::Skipped(why) => format!("skipped {}: {why}", step.address),
        };
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
