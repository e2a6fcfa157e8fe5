//! The `/api/v4` surface: the route table, shared helpers for handlers
//! (responses, permission checks) and one module per endpoint family. Handlers
//! hold the state lock only for synchronous work, never across an await.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::middleware::{AuthUser, api_layer};
use crate::model::{Project, User};
use crate::pagination::Page;
use crate::server::App;
use crate::state::State;

mod branches;
mod hooks;
mod jobs;
mod keys;
mod members;
mod misc;
mod namespaces;
mod projects;
mod protected_branches;
mod tokens;
mod users;
mod variables;

pub(crate) type AppState = axum::extract::State<Arc<App>>;

/// Builds the `/api/v4` router with its middleware.
pub(crate) fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/v4/version", get(misc::version))
        .route("/api/v4/user", get(misc::current_user))
        .route("/api/v4/user/keys", get(keys::list_own).post(keys::add_own))
        .route(
            "/api/v4/user/keys/{key_id}",
            get(keys::get_own).delete(keys::delete_own),
        )
        .route("/api/v4/users", get(users::list).post(users::create))
        .route(
            "/api/v4/users/{id}",
            get(users::get_one).put(users::update).delete(users::delete),
        )
        .route("/api/v4/users/{id}/block", post(users::block))
        .route("/api/v4/users/{id}/unblock", post(users::unblock))
        .route("/api/v4/users/{id}/deactivate", post(users::deactivate))
        .route("/api/v4/users/{id}/activate", post(users::activate))
        .route(
            "/api/v4/users/{id}/keys",
            get(keys::list_user).post(keys::add_user_key),
        )
        .route(
            "/api/v4/users/{id}/keys/{key_id}",
            get(keys::get_user_key).delete(keys::delete_user_key),
        )
        .route(
            "/api/v4/users/{id}/personal_access_tokens",
            post(tokens::create),
        )
        .route(
            "/api/v4/personal_access_tokens/self",
            get(tokens::get_self).delete(tokens::revoke_self),
        )
        .route("/api/v4/keys", get(keys::find_by_fingerprint))
        .route("/api/v4/keys/{id}", get(keys::get_by_id))
        .route("/api/v4/job", get(jobs::current_job))
        .route("/api/v4/projects/{id}/jobs/{job_id}", get(jobs::get_one))
        .route(
            "/api/v4/projects/{id}/jobs/{job_id}/trace",
            get(jobs::trace),
        )
        .route("/api/v4/namespaces", get(namespaces::list_namespaces))
        .route("/api/v4/namespaces/{id}", get(namespaces::get_namespace))
        .route(
            "/api/v4/namespaces/{id}/exists",
            get(namespaces::namespace_exists),
        )
        .route(
            "/api/v4/groups",
            get(namespaces::list_groups).post(namespaces::create_group),
        )
        .route("/api/v4/groups/{id}", get(namespaces::get_group))
        .route(
            "/api/v4/projects",
            get(projects::list).post(projects::create),
        )
        .route(
            "/api/v4/projects/{id}",
            get(projects::get_one)
                .put(projects::update)
                .delete(projects::delete),
        )
        .route("/api/v4/projects/{id}/archive", post(projects::archive))
        .route("/api/v4/projects/{id}/unarchive", post(projects::unarchive))
        .route(
            "/api/v4/projects/{id}/transfer",
            axum::routing::put(projects::transfer),
        )
        .route("/api/v4/hooks", get(hooks::list).post(hooks::create))
        .route(
            "/api/v4/hooks/{hook_id}",
            get(hooks::get_one)
                .post(hooks::test)
                .put(hooks::update)
                .delete(hooks::delete),
        )
        .route(
            "/api/v4/projects/{id}/repository/branches",
            get(branches::list).post(branches::create),
        )
        .route(
            "/api/v4/projects/{id}/repository/branches/{branch}",
            get(branches::get_one).delete(branches::delete),
        )
        .route(
            "/api/v4/projects/{id}/members",
            get(members::list).post(members::add),
        )
        .route(
            "/api/v4/projects/{id}/members/{user_id}",
            get(members::get_one)
                .put(members::update)
                .delete(members::remove),
        )
        .route(
            "/api/v4/projects/{id}/protected_branches",
            get(protected_branches::list).post(protected_branches::protect),
        )
        .route(
            "/api/v4/projects/{id}/protected_branches/{name}",
            get(protected_branches::get_one)
                .patch(protected_branches::update)
                .delete(protected_branches::unprotect),
        )
        .route(
            "/api/v4/projects/{id}/variables",
            get(variables::list).post(variables::create),
        )
        .route(
            "/api/v4/projects/{id}/variables/{key}",
            get(variables::get_one)
                .put(variables::update)
                .delete(variables::delete),
        )
        .layer(axum::middleware::from_fn_with_state(app.clone(), api_layer))
        .method_not_allowed_fallback(|| async {
            ApiError::error(StatusCode::METHOD_NOT_ALLOWED, "405 Not Allowed")
        })
        .fallback(|| async { ApiError::error(StatusCode::NOT_FOUND, "404 Not Found") });
    api.with_state(app)
}

/// A JSON response with `status`.
pub(crate) fn json(status: StatusCode, value: Value) -> Response {
    (status, Json(value)).into_response()
}

/// A 200 response carrying one page and its pagination headers.
pub(crate) fn paged(page: Page<Value>) -> Response {
    let mut resp = (StatusCode::OK, Json(Value::Array(page.items))).into_response();
    extend_headers(resp.headers_mut(), page.headers);
    resp
}

fn extend_headers(target: &mut HeaderMap, source: HeaderMap) {
    for (name, value) in source.iter() {
        target.insert(name.clone(), value.clone());
    }
}

/// 204 No Content.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The authenticated user's record.
pub(crate) fn current<'a>(state: &'a State, auth: &AuthUser) -> ApiResult<&'a User> {
    state.users.get(&auth.id).ok_or_else(ApiError::unauthorized)
}

/// `authenticated_as_admin!`: 403 for non-admins.
pub(crate) fn require_admin(auth: &AuthUser) -> ApiResult<()> {
    if auth.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// Resolves `:id` to a project the caller can see and on which it has at
/// least `min_access`: 404 "Project Not Found" when unknown or invisible, 403
/// when visible but the access level is too low.
pub(crate) fn project_with_access(
    state: &State,
    auth: &AuthUser,
    id: &str,
    min_access: i64,
) -> ApiResult<u64> {
    let user = current(state, auth)?;
    let project_id = state
        .find_project_id(id)
        .ok_or_else(|| ApiError::not_found("Project"))?;
    let project: &Project = &state.projects[&project_id];
    if !state.can_read_project(user, project) {
        return Err(ApiError::not_found("Project"));
    }
    if state.project_access(user, project) < min_access {
        return Err(ApiError::forbidden());
    }
    Ok(project_id)
}

/// Parses a numeric path id the way Grape's `type: Integer` does.
pub(crate) fn int_path(value: &str, name: &str) -> ApiResult<u64> {
    value
        .parse()
        .map_err(|_| ApiError::bad_param(format!("{name} is invalid")))
}
