//! The daemon's HTTP endpoints (axum): health, readiness, Prometheus metrics, and the held
//! plans with their approval endpoint.
//!
//! An approval takes the approver's own GitLab token (`Authorization: Bearer TOKEN`, any scope
//! that can read `GET /user`): GitLab says who they are, the gates decide as for
//! `reconcile approve`, and the approval is recorded with a `gitlab_sign_in` proof attested
//! with the reconcile key. The token is used for that one request, never stored or logged.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Context, Shared};
use crate::approve::{self, Approval, Directory, GitlabUser, Proof, VerifiedAuthor, proof};
use crate::plan::render;
use crate::secret::SecretValue;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/plans", get(plans))
        .route("/api/plans/{hash}", get(plan))
        .route("/api/plans/{hash}/approve", post(approve))
        .route("/hooks/gitlab", post(system_hook))
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
    // Unready when the loop is stuck, or when every recent cycle fails (the same threshold as
    // the "unhealthy" notification).
    let failing = status.consecutive_failures >= super::UNHEALTHY_AFTER;
    let ready = age <= limit && !failing;
    let body = json!({
        "ready": ready,
        "reason": if failing {
            Some(format!("{} cycles failed in a row", status.consecutive_failures))
        } else if age > limit {
            Some("the last cycle is too old: the loop is stuck".to_string())
        } else {
            None
        },
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

/// GitLab's system hook: checks `X-Gitlab-Token` (constant time), then marks what the event
/// names for the next cycle to read and wakes the loop. The body is read only after the token
/// matched, and at most 64 KiB of it.
async fn system_hook(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(expected) = &shared.hook_token else {
        return error(
            StatusCode::NOT_FOUND,
            "system hooks are not enabled (set RECONCILE_HOOK_TOKEN)",
        );
    };
    let given = headers
        .get("x-gitlab-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        given,
        expected.expose().as_bytes(),
    )) {
        return error(StatusCode::UNAUTHORIZED, "wrong or missing X-Gitlab-Token");
    }
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "hook body over 64 KiB"),
    };
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return error(StatusCode::BAD_REQUEST, "hook body is not JSON");
    };
    tracing::debug!(
        event = event["event_name"].as_str().unwrap_or_default(),
        "System hook"
    );
    shared.dirty.lock().unwrap().hook(&event);
    shared.hooked.notify_one();
    (StatusCode::OK, Json(json!({"accepted": true}))).into_response()
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

/// What a held plan still needs: the problems of `approve::check` over its approvals that
/// verify.
async fn missing(h: &super::held::HeldPlan, context: &Context, shared: &Shared) -> Vec<String> {
    let directory = context.directory.as_ref().map(|c| c as &dyn Directory);
    let mut verified = Vec::new();
    if let Some(directory) = directory {
        for a in &h.approvals.approvals {
            if let Ok(v) =
                approve::verify_approval(a, &h.file, directory, shared.key.as_ref()).await
            {
                verified.push(v);
            }
        }
    }
    let author = match directory {
        Some(d) => approve::verify_author(&h.file, d, shared.key.as_ref()).await,
        None => VerifiedAuthor::Unknown("no GitLab to ask".into()),
    };
    match approve::check(
        &context.gates,
        h.plan(),
        &author,
        &verified,
        &Default::default(),
    ) {
        Ok(()) => Vec::new(),
        Err(problems) => problems,
    }
}

async fn summary(h: &super::held::HeldPlan, shared: &Shared) -> serde_json::Value {
    let context = shared.status.lock().unwrap().context.clone();
    let missing = match &context {
        Some(c) => Some(missing(h, c, shared).await),
        None => None,
    };
    let plan = h.plan();
    json!({
        "hash": h.hash(),
        "scope": h.scope,
        "revision": plan.revision,
        "created_at": plan.created_at,
        "author": plan.author.username,
        "summary": render::summary(plan),
        "destructive": plan.destructive().total(),
        "steps": plan.steps.iter().map(|s| json!({
            "address": s.address.to_string(),
            "action": s.action.as_str(),
            "fields": s.changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "approvals": h.approvals.approvals.iter().map(|a| json!({
            "by": a.by,
            "at": a.at,
            "proof": a.proof.as_ref().map(Proof::describe),
        })).collect::<Vec<_>>(),
        "missing": missing,
        "file": h.path,
        "approve": format!("/api/plans/{}/approve", h.hash()),
    })
}

async fn plans(State(shared): State<Arc<Shared>>) -> Response {
    let held = shared.held.lock().await.list();
    let mut list = Vec::new();
    for h in &held {
        list.push(summary(h, &shared).await);
    }
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
        return Json(render::json(h.plan())).into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "{}\nplan {} ({})\n",
            render::text(h.plan()),
            h.hash(),
            h.scope
        ),
    )
        .into_response()
}

/// Largest approval body read (a comment).
const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    comment: Option<String>,
    /// Also approve the plan's promotion overrides.
    #[serde(rename = "override", default)]
    promotion_override: bool,
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "error": message })),
    )
        .into_response()
}

