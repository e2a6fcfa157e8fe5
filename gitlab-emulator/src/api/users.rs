//! `/users`: list (filters, offset and keyset pagination), get, create, update,
//! the block / unblock / deactivate / activate actions, and asynchronous delete
//! (the user lingers for `Config::user_delete_delay`).

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::{AppState, current, int_path, json, no_content, paged, require_admin};
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{User, UserState, UserView};
use crate::pagination::{ListKind, paginate, parse};
use crate::params::Params;
use crate::state::State;
use crate::time::{now_iso, now_ms};

fn list_view(auth: &AuthUser) -> UserView {
    if auth.is_admin {
        UserView::Admin
    } else {
        UserView::Basic
    }
}

pub(crate) async fn list(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let request = parse(&params, ListKind::USERS, true)?;
    let desc = crate::pagination::sort_desc(&params, true)?;
    let order_by = params
        .one_of(
            "order_by",
            &["id", "name", "username", "created_at", "updated_at"],
        )?
        .unwrap_or_else(|| "id".into());
    let id_after = params.int("id_after")?;
    let id_before = params.int("id_before")?;
    let state = app.state.lock();
    let view = list_view(&auth);
    let mut users: Vec<&User> = if let Some(username) = params.str("username") {
        state.user_by_username(&username).into_iter().collect()
    } else {
        let search = params.str("search").map(|s| s.to_lowercase());
        let active = params.bool("active")?.unwrap_or(false);
        let blocked = params.bool("blocked")?.unwrap_or(false);
        let external = params.bool("external")?.unwrap_or(false);
        let admins = params.bool("admins")?.unwrap_or(false);
        let filtered = |u: &&User| {
            search.as_ref().is_none_or(|s| {
                u.username.to_lowercase().contains(s)
                    || u.name.to_lowercase().contains(s)
                    || (auth.is_admin && u.email.to_lowercase() == *s)
            }) && (!active || u.state == UserState::Active)
                && (!blocked || u.state == UserState::Blocked)
                && (!external || u.external)
                && (!admins || u.is_admin)
        };
        state.users.values().filter(filtered).collect()
    };
    if !request.cursor {
        users.retain(|u| {
            id_after.is_none_or(|a| u.id as i64 > a) && id_before.is_none_or(|b| (u.id as i64) < b)
        });
    }
    match order_by.as_str() {
        "name" => users.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
        "username" => users.sort_by(|a, b| a.username.cmp(&b.username).then(a.id.cmp(&b.id))),
        "updated_at" => users.sort_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.id.cmp(&b.id))),
        _ => {}
    }
    if desc {
        users.reverse();
    }
    if request.cursor {
        // Cursor-based keyset (`Gitlab::Pagination::CursorBasedKeyset`,
        // `User.supported_keyset_orderings`): resume strictly after the
        // cursor's (value, id) in the requested direction.
        let key = |u: &User| -> String {
            match order_by.as_str() {
                "name" => u.name.clone(),
                "username" => u.username.clone(),
                _ => u.updated_at.clone(),
            }
        };
        if let Some((value, id)) = crate::pagination::decode_cursor(&params, &order_by)? {
            users.retain(|u| {
                let pos = (key(u), u.id);
                if desc {
                    pos < (value.clone(), id)
                } else {
                    pos > (value.clone(), id)
                }
            });
        }
        let page = crate::pagination::paginate_cursor(
            request,
            &app.base_url,
            &uri,
            &order_by,
            users.into_iter(),
            |u| (key(u), u.id),
        );
        let items: Vec<Value> = page
            .items
            .iter()
            .map(|u| u.to_json(&app.base_url, view))
            .collect();
        return Ok(paged(crate::pagination::Page {
            items,
            headers: page.headers,
        }));
    }
    let total = users.len();
    let page = paginate(
        request,
        &app.base_url,
        &uri,
        users.into_iter(),
        total,
        |u| u.id,
    );
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|u| u.to_json(&app.base_url, view))
        .collect();
    Ok(paged(crate::pagination::Page {
        items,
        headers: page.headers,
    }))
}

fn find_user(state: &State, id: &str) -> ApiResult<u64> {
    let id = int_path(id, "id")?;
    if state.users.contains_key(&id) {
        Ok(id)
    } else {
        Err(ApiError::not_found("User"))
    }
}

pub(crate) async fn get_one(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let id = find_user(&state, &id)?;
    let view = if auth.is_admin {
        UserView::Admin
    } else {
        UserView::Public
    };
    Ok(json(
        StatusCode::OK,
        state.users[&id].to_json(&app.base_url, view),
    ))
}

