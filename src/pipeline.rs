//! The one function that chains the stages: load → graph → preflight → resolve secrets →
//! desired → observe → plan. The CLI and the daemon call it; tests call it too. Applying goes
//! through [`crate::verify`] (from [`Prepared`]), never straight from a plan.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::approve::{GitlabUser, VerifiedAuthor};
use crate::daemon::watch::{Dirty, Reads, Watch};
use crate::graph::Graph;
use crate::live::{Desired, LiveState};
use crate::plan::{self, Author, AuthorVia, CiOrigin, GateChange, Plan};
use crate::providers::gitlab::identity::{self, Identity, Needs};
use crate::providers::gitlab::{ClientOptions, Gitlab, GitlabClient, SecretValues};
use crate::providers::{Providers, aws};
use crate::secret::{FingerprintKey, SecretValue};
use crate::spec::diagnostic::Diagnostic;
use crate::spec::variable::SecretSource;
use crate::spec::{DesiredState, SpecErrors};
use crate::trust::Trusted;

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
    /// The GitLab CI job this runs in (`CI_JOB_TOKEN`): plans made here name it and its user.
    pub ci: Option<CiJobToken>,
    /// Whether this run writes (apply, the daemon): preflight then requires the `api` scope.
    pub write: bool,
}

/// `CI_JOB_TOKEN` of the job this process runs in.
#[derive(Clone, Debug)]
pub struct CiJobToken(pub SecretValue);

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
            ci: secret("CI_JOB_TOKEN").map(CiJobToken),
            write: false,
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

impl Settings {
    /// The reconcile key: fingerprints of secrets, attestations of authors, daemon approvals
    /// and approved applies. `RECONCILE_FINGERPRINT_KEY`, else derived from `GITLAB_TOKEN`.
    pub fn key(&self) -> Option<FingerprintKey> {
        self.fingerprint_key
            .as_ref()
            .or(self.gitlab_token.as_ref())
            .map(|m| FingerprintKey::new(m.expose()))
    }

