//! `reconcile approve PLANFILE --by NAME [--comment TEXT]`: records an approval bound to the
//! plan's sha256 in `PLANFILE.approvals.json`. In GitLab CI the approver is the user who ran
//! the job (`GITLAB_USER_LOGIN`): `--by` must match it.

use std::path::PathBuf;

use clap::Args;

use super::{DirArgs, Exit};
use crate::approve::{self, Approvals};
use crate::pipeline::{self, Settings};
use crate::plan::Plan;

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Plan file written by `reconcile plan --out`.
    pub plan: PathBuf,
    /// Who approves (default: GITLAB_USER_LOGIN).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    /// Also approve the plan's promotion overrides (`plan --promotion-override`): apply needs
    /// one such approval by an eligible approver of each environment with an override.
    #[arg(long = "override")]
    pub promotion_override: bool,
    #[command(flatten)]
    pub dir: DirArgs,
}

pub fn run(args: &ApproveArgs) -> Exit {
    let settings = Settings::from_env(|k| std::env::var(k).ok());
    let state_dir = pipeline::state_dir(&args.dir.dir, &settings);
    let ci_user = std::env::var("GITLAB_USER_LOGIN")
        .ok()
        .filter(|u| !u.is_empty());
    let by = match (&args.by, &ci_user) {
        (Some(by), Some(ci)) if !by.eq_ignore_ascii_case(ci) => {
            eprintln!(
                "error: in GitLab CI the approver is the user who ran the job (`{ci}`), not `{by}`"
            );
            return Exit::Error;
        }
        (Some(by), _) => by.clone(),
        (None, Some(ci)) => ci.clone(),
        (None, None) => {
            eprintln!("error: say who approves with `--by NAME`");
            return Exit::Error;
        }
    };
    let Some(state) = super::load(&args.dir.dir) else {
        return Exit::Error;
    };
    let plan = match std::fs::read_to_string(&args.plan)
        .map_err(|e| e.to_string())
        .and_then(|t| Plan::from_file(&t).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot approve `{}`: {e}", args.plan.display());
            return Exit::Error;
        }
    };
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let approval = match if args.promotion_override {
        approve::approve_override(&state.config, &plan, &by, args.comment.clone(), at)
    } else {
        approve::approve(&state.config, &plan, &by, args.comment.clone(), at)
    } {
        Ok(a) => a,
        Err(why) => {
            eprintln!("error: `{by}` cannot approve this plan: {why}");
            crate::audit::append(
                &state_dir,
                "approve",
                &by,
                Some(&plan.hash()),
                "refused",
                Some(why),
            );
            return Exit::Error;
        }
    };
    let path = approve::approvals_path(&args.plan);
    let mut approvals: Approvals = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    approvals.approvals.retain(|a| {
        !(a.plan_sha256 == approval.plan_sha256
            && a.by.eq_ignore_ascii_case(&by)
            && a.promotion_override == approval.promotion_override)
    });
    approvals.approvals.push(approval.clone());
    if let Err(e) = std::fs::write(
        &path,
        serde_json::to_string_pretty(&approvals).expect("approvals serialise") + "\n",
    ) {
        eprintln!("error: cannot write `{}`: {e}", path.display());
        return Exit::Error;
    }
    crate::audit::append(
        &state_dir,
        "approve",
        &by,
        Some(&approval.plan_sha256),
        "approved",
        Some(if approval.promotion_override {
            let overrides: Vec<String> = plan
                .overrides
                .iter()
                .map(|o| format!("{}/{}: {}", o.env, o.service, o.reason))
                .collect();
            format!(
                "{} (promotion override: {})",
                approval.scopes.join(","),
                overrides.join("; ")
            )
        } else {
            approval.scopes.join(",")
        }),
    );
    if approval.promotion_override {
        println!(
            "Approved the promotion override(s) of plan {} by {by}.",
            &approval.plan_sha256[..12]
        );
    }
    println!(
        "Approved plan {} for {} by {by}.",
        &approval.plan_sha256[..12],
        approval.scopes.join(", ")
    );
    match approve::check(&state.config, &plan, &approvals) {
        Ok(()) => println!("The plan has every approval it needs."),
        Err(missing) => println!("Still missing:\n  {}", missing.join("\n  ")),
    }
    Exit::Ok
}
