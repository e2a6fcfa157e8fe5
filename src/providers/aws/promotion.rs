//! The promotion rule (#6): a service of an environment with `promote_from: S` may move only
//! to images that the service of the same name in S runs, stable (one deployment, running =
//! desired), right now. Checked live at plan time (the evidence goes into the step's notes, a
//! failure is a `promotion` finding of severity error) and again at apply time, before
//! anything is written. An override (`plan --promotion-override ENV/SERVICE=REASON`) turns a
//! failure into a warning; apply then needs an approval with `--override`.
//!
//! The steps the rule covers are a promoted environment's service creates, and its service
//! updates that change the images the service runs. At plan time each gets a note starting
//! with [`NOTE`]; apply checks the same steps again, found from the steps (never the notes).
//!
//! Images are compared by digest, whether each side names a tag or a digest (#19). What the
//! promoted service wants: its pinned digest, or the digest ECR gives its tag now (the one it
//! would deploy). What the source service runs: the digests its RUNNING tasks report
//! (DescribeTasks: ECS resolves a tag once, when a deployment starts); where no task reports
//! one (moto starts no tasks), its task definition's pinned digest, or the digest ECR gives
//! its tag now provided that digest was pushed no later than the source's deployment started.
//! A tag pushed again since then moved away from what the source runs: which image it runs is
//! unknown, and the rule refuses. Not detected on that fallback: a tag moved back to an image
//! pushed before the deployment started, or pushed again within the same second (moto's push
//! times are whole seconds).

use std::collections::{BTreeMap, BTreeSet};

use super::Aws;
use super::ecr_image::ImageState;
use super::ecs_service::ServiceView;
use super::task_definition as td;
use crate::address::Address;
use crate::live::{Desired, LiveState, Observed, Value};
use crate::plan::{Action, Plan, PromotionOverride};
use crate::policy::Finding;
use crate::spec::DesiredState;
use crate::spec::config::Severity;
use crate::spec::task_definition::Image;

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

/// An image reference of a task definition as an ECR image (`REPO@DIGEST` or `REPO:TAG`).
fn parse(image: &str) -> Image {
    let s = short(image);
    if let Some((repository, digest)) = s.split_once('@') {
        return Image {
            repository: repository.into(),
            tag: None,
            digest: Some(digest.into()),
        };
    }
    match s.rsplit_once(':') {
        Some((repository, tag)) => Image {
            repository: repository.into(),
            tag: Some(tag.into()),
            digest: None,
        },
        None => Image {
            repository: s.into(),
            tag: Some("latest".into()),
            digest: None,
        },
    }
}

/// A RUNNING task of the source service, as DescribeTasks reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningTask {
    pub task_definition: String,
    /// (container name, the image digest it reports, if any)
    pub digests: Vec<(String, Option<String>)>,
}

/// `arn:…:task-definition/FAMILY:REV` and `FAMILY:REV` name the same revision.
fn same_revision(a: &str, b: &str) -> bool {
    let tail = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    tail(a) == tail(b)
}

/// The digests the running tasks of `task_definition` report for `container`: `None` unless
/// every one of them reports one (no tasks, as on moto, or a task still pulling its image).
pub fn task_digests(
    tasks: &[RunningTask],
    task_definition: &str,
    container: &str,
) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for t in tasks
        .iter()
        .filter(|t| same_revision(&t.task_definition, task_definition))
    {
        match t.digests.iter().find(|(name, _)| name == container) {
            Some((_, Some(d))) if !d.is_empty() => out.insert(d.clone()),
            _ => return None,
        };
    }
    (!out.is_empty()).then_some(out)
}

/// How the digest of an image the source service runs is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum How {
    /// Its running tasks report it (ECS resolves a tag once, when a deployment starts).
    Tasks,
    /// The task definition names the digest.
    Pinned,
    /// ECR's digest for the tag the task definition names, pushed before the service's
    /// deployment started (so the tag has not moved to another push since).
    Tag,
}

impl How {
    fn text(self) -> &'static str {
        match self {
            How::Tasks => "digest reported by its running tasks",
            How::Pinned => "digest pinned in its task definition",
            How::Tag => "digest of its tag, pushed before its deployment started",
        }
    }
}

/// One image a service runs, with its digest where it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ran {
    reference: String,
    digest: Result<(String, How), String>,
}

impl Ran {
    fn describe(&self) -> String {
        match &self.digest {
            Ok((d, How::Pinned)) if self.reference.ends_with(d.as_str()) => self.reference.clone(),
            Ok((d, _)) => format!("{} ({d})", self.reference),
            Err(why) => format!("{} (image unknown: {why})", self.reference),
        }
    }
}

