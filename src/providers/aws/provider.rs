//! The AWS provider: owns every `aws.*` address (secrets and ECR images, referenced; ECS task
//! definitions and services, written).
//!
//! Reads, with API economy: ListSecrets pages of 100 (names → ARNs, never values), one
//! BatchGetImage per ECR repository, DescribeServices in chunks of 10 per cluster, and one
//! DescribeTaskDefinition per distinct revision (cached by ARN for the whole run: revisions are
//! immutable). A failed read is [`Observed::Unknown`], never absent.
//!
//! Writes, rate-limited on the client side (RegisterTaskDefinition 1/s, burst 20; Create and
//! UpdateService 5/s, burst 50): a task definition revision is registered only when no ACTIVE
//! revision of the family has the desired content; a service is created, or updated with only
//! the fields that differ, then watched until its rollout is stable. A service that needs a
//! replacement is never deleted: apply refuses the step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, DeploymentCircuitBreaker,
    DeploymentConfiguration, LaunchType, NetworkConfiguration, NetworkMode, TaskDefinitionStatus,
};
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::ecr_image::{self, ImageState};
use super::ecs_service::{self, INITIAL_COUNT, REPLACE_ON, ServiceView};
use super::rollout::{self, RolloutOptions, ServiceStatus};
use super::secret::{SecretError, Secrets};
use super::task_definition::{self as td, TaskDef};
use super::{Counter, Counters, RequestCounts, describe};
use crate::address::Address;
use crate::live::{Desired, Fields, Live, LiveState, Observed, Value};
use crate::plan::{Action, Plan, Step};
use crate::providers::{Provider, StepError};
use crate::spec::diagnostic::{self, Diagnostic};
use crate::spec::ecs_service::EcsService;
use crate::spec::source::Origin;
use crate::spec::task_definition::Image;
use crate::spec::{Declared, DesiredState, SpecErrors};

/// Names per DescribeServices (the API's limit; moto does not enforce it).
const DESCRIBE_SERVICES_BATCH: usize = 10;
/// DescribeTaskDefinition requests in flight at once.
const CONCURRENCY: usize = 8;
/// Newest ACTIVE revisions of a family inspected before registering a new one.
const REUSE_SCAN: usize = 20;

/// The AWS provider for one run.
pub struct Aws {
    ecs: aws_sdk_ecs::Client,
    ecr: aws_sdk_ecr::Client,
    secrets: Secrets,
    counters: Arc<Counters>,
    register_limit: DefaultDirectRateLimiter,
    service_limit: DefaultDirectRateLimiter,
    account: Option<String>,
    region: String,
    rollout: RolloutOptions,
    state: Mutex<RunState>,
    /// One task definition lookup-or-register at a time (never two registrations of the same
    /// content).
    register_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct RunState {
    /// Secrets and images, observed while computing the desired state.
    references: BTreeMap<Address, Observed>,
    /// Desired task definitions by content hash (apply registers them).
    task_defs: BTreeMap<String, TaskDef>,
    /// DescribeTaskDefinition results (normalised) by ARN or `family:revision`.
    described: HashMap<String, TaskDef>,
    /// Revisions found or registered in this run, by content hash.
    revisions: BTreeMap<String, String>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second).expect("non-zero"))
        .allow_burst(NonZeroU32::new(burst).expect("non-zero"))
}

/// Whether a service's environment is planned under `scope` (`--env`).
fn managed(scope: Option<&str>, env: &str) -> bool {
    scope.is_none_or(|s| s == env)
}

/// Whether the secrets and images a service references are planned under `scope`.
fn referenced(scope: Option<&str>, env: &str) -> bool {
    match scope {
        None | Some("aws") => true,
        Some(s) => s == env,
    }
}

fn api(e: String) -> StepError {
    StepError::Api {
        system: "AWS",
        message: e,
    }
}

fn want_str<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    match fields.get(name) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

fn want_int(fields: &Fields, name: &str) -> Option<i64> {
    match fields.get(name) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    }
}

fn want_bool(fields: &Fields, name: &str) -> bool {
    matches!(fields.get(name), Some(Value::Bool(true)))
}

