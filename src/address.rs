//! Resource addresses: the identity of every node in the graph, plan and journal.
//!
//! Displayed as `kind/id`, e.g. `gitlab.variable/root/inventory-app/AWS_ACCESS_KEY_ID@*`.

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    User {
        username: String,
    },
    /// `namespace/path`
    Project {
        path: String,
    },
    Member {
        project: String,
        user: String,
    },
    ProtectedBranch {
        project: String,
        branch: String,
    },
    Variable {
        project: String,
        key: String,
        scope: String,
    },
    Secret {
        name: String,
    },
    /// `repository:tag` or `repository@sha256:...`
    EcrImage {
        image: String,
    },
    TaskDefinition {
        env: String,
        service: String,
    },
    Service {
        env: String,
        service: String,
    },
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

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
