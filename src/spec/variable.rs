//! CI/CD variables of a GitLab project, and GitLab's masking rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A project CI/CD variable, identified by (`key`, `environment_scope`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub key: String,
    #[serde(default = "any_scope")]
    pub environment_scope: String,
    #[serde(default)]
    pub variable_type: VariableType,
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub masked: bool,
    /// Masked and hidden: the value can never be read back (set at creation only).
    #[serde(default)]
    pub hidden: bool,
    /// No `$VAR` expansion.
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub description: Option<String>,
    /// A non-secret literal value. Exactly one of `value` and `from` is set.
    #[serde(default)]
    pub value: Option<String>,
    /// A value read from AWS Secrets Manager at plan time (never stored or printed).
    #[serde(default)]
    pub from: Option<SecretSource>,
}

fn any_scope() -> String {
    "*".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VariableType {
    #[default]
    EnvVar,
    File,
}

/// A reference to a value in AWS Secrets Manager.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Secret name, declared under `secrets:`.
    pub secret: String,
    /// JSON key inside the secret's value (left out: the whole value).
    #[serde(default)]
    pub key: Option<String>,
}

/// Why GitLab would refuse to mask `value`, if it would (`Ci::Maskable`).
pub fn masking_problem(value: &str, raw: bool) -> Option<&'static str> {
    if value.chars().count() < 8 {
        return Some("it is shorter than 8 characters");
    }
    if value.chars().any(char::is_whitespace) {
        return Some("it contains whitespace");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=/@:.~-".contains(c);
    if !raw && !value.chars().all(allowed) {
        return Some("it has characters outside [a-zA-Z0-9_+=/@:.~-]");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::masking_problem;

    #[test]
    fn masking_rules_follow_gitlab() {
        assert_eq!(
            masking_problem("short", false),
            Some("it is shorter than 8 characters")
        );
        assert_eq!(
            masking_problem("has space inside", false),
            Some("it contains whitespace")
        );
        assert!(masking_problem("abc$defgh", false).is_some());
        assert_eq!(masking_problem("abc$defgh", true), None);
        assert_eq!(masking_problem("AKIA/abc+def=gh@x:y.z~-_", false), None);
    }
}
