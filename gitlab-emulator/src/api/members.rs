//! `/projects/:id/members`: direct members only (list, get, add, update, remove).
//! The holder of a personal namespace is an Owner member of each project in it
//! that nobody may update or remove (403, `ProjectMemberPolicy`).

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::{AppState, current, int_path, json, no_content, paged, project_with_access};
use crate::config::Edition;
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{Member, access};
use crate::pagination::{ListKind, Page, paginate, parse};
use crate::params::Params;
use crate::state::{NextIds, State};
use crate::time::{is_valid_date, now_iso};

fn member_json(state: &State, member: &Member, base_url: &str, admin: bool, ee: bool) -> Value {
    match state.users.get(&member.user_id) {
        Some(user) => member.to_json(
            user,
            state.users.get(&member.created_by_id),
            base_url,
            admin,
            ee,
        ),
        None => Value::Null,
    }
}

pub(crate) async fn list(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let request = parse(&params, ListKind::PLAIN, false)?;
    let query = params.str("query").map(|q| q.to_lowercase());
    let user_ids: Vec<u64> = params
        .list("user_ids")
        .iter()
        .filter_map(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .collect();
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::NO_ACCESS)?;
    let project = &state.projects[&pid];
    let members: Vec<&Member> = project
        .members
        .iter()
        .filter(|m| user_ids.is_empty() || user_ids.contains(&m.user_id))
        .filter(|m| {
            query.as_ref().is_none_or(|q| {
                state.users.get(&m.user_id).is_some_and(|u| {
                    u.username.to_lowercase().contains(q) || u.name.to_lowercase().contains(q)
                })
            })
        })
        .collect();
    let total = members.len();
    let page = paginate(
        request,
        &app.base_url,
        &uri,
        members.into_iter(),
        total,
        |m| m.id,
    );
    let items = page
        .items
        .iter()
        .map(|m| {
            member_json(
                &state,
                m,
                &app.base_url,
                auth.is_admin,
                app.config.edition == Edition::Ee,
            )
        })
        .collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

pub(crate) async fn get_one(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let user_id = int_path(&user_id, "user_id")?;
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::NO_ACCESS)?;
    let member = state.projects[&pid]
        .member(user_id)
        .ok_or_else(|| ApiError::message(StatusCode::NOT_FOUND, "404 Not found"))?;
    Ok(json(
        StatusCode::OK,
        member_json(
            &state,
            member,
            &app.base_url,
            auth.is_admin,
            app.config.edition == Edition::Ee,
        ),
    ))
}

fn access_level_param(params: &Params) -> ApiResult<i64> {
    let level = params
        .int("access_level")?
        .ok_or_else(|| ApiError::bad_param("access_level is missing"))?;
    if !access::MEMBER_LEVELS.contains(&level) {
        return Err(ApiError::bad_param(
            "access_level does not have a valid value",
        ));
    }
    Ok(level)
}

fn expires_at_param(params: &Params) -> ApiResult<Option<String>> {
    match params.str("expires_at").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(d) if !is_valid_date(&d) => Err(ApiError::bad_param("expires_at is invalid")),
        Some(d) if d < crate::time::date_in_days(0) => Err(ApiError::validation(&[(
            "expires_at",
            "cannot be a date in the past",
        )])),
        Some(d) => Ok(Some(d)),
    }
}

/// Only Owners (or admins) may grant or change the Owner level.
fn check_owner_grant(state: &State, auth: &AuthUser, pid: u64, level: i64) -> ApiResult<()> {
    let user = current(state, auth)?;
    if level == access::OWNER && state.project_access(user, &state.projects[&pid]) < access::OWNER {
        return Err(ApiError::forbidden());
    }
    Ok(())
}

