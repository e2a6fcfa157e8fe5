//! CI jobs (`lib/api/ci/jobs.rb`): `GET /job` for the job whose
//! `CI_JOB_TOKEN` authenticated the request, and a project's job and trace
//! (`authorize_read_builds!`). Jobs are created through the control plane.

use axum::Extension;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AppState, current, int_path, json};
use crate::error::{ApiError, ApiResult};
use crate::middleware::AuthUser;
use crate::model::{Job, access};
use crate::state::State;

pub(crate) async fn current_job(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    // A personal access token authenticates, but names no job.
    let job = auth
        .job_id
        .and_then(|id| state.jobs.get(&id))
        .ok_or_else(|| ApiError::not_found("Job"))?;
    Ok(json(StatusCode::OK, state.job_json(job, &app.base_url)))
}

/// `find_project!` plus `authorize_read_builds!` (`read_build`): Reporter+ on
/// private projects, anyone who sees a public or internal project with public
/// jobs; then `user_project.builds.find(job_id)`.
fn readable_job<'a>(
    state: &'a State,
    auth: &AuthUser,
    id: &str,
    job_id: &str,
) -> ApiResult<&'a Job> {
    let job_id = int_path(job_id, "job_id")?;
    let user = current(state, auth)?;
    let project_id = state
        .find_project_id(id)
        .ok_or_else(|| ApiError::not_found("Project"))?;
    let project = &state.projects[&project_id];
    if !state.can_read_project(user, project) {
        return Err(ApiError::not_found("Project"));
    }
    let public_jobs = project.visibility != "private" && project.setting_bool("public_jobs", true);
    if state.project_access(user, project) < access::REPORTER && !public_jobs {
        return Err(ApiError::forbidden());
    }
    state
        .jobs
        .get(&job_id)
        .filter(|j| j.project_id == project_id)
        .ok_or_else(|| ApiError::message(StatusCode::NOT_FOUND, "404 Not found"))
}

pub(crate) async fn get_one(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, job_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let job = readable_job(&state, &auth, &id, &job_id)?;
    Ok(json(StatusCode::OK, state.job_json(job, &app.base_url)))
}

pub(crate) async fn trace(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
    Path((id, job_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let job = readable_job(&state, &auth, &id, &job_id)?;
    let mut resp = (StatusCode::OK, job.trace.clone()).into_response();
    let headers = resp.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    if let Ok(v) = HeaderValue::from_str(&format!("infile; filename=\"{}.log\"", job.id)) {
        headers.insert("content-disposition", v);
    }
    Ok(resp)
}
