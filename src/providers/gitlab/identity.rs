//! Who is talking to GitLab, asked of GitLab itself: the preflight check of the token before
//! anything is read (`GET /version`, `GET /user`, `GET /personal_access_tokens/self`), the CI
//! job a run is in (`GET /job` with the job token), and the lookups approval proofs need
//! (`GET /keys?fingerprint=`, `GET /projects/:id/jobs/:id` and its trace).
//!
//! Preflight fails fast and once: one line naming the URL and the cause, never one error per
//! resource.

use gitlab::api::{self, AsyncQuery};
use http::StatusCode;
use serde_json::Value as Json;

use super::client::{Auth, ClientOptions, GitlabClient, TransportError};
use super::{ApiErr, is_not_found};
use crate::approve::{CiJob, Directory, GitlabUser};
use crate::secret::SecretValue;

/// What the token may do, as GitLab says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: GitlabUser,
    pub is_admin: bool,
    /// The token's scopes, when GitLab tells (personal access tokens).
    pub scopes: Option<Vec<String>>,
    pub version: String,
}

/// What a run needs of its token.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    /// Writes (apply, the daemon): the `api` scope.
    pub write: bool,
}

/// Checks the URL and the token before anything else is read. The error is one line.
pub async fn preflight(client: &GitlabClient, needs: Needs) -> Result<Identity, String> {
    let base = base_url(client);
    let ends_in_api = base.trim_end_matches('/').ends_with("/api/v4");
    let unreachable = |e: TransportError| match e {
        TransportError::Connection { reason, .. } => {
            format!("cannot reach GitLab at {base}: {reason} (check GITLAB_URL)")
        }
        other @ TransportError::OverBudget { .. } => {
            format!("GitLab at {base} asks this client to slow down: {other}")
        }
        other => format!("cannot reach GitLab at {base}: {other}"),
    };
    let (status, body) = client.get_raw("version").await.map_err(unreachable)?;
    let version = serde_json::from_slice::<Json>(&body)
        .ok()
        .and_then(|j| j["version"].as_str().map(String::from));
    match (status, version) {
        (StatusCode::OK, Some(v)) => {
            let (status, body) = client.get_raw("user").await.map_err(unreachable)?;
            let user: Json = match status {
                StatusCode::OK => body_user(&body),
                StatusCode::UNAUTHORIZED => return Err(rejected(&base)),
                StatusCode::FORBIDDEN => {
                    return Err(format!(
                        "GitLab at {base} refused the token in GITLAB_TOKEN (403 Forbidden: {}): the token needs the `api` or `read_api` scope and an active user",
                        message(&body)
                    ));
                }
                other => {
                    return Err(format!(
                        "GitLab at {base} answered GET /api/v4/user with {other}: try again later"
                    ));
                }
            };
            let (Some(id), Some(username)) = (user["id"].as_u64(), user["username"].as_str())
            else {
                return Err(format!(
                    "GitLab at {base} did not say who owns the token (GET /api/v4/user)"
                ));
            };
            // GitLab shows `is_admin` only to administrators: absent means "not an admin".
            let is_admin = user["is_admin"].as_bool().unwrap_or(false);
            let user = GitlabUser {
                id,
                username: username.to_string(),
            };
            if !is_admin {
                return Err(format!(
                    "the token in GITLAB_TOKEN belongs to `{}`, who is not a GitLab administrator: reconcile reads every user, project, member and variable it manages, which needs an administrator's token (without one, projects it cannot see would look absent)",
                    user.username
                ));
            }
            let scopes = token_scopes(client).await;
            if let Some(scopes) = &scopes {
                let has = |s: &str| scopes.iter().any(|x| x == s);
                if needs.write && !has("api") {
                    return Err(format!(
                        "the token in GITLAB_TOKEN (of `{}`) has the scope(s) {}; writing needs the `api` scope (a `read_api` token can only plan)",
                        user.username,
                        scopes.join(", ")
                    ));
                }
                if !has("api") && !has("read_api") {
                    return Err(format!(
                        "the token in GITLAB_TOKEN (of `{}`) has the scope(s) {}; reading needs `read_api` (or `api`)",
                        user.username,
                        scopes.join(", ")
                    ));
                }
            }
            Ok(Identity {
                user,
                is_admin,
                scopes,
                version: v,
            })
        }
        (StatusCode::UNAUTHORIZED, _) => Err(rejected(&base)),
        (status, _) if ends_in_api => Err(format!(
            "GITLAB_URL `{base}` ends in /api/v4 (GET {}version gave {status}): give GitLab's base URL, e.g. `{}`; reconcile adds /api/v4 itself",
            client.api_url(),
            base.trim_end_matches('/').trim_end_matches("/api/v4")
        )),
        (status, _) => Err(format!(
            "{base} does not answer as GitLab (GET {}version gave {status} without a GitLab version): check GITLAB_URL",
            client.api_url()
        )),
    }
}