/// What the source service runs, by digest: from its running tasks where they report
/// digests, else from the task definition (a pinned digest, or the digest its tag names now
/// in ECR, provided that digest was pushed before the deployment started: a tag pushed again
/// since then moved away from what the service runs).
async fn source_images(
    aws: &Aws,
    source: &str,
    cluster: &str,
    name: &str,
    view: &ServiceView,
    running: &td::TaskDef,
) -> Vec<Ran> {
    let task_definition = view.task_definition.clone().unwrap_or_default();
    let tasks = match aws.running_tasks(cluster, name).await {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::warn!(target: "reconcile::aws", cluster, service = name, "{e}: digests from ECR instead");
            Vec::new()
        }
    };
    let started = view
        .deployments
        .iter()
        .find(|d| d.status == "PRIMARY")
        .and_then(|d| d.created_at);
    let mut out = Vec::new();
    for c in &running.container_definitions {
        let reference = short(&c.image).to_string();
        let image = parse(&c.image);
        let digest = if let Some(seen) = task_digests(&tasks, &task_definition, &c.name) {
            if seen.len() == 1 {
                Ok((seen.into_iter().next().expect("one"), How::Tasks))
            } else {
                Err(format!(
                    "its tasks run {} different images: {}",
                    seen.len(),
                    seen.into_iter().collect::<Vec<_>>().join(", ")
                ))
            }
        } else if let Some(d) = &image.digest {
            Ok((d.clone(), How::Pinned))
        } else {
            match aws.image_pushed(&image).await {
                Ok(Some((d, pushed))) => match (pushed, started) {
                    (Some(pushed), Some(started)) if pushed <= started => Ok((d, How::Tag)),
                    (Some(_), Some(_)) => Err(format!(
                        "the tag now names {d}, pushed after {source}'s deployment started, so the tag moved since {source} rolled out; pin {source}'s image by digest"
                    )),
                    _ => Err(format!(
                        "the tag now names {d}, and ECS or ECR gave no time to tell whether it moved since {source}'s deployment started"
                    )),
                },
                Ok(None) => Err("ECR no longer has the image".into()),
                Err(e) => Err(e),
            }
        };
        out.push(Ran { reference, digest });
    }
    out
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
    // Every counterpart read at once: DescribeServices in chunks of 10 per cluster.
    let counterparts: Vec<(String, String)> = addresses
        .iter()
        .filter_map(|a| match a {
            Address::Service { env, service } => counterpart(state, env, service).ok(),
            _ => None,
        })
        .map(|c| (c.spec.cluster.clone(), c.spec.service_name().to_string()))
        .collect();
    let running = aws.services_running(counterparts).await;
    let mut out = Vec::new();
    for address in addresses {
        let Address::Service { env, service } = address else {
            continue;
        };
        let outcome = check_one(aws, state, desired, &digests, &running, env, service).await;
        out.push(Checked {
            address: address.clone(),
            outcome,
        });
    }
    out
}

/// The service of the environment `env` is promoted from, with the same name.
fn counterpart<'a>(
    state: &'a DesiredState,
    env: &str,
    service: &str,
) -> Result<&'a crate::spec::Declared<crate::spec::ecs_service::EcsService>, String> {
    let source = source_of(state, env).ok_or_else(|| format!("{env} has no promote_from"))?;
    state
        .services
        .iter()
        .find(|s| s.spec.environment == source && s.spec.name == service)
        .ok_or_else(|| format!("{source} declares no service {service}"))
}

/// Services of source environments and what they run, by (cluster, name).
type Running = BTreeMap<(String, String), Result<Option<(ServiceView, td::TaskDef)>, String>>;

