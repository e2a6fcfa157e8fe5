//! CI/CD variables, identified by (project, key, environment_scope); every read and write
//! names the scope (`filter[environment_scope]`).
//!
//! Values: a literal compares as text. A value from Secrets Manager, and any masked or hidden
//! live value, compares as a keyed fingerprint (`hmac-sha256:...`), so no value is ever shown.
//! Hidden variables read back as `value: null`: reconcile keeps the fingerprint of the value it
//! last wrote at the end of the variable's description (` [reconcile fp=hmac-sha256:...]`), so
//! the next run, on any machine with the same key, can tell whether the value changed. A hidden
//! variable whose description has no valid marker (edited in GitLab) has an unknown value: it
//! reads as [`UNKNOWN_HIDDEN`], which differs from every desired value, so the plan rewrites it
//! (an update that sends the value again and restores the marker) with a note saying why
//! ([`note_unknown_hidden`]). Not detectable: a hidden value changed in GitLab with its marker
//! left intact.

use gitlab::api::projects::variables::{ProjectVariableFilter, ProjectVariableType};
use std::collections::BTreeMap;

use gitlab::api::{self, AsyncQuery};
use serde_json::Value as Json;

use super::{ApiErr, GitlabClient, SecretValues, want_bool, want_str};
use crate::address::Address;
use crate::live::{Desired, Fields, Live, Value};
use crate::plan::{Action, Step};
use crate::providers::StepError;
use crate::secret::{FingerprintKey, SecretValue};
use crate::spec::variable::{Variable, VariableType};

const MARKER: &str = " [reconcile fp=";

/// The live value of a hidden variable without a valid marker: unknown, never equal to a
/// desired value (a fingerprint has another form).
pub const UNKNOWN_HIDDEN: &str = "unknown (hidden, no reconcile marker)";

/// Notes the steps that rewrite a hidden variable because its value is unknown.
pub fn note_unknown_hidden(plan: &mut crate::plan::Plan) {
    for step in &mut plan.steps {
        if !matches!(step.address, Address::Variable { .. })
            || !matches!(step.action, Action::Update | Action::Replace)
        {
            continue;
        }
        let unknown = step.changes.iter().any(|c| {
            c.field == "value"
                && matches!(&c.before, Some(Value::Sensitive { sensitive }) if sensitive == UNKNOWN_HIDDEN)
        });
        if unknown {
            step.notes.push(
                "the hidden value cannot be read and the description has no valid `[reconcile fp=…]` marker (edited in GitLab?): the value is written again and the marker restored".into(),
            );
        }
    }
}

pub fn desired(
    project: &str,
    v: &Variable,
    secrets: &SecretValues,
    key: &FingerprintKey,
) -> Desired {
    let mut fields = Fields::from([
        (
            "variable_type".into(),
            Value::str(if v.variable_type == VariableType::File {
                "file"
            } else {
                "env_var"
            }),
        ),
        ("protected".into(), Value::Bool(v.protected)),
        ("masked".into(), Value::Bool(v.masked || v.hidden)),
        ("raw".into(), Value::Bool(v.raw)),
        ("hidden".into(), Value::Bool(v.hidden)),
    ]);
    if let Some(d) = &v.description {
        fields.insert("description".into(), Value::str(d));
    }
    let mut secret_values = std::collections::BTreeMap::new();
    match (&v.value, &v.from) {
        (Some(literal), _) => {
            fields.insert("value".into(), Value::str(literal));
        }
        (None, Some(source)) => {
            if let Some(value) = secrets.get(source) {
                fields.insert(
                    "value".into(),
                    Value::Sensitive {
                        sensitive: key.fingerprint(value),
                    },
                );
                secret_values.insert("value".to_string(), value.clone());
            }
        }
        (None, None) => {}
    }
    Desired {
        address: Address::Variable {
            project: project.into(),
            key: v.key.clone(),
            scope: v.environment_scope.clone(),
        },
        fields,
        replace_on: &["hidden"],
        secrets: secret_values,
    }
}

