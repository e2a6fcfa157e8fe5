//! AWS Secrets Manager: secret values for GitLab variables (`from: {secret, key}`), and secret
//! ARNs for ECS task definitions (which reference secrets without reading them).
//!
//! Owns: one GetSecretValue per distinct secret name, extraction of a JSON key, name → ARN
//! resolution with paged ListSecrets, and counts of the requests made.
//!
//! Must never: put a secret value (or any part of a secret string) into an error, a log line or
//! a `Debug` output. Values leave this module only as [`SecretValue`]. serde_json errors quote
//! their input, so their text is dropped, never propagated.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use futures::stream::{self, StreamExt};
use tracing::debug;

use crate::secret::SecretValue;
use crate::spec::variable::SecretSource;

/// GetSecretValue requests in flight at once.
const CONCURRENCY: usize = 8;
/// ListSecrets page size (the API's maximum).
const PAGE_SIZE: i32 = 100;
/// Values per ListSecrets filter (the API's maximum).
const FILTER_VALUES: usize = 10;

/// Why a secret (or a key in it) could not be read. No variant holds a value or any part of it.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{name}` does not exist in Secrets Manager: create it or fix the name")]
    NotFound { name: String },
    #[error(
        "secret `{name}` has no key `{key}`: add `{key}` to the secret's JSON object or fix `key`"
    )]
    MissingKey { name: String, key: String },
    #[error(
        "secret `{name}` is not a JSON object, so it has no key `{key}`: store a JSON object \
         in it, or leave out `key` to use the whole value"
    )]
    NotJson { name: String, key: String },
    #[error(
        "key `{key}` of secret `{name}` holds a JSON {found}, not a string or a number: \
         store the value as a string"
    )]
    NotText {
        name: String,
        key: String,
        found: &'static str,
    },
    #[error(
        "secret `{name}` holds a binary value (SecretBinary): reconcile reads text secrets \
         only; store the value as a string"
    )]
    Binary { name: String },
    #[error(
        "Secrets Manager {operation} for secret `{name}` failed: check the AWS credentials, \
         the region and the `secretsmanager:{operation}` permission"
    )]
    Api {
        name: String,
        operation: &'static str,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

/// An AWS API failure, reduced to text that cannot contain a secret value: the service's error
/// code and message, or the transport failure.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The service's error code (`AccessDeniedException`, `ThrottlingException`, ...), if any.
    pub code: Option<String>,
    message: String,
}

impl ApiError {
    /// For operations whose successful response holds a value (GetSecretValue): a response
    /// that could not be parsed is described without its details, which may quote the body.
    fn from_sdk<E, R>(err: &SdkError<E, R>, response_may_hold_values: bool) -> Self
    where
        E: ProvideErrorMetadata + Error + 'static,
        R: fmt::Debug,
    {
        match err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().map(str::to_owned);
                let message = match (e.code(), e.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.to_owned(),
                    (None, Some(message)) => message.to_owned(),
                    (None, None) => "service error without a code".to_owned(),
                };
                Self { code, message }
            }
            SdkError::ResponseError(_) if response_may_hold_values => Self {
                code: None,
                message: "the response could not be parsed (details withheld: the response \
                          may hold a secret value)"
                    .to_owned(),
            },
            other => Self {
                code: None,
                message: DisplayErrorContext(other).to_string(),
            },
        }
    }
}

/// How many requests a [`Secrets`] has sent, per operation (SDK retries not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub get_secret_value: u64,
    pub list_secrets: u64,
}

#[derive(Debug, Default)]
struct Counters {
    get_secret_value: AtomicU64,
    list_secrets: AtomicU64,
}

/// Secrets Manager client. Clones share the request counters.
#[derive(Clone, Debug)]
pub struct Secrets {
    client: Client,
    counters: Arc<Counters>,
}

