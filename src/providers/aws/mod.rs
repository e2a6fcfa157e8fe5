//! AWS: configuration of the SDK clients, Secrets Manager (values and ARNs), ECR images, ECS
//! task definitions and services ([`Aws`], the provider of every `aws.*` address).
//!
//! AWS is reached through the standard environment only (`AWS_ENDPOINT_URL`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, profiles, instance
//! roles: the SDK's default chains), and that environment overrides `reconcile.yaml`, whose
//! `aws.region` is only the fallback when no region variable is set.
//!
//! Must never: read credentials from spec files, or set an endpoint in code (that would hide
//! `AWS_ENDPOINT_URL_<SERVICE>`, which the SDK resolves per client).

pub mod ecr_image;
pub mod ecs_service;
pub mod promotion;
mod provider;
pub mod rollout;
pub mod secret;
pub mod task_definition;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub use provider::{Aws, note_revisions};

use crate::spec::config::AwsSettings;

/// The SDK configuration every AWS client is built from, read from the process environment.
pub async fn sdk_config(settings: Option<&AwsSettings>) -> SdkConfig {
    sdk_config_with(settings, &|name| std::env::var(name).ok()).await
}

/// [`sdk_config`] with the environment injected (tests pass a closure over a map instead of
/// mutating the process environment). `env` decides the region; everything else (endpoint,
/// credentials, retries) comes from the SDK's default chains over the process environment.
pub async fn sdk_config_with(
    settings: Option<&AwsSettings>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region(settings, env) {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// The region: `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `aws.region` from `reconcile.yaml`.
/// `None` leaves the choice to the SDK's default chain (profile, instance metadata).
pub fn region(
    settings: Option<&AwsSettings>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .filter_map(env)
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
        .or_else(|| settings.map(|s| s.region.clone()))
}

/// Counts every AWS request attempt (SDK retries included) and the failed ones in the process
/// metrics (`reconcile_api_requests_total{provider="aws"}`).
#[derive(Debug)]
pub(crate) struct ApiMetrics;

impl aws_sdk_ecs::config::Intercept for ApiMetrics {
    fn name(&self) -> &'static str {
        "reconcile-api-metrics"
    }

    fn read_after_attempt(
        &self,
        context: &aws_sdk_ecs::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _: &aws_sdk_ecs::config::RuntimeComponents,
        _: &mut aws_sdk_ecs::config::ConfigBag,
    ) -> Result<(), aws_sdk_ecs::error::BoxError> {
        crate::metrics::api_request("aws");
        let failed = context.response().is_none_or(|r| {
            let status = r.status().as_u16();
            status == 429 || status >= 500
        });
        if failed {
            crate::metrics::api_error("aws");
        }
        Ok(())
    }
}

/// The AWS operations reconcile sends, for request counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    DescribeServices,
    DescribeTaskDefinition,
    ListTaskDefinitions,
    RegisterTaskDefinition,
    CreateService,
    UpdateService,
    BatchGetImage,
    DescribeImages,
    ListTasks,
    DescribeTasks,
}

/// Requests sent, per operation (SDK retries not counted).
#[derive(Debug, Default)]
pub struct Counters {
    counts: [AtomicU64; 10],
}

impl Counters {
    pub fn add(&self, c: Counter) {
        self.counts[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }
}

/// A snapshot of the AWS requests of a run, per operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub describe_services: u64,
    pub describe_task_definition: u64,
    pub list_task_definitions: u64,
    pub register_task_definition: u64,
    pub create_service: u64,
    pub update_service: u64,
    pub batch_get_image: u64,
    /// The promotion rule: when the source environment's image tag was pushed.
    pub describe_images: u64,
    /// The promotion rule: the digests the source environment's tasks run.
    pub list_tasks: u64,
    pub describe_tasks: u64,
    pub list_secrets: u64,
    pub get_secret_value: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.describe_services
            + self.describe_task_definition
            + self.list_task_definitions
            + self.register_task_definition
            + self.create_service
            + self.update_service
            + self.batch_get_image
            + self.describe_images
            + self.list_tasks
            + self.describe_tasks
            + self.list_secrets
            + self.get_secret_value
    }
}

