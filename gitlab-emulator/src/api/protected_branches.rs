//! `/projects/:id/protected_branches`: list, get (URL-encoded names and
//! wildcards), protect (409 when present, 400 for out-of-range levels, 422 for
//! duplicate access levels), PATCH (CE: only `allow_force_push`; EE: also
//! `allowed_to_*` with nested-attribute semantics and
//! `code_owner_approval_required`), unprotect.

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::{AppState, json, no_content, paged, project_with_access};
use crate::config::Edition;
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{ProtectedBranch, RefAccess, access};
use crate::pagination::{ListKind, Page, paginate, parse};
use crate::params::Params;
use crate::state::NextIds;

fn not_found() -> ApiError {
    ApiError::message(StatusCode::NOT_FOUND, "404 Not found")
}

pub(crate) async fn list(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let request = parse(&params, ListKind::PLAIN, false)?;
    let search = params.str("search").map(|s| s.to_lowercase());
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let list: Vec<&ProtectedBranch> = state.projects[&pid]
        .protected_branches
        .iter()
        .filter(|b| {
            search
                .as_ref()
                .is_none_or(|s| b.name.to_lowercase().contains(s))
        })
        .collect();
    let total = list.len();
    let page = paginate(request, &app.base_url, &uri, list.into_iter(), total, |b| {
        b.id
    });
    let items = page
        .items
        .iter()
        .map(|b| b.to_json(app.config.edition == Edition::Ee))
        .collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

pub(crate) async fn get_one(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let branch = state.projects[&pid]
        .protected_branches
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(not_found)?;
    Ok(json(
        StatusCode::OK,
        branch.to_json(app.config.edition == Edition::Ee),
    ))
}

fn level_param(params: &Params, key: &str) -> ApiResult<Option<i64>> {
    match params.int(key)? {
        None => Ok(None),
        Some(level) if access::PROTECTED_REF_LEVELS.contains(&level) => Ok(Some(level)),
        Some(_) => Err(ApiError::bad_param(format!(
            "{key} does not have a valid value"
        ))),
    }
}

/// Role-based `allowed_to_*` items (`{"access_level": N}`); user, group and
/// deploy-key items are accepted but not modelled.
fn allowed_levels(params: &Params, key: &str) -> ApiResult<Vec<i64>> {
    let mut levels = Vec::new();
    for item in params.list(key) {
        let Some(obj) = item.as_object() else {
            return Err(ApiError::bad_param(format!("{key} is invalid")));
        };
        if let Some(level) = obj.get("access_level") {
            let level = level
                .as_i64()
                .or_else(|| level.as_str()?.parse().ok())
                .filter(|l| access::PROTECTED_REF_LEVELS.contains(l))
                .ok_or_else(|| {
                    ApiError::bad_param(format!("{key}[access_level] does not have a valid value"))
                })?;
            levels.push(level);
        }
    }
    Ok(levels)
}

/// The access levels of one kind for a new rule: the scalar level (default 40
/// when nothing else is given) plus `allowed_to_*` items.
fn initial_levels(scalar: Option<i64>, allowed: Vec<i64>) -> Vec<i64> {
    let mut levels = Vec::new();
    match scalar {
        Some(l) => levels.push(l),
        None if allowed.is_empty() => levels.push(access::MAINTAINER),
        None => {}
    }
    levels.extend(allowed);
    levels
}

fn duplicates(levels: &[i64]) -> bool {
    levels
        .iter()
        .enumerate()
        .any(|(i, l)| levels[..i].contains(l))
}

pub(crate) async fn protect(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let name = params.required_str("name")?;
    let push = level_param(&params, "push_access_level")?;
    let merge = level_param(&params, "merge_access_level")?;
    let allow_force_push = params.bool("allow_force_push")?.unwrap_or(false);
    let code_owner = params
        .bool("code_owner_approval_required")?
        .unwrap_or(false);
    let push_levels = initial_levels(push, allowed_levels(&params, "allowed_to_push")?);
    let merge_levels = initial_levels(merge, allowed_levels(&params, "allowed_to_merge")?);
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    if state.projects[&pid]
        .protected_branches
        .iter()
        .any(|b| b.name == name)
    {
        return Err(ApiError::conflict(format!(
            "Protected branch '{name}' already exists"
        )));
    }
    let mut messages = Vec::new();
    if duplicates(&push_levels) {
        messages.push(Value::String(
            "Push access levels access level has already been taken".into(),
        ));
    }
    if duplicates(&merge_levels) {
        messages.push(Value::String(
            "Merge access levels access level has already been taken".into(),
        ));
    }
    if !messages.is_empty() {
        return Err(ApiError::message(
            StatusCode::UNPROCESSABLE_ENTITY,
            Value::Array(messages),
        ));
    }
    let mut make = |level: i64| RefAccess {
        id: NextIds::take(&mut state.next_id.ref_access),
        access_level: level,
        user_id: None,
        group_id: None,
        deploy_key_id: None,
    };
    let push_access_levels: Vec<RefAccess> = push_levels.into_iter().map(&mut make).collect();
    let merge_access_levels: Vec<RefAccess> = merge_levels.into_iter().map(&mut make).collect();
    let branch = ProtectedBranch {
        id: NextIds::take(&mut state.next_id.protected_branch),
        name: name.clone(),
        push_access_levels,
        merge_access_levels,
        allow_force_push,
        code_owner_approval_required: app.config.edition == Edition::Ee && code_owner,
    };
    let body = branch.to_json(app.config.edition == Edition::Ee);
    state
        .projects
        .get_mut(&pid)
        .expect("found above")
        .protected_branches
        .push(branch);
    tracing::debug!(project_id = pid, branch = %name, "Protected branch");
    Ok(json(StatusCode::CREATED, body))
}

/// EE nested-attribute update of one access-level list: `{id, access_level}`
/// updates, `{id, _destroy: true}` deletes, an item without `id` adds.
fn apply_nested(
    list: &mut Vec<RefAccess>,
    items: &[Value],
    next_id: &mut u64,
    key: &str,
) -> ApiResult<()> {
    for item in items {
        let obj = item
            .as_object()
            .ok_or_else(|| ApiError::bad_param(format!("{key} is invalid")))?;
        let id = obj
            .get("id")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
        let destroy = obj
            .get("_destroy")
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
        let level = obj
            .get("access_level")
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
        if let Some(l) = level
            && !access::PROTECTED_REF_LEVELS.contains(&l)
        {
            return Err(ApiError::bad_param(format!(
                "{key}[access_level] does not have a valid value"
            )));
        }
        match id {
            Some(id) => {
                let pos = list.iter().position(|a| a.id == id).ok_or_else(not_found)?;
                if destroy {
                    list.remove(pos);
                } else if let Some(l) = level {
                    list[pos].access_level = l;
                }
            }
            None => {
                if let Some(l) = level {
                    list.push(RefAccess {
                        id: NextIds::take(next_id),
                        access_level: l,
                        user_id: None,
                        group_id: None,
                        deploy_key_id: None,
                    });
                }
            }
        }
    }
    Ok(())
}

pub(crate) async fn update(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, name)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    let allow_force_push = params.bool("allow_force_push")?;
    let ee = app.config.edition == Edition::Ee;
    let code_owner = if ee {
        params.bool("code_owner_approval_required")?
    } else {
        None
    };
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let pos = state.projects[&pid]
        .protected_branches
        .iter()
        .position(|b| b.name == name)
        .ok_or_else(not_found)?;
    let mut branch = state.projects[&pid].protected_branches[pos].clone();
    if let Some(v) = allow_force_push {
        branch.allow_force_push = v;
    }
    if ee {
        if let Some(v) = code_owner {
            branch.code_owner_approval_required = v;
        }
        apply_nested(
            &mut branch.push_access_levels,
            &params.list("allowed_to_push"),
            &mut state.next_id.ref_access,
            "allowed_to_push",
        )?;
        apply_nested(
            &mut branch.merge_access_levels,
            &params.list("allowed_to_merge"),
            &mut state.next_id.ref_access,
            "allowed_to_merge",
        )?;
    }
    let body = branch.to_json(app.config.edition == Edition::Ee);
    state
        .projects
        .get_mut(&pid)
        .expect("found above")
        .protected_branches[pos] = branch;
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn unprotect(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let project = state.projects.get_mut(&pid).expect("found above");
    let pos = project
        .protected_branches
        .iter()
        .position(|b| b.name == name)
        .ok_or_else(not_found)?;
    project.protected_branches.remove(pos);
    Ok(no_content())
}
