//! Direct members of a project, identified by (project, username); levels by name.

use gitlab::api::{self, AsyncQuery, common::AccessLevel};
use serde_json::Value as Json;

use super::{ApiErr, Gitlab, GitlabClient, want_str};
use crate::address::Address;
use crate::live::{Desired, Fields, Live, Value};
use crate::plan::{Action, Step};
use crate::providers::StepError;
use crate::spec::member::{AccessLevel as Level, Member};

fn name_of(level: u64) -> String {
    match level {
        0 => "no_access",
        5 => "minimal",
        10 => "guest",
        15 => "planner",
        20 => "reporter",
        30 => "developer",
        40 => "maintainer",
        50 => "owner",
        _ => return level.to_string(),
    }
    .into()
}

pub fn desired(project: &str, m: &Member) -> Desired {
    let level = match m.access {
        Level::Guest => "guest",
        Level::Reporter => "reporter",
        Level::Developer => "developer",
        Level::Maintainer => "maintainer",
        Level::Owner => "owner",
    };
    Desired {
        address: Address::Member {
            project: project.into(),
            user: m.user.to_lowercase(),
        },
        fields: Fields::from([("access".into(), Value::str(level))]),
        replace_on: &[],
        secrets: Default::default(),
    }
}

pub fn live(project: &str, j: &Json) -> (Address, Live) {
    let user = j["username"].as_str().unwrap_or_default().to_lowercase();
    let fields = Fields::from([(
        "access".into(),
        Value::str(name_of(j["access_level"].as_u64().unwrap_or_default())),
    )]);
    let meta = [("id".to_string(), j["id"].to_string())].into();
    (
        Address::Member {
            project: project.into(),
            user,
        },
        Live { fields, meta },
    )
}

/// Direct members, every page.
pub async fn read(client: &GitlabClient, path: &str) -> Result<Vec<Json>, ApiErr> {
    let endpoint = gitlab::api::projects::members::ProjectMembers::builder()
        .project(path)
        .build()
        .expect("valid endpoint");
    api::paged(endpoint, api::Pagination::All)
        .query_async(client)
        .await
}

fn level(step: &Step) -> AccessLevel {
    match want_str(step, "access") {
        Some("guest") => AccessLevel::Guest,
        Some("reporter") => AccessLevel::Reporter,
        Some("maintainer") => AccessLevel::Maintainer,
        Some("owner") => AccessLevel::Owner,
        _ => AccessLevel::Developer,
    }
}

pub async fn apply(
    gl: &Gitlab,
    project: &str,
    username: &str,
    step: &Step,
) -> Result<(), StepError> {
    let client = &gl.client;
    let user = gl.find_user(username).await?.ok_or_else(|| {
        StepError::Precondition(format!("user `{username}` does not exist in GitLab"))
    })?;
    let id = user["id"].as_u64().unwrap_or_default();
    let edit = || {
        gitlab::api::projects::members::EditProjectMember::builder()
            .project(project)
            .user(id)
            .access_level(level(step))
            .build()
            .expect("valid endpoint")
    };
    match step.action {
        Action::Create => {
            let add = gitlab::api::projects::members::AddProjectMember::builder()
                .project(project)
                .user(id)
                .access_level(level(step))
                .build()
                .expect("valid endpoint");
            let member = || async {
                let all = read(client, project).await?;
                Ok::<_, ApiErr>(all.into_iter().find(|m| m["id"].as_u64() == Some(id)))
            };
            // "Member already exists" (an earlier attempt, a race, or the holder of a personal
            // namespace, whom GitLab made an Owner when it created the project): set the
            // level if it differs (GitLab refuses any update of the holder, even a no-op).
            if super::create_once(
                || async { api::ignore(&add).query_async(client).await },
                member,
            )
            .await?
            {
                let have = member()
                    .await?
                    .and_then(|m| m["access_level"].as_u64())
                    .map(name_of);
                if have.as_deref() != want_str(step, "access") {
                    api::ignore(edit()).query_async(client).await?;
                }
            }
            Ok(())
        }
        Action::Update | Action::Replace => api::ignore(edit())
            .query_async(client)
            .await
            .map_err(Into::into),
        Action::Delete => {
            let remove = gitlab::api::projects::members::RemoveProjectMember::builder()
                .project(project)
                .user(id)
                .build()
                .expect("valid endpoint");
            match api::ignore(remove).query_async(client).await {
                Err(e) if !super::is_not_found(&e) => Err(e.into()),
                _ => Ok(()),
            }
        }
    }
}
