//! The daemon's HTTP endpoints (axum): health, readiness, Prometheus metrics, and the held
//! plans with their approval endpoint.
//!
//! Approvals take a bearer token that the tokens file maps to an approver name (`NAME TOKEN`
//! per line, read on each request so rotation needs no restart); the gates of `reconcile.yaml`
//! then decide as for `reconcile approve`. Tokens never come from the command line and are
//! never logged.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Shared;
use crate::approve;
use crate::plan::render;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/plans", get(plans))
        .route("/api/plans/{hash}", get(plan))
        .route("/api/plans/{hash}/approve", post(approve))
        .with_state(shared)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// 200 once a cycle has finished (with its age and outcome); 503 before, or when the last one
/// is older than four scheduled intervals (the loop is stuck).
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let status = shared.status.lock().unwrap().clone();
    let Some(last) = &status.last_cycle else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "no cycle has finished yet", "cycles": 0})),
        )
            .into_response();
    };
    let age = last
        .finished
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let limit = super::next_delay(shared.interval, status.consecutive_failures)
        .mul_f64(4.0)
        .max(std::time::Duration::from_secs(60));
    let ready = age <= limit;
    let body = json!({
        "ready": ready,
        "cycles": status.cycles,
        "consecutive_failures": status.consecutive_failures,
        "last_cycle": last,
        "last_cycle_age_seconds": age.as_secs_f64(),
        "next_cycle_in_seconds": status.next_cycle_in_seconds,
        "not_converging": status.not_converging,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match &shared.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "metrics are not recorded"),
    }
}

fn summary(
    h: &super::held::HeldPlan,
    config: Option<&crate::spec::config::Config>,
) -> serde_json::Value {
    let missing = config.map(|c| match approve::check(c, &h.plan, &h.approvals) {
        Ok(()) => Vec::new(),
        Err(problems) => problems,
    });
    json!({
        "hash": h.hash,
        "scope": h.scope,
        "revision": h.plan.revision,
        "created_at": h.plan.created_at,
        "summary": render::summary(&h.plan),
        "steps": h.plan.steps.iter().map(|s| json!({
            "address": s.address.to_string(),
            "action": s.action.as_str(),
            "fields": s.changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "approvals": h.approvals.approvals.iter().map(|a| json!({"by": a.by, "at": a.at, "scopes": a.scopes})).collect::<Vec<_>>(),
        "missing": missing,
        "file": h.path,
        "approve": format!("/api/plans/{}/approve", h.hash),
    })
}

async fn plans(State(shared): State<Arc<Shared>>) -> Response {
    let config = shared.status.lock().unwrap().config.clone();
    let held = shared.held.lock().await.list();
    let list: Vec<_> = held.iter().map(|h| summary(h, config.as_deref())).collect();
    Json(list).into_response()
}

/// The rendered plan (text, as `reconcile plan` prints it), or its JSON form when asked with
/// `Accept: application/json`.
async fn plan(
    State(shared): State<Arc<Shared>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(h) = shared.held.lock().await.find(&hash) else {
        return error(StatusCode::NOT_FOUND, format!("no held plan {hash}"));
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        return Json(render::json(&h.plan)).into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\nplan {} ({})\n", render::text(&h.plan), h.hash, h.scope),
    )
        .into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
struct ApproveBody {
    comment: Option<String>,
}

async fn approve(
    State(shared): State<Arc<Shared>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ApproveBody>>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(by) = token.and_then(|t| approver(&shared, t)) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "a valid approver token is required (Authorization: Bearer TOKEN)"})),
        )
            .into_response();
    };
    let Some(config) = shared.status.lock().unwrap().config.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no cycle has read the desired state yet",
        );
    };
    let store = shared.held.lock().await;
    let Some(mut held) = store.find(&hash) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no held plan {hash} (it may have been applied or replaced)"),
        );
    };
    let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let comment = body.and_then(|Json(b)| b.comment);
    let approval = match approve::approve(&config, &held.plan, &by, comment, at) {
        Ok(a) => a,
        Err(why) => return error(StatusCode::FORBIDDEN, why),
    };
    if let Err(e) = store.add_approval(&mut held, approval.clone()) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot record the approval: {e}"),
        );
    }
    crate::audit::append(
        &shared.state_dir,
        "approve",
        &by,
        Some(&hash),
        "approved",
        Some(format!("{} (HTTP)", approval.scopes.join(","))),
    );
    let missing = match approve::check(&config, &held.plan, &held.approvals) {
        Ok(()) => Vec::new(),
        Err(problems) => problems,
    };
    let complete = missing.is_empty();
    tracing::info!(plan = %hash, by = %by, complete, "Approved over HTTP");
    if complete {
        shared.wake.notify_one();
    }
    Json(json!({
        "hash": hash,
        "approved_by": by,
        "scopes": approval.scopes,
        "complete": complete,
        "missing": missing,
    }))
    .into_response()
}

/// The approver whose token this is, from the tokens file (`NAME TOKEN` per line). Tokens are
/// compared through their sha256 in constant time.
fn approver(shared: &Shared, token: &str) -> Option<String> {
    let path = shared.tokens_file.as_ref()?;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "Cannot read the tokens file");
            return None;
        }
    };
    let given = Sha256::digest(token.as_bytes());
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(secret)) = (parts.next(), parts.next()) else {
            continue;
        };
        if bool::from(Sha256::digest(secret.as_bytes()).ct_eq(&given)) && found.is_none() {
            found = Some(name.to_string());
        }
    }
    found
}
