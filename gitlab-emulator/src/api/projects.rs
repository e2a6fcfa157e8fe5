//! `/projects`: list (filters, offset and keyset pagination), get by id or
//! URL-encoded path, create (with default-branch auto-protection when the
//! repository is initialised), update, and delayed (soft) delete with
//! `permanently_remove`.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::namespaces::valid_path;
use super::{AppState, current, json, paged, project_with_access};
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{
    FEATURE_PAIRS, Member, NamespaceKind, PROJECT_BOOL_SETTINGS, PROJECT_MORE_SETTINGS,
    PROJECT_STRING_SETTINGS, Project, ProtectedBranch, RefAccess, SettingKind, User, access,
};
use crate::pagination::{ListKind, Page, paginate, parse};
use crate::params::Params;
use crate::state::{NextIds, State};
use crate::time::{date_in_days, now_iso};

const VISIBILITIES: &[&str] = &["private", "internal", "public"];

pub(crate) async fn list(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    uri: Uri,
    params: Params,
) -> ApiResult<Response> {
    let request = parse(&params, ListKind::PROJECTS, true)?;
    let desc = crate::pagination::sort_desc(&params, true)?;
    let order_by = params
        .one_of(
            "order_by",
            &[
                "id",
                "name",
                "path",
                "created_at",
                "updated_at",
                "last_activity_at",
                "similarity",
                "star_count",
                "storage_size",
                "repository_size",
            ],
        )?
        .unwrap_or_else(|| "created_at".into());
    let search = params.str("search").map(|s| s.to_lowercase());
    let search_namespaces = params.bool("search_namespaces")?.unwrap_or(false);
    let owned = params.bool("owned")?.unwrap_or(false);
    let membership = params.bool("membership")?.unwrap_or(false);
    let archived = params.bool("archived")?;
    let visibility = params.one_of("visibility", VISIBILITIES)?;
    let id_after = params.int("id_after")?;
    let id_before = params.int("id_before")?;
    let min_access = params.int("min_access_level")?;
    // `updated_before` / `updated_after` (Grape `DateTime`): `UpdatedAtFilter`
    // in `ProjectsFinder` (`updated_at <=` / `>=`, nothing when before <
    // after). `API::Projects#validate_updated_at_order_and_filter!` refuses
    // them unless `order_by=updated_at` (the declared `order_by` defaults to
    // `created_at`, so leaving it out is refused too).
    let mut updated_bounds = [None, None];
    for (slot, key) in ["updated_after", "updated_before"].iter().enumerate() {
        if let Some(raw) = params.str(key) {
            let (iso, _) = crate::time::parse_datetime(&raw)
                .ok_or_else(|| ApiError::bad_param(format!("{key} is invalid")))?;
            updated_bounds[slot] = Some(iso);
        }
    }
    let [updated_after, updated_before] = updated_bounds;
    if (updated_after.is_some() || updated_before.is_some()) && order_by != "updated_at" {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "400 Bad request - `updated_at` filter and `updated_at` sorting must be paired",
        ));
    }
    let empty_range = matches!((&updated_after, &updated_before), (Some(a), Some(b)) if b < a);

    let state = app.state.lock();
    let user = current(&state, &auth)?;
    let id_range = (
        id_after.map_or(std::ops::Bound::Unbounded, |a| {
            std::ops::Bound::Excluded(a.max(0) as u64)
        }),
        id_before.map_or(std::ops::Bound::Unbounded, |b| {
            std::ops::Bound::Excluded(b.max(0) as u64)
        }),
    );
    if empty_range || matches!((id_after, id_before), (Some(a), Some(b)) if a >= b) {
        return Ok(paged(paginate(
            request,
            &app.base_url,
            &uri,
            std::iter::empty::<Value>(),
            0,
            |_| 0,
        )));
    }
    let mut list: Vec<&Project> = state
        .projects
        .range(id_range)
        .map(|(_, p)| p)
        .filter(|p| {
            if !state.can_read_project(user, p) {
                return false;
            }
            let level = state.project_access(user, p);
            (!owned || state.owns_namespace(user.id, p.namespace_id))
                && (!membership || state.membership_level(user.id, p) > access::NO_ACCESS)
                && min_access.is_none_or(|m| level >= m)
                && archived.is_none_or(|a| p.archived == a)
                && visibility.as_ref().is_none_or(|v| &p.visibility == v)
                && updated_after.as_ref().is_none_or(|a| p.updated_at >= *a)
                && updated_before.as_ref().is_none_or(|b| p.updated_at <= *b)
                && search.as_ref().is_none_or(|s| {
                    p.name.to_lowercase().contains(s)
                        || p.path.to_lowercase().contains(s)
                        || (search_namespaces
                            && state.path_with_namespace(p).to_lowercase().contains(s))
                })
        })
        .collect();
    match order_by.as_str() {
        "name" => list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
        "path" => list.sort_by(|a, b| a.path.cmp(&b.path).then(a.id.cmp(&b.id))),
        // Timestamps share one format (`…T12:00:00.123Z`), so text order is time order.
        "updated_at" => list.sort_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.id.cmp(&b.id))),
        "last_activity_at" => list.sort_by(|a, b| {
            a.last_activity_at
                .cmp(&b.last_activity_at)
                .then(a.id.cmp(&b.id))
        }),
        _ => {}
    }
    if desc {
        list.reverse();
    }
    let total = list.len();
    let page = paginate(request, &app.base_url, &uri, list.into_iter(), total, |p| {
        p.id
    });
    let items = page
        .items
        .iter()
        .map(|p| state.project_json(p, &app.base_url, None))
        .collect();
    Ok(paged(Page {
        items,
        headers: page.headers,
    }))
}

