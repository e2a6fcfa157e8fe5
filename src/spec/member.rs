//! Direct members of a GitLab project.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Username of a user declared in the desired state.
    pub user: String,
    pub access: AccessLevel,
    /// The user exists in GitLab but is not declared here (reconcile only looks it up).
    #[serde(default)]
    pub user_outside_spec: bool,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    Guest,
    Reporter,
    Developer,
    Maintainer,
    Owner,
}

impl AccessLevel {
    /// GitLab's numeric access level.
    pub fn value(self) -> u32 {
        match self {
            Self::Guest => 10,
            Self::Reporter => 20,
            Self::Developer => 30,
            Self::Maintainer => 40,
            Self::Owner => 50,
        }
    }
}
