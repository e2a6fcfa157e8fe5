//! SSH keys: the current user's (`/user/keys`), any user's (`/users/:id/keys`,
//! adding and removing for admins only) — `lib/api/users.rb` with
//! `Entities::SSHKey` and the `Key` model's validations — and the admin
//! lookups `GET /keys/:id` and `GET /keys?fingerprint=` (`lib/api/keys.rb`,
//! `KeysFinder`, `Entities::SSHKeyWithUser`).

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::{AppState, current, int_path, json, no_content, paged, require_admin};
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{SshKey, UserView};
use crate::pagination::{ListKind, Page, paginate, parse};
use crate::params::Params;
use crate::server::App;
use crate::sshkeys;
use crate::state::{NextIds, State};
use crate::time::{now_iso, now_ms, parse_datetime};

const USAGE_TYPES: &[&str] = &["auth", "signing", "auth_and_signing"];

/// The host part of the instance URL (`Gitlab.config.gitlab.host`).
fn host(base_url: &str) -> &str {
    base_url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .split([':', '/'])
        .next()
        .unwrap_or("localhost")
}

fn key_json(state: &State, key: &SshKey, base_url: &str) -> Value {
    let owner = state
        .users
        .get(&key.user_id)
        .map_or("", |u| u.name.as_str());
    key.to_json(owner, host(base_url))
}

fn list_for(app: &App, user_id: u64, uri: &Uri, params: &Params) -> ApiResult<Response> {
    let request = parse(params, ListKind::PLAIN, false)?;
    let state = app.state.lock();
    let keys: Vec<&SshKey> = state
        .ssh_keys
        .values()
        .filter(|k| k.user_id == user_id)
        .collect();
    let total = keys.len();
    let page = paginate(request, &app.base_url, uri, keys.into_iter(), total, |k| {
        k.id
    });
    let items = page
        .items
        .iter()
        .map(|k| key_json(&state, k, &app.base_url))
        .collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

/// `Keys::CreateService` for `user_id`: Grape's parameter checks, then the
/// model's validations (400 `{"message":{field:[…]}}`).
fn add_key(app: &App, user_id: u64, params: &Params) -> ApiResult<Response> {
    let expires_at = match params.str("expires_at").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            Some(parse_datetime(&s).ok_or_else(|| ApiError::bad_param("expires_at is invalid"))?)
        }
    };
    let usage_type = params
        .one_of("usage_type", USAGE_TYPES)?
        .unwrap_or_else(|| "auth_and_signing".into());
    let title = params.str("title").unwrap_or_default();
    let text = params.str("key").unwrap_or_default();
    let mut state = app.state.lock();
    let mut errors: Vec<(&str, String)> = Vec::new();
    if title.trim().is_empty() {
        errors.push(("title", "can't be blank".into()));
    }
    if title.chars().count() > 255 {
        errors.push(("title", "is too long (maximum is 255 characters)".into()));
    }
    errors.extend(sshkeys::validation_errors(&text));
    let parsed = sshkeys::parse(&text);
    if let Some(p) = &parsed
        && state
            .ssh_keys
            .values()
            .any(|k| k.fingerprint_sha256 == p.fingerprint_sha256)
    {
        errors.push(("fingerprint_sha256", "has already been taken".into()));
    }
    if let Some((_, ms)) = &expires_at
        && *ms <= now_ms()
    {
        errors.push(("key", "has expired".into()));
    }
    let Some(parsed) = parsed.filter(|_| errors.is_empty()) else {
        let pairs: Vec<(&str, &str)> = errors.iter().map(|(f, m)| (*f, m.as_str())).collect();
        return Err(ApiError::validation(&pairs));
    };
    let id = NextIds::take(&mut state.next_id.ssh_key);
    let key = SshKey {
        id,
        user_id,
        title,
        key: parsed.sanitized,
        fingerprint_sha256: parsed.fingerprint_sha256,
        fingerprint_md5: parsed.fingerprint_md5,
        created_at: now_iso(),
        expires_at: expires_at.map(|(iso, _)| iso),
        usage_type,
        last_used_at: None,
    };
    let body = key_json(&state, &key, &app.base_url);
    state.ssh_keys.insert(id, key);
    tracing::debug!(key_id = id, user_id, "Added SSH key");
    Ok(json(StatusCode::CREATED, body))
}

/// Grape's `requires :key, :title` (in declaration order).
fn require_key_and_title(params: &Params) -> ApiResult<()> {
    let missing: Vec<&str> = [("key", "key is missing"), ("title", "title is missing")]
        .iter()
        .filter(|(k, _)| !params.has(k))
        .map(|(_, m)| *m)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_param(missing.join(", ")))
    }
}

