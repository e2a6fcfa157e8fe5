//! Error types: [`ApiError`] is an HTTP error rendered exactly as GitLab renders
//! it (status plus `{"message": ...}` or `{"error": ...}` body); [`EmulatorError`]
//! is what the library API and the binary report (bind, state file, config).

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Errors from starting, running or persisting an emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listener could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be read or written.
    #[error("cannot access state file {path}")]
    StateIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid emulator state JSON.
    #[error("state file {path} is not valid emulator state")]
    StateFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The configuration is contradictory (e.g. the same token twice).
    #[error("invalid configuration: {reason}")]
    Config { reason: String },
    /// A fixture request (`create_token`, `create_job`, `update_job`) was refused.
    #[error("invalid fixture request ({status}): {reason}")]
    Fixture { status: u16, reason: String },
}

/// An API error response, shaped like GitLab's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    /// `{"message": <message>}` with the given status.
    pub fn message(status: StatusCode, message: impl Into<Value>) -> Self {
        Self {
            status,
            body: json!({ "message": message.into() }),
        }
    }

    /// `{"error": "<text>"}` with the given status (Grape parameter errors, 405s).
    pub fn error(status: StatusCode, text: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": text.into() }),
        }
    }

    /// 404 `{"message":"404 <What> Not Found"}`.
    pub fn not_found(what: &str) -> Self {
        Self::message(StatusCode::NOT_FOUND, format!("404 {what} Not Found"))
    }

    /// 401 `{"message":"401 Unauthorized"}`.
    pub fn unauthorized() -> Self {
        Self::message(StatusCode::UNAUTHORIZED, "401 Unauthorized")
    }

    /// 403 `{"message":"403 Forbidden"}`.
    pub fn forbidden() -> Self {
        Self::message(StatusCode::FORBIDDEN, "403 Forbidden")
    }

    /// 403 `{"message":"403 Forbidden - <reason>"}`.
    pub fn forbidden_because(reason: &str) -> Self {
        Self::message(StatusCode::FORBIDDEN, format!("403 Forbidden - {reason}"))
    }

    /// 409 `{"message":"<text>"}`.
    pub fn conflict(text: impl Into<String>) -> Self {
        Self::message(StatusCode::CONFLICT, text.into())
    }

    /// 400 `{"error":"<text>"}` (Grape parameter validation).
    pub fn bad_param(text: impl Into<String>) -> Self {
        Self::error(StatusCode::BAD_REQUEST, text)
    }

    /// 400 `{"message":{"<field>":["<problem>"]}}` (`render_validation_error!`).
    pub fn validation(fields: &[(&str, &str)]) -> Self {
        let mut map = serde_json::Map::new();
        for (field, problem) in fields {
            let entry = map
                .entry(field.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                list.push(Value::String(problem.to_string()));
            }
        }
        Self::message(StatusCode::BAD_REQUEST, Value::Object(map))
    }

    /// 500 `{"message":"500 Internal Server Error"}`.
    pub fn internal() -> Self {
        Self::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Result type of API handlers and state operations.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
