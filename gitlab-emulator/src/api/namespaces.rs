//! `/namespaces` (list, get) and `/groups` (list, get, create): enough for a
//! client to find the `namespace_id` of `root`, a user or a group.

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::{AppState, current, json, paged};
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{Namespace, NamespaceKind, User};
use crate::pagination::{ListKind, Page, paginate, parse};
use crate::params::{Params, require_all};
use crate::state::{NextIds, State};
use crate::time::now_iso;

/// Whether `user` may see namespace `ns` in `/namespaces` (own or owned).
fn namespace_visible(state: &State, user: &User, ns: &Namespace) -> bool {
    user.is_admin || state.owns_namespace(user.id, ns.id)
}

/// Whether `user` may see group `ns` (public/internal, or owned).
fn group_visible(state: &State, user: &User, ns: &Namespace) -> bool {
    user.is_admin || ns.visibility != "private" || state.owns_namespace(user.id, ns.id)
}

pub(crate) async fn list_namespaces(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let request = parse(&params, ListKind::PLAIN, false)?;
    let search = params.str("search").map(|s| s.to_lowercase());
    let owned_only = params.bool("owned_only")?.unwrap_or(false);
    let state = app.state.lock();
    let user = current(&state, &auth)?;
    let list: Vec<&Namespace> = state
        .namespaces
        .values()
        .filter(|ns| namespace_visible(&state, user, ns))
        .filter(|ns| !owned_only || state.owns_namespace(user.id, ns.id))
        .filter(|ns| {
            search.as_ref().is_none_or(|s| {
                ns.path.to_lowercase().contains(s) || ns.name.to_lowercase().contains(s)
            })
        })
        .collect();
    let total = list.len();
    let page = paginate(request, &app.base_url, &uri, list.into_iter(), total, |n| {
        n.id
    });
    let items = page
        .items
        .iter()
        .map(|ns| ns.namespace_json(&app.base_url, 1))
        .collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

pub(crate) async fn get_namespace(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let user = current(&state, &auth)?;
    let ns = state
        .find_namespace_id(&id)
        .and_then(|id| state.namespaces.get(&id))
        .filter(|ns| namespace_visible(&state, user, ns))
        .ok_or_else(|| ApiError::not_found("Namespace"))?;
    Ok(json(StatusCode::OK, ns.namespace_json(&app.base_url, 1)))
}

/// `GET /namespaces/:namespace/exists` (`API::Namespaces`): whether a namespace
/// with that path (case-insensitive) exists among the children of `parent_id`
/// (top-level namespaces without it), and if so a free alternative
/// (`Namespace.clean_path` via `Gitlab::Utils::Uniquify`: the path with 1, 2, …
/// appended). Any authenticated user may ask.
pub(crate) async fn namespace_exists(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(path): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let state = app.state.lock();
    current(&state, &auth)?;
    let parent = params.int("parent_id")?.map(|v| v as u64);
    let taken = |p: &str| {
        state
            .namespaces
            .values()
            .any(|ns| ns.parent_id == parent && ns.path.eq_ignore_ascii_case(p))
    };
    let exists = taken(&path);
    let suggests: Vec<String> = if exists {
        (1u64..)
            .map(|n| format!("{path}{n}"))
            .find(|candidate| !taken(candidate))
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"exists": exists, "suggests": suggests}),
    ))
}

