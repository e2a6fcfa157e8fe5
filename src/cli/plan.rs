//! `reconcile plan` (also `reconcile --plan`): the change set, for review.
//!
//! Exit codes: 0 no changes, 2 changes present, 1 error (including resources that could not be
//! read: a plan with blocked resources is incomplete).

use std::path::PathBuf;

use clap::Args;

use super::{DirArgs, Exit};
use crate::pipeline::{self, PipelineError, Planned, Settings};
use crate::plan::{PromotionOverride, render};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub scope: super::ScopeArgs,
    /// Print the plan as JSON (stable form, see README) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the plan file (canonical JSON with its sha256; no secret values) for `reconcile apply`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Override the promotion rule for one service of a promoted environment (repeatable):
    /// `ENV/SERVICE=REASON`. Recorded in the plan; apply needs `reconcile approve --override`.
    #[arg(long, value_name = "ENV/SERVICE=REASON", value_parser = PromotionOverride::parse)]
    pub promotion_override: Vec<PromotionOverride>,
}

pub fn run(args: &PlanArgs) -> Exit {
    let settings = Settings {
        scope: args.scope.scope.clone(),
        overrides: args.promotion_override.clone(),
        ..Settings::from_env(|k| std::env::var(k).ok())
    };
    let planned = match super::runtime().block_on(pipeline::plan(&args.dir.dir, &settings)) {
        Ok(p) => p,
        Err(e) => return report_error(e),
    };
    print_plan(&planned, args.json);
    if let Some(out) = &args.out {
        let attestation = pipeline::author_attestation(&planned.plan, &settings);
        if let Err(e) = planned.plan.write_file(out, attestation.as_deref()) {
            eprintln!("error: cannot write the plan file `{}`: {e}", out.display());
            return Exit::Error;
        }
        eprintln!(
            "Plan written to {} (sha256 {}), by {}",
            out.display(),
            planned.plan.hash(),
            planned.plan.author.describe()
        );
        if let Some(origin) = &planned.plan.origin {
            // The job's log is the proof that this job made this plan (approve/proof.rs);
            // on stderr, so that the rendered plan on stdout stays the plan.
            eprintln!(
                "{}",
                crate::approve::proof::ci_plan_line(&planned.plan.hash(), origin.job_id)
            );
        }
        let state_dir = pipeline::state_dir(&args.dir.dir, &settings);
        crate::audit::append(
            &state_dir,
            "plan",
            &planned.plan.author.username,
            Some(&planned.plan.hash()),
            "written",
            Some(render::summary(&planned.plan)),
        );
        for o in &planned.plan.overrides {
            crate::audit::append(
                &state_dir,
                "override",
                &planned.plan.author.username,
                Some(&planned.plan.hash()),
                "requested",
                Some(format!("{}/{}: {}", o.env, o.service, o.reason)),
            );
        }
    }
    eprintln!("API requests: {}", planned.providers.traffic());
    exit_code(&planned)
}

pub(crate) fn print_plan(planned: &Planned, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render::json(&planned.plan)).expect("plan serialises")
        );
    } else {
        print!("{}", render::text(&planned.plan));
    }
}

pub(crate) fn exit_code(planned: &Planned) -> Exit {
    if !planned.plan.blocked.is_empty() {
        Exit::Error
    } else if planned.plan.is_empty() {
        Exit::Ok
    } else {
        Exit::Changes
    }
}

pub(crate) fn report_error(e: PipelineError) -> Exit {
    match e {
        PipelineError::Spec(errors) => {
            let _ = errors.render(&mut super::stderr_stream());
        }
        PipelineError::Config(msg) => eprintln!("error: {msg}"),
        PipelineError::Preflight(msg) => {
            eprintln!("error: {msg}\nnothing was read or changed")
        }
    }
    Exit::Error
}
