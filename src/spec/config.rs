//! `reconcile.yaml`: where GitLab and AWS are, the environments with their approval gates and
//! drift policies, plan settings and compliance policies.
//!
//! Tokens and keys are never read from here: GitLab's token comes from `GITLAB_TOKEN`, AWS
//! credentials from the standard AWS chain.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state's settings (`reconcile.yaml` at the root of the desired-state directory).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub gitlab: GitlabSettings,
    #[serde(default)]
    pub aws: Option<AwsSettings>,
    /// Environments by name (for example `staging`, `production`). ECS services name one.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    #[serde(default)]
    pub plan: PlanSettings,
    #[serde(default)]
    pub policies: Policies,
}

/// GitLab instance. The token is read from the `GITLAB_TOKEN` environment variable only.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitlabSettings {
    /// Base URL, e.g. `http://192.168.56.11` (overridden by `GITLAB_URL`).
    pub url: String,
    /// Gate for GitLab-wide changes (users, projects, members, branches, variables).
    #[serde(default)]
    pub approval: Gate,
    /// What the daemon does on drift in GitLab resources (default `correct`).
    #[serde(default)]
    pub drift: Option<DriftPolicy>,
}

/// AWS account and region (overridden by the standard AWS environment variables).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: String,
    /// 12-digit account id; when set, apply refuses to run against another account.
    #[serde(default)]
    pub account_id: Option<String>,
}

/// A deployment environment.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(default)]
    pub approval: Gate,
    /// What the daemon does on drift (default: `hold` for `production` and for environments
    /// promoted from another, else `correct`).
    #[serde(default)]
    pub drift: Option<DriftPolicy>,
    /// Environment whose running images this one may be promoted from (e.g. `staging`).
    #[serde(default)]
    pub promote_from: Option<String>,
}

/// Approval checkpoint for a scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Number of distinct approvals a plan needs before apply (0: no gate).
    #[serde(default)]
    pub required: u32,
    /// Who may approve (GitLab usernames). Empty: anyone.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Whether the plan's author may approve it.
    #[serde(default)]
    pub allow_self_approval: bool,
}

impl Config {
    /// What the daemon does when `scope` (`gitlab`, `aws` or an environment) differs from the
    /// desired state. Defaults: GitLab `correct`; `production` and promoted environments `hold`;
    /// other environments and shared AWS resources `correct`.
    pub fn drift_policy(&self, scope: &str) -> DriftPolicy {
        match scope {
            "gitlab" => self.gitlab.drift.unwrap_or(DriftPolicy::Correct),
            env => match self.environments.get(env) {
                Some(e) => e
                    .drift
                    .unwrap_or(if env == "production" || e.promote_from.is_some() {
                        DriftPolicy::Hold
                    } else {
                        DriftPolicy::Correct
                    }),
                None => DriftPolicy::Correct,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftPolicy {
    /// Plan and apply at once.
    Correct,
    /// Write the plan and hold it for approval.
    Hold,
    /// Notify only.
    Report,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    /// Oldest plan that apply accepts, as a duration (`30m`, `24h`).
    #[serde(default = "default_max_age")]
    pub max_age: String,
    /// Most deletions and replacements a plan may hold before apply needs `--allow-deletes`
    /// (on top of its approvals). The daemon never deletes without an approved plan.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: u32,
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_deletes: default_max_deletes(),
        }
    }
}

fn default_max_deletes() -> u32 {
    5
}

fn default_max_age() -> String {
    "24h".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Blocks apply.
    Error,
    /// Shown in the plan.
    Warn,
    Off,
}

/// Built-in compliance rules and their severities.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// The default branch of every project is protected with force push off.
    #[serde(default = "error")]
    pub default_branch_protected: Severity,
    /// Variables whose key looks secret (`*PASSWORD*`, `*SECRET*`, `*TOKEN*`, ...) are masked and protected.
    #[serde(default = "error")]
    pub secret_variables_masked: Severity,
    /// Production images use a digest or an immutable tag (never `latest`).
    #[serde(default = "error")]
    pub immutable_production_images: Severity,
    /// Production services have the deployment circuit breaker on.
    #[serde(default = "warn")]
    pub production_circuit_breaker: Severity,
    /// No admin users except those listed.
    #[serde(default)]
    pub admin_users: AdminPolicy,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            default_branch_protected: Severity::Error,
            secret_variables_masked: Severity::Error,
            immutable_production_images: Severity::Error,
            production_circuit_breaker: Severity::Warn,
            admin_users: AdminPolicy::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminPolicy {
    #[serde(default = "error")]
    pub severity: Severity,
    /// Usernames allowed to be admins.
    #[serde(default = "root_only")]
    pub allowed: Vec<String>,
}

impl Default for AdminPolicy {
    fn default() -> Self {
        Self {
            severity: Severity::Error,
            allowed: root_only(),
        }
    }
}

fn error() -> Severity {
    Severity::Error
}

fn warn() -> Severity {
    Severity::Warn
}

fn root_only() -> Vec<String> {
    vec!["root".into()]
}
