//! `GET /version` and `GET /user`.

use axum::Extension;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{AppState, current, json};
use crate::config::Edition;
use crate::error::ApiResult;
use crate::middleware::AuthUser;
use crate::model::UserView;

pub(crate) async fn version(axum::extract::State(app): AppState) -> Response {
    json(
        StatusCode::OK,
        json!({
            "version": crate::GITLAB_VERSION,
            "revision": "emulator",
            "kas": { "enabled": false, "externalUrl": null, "externalK8sProxyUrl": null, "version": null },
            "enterprise": app.config.edition == Edition::Ee,
        }),
    )
}

pub(crate) async fn current_user(
    axum::extract::State(app): AppState,
    Extension(auth): Extension<AuthUser>,
) -> ApiResult<Response> {
    let state = app.state.lock();
    let user = current(&state, &auth)?;
    let view = if user.is_admin {
        UserView::Admin
    } else {
        UserView::SelfView
    };
    Ok(json(StatusCode::OK, user.to_json(&app.base_url, view)))
}
