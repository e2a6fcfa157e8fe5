//! The layer every `/api/v4` request goes through, in order: counting by route
//! template, injected latency and faults, the per-user rate limit, then
//! authentication as GitLab's `API::APIGuard` / `API::Helpers#current_user`
//! does it: a personal access token (`PRIVATE-TOKEN`, `Authorization: Bearer`,
//! `?private_token=`) that must be neither expired nor revoked, or on `GET
//! /job` a running job's `CI_JOB_TOKEN` (`JOB-TOKEN`, `?job_token=`,
//! `?token=` or `Bearer`); then the blocked-user check, `Sudo`, and the
//! token's scopes against the endpoint's. Handlers receive the authenticated
//! (or impersonated) user as an [`AuthUser`] extension.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::counters::route_template;
use crate::error::ApiError;
use crate::faults::FaultKind;
use crate::model::UserState;
use crate::ratelimit::{add_success_headers, injected_throttle, throttled_response};
use crate::server::{App, ResetConnection};
use crate::time::now_ms;

/// The authenticated caller (the impersonated user under `Sudo`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthUser {
    pub id: u64,
    pub is_admin: bool,
    /// The personal access token that authenticated the request (`None` for
    /// job-token authentication).
    pub token_id: Option<u64>,
    /// The job whose `CI_JOB_TOKEN` authenticated the request.
    pub job_id: Option<u64>,
}

/// `Ci::Build::TOKEN_PREFIX`: such values are never taken for personal access tokens.
pub(crate) const JOB_TOKEN_PREFIX: &str = "glcbt-";

/// The one route that accepts job tokens (`route_setting :authentication, job_token_allowed: true`).
const JOB_TOKEN_ROUTE: &str = "/api/v4/job";

/// How often `last_used_at` is refreshed (`PersonalAccessTokens::LastUsedService`).
const LAST_USED_REFRESH_MS: u64 = 10 * 60 * 1000;

/// The token sent with a request, in GitLab's order of precedence.
pub(crate) fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get("private-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(rest) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(rest.trim().to_string());
        }
    }
    let query = query?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    pairs
        .into_iter()
        .find(|(k, _)| k == "private_token" || k == "access_token")
        .map(|(_, v)| v)
}

/// A job token from `JOB-TOKEN`, `?job_token=` or `?token=`.
fn job_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get("job-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string()).filter(|v| !v.is_empty());
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).unwrap_or_default();
    for key in ["job_token", "token"] {
        if let Some((_, v)) = pairs.iter().find(|(k, v)| k == key && !v.is_empty()) {
            return Some(v.clone());
        }
    }
    None
}

/// The `Sudo` header or `?sudo=` parameter.
fn sudo_identifier(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    if let Some((_, v)) = pairs
        .into_iter()
        .find(|(k, v)| k == "sudo" && !v.is_empty())
    {
        return Some(v);
    }
    headers
        .get("sudo")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// rack-oauth2's `Bearer::Unauthorized` (expired or revoked token): JSON body
/// and a `WWW-Authenticate` challenge.
fn invalid_token(description: &str) -> Response {
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({
            "error": "invalid_token",
            "error_description": description,
        })),
    )
        .into_response();
    let challenge = format!(
        "Bearer realm=\"Protected by OAuth 2.0\", error=\"invalid_token\", error_description=\"{description}\""
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert("www-authenticate", v);
    }
    resp
}

/// rack-oauth2's `Bearer::Forbidden` for `insufficient_scope` (no challenge header).
fn insufficient_scope(scope: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": scope,
        })),
    )
        .into_response()
}

/// Why authentication refused a request.
enum Refusal {
    /// An `{"message": …}` error (401, 403, 404).
    Api(ApiError),
    /// An expired or revoked token (rack-oauth2's `invalid_token`).
    InvalidToken(&'static str),
    /// A token without the scopes the endpoint (or `Sudo`) needs.
    InsufficientScope(String),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Api(e) => e.into_response(),
            Refusal::InvalidToken(description) => invalid_token(description),
            Refusal::InsufficientScope(scope) => insufficient_scope(&scope),
        }
    }
}

