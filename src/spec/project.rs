//! GitLab projects and the collections they own.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::member::Member;
use super::protected_branch::ProtectedBranch;
use super::variable::Variable;

/// A GitLab project. Optional fields left out are not managed.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Namespace full path: a user's (`root`) or a group's (`platform/tools`).
    pub namespace: String,
    /// Project path inside the namespace; compared case-insensitively.
    pub path: String,
    /// Display name (default: the path).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub members: Collection<Member>,
    #[serde(default)]
    pub protected_branches: Collection<ProtectedBranch>,
    #[serde(default)]
    pub variables: Collection<Variable>,
}

impl Project {
    pub fn full_path(&self) -> String {
        format!("{}/{}", self.namespace, self.path)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Private,
    Internal,
    Public,
}

/// A collection of objects owned by a project.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, bound(deserialize = "T: Deserialize<'de>"))]
#[schemars(bound = "T: JsonSchema")]
pub struct Collection<T> {
    /// Delete live objects that are not listed (default: false, they are only reported).
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub items: Vec<T>,
}

impl<T> Default for Collection<T> {
    fn default() -> Self {
        Self {
            prune: false,
            items: Vec::new(),
        }
    }
}
