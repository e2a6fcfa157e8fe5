//! `reconcile apply PLANFILE` and `reconcile apply --auto-approve`.
//!
//! Everything a plan must satisfy is checked by [`crate::verify::verify`] before anything is
//! written (revision, age, policies, the destructive-change guard, author and approvals as GitLab
//! vouches for them, and, live, each step's precondition and the promotion rule); the executor
//! takes only what it returns. `--auto-approve` plans now and passes only ungated scopes.
//! One apply at a time (lock); every step journaled.
//!
//! Exit codes: 0 all applied and converged, 3 partial, 1 nothing applied or refused.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{DirArgs, Exit};
use crate::apply::{self, ApplyReport, Outcome};
use crate::approve::{self, Directory, Gates};
use crate::lock::LockError;
use crate::pipeline::{self, Settings};
use crate::plan::{Author, Plan, Step, render};
use crate::verify::{self, Inputs, Io, Source};

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
    /// Allow more deletions and replacements than `plan.max_deletes` (they still need their
    /// approvals).
    #[arg(long)]
    pub allow_deletes: bool,
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub scope: super::ScopeArgs,
}

pub fn run(args: &ApplyArgs) -> Exit {
    let settings = Settings {
        scope: args.scope.scope.clone(),
        write: true,
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

        // A plan file is read before anything is contacted: a bad one costs no request.
        let file = match &args.plan {
            Some(path) => match read(path) {
                Ok(found) => Some(found),
                Err(why) => {
                    return refuse(&state_dir, &settings.user, None, &format!("refusing to apply `{}`: {why}", path.display()));
                }
            },
            None => None,
        };
        let prepared = match pipeline::prepare(&args.dir.dir, &settings).await {
            Ok(p) => p,
            Err(e) => return super::plan::report_error(e),
        };
        // Who applies (the audit log; the author of an --auto-approve plan): as GitLab says,
        // asked once. An --auto-approve apply of ungated AWS scopes alone does not ask: it
        // never contacts GitLab.
        let gated = {
            let gates = Gates::for_state(&prepared.state, &prepared.trusted);
            prepared.covered.iter().any(|scope| gates.required(scope) > 0)
        };
        let ask = file.is_some() || prepared.identity.is_some() || settings.ci.is_some() || gated;
        let (author, origin) = if ask {
            match pipeline::author(&prepared.state, &settings, prepared.identity.as_ref()).await {
                Ok(found) => found,
                Err(e) => return super::plan::report_error(e),
            }
        } else {
            (Author::unverified("not asked: an apply without GitLab in scope"), None)
        };
        let who = if author.user_id.is_some() {
            author.username.clone()
        } else {
            settings.user.clone()
        };
        let revision = pipeline::revision(&prepared.state);
        let key = settings.key();
        let (source, state, graph, providers, desired, aws, gitlab, trusted) = match file {
            Some((file, approvals)) => {
                let p = prepared;
                (Source::File { file, approvals }, p.state, p.graph, p.providers, p.desired, p.aws, p.gitlab, p.trusted)
            }
            None => {
                let live = prepared.providers.observe(&prepared.desired).await;
                let mut planned = prepared.plan(live, &settings);
                planned.check_promotion().await;
                planned.plan.author = author;
                planned.plan.origin = origin;
                super::plan::print_plan(&planned, false);
                let author = pipeline::verified_author(&planned.plan.author);
                let p = planned;
                (Source::Fresh { plan: p.plan, author }, p.state, p.graph, p.providers, p.desired, p.aws, p.gitlab, p.trusted)
            }
        };
        let gates = Gates::for_state(&state, &trusted);
        let own_client = match &gitlab {
            Some(_) => None,
            None => pipeline::directory_client(&state, &settings),
        };
        let directory: Option<&dyn Directory> = match (&gitlab, &own_client) {
            (Some(g), _) => Some(g.client() as &dyn Directory),
            (None, Some(c)) => Some(c as &dyn Directory),
            (None, None) => None,
        };
        let inputs = Inputs {
            state: &state,
            revision: &revision,
            trusted: &trusted,
            gates: &gates,
            key: key.as_ref(),
            allow_deletes: args.allow_deletes,
            now: std::time::SystemTime::now(),
        };
        let io = Io {
            providers: &providers,
            desired: &desired,
            aws: aws.as_deref(),
            directory,
        };
        let fresh = args.plan.is_none();
        let approved = match verify::verify(source, &inputs, &io).await {
            Ok(approved) => approved,
            Err(refusal) => {
                let what = args.plan.as_deref().map_or("the plan".to_string(), |p| format!("`{}`", p.display()));
                let mut message = format!("refusing to apply {what}: {refusal}");
                if fresh && matches!(refusal, verify::Refusal::Approvals { .. }) {
                    message.push_str("\nhelp: --auto-approve applies only ungated scopes: `reconcile plan --out FILE`, have it approved (`reconcile approve FILE --sign KEY`), then `reconcile apply FILE`");
                }
                return refuse(&state_dir, &who, None, &message);
            }
        };
        let hash = approved.hash().to_string();
        let plan = approved.plan();
        if plan.is_empty() {
            eprintln!("Nothing to apply.");
            return Exit::Ok;
        }
        for a in approved.approvals() {
            eprintln!("Approved by {} (GitLab user {}, {})", a.user.username, a.user.id, a.via);
        }
        for o in &plan.overrides {
            crate::audit::append(&state_dir, "override", &who, Some(&hash), "applied", Some(format!("{}/{}: {}", o.env, o.service, o.reason)));
        }
        let progress = Progress::new(plan.steps.len());
        let report = apply::run(&approved, &providers, &desired, &graph, Some(&session.journal), None, &|step, outcome| progress.step(step, outcome)).await;
        progress.finish();
        print_report(&report);
        match verify::record_applied(&approved, &report.outcomes, &state, &state_dir, key.as_ref(), std::time::SystemTime::now()) {
            Ok(_) => {}
            Err(e) => eprintln!("warning: {e}"),
        }
        eprintln!("API requests: {}", providers.traffic());
        let exit = exit_code(&report);
        let outcome = match exit {
            Exit::Ok => "applied",
            Exit::Partial => "partial",
            _ => "failed",
        };
        let approvers: Vec<&str> = approved.approvals().iter().map(|a| a.user.username.as_str()).collect();
        crate::audit::append(&state_dir, "apply", &who, Some(&hash), outcome, Some(format!("{} applied, {} already applied, {} failed, {} skipped, {} not converged; approved by [{}]", report.applied(), report.already_applied(), report.failed(), report.skipped(), report.not_converged.len(), approvers.join(", "))));
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

/// A plan file and its approvals file.
fn read(path: &Path) -> Result<(crate::plan::PlanFile, approve::Approvals), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let file = Plan::from_file(&text).map_err(|e| e.to_string())?;
    let approvals = approve::read_approvals(path)?;
    Ok((file, approvals))
}

fn exit_code(report: &ApplyReport) -> Exit {
    let problems = report.failed() + report.skipped() + report.not_converged.len();
    match (report.applied(), problems) {
        (_, 0) => Exit::Ok,
        (0, _) if report.already_applied() == 0 => Exit::Error,
        _ => Exit::Partial,
    }
}

fn print_report(report: &ApplyReport) {
    let already = match report.already_applied() {
        0 => String::new(),
        n => format!(" ({n} already applied by an interrupted run)"),
    };
    println!(
        "Apply: {} applied{already}, {} failed, {} skipped.",
        report.applied(),
        report.failed(),
        report.skipped()
    );
    for (address, outcome) in &report.outcomes {
        match outcome {
            Outcome::Failed(why) => println!("  failed  {address}: {why}"),
            Outcome::Skipped(why) => println!("  skipped {address}: {why}"),
            Outcome::Applied => {}
            Outcome::AlreadyApplied => {
                println!("  already applied {address} (an earlier, interrupted apply wrote it)")
            }
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
            Outcome::AlreadyApplied => format!("already applied {}", step.address),
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
