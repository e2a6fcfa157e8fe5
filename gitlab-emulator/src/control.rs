//! The control plane under `/-/emulator/`: reset, state dump and load (HTTP
//! body or the state file), request counters, fault settings, and fixtures
//! the API cannot create (personal access tokens with chosen secrets, CI
//! jobs). Never counted, never faulted, never rate-limited, and
//! unauthenticated (the emulator listens on loopback for tests).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::faults::Faults;
use crate::server::App;

/// Largest state accepted by `PUT /-/emulator/state`.
const STATE_BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/-/emulator/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/-/emulator/reset", post(reset))
        // A big instance's state (1,000 projects ≈ 3.25 MB) exceeds axum's
        // default 2 MB body limit.
        .route(
            "/-/emulator/state",
            get(get_state).put(put_state.layer(DefaultBodyLimit::max(STATE_BODY_LIMIT))),
        )
        .route("/-/emulator/dump", post(dump))
        .route("/-/emulator/load", post(load))
        .route(
            "/-/emulator/counters",
            get(get_counters).delete(delete_counters),
        )
        .route(
            "/-/emulator/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .route("/-/emulator/tokens", post(post_token))
        .route("/-/emulator/jobs", post(post_job))
        .route("/-/emulator/jobs/{id}", put(put_job))
        .with_state(app)
}

fn bad_request(message: String) -> Response {
    ApiError::message(StatusCode::BAD_REQUEST, message).into_response()
}

async fn reset(State(app): State<Arc<App>>) -> Response {
    let fresh = app.fresh_state();
    *app.state.lock() = fresh;
    app.limiter.reset();
    tracing::info!("State reset");
    StatusCode::NO_CONTENT.into_response()
}

async fn get_state(State(app): State<Arc<App>>) -> Response {
    let body = app.state.lock().to_json_string();
    ([("content-type", "application/json")], body).into_response()
}

async fn put_state(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("invalid JSON: {e}")),
    };
    match crate::state::State::from_json_value(value) {
        Ok(state) => {
            app.replace_state(state);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(format!("invalid state: {e}")),
    }
}

async fn dump(State(app): State<Arc<App>>) -> Response {
    match app.dump_to_file() {
        Ok(Some(path)) => Json(json!({ "path": path.display().to_string() })).into_response(),
        Ok(None) => bad_request("no state file configured (start with --state FILE)".into()),
        Err(e) => {
            ApiError::message(StatusCode::INTERNAL_SERVER_ERROR, error_chain(&e)).into_response()
        }
    }
}

async fn load(State(app): State<Arc<App>>) -> Response {
    let Some(path) = app.config.state_file.clone() else {
        return bad_request("no state file configured (start with --state FILE)".into());
    };
    match crate::state::State::load(&path) {
        Ok(state) => {
            app.replace_state(state);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(error_chain(&e)),
    }
}

async fn get_counters(State(app): State<Arc<App>>) -> Response {
    Json(app.counters.snapshot()).into_response()
}

async fn delete_counters(State(app): State<Arc<App>>) -> Response {
    app.counters.reset();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(app): State<Arc<App>>) -> Response {
    Json(app.faults.current()).into_response()
}

async fn put_faults(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("invalid faults: {e}")),
    };
    if let Err(reason) = faults.validate() {
        return bad_request(reason);
    }
    tracing::info!(seed = faults.seed, "Fault injection configured");
    app.faults.set(faults.clone());
    Json(faults).into_response()
}

async fn delete_faults(State(app): State<Arc<App>>) -> Response {
    app.faults.set(Faults::default());
    StatusCode::NO_CONTENT.into_response()
}

fn seeded(result: Result<Value, crate::seed::SeedError>, status: StatusCode) -> Response {
    match result {
        Ok(body) => (status, Json(body)).into_response(),
        Err(e) => ApiError::message(e.status, e.message).into_response(),
    }
}

/// The JSON body of a fixture request (an empty body is `{}`).
fn json_body(body: &Bytes) -> Result<Value, String> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))
}

async fn post_token(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match json_body(&body) {
        Ok(spec) => seeded(crate::seed::create_token(&app, &spec), StatusCode::CREATED),
        Err(reason) => bad_request(reason),
    }
}

async fn post_job(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match json_body(&body) {
        Ok(spec) => seeded(crate::seed::create_job(&app, &spec), StatusCode::CREATED),
        Err(reason) => bad_request(reason),
    }
}

async fn put_job(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return bad_request(format!("job id {id:?} is not a number"));
    };
    match json_body(&body) {
        Ok(spec) => seeded(crate::seed::update_job(&app, id, &spec), StatusCode::OK),
        Err(reason) => bad_request(reason),
    }
}

/// An error and its sources, joined with ": ".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