fn split_marker(description: &str) -> (&str, Option<&str>) {
    match description.rfind(MARKER) {
        Some(at) if description.ends_with(']') => (
            &description[..at],
            Some(&description[at + MARKER.len()..description.len() - 1]),
        ),
        _ => (description, None),
    }
}

pub fn live(
    project: &str,
    j: &Json,
    desired: &[&Desired],
    key: &FingerprintKey,
) -> (Address, Live) {
    let address = Address::Variable {
        project: project.into(),
        key: j["key"].as_str().unwrap_or_default().into(),
        scope: j["environment_scope"].as_str().unwrap_or("*").into(),
    };
    let masked = j["masked"].as_bool().unwrap_or(false);
    let hidden = j["hidden"].as_bool().unwrap_or(false);
    let wants_sensitive = desired
        .iter()
        .find(|d| d.address == address)
        .and_then(|d| d.fields.get("value"))
        .is_some_and(Value::is_sensitive);
    let (description, marker) = split_marker(j["description"].as_str().unwrap_or_default());
    let mut fields = Fields::from([
        (
            "variable_type".into(),
            Value::str(j["variable_type"].as_str().unwrap_or("env_var")),
        ),
        (
            "protected".into(),
            Value::Bool(j["protected"].as_bool().unwrap_or(false)),
        ),
        ("masked".into(), Value::Bool(masked)),
        (
            "raw".into(),
            Value::Bool(j["raw"].as_bool().unwrap_or(false)),
        ),
        ("hidden".into(), Value::Bool(hidden)),
        ("description".into(), Value::str(description)),
    ]);
    match j["value"].as_str() {
        Some(value) if masked || hidden || wants_sensitive => {
            let fp = key.fingerprint(&SecretValue::new(value));
            fields.insert("value".into(), Value::Sensitive { sensitive: fp });
        }
        Some(value) => {
            fields.insert("value".into(), Value::str(value));
        }
        None => {
            let sensitive = match marker.filter(|fp| crate::secret::is_fingerprint(fp)) {
                Some(fp) => Some(fp.to_string()),
                None if hidden => Some(UNKNOWN_HIDDEN.to_string()),
                // A null value of a variable that is not hidden: nothing to compare.
                None => None,
            };
            if let Some(sensitive) = sensitive {
                fields.insert("value".into(), Value::Sensitive { sensitive });
            }
        }
    }
    (
        address,
        Live {
            fields,
            meta: Default::default(),
        },
    )
}

pub async fn read(client: &GitlabClient, path: &str) -> Result<Vec<Json>, ApiErr> {
    let endpoint = gitlab::api::projects::variables::ProjectVariables::builder()
        .project(path)
        .build()
        .expect("valid endpoint");
    api::paged(endpoint, api::Pagination::All)
        .query_async(client)
        .await
}

/// The value to write: the literal, or the secret whose fingerprint the plan recorded.
fn value(
    step: &Step,
    secrets: Option<&BTreeMap<String, SecretValue>>,
    key: &FingerprintKey,
) -> Result<String, StepError> {
    match step.desired.get("value") {
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(Value::Sensitive { sensitive }) => {
            let secret = secrets
                .and_then(|s| s.get("value"))
                .ok_or_else(|| StepError::MissingSecret(step.address.to_string()))?;
            if &key.fingerprint(secret) != sensitive {
                return Err(StepError::Precondition(
                    "the secret's value changed since the plan: plan again".into(),
                ));
            }
            Ok(secret.expose().to_string())
        }
        _ => Err(StepError::MissingSecret(step.address.to_string())),
    }
}

/// The description to write; a hidden variable's carries the fingerprint of its value.
fn description(step: &Step, key: &FingerprintKey) -> Option<String> {
    let base = want_str(step, "description").map(str::to_owned);
    if want_bool(step, "hidden") != Some(true) {
        return base;
    }
    let fp = match step.desired.get("value") {
        Some(Value::Sensitive { sensitive }) => sensitive.clone(),
        Some(Value::Str(s)) => key.fingerprint(&SecretValue::new(s.clone())),
        _ => return base,
    };
    Some(format!("{}{MARKER}{fp}]", base.unwrap_or_default()))
}

