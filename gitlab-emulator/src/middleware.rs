//! The layer every `/api/v4` request goes through, in order: counting by route
//! template, injected latency and faults, the per-token rate limit, then
//! authentication (`PRIVATE-TOKEN`, `Authorization: Bearer`, `?private_token=`).
//! Handlers receive the authenticated user as an [`AuthUser`] extension.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::counters::route_template;
use crate::error::ApiError;
use crate::faults::FaultKind;
use crate::model::UserState;
use crate::ratelimit::throttled_response;
use crate::server::{App, ResetConnection};
use crate::time::now_ms;

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthUser {
    pub id: u64,
    pub is_admin: bool,
}

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
            return throttled_response(
                limit,
                u64::from(limit) + 1,
                faults.retry_after_secs.max(1),
                !faults.omit_rate_limit_headers,
            );
        }
        Some(FaultKind::WriteThen500) => write_then_500 = is_write(&method),
        None => {}
    }

    let token = request_token(req.headers(), req.uri().query());
    if let Some(limit) = &app.config.rate_limit {
        let key = token.clone().unwrap_or_else(|| "unauthenticated".into());
        if let Err(throttled) = app.limiter.check(&key, limit) {
            app.counters.record_rate_limited();
            tracing::debug!(route = %route, retry_after = throttled.retry_after_secs, "Rate limited");
            return throttled_response(
                limit.requests_per_minute,
                throttled.observed,
                throttled.retry_after_secs,
                limit.headers,
            );
        }
    }

    let auth = {
        let mut state = app.state.lock();
        state.purge_due_deletes(now_ms());
        let Some(token) = token else {
            return ApiError::unauthorized().into_response();
        };
        let Some(user) = state.tokens.get(&token).and_then(|id| state.users.get(id)) else {
            return ApiError::unauthorized().into_response();
        };
        match user.state {
            UserState::Active => {}
            UserState::Blocked => {
                return ApiError::forbidden_because("Your account has been blocked.")
                    .into_response();
            }
            UserState::Deactivated => {
                return ApiError::forbidden_because(
                    "Your account has been deactivated by your administrator. Please log back in to reactivate your account.",
                )
                .into_response();
            }
        }
        AuthUser {
            id: user.id,
            is_admin: user.is_admin,
        }
    };
    req.extensions_mut().insert(auth);
    let resp = next.run(req).await;
    if write_then_500 {
        app.counters.record_fault("write_then_500");
        tracing::debug!(route = %route, status = resp.status().as_u16(), "Write done, answering 500");
        return ApiError::internal().into_response();
    }
    resp
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
