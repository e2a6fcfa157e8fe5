//! `reconcile apply PLANFILE` and `reconcile apply --auto-approve`.
//!
//! A plan file is verified (its sha256, the desired-state revision it was made from, and each
//! step's precondition against live state) before anything is written. Exit codes: 0 all
//! applied and converged, 3 partial, 1 nothing applied or refused.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{DirArgs, Exit};
use crate::apply::{self, ApplyReport, Outcome};
use crate::pipeline::{self, Settings};
use crate::plan::{Plan, Step, render};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Plan file written by `reconcile plan --out`.
    #[arg(
        required_unless_present = "auto_approve",
        conflicts_with = "auto_approve"
    )]
    pub plan: Option<PathBuf>,
    /// Plan and apply at once, without a plan file (like `terraform apply -auto-approve`).
    #[arg(long)]
    pub auto_approve: bool,
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub scope: super::ScopeArgs,
}

pub fn run(args: &ApplyArgs) -> Exit {
    let settings = Settings {
        scope: args.scope.scope.clone(),
        ..Settings::from_env(|k| std::env::var(k).ok())
    };
    super::runtime().block_on(async {
        let mut planned = match pipeline::plan(&args.dir.dir, &settings).await {
            Ok(p) => p,
            Err(e) => return super::plan::report_error(e),
        };
        if let Some(path) = &args.plan {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read the plan file `{}`: {e}", path.display());
                    return Exit::Error;
                }
            };
            let approved = match Plan::from_file(&text) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: refusing to apply `{}`: {e}", path.display());
                    return Exit::Error;
                }
            };
            if let Err(why) = check_current(&approved, &planned.plan) {
                eprintln!("error: refusing to apply `{}`: {why}\nhelp: run `reconcile plan --out FILE` again and review the new plan; nothing was changed", path.display());
                return Exit::Error;
            }
            planned.plan = approved;
        } else {
            super::plan::print_plan(&planned, false);
        }
        if !planned.plan.blocked.is_empty() {
            eprintln!("error: some resources could not be read; nothing was changed");
            return Exit::Error;
        }
        if planned.plan.is_empty() {
            eprintln!("Nothing to apply.");
            return Exit::Ok;
        }
        let progress = Progress::new(planned.plan.steps.len());
        let report = apply::run(&planned.plan, &planned.providers, &planned.desired, &planned.graph, &|step, outcome| progress.step(step, outcome)).await;
        progress.finish();
        print_report(&report);
        eprintln!("API requests: {}", planned.providers.requests());
        exit_code(&report)
    })
}

/// A plan file still describes what would be done now: same desired-state revision, and every
/// step's precondition (the live state it was computed against) still holds, so the same steps
/// come out. Otherwise apply refuses before writing anything.
fn check_current(approved: &Plan, fresh: &Plan) -> Result<(), String> {
    if approved.revision != fresh.revision {
        return Err(format!(
            "the desired state changed since the plan (plan: {}, now: {})",
            approved.revision, fresh.revision
        ));
    }
    let mut changed = Vec::new();
    for step in &approved.steps {
        match fresh.steps.iter().find(|s| s.address == step.address) {
            Some(now)
                if now.precondition == step.precondition
                    && now.action == step.action
                    && now.desired == step.desired => {}
            Some(_) => changed.push(format!("  {} changed since the plan", step.address)),
            None => changed.push(format!("  {} needs no change any more", step.address)),
        }
    }
    for step in &fresh.steps {
        if !approved.steps.iter().any(|s| s.address == step.address) {
            changed.push(format!(
                "  {} needs a change the plan does not have",
                step.address
            ));
        }
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "live state changed since the plan:\n{}",
            changed.join("\n")
        ))
    }
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
