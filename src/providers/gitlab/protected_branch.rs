//! Protected branches, identified by (project, name or wildcard).
//!
//! GitLab CE's PATCH honours only `allow_force_push`; access levels change by unprotect +
//! protect, which leaves the branch unprotected in between. Such a change is a `Replace`
//! step, flagged in the plan and run last for its project.

use gitlab::api::{self, AsyncQuery, common::ProtectedAccessLevel};
use serde_json::Value as Json;

use super::endpoints::PatchProtectedBranch;
use super::{ApiErr, GitlabClient, want_bool, want_str};
use crate::address::Address;
use crate::live::{Desired, Fields, Live, Value};
use crate::plan::{Action, Step};
use crate::providers::StepError;
use crate::spec::protected_branch::{BranchAccess, ProtectedBranch};

fn name(level: BranchAccess) -> &'static str {
    match level {
        BranchAccess::NoAccess => "no_access",
        BranchAccess::Developer => "developer",
        BranchAccess::Maintainer => "maintainer",
        BranchAccess::Admin => "admin",
    }
}

fn level_name(level: u64) -> String {
    match level {
        0 => "no_access".into(),
        30 => "developer".into(),
        40 => "maintainer".into(),
        60 => "admin".into(),
        n => n.to_string(),
    }
}

pub fn desired(project: &str, b: &ProtectedBranch) -> Desired {
    let mut fields = Fields::from([
        ("push".into(), Value::str(name(b.push))),
        ("merge".into(), Value::str(name(b.merge))),
        ("allow_force_push".into(), Value::Bool(b.allow_force_push)),
    ]);
    if let Some(u) = b.unprotect {
        fields.insert("unprotect".into(), Value::str(name(u)));
    }
    Desired {
        address: Address::ProtectedBranch {
            project: project.into(),
            branch: b.name.clone(),
        },
        fields,
        replace_on: &["push", "merge", "unprotect"],
        secrets: Default::default(),
    }
}

/// Collapses GitLab's access-level list to the spec's single level: role entries only (user,
/// group and deploy-key entries carry a level too, but are not roles); several roles are joined.
fn collapse(levels: &Json) -> Option<Value> {
    let list = levels.as_array()?;
    let mut roles: Vec<String> = list
        .iter()
        .filter(|e| {
            e["user_id"].is_null() && e["group_id"].is_null() && e["deploy_key_id"].is_null()
        })
        .filter_map(|e| e["access_level"].as_u64())
        .map(level_name)
        .collect();
    roles.sort();
    roles.dedup();
    Some(Value::str(if roles.is_empty() {
        "no_access".to_string()
    } else {
        roles.join("+")
    }))
}

pub fn live(project: &str, j: &Json) -> (Address, Live) {
    let mut fields = Fields::new();
    for (field, key) in [
        ("push", "push_access_levels"),
        ("merge", "merge_access_levels"),
        ("unprotect", "unprotect_access_levels"),
    ] {
        if let Some(v) = collapse(&j[key]) {
            fields.insert(field.into(), v);
        }
    }
    fields.insert(
        "allow_force_push".into(),
        Value::Bool(j["allow_force_push"].as_bool().unwrap_or(false)),
    );
    let branch = j["name"].as_str().unwrap_or_default().to_string();
    let meta = [("id".to_string(), j["id"].to_string())].into();
    (
        Address::ProtectedBranch {
            project: project.into(),
            branch,
        },
        Live { fields, meta },
    )
}

pub async fn read(client: &GitlabClient, path: &str) -> Result<Vec<Json>, ApiErr> {
    let endpoint = gitlab::api::projects::protected_branches::ProtectedBranches::builder()
        .project(path)
        .build()
        .expect("valid endpoint");
    api::paged(endpoint, api::Pagination::All)
        .query_async(client)
        .await
}

