//! `/projects/:id/variables`: list, get / update / delete with
//! `filter[environment_scope]` (409 when a key exists in several scopes and no
//! filter is given), create (uniqueness on key + scope, masking rules,
//! create-only `masked_and_hidden`), and the hidden-variable update rules.

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;

use super::{AppState, json, no_content, paged, project_with_access};
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{Project, Variable, access};
use crate::pagination::{ListKind, Page, paginate, parse};
use crate::params::{Params, require_all};
use crate::state::NextIds;

const VARIABLE_TYPES: &[&str] = &["env_var", "file"];

pub(crate) async fn list(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let request = parse(&params, ListKind::PLAIN, false)?;
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let vars = &state.projects[&pid].variables;
    let page = paginate(
        request,
        &app.base_url,
        &uri,
        vars.values(),
        vars.len(),
        |v| v.id,
    );
    let items = page.items.iter().map(|v| v.to_json()).collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

/// `find_variable`: by key, narrowed by `filter[environment_scope]`.
fn find_variable(project: &Project, key: &str, params: &Params) -> ApiResult<u64> {
    let scope = params.str("filter[environment_scope]");
    let ids = project
        .variable_keys
        .get(key)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let matching: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| {
            scope.as_ref().is_none_or(|s| {
                project
                    .variables
                    .get(id)
                    .is_some_and(|v| &v.environment_scope == s)
            })
        })
        .collect();
    match matching.as_slice() {
        [] => Err(ApiError::not_found("Variable")),
        [one] => Ok(*one),
        _ => Err(ApiError::conflict(
            "There are multiple variables with provided parameters. Please use 'filter[environment_scope]'",
        )),
    }
}

pub(crate) async fn get_one(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, key)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let project = &state.projects[&pid];
    let vid = find_variable(project, &key, &params)?;
    Ok(json(StatusCode::OK, project.variables[&vid].to_json()))
}

/// `Ci::Maskable`: expanded values use the Base64 alphabet plus `@ : . ~ -`;
/// raw values any non-whitespace; both at least 8 characters.
fn maskable(value: &str, raw: bool) -> bool {
    value.chars().count() >= 8
        && if raw {
            !value.chars().any(char::is_whitespace)
        } else {
            value.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, '_' | '+' | '=' | '/' | '@' | ':' | '.' | '~' | '-')
            })
        }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Key checks (format, length, uniqueness per scope) and masking; problems
/// are accumulated into one validation body, as Rails does.
fn validate(
    project: &Project,
    self_id: Option<u64>,
    var: &Variable,
    problems: &mut Vec<(&'static str, String)>,
) {
    if !valid_key(&var.key) {
        problems.push(("key", "can contain only letters, digits and '_'.".into()));
    }
    if var.key.chars().count() > 255 {
        problems.push(("key", "is too long (maximum is 255 characters)".into()));
    }
    let duplicate = project.variable_keys.get(&var.key).is_some_and(|ids| {
        ids.iter().any(|id| {
            Some(*id) != self_id
                && project
                    .variables
                    .get(id)
                    .is_some_and(|v| v.environment_scope == var.environment_scope)
        })
    });
    if duplicate {
        problems.push(("key", format!("({}) has already been taken", var.key)));
    }
    if var.masked && !maskable(&var.value, var.raw) {
        problems.push(("value", "is invalid".into()));
    }
}

fn problems_to_error(problems: &[(&'static str, String)]) -> ApiError {
    let refs: Vec<(&str, &str)> = problems.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ApiError::validation(&refs)
}

pub(crate) async fn create(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    require_all(&params, &["key", "value"])?;
    let key = params.required_str("key")?.trim().to_string();
    let value = params.required_str("value")?;
    let variable_type = params
        .one_of("variable_type", VARIABLE_TYPES)?
        .unwrap_or_else(|| "env_var".into());
    let protected = params.bool("protected")?.unwrap_or(false);
    let mut masked = params.bool("masked")?.unwrap_or(false);
    let raw = params.bool("raw")?.unwrap_or(false);
    let hidden = params.bool("masked_and_hidden")?.unwrap_or(false);
    if hidden {
        masked = true;
    }
    let scope = params
        .str("environment_scope")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "*".into());
    let description = params.str("description");
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let var = Variable {
        id: 0,
        key,
        value,
        variable_type,
        protected,
        masked,
        hidden,
        raw,
        environment_scope: scope,
        description,
    };
    let mut problems = Vec::new();
    validate(&state.projects[&pid], None, &var, &mut problems);
    if !problems.is_empty() {
        return Err(problems_to_error(&problems));
    }
    let var = Variable {
        id: NextIds::take(&mut state.next_id.variable),
        ..var
    };
    let body = var.to_json();
    let project = state.projects.get_mut(&pid).expect("found above");
    project
        .variable_keys
        .entry(var.key.clone())
        .or_default()
        .push(var.id);
    project.variables.insert(var.id, var);
    Ok(json(StatusCode::CREATED, body))
}

pub(crate) async fn update(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, key)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    let variable_type = params.one_of("variable_type", VARIABLE_TYPES)?;
    let protected = params.bool("protected")?;
    let masked = params.bool("masked")?;
    let raw = params.bool("raw")?;
    let masked_and_hidden = params.bool("masked_and_hidden")?;
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let project = &state.projects[&pid];
    let vid = find_variable(project, &key, &params)?;
    let old = project.variables[&vid].clone();
    let mut var = old.clone();
    if let Some(v) = params.str("value") {
        var.value = v;
    }
    if let Some(v) = variable_type {
        var.variable_type = v;
    }
    if let Some(v) = protected {
        var.protected = v;
    }
    if let Some(v) = masked {
        var.masked = v;
    }
    if let Some(v) = raw {
        var.raw = v;
    }
    if masked_and_hidden == Some(true) {
        var.hidden = true;
        var.masked = true;
    }
    if let Some(scope) = params.str("environment_scope").filter(|s| !s.is_empty()) {
        var.environment_scope = scope;
    }
    if params.has("description") {
        var.description = params.str("description");
    }
    // Ci::HiddenVariable#validate_masked_and_hidden_on_update
    let masked_changed = var.masked != old.masked;
    let hidden_changed = var.hidden != old.hidden;
    if hidden_changed || (masked_changed && var.hidden) {
        let message = if hidden_changed {
            "Only new variables can be set as masked and hidden."
        } else {
            "The visibility setting cannot be changed for masked and hidden variables."
        };
        return Err(ApiError::validation(&[("base", message)]));
    }
    let mut problems = Vec::new();
    validate(project, Some(vid), &var, &mut problems);
    if !problems.is_empty() {
        return Err(problems_to_error(&problems));
    }
    let body = var.to_json();
    state
        .projects
        .get_mut(&pid)
        .expect("found above")
        .variables
        .insert(vid, var);
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn delete(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, key)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let vid = find_variable(&state.projects[&pid], &key, &params)?;
    let project = state.projects.get_mut(&pid).expect("found above");
    project.variables.remove(&vid);
    if let Some(ids) = project.variable_keys.get_mut(&key) {
        ids.retain(|i| *i != vid);
        if ids.is_empty() {
            project.variable_keys.remove(&key);
        }
    }
    Ok(no_content())
}
