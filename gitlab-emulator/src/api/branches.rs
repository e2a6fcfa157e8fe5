//! `/projects/:id/repository/branches`: list, get and create branches of the
//! imaginary repository (names only, no commits), so clients can check that a
//! branch exists and set `default_branch` to it.

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::{AppState, json, no_content, paged, project_with_access};
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{Project, access};
use crate::pagination::{ListKind, Page, paginate, parse};
use crate::params::{Params, require_all};

/// Whether `name` matches a protected-branch pattern (`*` matches any run).
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn branch_json(project: &Project, name: &str, base_url: &str, path: &str) -> Value {
    let protected = project
        .protected_branches
        .iter()
        .any(|b| wildcard_match(&b.name, name));
    json!({
        "name": name,
        "commit": { "id": "0000000000000000000000000000000000000000", "short_id": "00000000", "title": "Initial commit", "message": "Initial commit" },
        "merged": false,
        "protected": protected,
        "developers_can_push": false,
        "developers_can_merge": false,
        "can_push": true,
        "default": project.default_branch.as_deref() == Some(name),
        "web_url": format!("{base_url}/{path}/-/tree/{name}"),
    })
}

pub(crate) async fn list(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let request = parse(&params, ListKind::PLAIN, false)?;
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::GUEST)?;
    let project = &state.projects[&pid];
    let path = state.path_with_namespace(project);
    let mut names: Vec<&String> = project.branches.iter().collect();
    names.sort();
    let total = names.len();
    let page = paginate(
        request,
        &app.base_url,
        &uri,
        names.into_iter(),
        total,
        |_| 0,
    );
    let items = page
        .items
        .iter()
        .map(|n| branch_json(project, n, &app.base_url, &path))
        .collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

pub(crate) async fn get_one(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, branch)): Path<(String, String)>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::GUEST)?;
    let project = &state.projects[&pid];
    if !project.branches.contains(&branch) {
        return Err(ApiError::not_found("Branch"));
    }
    let path = state.path_with_namespace(project);
    Ok(json(
        StatusCode::OK,
        branch_json(project, &branch, &app.base_url, &path),
    ))
}

pub(crate) async fn create(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    require_all(&params, &["branch", "ref"])?;
    let branch = params.required_str("branch")?;
    let reference = params.required_str("ref")?;
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::DEVELOPER)?;
    // `Branches::CreateService#execute`: an empty repository first gets a
    // README committed to `default_branch_or_main`; that first push makes it
    // the default branch and protects it (`Projects::ProtectDefaultBranchService`,
    // unless a rule already covers it).
    if state.projects[&pid].branches.is_empty() {
        let default = state.projects[&pid].default_branch_or_main().to_string();
        let covered = state.projects[&pid]
            .protected_branches
            .iter()
            .any(|b| wildcard_match(&b.name, &default));
        let protection =
            (!covered).then(|| super::projects::default_protection(&mut state, &default));
        let project = state.projects.get_mut(&pid).expect("found above");
        project.branches.push(default.clone());
        project.default_branch = Some(default);
        project.protected_branches.extend(protection);
        tracing::debug!(
            project_id = pid,
            "Committed a README to the empty repository"
        );
    }
    let project = state.projects.get_mut(&pid).expect("found above");
    if project.branches.contains(&branch) {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "Branch already exists",
        ));
    }
    if !project.branches.contains(&reference) {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            format!("Failed to create branch '{branch}': invalid reference name '{reference}'"),
        ));
    }
    project.branches.push(branch.clone());
    let project = &state.projects[&pid];
    let path = state.path_with_namespace(project);
    Ok(json(
        StatusCode::CREATED,
        branch_json(project, &branch, &app.base_url, &path),
    ))
}

/// `DELETE /projects/:id/repository/branches/:branch` (`authorize_push_project`,
/// `find_branch!`, then `Branches::DeleteService`): 204; 404 `Branch Not Found`
/// for an unknown branch; the default branch and protected branches are refused
/// by the pre-receive checks (`Gitlab::Checks::BranchCheck`), which the service
/// turns into a 400 with the check's message.
pub(crate) async fn delete(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, branch)): Path<(String, String)>,
) -> ApiResult<Response> {
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::DEVELOPER)?;
    let project = state.projects.get_mut(&pid).expect("found above");
    let Some(pos) = project.branches.iter().position(|b| *b == branch) else {
        return Err(ApiError::not_found("Branch"));
    };
    if project.default_branch.as_deref() == Some(branch.as_str()) {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "The default branch of a project cannot be deleted.",
        ));
    }
    if project
        .protected_branches
        .iter()
        .any(|p| wildcard_match(&p.name, &branch))
    {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "You can only delete protected branches using the web interface.",
        ));
    }
    project.branches.remove(pos);
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("release/*", "release/1.0"));
        assert!(wildcard_match("*-stable", "13-stable"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("release/*", "main"));
        assert!(wildcard_match("main", "main"));
    }
}