async fn read_one(
    client: &GitlabClient,
    project: &str,
    branch: &str,
) -> Result<Option<Json>, ApiErr> {
    let endpoint = gitlab::api::projects::protected_branches::ProtectedBranch::builder()
        .project(project)
        .name(branch)
        .build()
        .expect("valid endpoint");
    match endpoint.query_async(client).await {
        Ok(j) => Ok(Some(j)),
        Err(e) if super::is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn access(step: &Step, field: &str) -> Option<ProtectedAccessLevel> {
    Some(match want_str(step, field)? {
        "no_access" => ProtectedAccessLevel::NoAccess,
        "developer" => ProtectedAccessLevel::Developer,
        "admin" => ProtectedAccessLevel::Admin,
        _ => ProtectedAccessLevel::Maintainer,
    })
}

async fn protect(
    client: &GitlabClient,
    project: &str,
    branch: &str,
    step: &Step,
) -> Result<(), ApiErr> {
    let mut p = gitlab::api::projects::protected_branches::ProtectBranch::builder();
    p.project(project)
        .name(branch)
        .allow_force_push(want_bool(step, "allow_force_push").unwrap_or(false));
    if let Some(l) = access(step, "push") {
        p.push_access_level(l);
    }
    if let Some(l) = access(step, "merge") {
        p.merge_access_level(l);
    }
    if let Some(l) = access(step, "unprotect") {
        p.unprotect_access_level(l);
    }
    api::ignore(p.build().expect("valid endpoint"))
        .query_async(client)
        .await
}

async fn unprotect(client: &GitlabClient, project: &str, branch: &str) -> Result<(), ApiErr> {
    let u = gitlab::api::projects::protected_branches::UnprotectBranch::builder()
        .project(project)
        .name(branch)
        .build()
        .expect("valid endpoint");
    match api::ignore(u).query_async(client).await {
        Err(e) if !super::is_not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Protects the branch as the step says, whatever is there now: a protection that exists (an
/// earlier attempt, or GitLab's automatic default-branch protection) is adopted and corrected.
/// Every unknown outcome is followed by a read: the step fails only when GitLab, read after
/// the last attempt, still does not show the protection the step wants.
async fn ensure(
    client: &GitlabClient,
    project: &str,
    branch: &str,
    step: &Step,
) -> Result<(), StepError> {
    let mut outcome = protect(client, project, branch, step).await;
    for _ in 0..super::CREATE_ATTEMPTS {
        let e = match outcome {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !retryable(&e) {
            return Err(e.into());
        }
        outcome = match read_one(client, project, branch).await? {
            None => protect(client, project, branch, step).await,
            Some(existing) if levels_match(project, &existing, step) => {
                return fix_force_push(client, project, branch, &existing, step).await;
            }
            // CE cannot change levels in place: unprotect, then protect (the next round
            // reads whatever an unknown outcome left).
            Some(_) => match unprotect(client, project, branch).await {
                Ok(()) => protect(client, project, branch, step).await,
                Err(e) => Err(e),
            },
        };
    }
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => match read_one(client, project, branch).await? {
            Some(existing) if levels_match(project, &existing, step) => {
                fix_force_push(client, project, branch, &existing, step).await
            }
            _ => Err(e.into()),
        },
    }
}

/// An error after which what GitLab did is unknown or may change: read, then decide.
fn retryable(e: &ApiErr) -> bool {
    super::is_unknown_outcome(e)
        || super::status_of(e)
            .is_some_and(|s| s == http::StatusCode::CONFLICT || s.is_server_error())
}

/// Whether a live protection has the access levels the step wants.
fn levels_match(project: &str, existing: &Json, step: &Step) -> bool {
    let (_, live) = live(project, existing);
    ["push", "merge", "unprotect"].iter().all(|f| {
        !step.desired.contains_key(*f)
            || !live.fields.contains_key(*f)
            || step.desired.get(*f) == live.fields.get(*f)
    })
}

/// Sets `allow_force_push` when it differs (PATCH: safe to repeat, retried by the client).
async fn fix_force_push(
    client: &GitlabClient,
    project: &str,
    branch: &str,
    existing: &Json,
    step: &Step,
) -> Result<(), StepError> {
    let (_, live) = live(project, existing);
    if live.fields.get("allow_force_push") != step.desired.get("allow_force_push") {
        let patch = PatchProtectedBranch {
            project: project.into(),
            name: branch.into(),
            allow_force_push: want_bool(step, "allow_force_push").unwrap_or(false),
        };
        api::ignore(patch).query_async(client).await?;
    }
    Ok(())
}

pub async fn apply(
    client: &GitlabClient,
    project: &str,
    branch: &str,
    step: &Step,
) -> Result<(), StepError> {
    match step.action {
        Action::Create => ensure(client, project, branch, step).await,
        Action::Update => {
            let patch = PatchProtectedBranch {
                project: project.into(),
                name: branch.into(),
                allow_force_push: want_bool(step, "allow_force_push").unwrap_or(false),
            };
            api::ignore(patch)
                .query_async(client)
                .await
                .map_err(Into::into)
        }
        Action::Replace => {
            unprotect(client, project, branch).await?;
            // The branch is unprotected now: protect it again whatever happens, a few times.
            let mut last = None;
            for _ in 0..3 {
                match ensure(client, project, branch, step).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
            let e = last.expect("three attempts");
            tracing::error!(project, branch, error = %e, "Branch left UNPROTECTED: protecting it again failed");
            Err(StepError::Precondition(format!(
                "{branch} is UNPROTECTED: protecting it again failed: {e}"
            )))
        }
        Action::Delete => unprotect(client, project, branch).await.map_err(Into::into),
    }
}