/// Records an approval by the owner of the GitLab token in `Authorization`. Who approves is
/// settled with GitLab before the request body is even read.
async fn approve(
    State(shared): State<Arc<Shared>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return unauthorized(
            "your GitLab token is required (Authorization: Bearer TOKEN): GitLab tells who you are",
        );
    };
    let Some(context) = shared.status.lock().unwrap().context.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no cycle has read the desired state yet",
        );
    };
    let Some(key) = shared.key.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon has no reconcile key (RECONCILE_FINGERPRINT_KEY or GITLAB_TOKEN) to record approvals with",
        );
    };
    let user: GitlabUser = match crate::providers::gitlab::identity::token_owner(
        &context.gitlab_url,
        SecretValue::new(token),
    )
    .await
    {
        Ok(Some(user)) => user,
        Ok(None) => {
            return unauthorized("GitLab does not accept this token (unknown, revoked or expired)");
        }
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("cannot ask GitLab who owns the token: {e}"),
            );
        }
    };
    // Only now, for someone GitLab knows, is the body read (bounded) and parsed.
    let bytes = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes"),
            );
        }
    };
    let body: ApproveBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        ApproveBody::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not `{{\"comment\": \"...\", \"override\": false}}`: {e}"),
                );
            }
        }
    };
    let store = shared.held.lock().await;
    let Some(held) = store.find(&hash) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no held plan {hash} (it may have been applied or replaced)"),
        );
    };
    let directory = context.directory.as_ref().map(|c| c as &dyn Directory);
    let author = match directory {
        Some(d) => approve::verify_author(&held.file, d, Some(key)).await,
        None => VerifiedAuthor::Unknown("no GitLab to ask".into()),
    };
    let scopes = match approve::eligible_scopes(
        &context.gates,
        held.plan(),
        &author,
        &user,
        body.promotion_override,
    ) {
        Ok(scopes) => scopes,
        Err(why) => {
            crate::audit::append(
                &shared.state_dir,
                "approve",
                &user.username,
                Some(&hash),
                "refused",
                Some(why.clone()),
            );
            return error(StatusCode::FORBIDDEN, why);
        }
    };
    let message = proof::attestation_message(
        held.hash(),
        user.id,
        &user.username,
        body.promotion_override,
    );
    let approval = Approval {
        plan_sha256: held.hash().to_string(),
        by: user.username.clone(),
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        comment: body.comment,
        promotion_override: body.promotion_override,
        proof: Some(Proof::GitlabSignIn {
            user_id: user.id,
            attestation: key.attest(proof::APPROVAL_ATTESTATION, &message),
        }),
    };
    let approvals = match approve::add_approval(&held.path, approval) {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot record the approval: {e}"),
            );
        }
    };
    crate::audit::append(
        &shared.state_dir,
        "approve",
        &user.username,
        Some(&hash),
        "approved",
        Some(format!(
            "{} (GitLab sign-in on the daemon, user {})",
            scopes.join(","),
            user.id
        )),
    );
    let held = super::held::HeldPlan { approvals, ..held };
    let missing = missing(&held, &context, &shared).await;
    let complete = missing.is_empty();
    tracing::info!(plan = %hash, by = %user.username, complete, "Approved over HTTP");
    if complete {
        shared.wake.notify_one();
    }
    Json(json!({
        "hash": hash,
        "approved_by": user.username,
        "user_id": user.id,
        "scopes": scopes,
        "complete": complete,
        "missing": missing,
    }))
    .into_response()
}
