//! ECS services, one per (environment, name).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::task_definition::TaskDefinition;

/// An ECS service in one environment.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EcsService {
    /// Logical name, the same in every environment (`inventory-app`): production's service is
    /// promoted from the staging service of the same name.
    pub name: String,
    /// Environment declared in `reconcile.yaml`.
    pub environment: String,
    pub cluster: String,
    /// ECS service name (default: `name`).
    #[serde(default)]
    pub service_name: Option<String>,
    pub launch_type: LaunchType,
    /// Left out: not managed (for example when autoscaling owns it).
    #[serde(default)]
    pub desired_count: Option<u32>,
    /// awsvpc network configuration (required with `network_mode: awsvpc`).
    #[serde(default)]
    pub network: Option<Network>,
    #[serde(default)]
    pub deployment: Option<Deployment>,
    pub task_definition: TaskDefinition,
}

impl EcsService {
    pub fn service_name(&self) -> &str {
        self.service_name.as_deref().unwrap_or(&self.name)
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
pub enum LaunchType {
    #[serde(rename = "EC2")]
    Ec2,
    #[serde(rename = "FARGATE")]
    Fargate,
    #[serde(rename = "EXTERNAL")]
    External,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    #[serde(default)]
    pub minimum_healthy_percent: Option<u32>,
    #[serde(default)]
    pub maximum_percent: Option<u32>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}
