//! Resource addresses: the identity of every node in the graph, plan and journal.
//!
//! Displayed as `kind/id`, e.g. `gitlab.variable/root/inventory-app/AWS_ACCESS_KEY_ID@*`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Serialised (plan files, JSON output) as `{"kind": "gitlab.variable", "project": ..., ...}`:
/// unambiguous even when names contain `/`, unlike the displayed form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Address {
    #[serde(rename = "gitlab.user")]
    User { username: String },
    /// `namespace/path`
    #[serde(rename = "gitlab.project")]
    Project { path: String },
    #[serde(rename = "gitlab.member")]
    Member { project: String, user: String },
    #[serde(rename = "gitlab.protected_branch")]
    ProtectedBranch { project: String, branch: String },
    #[serde(rename = "gitlab.variable")]
    Variable {
        project: String,
        key: String,
        scope: String,
    },
    #[serde(rename = "aws.secret")]
    Secret { name: String },
    /// `repository:tag` or `repository@sha256:...`
    #[serde(rename = "aws.ecr_image")]
    EcrImage { image: String },
    #[serde(rename = "aws.ecs_task_definition")]
    TaskDefinition { env: String, service: String },
    #[serde(rename = "aws.ecs_service")]
    Service { env: String, service: String },
}

/// Where a resource lives, for `--env` and approval gates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// GitLab-wide resources.
    Gitlab,
    /// AWS resources shared by every environment (secrets, images).
    Aws,
    Env(String),
}

impl Address {
    /// The path of the GitLab project a project child (member, protected branch, variable)
    /// belongs to.
    pub fn project(&self) -> Option<&str> {
        match self {
            Self::Member { project, .. }
            | Self::ProtectedBranch { project, .. }
            | Self::Variable { project, .. } => Some(project),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::User { .. } => "gitlab.user",
            Self::Project { .. } => "gitlab.project",
            Self::Member { .. } => "gitlab.member",
            Self::ProtectedBranch { .. } => "gitlab.protected_branch",
            Self::Variable { .. } => "gitlab.variable",
            Self::Secret { .. } => "aws.secret",
            Self::EcrImage { .. } => "aws.ecr_image",
            Self::TaskDefinition { .. } => "aws.ecs_task_definition",
            Self::Service { .. } => "aws.ecs_service",
        }
    }

    pub fn scope(&self) -> Scope {
        match self {
            Self::User { .. }
            | Self::Project { .. }
            | Self::Member { .. }
            | Self::ProtectedBranch { .. }
            | Self::Variable { .. } => Scope::Gitlab,
            Self::Secret { .. } | Self::EcrImage { .. } => Scope::Aws,
            Self::TaskDefinition { env, .. } | Self::Service { env, .. } => Scope::Env(env.clone()),
        }
    }

    /// The scope's name, as `--env` and plan steps spell it: `gitlab`, `aws`, or the environment.
    pub fn scope_name(&self) -> String {
        match self.scope() {
            Scope::Gitlab => "gitlab".into(),
            Scope::Aws => "aws".into(),
            Scope::Env(env) => env,
        }
    }

    /// `gitlab` or `aws`.
    pub fn system(&self) -> &'static str {
        match self.scope() {
            Scope::Gitlab => "gitlab",
            Scope::Aws | Scope::Env(_) => "aws",
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.kind())?;
        match self {
            Self::User { username } => f.write_str(username),
            Self::Project { path } => f.write_str(path),
            Self::Member { project, user } => write!(f, "{project}/{user}"),
            Self::ProtectedBranch { project, branch } => write!(f, "{project}/{branch}"),
            Self::Variable {
                project,
                key,
                scope,
            } => write!(f, "{project}/{key}@{scope}"),
            Self::Secret { name } => f.write_str(name),
            Self::EcrImage { image } => f.write_str(image),
            Self::TaskDefinition { env, service } | Self::Service { env, service } => {
                write!(f, "{env}/{service}")
            }
        }
    }
}