pub(crate) async fn get_one(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::NO_ACCESS)?;
    let user = current(&state, &auth)?;
    Ok(json(
        StatusCode::OK,
        state.project_json(&state.projects[&pid], &app.base_url, Some(user)),
    ))
}

/// `Gitlab::Regex.project_name_regex`, simplified.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphanumeric() || first == '_' || !first.is_ascii())
        && name.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, '_' | '.' | '+' | '-' | ' ') || !c.is_ascii()
        })
}

const NAME_FORMAT: &str = "can contain only letters, digits, emoji, '_', '.', '+', dashes, or spaces. It must start with a letter, digit, emoji, or '_'.";
const PATH_FORMAT: &str = "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'";

/// `name.parameterize`: lower-case, runs of other characters become `-`.
fn parameterize(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Name and path validation against the namespace (`render_validation_error!` body).
fn check_name_path(
    state: &State,
    namespace_id: u64,
    self_id: Option<u64>,
    name: &str,
    path: &str,
) -> ApiResult<()> {
    let mut problems: Vec<(&str, &str)> = Vec::new();
    let ns_path = &state.namespaces[&namespace_id].full_path;
    if !valid_name(name) {
        problems.push(("name", NAME_FORMAT));
    }
    if !valid_path(path) {
        problems.push(("path", PATH_FORMAT));
    }
    let other = |found: Option<&u64>| found.is_some_and(|id| Some(*id) != self_id);
    let name_taken = other(
        state
            .idx
            .project_name
            .get(&(namespace_id, name.to_lowercase())),
    );
    let full = format!("{ns_path}/{path}").to_lowercase();
    let path_taken =
        other(state.idx.project_path.get(&full)) || state.idx.namespace_path.contains_key(&full);
    if name_taken {
        problems.push(("name", "has already been taken"));
    }
    if path_taken {
        problems.push(("path", "has already been taken"));
    }
    if name_taken {
        problems.push(("project_namespace.name", "has already been taken"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(&problems))
    }
}

/// `ProjectsHelpers.update_params_at_least_one_of` (CE), in its order: the
/// Grape `at_least_one_of` of `PUT /projects/:id`.
const UPDATE_AT_LEAST_ONE_OF: &[&str] = &[
    "allow_merge_on_skipped_pipeline",
    "analytics_access_level",
    "autoclose_referenced_issues",
    "auto_devops_enabled",
    "auto_devops_deploy_strategy",
    "auto_cancel_pending_pipelines",
    "build_git_strategy",
    "build_timeout",
    "builds_access_level",
    "ci_config_path",
    "ci_default_git_depth",
    "ci_allow_fork_pipelines_to_run_in_parent_project",
    "ci_id_token_sub_claim_components",
    "ci_forward_deployment_enabled",
    "ci_forward_deployment_rollback_allowed",
    "ci_separated_caches",
    "container_registry_access_level",
    "container_expiration_policy_attributes",
    "default_branch",
    "description",
    "emails_disabled",
    "emails_enabled",
    "forking_access_level",
    "issues_access_level",
    "lfs_enabled",
    "merge_pipelines_enabled",
    "merge_requests_access_level",
    "merge_requests_template",
    "merge_trains_enabled",
    "merge_method",
    "merge_request_title_regex",
    "merge_request_title_regex_description",
    "name",
    "only_allow_merge_if_all_discussions_are_resolved",
    "only_allow_merge_if_pipeline_succeeds",
    "package_registry_access_level",
    "pages_access_level",
    "path",
    "printing_merge_request_link_enabled",
    "public_builds",
    "public_jobs",
    "remove_source_branch_after_merge",
    "repository_access_level",
    "request_access_enabled",
    "resolve_outdated_diff_discussions",
    "restrict_user_defined_variables",
    "show_diff_preview_in_email",
    "security_and_compliance_access_level",
    "squash_option",
    "shared_runners_enabled",
    "group_runners_enabled",
    "resource_group_default_process_mode",
    "snippets_access_level",
    "tag_list",
    "topics",
    "visibility",
    "wiki_access_level",
    "avatar",
    "suggestion_commit_message",
    "merge_commit_template",
    "squash_commit_template",
    "issue_branch_template",
    "repository_storage",
    "packages_enabled",
    "service_desk_enabled",
    "keep_latest_artifact",
    "mr_default_target_self",
    "enforce_auth_checks_on_uploads",
    "releases_access_level",
    "environments_access_level",
    "feature_flags_access_level",
    "infrastructure_access_level",
    "monitor_access_level",
    "model_experiments_access_level",
    "model_registry_access_level",
    "warn_about_potentially_unwanted_characters",
    "ci_pipeline_variables_minimum_override_role",
    "ci_push_repository_for_job_token_allowed",
    "ci_delete_pipelines_in_seconds",
    "max_artifacts_size",
    "issues_enabled",
    "jobs_enabled",
    "merge_requests_enabled",
    "wiki_enabled",
    "snippets_enabled",
    "container_registry_enabled",
];

/// Reads the generic settings and topics from `params` into `settings`
/// (`update`: also the update-only `optional_update_params_ce`).
fn apply_settings(
    settings: &mut BTreeMap<String, Value>,
    topics: &mut Vec<String>,
    params: &Params,
    update: bool,
) -> ApiResult<()> {
    if params.has("avatar") {
        // A `WorkhorseFile`: only an uploaded file passes Grape's type check.
        return Err(ApiError::bad_param("avatar is invalid"));
    }
    // Deprecated aliases (`translate_params_for_compatibility`).
    if let Some(v) = params.bool("emails_disabled")? {
        settings.insert("emails_enabled".into(), Value::Bool(!v));
    }
    if let Some(v) = params.bool("public_builds")? {
        settings.insert("public_jobs".into(), Value::Bool(v));
    }
    for (name, kind, on_create, _) in PROJECT_MORE_SETTINGS {
        if !update && !on_create {
            continue;
        }
        let value = match kind {
            SettingKind::Bool => params.bool(name)?.map(Value::Bool),
            SettingKind::Int => params.int(name)?.map(|n| json!(n)),
            SettingKind::Text => params.str(name).map(Value::String),
            SettingKind::OneOf(allowed) => params.one_of(name, allowed)?.map(Value::String),
            SettingKind::List => params.has(name).then(|| {
                json!(
                    params
                        .list(name)
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                )
            }),
        };
        if let Some(v) = value {
            settings.insert((*name).to_string(), v);
        }
    }
    if params.has("container_expiration_policy_attributes") {
        let mut policy = match settings.get("container_expiration_policy") {
            Some(Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        for key in ["cadence", "older_than", "name_regex", "name_regex_keep"] {
            let full = format!("container_expiration_policy_attributes[{key}]");
            if let Some(v) = params.str(&full) {
                policy.insert(key.into(), Value::String(v));
            }
        }
        if let Some(v) = params.int("container_expiration_policy_attributes[keep_n]")? {
            policy.insert("keep_n".into(), json!(v));
        }
        if let Some(v) = params.bool("container_expiration_policy_attributes[enabled]")? {
            policy.insert("enabled".into(), Value::Bool(v));
        }
        settings.insert("container_expiration_policy".into(), Value::Object(policy));
    }
    for (name, _) in PROJECT_BOOL_SETTINGS {
        if let Some(v) = params.bool(name)? {
            settings.insert((*name).to_string(), Value::Bool(v));
        }
    }
    // `ProjectFeaturesCompatibility`: the boolean writes the access level
    // (an explicit access level in the same request wins).
    for (flag, level) in FEATURE_PAIRS {
        if let Some(v) = params.bool(flag)? {
            settings.remove(*flag);
            if !params.has(level) {
                let level_value = if v { "enabled" } else { "disabled" };
                settings.insert((*level).to_string(), json!(level_value));
            }
        }
    }
    for (name, allowed, _) in PROJECT_STRING_SETTINGS {
        let value = if allowed.is_empty() {
            params.str(name)
        } else {
            params.one_of(name, allowed)?
        };
        if let Some(v) = value {
            settings.insert((*name).to_string(), Value::String(v));
        }
    }
    if params.has("topics") || params.has("tag_list") {
        let key = if params.has("topics") {
            "topics"
        } else {
            "tag_list"
        };
        *topics = params
            .list(key)
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
    }
    Ok(())
}

/// Creates the automatic protection of the default branch (Maintainers push
/// and merge, no force push), as `default_branch_protection_defaults` does.
pub(crate) fn default_protection(state: &mut State, branch: &str) -> ProtectedBranch {
    let id = NextIds::take(&mut state.next_id.protected_branch);
    let push = RefAccess {
        id: NextIds::take(&mut state.next_id.ref_access),
        access_level: access::MAINTAINER,
        user_id: None,
        group_id: None,
        deploy_key_id: None,
    };
    let merge = RefAccess {
        id: NextIds::take(&mut state.next_id.ref_access),
        ..push.clone()
    };
    ProtectedBranch {
        id,
        name: branch.to_string(),
        push_access_levels: vec![push],
        merge_access_levels: vec![merge],
        allow_force_push: false,
        code_owner_approval_required: false,
    }
}

pub(crate) async fn create(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    params: Params,
) -> ApiResult<Response> {
    let name_param = params.str("name").filter(|s| !s.is_empty());
    let path_param = params.str("path").filter(|s| !s.is_empty());
    if name_param.is_none() && path_param.is_none() {
        return Err(ApiError::bad_param(
            "name, path are missing, at least one parameter must be provided",
        ));
    }
    let visibility = params
        .one_of("visibility", VISIBILITIES)?
        .unwrap_or_else(|| "private".into());
    let initialize = params.bool("initialize_with_readme")?.unwrap_or(false);
    let namespace_param = params.int("namespace_id")?;
    let mut settings = BTreeMap::new();
    let mut topics = Vec::new();
    apply_settings(&mut settings, &mut topics, &params, false)?;

    let mut state = app.state.lock();
    let user: User = current(&state, &auth)?.clone();
    let namespace_id = match namespace_param {
        Some(id) => {
            let id = id as u64;
            if !state.namespaces.contains_key(&id) {
                return Err(ApiError::not_found("Namespace"));
            }
            id
        }
        None => user.namespace_id,
    };
    if !user.is_admin && !state.owns_namespace(user.id, namespace_id) {
        return Err(ApiError::validation(&[("namespace", "is not valid")]));
    }
    let name = name_param
        .clone()
        .unwrap_or_else(|| path_param.clone().unwrap_or_default());
    let path = path_param.unwrap_or_else(|| parameterize(&name));
    check_name_path(&state, namespace_id, None, &name, &path)?;

    let default_branch = params
        .str("default_branch")
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".into());
    let now = now_iso();
    let id = NextIds::take(&mut state.next_id.project);
    let mut project = Project {
        id,
        name: name.clone(),
        path: path.clone(),
        description: params.str("description"),
        namespace_id,
        visibility,
        default_branch: None,
        branches: Vec::new(),
        topics,
        settings,
        created_at: now.clone(),
        updated_at: now.clone(),
        last_activity_at: now.clone(),
        archived: false,
        creator_id: user.id,
        marked_for_deletion_on: None,
        marked_for_deletion_at: None,
        members: Vec::new(),
        protected_branches: Vec::new(),
        variables: BTreeMap::new(),
        variable_keys: Default::default(),
    };
    if initialize {
        project.default_branch = Some(default_branch.clone());
        project.branches.push(default_branch.clone());
        project
            .protected_branches
            .push(default_protection(&mut state, &default_branch));
    }
    let ns = &state.namespaces[&namespace_id];
    if ns.kind == NamespaceKind::User {
        let owner_id = ns.owner_id;
        project.members.push(Member {
            id: NextIds::take(&mut state.next_id.member),
            user_id: owner_id,
            access_level: access::OWNER,
            expires_at: None,
            created_at: now,
            created_by_id: user.id,
            updated_at: None,
        });
    }
    let full = format!("{}/{}", state.namespaces[&namespace_id].full_path, path).to_lowercase();
    state.project_redirects.remove(&full);
    state.idx.project_path.insert(full, id);
    state
        .idx
        .project_name
        .insert((namespace_id, name.to_lowercase()), id);
    state.projects.insert(id, project);
    // `Projects::CreateService`: `project_create`, then the owner's
    // membership (`ProjectMember#post_create_hook`, `user_add_to_team`).
    let event = crate::hooks::project_event(&state, &state.projects[&id], "create", None);
    state.outbox.push(event);
    if let Some(owner) = state.projects[&id].members.first().cloned() {
        let event =
            crate::hooks::member_event(&state, &state.projects[&id], &owner, "user_add_to_team");
        state.outbox.push(event);
    }
    tracing::debug!(project_id = id, path = %path, initialized = initialize, "Created project");
    Ok(json(
        StatusCode::CREATED,
        state.project_json(&state.projects[&id], &app.base_url, None),
    ))
}

pub(crate) async fn update(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    if !UPDATE_AT_LEAST_ONE_OF.iter().any(|k| params.has(k)) {
        return Err(ApiError::bad_param(format!(
            "{} are missing, at least one parameter must be provided",
            UPDATE_AT_LEAST_ONE_OF.join(", ")
        )));
    }
    let visibility = params.one_of("visibility", VISIBILITIES)?;
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::MAINTAINER)?;
    let mut project = state.projects[&pid].clone();
    let before = state.projects[&pid].clone();
    let new_name = params.str("name").unwrap_or_else(|| project.name.clone());
    let new_path = params.str("path").unwrap_or_else(|| project.path.clone());
    if new_name != project.name || new_path != project.path {
        check_name_path(
            &state,
            project.namespace_id,
            Some(pid),
            &new_name,
            &new_path,
        )?;
    }
    if let Some(branch) = params.str("default_branch")
        && project.default_branch.as_deref() != Some(branch.as_str())
    {
        if !project.branches.contains(&branch) {
            return Err(ApiError::message(
                StatusCode::BAD_REQUEST,
                format!(
                    "Could not set the default branch. Do you have a branch named '{branch}' in your repository?"
                ),
            ));
        }
        project.default_branch = Some(branch);
    }
    apply_settings(&mut project.settings, &mut project.topics, &params, true)?;
    if params.has("description") {
        project.description = params.str("description");
    }
    if let Some(v) = visibility {
        project.visibility = v;
    }
    let old_full = state.path_with_namespace(&project).to_lowercase();
    let old_name = project.name.to_lowercase();
    project.name = new_name;
    project.path = new_path;
    // `updated_at` moves only when the record really changed (ActiveRecord
    // skips the UPDATE, and the timestamp, for a no-op save).
    if record_changed(&before, &project) {
        project.updated_at = now_iso();
    }
    let renamed = before.path != project.path;
    let old_pwn = state.path_with_namespace(&before);
    let new_full = state.path_with_namespace(&project).to_lowercase();
    if old_full != new_full {
        // A path change leaves a `RedirectRoute`; a route taking a path
        // deletes any redirect there (`Route#delete_conflicting_redirects`).
        state.project_redirects.remove(&new_full);
        state.project_redirects.insert(old_full.clone(), pid);
    }
    state.idx.project_path.remove(&old_full);
    state.idx.project_path.insert(new_full, pid);
    state
        .idx
        .project_name
        .remove(&(project.namespace_id, old_name));
    state
        .idx
        .project_name
        .insert((project.namespace_id, project.name.to_lowercase()), pid);
    state.projects.insert(pid, project);
    // `Projects::UpdateService#after_update`: a path change runs
    // `AfterRenameService` (`project_rename`), anything else `project_update`
    // (sent for every successful update, changed or not).
    let event = if renamed {
        crate::hooks::project_event(&state, &state.projects[&pid], "rename", Some(&old_pwn))
    } else {
        crate::hooks::project_event(&state, &state.projects[&pid], "update", None)
    };
    state.outbox.push(event);
    let user = current(&state, &auth)?;
    Ok(json(
        StatusCode::OK,
        state.project_json(&state.projects[&pid], &app.base_url, Some(user)),
    ))
}

/// Whether the project's own record differs. Members, protected branches,
/// variables and topics (`project_topics`) are other tables in GitLab, and
/// the default branch and branches live in the repository (`change_head`):
/// none of them moves `projects.updated_at`. The other settings all count,
/// although GitLab keeps some in side tables (`project_feature`,
/// `project_setting`, `project_ci_cd_settings`).
fn record_changed(before: &Project, after: &Project) -> bool {
    let record = |p: &Project| {
        let mut p = p.clone();
        p.members.clear();
        p.protected_branches.clear();
        p.variables.clear();
        p.variable_keys.clear();
        p.topics.clear();
        p.branches.clear();
        p.default_branch = None;
        p.updated_at.clear();
        p.last_activity_at.clear();
        serde_json::to_value(&p).unwrap_or(Value::Null)
    };
    record(before) != record(after)
}

pub(crate) async fn delete(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let permanently = params.bool("permanently_remove")?.unwrap_or(false);
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::OWNER)?;
    let full_path = state.path_with_namespace(&state.projects[&pid]);
    let marked = state.projects[&pid].marked_for_deletion_at.is_some();
    if permanently {
        if !marked {
            return Err(ApiError::message(
                StatusCode::BAD_REQUEST,
                "Project must be marked for deletion first.",
            ));
        }
        if params.str("full_path").as_deref() != Some(full_path.as_str()) {
            return Err(ApiError::message(
                StatusCode::BAD_REQUEST,
                "`full_path` is incorrect. You must enter the complete path for the project.",
            ));
        }
        state.remove_project_now(pid);
        tracing::debug!(project_id = pid, "Permanently removed project");
    } else {
        if marked {
            return Err(ApiError::message(
                StatusCode::BAD_REQUEST,
                "Project has been already marked for deletion",
            ));
        }
        let project = state.projects.get_mut(&pid).expect("found above");
        project.marked_for_deletion_at = Some(date_in_days(0));
        project.marked_for_deletion_on = Some(date_in_days(0));
        project.archived = true;
        project.updated_at = now_iso();
        tracing::debug!(project_id = pid, "Marked project for deletion");
    }
    Ok(json(
        StatusCode::ACCEPTED,
        json!({ "message": "202 Accepted" }),
    ))
}

/// `POST /projects/:id/archive` and `/unarchive` (`Projects::UpdateService`
/// with `archived`; Maintainer or above, `:archive_project`): 201 with the
/// project; `project_update` system hook; `updated_at` moves when the flag
/// changes.
async fn set_archived(
    app: &std::sync::Arc<crate::server::App>,
    auth: &AuthUser,
    id: &str,
    archived: bool,
) -> ApiResult<Response> {
    let mut state = app.state.lock();
    let pid = project_with_access(&state, auth, id, access::MAINTAINER)?;
    let project = state.projects.get_mut(&pid).expect("found above");
    if project.archived != archived {
        project.archived = archived;
        project.updated_at = now_iso();
    }
    let event = crate::hooks::project_event(&state, &state.projects[&pid], "update", None);
    state.outbox.push(event);
    let user = current(&state, auth)?;
    Ok(json(
        StatusCode::CREATED,
        state.project_json(&state.projects[&pid], &app.base_url, Some(user)),
    ))
}

pub(crate) async fn archive(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_archived(&app, &auth, &id, true).await
}

pub(crate) async fn unarchive(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_archived(&app, &auth, &id, false).await
}

/// `PUT /projects/:id/transfer` (`lib/api/projects.rb`, `Projects::TransferService`):
/// Owner of the project (`:change_namespace`), `namespace` by id or path;
/// the caller must be able to create projects there. 200 with the project;
/// `project_transfer` system hook with `old_path_with_namespace`. Failures
/// are `render_api_error!("Failed to transfer project #{project.errors.messages}", 400)`
/// with Ruby 3.3's `Hash#inspect` (GitLab 18.4): `new_namespace` "is invalid"
/// when not allowed, else the `TransferError` message.
pub(crate) async fn transfer(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let Some(namespace) = params.str("namespace") else {
        return Err(ApiError::bad_param("namespace is missing"));
    };
    let mut state = app.state.lock();
    let pid = project_with_access(&state, &auth, &id, access::OWNER)?;
    let Some(ns_id) = state.find_namespace_id(&namespace) else {
        return Err(ApiError::not_found("Namespace"));
    };
    let user = current(&state, &auth)?.clone();
    let fail = |reason: &str| {
        ApiError::message(
            StatusCode::BAD_REQUEST,
            format!("Failed to transfer project {{:new_namespace=>[\"{reason}\"]}}"),
        )
    };
    let project = state.projects[&pid].clone();
    if !user.is_admin && !state.owns_namespace(user.id, ns_id) {
        return Err(fail("is invalid"));
    }
    if project.namespace_id == ns_id {
        return Err(fail("Project is already in this namespace."));
    }
    let ns_path = state.namespaces[&ns_id].full_path.clone();
    let new_full = format!("{ns_path}/{}", project.path).to_lowercase();
    if state.idx.project_path.contains_key(&new_full)
        || state
            .idx
            .project_name
            .contains_key(&(ns_id, project.name.to_lowercase()))
    {
        return Err(fail(
            "Project with same name or path in target namespace already exists",
        ));
    }
    let old_pwn = state.path_with_namespace(&project);
    let old_full = old_pwn.to_lowercase();
    state.idx.project_path.remove(&old_full);
    state
        .idx
        .project_name
        .remove(&(project.namespace_id, project.name.to_lowercase()));
    state.project_redirects.remove(&new_full);
    state.project_redirects.insert(old_full, pid);
    state.idx.project_path.insert(new_full, pid);
    state
        .idx
        .project_name
        .insert((ns_id, project.name.to_lowercase()), pid);
    let p = state.projects.get_mut(&pid).expect("found above");
    p.namespace_id = ns_id;
    p.updated_at = now_iso();
    let event =
        crate::hooks::project_event(&state, &state.projects[&pid], "transfer", Some(&old_pwn));
    state.outbox.push(event);
    let user = current(&state, &auth)?;
    Ok(json(
        StatusCode::OK,
        state.project_json(&state.projects[&pid], &app.base_url, Some(user)),
    ))
}