async fn check_one(
    aws: &Aws,
    state: &DesiredState,
    desired: &[Desired],
    digests: &BTreeMap<String, String>,
    running: &Running,
    env: &str,
    service: &str,
) -> Result<String, String> {
    let source = source_of(state, env).ok_or_else(|| format!("{env} has no promote_from"))?;
    let counterpart = counterpart(state, env, service)?;
    let wanted = wanted_images(desired, env, service).ok_or_else(|| {
        format!("the task definition of {env}/{service} is not in this run: plan again")
    })?;
    let cluster = &counterpart.spec.cluster;
    let name = counterpart.spec.service_name();
    let (view, running) = running
        .get(&(cluster.clone(), name.to_string()))
        .cloned()
        .unwrap_or_else(|| Err("not read".into()))
        .map_err(|e| format!("{source}/{service} could not be read: {e}"))?
        .ok_or_else(|| {
            format!("{source}/{service} does not run (no service {name} in cluster {cluster})")
        })?;
    let status = format!(
        "{}/{} running, {} deployment(s)",
        view.running_count,
        view.desired_count,
        view.deployments.len()
    );
    let stable = view.deployments.len() == 1 && view.running_count == view.desired_count;

    // What the promoted service wants, by digest: pinned, resolved in this run, or asked now.
    let unresolved: Vec<Image> = wanted
        .iter()
        .map(|w| parse(w))
        .filter(|i| i.digest.is_none() && !digests.contains_key(&i.reference()))
        .collect();
    let asked = if unresolved.is_empty() {
        BTreeMap::new()
    } else {
        aws.resolve_images(&unresolved).await
    };
    let want: Vec<Ran> = wanted
        .iter()
        .map(|w| {
            let image = parse(w);
            let digest = match (&image.digest, digests.get(&image.reference())) {
                (Some(d), _) => Ok((d.clone(), How::Pinned)),
                (None, Some(d)) => Ok((d.clone(), How::Tag)),
                (None, None) => match asked.get(&image) {
                    Some(ImageState::Found { digest, .. }) => Ok((digest.clone(), How::Tag)),
                    Some(ImageState::Missing(why) | ImageState::Unknown(why)) => Err(why.clone()),
                    None => Err("not resolved".into()),
                },
            };
            Ran {
                reference: short(w).to_string(),
                digest,
            }
        })
        .collect();
    if let Some(w) = want.iter().find(|w| w.digest.is_err()) {
        return Err(format!("{env}/{service} wants {}", w.describe()));
    }

    let have = source_images(aws, source, cluster, name, &view, &running).await;
    let describe = |images: &[Ran]| -> String {
        images
            .iter()
            .map(Ran::describe)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = |w: &Ran, h: &Ran| {
        parse(&h.reference).repository == parse(&w.reference).repository
            && matches!((&h.digest, &w.digest), (Ok((a, _)), Ok((b, _))) if a == b)
    };
    let missing: Vec<Ran> = want
        .iter()
        .filter(|w| !have.iter().any(|h| same(w, h)))
        .cloned()
        .collect();
    if !missing.is_empty() {
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
    let matched: Vec<Ran> = have
        .iter()
        .filter(|h| want.iter().any(|w| same(w, h)))
        .cloned()
        .collect();
    let how: Vec<&str> = matched
        .iter()
        .filter_map(|h| h.digest.as_ref().ok().map(|(_, how)| *how))
        .collect::<BTreeSet<How>>()
        .into_iter()
        .map(How::text)
        .collect();
    Ok(format!(
        "{source}/{service} runs {} stable, {}/{} running ({})",
        describe(&matched),
        view.running_count,
        view.desired_count,
        how.join("; ")
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
    fn references_parse_as_ecr_images() {
        let tagged = parse("1.dkr.ecr.r.amazonaws.com/app:1.4.3");
        assert_eq!(tagged.reference(), "app:1.4.3");
        assert_eq!(tagged.digest, None);
        let pinned = parse("1.dkr.ecr.r.amazonaws.com/app@sha256:abc");
        assert_eq!(pinned.repository, "app");
        assert_eq!(pinned.digest.as_deref(), Some("sha256:abc"));
        assert_eq!(parse("app").reference(), "app:latest");
        assert_eq!(parse("localhost:5000/app:1").reference(), "app:1");
    }

    fn task(td: &str, digests: &[(&str, Option<&str>)]) -> RunningTask {
        RunningTask {
            task_definition: td.into(),
            digests: digests
                .iter()
                .map(|(n, d)| (n.to_string(), d.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn task_digests_count_only_when_every_task_of_the_revision_reports_one() {
        let arn = "arn:aws:ecs:r:1:task-definition/app-staging:3";
        // No tasks (moto): unknown from tasks.
        assert_eq!(task_digests(&[], "app-staging:3", "app"), None);
        let a = task(arn, &[("app", Some("sha256:a"))]);
        let b = task(arn, &[("app", Some("sha256:b"))]);
        let pulling = task(arn, &[("app", None)]);
        let old = task(
            "arn:aws:ecs:r:1:task-definition/app-staging:2",
            &[("app", Some("sha256:o"))],
        );
        assert_eq!(
            task_digests(&[a.clone(), old.clone()], "app-staging:3", "app"),
            Some(BTreeSet::from(["sha256:a".to_string()]))
        );
        assert_eq!(task_digests(&[a.clone(), pulling], arn, "app"), None);
        assert_eq!(task_digests(std::slice::from_ref(&a), arn, "sidecar"), None);
        assert_eq!(task_digests(&[a, b], arn, "app").map(|s| s.len()), Some(2));
        assert_eq!(task_digests(&[old], arn, "app"), None);
    }
}