    /// GitLab's base URL: `GITLAB_URL`, else `reconcile.yaml`.
    pub fn gitlab_url(&self, state: &DesiredState) -> String {
        self.gitlab_url
            .clone()
            .unwrap_or_else(|| state.config.gitlab.url.clone())
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the desired state has errors")]
    Spec(SpecErrors),
    #[error("{0}")]
    Config(String),
    /// A system a scope needs cannot be used (unreachable, wrong URL, token or account):
    /// nothing was read or written.
    #[error("{0}")]
    Preflight(String),
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
    /// The GitLab provider (also in `providers`), for identities.
    pub gitlab: Option<Arc<Gitlab>>,
    /// The token's user, when preflight asked GitLab.
    pub identity: Option<Identity>,
    /// The verified records of approved applies (gate changes, drift corrections).
    pub trusted: Trusted,
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
    let url = settings.gitlab_url(state);
    let token = settings.gitlab_token.clone().ok_or_else(|| {
        PipelineError::Config(
            "GITLAB_TOKEN is not set: export the token of a GitLab admin user".into(),
        )
    })?;
    let key = settings.key().expect("a token gives a key");
    let client = GitlabClient::new(&url, token, settings.client.clone())
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    Ok(Gitlab::new(client, key))
}

/// A GitLab client for identity lookups (approval proofs) when the run's scope did not
/// build the GitLab provider; `None` without a token.
pub fn directory_client(state: &DesiredState, settings: &Settings) -> Option<GitlabClient> {
    let token = settings.gitlab_token.clone()?;
    GitlabClient::new(&settings.gitlab_url(state), token, settings.client.clone()).ok()
}

/// Who makes this plan, as GitLab says: the user of the CI job this runs in, else the owner
/// of the GitLab token (already known from preflight, or asked now). Without either, the
/// author is unverified (and gates that forbid self-approval will refuse the plan).
pub async fn author(
    state: &DesiredState,
    settings: &Settings,
    known: Option<&Identity>,
) -> Result<(Author, Option<CiOrigin>), PipelineError> {
    let url = settings.gitlab_url(state);
    if let Some(ci) = &settings.ci {
        let job = identity::current_job(&url, ci.0.clone())
            .await
            .map_err(PipelineError::Preflight)?;
        return Ok((
            Author {
                username: job.user.username,
                user_id: Some(job.user.id),
                via: AuthorVia::CiJob,
            },
            Some(CiOrigin {
                project_id: job.project_id,
                pipeline_id: job.pipeline_id,
                job_id: job.id,
            }),
        ));
    }
    let user: Option<GitlabUser> = match (known, &settings.gitlab_token) {
        (Some(i), _) => Some(i.user.clone()),
        (None, Some(token)) => identity::token_owner(&url, token.clone())
            .await
            .map_err(|e| {
                PipelineError::Preflight(format!(
                    "cannot ask GitLab at {url} who owns GITLAB_TOKEN: {e}"
                ))
            })?,
        (None, None) => None,
    };
    Ok((
        match user {
            Some(u) => Author {
                username: u.username,
                user_id: Some(u.id),
                via: AuthorVia::Token,
            },
            None => Author::unverified("no GitLab token"),
        },
        None,
    ))
}

/// The author as this process knows it (made now, so no proof is needed to believe it).
pub fn verified_author(author: &Author) -> VerifiedAuthor {
    match (author.via, author.user_id) {
        (AuthorVia::Token | AuthorVia::CiJob, Some(id)) => VerifiedAuthor::Known(GitlabUser {
            id,
            username: author.username.clone(),
        }),
        _ => VerifiedAuthor::Unknown("no GitLab identity".into()),
    }
}

/// The attestation of a plan's author for its file, when the author is the token owner.
pub fn author_attestation(plan: &Plan, settings: &Settings) -> Option<String> {
    (plan.author.via == AuthorVia::Token).then_some(())?;
    let key = settings.key()?;
    Some(key.attest(
        crate::approve::proof::AUTHOR_ATTESTATION,
        plan.hash().as_bytes(),
    ))
}

/// Digest of each covered scope's desired state: its resources (secrets as fingerprints) and
/// its prune settings.
pub fn digests(
    desired: &[Desired],
    prune: &plan::Prune,
    covered: &BTreeSet<String>,
) -> std::collections::BTreeMap<String, String> {
    let mut hashers: std::collections::BTreeMap<String, Sha256> =
        covered.iter().map(|s| (s.clone(), Sha256::new())).collect();
    let mut sorted: Vec<&Desired> = desired.iter().collect();
    sorted.sort_by(|a, b| a.address.cmp(&b.address));
    for d in sorted {
        if let Some(h) = hashers.get_mut(&d.address.scope_name()) {
            h.update(serde_json::to_vec(&d.address).expect("address serialises"));
            h.update(serde_json::to_vec(&d.fields).expect("fields serialise"));
            h.update([0]);
        }
    }
    for (owner, kind) in prune {
        if let Some(h) = hashers.get_mut(&owner.scope_name()) {
            h.update(b"prune\0");
            h.update(serde_json::to_vec(owner).expect("address serialises"));
            h.update(kind.as_bytes());
            h.update([0]);
        }
    }
    hashers
        .into_iter()
        .map(|(s, h)| (s, format!("sha256:{}", &hex::encode(h.finalize())[..32])))
        .collect()
}

/// Gates of covered scopes that `reconcile.yaml` changes since the recorded gate in force.
pub fn gate_changes(
    state: &DesiredState,
    trusted: &Trusted,
    covered: &BTreeSet<String>,
) -> Vec<GateChange> {
    covered
        .iter()
        .filter_map(|scope| {
            let before = trusted.gate(scope)?;
            let after = crate::approve::gate(&state.config, scope)
                .cloned()
                .unwrap_or_default();
            (before != &after).then(|| GateChange {
                scope: scope.clone(),
                before: before.clone(),
                after,
            })
        })
        .collect()
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
    diagnostics.extend(unmaskable(state, &values));
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

/// GitLab's masking rules on the resolved values of masked (and hidden) variables, checked at
/// plan time as validation checks literals (GitLab would answer 400 `{"value":["is invalid"]}`
/// at apply): one located error per variable, naming it and its secret, never the value.
fn unmaskable(state: &DesiredState, values: &SecretValues) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for p in &state.projects {
        for v in &p.spec.variables.items {
            let (Some(source), true) = (&v.from, v.masked || v.hidden) else {
                continue;
            };
            let Some(value) = values.get(source) else {
                continue;
            };
            let Some(problem) = crate::spec::variable::masking_problem(value.expose(), v.raw)
            else {
                continue;
            };
            let variable = crate::address::Address::Variable {
                project: p.spec.full_path().to_lowercase(),
                key: v.key.clone(),
                scope: v.environment_scope.clone(),
            };
            let Some(declared) = state.origins.get(&variable) else {
                continue;
            };
            // The variable's `from:` (the first reference to the secret after its
            // declaration), else the variable itself.
            let secret = crate::address::Address::Secret {
                name: source.secret.clone(),
            };
            let at = state
                .references
                .get(&secret)
                .into_iter()
                .flatten()
                .filter(|o| o.file == declared.file && o.span.start >= declared.span.start)
                .min_by_key(|o| o.span.start)
                .copied()
                .unwrap_or(*declared);
            let named = match &source.key {
                Some(key) => format!("secret `{}` (key `{key}`)", source.secret),
                None => format!("secret `{}`", source.secret),
            };
            out.push(
                Diagnostic::at(
                    at.file,
                    at.span,
                    format!(
                        "GitLab would refuse to mask variable `{}` of `{}` (scope `{}`): the value of {named} cannot be masked ({problem})",
                        v.key,
                        p.spec.full_path(),
                        v.environment_scope
                    ),
                )
                .help("masked values need at least 8 characters from [a-zA-Z0-9_+=/@:.~-] (any non-space characters with `raw: true`): change the value in AWS Secrets Manager, or the variable's `masked`/`raw`")
                .sensitive(),
            );
        }
    }
    out
}

/// Everything up to observing: the validated state, its graph, the providers and the desired
/// resources (secrets resolved, `--env` applied), after preflight.
pub struct Prepared {
    pub state: DesiredState,
    pub graph: Graph,
    pub providers: Providers,
    pub desired: Vec<Desired>,
    pub prune: plan::Prune,
    pub aws: Option<Arc<aws::Aws>>,
    pub gitlab: Option<Arc<Gitlab>>,
    pub identity: Option<Identity>,
    /// The scopes this run covers (digests and gate changes are computed for them).
    pub covered: BTreeSet<String>,
    pub trusted: Trusted,
}

/// Loads, checks the systems in scope (preflight), resolves and builds the providers; reads no
/// managed resource yet.
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
    aws::promotion::validate_overrides(&state, &settings.overrides)
        .map_err(PipelineError::Config)?;
    // GitLab only when its scope is planned: `--env staging` needs no GitLab token.
    let gitlab_in_scope = settings.scope.as_deref().is_none_or(|s| s == "gitlab");
    let aws_in_scope = aws::Aws::in_scope(&state, settings.scope.as_deref());
    let secrets_needed = gitlab_in_scope
        && state
            .projects
            .iter()
            .any(|p| p.spec.variables.items.iter().any(|v| v.from.is_some()));

