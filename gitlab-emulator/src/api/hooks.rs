//! `/hooks`: system hooks (`lib/api/system_hooks.rb`, GitLab 18.4). Admins
//! only (`authorize! :read_web_hook` / `:admin_web_hook`: 403 otherwise).
//! Validation follows `API::Helpers::WebHooksHelpers`: a missing `url` is
//! Grape's 400, an unusable one a 422 `{"error": …}` (`error!(result.message,
//! 422)` on create, `error!("Invalid url given", 422)` on update), an update
//! with nothing to change 400 `No parameters provided`, an unknown id 404
//! `404 Not found`. Changing the URL without a new token clears the token
//! (`WebHook#reset_token`). Delivery: see [`crate::hooks`].

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::{AppState, int_path, json, no_content, paged, require_admin};
use crate::error::{ApiError, ApiResult};
use crate::hooks::SystemHook;
use crate::middleware::AuthUser;
use crate::pagination::{ListKind, Page, paginate, parse};
use crate::params::Params;
use crate::state::{NextIds, State};
use crate::time::now_iso;

/// `SystemHookUrlValidator` (a `PublicUrlValidator` allowing local
/// addresses): the error message, if the URL is unusable.
fn url_problem(url: &str) -> Option<&'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("Url is invalid");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Some("Url is blocked: Only allowed schemes are http, https");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Some("Url is invalid");
    }
    None
}

fn find(state: &State, hook_id: &str) -> ApiResult<u64> {
    let id = int_path(hook_id, "hook_id")?;
    if state.system_hooks.contains_key(&id) {
        Ok(id)
    } else {
        Err(ApiError::message(StatusCode::NOT_FOUND, "404 Not found"))
    }
}

/// Optional hook attributes present in `params` (`hook_parameters`).
fn apply(hook: &mut SystemHook, params: &Params) -> ApiResult<bool> {
    let mut any = false;
    for (key, field) in [
        ("push_events", &mut hook.push_events),
        ("tag_push_events", &mut hook.tag_push_events),
        ("merge_requests_events", &mut hook.merge_requests_events),
        (
            "repository_update_events",
            &mut hook.repository_update_events,
        ),
        ("enable_ssl_verification", &mut hook.enable_ssl_verification),
    ] {
        if let Some(v) = params.bool(key)? {
            *field = v;
            any = true;
        }
    }
    for (key, field) in [
        ("name", &mut hook.name),
        ("description", &mut hook.description),
        ("token", &mut hook.token),
    ] {
        if params.has(key) {
            *field = params.str(key);
            any = true;
        }
    }
    Ok(any)
}

pub(crate) async fn list(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let request = parse(&params, ListKind::PLAIN, false)?;
    let state = app.state.lock();
    let hooks: Vec<&SystemHook> = state.system_hooks.values().collect();
    let total = hooks.len();
    let page = paginate(
        request,
        &app.base_url,
        &uri,
        hooks.into_iter(),
        total,
        |h| h.id,
    );
    let items: Vec<Value> = page.items.iter().map(|h| h.to_json()).collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

pub(crate) async fn get_one(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(hook_id): Path<String>,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let state = app.state.lock();
    let id = find(&state, &hook_id)?;
    Ok(json(StatusCode::OK, state.system_hooks[&id].to_json()))
}

pub(crate) async fn create(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    params: Params,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let Some(url) = params.str("url") else {
        return Err(ApiError::bad_param("url is missing"));
    };
    let mut hook = SystemHook {
        id: 0,
        url: url.clone(),
        name: None,
        description: None,
        token: None,
        push_events: false,
        tag_push_events: false,
        merge_requests_events: false,
        repository_update_events: true,
        enable_ssl_verification: true,
        created_at: now_iso(),
    };
    apply(&mut hook, &params)?;
    if let Some(problem) = url_problem(&url) {
        return Err(ApiError::error(StatusCode::UNPROCESSABLE_ENTITY, problem));
    }
    let mut state = app.state.lock();
    // Changes made before the hook existed are not its to receive.
    app.hooks.drain(&mut state);
    hook.id = NextIds::take(&mut state.next_id.hook);
    let body = hook.to_json();
    state.system_hooks.insert(hook.id, hook);
    Ok(json(StatusCode::CREATED, body))
}

pub(crate) async fn update(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(hook_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let mut state = app.state.lock();
    let id = find(&state, &hook_id)?;
    let mut hook = state.system_hooks[&id].clone();
    let mut any = apply(&mut hook, &params)?;
    if let Some(url) = params.str("url") {
        any = true;
        if url != hook.url && !params.has("token") {
            hook.token = None;
        }
        hook.url = url;
    }
    if !any {
        return Err(ApiError::error(
            StatusCode::BAD_REQUEST,
            "No parameters provided",
        ));
    }
    if url_problem(&hook.url).is_some() {
        return Err(ApiError::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid url given",
        ));
    }
    app.hooks.drain(&mut state);
    let body = hook.to_json();
    state.system_hooks.insert(id, hook);
    Ok(json(StatusCode::OK, body))
}

/// `POST /hooks/:hook_id` (`API::Hooks::Test` mounted with the sample
/// `project_create` data of `lib/api/system_hooks.rb`): sends the sample to
/// that hook and answers 201 with it. GitLab delivers it synchronously; here
/// it is queued like any delivery, so the answer never waits for the receiver.
pub(crate) async fn test(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(hook_id): Path<String>,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let mut state = app.state.lock();
    let id = find(&state, &hook_id)?;
    app.hooks.drain(&mut state);
    let data = serde_json::json!({
        "event_name": "project_create",
        "name": "Ruby",
        "path": "ruby",
        "project_id": 1,
        "owner_name": "Someone",
        "owner_email": "example@gitlabhq.com",
    });
    app.hooks.send_to(&state.system_hooks[&id], &data);
    Ok(json(StatusCode::CREATED, data))
}

pub(crate) async fn delete(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(hook_id): Path<String>,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let mut state = app.state.lock();
    let id = find(&state, &hook_id)?;
    // What happened before the deletion is still delivered.
    app.hooks.drain(&mut state);
    state.system_hooks.remove(&id);
    app.hooks.forget(id);
    Ok(no_content())
}