impl fmt::Display for RequestCounts {
    /// `total=9 DescribeServices=2 ...` (every operation, zeros included: stable for tests).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total={} DescribeServices={} DescribeTaskDefinition={} ListTaskDefinitions={} \
             RegisterTaskDefinition={} CreateService={} UpdateService={} BatchGetImage={} \
             DescribeImages={} ListTasks={} DescribeTasks={} ListSecrets={} GetSecretValue={}",
            self.total(),
            self.describe_services,
            self.describe_task_definition,
            self.list_task_definitions,
            self.register_task_definition,
            self.create_service,
            self.update_service,
            self.batch_get_image,
            self.describe_images,
            self.list_tasks,
            self.describe_tasks,
            self.list_secrets,
            self.get_secret_value
        )
    }
}

/// An SDK error as text: the service's code and message, or the transport failure. (ECS and
/// ECR responses hold no secret values: container secrets are ARNs.)
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                (None, Some(message)) => message.to_owned(),
                (None, None) => "service error without a code".to_owned(),
            }
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

/// Checks, once, that AWS answers and that the credentials are for the account
/// `reconcile.yaml` names (`sts:GetCallerIdentity`). One line on failure: unreachable endpoint,
/// missing credentials, or another account. Returns the account id.
pub async fn preflight(settings: Option<&AwsSettings>) -> Result<String, String> {
    let config = sdk_config(settings).await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL_STS")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok()
        .filter(|e| !e.is_empty());
    let where_ = match (&endpoint, config.region()) {
        (Some(e), _) => format!("AWS at {e}"),
        (None, Some(r)) => format!("AWS STS in {r}"),
        (None, None) => "AWS STS".to_string(),
    };
    let sts = aws_sdk_sts::Client::new(&config);
    let identity = match sts.get_caller_identity().send().await {
        Ok(i) => i,
        Err(e) => {
            let detail = DisplayErrorContext(&e).to_string();
            let cause = match &e {
                SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => {
                    "no connection (refused, unreachable or timed out); check AWS_ENDPOINT_URL and the network".to_string()
                }
                _ if detail.contains("credentials") || detail.contains("Credentials") => {
                    "no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where an instance role applies".to_string()
                }
                SdkError::ServiceError(s) => format!(
                    "{}: {}",
                    s.err().code().unwrap_or("error"),
                    s.err().message().unwrap_or("no message")
                ),
                _ => detail.lines().next().unwrap_or("failed").to_string(),
            };
            return Err(format!(
                "cannot verify the AWS credentials with {where_}: {cause}"
            ));
        }
    };
    let account = identity.account().unwrap_or_default().to_string();
    if let Some(want) = settings.and_then(|s| s.account_id.as_deref())
        && want != account
    {
        return Err(format!(
            "the AWS credentials are for account {account}, but reconcile.yaml names aws.account_id {want}: use credentials of account {want}, or correct aws.account_id"
        ));
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn settings(region: &str) -> AwsSettings {
        AwsSettings {
            region: region.into(),
            account_id: None,
        }
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Sync {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn environment_overrides_settings() {
        let s = settings("eu-west-3");
        let region = |vars: &[(&str, &str)], s: Option<&AwsSettings>| region(s, &env(vars));
        assert_eq!(
            region(&[("AWS_REGION", "us-east-1")], Some(&s)).as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            region(&[("AWS_DEFAULT_REGION", "us-west-2")], Some(&s)).as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            region(
                &[
                    ("AWS_REGION", "us-east-1"),
                    ("AWS_DEFAULT_REGION", "us-west-2")
                ],
                Some(&s)
            )
            .as_deref(),
            Some("us-east-1")
        );
        assert_eq!(region(&[], Some(&s)).as_deref(), Some("eu-west-3"));
        assert_eq!(
            region(&[("AWS_REGION", " ")], Some(&s)).as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(region(&[], None), None);
    }
}