fn var_type(step: &Step) -> ProjectVariableType {
    if want_str(step, "variable_type") == Some("file") {
        ProjectVariableType::File
    } else {
        ProjectVariableType::EnvVar
    }
}

/// One variable, identified by (project, key, environment scope), and what a step writes to it.
struct Target<'a> {
    client: &'a GitlabClient,
    project: &'a str,
    key: &'a str,
    scope: &'a str,
    step: &'a Step,
    value: String,
    description: Option<String>,
}

impl Target<'_> {
    fn filter(&self) -> ProjectVariableFilter<'_> {
        ProjectVariableFilter::builder()
            .environment_scope(self.scope)
            .build()
            .expect("valid filter")
    }

    fn flag(&self, field: &str) -> bool {
        want_bool(self.step, field).unwrap_or(false)
    }

    async fn read(&self) -> Result<Option<Json>, ApiErr> {
        let endpoint = gitlab::api::projects::variables::ProjectVariable::builder()
            .project(self.project)
            .key(self.key)
            .filter(self.filter())
            .build()
            .expect("valid endpoint");
        match endpoint.query_async(self.client).await {
            Ok(j) => Ok(Some(j)),
            Err(e) if super::is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create(&self) -> Result<(), ApiErr> {
        let mut c = gitlab::api::projects::variables::CreateProjectVariable::builder();
        c.project(self.project)
            .key(self.key)
            .value(self.value.as_str())
            .environment_scope(self.scope)
            .variable_type(var_type(self.step))
            .protected(self.flag("protected"))
            .raw(self.flag("raw"));
        if self.flag("hidden") {
            c.masked_and_hidden(true);
        } else {
            c.masked(self.flag("masked"));
        }
        if let Some(d) = &self.description {
            c.description(d.as_str());
        }
        api::ignore(c.build().expect("valid endpoint"))
            .query_async(self.client)
            .await
    }

    async fn update(&self) -> Result<(), ApiErr> {
        let mut u = gitlab::api::projects::variables::UpdateProjectVariable::builder();
        u.project(self.project)
            .key(self.key)
            .value(self.value.as_str())
            .filter(self.filter())
            .variable_type(var_type(self.step))
            .protected(self.flag("protected"))
            .raw(self.flag("raw"));
        if !self.flag("hidden") {
            // GitLab refuses any change of visibility on a hidden variable, even a no-op one.
            u.masked(self.flag("masked"));
        }
        if let Some(d) = &self.description {
            u.description(d.as_str());
        }
        api::ignore(u.build().expect("valid endpoint"))
            .query_async(self.client)
            .await
    }

    async fn delete(&self) -> Result<(), ApiErr> {
        let d = gitlab::api::projects::variables::DeleteProjectVariable::builder()
            .project(self.project)
            .key(self.key)
            .filter(self.filter())
            .build()
            .expect("valid endpoint");
        match api::ignore(d).query_async(self.client).await {
            Err(e) if !super::is_not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

pub async fn apply(
    client: &GitlabClient,
    address: (&str, &str, &str),
    step: &Step,
    secrets: Option<&BTreeMap<String, SecretValue>>,
    key: &FingerprintKey,
) -> Result<(), StepError> {
    let (project, key_name, scope) = address;
    let mut target = Target {
        client,
        project,
        key: key_name,
        scope,
        step,
        value: String::new(),
        description: None,
    };
    if step.action == Action::Delete {
        return target.delete().await.map_err(Into::into);
    }
    target.value = value(step, secrets, key)?;
    target.description = description(step, key);
    match step.action {
        Action::Create => {
            // "(KEY) has already been taken", or an unknown outcome that did create it: make it match.
            if super::create_once(|| target.create(), || target.read()).await? {
                target.update().await?;
            }
            Ok(())
        }
        Action::Update => target.update().await.map_err(Into::into),
        Action::Replace => {
            target.delete().await?;
            target.create().await.map_err(Into::into)
        }
        Action::Delete => unreachable!("handled above"),
    }
}
