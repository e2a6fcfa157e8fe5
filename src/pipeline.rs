//! The one function that chains the stages: load → graph → resolve secrets → desired →
//! observe → plan. The CLI and (later) the daemon call it; tests call it too.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::graph::Graph;
use crate::live::{Desired, LiveState};
use crate::plan::{self, Plan};
use crate::providers::gitlab::{ClientOptions, Gitlab, GitlabClient, SecretValues};
use crate::providers::{Providers, aws};
use crate::secret::{FingerprintKey, SecretValue};
use crate::spec::diagnostic::Diagnostic;
use crate::spec::variable::SecretSource;
use crate::spec::{DesiredState, SpecErrors};

/// Settings read from the process environment (injected, so tests never mutate it).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `GITLAB_URL`, overriding `reconcile.yaml`.
    pub gitlab_url: Option<String>,
    /// `GITLAB_TOKEN`.
    pub gitlab_token: Option<SecretValue>,
    /// `RECONCILE_FINGERPRINT_KEY`.
    pub fingerprint_key: Option<SecretValue>,
    pub client: ClientOptions,
    /// `--env`: plan only one scope (`gitlab`, `aws`, or an environment name).
    pub scope: Option<String>,
    /// Who runs this (`GITLAB_USER_LOGIN`, else `USER`).
    pub user: String,
    /// `RECONCILE_STATE_DIR`: where the lock, journal and audit log are kept.
    pub state_dir: Option<std::path::PathBuf>,
    /// `plan --promotion-override ENV/SERVICE=REASON`: recorded in the plan.
    pub overrides: Vec<plan::PromotionOverride>,
}

