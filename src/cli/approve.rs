//! `reconcile approve PLANFILE`: records an approval bound to the plan's sha256 in
//! `PLANFILE.approvals.json`, with a proof of who approves that GitLab vouches for
//! ([`crate::approve::proof`]):
//!
//! - in GitLab CI (`CI_JOB_TOKEN`): GitLab says who runs the job; the job prints the approval
//!   line that `apply` looks for in its log;
//! - `--sign KEY`: an SSH signature by a key registered in the approver's GitLab profile
//!   (a private key file, or a `.pub` file whose private key is in `ssh-agent`);
//! - `--signature FILE`: the same, signed elsewhere (`--print-payload` prints what to sign).
//!
//! A name alone (`--by`) is never an approval. Eligibility (approvers, self-approval) is checked
//! here for a quick answer and again, authoritatively, by `apply`.

use std::path::PathBuf;

use clap::Args;

use super::{DirArgs, Exit};
use crate::approve::{self, Approval, Directory, GitlabUser, Proof, VerifiedAuthor, proof};
use crate::pipeline::{self, Settings};
use crate::plan::{AuthorVia, Plan, PlanFile};
use crate::providers::gitlab::identity;

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Plan file written by `reconcile plan --out`.
    pub plan: PathBuf,
    /// Your GitLab username (needed with --sign/--signature when GitLab cannot be asked who
    /// owns the key; in CI it is the job's user).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    /// Also approve the plan's promotion overrides (`plan --promotion-override`): apply needs
    /// one such approval by an eligible approver of each environment with an override.
    #[arg(long = "override")]
    pub promotion_override: bool,
    /// Sign the approval with this SSH key (registered in your GitLab profile): a private key
    /// file, or its `.pub` when the private key is in ssh-agent or passphrase-protected.
    #[arg(long, value_name = "KEY", conflicts_with = "signature")]
    pub sign: Option<PathBuf>,
    /// An SSH signature of the payload made elsewhere
    /// (`reconcile approve PLAN --print-payload | ssh-keygen -Y sign -n reconcile-plan -f KEY`).
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// Print the bytes an SSH signature of this approval covers, and exit.
    #[arg(long, conflicts_with_all = ["sign", "signature"])]
    pub print_payload: bool,
    #[command(flatten)]
    pub dir: DirArgs,
}

pub fn run(args: &ApproveArgs) -> Exit {
    let settings = Settings::from_env(|k| std::env::var(k).ok());
    let state_dir = pipeline::state_dir(&args.dir.dir, &settings);
    let file = match std::fs::read_to_string(&args.plan)
        .map_err(|e| e.to_string())
        .and_then(|t| Plan::from_file(&t).map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot approve `{}`: {e}", args.plan.display());
            return Exit::Error;
        }
    };
    if args.print_payload {
        print!("{}", proof::payload(&file.hash, args.promotion_override));
        return Exit::Ok;
    }
    let Some(state) = super::load(&args.dir.dir) else {
        return Exit::Error;
    };
    super::runtime().block_on(async {
        let url = settings.gitlab_url(&state);
        let directory = pipeline::directory_client(&state, &settings);
        let (user, proof) = match prove(args, &settings, &url, &file, directory.as_ref()).await {
            Ok(found) => found,
            Err(why) => {
                eprintln!("error: {why}\nnothing was recorded");
                return Exit::Error;
            }
        };
        // Eligibility: the author as the plan claims it (apply verifies the claim).
        let author = match (file.plan.author.via, file.plan.author.user_id) {
            (AuthorVia::Token | AuthorVia::CiJob, Some(id)) => VerifiedAuthor::Known(GitlabUser {
                id,
                username: file.plan.author.username.clone(),
            }),
            _ => VerifiedAuthor::Unknown("unverified".into()),
        };
        let (trusted, _) = crate::trust::Trusted::load(&state_dir, settings.key().as_ref());
        let gates = approve::Gates::for_state(&state, &trusted);
        let scopes = match approve::eligible_scopes(
            &gates,
            &file.plan,
            &author,
            &user,
            args.promotion_override,
        ) {
            Ok(scopes) => scopes,
            Err(why) => {
                eprintln!(
                    "error: `{}` cannot approve this plan: {why}\nnothing was recorded",
                    user.username
                );
                crate::audit::append(
                    &state_dir,
                    "approve",
                    &user.username,
                    Some(&file.hash),
                    "refused",
                    Some(why),
                );
                return Exit::Error;
            }
        };
        let approval = Approval {
            plan_sha256: file.hash.clone(),
            by: user.username.clone(),
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            comment: args.comment.clone(),
            promotion_override: args.promotion_override,
            proof: Some(proof.clone()),
        };
        let approvals = match approve::add_approval(&args.plan, approval) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Error;
            }
        };
        if let Proof::CiJob { job_id, .. } = &proof {
            // The job's log is the proof; it counts once the job has succeeded.
            println!(
                "{}",
                proof::ci_approval_line(&file.hash, args.promotion_override, *job_id)
            );
        }
        crate::audit::append(
            &state_dir,
            "approve",
            &user.username,
            Some(&file.hash),
            "approved",
            Some(format!("{} ({})", scopes.join(","), proof.describe())),
        );
        let short = &file.hash[..12];
        if args.promotion_override {
            println!(
                "Approved the promotion override(s) of plan {short} by {} ({}).",
                user.username,
                proof.describe()
            );
        }
        println!(
            "Approved plan {short} for {} by {} ({}).",
            scopes.join(", "),
            user.username,
            proof.describe()
        );
        summarize(
            &gates,
            &file,
            &approvals,
            &author,
            directory.as_ref().map(|d| d as &dyn Directory),
            &settings,
        )
        .await;
        Exit::Ok
    })
}

