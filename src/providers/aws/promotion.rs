//! The promotion rule (#6): a service of an environment with `promote_from: S` may move only
//! to images that the service of the same name in S runs, stable (one deployment, running =
//! desired), right now. Checked live at plan time (the evidence goes into the step's notes, a
//! failure is a `promotion` finding of severity error) and again at apply time, before
//! anything is written. An override (`plan --promotion-override ENV/SERVICE=REASON`) turns a
//! failure into a warning; apply then needs an approval with `--override`.
//!
//! The steps the rule covers are a promoted environment's service creates, and its service
//! updates that change the images the service runs. At plan time each gets a note starting
//! with [`NOTE`]; apply re-checks exactly the steps of the approved plan that carry one.

use std::collections::{BTreeMap, BTreeSet};

use super::Aws;
use super::task_definition as td;
use crate::address::Address;
use crate::live::{Desired, LiveState, Observed, Value};
use crate::plan::{Action, Plan, PromotionOverride};
use crate::policy::Finding;
use crate::spec::DesiredState;
use crate::spec::config::Severity;

/// The prefix of the evidence note of a step the rule covers.
pub const NOTE: &str = "promotion: ";

/// The outcome of the rule for one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub address: Address,
    /// The evidence when the rule holds, else why it does not.
    pub outcome: Result<String, String>,
}

/// The source environment of `env` (its `promote_from`).
fn source_of<'a>(state: &'a DesiredState, env: &str) -> Option<&'a str> {
    state
        .config
        .environments
        .get(env)
        .and_then(|e| e.promote_from.as_deref())
}

fn images_of(t: &td::TaskDef) -> BTreeSet<String> {
    t.container_definitions
        .iter()
        .map(|c| c.image.clone())
        .collect()
}

/// The desired images of a service's task definition.
fn wanted_images(desired: &[Desired], env: &str, service: &str) -> Option<BTreeSet<String>> {
    let address = Address::TaskDefinition {
        env: env.into(),
        service: service.into(),
    };
    let d = desired.iter().find(|d| d.address == address)?;
    td::from_fields(&d.fields).ok().map(|t| images_of(&t))
}

/// `REGISTRY/REPO:TAG` → `REPO:TAG` (as `aws.ecr_image` addresses name them).
fn short(image: &str) -> &str {
    image.split_once('/').map_or(image, |(_, r)| r)
}

fn repository(image: &str) -> &str {
    let s = short(image);
    s.split(['@', ':']).next().unwrap_or(s)
}

/// The digest an image resolves to, where known: its own `@sha256:…`, else the digest ECR
/// gave for its tag in this run.
fn digest<'a>(image: &'a str, digests: &'a BTreeMap<String, String>) -> Option<&'a str> {
    match image.split_once('@') {
        Some((_, d)) => Some(d),
        None => digests.get(short(image)).map(String::as_str),
    }
}

/// Plan time: the service steps of promoted environments that change what the service runs
/// (a create, or an update to a task definition with other images than the live one).
pub fn subjects(
    state: &DesiredState,
    plan: &Plan,
    desired: &[Desired],
    live: &LiveState,
) -> Vec<Address> {
    plan.steps
        .iter()
        .filter(|step| {
            let Address::Service { env, service } = &step.address else {
                return false;
            };
            if source_of(state, env).is_none() {
                return false;
            }
            match step.action {
                Action::Create => true,
                Action::Update | Action::Replace => {
                    if !step.changes.iter().any(|c| c.field == "task_definition") {
                        return false;
                    }
                    let live_images = match live.objects.get(&Address::TaskDefinition {
                        env: env.clone(),
                        service: service.clone(),
                    }) {
                        Some(Observed::Present(l)) => {
                            td::from_fields(&l.fields).ok().map(|t| images_of(&t))
                        }
                        _ => None,
                    };
                    live_images.is_none() || live_images != wanted_images(desired, env, service)
                }
                Action::Delete => false,
            }
        })
        .map(|s| s.address.clone())
        .collect()
}

/// Apply time: the steps of an approved plan that the rule covered when it was made.
pub fn marked(plan: &Plan) -> Vec<Address> {
    plan.steps
        .iter()
        .filter(|s| s.notes.iter().any(|n| n.starts_with(NOTE)))
        .map(|s| s.address.clone())
        .collect()
}