impl Secrets {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            client: Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(config)
                    .interceptor(super::ApiMetrics)
                    .build(),
            ),
            counters: Arc::default(),
        }
    }

    /// Requests sent so far by this client and its clones.
    pub fn requests(&self) -> RequestCounts {
        RequestCounts {
            get_secret_value: self.counters.get_secret_value.load(Ordering::Relaxed),
            list_secrets: self.counters.list_secrets.load(Ordering::Relaxed),
        }
    }

    /// The value of every source: one GetSecretValue per distinct secret name (at most
    /// [`CONCURRENCY`] in flight), then the source's JSON `key` if it has one.
    pub async fn values(
        &self,
        sources: &[SecretSource],
    ) -> BTreeMap<SecretSource, Result<SecretValue, SecretError>> {
        let names: BTreeSet<&str> = sources.iter().map(|s| s.secret.as_str()).collect();
        let fetched: BTreeMap<&str, Result<SecretValue, Fetch>> = stream::iter(names)
            .map(|name| async move { (name, self.fetch(name).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        sources
            .iter()
            .map(|source| {
                let name = source.secret.as_str();
                let result = match &fetched[name] {
                    Ok(value) => extract(name, value, source.key.as_deref()),
                    Err(fetch) => Err(fetch.to_error(name)),
                };
                (source.clone(), result)
            })
            .collect()
    }

    async fn fetch(&self, name: &str) -> Result<SecretValue, Fetch> {
        self.counters
            .get_secret_value
            .fetch_add(1, Ordering::Relaxed);
        let output = match self.client.get_secret_value().secret_id(name).send().await {
            Ok(output) => output,
            Err(err) => {
                let not_found = err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception());
                debug!(secret = %name, not_found, "GetSecretValue failed");
                return Err(if not_found {
                    Fetch::NotFound
                } else {
                    Fetch::Api(ApiError::from_sdk(&err, true))
                });
            }
        };
        debug!(secret = %name, "Read secret value");
        match output.secret_string {
            Some(text) => Ok(SecretValue::new(text)),
            None if output.secret_binary.is_some() => Err(Fetch::Binary),
            // A secret without a current string or binary has no value to read.
            None => Err(Fetch::NotFound),
        }
    }

    /// The ARN of every name, without reading values: ListSecrets filtered by name prefixes
    /// (at most 10 per request, one per group of names sharing their first path segment),
    /// paged 100 at a time; names are then matched exactly. Names that are absent (or
    /// scheduled for deletion) are [`SecretError::NotFound`].
    pub async fn arns(&self, names: &[String]) -> BTreeMap<String, Result<String, SecretError>> {
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let mut out = BTreeMap::new();
        for chunk in prefixes(&wanted).chunks(FILTER_VALUES) {
            match self.list(chunk).await {
                Ok(found) => {
                    for name in wanted
                        .iter()
                        .filter(|n| chunk.iter().any(|p| n.starts_with(p)))
                    {
                        if out.contains_key(*name) {
                            continue;
                        }
                        let result = match found.get(*name) {
                            Some(arn) => Ok(arn.clone()),
                            None => Err(SecretError::NotFound {
                                name: name.to_string(),
                            }),
                        };
                        out.insert(name.to_string(), result);
                    }
                }
                Err(api) => {
                    for name in wanted
                        .iter()
                        .filter(|n| chunk.iter().any(|p| n.starts_with(p)))
                    {
                        out.entry(name.to_string())
                            .or_insert_with(|| Err(Fetch::Api(api.clone()).to_list_error(name)));
                    }
                }
            }
        }
        out
    }

    /// Every secret whose name starts with one of `prefixes`: name → ARN.
    async fn list(&self, prefixes: &[String]) -> Result<BTreeMap<String, String>, ApiError> {
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .set_values(Some(prefixes.to_vec()))
            .build();
        let mut found = BTreeMap::new();
        let mut next_token = None;
        loop {
            self.counters.list_secrets.fetch_add(1, Ordering::Relaxed);
            let page = self
                .client
                .list_secrets()
                .max_results(PAGE_SIZE)
                .filters(filter.clone())
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|err| ApiError::from_sdk(&err, false))?;
            for entry in page.secret_list() {
                if let (Some(name), Some(arn)) = (entry.name(), entry.arn()) {
                    found.insert(name.to_owned(), arn.to_owned());
                }
            }
            debug!(
                prefixes = ?prefixes,
                secrets = page.secret_list().len(),
                "Listed secrets page"
            );
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                return Ok(found);
            }
        }
    }
}

/// The outcome of reading one secret name, shared by every source that names it.
enum Fetch {
    NotFound,
    Binary,
    Api(ApiError),
}

impl Fetch {
    fn to_error(&self, name: &str) -> SecretError {
        self.error(name, "GetSecretValue")
    }

    fn to_list_error(&self, name: &str) -> SecretError {
        self.error(name, "ListSecrets")
    }

    fn error(&self, name: &str, operation: &'static str) -> SecretError {
        let name = name.to_owned();
        match self {
            Fetch::NotFound => SecretError::NotFound { name },
            Fetch::Binary => SecretError::Binary { name },
            Fetch::Api(api) => SecretError::Api {
                name,
                operation,
                source: Box::new(api.clone()),
            },
        }
    }
}

/// ListSecrets name filters covering `names`: names are grouped by their first path segment
/// (`staging/`), and each group is represented by its members' longest common prefix (a name
/// without `/` is its own group), so that few unrelated secrets match.
fn prefixes(names: &BTreeSet<&str>) -> Vec<String> {
    let mut groups: BTreeMap<&str, String> = BTreeMap::new();
    for name in names {
        let group = match name.find('/') {
            Some(i) => &name[..=i],
            None => name,
        };
        groups
            .entry(group)
            .and_modify(|prefix| {
                let common: usize = prefix
                    .chars()
                    .zip(name.chars())
                    .take_while(|(a, b)| a == b)
                    .map(|(a, _)| a.len_utf8())
                    .sum();
                prefix.truncate(common);
            })
            .or_insert_with(|| name.to_string());
    }
    groups.into_values().collect()
}