/// Who approves, and the proof of it.
async fn prove(
    args: &ApproveArgs,
    settings: &Settings,
    url: &str,
    file: &PlanFile,
    directory: Option<&crate::providers::gitlab::GitlabClient>,
) -> Result<(GitlabUser, Proof), String> {
    let signature = match (&args.sign, &args.signature) {
        (Some(key), _) => Some(
            proof::sign_with_key_file(key, &proof::payload(&file.hash, args.promotion_override))
                .map_err(|e| format!("cannot sign with `{}`: {e}", key.display()))?,
        ),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the signature `{}`: {e}", path.display()))?,
        ),
        (None, None) => None,
    };
    if let Some(signature) = signature {
        let payload = proof::payload(&file.hash, args.promotion_override);
        let fingerprint = proof::verify_signature(&signature, &payload)
            .map_err(|e| format!("the signature does not verify: {e}"))?;
        let owner = match directory {
            Some(d) => match d.key_owner(&fingerprint).await {
                Ok(owner) => owner,
                // Only administrators may look keys up by fingerprint: with an approver's own
                // token, check the key in the profile of the user named with --by.
                Err(e) => match &args.by {
                    Some(by) => {
                        let keys = identity::user_key_fingerprints(d, by).await?;
                        if !keys.contains(&fingerprint) {
                            return Err(format!(
                                "the SSH key {fingerprint} is not registered in `{by}`'s GitLab profile: add its public key there (User settings → SSH keys) and approve again"
                            ));
                        }
                        Some(GitlabUser {
                            id: 0,
                            username: by.clone(),
                        })
                    }
                    None => {
                        return Err(format!(
                            "cannot ask GitLab at {url} who registered the key {fingerprint} ({e}); with a token that is not an administrator's, say who you are with `--by USERNAME` (apply checks the key with an administrator's token)"
                        ));
                    }
                },
            },
            None => None,
        };
        let user = match (owner, &args.by) {
            (Some(owner), Some(by)) if !owner.username.eq_ignore_ascii_case(by) => {
                return Err(format!(
                    "the key {fingerprint} is registered in GitLab by `{}`, not `{by}`",
                    owner.username
                ));
            }
            (Some(owner), _) => owner,
            (None, _) if directory.is_some() => {
                return Err(format!(
                    "no GitLab user has registered the SSH key {fingerprint}: add its public key to your GitLab profile (User settings → SSH keys) and approve again"
                ));
            }
            // No GitLab to ask here: recorded with the name given; apply checks the key.
            (None, Some(by)) => GitlabUser {
                id: 0,
                username: by.clone(),
            },
            (None, None) => {
                return Err("without GITLAB_TOKEN to ask GitLab who owns the key, say who you are with `--by USERNAME`".into());
            }
        };
        return Ok((user, Proof::Ssh { signature }));
    }
    if let Some(ci) = &settings.ci {
        let job = identity::current_job(url, ci.0.clone()).await?;
        if let Some(by) = &args.by
            && !by.eq_ignore_ascii_case(&job.user.username)
        {
            return Err(format!(
                "in GitLab CI the approver is the user who runs the job (`{}`), not `{by}`",
                job.user.username
            ));
        }
        let Some(origin) = file.plan.origin else {
            return Err("this plan was not made in a GitLab CI pipeline, so a CI job cannot approve it: sign the approval with `--sign KEY`".into());
        };
        if origin.project_id != job.project_id || origin.pipeline_id != job.pipeline_id {
            return Err(format!(
                "this plan was made in pipeline {} of project {}; this job runs in pipeline {} of project {}: approve it in the plan's pipeline, or sign with `--sign KEY`",
                origin.pipeline_id, origin.project_id, job.pipeline_id, job.project_id
            ));
        }
        return Ok((
            job.user,
            Proof::CiJob {
                project_id: job.project_id,
                job_id: job.id,
            },
        ));
    }
    Err("an approval needs a proof of who you are: `--sign KEY` (an SSH key registered in your GitLab profile), a GitLab CI job of the plan's pipeline, or the daemon's approval page".into())
}

/// What the plan still needs, as far as this process can check.
async fn summarize(
    gates: &approve::Gates,
    file: &PlanFile,
    approvals: &approve::Approvals,
    author: &VerifiedAuthor,
    directory: Option<&dyn Directory>,
    settings: &Settings,
) {
    let Some(directory) = directory else {
        println!("(set GITLAB_TOKEN to see what the plan still needs)");
        return;
    };
    let key = settings.key();
    let mut verified = Vec::new();
    for a in &approvals.approvals {
        // A CI approval counts once its job has succeeded; this one is still running.
        if let Ok(v) = approve::verify_approval(a, file, directory, key.as_ref()).await {
            verified.push(v);
        }
    }
    match approve::check(gates, &file.plan, author, &verified, &Default::default()) {
        Ok(()) => println!("The plan has every approval it needs."),
        Err(missing) => println!(
            "Still missing (approvals made in a CI job count once the job has succeeded):\n  {}",
            missing.join("\n  ")
        ),
    }
}