/// `Gitlab::PathRegex.namespace_format_regex`, simplified: letters, digits,
/// `_`, `-`, `.`; not starting with `-`, not ending in `.`, `.git` or `.atom`.
fn valid_username(username: &str) -> bool {
    !username.is_empty()
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !username.starts_with('-')
        && !username.starts_with('.')
        && !username.ends_with('.')
        && !username.ends_with(".git")
        && !username.ends_with(".atom")
}

const USERNAME_FORMAT: &str = "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-' or end in '.', '.git' or '.atom'.";

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty() && !domain.is_empty() && !email.contains(char::is_whitespace)
}

/// Validation shared by create and update: field formats, then GitLab's 409s.
fn check_identity(
    state: &State,
    self_id: Option<u64>,
    username: Option<&str>,
    email: Option<&str>,
    password: Option<&str>,
) -> ApiResult<()> {
    let mut problems: Vec<(&str, &str)> = Vec::new();
    if let Some(e) = email
        && !valid_email(e)
    {
        problems.push(("email", "is invalid"));
    }
    if let Some(p) = password
        && p.chars().count() < 8
    {
        problems.push(("password", "is too short (minimum is 8 characters)"));
    }
    if let Some(u) = username
        && !valid_username(u)
    {
        problems.push(("username", USERNAME_FORMAT));
    }
    let other = |id: Option<&u64>| id.is_some_and(|id| Some(*id) != self_id);
    if let Some(e) = email
        && other(state.idx.email.get(&e.to_lowercase()))
    {
        return Err(ApiError::conflict("Email has already been taken"));
    }
    if let Some(u) = username {
        if other(state.idx.username.get(&u.to_lowercase())) {
            return Err(ApiError::conflict("Username has already been taken"));
        }
        let own_ns = self_id
            .and_then(|id| state.users.get(&id))
            .map(|u| u.namespace_id);
        if let Some(ns) = state.idx.namespace_path.get(&u.to_lowercase())
            && Some(*ns) != own_ns
        {
            problems.push(("username", "has already been taken"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(&problems))
    }
}

fn apply_profile(user: &mut User, params: &Params) -> ApiResult<()> {
    if let Some(v) = params.bool("admin")? {
        user.is_admin = v;
    }
    if let Some(v) = params.bool("external")? {
        user.external = v;
    }
    if let Some(v) = params.bool("can_create_group")? {
        user.can_create_group = v;
    }
    if let Some(v) = params.bool("private_profile")? {
        user.private_profile = v;
    }
    if let Some(v) = params.int("projects_limit")? {
        user.projects_limit = v;
    }
    if params.has("note") {
        user.note = params.str("note");
    }
    if params.has("public_email") {
        user.public_email = params.str("public_email").filter(|s| !s.is_empty());
    }
    for (key, field) in [
        ("bio", &mut user.bio),
        ("location", &mut user.location),
        ("website_url", &mut user.website_url),
        ("organization", &mut user.organization),
        ("job_title", &mut user.job_title),
    ] {
        if let Some(v) = params.str(key) {
            *field = v;
        }
    }
    Ok(())
}

pub(crate) async fn create(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    params: Params,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let mut missing = Vec::new();
    if params.str("email").is_none() {
        missing.push("email is missing".to_string());
    }
    if !["password", "reset_password", "force_random_password"]
        .iter()
        .any(|k| params.has(k))
    {
        missing.push(
            "password, reset_password, force_random_password are missing, at least one parameter must be provided"
                .to_string(),
        );
    }
    for key in ["name", "username"] {
        if params.str(key).is_none() {
            missing.push(format!("{key} is missing"));
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::bad_param(missing.join(", ")));
    }
    // Coerce booleans early so a malformed one is a 400 before anything changes.
    params.bool("reset_password")?;
    params.bool("force_random_password")?;
    params.bool("skip_confirmation")?;
    let email = params.required_str("email")?;
    let name = params.required_str("name")?;
    let username = params.required_str("username")?;
    let password = params.str("password");
    let mut state = app.state.lock();
    check_identity(
        &state,
        None,
        Some(&username),
        Some(&email),
        password.as_deref(),
    )?;
    // Coerce the profile parameters on a scratch copy first, so a malformed
    // one is a 400 before anything is created.
    let mut scratch = current(&state, &auth)?.clone();
    apply_profile(&mut scratch, &params)?;
    let id = state.create_user(&username, &name, &email, false, Some(auth.id));
    let user = state.users.get_mut(&id).expect("just created");
    apply_profile(user, &params)?;
    tracing::debug!(user_id = id, username = %username, "Created user");
    Ok(json(
        StatusCode::CREATED,
        state.users[&id].to_json(&app.base_url, UserView::Admin),
    ))
}

pub(crate) async fn update(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let mut state = app.state.lock();
    let id = find_user(&state, &id)?;
    let username = params.str("username");
    let email = params.str("email");
    let password = params.str("password");
    check_identity(
        &state,
        Some(id),
        username.as_deref(),
        email.as_deref(),
        password.as_deref(),
    )?;
    let before = state.users[&id].clone();
    let mut user = before.clone();
    apply_profile(&mut user, &params)?;
    if let Some(name) = params.str("name") {
        user.name = name;
    }
    if let Some(email) = &email {
        state.idx.email.remove(&user.email.to_lowercase());
        user.email = email.clone();
        state.idx.email.insert(email.to_lowercase(), id);
    }
    let renamed = username.filter(|u| *u != user.username);
    if let Some(new) = &renamed {
        user.username = new.clone();
    }
    let ns_id = user.namespace_id;
    // `updated_at` moves only when the record really changed.
    let mut unchanged = before.clone();
    unchanged.updated_at = user.updated_at.clone();
    if serde_json::to_value(&unchanged).ok() != serde_json::to_value(&user).ok() {
        user.updated_at = now_iso();
    }
    state.users.insert(id, user);
    if renamed.is_some() {
        // `User#username_changed_hook` (`after_update`, `saved_change_to_username?`).
        let event = crate::hooks::user_event(&state.users[&id], "rename", Some(&before.username));
        state.outbox.push(event);
    }
    if renamed.is_some() {
        let username = state.users[&id].username.clone();
        if let Some(ns) = state.namespaces.get_mut(&ns_id) {
            ns.path = username.clone();
            ns.full_path = username;
        }
        state.rebuild_indexes();
    }
    Ok(json(
        StatusCode::OK,
        state.users[&id].to_json(&app.base_url, UserView::Admin),
    ))
}

/// Runs a state action on a user and answers 201 with its result (`true`, `false` or `null`).
fn action(
    app: &AppState,
    auth: &AuthUser,
    id: &str,
    act: impl FnOnce(&mut User, &AuthUser) -> ApiResult<Value>,
) -> ApiResult<Response> {
    require_admin(auth)?;
    let mut state = app.0.state.lock();
    let id = find_user(&state, id)?;
    let user = state.users.get_mut(&id).expect("found above");
    let before = user.state;
    let result = act(user, auth)?;
    // A state transition writes the users row, and so its `updated_at`.
    if user.state != before {
        user.updated_at = now_iso();
    }
    Ok(json(StatusCode::CREATED, result))
}

pub(crate) async fn block(
    app: AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    action(&app, &auth, &id, |user, auth| {
        if user.id == auth.id {
            return Err(ApiError::forbidden_because(
                "The API initiating user cannot be blocked by the API",
            ));
        }
        // `break if user.blocked?`: Grape renders the nil as `null`.
        if user.state == UserState::Blocked {
            return Ok(Value::Null);
        }
        user.state = UserState::Blocked;
        Ok(Value::Bool(true))
    })
}

pub(crate) async fn unblock(
    app: AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    action(&app, &auth, &id, |user, _| match user.state {
        UserState::Deactivated => Err(ApiError::forbidden_because(
            "Deactivated users cannot be unblocked by the API",
        )),
        UserState::Blocked => {
            user.state = UserState::Active;
            Ok(Value::Bool(true))
        }
        UserState::Active => Ok(Value::Bool(false)),
    })
}

pub(crate) async fn deactivate(
    app: AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    action(&app, &auth, &id, |user, _| match user.state {
        UserState::Blocked => Err(ApiError::forbidden_because(
            "A blocked user cannot be deactivated by the API",
        )),
        // `break if user.deactivated?`: Grape renders the nil as `null`.
        UserState::Deactivated => Ok(Value::Null),
        UserState::Active => {
            user.state = UserState::Deactivated;
            Ok(Value::Bool(true))
        }
    })
}

pub(crate) async fn activate(
    app: AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    action(&app, &auth, &id, |user, _| match user.state {
        UserState::Blocked => Err(ApiError::forbidden_because(
            "A blocked user must be unblocked to be activated",
        )),
        _ => {
            user.state = UserState::Active;
            Ok(Value::Bool(true))
        }
    })
}

pub(crate) async fn delete(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let hard_delete = params.bool("hard_delete")?.unwrap_or(false);
    let mut state = app.state.lock();
    let id = find_user(&state, &id)?;
    current(&state, &auth)?;
    let delay = app.config.user_delete_delay.as_millis() as u64;
    let at = now_ms() + delay;
    let user = state.users.get_mut(&id).expect("found above");
    if hard_delete {
        user.state = UserState::Blocked;
    }
    if user.delete_at_ms.is_none() {
        user.delete_at_ms = Some(at);
        state.idx.pending_deletes.insert((at, id));
    }
    state.purge_due_deletes(now_ms());
    tracing::debug!(user_id = id, delay_ms = delay, "Scheduled user deletion");
    Ok(no_content())
}
