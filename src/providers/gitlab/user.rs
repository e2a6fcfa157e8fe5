//! GitLab users: `username` is the identity (case-insensitive); state changes go through the
//! block/unblock/activate action endpoints (PUT cannot change state). Never deleted.

use gitlab::api::{self, AsyncQuery};
use serde_json::Value as Json;

use super::endpoints::{EditUser, UserAction};
use super::{Gitlab, StepError, changes, want_bool, want_str};
use crate::address::Address;
use crate::live::{Desired, Fields, Live, Value};
use crate::plan::{Action, Step};
use crate::spec::user::{User, UserState};

pub fn desired(u: &User) -> Desired {
    let state = match u.state {
        UserState::Active => "active",
        UserState::Blocked => "blocked",
    };
    let fields = Fields::from([
        ("name".into(), Value::str(&u.name)),
        ("email".into(), Value::str(u.email.to_lowercase())),
        ("state".into(), Value::str(state)),
        ("admin".into(), Value::Bool(u.admin)),
        ("external".into(), Value::Bool(u.external)),
    ]);
    Desired {
        address: Address::User {
            username: u.username.to_lowercase(),
        },
        fields,
        replace_on: &[],
        secrets: Default::default(),
    }
}

/// Live fields from a user entity (admin view: `email` and `is_admin` are present).
pub fn live(j: &Json) -> Live {
    let mut fields = Fields::new();
    fields.insert(
        "name".into(),
        Value::str(j["name"].as_str().unwrap_or_default()),
    );
    if let Some(email) = j["email"].as_str() {
        fields.insert("email".into(), Value::str(email.to_lowercase()));
    }
    fields.insert(
        "state".into(),
        Value::str(j["state"].as_str().unwrap_or("active")),
    );
    if let Some(admin) = j["is_admin"].as_bool() {
        fields.insert("admin".into(), Value::Bool(admin));
    }
    fields.insert(
        "external".into(),
        Value::Bool(j["external"].as_bool().unwrap_or(false)),
    );
    let meta = [("id".to_string(), j["id"].to_string())].into();
    Live { fields, meta }
}

pub async fn apply(gl: &Gitlab, username: &str, step: &Step) -> Result<(), StepError> {
    let client = &gl.client;
    let id = match step.action {
        Action::Create => {
            // A user is name-keyed: if an earlier attempt created it, adopt it.
            match gl.find_user(username).await? {
                Some(existing) => existing["id"].as_u64().unwrap_or_default(),
                None => {
                    let endpoint = gitlab::api::users::CreateUser::builder()
                        .username(username)
                        .name(want_str(step, "name").unwrap_or(username))
                        .email(want_str(step, "email").unwrap_or_default())
                        .password(gitlab::api::users::NewUserPassword::Reset)
                        .skip_confirmation(true)
                        .admin(want_bool(step, "admin").unwrap_or(false))
                        .external(want_bool(step, "external").unwrap_or(false))
                        .build()
                        .expect("valid endpoint");
                    let created: Result<Json, _> = endpoint.query_async(client).await;
                    match created {
                        Ok(u) => u["id"].as_u64().unwrap_or_default(),
                        Err(e)
                            if super::is_unknown_outcome(&e)
                                || super::status_of(&e) == Some(http::StatusCode::CONFLICT) =>
                        {
                            gl.find_user(username)
                                .await?
                                .and_then(|u| u["id"].as_u64())
                                .ok_or(StepError::from(e))?
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Action::Update | Action::Replace => {
            let user = gl
                .find_user(username)
                .await?
                .ok_or_else(|| StepError::Precondition(format!("user {username} disappeared")))?;
            let id = user["id"].as_u64().unwrap_or_default();
            if ["name", "email", "admin", "external"]
                .iter()
                .any(|f| changes(step, f))
            {
                let edit = EditUser {
                    id,
                    name: want_str(step, "name").map(str::to_owned),
                    email: want_str(step, "email").map(str::to_owned),
                    admin: want_bool(step, "admin"),
                    external: want_bool(step, "external"),
                };
                api::ignore(edit).query_async(client).await?;
            }
            id
        }
        Action::Delete => {
            return Err(StepError::Precondition(
                "users are never deleted: set `state: blocked`".into(),
            ));
        }
    };
    // State through the action endpoints.
    let state_now = if step.action == Action::Create {
        Some("active")
    } else {
        step.changes
            .iter()
            .find(|c| c.field == "state")
            .and_then(|c| match &c.before {
                Some(Value::Str(s)) => Some(s.as_str()),
                _ => None,
            })
    };
    match (state_now, want_str(step, "state")) {
        (Some(now), Some(target)) if now != target => {
            let action = match (now, target) {
                (_, "blocked") => "block",
                ("deactivated", "active") => "activate",
                _ => "unblock",
            };
            api::ignore(UserAction { id, action })
                .query_async(client)
                .await?;
        }
        _ => {}
    }
    Ok(())
}