impl Settings {
    /// From an environment lookup (`std::env::var` in the binary).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        let secret = |name: &str| get(name).filter(|v| !v.is_empty()).map(SecretValue::new);
        let mut client = ClientOptions::default();
        if let Some(n) = get("RECONCILE_CONCURRENCY").and_then(|v| v.parse().ok()) {
            client.concurrency = n;
        }
        if let Some(ms) = get("RECONCILE_RETRY_MIN_MS").and_then(|v| v.parse().ok()) {
            client.min_backoff = std::time::Duration::from_millis(ms);
            client.max_backoff = client
                .max_backoff
                .min(std::time::Duration::from_millis(ms * 50));
        }
        Self {
            gitlab_url: get("GITLAB_URL").filter(|v| !v.is_empty()),
            gitlab_token: secret("GITLAB_TOKEN"),
            fingerprint_key: secret("RECONCILE_FINGERPRINT_KEY"),
            client,
            scope: None,
            overrides: Vec::new(),
            state_dir: get("RECONCILE_STATE_DIR")
                .filter(|v| !v.is_empty())
                .map(Into::into),
            user: get("GITLAB_USER_LOGIN")
                .or_else(|| get("USER"))
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the desired state has errors")]
    Spec(SpecErrors),
    #[error("{0}")]
    Config(String),
}

/// Everything a plan was computed from, for apply and reporting.
pub struct Planned {
    pub state: DesiredState,
    pub graph: Graph,
    pub providers: Providers,
    pub desired: Vec<Desired>,
    pub live: LiveState,
    pub plan: Plan,
    /// The AWS provider (also in `providers`), for the promotion rule.
    pub aws: Option<Arc<aws::Aws>>,
}

/// Loads, validates and orders the desired state (pure; contacts nothing).
pub fn load(dir: &Path) -> Result<(DesiredState, Graph), PipelineError> {
    let state = crate::spec::load(dir).map_err(PipelineError::Spec)?;
    match Graph::build(&state) {
        Ok(graph) => Ok((state, graph)),
        Err(cycle) => Err(PipelineError::Spec(crate::spec::cycle_errors(
            state, &cycle,
        ))),
    }
}

/// The revision a plan records: the git commit when the directory is a clean git work tree,
/// else a content hash of the desired state's files.
pub fn revision(state: &DesiredState) -> String {
    git_revision(&state.dir).unwrap_or_else(|| content_revision(state))
}

/// `git:<commit>` when `dir` is inside a git work tree with no uncommitted change under it.
fn git_revision(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--", "."])?;
    if !dirty.stdout.is_empty() {
        return None;
    }
    Some(format!(
        "git:{}",
        String::from_utf8_lossy(&head.stdout).trim()
    ))
}

fn content_revision(state: &DesiredState) -> String {
    let mut h = Sha256::new();
    for (_, f) in state.sources.iter() {
        h.update(f.path.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    format!("content:{}", &hex::encode(h.finalize())[..16])
}

/// Connects to GitLab with the settings.
pub fn gitlab(state: &DesiredState, settings: &Settings) -> Result<Gitlab, PipelineError> {
    let url = settings
        .gitlab_url
        .clone()
        .unwrap_or_else(|| state.config.gitlab.url.clone());
    let token = settings.gitlab_token.clone().ok_or_else(|| {
        PipelineError::Config(
            "GITLAB_TOKEN is not set: export the token of a GitLab admin user".into(),
        )
    })?;
    let key = FingerprintKey::new(settings.fingerprint_key.as_ref().unwrap_or(&token).expose());
    let client = GitlabClient::new(&url, token, settings.client.clone())
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    Ok(Gitlab::new(client, key))
}

/// Resolves the Secrets Manager values that GitLab variables take. A secret that cannot be
/// read is a plan error naming the spec lines that reference it.
pub async fn resolve_secrets(state: &DesiredState) -> Result<SecretValues, PipelineError> {
    let sources: BTreeSet<SecretSource> = state
        .projects
        .iter()
        .flat_map(|p| p.spec.variables.items.iter().filter_map(|v| v.from.clone()))
        .collect();
    if sources.is_empty() {
        return Ok(SecretValues::new());
    }
    let sources: Vec<SecretSource> = sources.into_iter().collect();
    let config = aws::sdk_config(state.config.aws.as_ref()).await;
    let resolved = aws::secret::Secrets::new(&config).values(&sources).await;
    let mut values = SecretValues::new();
    let mut diagnostics = Vec::new();
    for (source, result) in resolved {
        match result {
            Ok(v) => {
                values.insert(source, v);
            }
            Err(e) => {
                let address = crate::address::Address::Secret {
                    name: source.secret.clone(),
                };
                for origin in state.references.get(&address).into_iter().flatten() {
                    let mut d = Diagnostic::at(origin.file, origin.span, e.to_string());
                    d.help = Some(
                        "create the secret (and key) in AWS Secrets Manager, or fix the reference"
                            .into(),
                    );
                    diagnostics.push(d);
                }
            }
        }
    }
    if diagnostics.is_empty() {
        return Ok(values);
    }
    crate::spec::diagnostic::sort(&mut diagnostics);
    diagnostics.dedup();
    Err(PipelineError::Spec(SpecErrors {
        sources: state.sources.clone(),
        diagnostics,
        contacted: true,
    }))
}

/// Everything up to observing: the validated state, its graph, the providers and the desired
/// resources (secrets resolved, `--env` applied).
pub struct Prepared {
    pub state: DesiredState,
    pub graph: Graph,
    pub providers: Providers,
    pub desired: Vec<Desired>,
    pub prune: plan::Prune,
    pub aws: Option<Arc<aws::Aws>>,
}

/// Loads, resolves and builds the providers; reads no live state yet.
pub async fn prepare(dir: &Path, settings: &Settings) -> Result<Prepared, PipelineError> {
    let (state, graph) = load(dir)?;
    if let Some(scope) = &settings.scope {
        let known =
            scope == "gitlab" || scope == "aws" || state.config.environments.contains_key(scope);
        if !known {
            let envs: Vec<&str> = state
                .config
                .environments
                .keys()
                .map(String::as_str)
                .collect();
            return Err(PipelineError::Config(format!(
                "unknown scope `{scope}` for --env: use `gitlab`, `aws` or one of [{}]",
                envs.join(", ")
            )));
        }
    }
    // GitLab only when its scope is planned: `--env staging` needs no GitLab token.
    let gitlab_in_scope = settings.scope.as_deref().is_none_or(|s| s == "gitlab");
    let mut desired = Vec::new();
    let mut list: Vec<Box<dyn crate::providers::Provider>> = Vec::new();
    if gitlab_in_scope {
        let gitlab = gitlab(&state, settings)?;
        let secrets = resolve_secrets(&state).await?;
        desired = gitlab.desired(&state, &secrets);
        list.push(Box::new(gitlab));
    }
    let prune = Gitlab::prune(&state);
    aws::promotion::validate_overrides(&state, &settings.overrides)
        .map_err(PipelineError::Config)?;
    let mut aws_handle = None;
    // AWS only when services are in scope: GitLab-only desired states never build a client.
    if let Some((aws, wanted)) = aws::Aws::plan_part(&state, settings.scope.as_deref())
        .await
        .map_err(PipelineError::Spec)?
    {
        desired.extend(wanted);
        let aws = Arc::new(aws);
        aws_handle = Some(Arc::clone(&aws));
        list.push(Box::new(aws));
    }
    let providers = Providers::new(list);
    Ok(Prepared {
        state,
        graph,
        providers,
        desired,
        prune,
        aws: aws_handle,
    })
}

impl Prepared {
    /// Computes the plan from live state (pure), stamped with time and author.
    pub fn plan(self, live: LiveState, settings: &Settings) -> Planned {
        let Prepared {
            state,
            graph,
            providers,
            desired,
            prune,
            aws,
        } = self;
        let mut plan = plan::compute(&revision(&state), &desired, &live, &graph, &prune, &|a| {
            providers.replace_note(a)
        });
        aws::note_revisions(&mut plan, &desired);
        plan.created_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        plan.author = settings.user.clone();
        plan.policies = crate::policy::evaluate(&state);
        if let Some(scope) = &settings.scope {
            plan.policies.retain(|f| f.address.scope_name() == *scope);
        }
        plan.overrides = settings.overrides.clone();
        tracing::info!(
            steps = plan.steps.len(),
            blocked = plan.blocked.len(),
            requests = providers.requests(),
            "Planned"
        );
        Planned {
            state,
            graph,
            providers,
            desired,
            live,
            plan,
            aws,
        }
    }
}

impl Planned {
    /// The promotion rule at plan time: checks, live, every step that changes what a service
    /// of a promoted environment runs, and records the evidence (notes) and failures
    /// (`promotion` findings) in the plan.
    pub async fn check_promotion(&mut self) {
        let Some(aws) = &self.aws else { return };
        let subjects = aws::promotion::subjects(&self.state, &self.plan, &self.desired, &self.live);
        if subjects.is_empty() {
            return;
        }
        let checked = aws::promotion::check(aws, &self.state, &self.desired, &subjects).await;
        aws::promotion::record(&mut self.plan, &self.state, &checked);
    }
}

/// The whole plan pipeline: prepare, observe everything in scope, plan.
pub async fn plan(dir: &Path, settings: &Settings) -> Result<Planned, PipelineError> {
    let prepared = prepare(dir, settings).await?;
    let live = prepared.providers.observe(&prepared.desired).await;
    let mut planned = prepared.plan(live, settings);
    planned.check_promotion().await;
    Ok(planned)
}

/// Where locks, the journal and the audit log live: `RECONCILE_STATE_DIR`, else
/// `<desired-state dir>/.reconcile`.
pub fn state_dir(dir: &Path, settings: &Settings) -> std::path::PathBuf {
    settings
        .state_dir
        .clone()
        .unwrap_or_else(|| dir.join(".reconcile"))
}