    // Preflight: each system once, before anything is read; one line on failure.
    let mut gitlab_provider = None;
    let mut known = None;
    if gitlab_in_scope {
        let gitlab = gitlab(&state, settings)?;
        let found = gitlab
            .preflight(Needs {
                write: settings.write,
            })
            .await
            .map_err(PipelineError::Preflight)?;
        tracing::info!(user = %found.user.username, version = %found.version, "GitLab preflight passed");
        known = Some(found);
        gitlab_provider = Some(Arc::new(gitlab));
    }
    if aws_in_scope || secrets_needed {
        let account = aws::preflight(state.config.aws.as_ref())
            .await
            .map_err(PipelineError::Preflight)?;
        tracing::info!(account = %account, "AWS preflight passed");
    }

    let mut desired = Vec::new();
    let mut list: Vec<Box<dyn crate::providers::Provider>> = Vec::new();
    if let Some(gitlab) = &gitlab_provider {
        let secrets = resolve_secrets(&state).await?;
        desired = gitlab.desired(&state, &secrets);
        list.push(Box::new(Arc::clone(gitlab)));
    }
    let prune = Gitlab::prune(&state);
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
    let mut covered: BTreeSet<String> = desired.iter().map(|d| d.address.scope_name()).collect();
    if gitlab_in_scope {
        covered.insert("gitlab".into());
    }
    for env in state.config.environments.keys() {
        if settings
            .scope
            .as_deref()
            .is_none_or(|s| s == "aws" || s == env)
        {
            covered.insert(env.clone());
        }
    }
    let (trusted, warnings) = Trusted::load(&state_dir(dir, settings), settings.key().as_ref());
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let providers = Providers::new(list);
    Ok(Prepared {
        state,
        graph,
        providers,
        desired,
        prune,
        aws: aws_handle,
        gitlab: gitlab_provider,
        identity: known,
        covered,
        trusted,
    })
}

