//! GitLab projects, addressed by `namespace/path` (case-insensitive). Created initialised
//! (README commit) so that the default branch exists and can be protected.

use gitlab::api::{self, AsyncQuery, common::VisibilityLevel};
use serde_json::Value as Json;

use super::{ApiErr, GitlabClient, changes, is_not_found, want_str};
use crate::address::Address;
use crate::live::{Desired, Fields, Live, Value};
use crate::plan::{Action, Step};
use crate::providers::StepError;
use crate::spec::project::{Project, Visibility};

pub fn desired(p: &Project) -> Desired {
    let mut fields = Fields::from([(
        "name".into(),
        Value::str(p.name.as_deref().unwrap_or(&p.path)),
    )]);
    if let Some(d) = &p.description {
        fields.insert("description".into(), Value::str(d));
    }
    if let Some(v) = p.visibility {
        let v = match v {
            Visibility::Private => "private",
            Visibility::Internal => "internal",
            Visibility::Public => "public",
        };
        fields.insert("visibility".into(), Value::str(v));
    }
    if let Some(b) = &p.default_branch {
        fields.insert("default_branch".into(), Value::str(b));
    }
    Desired {
        address: Address::Project {
            path: p.full_path().to_lowercase(),
        },
        fields,
        replace_on: &[],
        secrets: Default::default(),
    }
}

pub fn live(j: &Json) -> Live {
    let mut fields = Fields::new();
    fields.insert(
        "name".into(),
        Value::str(j["name"].as_str().unwrap_or_default()),
    );
    fields.insert(
        "description".into(),
        Value::str(j["description"].as_str().unwrap_or_default()),
    );
    fields.insert(
        "visibility".into(),
        Value::str(j["visibility"].as_str().unwrap_or_default()),
    );
    fields.insert(
        "default_branch".into(),
        j["default_branch"].as_str().map_or(Value::Null, Value::str),
    );
    let meta = [("id".to_string(), j["id"].to_string())].into();
    Live { fields, meta }
}

/// `GET /projects/:path`; `None` when it does not exist.
pub async fn read(client: &GitlabClient, path: &str) -> Result<Option<Json>, ApiErr> {
    let endpoint = gitlab::api::projects::Project::builder()
        .project(path)
        .build()
        .expect("valid endpoint");
    match endpoint.query_async(client).await {
        Ok(j) => Ok(Some(j)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn visibility(step: &Step) -> Option<VisibilityLevel> {
    match want_str(step, "visibility")? {
        "public" => Some(VisibilityLevel::Public),
        "internal" => Some(VisibilityLevel::Internal),
        _ => Some(VisibilityLevel::Private),
    }
}

pub async fn apply(client: &GitlabClient, path: &str, step: &Step) -> Result<(), StepError> {
    match step.action {
        Action::Create => {
            if read(client, path).await?.is_some() {
                return Ok(()); // an earlier attempt created it; a re-plan shows any difference
            }
            let (namespace, name) = path
                .rsplit_once('/')
                .ok_or_else(|| StepError::Precondition(format!("bad project path {path}")))?;
            let ns = gitlab::api::namespaces::Namespace::builder()
                .namespace(namespace)
                .build()
                .expect("valid endpoint");
            let ns: Json = ns.query_async(client).await.map_err(|e| {
                StepError::Precondition(format!("namespace `{namespace}` not found: {e}"))
            })?;
            let mut create = gitlab::api::projects::CreateProject::builder();
            create
                .name(want_str(step, "name").unwrap_or(name))
                .path(name)
                .namespace_id(ns["id"].as_u64().unwrap_or_default())
                .initialize_with_readme(true);
            if let Some(v) = visibility(step) {
                create.visibility(v);
            }
            if let Some(d) = want_str(step, "description") {
                create.description(d);
            }
            if let Some(b) = want_str(step, "default_branch") {
                create.default_branch(b);
            }
            let endpoint = create.build().expect("valid endpoint");
            super::create_once(
                || async { api::ignore(&endpoint).query_async(client).await },
                || read(client, path),
            )
            .await
            .map(|_| ())
        }
        Action::Update | Action::Replace => {
            let mut edit = gitlab::api::projects::EditProject::builder();
            edit.project(path);
            if let Some(n) = want_str(step, "name").filter(|_| changes(step, "name")) {
                edit.name(n);
            }
            if let Some(d) = want_str(step, "description").filter(|_| changes(step, "description"))
            {
                edit.description(d);
            }
            if let Some(v) = visibility(step).filter(|_| changes(step, "visibility")) {
                edit.visibility(v);
            }
            if let Some(b) =
                want_str(step, "default_branch").filter(|_| changes(step, "default_branch"))
            {
                edit.default_branch(b);
            }
            api::ignore(edit.build().expect("valid endpoint"))
                .query_async(client)
                .await?;
            Ok(())
        }
        Action::Delete => Err(StepError::Precondition(
            "projects are never deleted by reconcile".into(),
        )),
    }
}
