//! Protected branches of a GitLab project.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtectedBranch {
    /// Branch name or wildcard (`release/*`).
    pub name: String,
    /// Who may push (default `maintainer`).
    #[serde(default = "maintainer")]
    pub push: BranchAccess,
    /// Who may merge (default `maintainer`).
    #[serde(default = "maintainer")]
    pub merge: BranchAccess,
    /// Who may unprotect (not `no_access`). Left out: not managed (GitLab CE does not expose it).
    #[serde(default)]
    pub unprotect: Option<BranchAccess>,
    #[serde(default)]
    pub allow_force_push: bool,
}

fn maintainer() -> BranchAccess {
    BranchAccess::Maintainer
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BranchAccess {
    NoAccess,
    Developer,
    Maintainer,
    Admin,
}

impl BranchAccess {
    /// GitLab's numeric access level for protected refs.
    pub fn value(self) -> u32 {
        match self {
            Self::NoAccess => 0,
            Self::Developer => 30,
            Self::Maintainer => 40,
            Self::Admin => 60,
        }
    }
}