impl Prepared {
    /// Computes the plan from live state (pure), stamped with time, digests and gate changes;
    /// the author is stamped by [`plan`].
    pub fn plan(self, live: LiveState, settings: &Settings) -> Planned {
        let Prepared {
            state,
            graph,
            providers,
            desired,
            prune,
            aws,
            gitlab,
            identity,
            covered,
            trusted,
        } = self;
        let mut plan = plan::compute(&revision(&state), &desired, &live, &graph, &prune, &|a| {
            providers.replace_note(a)
        });
        aws::note_revisions(&mut plan, &desired);
        crate::providers::gitlab::note_unknown_hidden(&mut plan);
        plan.created_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        plan.policies = crate::policy::evaluate(&state);
        if let Some(scope) = &settings.scope {
            plan.policies.retain(|f| f.address.scope_name() == *scope);
        }
        plan.overrides = settings.overrides.clone();
        plan.digests = digests(&desired, &prune, &covered);
        plan.gate_changes = gate_changes(&state, &trusted, &covered);
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
            gitlab,
            identity,
            trusted,
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

/// The whole plan pipeline: prepare, observe everything in scope, plan, check the promotion
/// rule, and stamp the author (known from preflight, or asked once).
pub async fn plan(dir: &Path, settings: &Settings) -> Result<Planned, PipelineError> {
    let prepared = prepare(dir, settings).await?;
    let live = prepared.providers.observe(&prepared.desired).await;
    finish(prepared, live, settings).await
}

/// [`plan`] with GitLab observed by the daemon's [`Watch`] (what may have changed since its
/// last cycle) instead of in full. `dirty` is taken once the desired state has loaded.
pub async fn plan_watched(
    dir: &Path,
    settings: &Settings,
    watch: &mut Watch,
    dirty: &std::sync::Mutex<Dirty>,
) -> Result<(Planned, Reads), PipelineError> {
    let prepared = prepare(dir, settings).await?;
    let Some(gitlab) = prepared.gitlab.clone() else {
        let live = prepared.providers.observe(&prepared.desired).await;
        return Ok((finish(prepared, live, settings).await?, Reads::default()));
    };
    let is_gitlab = |a: &Address| crate::providers::Provider::owns(gitlab.as_ref(), a);
    let mine: Vec<&Desired> = prepared
        .desired
        .iter()
        .filter(|d| is_gitlab(&d.address))
        .collect();
    let taken = std::mem::take(&mut *dirty.lock().expect("not poisoned"));
    let (mut live, (gitlab_live, reads)) = tokio::join!(
        prepared
            .providers
            .observe_except(&prepared.desired, &is_gitlab),
        watch.observe(&gitlab, &mine, taken, tokio::time::Instant::now()),
    );
    live.objects.extend(gitlab_live.objects);
    live.unmanaged.extend(gitlab_live.unmanaged);
    Ok((finish(prepared, live, settings).await?, reads))
}

/// Plans from what was observed, checks the promotion rule and stamps the author.
async fn finish(
    prepared: Prepared,
    live: LiveState,
    settings: &Settings,
) -> Result<Planned, PipelineError> {
    let mut planned = prepared.plan(live, settings);
    planned.check_promotion().await;
    // The author is named whenever it is known for free (preflight, CI) and otherwise asked
    // only when someone must be named: a gated scope or a promotion override in the plan (a
    // plan of an ungated scope without GitLab never contacts GitLab). Without a GitLab token
    // or CI job the author stays unverified, and gates that forbid self-approval refuse it.
    let gates = crate::approve::Gates::for_state(&planned.state, &planned.trusted);
    let needs_author = planned.identity.is_some()
        || settings.ci.is_some()
        || (settings.gitlab_token.is_some()
            && (!gates.gated(&planned.plan).is_empty() || !planned.plan.overrides.is_empty()));
    if needs_author {
        let (author, origin) = author(&planned.state, settings, planned.identity.as_ref()).await?;
        planned.plan.author = author;
        planned.plan.origin = origin;
    } else {
        planned.plan.author = Author::unverified("no GitLab identity needed or available");
    }
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
