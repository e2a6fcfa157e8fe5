//! ECS task definitions: one canonical, normalised form ([`TaskDef`]) built from the spec and
//! from DescribeTaskDefinition alike, so that comparing them shows only what the user changed.
//!
//! Owns: the normalisation rules (only RegisterTaskDefinition input fields; containers, env and
//! secrets sorted by name; AWS's defaults filled in: `essential` true, container `cpu` 0,
//! `protocol` tcp, awsvpc `hostPort` = `containerPort`, health check 30/5/3; empty = absent;
//! `"0.25 vCPU"` → `"256"`, `"1 GB"` → `"1024"`), the content hash a service is compared by,
//! the plan fields, and the RegisterTaskDefinition input.
//!
//! Must never: do I/O, or read a secret value (container secrets are ARNs).
//!
//! Fields the spec cannot express (mount points, volumes, ulimits, ...) are not compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::live::{Desired, Fields, Value};
use crate::spec::ecs_service::{EcsService, LaunchType};
use crate::spec::task_definition::{NetworkMode, Protocol};

/// `null` (as moto and some AWS responses write) reads as the empty value.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A task definition as RegisterTaskDefinition input, in AWS's JSON names. Deserialises from
/// DescribeTaskDefinition's `taskDefinition` JSON (read-only fields are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskDef {
    #[serde(deserialize_with = "nullable")]
    pub family: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub requires_compatibilities: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub container_definitions: Vec<ContainerDef>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerDef {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub port_mappings: Vec<PortMap>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub environment: Vec<NameValue>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub secrets: Vec<SecretRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Health>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortMap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct NameValue {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretRef {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub value_from: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogConfig {
    #[serde(deserialize_with = "nullable")]
    pub log_driver: String,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Health {
    #[serde(deserialize_with = "nullable")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
}

/// `"0.25 vCPU"` → `"256"`, `"1 GB"` → `"1024"`, `" 512 "` → `"512"`; anything else as given.
pub fn units(value: &str) -> String {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    let scaled = |number: &str, factor: f64| {
        number
            .trim()
            .parse::<f64>()
            .ok()
            .map(|n| format!("{}", (n * factor).round() as i64))
    };
    let converted = if let Some(n) = lower.strip_suffix("vcpu") {
        scaled(n, 1024.0)
    } else if let Some(n) = lower.strip_suffix("gb") {
        scaled(n, 1024.0)
    } else if let Some(n) = lower.strip_suffix("mb") {
        scaled(n, 1.0)
    } else {
        None
    };
    converted.unwrap_or_else(|| v.to_string())
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The normal form: see the module documentation for the rules.
pub fn normalise(mut td: TaskDef) -> TaskDef {
    td.cpu = non_empty(td.cpu).map(|v| units(&v));
    td.memory = non_empty(td.memory).map(|v| units(&v));
    td.network_mode = Some(non_empty(td.network_mode).unwrap_or_else(|| "bridge".into()));
    td.execution_role_arn = non_empty(td.execution_role_arn);
    td.task_role_arn = non_empty(td.task_role_arn);
    td.requires_compatibilities.sort();
    td.requires_compatibilities.dedup();
    let awsvpc = td.network_mode.as_deref() == Some("awsvpc");
    for c in &mut td.container_definitions {
        c.cpu = Some(c.cpu.unwrap_or(0));
        c.essential = Some(c.essential.unwrap_or(true));
        for p in &mut c.port_mappings {
            p.protocol = Some(non_empty(p.protocol.take()).unwrap_or_else(|| "tcp".into()));
            if awsvpc && p.host_port.is_none() {
                p.host_port = p.container_port;
            }
        }
        c.port_mappings.sort();
        c.environment.sort();
        c.secrets.sort();
        if let Some(log) = &c.log_configuration
            && log.log_driver.is_empty()
            && log.options.is_empty()
        {
            c.log_configuration = None;
        }
        if let Some(h) = &mut c.health_check {
            h.interval.get_or_insert(30);
            h.timeout.get_or_insert(5);
            h.retries.get_or_insert(3);
        }
    }
    td.container_definitions.sort_by(|a, b| a.name.cmp(&b.name));
    td
}

/// Short sha256 of the normalised task definition: the service compares by it, so a service
/// changes exactly when the content of its task definition does.
pub fn content_hash(td: &TaskDef) -> String {
    let body = serde_json::to_vec(td).expect("task definition serialises");
    hex::encode(Sha256::digest(body))[..12].to_string()
}

/// `FAMILY@HASH`, the service's `task_definition` field.
pub fn service_ref(td: &TaskDef) -> String {
    format!("{}@{}", td.family, content_hash(td))
}

fn opt(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, Value::str)
}

/// The plan fields: task-level scalars, and the container definitions as one multi-line
/// string (canonical pretty JSON) so that the plan shows a text diff. Every field is present
/// (null when absent): a task definition is registered as a whole.
pub fn fields(td: &TaskDef) -> Fields {
    let containers = serde_json::to_string_pretty(&td.container_definitions)
        .expect("containers serialise")
        + "\n";
    Fields::from([
        ("family".into(), Value::str(&td.family)),
        ("cpu".into(), opt(&td.cpu)),
        ("memory".into(), opt(&td.memory)),
        ("network_mode".into(), opt(&td.network_mode)),
        ("execution_role_arn".into(), opt(&td.execution_role_arn)),
        ("task_role_arn".into(), opt(&td.task_role_arn)),
        (
            "requires_compatibilities".into(),
            Value::List(td.requires_compatibilities.iter().map(Value::str).collect()),
        ),
        ("container_definitions".into(), Value::Str(containers)),
    ])
}

/// The task definition that plan fields describe (the inverse of [`fields`]).
pub fn from_fields(fields: &Fields) -> Result<TaskDef, String> {
    let text = |name: &str| match fields.get(name) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let containers = text("container_definitions")
        .ok_or("the step has no container definitions (plan again)")?;
    let container_definitions: Vec<ContainerDef> = serde_json::from_str(&containers)
        .map_err(|_| "the step's container definitions are not valid JSON (plan again)")?;
    let requires_compatibilities = match fields.get("requires_compatibilities") {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(normalise(TaskDef {
        family: text("family").ok_or("the step has no family (plan again)")?,
        cpu: text("cpu"),
        memory: text("memory"),
        network_mode: text("network_mode"),
        execution_role_arn: text("execution_role_arn"),
        task_role_arn: text("task_role_arn"),
        requires_compatibilities,
        container_definitions,
    }))
}

/// Where container images come from: `ACCOUNT.dkr.ecr.REGION.amazonaws.com`.
pub fn registry(account: &str, region: &str) -> String {
    format!("{account}.dkr.ecr.{region}.amazonaws.com")
}

/// `valueFrom` of a container secret: the secret's ARN, with `:KEY::` for a JSON key (ECS's
/// `arn:...:secret:NAME-SUFFIX:json-key:version-stage:version-id` syntax).
pub fn value_from(arn: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("{arn}:{k}::"),
        None => arn.to_string(),
    }
}

/// The normalised task definition a service spec asks for. `arn` resolves a secret name.
pub fn from_spec(service: &EcsService, registry: &str, arn: &dyn Fn(&str) -> String) -> TaskDef {
    let t = &service.task_definition;
    let network_mode = match t.network_mode {
        NetworkMode::Bridge => "bridge",
        NetworkMode::Awsvpc => "awsvpc",
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
    };
    let containers = t
        .containers
        .iter()
        .map(|c| ContainerDef {
            name: c.name.clone(),
            image: format!("{registry}/{}", c.image.reference()),
            cpu: c.cpu.map(i64::from),
            memory: c.memory.map(i64::from),
            memory_reservation: c.memory_reservation.map(i64::from),
            essential: Some(c.essential),
            command: c.command.clone().unwrap_or_default(),
            port_mappings: c
                .port_mappings
                .iter()
                .map(|p| PortMap {
                    container_port: Some(i64::from(p.container_port)),
                    host_port: p.host_port.map(i64::from),
                    protocol: Some(
                        match p.protocol {
                            Protocol::Tcp => "tcp",
                            Protocol::Udp => "udp",
                        }
                        .into(),
                    ),
                })
                .collect(),
            environment: c
                .environment
                .iter()
                .map(|(name, value)| NameValue {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            secrets: c
                .secrets
                .iter()
                .map(|(name, source)| SecretRef {
                    name: name.clone(),
                    value_from: value_from(&arn(&source.secret), source.key.as_deref()),
                })
                .collect(),
            log_configuration: c.log_configuration.as_ref().map(|l| LogConfig {
                log_driver: l.driver.clone(),
                options: l.options.clone(),
            }),
            health_check: c.health_check.as_ref().map(|h| Health {
                command: h.command.clone(),
                interval: h.interval.map(i64::from),
                timeout: h.timeout.map(i64::from),
                retries: h.retries.map(i64::from),
                start_period: h.start_period.map(i64::from),
            }),
        })
        .collect();
    normalise(TaskDef {
        family: t.family.clone(),
        cpu: t.cpu.clone(),
        memory: t.memory.clone(),
        network_mode: Some(network_mode.into()),
        execution_role_arn: t.execution_role_arn.clone(),
        task_role_arn: t.task_role_arn.clone(),
        requires_compatibilities: t
            .requires_compatibilities
            .iter()
            .map(|l| launch_type(*l).to_string())
            .collect(),
        container_definitions: containers,
    })
}

pub fn launch_type(l: LaunchType) -> &'static str {
    match l {
        LaunchType::Ec2 => "EC2",
        LaunchType::Fargate => "FARGATE",
        LaunchType::External => "EXTERNAL",
    }
}

/// The desired task definition resource of a service.
pub fn desired(env: &str, service: &str, td: &TaskDef) -> Desired {
    Desired {
        address: Address::TaskDefinition {
            env: env.to_string(),
            service: service.to_string(),
        },
        fields: fields(td),
        replace_on: &[],
        secrets: Default::default(),
    }
}

/// The canonical form of a DescribeTaskDefinition result (SDK type), normalised.
pub fn from_sdk(t: &aws_sdk_ecs::types::TaskDefinition) -> TaskDef {
    let containers = t
        .container_definitions()
        .iter()
        .map(|c| ContainerDef {
            name: c.name().unwrap_or_default().to_string(),
            image: c.image().unwrap_or_default().to_string(),
            cpu: Some(i64::from(c.cpu())),
            memory: c.memory().map(i64::from),
            memory_reservation: c.memory_reservation().map(i64::from),
            essential: c.essential(),
            command: c.command().to_vec(),
            port_mappings: c
                .port_mappings()
                .iter()
                .map(|p| PortMap {
                    container_port: p.container_port().map(i64::from),
                    host_port: p.host_port().map(i64::from),
                    protocol: p.protocol().map(|p| p.as_str().to_string()),
                })
                .collect(),
            environment: c
                .environment()
                .iter()
                .map(|kv| NameValue {
                    name: kv.name().unwrap_or_default().to_string(),
                    value: kv.value().unwrap_or_default().to_string(),
                })
                .collect(),
            secrets: c
                .secrets()
                .iter()
                .map(|s| SecretRef {
                    name: s.name().to_string(),
                    value_from: s.value_from().to_string(),
                })
                .collect(),
            log_configuration: c.log_configuration().map(|l| LogConfig {
                log_driver: l.log_driver().as_str().to_string(),
                options: l
                    .options()
                    .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            }),
            health_check: c.health_check().map(|h| Health {
                command: h.command().to_vec(),
                interval: h.interval().map(i64::from),
                timeout: h.timeout().map(i64::from),
                retries: h.retries().map(i64::from),
                start_period: h.start_period().map(i64::from),
            }),
        })
        .collect();
    normalise(TaskDef {
        family: t.family().unwrap_or_default().to_string(),
        cpu: t.cpu().map(str::to_string),
        memory: t.memory().map(str::to_string),
        network_mode: t.network_mode().map(|m| m.as_str().to_string()),
        execution_role_arn: t.execution_role_arn().map(str::to_string),
        task_role_arn: t.task_role_arn().map(str::to_string),
        requires_compatibilities: t
            .requires_compatibilities()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        container_definitions: containers,
    })
}

/// The RegisterTaskDefinition input of a canonical task definition.
pub fn container_definitions(
    td: &TaskDef,
) -> Result<Vec<aws_sdk_ecs::types::ContainerDefinition>, String> {
    use aws_sdk_ecs::types as t;
    let mut out = Vec::new();
    for c in &td.container_definitions {
        let mut b = t::ContainerDefinition::builder()
            .name(&c.name)
            .image(&c.image)
            .cpu(c.cpu.unwrap_or(0) as i32)
            .essential(c.essential.unwrap_or(true))
            .set_memory(c.memory.map(|m| m as i32))
            .set_memory_reservation(c.memory_reservation.map(|m| m as i32));
        if !c.command.is_empty() {
            b = b.set_command(Some(c.command.clone()));
        }
        for p in &c.port_mappings {
            b = b.port_mappings(
                t::PortMapping::builder()
                    .set_container_port(p.container_port.map(|v| v as i32))
                    .set_host_port(p.host_port.map(|v| v as i32))
                    .set_protocol(p.protocol.as_deref().map(t::TransportProtocol::from))
                    .build(),
            );
        }
        for e in &c.environment {
            b = b.environment(
                t::KeyValuePair::builder()
                    .name(&e.name)
                    .value(&e.value)
                    .build(),
            );
        }
        for s in &c.secrets {
            b = b.secrets(
                t::Secret::builder()
                    .name(&s.name)
                    .value_from(&s.value_from)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        if let Some(l) = &c.log_configuration {
            b = b.log_configuration(
                t::LogConfiguration::builder()
                    .log_driver(t::LogDriver::from(l.log_driver.as_str()))
                    .set_options(
                        (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
                    )
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        if let Some(h) = &c.health_check {
            b = b.health_check(
                t::HealthCheck::builder()
                    .set_command(Some(h.command.clone()))
                    .set_interval(h.interval.map(|v| v as i32))
                    .set_timeout(h.timeout.map(|v| v as i32))
                    .set_retries(h.retries.map(|v| v as i32))
                    .set_start_period(h.start_period.map(|v| v as i32))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        out.push(b.build());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DescribeTaskDefinition's `taskDefinition` as real AWS returns it for a task definition
    /// registered from the spec below: env reordered, defaults filled, read-only fields, empty
    /// arrays, units converted.
    const AWS_DESCRIBED: &str = r#"{
      "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web-staging:7",
      "containerDefinitions": [
        {
          "name": "web",
          "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.2.0",
          "cpu": 0,
          "memory": 512,
          "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
          "essential": true,
          "environment": [
            {"name": "Z_LAST", "value": "z"},
            {"name": "A_FIRST", "value": "a"}
          ],
          "mountPoints": [],
          "volumesFrom": [],
          "secrets": [
            {"name": "DB_USER", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf:username::"},
            {"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf:password::"}
          ],
          "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web"}, "secretOptions": []},
          "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 30, "timeout": 5, "retries": 3},
          "systemControls": []
        },
        {
          "name": "sidecar",
          "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sidecar:1",
          "cpu": 0,
          "memoryReservation": 64,
          "portMappings": [],
          "essential": false,
          "environment": [],
          "mountPoints": [],
          "volumesFrom": [],
          "systemControls": []
        }
      ],
      "family": "web-staging",
      "taskRoleArn": "arn:aws:iam::123456789012:role/web",
      "networkMode": "awsvpc",
      "revision": 7,
      "volumes": [],
      "status": "ACTIVE",
      "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}],
      "placementConstraints": [],
      "compatibilities": ["EC2", "FARGATE"],
      "requiresCompatibilities": ["FARGATE"],
      "cpu": "256",
      "memory": "1024",
      "registeredAt": "2025-06-01T10:00:00.000Z",
      "registeredBy": "arn:aws:iam::123456789012:user/ci"
    }"#;

    /// What the spec gives (as written by a user): env in another order, no defaults, units.
    fn spec_side() -> TaskDef {
        normalise(TaskDef {
            family: "web-staging".into(),
            cpu: Some("0.25 vCPU".into()),
            memory: Some("1 GB".into()),
            network_mode: Some("awsvpc".into()),
            execution_role_arn: Some(String::new()),
            task_role_arn: Some("arn:aws:iam::123456789012:role/web".into()),
            requires_compatibilities: vec!["FARGATE".into()],
            container_definitions: vec![
                ContainerDef {
                    name: "web".into(),
                    image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.2.0".into(),
                    memory: Some(512),
                    port_mappings: vec![PortMap {
                        container_port: Some(8080),
                        ..Default::default()
                    }],
                    environment: vec![
                        NameValue {
                            name: "A_FIRST".into(),
                            value: "a".into(),
                        },
                        NameValue {
                            name: "Z_LAST".into(),
                            value: "z".into(),
                        },
                    ],
                    secrets: vec![
                        SecretRef {
                            name: "DB_PASSWORD".into(),
                            value_from: value_from(
                                "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf",
                                Some("password"),
                            ),
                        },
                        SecretRef {
                            name: "DB_USER".into(),
                            value_from: value_from(
                                "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf",
                                Some("username"),
                            ),
                        },
                    ],
                    log_configuration: Some(LogConfig {
                        log_driver: "awslogs".into(),
                        options: [("awslogs-group".to_string(), "/ecs/web".to_string())].into(),
                    }),
                    health_check: Some(Health {
                        command: vec!["CMD-SHELL".into(), "true".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ContainerDef {
                    name: "sidecar".into(),
                    image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sidecar:1".into(),
                    memory_reservation: Some(64),
                    essential: Some(false),
                    ..Default::default()
                },
            ],
        })
    }

    fn described(json: &str) -> TaskDef {
        normalise(serde_json::from_str(json).expect("AWS JSON decodes"))
    }

    #[test]
    fn aws_described_task_definition_has_no_diff() {
        let live = described(AWS_DESCRIBED);
        let want = spec_side();
        assert_eq!(fields(&live), fields(&want));
        assert_eq!(content_hash(&live), content_hash(&want));
    }

    #[test]
    fn moto_style_response_with_nulls_and_verbatim_units_has_no_diff() {
        // moto keeps "0.25 vCPU" verbatim, writes nulls, and omits hostPort/protocol.
        let moto = AWS_DESCRIBED
            .replace(r#""cpu": "256""#, r#""cpu": "0.25 vCPU""#)
            .replace(r#""memory": "1024""#, r#""memory": "1 GB""#)
            .replace(
                r#"{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}"#,
                r#"{"containerPort": 8080}"#,
            )
            .replace(
                r#""registeredAt": "2025-06-01T10:00:00.000Z""#,
                r#""registeredAt": null"#,
            )
            .replace(
                r#""systemControls": []"#,
                r#""systemControls": null, "command": null"#,
            );
        assert_eq!(fields(&described(&moto)), fields(&spec_side()));
    }

    #[test]
    fn a_real_change_shows_in_the_container_definitions_and_the_hash() {
        let live = described(AWS_DESCRIBED);
        let mut want = spec_side();
        want.container_definitions[1].image = want.container_definitions[1]
            .image
            .replace("web:1.2.0", "web:1.3.0");
        let want = normalise(want);
        assert_ne!(content_hash(&live), content_hash(&want));
        let (a, b) = (fields(&live), fields(&want));
        let changed: Vec<&String> = a.keys().filter(|k| a[*k] != b[*k]).collect();
        assert_eq!(changed, ["container_definitions"]);
    }

    #[test]
    fn fields_round_trip() {
        let td = spec_side();
        assert_eq!(from_fields(&fields(&td)).unwrap(), td);
    }

    #[test]
    fn units_convert() {
        assert_eq!(units("0.25 vCPU"), "256");
        assert_eq!(units("1 vcpu"), "1024");
        assert_eq!(units("2 GB"), "2048");
        assert_eq!(units("0.5GB"), "512");
        assert_eq!(units(" 512 "), "512");
        assert_eq!(units("512 MB"), "512");
    }

    #[test]
    fn bridge_mode_does_not_fill_host_port() {
        let td = normalise(TaskDef {
            family: "f".into(),
            container_definitions: vec![ContainerDef {
                name: "c".into(),
                port_mappings: vec![PortMap {
                    container_port: Some(80),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(td.network_mode.as_deref(), Some("bridge"));
        assert_eq!(td.container_definitions[0].port_mappings[0].host_port, None);
        assert_eq!(
            td.container_definitions[0].port_mappings[0]
                .protocol
                .as_deref(),
            Some("tcp")
        );
    }
}
