//! GitLab users.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A GitLab user. Users are never deleted by reconcile: to remove access, set `state: blocked`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name; compared case-insensitively, as GitLab does.
    pub username: String,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub state: UserState,
    #[serde(default)]
    pub admin: bool,
    /// GitLab "external" user (no access to internal projects).
    #[serde(default)]
    pub external: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    #[default]
    Active,
    Blocked,
}