/// Checks the rule, live, for each of `addresses` (service addresses of promoted environments).
/// `desired` must hold their task definitions and the `aws.ecr_image` resources (digests).
pub async fn check(
    aws: &Aws,
    state: &DesiredState,
    desired: &[Desired],
    addresses: &[Address],
) -> Vec<Checked> {
    let digests: BTreeMap<String, String> = desired
        .iter()
        .filter_map(|d| match (&d.address, d.fields.get("digest")) {
            (Address::EcrImage { image }, Some(Value::Str(digest))) => {
                Some((image.clone(), digest.clone()))
            }
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for address in addresses {
        let Address::Service { env, service } = address else {
            continue;
        };
        let outcome = check_one(aws, state, desired, &digests, env, service).await;
        out.push(Checked {
            address: address.clone(),
            outcome,
        });
    }
    out
}

async fn check_one(
    aws: &Aws,
    state: &DesiredState,
    desired: &[Desired],
    digests: &BTreeMap<String, String>,
    env: &str,
    service: &str,
) -> Result<String, String> {
    let source = source_of(state, env).ok_or_else(|| format!("{env} has no promote_from"))?;
    let counterpart = state
        .services
        .iter()
        .find(|s| s.spec.environment == source && s.spec.name == service)
        .ok_or_else(|| format!("{source} declares no service {service}"))?;
    let wanted = wanted_images(desired, env, service).ok_or_else(|| {
        format!("the task definition of {env}/{service} is not in this run: plan again")
    })?;
    let cluster = &counterpart.spec.cluster;
    let name = counterpart.spec.service_name();
    let (view, running) = aws
        .service_running(cluster, name)
        .await
        .map_err(|e| format!("{source}/{service} could not be read: {e}"))?
        .ok_or_else(|| {
            format!("{source}/{service} does not run (no service {name} in cluster {cluster})")
        })?;
    let have = images_of(&running);
    let describe = |images: &BTreeSet<String>| -> String {
        images
            .iter()
            .map(|i| match digest(i, digests).filter(|_| !i.contains('@')) {
                Some(d) => format!("{} ({d})", short(i)),
                None => short(i).to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let status = format!(
        "{}/{} running, {} deployment(s)",
        view.running_count,
        view.desired_count,
        view.deployments.len()
    );
    let stable = view.deployments.len() == 1 && view.running_count == view.desired_count;
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|w| {
            !have.contains(*w)
                && !have.iter().any(|h| {
                    repository(h) == repository(w)
                        && digest(h, digests).is_some()
                        && digest(h, digests) == digest(w, digests)
                })
        })
        .collect();
    if !missing.is_empty() {
        let missing: BTreeSet<String> = missing.into_iter().cloned().collect();
        return Err(format!(
            "{env}/{service} wants {}, which {source}/{service} does not run (it runs {}; {status})",
            describe(&missing),
            describe(&have)
        ));
    }
    if !stable {
        return Err(format!(
            "{source}/{service} runs {} but is not stable ({status})",
            describe(&have)
        ));
    }
    Ok(format!(
        "{source}/{service} runs {} stable, {}/{} running",
        describe(&wanted),
        view.running_count,
        view.desired_count
    ))
}

/// Records the outcomes in the plan: the evidence (or the failure) as a note of each step, and
/// a `promotion` finding for each failure: an error, or a warning when overridden.
pub fn record(plan: &mut Plan, state: &DesiredState, checked: &[Checked]) {
    for c in checked {
        let Address::Service { env, service } = &c.address else {
            continue;
        };
        let overridden = PromotionOverride::find(&plan.overrides, env, service).cloned();
        let note = match (&c.outcome, &overridden) {
            (Ok(evidence), _) => format!("{NOTE}{evidence}"),
            (Err(why), Some(o)) => format!("{NOTE}OVERRIDDEN ({}): {why}", o.reason),
            (Err(why), None) => format!("{NOTE}REFUSED: {why}"),
        };
        if let Some(step) = plan.steps.iter_mut().find(|s| s.address == c.address) {
            step.notes.push(note);
        }
        if let Err(why) = &c.outcome {
            let location = state
                .services
                .iter()
                .find(|s| &s.spec.environment == env && &s.spec.name == service)
                .map(|s| state.sources.locate(s.origin))
                .unwrap_or_default();
            let (severity, message) = match &overridden {
                Some(o) => (Severity::Warn, format!("{why} (overridden: {})", o.reason)),
                None => (
                    Severity::Error,
                    format!(
                        "{why}: apply the image to the source environment first, or override with `reconcile plan --promotion-override {env}/{service}=REASON` (needs an approval with --override)"
                    ),
                ),
            };
            plan.policies.push(Finding {
                rule: "promotion".into(),
                severity,
                address: c.address.clone(),
                message,
                location,
            });
        }
    }
}

/// Validates overrides against the desired state: each names a service of a promoted
/// environment.
pub fn validate_overrides(
    state: &DesiredState,
    overrides: &[PromotionOverride],
) -> Result<(), String> {
    for o in overrides {
        if source_of(state, &o.env).is_none() {
            return Err(format!(
                "--promotion-override {}/{}: {} has no promote_from in reconcile.yaml",
                o.env, o.service, o.env
            ));
        }
        if !state
            .services
            .iter()
            .any(|s| s.spec.environment == o.env && s.spec.name == o.service)
        {
            return Err(format!(
                "--promotion-override {}/{}: {} declares no service {}",
                o.env, o.service, o.env, o.service
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_compare_by_reference_and_digest() {
        let digests = BTreeMap::from([("app:1.4.3".to_string(), "sha256:abc".to_string())]);
        assert_eq!(short("1.dkr.ecr.r.amazonaws.com/app:1.4.3"), "app:1.4.3");
        assert_eq!(
            repository("1.dkr.ecr.r.amazonaws.com/app@sha256:abc"),
            "app"
        );
        assert_eq!(
            digest("1.dkr.ecr.r.amazonaws.com/app:1.4.3", &digests),
            Some("sha256:abc")
        );
        assert_eq!(
            digest("1.dkr.ecr.r.amazonaws.com/app@sha256:abc", &digests),
            Some("sha256:abc")
        );
        assert_eq!(digest("1.dkr.ecr.r.amazonaws.com/app:9", &digests), None);
    }
}
