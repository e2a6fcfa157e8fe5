//! ECS task definitions, as the input of RegisterTaskDefinition (only fields the user owns).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ecs_service::LaunchType;
use super::variable::SecretSource;

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDefinition {
    pub family: String,
    /// CPU units (`256`) or vCPUs (`0.25 vCPU`).
    #[serde(default)]
    pub cpu: Option<String>,
    /// MiB (`512`) or GB (`1 GB`).
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub network_mode: NetworkMode,
    #[serde(default)]
    pub execution_role_arn: Option<String>,
    #[serde(default)]
    pub task_role_arn: Option<String>,
    #[serde(default)]
    pub requires_compatibilities: Vec<LaunchType>,
    pub containers: Vec<Container>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    #[default]
    Bridge,
    Awsvpc,
    Host,
    None,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub name: String,
    pub image: Image,
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Hard memory limit in MiB.
    #[serde(default)]
    pub memory: Option<u32>,
    /// Soft memory limit in MiB.
    #[serde(default)]
    pub memory_reservation: Option<u32>,
    #[serde(default = "yes")]
    pub essential: bool,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Plain environment variables (not secrets).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Environment variables taken from Secrets Manager by ECS at run time (passed as ARNs).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    pub log_configuration: Option<LogConfiguration>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

fn yes() -> bool {
    true
}

/// An image in ECR: a repository and exactly one of `tag` and `digest`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// ECR repository name (`inventory-app`).
    pub repository: String,
    #[serde(default)]
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    #[serde(default)]
    pub digest: Option<String>,
}

impl Image {
    /// `repository:tag` or `repository@digest`.
    pub fn reference(&self) -> String {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => format!("{}@{d}", self.repository),
            (Some(t), None) => format!("{}:{t}", self.repository),
            (None, None) => self.repository.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    pub container_port: u16,
    #[serde(default)]
    pub host_port: Option<u16>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfiguration {
    /// `awslogs`, `json-file`, ...
    pub driver: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `["CMD-SHELL", "curl -f http://localhost/ || exit 1"]`
    pub command: Vec<String>,
    /// Seconds (default 30).
    #[serde(default)]
    pub interval: Option<u32>,
    /// Seconds (default 5).
    #[serde(default)]
    pub timeout: Option<u32>,
    /// Default 3.
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub start_period: Option<u32>,
}