fn body_user(body: &[u8]) -> Json {
    serde_json::from_slice(body).unwrap_or(Json::Null)
}

fn rejected(base: &str) -> String {
    format!(
        "GitLab at {base} rejected the token in GITLAB_TOKEN (401 Unauthorized): check that it is valid, not expired and not revoked"
    )
}

fn message(body: &[u8]) -> String {
    let j: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
    j["message"]
        .as_str()
        .or_else(|| j["error_description"].as_str())
        .or_else(|| j["error"].as_str())
        .unwrap_or("no message")
        .to_string()
}

/// `GET /personal_access_tokens/self`: the scopes of a personal access token; `None` when
/// GitLab does not tell (another kind of token, or an older GitLab).
async fn token_scopes(client: &GitlabClient) -> Option<Vec<String>> {
    let (status, body) = client.get_raw("personal_access_tokens/self").await.ok()?;
    if status != StatusCode::OK {
        return None;
    }
    let j: Json = serde_json::from_slice(&body).ok()?;
    Some(
        j["scopes"]
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
    )
}

/// The base URL (without `/api/v4/`) of a client, for messages.
fn base_url(client: &GitlabClient) -> String {
    let api = client.api_url().as_str();
    api.strip_suffix("api/v4/")
        .unwrap_or(api)
        .trim_end_matches('/')
        .to_string()
}

/// The CI job this process runs in (`GET /job` with `CI_JOB_TOKEN`): its id, pipeline,
/// project, and the user who started it.
pub async fn current_job(url: &str, job_token: SecretValue) -> Result<CiJob, String> {
    let client = GitlabClient::with_auth(url, Auth::JobToken(job_token), ClientOptions::default())
        .map_err(|e| e.to_string())?;
    let (status, body) = client.get_raw("job").await.map_err(|e| {
        format!(
            "cannot ask GitLab at {} which CI job this is: {e}",
            base_url(&client)
        )
    })?;
    if status != StatusCode::OK {
        return Err(format!(
            "GitLab at {} did not accept CI_JOB_TOKEN (GET /api/v4/job gave {status}); the job token is valid only while its job runs",
            base_url(&client)
        ));
    }
    let j: Json = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    parse_job(&j).ok_or_else(|| "GitLab's answer to GET /api/v4/job is not a job".to_string())
}

