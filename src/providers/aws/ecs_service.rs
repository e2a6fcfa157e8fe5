//! ECS services: the fields reconcile compares (the UpdateService projection plus the
//! create-only fields that need a replacement), from the spec and from DescribeServices.
//!
//! Owns: the service's normal form ([`ServiceView`], which DescribeServices JSON decodes into,
//! and which the SDK type converts to), the defaults AWS applies (deployment 100/200, circuit
//! breaker off, public IP disabled), sorted subnets and security groups, and `desired_count`
//! compared only when the spec sets it.
//!
//! Must never: do I/O. Later-added service fields (`availabilityZoneRebalancing`, ...) are not
//! compared: unset in the spec means "don't care".

use serde::{Deserialize, Deserializer};

use crate::address::Address;
use crate::live::{Desired, Fields, Live, Value};
use crate::spec::ecs_service::EcsService;

use super::task_definition::launch_type;

/// Fields that cannot change in place.
pub const REPLACE_ON: &[&str] = &["cluster", "launch_type"];

/// Desired count of a created service whose spec leaves it to autoscaling.
pub const INITIAL_COUNT: i32 = 1;

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The parts of a DescribeServices `services[]` entry reconcile reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceView {
    #[serde(deserialize_with = "nullable")]
    pub service_name: String,
    #[serde(deserialize_with = "nullable")]
    pub service_arn: String,
    #[serde(deserialize_with = "nullable")]
    pub cluster_arn: String,
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub desired_count: i64,
    #[serde(deserialize_with = "nullable")]
    pub running_count: i64,
    #[serde(deserialize_with = "nullable")]
    pub pending_count: i64,
    pub launch_type: Option<String>,
    pub task_definition: Option<String>,
    pub deployment_configuration: Option<DeploymentConfig>,
    pub network_configuration: Option<NetworkConfig>,
    #[serde(deserialize_with = "nullable")]
    pub deployments: Vec<DeploymentView>,
    /// Newest first, as AWS returns them.
    #[serde(deserialize_with = "nullable")]
    pub events: Vec<EventView>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeploymentConfig {
    pub deployment_circuit_breaker: Option<CircuitBreaker>,
    pub maximum_percent: Option<i64>,
    pub minimum_healthy_percent: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkConfig {
    pub awsvpc_configuration: Option<AwsVpc>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AwsVpc {
    #[serde(deserialize_with = "nullable")]
    pub subnets: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub security_groups: Vec<String>,
    pub assign_public_ip: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeploymentView {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub task_definition: String,
    #[serde(deserialize_with = "nullable")]
    pub desired_count: i64,
    #[serde(deserialize_with = "nullable")]
    pub running_count: i64,
    pub rollout_state: Option<String>,
    pub rollout_state_reason: Option<String>,
    /// When the deployment started (seconds since the epoch).
    pub created_at: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EventView {
    #[serde(deserialize_with = "nullable")]
    pub message: String,
}

impl ServiceView {
    pub fn from_sdk(s: &aws_sdk_ecs::types::Service) -> Self {
        Self {
            service_name: s.service_name().unwrap_or_default().into(),
            service_arn: s.service_arn().unwrap_or_default().into(),
            cluster_arn: s.cluster_arn().unwrap_or_default().into(),
            status: s.status().unwrap_or_default().into(),
            desired_count: s.desired_count().into(),
            running_count: s.running_count().into(),
            pending_count: s.pending_count().into(),
            launch_type: s.launch_type().map(|l| l.as_str().into()),
            task_definition: s.task_definition().map(Into::into),
            deployment_configuration: s.deployment_configuration().map(|d| DeploymentConfig {
                deployment_circuit_breaker: d.deployment_circuit_breaker().map(|c| {
                    CircuitBreaker {
                        enable: c.enable(),
                        rollback: c.rollback(),
                    }
                }),
                maximum_percent: d.maximum_percent().map(Into::into),
                minimum_healthy_percent: d.minimum_healthy_percent().map(Into::into),
            }),
            network_configuration: s.network_configuration().map(|n| NetworkConfig {
                awsvpc_configuration: n.awsvpc_configuration().map(|a| AwsVpc {
                    subnets: a.subnets().to_vec(),
                    security_groups: a.security_groups().to_vec(),
                    assign_public_ip: a.assign_public_ip().map(|p| p.as_str().into()),
                }),
            }),
            deployments: s
                .deployments()
                .iter()
                .map(|d| DeploymentView {
                    id: d.id().unwrap_or_default().into(),
                    status: d.status().unwrap_or_default().into(),
                    task_definition: d.task_definition().unwrap_or_default().into(),
                    desired_count: d.desired_count().into(),
                    running_count: d.running_count().into(),
                    rollout_state: d.rollout_state().map(|r| r.as_str().into()),
                    rollout_state_reason: d.rollout_state_reason().map(Into::into),
                    created_at: d.created_at().map(|t| t.as_secs_f64()),
                })
                .collect(),
            events: s
                .events()
                .iter()
                .map(|e| EventView {
                    message: e.message().unwrap_or_default().into(),
                })
                .collect(),
        }
    }

    /// Whether the service counts as existing (INACTIVE services linger in DescribeServices).
    pub fn exists(&self) -> bool {
        self.status != "INACTIVE"
    }

    /// The cluster's name, from its ARN.
    pub fn cluster(&self) -> &str {
        self.cluster_arn
            .rsplit_once('/')
            .map_or(self.cluster_arn.as_str(), |(_, name)| name)
    }
}

fn strings(items: &[String]) -> Value {
    let mut v: Vec<String> = items.to_vec();
    v.sort();
    v.dedup();
    Value::List(v.into_iter().map(Value::Str).collect())
}

/// The desired fields of a service; `task_definition` is `FAMILY@HASH` of its task definition.
pub fn desired(spec: &EcsService, task_definition: &str) -> Desired {
    let d = spec.deployment.as_ref();
    let breaker = d.and_then(|d| d.circuit_breaker.as_ref());
    let mut fields = Fields::from([
        ("service_name".into(), Value::str(spec.service_name())),
        ("cluster".into(), Value::str(&spec.cluster)),
        (
            "launch_type".into(),
            Value::str(launch_type(spec.launch_type)),
        ),
        ("task_definition".into(), Value::str(task_definition)),
        (
            "minimum_healthy_percent".into(),
            Value::Int(
                d.and_then(|d| d.minimum_healthy_percent)
                    .map_or(100, i64::from),
            ),
        ),
        (
            "maximum_percent".into(),
            Value::Int(d.and_then(|d| d.maximum_percent).map_or(200, i64::from)),
        ),
        (
            "circuit_breaker_enable".into(),
            Value::Bool(breaker.is_some_and(|c| c.enable)),
        ),
        (
            "circuit_breaker_rollback".into(),
            Value::Bool(breaker.is_some_and(|c| c.rollback)),
        ),
    ]);
    if let Some(n) = spec.desired_count {
        fields.insert("desired_count".into(), Value::Int(i64::from(n)));
    }
    if let Some(net) = &spec.network {
        fields.insert("subnets".into(), strings(&net.subnets));
        fields.insert("security_groups".into(), strings(&net.security_groups));
        fields.insert("assign_public_ip".into(), Value::Bool(net.assign_public_ip));
    }
    Desired {
        address: Address::Service {
            env: spec.environment.clone(),
            service: spec.name.clone(),
        },
        fields,
        replace_on: REPLACE_ON,
        secrets: Default::default(),
    }
}

/// The live fields of a service; `task_definition` is `FAMILY@HASH` of the revision it runs.
pub fn live(s: &ServiceView, task_definition: &str) -> Live {
    let d = s.deployment_configuration.clone().unwrap_or_default();
    let breaker = d.deployment_circuit_breaker.unwrap_or_default();
    let vpc = s
        .network_configuration
        .as_ref()
        .and_then(|n| n.awsvpc_configuration.clone())
        .unwrap_or_default();
    let fields = Fields::from([
        ("service_name".into(), Value::str(&s.service_name)),
        ("cluster".into(), Value::str(s.cluster())),
        (
            "launch_type".into(),
            s.launch_type.as_ref().map_or(Value::Null, Value::str),
        ),
        ("task_definition".into(), Value::str(task_definition)),
        ("desired_count".into(), Value::Int(s.desired_count)),
        (
            "minimum_healthy_percent".into(),
            Value::Int(d.minimum_healthy_percent.unwrap_or(100)),
        ),
        (
            "maximum_percent".into(),
            Value::Int(d.maximum_percent.unwrap_or(200)),
        ),
        ("circuit_breaker_enable".into(), Value::Bool(breaker.enable)),
        (
            "circuit_breaker_rollback".into(),
            Value::Bool(breaker.rollback),
        ),
        ("subnets".into(), strings(&vpc.subnets)),
        ("security_groups".into(), strings(&vpc.security_groups)),
        (
            "assign_public_ip".into(),
            Value::Bool(vpc.assign_public_ip.as_deref() == Some("ENABLED")),
        ),
    ]);
    let meta = [
        ("arn".to_string(), s.service_arn.clone()),
        (
            "task_definition_arn".to_string(),
            s.task_definition.clone().unwrap_or_default(),
        ),
    ]
    .into();
    Live { fields, meta }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ecs_service::{CircuitBreaker as Cb, Deployment, LaunchType, Network};
    use crate::spec::task_definition::{NetworkMode, TaskDefinition};

    /// A DescribeServices entry as real AWS returns it: defaults, later-added fields
    /// (availabilityZoneRebalancing), reordered subnets, empty arrays, deployments and events.
    const AWS_SERVICE: &str = r#"{
      "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/staging/web",
      "serviceName": "web",
      "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/staging",
      "loadBalancers": [],
      "serviceRegistries": [],
      "status": "ACTIVE",
      "desiredCount": 3,
      "runningCount": 3,
      "pendingCount": 0,
      "launchType": "FARGATE",
      "platformVersion": "LATEST",
      "platformFamily": "Linux",
      "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web-staging:7",
      "deploymentConfiguration": {
        "deploymentCircuitBreaker": {"enable": true, "rollback": true},
        "maximumPercent": 200,
        "minimumHealthyPercent": 100
      },
      "deployments": [{
        "id": "ecs-svc/1234567890123456789",
        "status": "PRIMARY",
        "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web-staging:7",
        "desiredCount": 3, "pendingCount": 0, "runningCount": 3, "failedTasks": 0,
        "launchType": "FARGATE",
        "rolloutState": "COMPLETED",
        "rolloutStateReason": "ECS deployment ecs-svc/1234567890123456789 completed."
      }],
      "events": [{"id": "e1", "createdAt": "2025-06-01T10:00:00Z", "message": "(service web) has reached a steady state."}],
      "placementConstraints": [],
      "placementStrategy": [],
      "networkConfiguration": {"awsvpcConfiguration": {
        "subnets": ["subnet-b", "subnet-a"], "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"
      }},
      "schedulingStrategy": "REPLICA",
      "deploymentController": {"type": "ECS"},
      "enableECSManagedTags": false,
      "propagateTags": "NONE",
      "enableExecuteCommand": false,
      "availabilityZoneRebalancing": "ENABLED"
    }"#;

    fn spec(desired_count: Option<u32>, deployment: Option<Deployment>) -> EcsService {
        EcsService {
            name: "web".into(),
            environment: "staging".into(),
            cluster: "staging".into(),
            service_name: None,
            launch_type: LaunchType::Fargate,
            desired_count,
            network: Some(Network {
                subnets: vec!["subnet-a".into(), "subnet-b".into()],
                security_groups: vec!["sg-1".into()],
                assign_public_ip: false,
            }),
            deployment,
            task_definition: TaskDefinition {
                family: "web-staging".into(),
                cpu: None,
                memory: None,
                network_mode: NetworkMode::Awsvpc,
                execution_role_arn: None,
                task_role_arn: None,
                requires_compatibilities: vec![],
                containers: vec![],
            },
        }
    }

    fn diff(d: &Desired, l: &Live) -> Vec<String> {
        d.fields
            .iter()
            .filter(|(k, v)| l.fields.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn view() -> ServiceView {
        serde_json::from_str(AWS_SERVICE).expect("AWS JSON decodes")
    }

    #[test]
    fn aws_described_service_has_no_diff() {
        let breaker = Deployment {
            minimum_healthy_percent: None,
            maximum_percent: None,
            circuit_breaker: Some(Cb {
                enable: true,
                rollback: true,
            }),
        };
        let d = desired(&spec(Some(3), Some(breaker)), "web-staging@abc");
        let l = live(&view(), "web-staging@abc");
        assert_eq!(diff(&d, &l), Vec::<String>::new());
    }

    #[test]
    fn unmanaged_desired_count_ignores_live_changes() {
        let breaker = Deployment {
            minimum_healthy_percent: Some(100),
            maximum_percent: Some(200),
            circuit_breaker: Some(Cb {
                enable: true,
                rollback: true,
            }),
        };
        let d = desired(&spec(None, Some(breaker.clone())), "web-staging@abc");
        let mut v = view();
        v.desired_count = 17;
        assert!(diff(&d, &live(&v, "web-staging@abc")).is_empty());
        let managed = desired(&spec(Some(3), Some(breaker)), "web-staging@abc");
        assert_eq!(
            diff(&managed, &live(&v, "web-staging@abc")),
            ["desired_count"]
        );
    }

    #[test]
    fn missing_deployment_configuration_reads_as_aws_defaults() {
        let mut v = view();
        v.deployment_configuration = None;
        let d = desired(&spec(Some(3), None), "web-staging@abc");
        assert!(diff(&d, &live(&v, "web-staging@abc")).is_empty());
    }

    #[test]
    fn launch_type_change_needs_replacement() {
        let mut v = view();
        v.launch_type = Some("EC2".into());
        let d = desired(&spec(Some(3), None), "web-staging@abc");
        v.deployment_configuration = None;
        let changed = diff(&d, &live(&v, "web-staging@abc"));
        assert_eq!(changed, ["launch_type"]);
        assert!(REPLACE_ON.contains(&"launch_type"));
    }
}
