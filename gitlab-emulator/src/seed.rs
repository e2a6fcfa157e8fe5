//! Test fixtures that GitLab's API cannot create directly: personal access
//! tokens with chosen secrets, and CI jobs (normally made by pipelines and
//! runners) with their status and trace. Shared by the control plane
//! (`/-/emulator/tokens`, `/-/emulator/jobs`) and the in-process
//! [`crate::Emulator`] methods; answers are the API entities plus the secret.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::model::{AccessToken, JOB_STATUSES, Job, Pipeline};
use crate::server::App;
use crate::state::{NextIds, State};
use crate::time::{is_valid_date, now_iso, now_ms, today};

/// Why a fixture request was refused: the control plane's status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeedError {
    pub status: StatusCode,
    pub message: String,
}

fn bad(message: impl Into<String>) -> SeedError {
    SeedError {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

fn not_found(message: impl Into<String>) -> SeedError {
    SeedError {
        status: StatusCode::NOT_FOUND,
        message: message.into(),
    }
}

const TOKEN_KEYS: &[&str] = &[
    "user",
    "scopes",
    "token",
    "expires_at",
    "name",
    "description",
    "revoked",
];
const JOB_KEYS: &[&str] = &[
    "project",
    "user",
    "name",
    "stage",
    "status",
    "ref",
    "pipeline_id",
    "trace",
    "failure_reason",
];
const JOB_UPDATE_KEYS: &[&str] = &["status", "trace", "failure_reason"];

fn object<'a>(
    spec: &'a Value,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, SeedError> {
    let obj = spec
        .as_object()
        .ok_or_else(|| bad("expected a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown key {unknown:?} (expected one of: {})",
            allowed.join(", ")
        )));
    }
    Ok(obj)
}

fn opt_str(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, SeedError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{key} must be a string"))),
    }
}

/// `POST /-/emulator/tokens`: a personal access token for `user` (username,
/// required) with `scopes` (array or comma-separated, default `["api"]`), an
/// optional explicit `token` secret (default `glpat-…`), `expires_at`
/// (`YYYY-MM-DD`, default none), `name` (default `emulator`), `description`
/// and `revoked`. Answers the `PersonalAccessTokenWithToken` entity.
pub(crate) fn create_token(app: &App, spec: &Value) -> Result<Value, SeedError> {
    let obj = object(spec, TOKEN_KEYS)?;
    let username = opt_str(obj, "user")?.ok_or_else(|| bad("user is required"))?;
    let scopes: Vec<String> = match obj.get("scopes") {
        None | Some(Value::Null) => vec!["api".into()],
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("scopes must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("scopes must be an array of strings")),
    };
    if scopes.is_empty() {
        return Err(bad("scopes must not be empty"));
    }
    if let Some(unknown) = scopes.iter().find(|s| !crate::scopes::is_known(s)) {
        return Err(bad(format!("unknown scope {unknown:?}")));
    }
    let expires_at = opt_str(obj, "expires_at")?;
    if let Some(d) = &expires_at
        && !is_valid_date(d)
    {
        return Err(bad("expires_at must be a date (YYYY-MM-DD)"));
    }
    let revoked = match obj.get("revoked") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("revoked must be a boolean")),
    };
    let mut state = app.state.lock();
    let user_id = state
        .user_by_username(&username)
        .map(|u| u.id)
        .ok_or_else(|| not_found(format!("user {username:?} not found")))?;
    let secret = match opt_str(obj, "token")? {
        Some(t) if t.is_empty() => return Err(bad("token must not be empty")),
        Some(t) if state.idx.token.contains_key(&t) || state.idx.job_token.contains_key(&t) => {
            return Err(SeedError {
                status: StatusCode::CONFLICT,
                message: "token already exists".into(),
            });
        }
        Some(t) => t,
        None => state.new_secret("glpat-"),
    };
    let id = NextIds::take(&mut state.next_id.token);
    let token = AccessToken {
        id,
        user_id,
        name: opt_str(obj, "name")?.unwrap_or_else(|| "emulator".into()),
        description: opt_str(obj, "description")?,
        token: secret,
        scopes,
        created_at: now_iso(),
        expires_at,
        revoked,
        last_used_at: None,
        last_used_ms: 0,
        configured: false,
    };
    let body = token.to_json_with_token(&today());
    state.insert_token(token);
    tracing::debug!(token_id = id, user = %username, "Created personal access token");
    Ok(body)
}

fn status_of(obj: &serde_json::Map<String, Value>) -> Result<Option<String>, SeedError> {
    let status = opt_str(obj, "status")?;
    if let Some(s) = &status
        && !JOB_STATUSES.contains(&s.as_str())
    {
        return Err(bad(format!(
            "status must be one of: {}",
            JOB_STATUSES.join(", ")
        )));
    }
    Ok(status)
}

/// Moves `job` to `status`, stamping `started_at` / `finished_at` as GitLab does.
fn transition(job: &mut Job, status: &str, now: u64) {
    match status {
        "running" => {
            job.started_at_ms.get_or_insert(now);
            job.finished_at_ms = None;
        }
        "success" | "failed" | "canceled" => {
            if status != "canceled" {
                job.started_at_ms.get_or_insert(now);
            }
            job.finished_at_ms.get_or_insert(now);
        }
        _ => {
            job.started_at_ms = None;
            job.finished_at_ms = None;
        }
    }
    job.status = status.to_string();
}