pub(crate) async fn list_groups(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let request = parse(&params, ListKind::PLAIN, false)?;
    let search = params.str("search").map(|s| s.to_lowercase());
    let owned = params.bool("owned")?.unwrap_or(false);
    let top_level_only = params.bool("top_level_only")?.unwrap_or(false);
    let order_by = params
        .one_of("order_by", &["name", "path", "id", "similarity"])?
        .unwrap_or_else(|| "name".into());
    let desc = crate::pagination::sort_desc(&params, false)?;
    let state = app.state.lock();
    let user = current(&state, &auth)?;
    let mut list: Vec<&Namespace> = state
        .namespaces
        .values()
        .filter(|ns| ns.kind == NamespaceKind::Group)
        .filter(|ns| group_visible(&state, user, ns))
        .filter(|ns| !owned || state.owns_namespace(user.id, ns.id))
        .filter(|ns| !top_level_only || ns.parent_id.is_none())
        .filter(|ns| {
            search.as_ref().is_none_or(|s| {
                ns.path.to_lowercase().contains(s) || ns.name.to_lowercase().contains(s)
            })
        })
        .collect();
    match order_by.as_str() {
        "name" => list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
        "path" => list.sort_by(|a, b| a.path.cmp(&b.path).then(a.id.cmp(&b.id))),
        _ => {}
    }
    if desc {
        list.reverse();
    }
    let total = list.len();
    let page = paginate(request, &app.base_url, &uri, list.into_iter(), total, |n| {
        n.id
    });
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|ns| ns.group_json(&app.base_url, &state.namespaces))
        .collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

pub(crate) async fn get_group(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let user = current(&state, &auth)?;
    let ns = state
        .find_namespace_id(&id)
        .and_then(|id| state.namespaces.get(&id))
        .filter(|ns| ns.kind == NamespaceKind::Group && group_visible(&state, user, ns))
        .ok_or_else(|| ApiError::not_found("Group"))?;
    Ok(json(
        StatusCode::OK,
        ns.group_json(&app.base_url, &state.namespaces),
    ))
}

/// Group and project path format (`Gitlab::PathRegex`), simplified.
pub(crate) fn valid_path(path: &str) -> bool {
    let mut chars = path.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == '_')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !path.ends_with('.')
        && !path.ends_with(".git")
        && !path.ends_with(".atom")
}

pub(crate) async fn create_group(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    params: Params,
) -> ApiResult<Response> {
    require_all(&params, &["name", "path"])?;
    let name = params.required_str("name")?;
    let path = params.required_str("path")?;
    let visibility = params
        .one_of("visibility", &["private", "internal", "public"])?
        .unwrap_or_else(|| "private".into());
    let parent_id = params.int("parent_id")?.map(|p| p as u64);
    let description = params.str("description").unwrap_or_default();
    let mut state = app.state.lock();
    let user = current(&state, &auth)?.clone();
    let parent = match parent_id {
        Some(pid) => {
            let parent = state
                .namespaces
                .get(&pid)
                .filter(|ns| ns.kind == NamespaceKind::Group)
                .ok_or_else(|| ApiError::not_found("Parent Group"))?;
            if !user.is_admin && !state.owns_namespace(user.id, pid) {
                return Err(ApiError::forbidden());
            }
            Some(parent.full_path.clone())
        }
        None => {
            if !user.is_admin && !user.can_create_group {
                return Err(ApiError::forbidden());
            }
            None
        }
    };
    if !valid_path(&path) {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "Failed to save group {:path=>[\"can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'\"]}",
        ));
    }
    let full_path = match &parent {
        Some(p) => format!("{p}/{path}"),
        None => path.clone(),
    };
    let path_taken = state
        .idx
        .namespace_path
        .contains_key(&full_path.to_lowercase())
        || state
            .idx
            .project_path
            .contains_key(&full_path.to_lowercase());
    if path_taken {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "Failed to save group {:path=>[\"has already been taken\"]}",
        ));
    }
    let id = NextIds::take(&mut state.next_id.namespace);
    let ns = Namespace {
        id,
        name,
        path,
        kind: NamespaceKind::Group,
        full_path: full_path.clone(),
        parent_id,
        owner_id: user.id,
        visibility,
        description,
        created_at: now_iso(),
    };
    state.namespaces.insert(id, ns);
    state
        .idx
        .namespace_path
        .insert(full_path.to_lowercase(), id);
    tracing::debug!(group_id = id, full_path = %full_path, "Created group");
    Ok(json(
        StatusCode::CREATED,
        state.namespaces[&id].group_json(&app.base_url, &state.namespaces),
    ))
}
