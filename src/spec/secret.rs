//! AWS Secrets Manager secrets that the desired state references (never their values).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secret that exists in AWS Secrets Manager. reconcile resolves it to an ARN and reads its
/// value only for GitLab variables that take it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// Secret name, e.g. `cloud-design/db-password`.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}