fn job_answer(state: &State, job: &Job, base_url: &str) -> Value {
    let mut body = state.job_json(job, base_url);
    body["token"] = json!(job.token);
    body
}

/// `POST /-/emulator/jobs`: a job in `project` (id or path, required) for
/// `user` (username, default `root`), with `name`/`stage` (default `test`),
/// `status` (default `running`), `ref` (default the project's default branch
/// or `main`), `pipeline_id` (an existing pipeline of the project, or a new
/// one), `trace` and `failure_reason`. Answers the job entity plus `token`.
pub(crate) fn create_job(app: &App, spec: &Value) -> Result<Value, SeedError> {
    let obj = object(spec, JOB_KEYS)?;
    let project_ref = match obj.get("project") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Err(bad("project (id or path) is required")),
    };
    let status = status_of(obj)?.unwrap_or_else(|| "running".into());
    let pipeline_id = match obj.get("pipeline_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("pipeline_id must be a positive integer"))?,
        ),
    };
    let mut state = app.state.lock();
    let project_id = state
        .find_project_id(&project_ref)
        .ok_or_else(|| not_found(format!("project {project_ref:?} not found")))?;
    let username = opt_str(obj, "user")?.unwrap_or_else(|| "root".into());
    let user_id = state
        .user_by_username(&username)
        .map(|u| u.id)
        .ok_or_else(|| not_found(format!("user {username:?} not found")))?;
    let ref_name = match opt_str(obj, "ref")? {
        Some(r) => r,
        None => state.projects[&project_id]
            .default_branch
            .clone()
            .unwrap_or_else(|| "main".into()),
    };
    let now = now_ms();
    let pipeline_id = match pipeline_id {
        Some(id) if state.pipelines.contains_key(&id) => {
            if state.pipelines[&id].project_id != project_id {
                return Err(bad(format!("pipeline {id} belongs to another project")));
            }
            id
        }
        requested => {
            let id = match requested {
                Some(id) if id > 0 => {
                    state.next_id.pipeline = state.next_id.pipeline.max(id + 1);
                    id
                }
                Some(_) => return Err(bad("pipeline_id must be a positive integer")),
                None => NextIds::take(&mut state.next_id.pipeline),
            };
            let iid = state
                .pipelines
                .values()
                .filter(|p| p.project_id == project_id)
                .map(|p| p.iid)
                .max()
                .unwrap_or(0)
                + 1;
            let sha = sha_for(id, &state.new_secret(""));
            let at = now_iso();
            state.pipelines.insert(
                id,
                Pipeline {
                    id,
                    iid,
                    project_id,
                    sha,
                    ref_name: ref_name.clone(),
                    source: "push".into(),
                    created_at: at.clone(),
                    updated_at: at,
                },
            );
            id
        }
    };
    let id = NextIds::take(&mut state.next_id.job);
    let mut job = Job {
        id,
        project_id,
        pipeline_id,
        user_id: Some(user_id),
        name: opt_str(obj, "name")?.unwrap_or_else(|| "test".into()),
        stage: opt_str(obj, "stage")?.unwrap_or_else(|| "test".into()),
        status: "created".into(),
        ref_name,
        trace: opt_str(obj, "trace")?.unwrap_or_default(),
        token: state.new_secret(crate::middleware::JOB_TOKEN_PREFIX),
        failure_reason: opt_str(obj, "failure_reason")?,
        created_at_ms: now,
        started_at_ms: None,
        finished_at_ms: None,
    };
    transition(&mut job, &status, now);
    state.insert_job(job);
    tracing::debug!(job_id = id, project_id, "Created job");
    Ok(job_answer(&state, &state.jobs[&id], &app.base_url))
}

/// A deterministic-looking 40-hex commit SHA for a pipeline.
fn sha_for(pipeline_id: u64, noise: &str) -> String {
    use md5::Digest;
    let a = md5::Md5::digest(format!("{pipeline_id}:{noise}").as_bytes());
    let b = md5::Md5::digest(noise.as_bytes());
    a.iter()
        .chain(b.iter())
        .take(20)
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// `PUT /-/emulator/jobs/:id`: changes `status` (stamping start and finish
/// times), appends `trace`, sets `failure_reason`. Answers the job entity
/// plus `token`.
pub(crate) fn update_job(app: &App, id: u64, spec: &Value) -> Result<Value, SeedError> {
    let obj = object(spec, JOB_UPDATE_KEYS)?;
    let status = status_of(obj)?;
    let trace = opt_str(obj, "trace")?;
    let failure_reason = opt_str(obj, "failure_reason")?;
    let mut state = app.state.lock();
    let now = now_ms();
    let job = state
        .jobs
        .get_mut(&id)
        .ok_or_else(|| not_found(format!("job {id} not found")))?;
    if let Some(status) = status {
        transition(job, &status, now);
    }
    if let Some(more) = trace {
        job.trace.push_str(&more);
    }
    if failure_reason.is_some() {
        job.failure_reason = failure_reason;
    }
    let pipeline_id = job.pipeline_id;
    if let Some(p) = state.pipelines.get_mut(&pipeline_id) {
        p.updated_at = now_iso();
    }
    Ok(job_answer(&state, &state.jobs[&id], &app.base_url))
}