/// Who owns `token` (`GET /user`), for the daemon's approval endpoint.
pub async fn token_owner(url: &str, token: SecretValue) -> Result<Option<GitlabUser>, String> {
    let options = ClientOptions {
        attempts: 2,
        ..ClientOptions::default()
    };
    let client =
        GitlabClient::with_auth(url, Auth::Token(token), options).map_err(|e| e.to_string())?;
    let (status, body) = client.get_raw("user").await.map_err(|e| e.to_string())?;
    match status {
        StatusCode::OK => {
            let j: Json = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            Ok(j["id"]
                .as_u64()
                .zip(j["username"].as_str())
                .map(|(id, u)| GitlabUser {
                    id,
                    username: u.to_string(),
                }))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(None),
        other => Err(format!("GitLab answered GET /api/v4/user with {other}")),
    }
}

fn parse_job(j: &Json) -> Option<CiJob> {
    Some(CiJob {
        id: j["id"].as_u64()?,
        status: j["status"].as_str()?.to_string(),
        user: GitlabUser {
            id: j["user"]["id"].as_u64()?,
            username: j["user"]["username"].as_str()?.to_string(),
        },
        pipeline_id: j["pipeline"]["id"].as_u64()?,
        project_id: j["pipeline"]["project_id"]
            .as_u64()
            .or_else(|| j["project"]["id"].as_u64())?,
    })
}

/// The lookups approval proofs need, over the REST API with the run's (admin) token.
#[async_trait::async_trait]
impl Directory for GitlabClient {
    async fn key_owner(&self, fingerprint: &str) -> Result<Option<GitlabUser>, String> {
        let endpoint = KeyByFingerprint {
            fingerprint: fingerprint.to_string(),
        };
        let found: Result<Json, ApiErr> = endpoint.query_async(self).await;
        match found {
            Ok(j) => Ok(j["user"]["id"]
                .as_u64()
                .zip(j["user"]["username"].as_str())
                .map(|(id, u)| GitlabUser {
                    id,
                    username: u.to_string(),
                })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(format!(
                "cannot look up the SSH key {fingerprint} in GitLab: {e}"
            )),
        }
    }

    async fn job(&self, project_id: u64, job_id: u64) -> Result<Option<CiJob>, String> {
        let endpoint = api::projects::jobs::Job::builder()
            .project(project_id)
            .job(job_id)
            .build()
            .expect("valid endpoint");
        let found: Result<Json, ApiErr> = endpoint.query_async(self).await;
        match found {
            Ok(j) => Ok(parse_job(&j)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(format!("cannot read CI job {job_id} from GitLab: {e}")),
        }
    }

    async fn job_trace(&self, project_id: u64, job_id: u64) -> Result<String, String> {
        let endpoint = api::projects::jobs::JobTrace::builder()
            .project(project_id)
            .job(job_id)
            .build()
            .expect("valid endpoint");
        let bytes = api::raw(endpoint)
            .query_async(self)
            .await
            .map_err(|e| format!("cannot read the log of CI job {job_id} from GitLab: {e}"))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// `GET /keys?fingerprint=…` (administrators): the key and the user who registered it.
struct KeyByFingerprint {
    fingerprint: String,
}

impl gitlab::api::Endpoint for KeyByFingerprint {
    fn method(&self) -> http::Method {
        http::Method::GET
    }

    fn endpoint(&self) -> std::borrow::Cow<'static, str> {
        "keys".into()
    }

    fn parameters(&self) -> gitlab::api::QueryParams<'_> {
        let mut params = gitlab::api::QueryParams::default();
        params.push("fingerprint", &self.fingerprint);
        params
    }
}

/// `GET /users/:id/keys`: a user's public SSH keys (no token needed), to check at approval
/// time that a signing key is registered to the approver.
pub async fn user_key_fingerprints(
    client: &GitlabClient,
    username: &str,
) -> Result<Vec<String>, String> {
    let endpoint = gitlab::api::users::Users::builder()
        .username(username)
        .build()
        .expect("valid endpoint");
    let users: Vec<Json> = endpoint
        .query_async(client)
        .await
        .map_err(|e| format!("cannot look up `{username}` in GitLab: {e}"))?;
    let Some(id) = users
        .iter()
        .find(|u| {
            u["username"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(username))
        })
        .and_then(|u| u["id"].as_u64())
    else {
        return Err(format!("GitLab has no user `{username}`"));
    };
    let keys = UserKeys { id };
    let list: Vec<Json> = api::paged(keys, api::Pagination::All)
        .query_async(client)
        .await
        .map_err(|e| format!("cannot read the SSH keys of `{username}` from GitLab: {e}"))?;
    Ok(list
        .iter()
        .filter_map(|k| k["key"].as_str())
        .filter_map(crate::approve::proof::public_key_fingerprint)
        .collect())
}

struct UserKeys {
    id: u64,
}

impl gitlab::api::Endpoint for UserKeys {
    fn method(&self) -> http::Method {
        http::Method::GET
    }

    fn endpoint(&self) -> std::borrow::Cow<'static, str> {
        format!("users/{}/keys", self.id).into()
    }
}

impl gitlab::api::Pageable for UserKeys {}
