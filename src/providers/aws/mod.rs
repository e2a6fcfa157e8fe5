//! AWS: configuration of the SDK clients, Secrets Manager (values and ARNs), and later ECR and ECS.
//!
//! AWS is reached through the standard environment only (`AWS_ENDPOINT_URL`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, profiles, instance
//! roles: the SDK's default chains), and that environment overrides `reconcile.yaml`, whose
//! `aws.region` is only the fallback when no region variable is set.
//!
//! Must never: read credentials from spec files, or set an endpoint in code (that would hide
//! `AWS_ENDPOINT_URL_<SERVICE>`, which the SDK resolves per client).

pub mod secret;

use aws_config::{BehaviorVersion, Region, SdkConfig};

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
