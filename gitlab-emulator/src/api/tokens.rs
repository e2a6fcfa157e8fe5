//! Personal access tokens: `POST /users/:user_id/personal_access_tokens`
//! (admins; `lib/api/users.rb`, `PersonalAccessTokens::CreateService`) and the
//! token's own `GET`/`DELETE /personal_access_tokens/self`
//! (`lib/api/personal_access_tokens/self_information.rb`), which any scope may call.

use axum::Extension;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::{AppState, int_path, json, no_content, require_admin};
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::AccessToken;
use crate::params::Params;
use crate::state::NextIds;
use crate::time::{date_in_days, is_valid_date, now_iso, today};

/// `PersonalAccessToken::MAX_PERSONAL_ACCESS_TOKEN_LIFETIME_IN_DAYS`: the
/// default and the latest allowed expiry (`require_personal_access_token_expiry`
/// is on by default).
const MAX_LIFETIME_DAYS: i64 = 365;

/// Rails' `Array#to_sentence`.
fn to_sentence(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

pub(crate) async fn create(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    // `before { authenticated_as_admin! }` runs before parameter validation.
    require_admin(&auth)?;
    let user_id = int_path(&id, "user_id")?;
    let mut missing = Vec::new();
    if !params.has("name") {
        missing.push("name is missing");
    }
    if !params.has("scopes") {
        missing.push("scopes is missing");
    }
    if !missing.is_empty() {
        return Err(ApiError::bad_param(missing.join(", ")));
    }
    let scopes: Vec<String> = params
        .list("scopes")
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    if scopes.iter().any(|s| !crate::scopes::is_known(s)) {
        return Err(ApiError::bad_param("scopes does not have a valid value"));
    }
    let expires_at = params.str("expires_at").filter(|s| !s.is_empty());
    if let Some(d) = &expires_at
        && !is_valid_date(d)
    {
        return Err(ApiError::bad_param("expires_at is invalid"));
    }
    let name = params.str("name").unwrap_or_default();
    let description = params.str("description");
    let mut state = app.state.lock();
    if !state.users.contains_key(&user_id) {
        return Err(ApiError::not_found("User"));
    }
    // Model validations, reported by the service as one sentence (422).
    let max_date = date_in_days(MAX_LIFETIME_DAYS);
    let mut errors = Vec::new();
    if name.trim().is_empty() {
        errors.push("Name can't be blank".to_string());
    }
    if scopes.is_empty() {
        errors.push("Scopes can't be blank".to_string());
    }
    if let Some(d) = &expires_at
        && d.as_str() > max_date.as_str()
    {
        errors.push(format!("Expires at must be before {max_date}"));
    }
    if !errors.is_empty() {
        return Err(ApiError::message(
            StatusCode::UNPROCESSABLE_ENTITY,
            to_sentence(&errors),
        ));
    }
    let id = NextIds::take(&mut state.next_id.token);
    let secret = state.new_secret("glpat-");
    let token = AccessToken {
        id,
        user_id,
        name,
        description,
        token: secret,
        scopes,
        created_at: now_iso(),
        expires_at: Some(expires_at.unwrap_or(max_date)),
        revoked: false,
        last_used_at: None,
        last_used_ms: 0,
        configured: false,
    };
    let body = token.to_json_with_token(&today());
    state.insert_token(token);
    tracing::debug!(token_id = id, user_id, "Created personal access token");
    Ok(json(StatusCode::CREATED, body))
}

fn own_token(auth: &AuthUser) -> ApiResult<u64> {
    auth.token_id.ok_or_else(|| {
        ApiError::message(
            StatusCode::BAD_REQUEST,
            "400 Bad request - This endpoint requires token type to be a personal access token",
        )
    })
}

pub(crate) async fn get_self(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
) -> ApiResult<Response> {
    let id = own_token(&auth)?;
    let state = app.state.lock();
    let token = state
        .access_tokens
        .get(&id)
        .ok_or_else(ApiError::unauthorized)?;
    Ok(json(StatusCode::OK, token.to_json(&today())))
}

pub(crate) async fn revoke_self(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
) -> ApiResult<Response> {
    let id = own_token(&auth)?;
    let mut state = app.state.lock();
    let token = state
        .access_tokens
        .get_mut(&id)
        .ok_or_else(ApiError::unauthorized)?;
    // `RevokeService`: only the owner (or an admin) may revoke; under Sudo the
    // current user is the impersonated one.
    if token.user_id != auth.id && !auth.is_admin {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "400 Bad request",
        ));
    }
    token.revoked = true;
    tracing::debug!(token_id = id, "Revoked personal access token");
    Ok(no_content())
}