fn want_list(fields: &Fields, name: &str) -> Vec<String> {
    match fields.get(name) {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The revision number at the end of a task definition ARN.
fn revision_of(arn: &str) -> u64 {
    arn.rsplit(':')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Plan notes for task definition steps: what a step registers, and the digest each image
/// tag resolves to (from the `aws.ecr_image` resources of `desired`).
pub fn note_revisions(plan: &mut Plan, desired: &[Desired]) {
    let digests: BTreeMap<String, &str> = desired
        .iter()
        .filter_map(|d| match (&d.address, want_str(&d.fields, "digest")) {
            (Address::EcrImage { image }, Some(digest)) => Some((image.clone(), digest)),
            _ => None,
        })
        .collect();
    for step in &mut plan.steps {
        if !matches!(step.address, Address::TaskDefinition { .. }) {
            continue;
        }
        let family = want_str(&step.desired, "family")
            .unwrap_or_default()
            .to_string();
        // Apply reuses an ACTIVE revision with the same content (a rollback to an earlier
        // image, say) instead of registering one: the note says both.
        let note = match step.action {
            Action::Update | Action::Create => format!(
                "registers a new revision of {family}, or reuses an ACTIVE one with the same content"
            ),
            _ => continue,
        };
        step.notes.push(note);
        if let Ok(t) = td::from_fields(&step.desired) {
            for c in &t.container_definitions {
                // `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG` → `REPO:TAG`
                let reference = c.image.split_once('/').map_or(c.image.as_str(), |(_, r)| r);
                if let Some(digest) = digests.get(reference).filter(|_| !reference.contains('@')) {
                    step.notes.push(format!("image {reference} is {digest}"));
                }
            }
        }
    }
}

impl Aws {
    pub fn new(config: &SdkConfig, account: Option<String>, rollout: RolloutOptions) -> Self {
        Self {
            ecs: aws_sdk_ecs::Client::from_conf(
                aws_sdk_ecs::config::Builder::from(config)
                    .interceptor(super::ApiMetrics)
                    .build(),
            ),
            ecr: aws_sdk_ecr::Client::from_conf(
                aws_sdk_ecr::config::Builder::from(config)
                    .interceptor(super::ApiMetrics)
                    .build(),
            ),
            secrets: Secrets::new(config),
            counters: Arc::default(),
            register_limit: RateLimiter::direct(quota(1, 20)),
            service_limit: RateLimiter::direct(quota(5, 50)),
            account,
            region: config
                .region()
                .map_or_else(|| "us-east-1".to_string(), |r| r.to_string()),
            rollout,
            state: Mutex::default(),
            register_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the desired state has anything for AWS under `scope`.
    pub fn in_scope(state: &DesiredState, scope: Option<&str>) -> bool {
        state
            .services
            .iter()
            .any(|s| referenced(scope, &s.spec.environment))
    }

    /// The AWS part of a plan: `None` when nothing in scope needs AWS (no client is built);
    /// otherwise the provider and its desired resources, or located spec errors (a missing
    /// secret or image).
    pub async fn plan_part(
        state: &DesiredState,
        scope: Option<&str>,
    ) -> Result<Option<(Aws, Vec<Desired>)>, SpecErrors> {
        if !Self::in_scope(state, scope) {
            return Ok(None);
        }
        let config = super::sdk_config(state.config.aws.as_ref()).await;
        let aws = Aws::new(
            &config,
            state.config.aws.as_ref().and_then(|a| a.account_id.clone()),
            RolloutOptions::from_env(&|k| std::env::var(k).ok()),
        );
        match aws.desired(state, scope).await {
            Ok(desired) => Ok(Some((aws, desired))),
            Err(diagnostics) => Err(SpecErrors {
                sources: state.sources.clone(),
                diagnostics,
                contacted: true,
            }),
        }
    }

    /// Requests sent so far, per operation.
    pub fn request_counts(&self) -> RequestCounts {
        let s = self.secrets.requests();
        RequestCounts {
            describe_services: self.counters.get(Counter::DescribeServices),
            describe_task_definition: self.counters.get(Counter::DescribeTaskDefinition),
            list_task_definitions: self.counters.get(Counter::ListTaskDefinitions),
            register_task_definition: self.counters.get(Counter::RegisterTaskDefinition),
            create_service: self.counters.get(Counter::CreateService),
            update_service: self.counters.get(Counter::UpdateService),
            batch_get_image: self.counters.get(Counter::BatchGetImage),
            describe_images: self.counters.get(Counter::DescribeImages),
            list_tasks: self.counters.get(Counter::ListTasks),
            describe_tasks: self.counters.get(Counter::DescribeTasks),
            list_secrets: s.list_secrets,
            get_secret_value: s.get_secret_value,
        }
    }

    fn log_counts(&self) {
        info!(target: "reconcile::aws", "AWS requests: {}", self.request_counts());
    }

    /// The desired AWS resources under `scope`: task definitions and services of the
    /// environments in scope, and the secrets (as ARNs) and images (with their digests) they
    /// reference. Secrets and images are checked here: a missing one is a spec error located
    /// at each reference.
    pub async fn desired(
        &self,
        state: &DesiredState,
        scope: Option<&str>,
    ) -> Result<Vec<Desired>, Vec<Diagnostic>> {
        let services: Vec<&Declared<EcsService>> = state
            .services
            .iter()
            .filter(|s| referenced(scope, &s.spec.environment))
            .collect();
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut images: BTreeMap<String, BTreeSet<Image>> = BTreeMap::new();
        for s in &services {
            for c in &s.spec.task_definition.containers {
                images
                    .entry(c.image.repository.clone())
                    .or_default()
                    .insert(c.image.clone());
                names.extend(c.secrets.values().map(|src| src.secret.clone()));
            }
        }
        let names: Vec<String> = names.into_iter().collect();
        let checks = images.iter().map(|(repo, set)| async move {
            let set: Vec<Image> = set.iter().cloned().collect();
            ecr_image::check(&self.ecr, &self.counters, repo, &set).await
        });
        let (arns, checked) = tokio::join!(self.secrets.arns(&names), join_all(checks));
        let checked: BTreeMap<Image, ImageState> = checked.into_iter().flatten().collect();

        // References in scope only: a secret shared with another environment (or with a
        // GitLab variable) is reported where this plan uses it. Spans are first tokens, so a
        // reference belongs to the nearest declaration before it (its task definition).
        let located = |address: &Address| -> Vec<Origin> {
            let owner_env = |o: &Origin| {
                state
                    .origins
                    .iter()
                    .filter(|(_, d)| d.file == o.file && d.span.start <= o.span.start)
                    .max_by_key(|(_, d)| d.span.start)
                    .and_then(|(a, _)| match a {
                        Address::Service { env, .. } | Address::TaskDefinition { env, .. } => {
                            Some(env.as_str())
                        }
                        _ => None,
                    })
            };
            state
                .references
                .get(address)
                .into_iter()
                .flatten()
                .filter(|o| owner_env(o).is_some_and(|env| referenced(scope, env)))
                .copied()
                .collect()
        };
        let mut diagnostics = Vec::new();
        let mut out = Vec::new();
        let mut references = BTreeMap::new();
        let mut reference = |address: Address, fields: Fields, observed: Observed| {
            out.push(Desired {
                address: address.clone(),
                fields,
                replace_on: &[],
                secrets: Default::default(),
            });
            references.insert(address, observed);
        };
        for (name, result) in &arns {
            let address = Address::Secret { name: name.clone() };
            match result {
                Ok(arn) => {
                    let fields = Fields::from([("arn".into(), Value::str(arn))]);
                    let live = Live {
                        fields: fields.clone(),
                        meta: Default::default(),
                    };
                    reference(address, fields, Observed::Present(live));
                }
                Err(e @ SecretError::NotFound { .. }) => {
                    for o in located(&address) {
                        diagnostics.push(Diagnostic::at(o.file, o.span, e.to_string()).help(
                            "create the secret in AWS Secrets Manager (reconcile references \
                             secrets, it never creates them), or fix the reference",
                        ));
                    }
                }
                Err(e) => {
                    let why = match std::error::Error::source(e) {
                        Some(source) => format!("{e}: {source}"),
                        None => e.to_string(),
                    };
                    reference(address, Fields::new(), Observed::Unknown(why));
                }
            }
        }
        let mut registries: BTreeMap<String, String> = BTreeMap::new();
        for (image, state) in &checked {
            let address = Address::EcrImage {
                image: image.reference(),
            };
            match state {
                ImageState::Found { digest, registry } => {
                    if !registry.is_empty() {
                        registries.insert(image.repository.clone(), registry.clone());
                    }
                    let fields = Fields::from([("digest".into(), Value::str(digest))]);
                    let live = Live {
                        fields: fields.clone(),
                        meta: Default::default(),
                    };
                    reference(address, fields, Observed::Present(live));
                }
                ImageState::Missing(why) => {
                    for o in located(&address) {
                        diagnostics.push(Diagnostic::at(o.file, o.span, why.clone()).help(
                            "push the image to ECR first (reconcile never builds or pushes \
                             images), or fix the repository, tag or digest",
                        ));
                    }
                }
                ImageState::Unknown(why) => {
                    reference(address, Fields::new(), Observed::Unknown(why.clone()));
                }
            }
        }
        if !diagnostics.is_empty() {
            diagnostic::sort(&mut diagnostics);
            diagnostics.dedup();
            return Err(diagnostics);
        }

        let arn_of = |name: &str| -> String {
            match arns.get(name) {
                Some(Ok(arn)) => arn.clone(),
                // Not resolved (the read failed): the secret is Unknown, so every task
                // definition using it is blocked and this value never reaches a plan step.
                _ => format!("unresolved:{name}"),
            }
        };
        let mut task_defs = BTreeMap::new();
        for s in services
            .iter()
            .filter(|s| managed(scope, &s.spec.environment))
        {
            let spec = &s.spec;
            // Every container of a service names its repository; the registry is the account
            // ECR answered for, else `aws.account_id`.
            let repo = spec
                .task_definition
                .containers
                .first()
                .map(|c| c.image.repository.as_str())
                .unwrap_or_default();
            let account = registries
                .get(repo)
                .cloned()
                .or_else(|| self.account.clone())
                .unwrap_or_else(|| "000000000000".into());
            let wanted = td::from_spec(spec, &td::registry(&account, &self.region), &arn_of);
            let service_ref = td::service_ref(&wanted);
            out.push(td::desired(&spec.environment, &spec.name, &wanted));
            out.push(ecs_service::desired(spec, &service_ref));
            task_defs.insert(td::content_hash(&wanted), wanted);
        }
        let mut st = self.state.lock().expect("not poisoned");
        st.references.extend(references);
        st.task_defs.extend(task_defs);
        Ok(out)
    }

    /// Reads the live state of the given desired AWS resources.
    async fn read(&self, desired: &[&Desired]) -> LiveState {
        let mut live = LiveState::default();
        {
            let st = self.state.lock().expect("not poisoned");
            for d in desired {
                if matches!(d.address, Address::Secret { .. } | Address::EcrImage { .. }) {
                    let observed =
                        st.references.get(&d.address).cloned().unwrap_or_else(|| {
                            Observed::Unknown("not resolved in this run".into())
                        });
                    live.objects.insert(d.address.clone(), observed);
                }
            }
        }

        // Services: DescribeServices in chunks of 10 per cluster, concurrently.
        let services: Vec<(&Desired, String, String)> = desired
            .iter()
            .copied()
            .filter(|d| matches!(d.address, Address::Service { .. }))
            .map(|d| {
                (
                    d,
                    want_str(&d.fields, "cluster")
                        .unwrap_or_default()
                        .to_string(),
                    want_str(&d.fields, "service_name")
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        let found = self
            .describe_many(services.iter().map(|(_, c, n)| (c.clone(), n.clone())))
            .await;

        // The revisions the services run: one DescribeTaskDefinition per distinct one.
        let described = self.describe_running(&found).await;

        let wanted: BTreeSet<&Address> = desired.iter().map(|d| &d.address).collect();
        for (d, cluster, name) in services {
            let Address::Service { env, service } = &d.address else {
                continue;
            };
            let td_address = Address::TaskDefinition {
                env: env.clone(),
                service: service.clone(),
            };
            let (svc, task) = match &found[&(cluster, name)] {
                Err(e) => (Observed::Unknown(e.clone()), Observed::Unknown(e.clone())),
                Ok(None) => (Observed::Absent, Observed::Absent),
                Ok(Some(view)) => {
                    let running = view.task_definition.clone().unwrap_or_default();
                    match described.get(&running) {
                        Some(Ok(t)) => {
                            let task = Live {
                                fields: td::fields(t),
                                meta: [("arn".to_string(), running.clone())].into(),
                            };
                            (
                                Observed::Present(ecs_service::live(view, &td::service_ref(t))),
                                Observed::Present(task),
                            )
                        }
                        Some(Err(e)) => {
                            let why =
                                format!("the task definition {running} could not be read: {e}");
                            (Observed::Unknown(why.clone()), Observed::Unknown(why))
                        }
                        None => {
                            let why = "the service runs no task definition".to_string();
                            (Observed::Unknown(why.clone()), Observed::Unknown(why))
                        }
                    }
                }
            };
            if wanted.contains(&d.address) {
                live.objects.insert(d.address.clone(), svc);
            }
            if wanted.contains(&td_address) {
                live.objects.insert(td_address, task);
            }
        }
        self.log_counts();
        live
    }

    /// DescribeServices for up to 10 names: existing services by name (INACTIVE ones and
    /// MISSING failures are absent; so is every service of a cluster that does not exist).
    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, ServiceView>, String> {
        self.counters.add(Counter::DescribeServices);
        let result = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(names.to_vec()))
            .send()
            .await;
        match result {
            Ok(rsp) => Ok(rsp
                .services()
                .iter()
                .map(ServiceView::from_sdk)
                .filter(ServiceView::exists)
                .map(|v| (v.service_name.clone(), v))
                .collect()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_cluster_not_found_exception()) =>
            {
                Ok(BTreeMap::new())
            }
            Err(e) => Err(format!("ECS DescribeServices failed: {}", describe(&e))),
        }
    }

    /// Services by (cluster, name): DescribeServices in chunks of 10 per cluster, concurrently.
    async fn describe_many(
        &self,
        services: impl IntoIterator<Item = (String, String)>,
    ) -> BTreeMap<(String, String), Result<Option<ServiceView>, String>> {
        let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (cluster, name) in services {
            let names = by_cluster.entry(cluster).or_default();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let reads = by_cluster.iter().flat_map(|(cluster, names)| {
            names
                .chunks(DESCRIBE_SERVICES_BATCH)
                .map(move |chunk| async move {
                    let result = self.describe_services(cluster, chunk).await;
                    (cluster.clone(), chunk.to_vec(), result)
                })
        });
        let mut found = BTreeMap::new();
        for (cluster, chunk, result) in join_all(reads).await {
            for name in chunk {
                let r = match &result {
                    Ok(map) => Ok(map.get(&name).cloned()),
                    Err(e) => Err(e.clone()),
                };
                found.insert((cluster.clone(), name), r);
            }
        }
        found
    }

    /// The task definitions found services run: one DescribeTaskDefinition per distinct one.
    async fn describe_running(
        &self,
        found: &BTreeMap<(String, String), Result<Option<ServiceView>, String>>,
    ) -> BTreeMap<String, Result<TaskDef, String>> {
        let refs: BTreeSet<String> = found
            .values()
            .filter_map(|r| r.as_ref().ok()?.as_ref()?.task_definition.clone())
            .collect();
        stream::iter(refs)
            .map(|r| async move {
                let d = self.describe_task_definition(&r).await;
                (r, d)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    }

    /// Live services with the task definitions they run (for the promotion rule), by (cluster,
    /// name): `None` when the service does not exist. DescribeServices in chunks of 10 per
    /// cluster, one DescribeTaskDefinition per distinct revision.
    pub(crate) async fn services_running(
        &self,
        services: impl IntoIterator<Item = (String, String)>,
    ) -> BTreeMap<(String, String), Result<Option<(ServiceView, TaskDef)>, String>> {
        let found = self.describe_many(services).await;
        let described = self.describe_running(&found).await;
        self.log_counts();
        found
            .into_iter()
            .map(|(key, view)| {
                let running = view.and_then(|view| {
                    let Some(view) = view else { return Ok(None) };
                    let running = view
                        .task_definition
                        .clone()
                        .ok_or("the service runs no task definition")?;
                    let t = described
                        .get(&running)
                        .cloned()
                        .unwrap_or_else(|| Err("not described".into()))?;
                    Ok(Some((view, t)))
                });
                (key, running)
            })
            .collect()
    }

    /// What ECR says about images now (one BatchGetImage per repository), for the promotion
    /// rule.
    pub(crate) async fn resolve_images(&self, images: &[Image]) -> BTreeMap<Image, ImageState> {
        let mut by_repository: BTreeMap<&str, Vec<Image>> = BTreeMap::new();
        for i in images {
            by_repository
                .entry(i.repository.as_str())
                .or_default()
                .push(i.clone());
        }
        let checks = by_repository
            .iter()
            .map(|(repo, set)| ecr_image::check(&self.ecr, &self.counters, repo, set));
        let out = join_all(checks).await.into_iter().flatten().collect();
        self.log_counts();
        out
    }

    /// The digest an image reference names now and when that digest was pushed (`None`: ECR
    /// has no such image), for the promotion rule.
    pub(crate) async fn image_pushed(
        &self,
        image: &Image,
    ) -> Result<Option<(String, Option<f64>)>, String> {
        let out = ecr_image::pushed(&self.ecr, &self.counters, image).await;
        self.log_counts();
        out
    }

    /// The RUNNING tasks of a service and the image digest each container reports
    /// (ListTasks + DescribeTasks, at most 100 tasks), for the promotion rule. moto starts no
    /// tasks for services, so there it is always empty.
    pub(crate) async fn running_tasks(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<super::promotion::RunningTask>, String> {
        self.counters.add(Counter::ListTasks);
        let listed = self
            .ecs
            .list_tasks()
            .cluster(cluster)
            .service_name(service)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .max_results(100)
            .send()
            .await
            .map_err(|e| format!("ECS ListTasks failed: {}", describe(&e)))?;
        let arns = listed.task_arns().to_vec();
        if arns.is_empty() {
            self.log_counts();
            return Ok(Vec::new());
        }
        self.counters.add(Counter::DescribeTasks);
        let rsp = self
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(arns))
            .send()
            .await
            .map_err(|e| format!("ECS DescribeTasks failed: {}", describe(&e)))?;
        self.log_counts();
        let group = format!("service:{service}");
        Ok(rsp
            .tasks()
            .iter()
            // ListTasks filters by service on ECS (moto ignores the filter): check the group.
            .filter(|t| t.group() == Some(group.as_str()))
            .filter(|t| t.last_status() == Some("RUNNING"))
            .map(|t| super::promotion::RunningTask {
                task_definition: t.task_definition_arn().unwrap_or_default().to_string(),
                digests: t
                    .containers()
                    .iter()
                    .map(|c| {
                        (
                            c.name().unwrap_or_default().to_string(),
                            c.image_digest().map(str::to_string),
                        )
                    })
                    .collect(),
            })
            .collect())
    }

    /// DescribeTaskDefinition, normalised, cached by ARN (revisions are immutable).
    async fn describe_task_definition(&self, reference: &str) -> Result<TaskDef, String> {
        if let Some(t) = self
            .state
            .lock()
            .expect("not poisoned")
            .described
            .get(reference)
        {
            return Ok(t.clone());
        }
        self.counters.add(Counter::DescribeTaskDefinition);
        let rsp = self
            .ecs
            .describe_task_definition()
            .task_definition(reference)
            .send()
            .await
            .map_err(|e| format!("ECS DescribeTaskDefinition failed: {}", describe(&e)))?;
        let t = rsp
            .task_definition()
            .ok_or("ECS DescribeTaskDefinition returned no task definition")?;
        let normal = td::from_sdk(t);
        let mut st = self.state.lock().expect("not poisoned");
        st.described.insert(reference.to_string(), normal.clone());
        if let Some(arn) = t.task_definition_arn() {
            st.described.insert(arn.to_string(), normal.clone());
        }
        Ok(normal)
    }

    /// The ARN of an ACTIVE revision with exactly this content: one found in this run, one of
    /// the family's newest ACTIVE revisions, or a newly registered one. Safe to run twice.
    async fn ensure_revision(&self, want: &TaskDef) -> Result<String, StepError> {
        let hash = td::content_hash(want);
        let _one_at_a_time = self.register_lock.lock().await;
        if let Some(arn) = self
            .state
            .lock()
            .expect("not poisoned")
            .revisions
            .get(&hash)
        {
            return Ok(arn.clone());
        }
        let mut arns = self.active_revisions(&want.family).await?;
        arns.sort_by_key(|a| std::cmp::Reverse(revision_of(a)));
        for arn in arns.into_iter().take(REUSE_SCAN) {
            match self.describe_task_definition(&arn).await {
                Ok(t) if td::content_hash(&t) == hash => {
                    info!(family = %want.family, arn = %arn, "Reusing an identical task definition revision");
                    self.remember(&hash, &arn);
                    return Ok(arn);
                }
                Ok(_) => {}
                Err(e) => warn!(arn = %arn, error = %e, "Could not read a revision"),
            }
        }
        let containers = td::container_definitions(want).map_err(StepError::Precondition)?;
        self.register_limit.until_ready().await;
        self.counters.add(Counter::RegisterTaskDefinition);
        let rsp = self
            .ecs
            .register_task_definition()
            .family(&want.family)
            .set_cpu(want.cpu.clone())
            .set_memory(want.memory.clone())
            .set_network_mode(want.network_mode.as_deref().map(NetworkMode::from))
            .set_execution_role_arn(want.execution_role_arn.clone())
            .set_task_role_arn(want.task_role_arn.clone())
            .set_requires_compatibilities((!want.requires_compatibilities.is_empty()).then(|| {
                want.requires_compatibilities
                    .iter()
                    .map(|c| Compatibility::from(c.as_str()))
                    .collect()
            }))
            .set_container_definitions(Some(containers))
            .send()
            .await
            .map_err(|e| api(format!("RegisterTaskDefinition: {}", describe(&e))))?;
        let t = rsp
            .task_definition()
            .ok_or_else(|| api("RegisterTaskDefinition returned no task definition".into()))?;
        let arn = t.task_definition_arn().unwrap_or_default().to_string();
        let registered = td::from_sdk(t);
        if td::content_hash(&registered) != hash {
            warn!(arn = %arn, "The registered revision reads back differently from the spec (a normalisation gap): plans will show a difference");
        }
        self.state
            .lock()
            .expect("not poisoned")
            .described
            .insert(arn.clone(), registered);
        self.remember(&hash, &arn);
        info!(family = %want.family, arn = %arn, "Registered a task definition revision");
        Ok(arn)
    }

    fn remember(&self, hash: &str, arn: &str) {
        self.state
            .lock()
            .expect("not poisoned")
            .revisions
            .insert(hash.to_string(), arn.to_string());
    }

    /// ARNs of the family's ACTIVE revisions (paged; moto ignores paging and sorting).
    async fn active_revisions(&self, family: &str) -> Result<Vec<String>, StepError> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            self.counters.add(Counter::ListTaskDefinitions);
            let page = self
                .ecs
                .list_task_definitions()
                .family_prefix(family)
                .status(TaskDefinitionStatus::Active)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| api(format!("ListTaskDefinitions: {}", describe(&e))))?;
            // familyPrefix is a prefix: keep this family only.
            arns.extend(
                page.task_definition_arns()
                    .iter()
                    .filter(|a| {
                        a.rsplit_once('/')
                            .and_then(|(_, r)| r.rsplit_once(':'))
                            .is_some_and(|(f, _)| f == family)
                    })
                    .cloned(),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(arns);
            }
        }
    }

    /// The ARN for a service's `FAMILY@HASH`.
    async fn resolve(&self, service_ref: &str) -> Result<String, StepError> {
        let hash = service_ref.rsplit_once('@').map_or("", |(_, h)| h);
        let want = self
            .state
            .lock()
            .expect("not poisoned")
            .task_defs
            .get(hash)
            .cloned();
        match want {
            Some(t) => self.ensure_revision(&t).await,
            None => Err(StepError::Precondition(format!(
                "task definition {service_ref} is not in the desired state of this run: plan again"
            ))),
        }
    }

    async fn write_service(&self, step: &Step) -> Result<(), StepError> {
        let fields = &step.desired;
        match step.action {
            Action::Replace => {
                let which: Vec<&str> = step
                    .changes
                    .iter()
                    .map(|c| c.field.as_str())
                    .filter(|f| REPLACE_ON.contains(f))
                    .collect();
                return Err(StepError::Precondition(format!(
                    "needs replacement ({} cannot change in place): delete and recreate the \
                     service by hand, or set the spec back; reconcile never deletes a live service",
                    which.join(", ")
                )));
            }
            Action::Delete => {
                return Err(StepError::Precondition(
                    "reconcile never deletes a live service".into(),
                ));
            }
            Action::Create | Action::Update => {}
        }
        let cluster = want_str(fields, "cluster").unwrap_or_default();
        let name = want_str(fields, "service_name").unwrap_or_default();
        let service_ref = want_str(fields, "task_definition").unwrap_or_default();
        let current = self
            .describe_services(cluster, &[name.to_string()])
            .await
            .map_err(api)?
            .remove(name);
        match current {
            None => {
                self.create_service(fields, cluster, name, service_ref)
                    .await
            }
            Some(view) => {
                self.update_service(fields, cluster, name, service_ref, &view)
                    .await
            }
        }
    }

    async fn create_service(
        &self,
        fields: &Fields,
        cluster: &str,
        name: &str,
        service_ref: &str,
    ) -> Result<(), StepError> {
        let arn = self.resolve(service_ref).await?;
        let count = want_int(fields, "desired_count").map_or(INITIAL_COUNT, |n| n as i32);
        let token = hex::encode(Sha256::digest(format!("{cluster}/{name}/{service_ref}")));
        self.service_limit.until_ready().await;
        self.counters.add(Counter::CreateService);
        let rsp = self
            .ecs
            .create_service()
            .cluster(cluster)
            .service_name(name)
            .task_definition(&arn)
            .desired_count(count)
            .set_launch_type(want_str(fields, "launch_type").map(LaunchType::from))
            .deployment_configuration(deployment_configuration(fields))
            .set_network_configuration(network_configuration(fields))
            .client_token(&token[..32])
            .send()
            .await
            .map_err(|e| api(format!("CreateService: {}", describe(&e))))?;
        info!(cluster, service = name, task_definition = %arn, "Created service");
        // CreateService may not record the deployment configuration (moto drops it): check
        // what the answer holds and set it with an UpdateService if it differs.
        let created = rsp.service().map(ServiceView::from_sdk).unwrap_or_default();
        let recorded = ecs_service::live(&created, "");
        let keys = [
            "minimum_healthy_percent",
            "maximum_percent",
            "circuit_breaker_enable",
            "circuit_breaker_rollback",
        ];
        if keys
            .iter()
            .any(|k| fields.get(*k) != recorded.fields.get(*k))
        {
            self.service_limit.until_ready().await;
            self.counters.add(Counter::UpdateService);
            self.ecs
                .update_service()
                .cluster(cluster)
                .service(name)
                .desired_count(count)
                .deployment_configuration(deployment_configuration(fields))
                .send()
                .await
                .map_err(|e| api(format!("UpdateService: {}", describe(&e))))?;
        }
        self.wait(cluster, name, Some(&arn)).await
    }

    async fn update_service(
        &self,
        fields: &Fields,
        cluster: &str,
        name: &str,
        service_ref: &str,
        view: &ServiceView,
    ) -> Result<(), StepError> {
        // Compare with what is there now (not with the plan): running twice changes nothing.
        let running = view.task_definition.clone().unwrap_or_default();
        let current_ref = match self.describe_task_definition(&running).await {
            Ok(t) => td::service_ref(&t),
            Err(_) => String::new(),
        };
        let live = ecs_service::live(view, &current_ref);
        let differs = |k: &str| fields.contains_key(k) && fields.get(k) != live.fields.get(k);
        if let Some(field) = REPLACE_ON.iter().find(|f| differs(f)) {
            return Err(StepError::Precondition(format!(
                "needs replacement ({field} cannot change in place): delete and recreate the \
                 service by hand; reconcile never deletes a live service"
            )));
        }
        let mut update = self.ecs.update_service().cluster(cluster).service(name);
        let mut changed = Vec::new();
        let mut expected = None;
        if differs("task_definition") {
            let arn = self.resolve(service_ref).await?;
            update = update.task_definition(&arn);
            expected = Some(arn);
            changed.push("task_definition");
        }
        if differs("desired_count") {
            update = update.set_desired_count(want_int(fields, "desired_count").map(|n| n as i32));
            changed.push("desired_count");
        }
        let deployment = [
            "minimum_healthy_percent",
            "maximum_percent",
            "circuit_breaker_enable",
            "circuit_breaker_rollback",
        ];
        if deployment.iter().any(|k| differs(k)) {
            update = update.deployment_configuration(deployment_configuration(fields));
            changed.push("deployment");
        }
        if ["subnets", "security_groups", "assign_public_ip"]
            .iter()
            .any(|k| differs(k))
        {
            update = update.set_network_configuration(network_configuration(fields));
            changed.push("network");
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.service_limit.until_ready().await;
        self.counters.add(Counter::UpdateService);
        update
            .send()
            .await
            .map_err(|e| api(format!("UpdateService: {}", describe(&e))))?;
        info!(cluster, service = name, changed = ?changed, "Updated service");
        if changed.iter().any(|c| *c != "deployment") {
            self.wait(cluster, name, expected.as_deref()).await?;
        }
        Ok(())
    }

    async fn wait(
        &self,
        cluster: &str,
        name: &str,
        expected: Option<&str>,
    ) -> Result<(), StepError> {
        rollout::wait_stable(self, cluster, name, expected, self.rollout)
            .await
            .map_err(|e| StepError::Precondition(e.to_string()))
    }

    async fn write(&self, step: &Step) -> Result<(), StepError> {
        let result = match &step.address {
            Address::Secret { .. } | Address::EcrImage { .. } => Err(StepError::Precondition(
                format!("{} is referenced, never written by reconcile", step.address),
            )),
            Address::TaskDefinition { .. } => match step.action {
                Action::Create | Action::Update => {
                    let want = td::from_fields(&step.desired).map_err(StepError::Precondition)?;
                    self.ensure_revision(&want).await.map(|_| ())
                }
                _ => Err(StepError::Precondition(
                    "task definition revisions are never deleted by reconcile".into(),
                )),
            },
            Address::Service { .. } => self.write_service(step).await,
            other => Err(StepError::Unsupported(other.kind())),
        };
        self.log_counts();
        result
    }
}

fn deployment_configuration(fields: &Fields) -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .set_minimum_healthy_percent(want_int(fields, "minimum_healthy_percent").map(|n| n as i32))
        .set_maximum_percent(want_int(fields, "maximum_percent").map(|n| n as i32))
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(want_bool(fields, "circuit_breaker_enable"))
                .rollback(want_bool(fields, "circuit_breaker_rollback"))
                .build(),
        )
        .build()
}

fn network_configuration(fields: &Fields) -> Option<NetworkConfiguration> {
    if !fields.contains_key("subnets") {
        return None;
    }
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(want_list(fields, "subnets")))
        .set_security_groups(Some(want_list(fields, "security_groups")))
        .assign_public_ip(if want_bool(fields, "assign_public_ip") {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .ok()?;
    Some(
        NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build(),
    )
}

#[async_trait]
impl ServiceStatus for Aws {
    async fn describe(&self, cluster: &str, service: &str) -> Result<Option<ServiceView>, String> {
        Ok(self
            .describe_services(cluster, &[service.to_string()])
            .await?
            .remove(service))
    }
}

#[async_trait]
impl Provider for Aws {
    fn owns(&self, address: &Address) -> bool {
        address.system() == "aws"
    }

    async fn observe(&self, desired: &[&Desired]) -> LiveState {
        self.read(desired).await
    }

    async fn observe_only(&self, desired: &[&Desired], addresses: &[Address]) -> LiveState {
        // A task definition is read through its service.
        let wanted: Vec<&Desired> = desired
            .iter()
            .copied()
            .filter(|d| {
                addresses.contains(&d.address)
                    || matches!(&d.address, Address::Service { env, service }
                        if addresses.contains(&Address::TaskDefinition { env: env.clone(), service: service.clone() }))
            })
            .collect();
        let mut live = self.read(&wanted).await;
        live.objects.retain(|a, _| addresses.contains(a));
        live
    }

    async fn apply(&self, step: &Step, _desired: Option<&Desired>) -> Result<(), StepError> {
        self.write(step).await
    }

    fn replace_note(&self, address: &Address) -> Option<String> {
        match address {
            Address::Service { .. } => Some(
                "launch_type or cluster cannot change in place: apply refuses this step; delete \
                 and recreate the service by hand (reconcile never deletes a live service)"
                    .into(),
            ),
            _ => None,
        }
    }

    fn requests(&self) -> u64 {
        self.request_counts().total()
    }
}