fn user_key(state: &State, user_id: u64, key_id: u64) -> ApiResult<&SshKey> {
    state
        .ssh_keys
        .get(&key_id)
        .filter(|k| k.user_id == user_id)
        .ok_or_else(|| ApiError::not_found("Key"))
}

pub(crate) async fn list_own(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    list_for(&app, auth.id, &uri, &params)
}

pub(crate) async fn get_own(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(key_id): Path<String>,
) -> ApiResult<Response> {
    let key_id = int_path(&key_id, "key_id")?;
    let state = app.state.lock();
    let key = user_key(&state, auth.id, key_id)?;
    Ok(json(StatusCode::OK, key_json(&state, key, &app.base_url)))
}

pub(crate) async fn add_own(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    params: Params,
) -> ApiResult<Response> {
    require_key_and_title(&params)?;
    add_key(&app, auth.id, &params)
}

pub(crate) async fn delete_own(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(key_id): Path<String>,
) -> ApiResult<Response> {
    let key_id = int_path(&key_id, "key_id")?;
    let mut state = app.state.lock();
    user_key(&state, auth.id, key_id)?;
    state.ssh_keys.remove(&key_id);
    Ok(no_content())
}

pub(crate) async fn list_user(
    axum::extract::State(app): AppState,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let user_id = {
        let state = app.state.lock();
        state
            .find_user_by_id_or_username(&id)
            .ok_or_else(|| ApiError::not_found("User"))?
    };
    list_for(&app, user_id, &uri, &params)
}

pub(crate) async fn get_user_key(
    axum::extract::State(app): AppState,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let user_id = int_path(&id, "id")?;
    let key_id = int_path(&key_id, "key_id")?;
    let state = app.state.lock();
    if !state.users.contains_key(&user_id) {
        return Err(ApiError::not_found("User"));
    }
    let key = user_key(&state, user_id, key_id)?;
    Ok(json(StatusCode::OK, key_json(&state, key, &app.base_url)))
}

pub(crate) async fn add_user_key(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    // Parameter validation comes first here: `authenticated_as_admin!` is in
    // the endpoint body.
    let user_id = int_path(&id, "user_id")?;
    require_key_and_title(&params)?;
    require_admin(&auth)?;
    if !app.state.lock().users.contains_key(&user_id) {
        return Err(ApiError::not_found("User"));
    }
    add_key(&app, user_id, &params)
}

pub(crate) async fn delete_user_key(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let user_id = int_path(&id, "id")?;
    let key_id = int_path(&key_id, "key_id")?;
    require_admin(&auth)?;
    let mut state = app.state.lock();
    if !state.users.contains_key(&user_id) {
        return Err(ApiError::not_found("User"));
    }
    user_key(&state, user_id, key_id)?;
    state.ssh_keys.remove(&key_id);
    Ok(no_content())
}

/// `Entities::SSHKeyWithUser`: the key plus its owner as `Entities::UserPublic`.
fn key_with_user(state: &State, key: &SshKey, base_url: &str) -> Value {
    let mut v = key_json(state, key, base_url);
    v["user"] = state
        .users
        .get(&key.user_id)
        .map_or(Value::Null, |u| u.to_json(base_url, UserView::SelfView));
    v
}

pub(crate) async fn get_by_id(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    let state = app.state.lock();
    // `Key.find` raises RecordNotFound → `404 Not found`.
    let key = id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.ssh_keys.get(&id))
        .ok_or_else(|| ApiError::message(StatusCode::NOT_FOUND, "404 Not found"))?;
    Ok(json(
        StatusCode::OK,
        key_with_user(&state, key, &app.base_url),
    ))
}

pub(crate) async fn find_by_fingerprint(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    params: Params,
) -> ApiResult<Response> {
    let fingerprint = params.required_str("fingerprint")?;
    let state = app.state.lock();
    // `authenticated_with_can_read_all_resources!`
    if !current(&state, &auth)?.is_admin {
        return Err(ApiError::forbidden());
    }
    let query = sshkeys::parse_fingerprint(&fingerprint)
        .ok_or_else(|| ApiError::message(StatusCode::BAD_REQUEST, "Failed to return the key"))?;
    let key = state
        .ssh_keys
        .values()
        .find(|k| query.matches(&k.fingerprint_sha256, &k.fingerprint_md5))
        .ok_or_else(|| ApiError::not_found("Key"))?;
    Ok(json(
        StatusCode::OK,
        key_with_user(&state, key, &app.base_url),
    ))
}
