//! Built-in compliance policies, evaluated on the desired state (pure): shown in every plan,
//! run alone by `reconcile check`. A finding of severity `error` blocks apply; `warn` is shown.
//! Severities come from `policies:` in reconcile.yaml (`off` disables a rule).

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::spec::DesiredState;
use crate::spec::config::Severity;
use crate::spec::source::Origin;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub address: Address,
    pub message: String,
    /// `file:line:column` of the spec that the finding is about.
    pub location: String,
}

/// Keys that look like they hold a secret.
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "PRIVATE_KEY",
    "API_KEY",
    "ACCESS_KEY",
];

/// Whether an environment is production: named so, or promoted from another one.
fn is_production(state: &DesiredState, env: &str) -> bool {
    matches!(env, "production" | "prod")
        || state
            .config
            .environments
            .get(env)
            .is_some_and(|e| e.promote_from.is_some())
}

/// A tag that names one build for good: a version like `1.4.2` or `v2.0.1-rc1`.
fn immutable_tag(tag: &str) -> bool {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let core = t.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Evaluates every enabled rule.
pub fn evaluate(state: &DesiredState) -> Vec<Finding> {
    let p = &state.config.policies;
    let mut findings: Vec<(Origin, Finding)> = Vec::new();
    let mut add =
        |rule: &str, severity: Severity, address: Address, origin: Origin, message: String| {
            if severity != Severity::Off {
                let location = state.sources.locate(origin);
                findings.push((
                    origin,
                    Finding {
                        rule: rule.into(),
                        severity,
                        address,
                        message,
                        location,
                    },
                ));
            }
        };

    for project in &state.projects {
        let spec = &project.spec;
        let path = spec.full_path().to_lowercase();
        let branch = spec.default_branch.as_deref().unwrap_or("main");
        let protected = spec
            .protected_branches
            .items
            .iter()
            .find(|b| b.name == branch);
        match protected {
            None => add(
                "default_branch_protected",
                p.default_branch_protected,
                Address::Project { path: path.clone() },
                project.origin,
                format!(
                    "the default branch `{branch}` of {path} is not protected: add it under `protected_branches`"
                ),
            ),
            Some(b) if b.allow_force_push => add(
                "default_branch_protected",
                p.default_branch_protected,
                Address::ProtectedBranch {
                    project: path.clone(),
                    branch: branch.into(),
                },
                state
                    .origins
                    .get(&Address::ProtectedBranch {
                        project: path.clone(),
                        branch: branch.into(),
                    })
                    .copied()
                    .unwrap_or(project.origin),
                format!(
                    "force push is allowed on the default branch `{branch}` of {path}: set `allow_force_push: false`"
                ),
            ),
            Some(_) => {}
        }
        for v in &spec.variables.items {
            let key = v.key.to_uppercase();
            if SECRET_WORDS.iter().any(|w| key.contains(w)) && !(v.masked && v.protected) {
                let address = Address::Variable {
                    project: path.clone(),
                    key: v.key.clone(),
                    scope: v.environment_scope.clone(),
                };
                let origin = state
                    .origins
                    .get(&address)
                    .copied()
                    .unwrap_or(project.origin);
                add(
                    "secret_variables_masked",
                    p.secret_variables_masked,
                    address,
                    origin,
                    format!(
                        "`{}` looks like a secret: make it `masked: true` and `protected: true`, with its value `from:` Secrets Manager",
                        v.key
                    ),
                );
            }
        }
    }

    for user in &state.users {
        let u = &user.spec;
        if u.admin
            && !p
                .admin_users
                .allowed
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&u.username))
        {
            add(
                "admin_users",
                p.admin_users.severity,
                Address::User {
                    username: u.username.to_lowercase(),
                },
                user.origin,
                format!(
                    "`{}` is an admin but not in policies.admin_users.allowed ({})",
                    u.username,
                    p.admin_users.allowed.join(", ")
                ),
            );
        }
    }

    for service in &state.services {
        let s = &service.spec;
        if !is_production(state, &s.environment) {
            continue;
        }
        let address = Address::Service {
            env: s.environment.clone(),
            service: s.name.clone(),
        };
        for c in &s.task_definition.containers {
            if let (Some(tag), None) = (&c.image.tag, &c.image.digest)
                && !immutable_tag(tag)
            {
                add(
                    "immutable_production_images",
                    p.immutable_production_images,
                    address.clone(),
                    service.origin,
                    format!(
                        "container `{}` of {} runs the mutable tag `{tag}`: use a version tag or a digest",
                        c.name, s.name
                    ),
                );
            }
        }
        let breaker = s
            .deployment
            .as_ref()
            .and_then(|d| d.circuit_breaker.as_ref())
            .is_some_and(|c| c.enable);
        if !breaker {
            add(
                "production_circuit_breaker",
                p.production_circuit_breaker,
                address,
                service.origin,
                format!(
                    "{} in {} has no deployment circuit breaker: set `deployment.circuit_breaker: {{enable: true, rollback: true}}`",
                    s.name, s.environment
                ),
            );
        }
    }
    findings.sort_by(|a, b| (a.0, &a.1.rule).cmp(&(b.0, &b.1.rule)));
    findings.into_iter().map(|(_, f)| f).collect()
}

/// Text for `check` and the plan: one line per finding.
pub fn render(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            let level = if f.severity == Severity::Error {
                "error"
            } else {
                "warn "
            };
            format!("  {level} [{}] {}: {}\n", f.rule, f.location, f.message)
        })
        .collect()
}

pub fn errors(findings: &[Finding]) -> usize {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count()
}

#[cfg(test)]
mod tests {
    use super::immutable_tag;

    #[test]
    fn version_tags_are_immutable_others_are_not() {
        for t in ["1.4.2", "v2.0.1", "1.0", "2.0.1-rc1"] {
            assert!(immutable_tag(t), "{t}");
        }
        for t in ["latest", "main", "stable", "1", "v1", "1.x"] {
            assert!(!immutable_tag(t), "{t}");
        }
    }
}