/// The value a source asks for: the whole secret string, or the string (or number, as text) at
/// `key` in the JSON object it holds.
fn extract(
    name: &str,
    secret: &SecretValue,
    key: Option<&str>,
) -> Result<SecretValue, SecretError> {
    let Some(key) = key else {
        return Ok(secret.clone());
    };
    let not_json = || SecretError::NotJson {
        name: name.to_owned(),
        key: key.to_owned(),
    };
    // The parse error is dropped on purpose: its text quotes the secret string.
    let serde_json::Value::Object(mut object) =
        serde_json::from_str(secret.expose()).map_err(|_| not_json())?
    else {
        return Err(not_json());
    };
    let found = match object.remove(key) {
        None => {
            return Err(SecretError::MissingKey {
                name: name.to_owned(),
                key: key.to_owned(),
            });
        }
        Some(serde_json::Value::String(text)) => return Ok(SecretValue::new(text)),
        Some(serde_json::Value::Number(number)) => return Ok(SecretValue::new(number.to_string())),
        Some(serde_json::Value::Null) => "null",
        Some(serde_json::Value::Bool(_)) => "boolean",
        Some(serde_json::Value::Array(_)) => "array",
        Some(serde_json::Value::Object(_)) => "object",
    };
    Err(SecretError::NotText {
        name: name.to_owned(),
        key: key.to_owned(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-Hunter2-xyz";

    fn get(secret: &str, key: Option<&str>) -> Result<String, SecretError> {
        extract("cloud-design/db", &SecretValue::new(secret), key).map(|v| v.expose().to_owned())
    }

    /// Display and Debug of the error and its whole source chain.
    fn texts(err: &SecretError) -> String {
        let mut out = format!("{err}\n{err:?}");
        let mut source = err.source();
        while let Some(e) = source {
            out.push_str(&format!("\n{e}\n{e:?}"));
            source = e.source();
        }
        out
    }

    #[test]
    fn whole_value_without_key() {
        assert_eq!(get(SECRET, None).unwrap(), SECRET);
        let json = format!(r#"{{"password": "{SECRET}"}}"#);
        assert_eq!(get(&json, None).unwrap(), json);
    }

    #[test]
    fn string_and_number_at_key() {
        let json = format!(r#"{{"password": "{SECRET}", "port": 5432, "ratio": 0.5}}"#);
        assert_eq!(get(&json, Some("password")).unwrap(), SECRET);
        assert_eq!(get(&json, Some("port")).unwrap(), "5432");
        assert_eq!(get(&json, Some("ratio")).unwrap(), "0.5");
    }

    #[test]
    fn errors_say_what_to_do_and_never_show_the_value() {
        let json = format!(r#"{{"password": "{SECRET}", "flag": true, "list": ["{SECRET}"]}}"#);
        let cases = [
            (get(&json, Some("user")), "has no key `user`"),
            (get(SECRET, Some("password")), "is not a JSON object"),
            (
                get(&format!(r#"{{"password": "{SECRET}""#), Some("password")),
                "is not a JSON object",
            ),
            (
                get(&format!(r#"["{SECRET}"]"#), Some("password")),
                "is not a JSON object",
            ),
            (
                get(&format!(r#""{SECRET}""#), Some("password")),
                "is not a JSON object",
            ),
            (get(&json, Some("flag")), "holds a JSON boolean"),
            (get(&json, Some("list")), "holds a JSON array"),
        ];
        for (result, expected) in cases {
            let err = result.unwrap_err();
            let text = texts(&err);
            assert!(text.contains(expected), "{text}");
            assert!(text.contains("cloud-design/db"), "{text}");
            for fragment in ["s3cr3t", "Hunter2", "xyz"] {
                assert!(!text.contains(fragment), "leaks `{fragment}`: {text}");
            }
        }
    }

    #[test]
    fn messages() {
        let name = "cloud-design/db".to_owned();
        assert_eq!(
            SecretError::NotFound { name: name.clone() }.to_string(),
            "secret `cloud-design/db` does not exist in Secrets Manager: create it or fix the name"
        );
        let api = SecretError::Api {
            name,
            operation: "GetSecretValue",
            source: Box::new(ApiError {
                code: Some("AccessDeniedException".into()),
                message: "AccessDeniedException: not allowed".into(),
            }),
        };
        assert_eq!(
            api.to_string(),
            "Secrets Manager GetSecretValue for secret `cloud-design/db` failed: check the AWS \
             credentials, the region and the `secretsmanager:GetSecretValue` permission"
        );
        assert_eq!(
            api.source().unwrap().to_string(),
            "AccessDeniedException: not allowed"
        );
    }

    #[test]
    fn prefixes_group_by_first_segment() {
        let names: BTreeSet<&str> = [
            "staging/web/db",
            "staging/web/api",
            "staging/worker/db",
            "production/web/db",
            "plain",
        ]
        .into_iter()
        .collect();
        assert_eq!(
            prefixes(&names),
            ["plain", "production/web/db", "staging/w"]
        );
        let many: Vec<String> = (0..230).map(|i| format!("app/s{i:03}")).collect();
        let many: BTreeSet<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(prefixes(&many), ["app/s"]);
        assert!(prefixes(&BTreeSet::new()).is_empty());
    }
}