/// Who a request authenticates as, before the user checks.
enum Credential {
    Token(u64),
    Job(u64),
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Counting, faults, rate limit and authentication for `/api/v4` routes.
pub(crate) async fn api_layer(
    State(app): State<Arc<App>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let route = match &matched {
        Some(m) => format!("{method} {}", route_template(m.as_str())),
        None => format!("{method} (unknown route)"),
    };
    app.counters.record_request(&route);

    let decision = app.faults.decide();
    if !decision.delay.is_zero() {
        app.counters.record_fault("latency");
        tokio::time::sleep(decision.delay).await;
    }
    let mut write_then_500 = false;
    match decision.fault {
        Some(FaultKind::Reset) => {
            app.counters.record_fault("reset");
            tracing::debug!(route = %route, "Injected connection reset");
            let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            resp.extensions_mut().insert(ResetConnection);
            return resp;
        }
        Some(FaultKind::Error(status)) => {
            app.counters.record_fault("error");
            tracing::debug!(route = %route, status, "Injected server error");
            return server_error(status);
        }
        Some(FaultKind::RateLimited) => {
            app.counters.record_fault("rate_limited");
            let faults = app.faults.current();
            let limit = app
                .config
                .rate_limit
                .as_ref()
                .map_or(600, |r| r.requests_per_minute);
            return injected_throttle(
                limit,
                faults.retry_after_secs.max(1),
                !faults.omit_rate_limit_headers,
            );
        }
        Some(FaultKind::WriteThen500) => write_then_500 = is_write(&method),
        None => {}
    }

    let token = request_token(req.headers(), req.uri().query());
    let mut observation = None;
    if let Some(limit) = &app.config.rate_limit {
        let (name, key) = throttle_discriminator(&app, &req, token.as_deref());
        let seen = app.limiter.check(name, &key, limit);
        if seen.throttled {
            app.counters.record_rate_limited();
            tracing::debug!(route = %route, retry_after = seen.retry_after(), "Rate limited");
            return throttled_response(&seen, limit.headers);
        }
        observation = limit.headers_on_success.then_some(seen);
    }
    // `Gitlab::Middleware::RackAttackHeaders`: wraps everything below it, so
    // authentication errors and handler responses alike get the headers
    // (429s excepted).
    let with_headers = |mut resp: Response| {
        if let Some(seen) = &observation
            && resp.status() != StatusCode::TOO_MANY_REQUESTS
        {
            add_success_headers(&mut resp, seen);
        }
        resp
    };

    let matched_route = matched.as_ref().map_or("", |m| m.as_str());
    let read_request = matches!(method, Method::GET | Method::HEAD);
    let auth = match authenticate(&app, &req, token, matched_route, read_request) {
        Ok(auth) => auth,
        Err(refusal) => {
            app.hooks.drain(&mut app.state.lock());
            return with_headers(refusal.into_response());
        }
    };
    req.extensions_mut().insert(auth);
    let resp = next.run(req).await;
    // Hand the changes' system hook payloads to the delivery workers.
    app.hooks.drain(&mut app.state.lock());
    if write_then_500 {
        app.counters.record_fault("write_then_500");
        tracing::debug!(route = %route, status = resp.status().as_u16(), "Write done, answering 500");
        return with_headers(ApiError::internal().into_response());
    }
    with_headers(resp)
}

/// The throttle and discriminator of a request, as
/// `Gitlab::RackAttack::Request#throttled_identifer` picks them: requests
/// that authenticate (a live personal access token, or a running job's token
/// on `/job`) count against `throttle_authenticated_api` as `user:<id>`, so
/// all tokens of one user share a window; the rest against
/// `throttle_unauthenticated_api` (GitLab keys those by IP; here they share
/// one window).
fn throttle_discriminator(app: &App, req: &Request, token: Option<&str>) -> (&'static str, String) {
    use crate::ratelimit::{THROTTLE_NAME, UNAUTHENTICATED_THROTTLE_NAME};
    let state = app.state.lock();
    let today = crate::time::today();
    let user = token
        .and_then(|t| state.token_by_secret(t))
        .filter(|pat| !pat.revoked && !pat.expired(&today))
        .map(|pat| pat.user_id)
        .or_else(|| {
            let secret = token
                .map(str::to_string)
                .or_else(|| job_token(req.headers(), req.uri().query()))?;
            let job = state.idx.job_token.get(&secret)?;
            state
                .jobs
                .get(job)
                .filter(|j| j.status == "running")
                .and_then(|j| j.user_id)
        });
    match user {
        Some(id) => (THROTTLE_NAME, format!("user:{id}")),
        None => (UNAUTHENTICATED_THROTTLE_NAME, "unauthenticated".into()),
    }
}

/// `find_current_user!`, `sudo!` and `validate_access_token!` in GitLab's order.
fn authenticate(
    app: &App,
    req: &Request,
    token: Option<String>,
    route: &str,
    read_request: bool,
) -> Result<AuthUser, Refusal> {
    let headers = req.headers();
    let query = req.uri().query();
    let job_route = route == JOB_TOKEN_ROUTE;
    let mut state = app.state.lock();
    let now = now_ms();
    state.purge_due_deletes(now);
    let running_job = |state: &crate::state::State, secret: &str| {
        state
            .idx
            .job_token
            .get(secret)
            .copied()
            .filter(|id| state.jobs.get(id).is_some_and(|j| j.status == "running"))
    };
    let bearer_job = job_route
        .then(|| token.as_deref().and_then(|t| running_job(&state, t)))
        .flatten();
    let credential = if let Some(job_id) = bearer_job {
        Credential::Job(job_id)
    } else if let Some(secret) = token.filter(|t| !t.starts_with(JOB_TOKEN_PREFIX)) {
        let Some(pat) = state.token_by_secret(&secret) else {
            return Err(ApiError::unauthorized().into());
        };
        if pat.expired(&crate::time::today()) {
            return Err(Refusal::InvalidToken(
                "Token is expired. You can either do re-authorization or token refresh.",
            ));
        }
        if pat.revoked {
            return Err(Refusal::InvalidToken(
                "Token was revoked. You have to re-authorize from the user.",
            ));
        }
        Credential::Token(pat.id)
    } else if let Some(secret) = job_route.then(|| job_token(headers, query)).flatten() {
        match running_job(&state, &secret) {
            Some(job_id) => Credential::Job(job_id),
            None => return Err(ApiError::unauthorized().into()),
        }
    } else {
        return Err(ApiError::unauthorized().into());
    };
    let (user_id, token_id, job_id) = match credential {
        Credential::Token(id) => (state.access_tokens[&id].user_id, Some(id), None),
        Credential::Job(id) => match state.jobs[&id].user_id {
            Some(user_id) => (user_id, None, Some(id)),
            None => return Err(ApiError::unauthorized().into()),
        },
    };
    let Some(user) = state.users.get(&user_id) else {
        return Err(ApiError::unauthorized().into());
    };
    match user.state {
        UserState::Active => {}
        UserState::Blocked => {
            return Err(ApiError::forbidden_because("Your account has been blocked.").into());
        }
        UserState::Deactivated => {
            return Err(ApiError::forbidden_because(
                "Your account has been deactivated by your administrator. Please log back in to reactivate your account.",
            )
            .into());
        }
    }
    let mut auth = AuthUser {
        id: user.id,
        is_admin: user.is_admin,
        token_id,
        job_id,
    };
    let token_scopes = token_id.map(|id| state.access_tokens[&id].scopes.clone());
    if let Some(sudo) = sudo_identifier(headers, query) {
        if !auth.is_admin {
            return Err(ApiError::forbidden_because("Must be admin to use sudo").into());
        }
        let Some(scopes) = &token_scopes else {
            return Err(ApiError::forbidden_because(
                "Must be authenticated using an OAuth or Personal Access Token to use sudo",
            )
            .into());
        };
        if !scopes.iter().any(|s| s == "sudo") {
            return Err(Refusal::InsufficientScope("sudo".into()));
        }
        let Some(target) = state.find_user_by_id_or_username(&sudo) else {
            return Err(ApiError::not_found(&format!("User with ID or username '{sudo}'")).into());
        };
        auth.id = target;
        auth.is_admin = state.users[&target].is_admin;
    } else if let Some(scopes) = &token_scopes
        && let Err(scope) =
            crate::scopes::check(&crate::scopes::accepted_for(route), scopes, read_request)
    {
        return Err(Refusal::InsufficientScope(scope));
    }
    if let Some(id) = token_id
        && let Some(pat) = state.access_tokens.get_mut(&id)
        && (pat.last_used_at.is_none()
            || now.saturating_sub(pat.last_used_ms) >= LAST_USED_REFRESH_MS)
    {
        pat.last_used_ms = now;
        pat.last_used_at = Some(crate::time::iso_from_ms(now));
    }
    Ok(auth)
}

fn server_error(status: u16) -> Response {
    match status {
        502 => html(
            StatusCode::BAD_GATEWAY,
            "<!DOCTYPE html>\n<html><head><title>GitLab is not responding (502)</title></head><body><h1>502</h1><p>Whoops, GitLab is taking too much time to respond.</p></body></html>\n",
        ),
        503 => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n",
        ),
        _ => ApiError::internal().into_response(),
    }
}

fn html(status: StatusCode, body: &'static str) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources() {
        let mut h = HeaderMap::new();
        assert_eq!(request_token(&h, Some("private_token=q")), Some("q".into()));
        h.insert("authorization", HeaderValue::from_static("Bearer b"));
        assert_eq!(request_token(&h, None), Some("b".into()));
        h.insert("private-token", HeaderValue::from_static("p"));
        assert_eq!(request_token(&h, None), Some("p".into()));
    }
}
