//! GitLab users: `username` is the identity (case-insensitive); state changes go through the
//! block/unblock/activate action endpoints (PUT cannot change state). Never deleted.

use gitlab::api::{self, AsyncQuery};
use serde_json::Value as Json;

use super::endpoints::{EditUser, UserAction};
use super::{Gitlab, want_bool, want_str};
use crate::address::Address;
use crate::live::{Desired, Fields, Live, Value};
use crate::plan::{Action, Step};
use crate::providers::StepError;
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
    if step.action == Action::Delete {
        return Err(StepError::Precondition(
            "users are never deleted: set `state: blocked`".into(),
        ));
    }
    if step.action == Action::Create {
        let create = || async {
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
            api::ignore(endpoint).query_async(client).await
        };
        // A user is name-keyed: one that an earlier attempt created is adopted below.
        super::create_once(create, || gl.find_user(username)).await?;
    }
    // Make the live user match: fields by PUT, state by the action endpoints.
    let user = gl
        .find_user(username)
        .await?
        .ok_or_else(|| StepError::Precondition(format!("user {username} does not exist")))?;
    let id = user["id"].as_u64().unwrap_or_default();
    let now = live(&user);
    let differs = |f: &str| {
        step.desired
            .get(f)
            .is_some_and(|want| now.fields.get(f).is_some_and(|have| have != want))
    };
    if ["name", "email", "admin", "external"]
        .iter()
        .any(|f| differs(f))
    {
        let edit = EditUser {
            id,
            name: want_str(step, "name")
                .filter(|_| differs("name"))
                .map(str::to_owned),
            email: want_str(step, "email")
                .filter(|_| differs("email"))
                .map(str::to_owned),
            admin: want_bool(step, "admin").filter(|_| differs("admin")),
            external: want_bool(step, "external").filter(|_| differs("external")),
        };
        api::ignore(edit).query_async(client).await?;
    }
    let state = now.fields.get("state").and_then(|v| match v {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    });
    match (state.as_deref(), want_str(step, "state")) {
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