pub(crate) async fn add(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    if !params.has("user_id") && !params.has("username") {
        if !params.has("access_level") {
            return Err(ApiError::bad_param(
                "access_level is missing, user_id, username are missing, exactly one parameter must be provided",
            ));
        }
        return Err(ApiError::bad_param(
            "user_id, username are missing, exactly one parameter must be provided",
        ));
    }
    let level = access_level_param(&params)?;
    let expires_at = expires_at_param(&params)?;
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    check_owner_grant(&state, &auth, pid, level)?;
    let targets: Vec<Option<u64>> = if let Some(username) = params.str("username") {
        vec![state.user_by_username(&username).map(|u| u.id)]
    } else {
        params
            .list("user_id")
            .iter()
            .map(|v| {
                let id = v.as_u64().or_else(|| v.as_str()?.parse().ok())?;
                state.users.contains_key(&id).then_some(id)
            })
            .collect()
    };
    let multiple = targets.len() > 1;
    let mut errors = serde_json::Map::new();
    let mut added = None;
    for target in targets {
        let Some(user_id) = target else {
            if multiple {
                continue;
            }
            return Err(ApiError::not_found("User"));
        };
        if state.projects[&pid].member(user_id).is_some() {
            if multiple {
                let username = state.users[&user_id].username.clone();
                errors.insert(username, json!("Member already exists"));
                continue;
            }
            return Err(ApiError::conflict("Member already exists"));
        }
        let member = Member {
            id: NextIds::take(&mut state.next_id.member),
            user_id,
            access_level: level,
            expires_at: expires_at.clone(),
            created_at: now_iso(),
            created_by_id: auth.id,
            updated_at: None,
        };
        state
            .projects
            .get_mut(&pid)
            .expect("found above")
            .members
            .push(member.clone());
        // `ProjectMember#post_create_hook` (`ProjectMemberBuilder`).
        let event =
            crate::hooks::member_event(&state, &state.projects[&pid], &member, "user_add_to_team");
        state.outbox.push(event);
        added = Some(member);
    }
    if multiple {
        let body = if errors.is_empty() {
            json!({ "status": "success" })
        } else {
            json!({ "status": "error", "message": errors })
        };
        return Ok(json(StatusCode::CREATED, body));
    }
    let member = added.ok_or_else(|| ApiError::not_found("User"))?;
    Ok(json(
        StatusCode::CREATED,
        member_json(
            &state,
            &member,
            &app.base_url,
            auth.is_admin,
            app.config.edition == Edition::Ee,
        ),
    ))
}

pub(crate) async fn update(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, user_id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    let user_id = int_path(&user_id, "user_id")?;
    let level = access_level_param(&params)?;
    let expires_at = if params.has("expires_at") {
        Some(expires_at_param(&params)?)
    } else {
        None
    };
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    check_owner_grant(&state, &auth, pid, level)?;
    if state.projects[&pid].member(user_id).is_none() {
        return Err(ApiError::message(StatusCode::NOT_FOUND, "404 Not found"));
    }
    // Members::UpdateService raises AccessDeniedError before looking at the
    // change (even to the same level).
    if state.personal_namespace_holder(user_id, &state.projects[&pid]) {
        return Err(ApiError::forbidden());
    }
    let project = state.projects.get_mut(&pid).expect("found above");
    let member = project
        .members
        .iter_mut()
        .find(|m| m.user_id == user_id)
        .expect("found above");
    let before = member.clone();
    member.access_level = level;
    if let Some(e) = expires_at {
        member.expires_at = e;
    }
    let changed =
        before.access_level != member.access_level || before.expires_at != member.expires_at;
    if changed {
        member.updated_at = Some(now_iso());
    }
    let member = member.clone();
    // `ProjectMember#post_update_hook` (`after_update`, so only when the row
    // really changed): `user_update_for_team`. The project's own record (and
    // its `updated_at`) is untouched: members are a separate table.
    if changed {
        let event = crate::hooks::member_event(
            &state,
            &state.projects[&pid],
            &member,
            "user_update_for_team",
        );
        state.outbox.push(event);
    }
    Ok(json(
        StatusCode::OK,
        member_json(
            &state,
            &member,
            &app.base_url,
            auth.is_admin,
            app.config.edition == Edition::Ee,
        ),
    ))
}

pub(crate) async fn remove(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let user_id = int_path(&user_id, "user_id")?;
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    if state.projects[&pid].member(user_id).is_some()
        && state.personal_namespace_holder(user_id, &state.projects[&pid])
    {
        return Err(ApiError::forbidden());
    }
    let Some(member) = state.projects[&pid].member(user_id).cloned() else {
        return Err(ApiError::message(StatusCode::NOT_FOUND, "404 Not found"));
    };
    // `ProjectMember#post_destroy_hook`, built before the row goes.
    let event = crate::hooks::member_event(
        &state,
        &state.projects[&pid],
        &member,
        "user_remove_from_team",
    );
    state.outbox.push(event);
    let project = state.projects.get_mut(&pid).expect("found above");
    project.members.retain(|m| m.user_id != user_id);
    Ok(no_content())
}
