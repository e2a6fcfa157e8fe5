//! GitLab provider: desired resources from the spec, live state from the REST API (through the
//! `gitlab` crate's typed endpoints), and the writes of apply. One file per kind.
//!
//! Reads, per project: the project, its variables, its protected branches and its direct
//! members (4 requests, paginated with per_page=100, concurrently). Users: one filtered lookup
//! each, or one keyset listing when there are many. Plus `GET /user` once (the token's own user
//! is never reported as unmanaged, nor is the holder of a project's personal namespace). A
//! failed read makes the resource [`Observed::Unknown`].

mod client;
pub(crate) mod endpoints;
pub mod identity;
mod member;
mod project;
mod protected_branch;
mod user;
mod variable;

use std::collections::BTreeMap;

use futures::future::join_all;
use gitlab::api::{self, ApiError, AsyncQuery};
use http::StatusCode;
use serde_json::Value as Json;

pub use client::{Auth, ClientOptions, GitlabClient, Traffic, TransportError};
pub use variable::note_unknown_hidden;

use crate::address::Address;
use crate::live::{Desired, Live, LiveState, Observed};
use crate::plan::{Action, Prune, Step};
use crate::providers::{Provider, StepError};
use crate::secret::{FingerprintKey, SecretValue};
use crate::spec::DesiredState;
use crate::spec::variable::SecretSource;

/// Users are listed with one keyset listing instead of per-user lookups above this count.
const USER_LISTING_THRESHOLD: usize = 50;

pub type ApiErr = ApiError<TransportError>;

/// Whether an API error is a 404.
fn is_not_found(e: &ApiErr) -> bool {
    status_of(e) == Some(StatusCode::NOT_FOUND)
}

fn status_of(e: &ApiErr) -> Option<StatusCode> {
    match e {
        ApiError::GitlabWithStatus { status, .. }
        | ApiError::GitlabObjectWithStatus { status, .. }
        | ApiError::GitlabUnrecognizedWithStatus { status, .. }
        | ApiError::GitlabService { status, .. } => Some(*status),
        // Still 5xx/429 after the client's retries.
        ApiError::Client {
            source: TransportError::Exhausted { status, .. },
        } => Some(*status),
        _ => None,
    }
}

/// Whether a write's outcome is unknown (so the caller must re-read before retrying).
fn is_unknown_outcome(e: &ApiErr) -> bool {
    matches!(
        e,
        ApiError::Client {
            source: TransportError::UnknownOutcome { .. }
        }
    )
}

/// Error text for reports: GitLab's message, never a request body.
fn describe(e: &ApiErr) -> String {
    e.to_string()
}

/// URL-encodes a path for use as a GitLab `:id` (the `gitlab` crate encodes `NameOrId` itself;
/// this is for hand-written endpoints).
pub(crate) fn encode(path: &str) -> String {
    url::form_urlencoded::byte_serialize(path.as_bytes()).collect()
}

/// The GitLab provider for one run.
pub struct Gitlab {
    client: GitlabClient,
    key: FingerprintKey,
    /// The token's user, once preflight asked GitLab.
    identity: std::sync::OnceLock<identity::Identity>,
}

/// The secret values that desired variables take, resolved before planning.
pub type SecretValues = BTreeMap<SecretSource, SecretValue>;

impl Gitlab {
    pub fn new(client: GitlabClient, key: FingerprintKey) -> Self {
        Self {
            client,
            key,
            identity: std::sync::OnceLock::new(),
        }
    }

    /// Checks the URL and the token ([`identity::preflight`]); the identity is kept for the
    /// run.
    pub async fn preflight(&self, needs: identity::Needs) -> Result<identity::Identity, String> {
        if let Some(known) = self.identity.get() {
            return Ok(known.clone());
        }
        let found = identity::preflight(&self.client, needs).await?;
        let _ = self.identity.set(found.clone());
        Ok(found)
    }

    /// The REST client (for identity lookups through [`crate::approve::Directory`]).
    pub fn client(&self) -> &GitlabClient {
        &self.client
    }

    pub fn key(&self) -> &FingerprintKey {
        &self.key
    }

    /// Desired GitLab resources of a desired state, secrets resolved.
    pub fn desired(&self, state: &DesiredState, secrets: &SecretValues) -> Vec<Desired> {
        let mut out = Vec::new();
        for u in &state.users {
            out.push(user::desired(&u.spec));
        }
        for p in &state.projects {
            let project = &p.spec;
            let path = project.full_path().to_lowercase();
            out.push(project::desired(project));
            for m in &project.members.items {
                out.push(member::desired(&path, m));
            }
            for b in &project.protected_branches.items {
                out.push(protected_branch::desired(&path, b));
            }
            for v in &project.variables.items {
                out.push(variable::desired(&path, v, secrets, &self.key));
            }
        }
        out
    }

    /// Collections that prune unlisted live objects.
    pub fn prune(state: &DesiredState) -> Prune {
        let mut prune = Prune::new();
        for p in &state.projects {
            let owner = Address::Project {
                path: p.spec.full_path().to_lowercase(),
            };
            if p.spec.members.prune {
                prune.insert((owner.clone(), "gitlab.member"));
            }
            if p.spec.protected_branches.prune {
                prune.insert((owner.clone(), "gitlab.protected_branch"));
            }
            if p.spec.variables.prune {
                prune.insert((owner, "gitlab.variable"));
            }
        }
        prune
    }

    /// The note a replace needs: CE protected branches are unprotected, then protected again.
    pub fn note(address: &Address) -> Option<String> {
        match address {
            Address::ProtectedBranch { branch, .. } => Some(format!(
                "GitLab CE cannot change access levels in place: {branch} will be unprotected for the duration of this step (run last for its project)"
            )),
            Address::Variable { .. } => Some(
                "the variable is deleted and created again (hidden is set at creation only)".into(),
            ),
            _ => None,
        }
    }

    /// Reads the live state of every desired GitLab resource. Linear in the fleet: the
    /// desired children are grouped by project once.
    pub async fn read(&self, desired: &[&Desired]) -> LiveState {
        let mut live = LiveState::default();
        let me = match self.identity.get() {
            Some(i) => Some(i.user.username.to_lowercase()),
            None => self.current_user().await,
        };

        let mut usernames: Vec<&str> = desired
            .iter()
            .filter_map(|d| match &d.address {
                Address::User { username } => Some(username.as_str()),
                _ => None,
            })
            .collect();
        usernames.sort_unstable();
        usernames.dedup();

        // Projects in the order given, each with its desired children.
        let mut projects: Vec<(&Desired, Vec<&Desired>)> = Vec::new();
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for d in desired {
            if let Address::Project { path } = &d.address {
                at.insert(path, projects.len());
                projects.push((d, Vec::new()));
            }
        }
        for d in desired {
            if let Some(project) = d.address.project()
                && let Some(&i) = at.get(project)
            {
                projects[i].1.push(d);
            }
        }
        // Users (one listing, its pages in sequence) beside the projects.
        let reads = projects
            .iter()
            .map(|(p, children)| self.observe_project(p, children, me.as_deref()));
        let (users, projects) = tokio::join!(self.observe_users(&usernames), join_all(reads));
        live.objects.extend(users);
        for (objects, unmanaged) in projects {
            live.objects.extend(objects);
            live.unmanaged.extend(unmanaged);
        }
        live
    }

    /// Re-reads the given addresses only (apply preconditions and the convergence check).
    pub async fn read_only(&self, desired: &[&Desired], addresses: &[Address]) -> LiveState {
        let addresses: std::collections::BTreeSet<&Address> = addresses.iter().collect();
        let by_address: std::collections::HashMap<&Address, &Desired> =
            desired.iter().map(|d| (&d.address, *d)).collect();
        let mut all: Vec<&Desired> = addresses
            .iter()
            .filter_map(|a| by_address.get(a).copied())
            .collect();
        // Children need their project's listing: observe the owning projects' collections.
        let owners: std::collections::BTreeSet<Address> = addresses
            .iter()
            .filter_map(|a| crate::plan::graph_owner(a))
            .filter(|o| !addresses.contains(o))
            .collect();
        let mut placeholders = Vec::new();
        for owner in owners {
            match by_address.get(&owner) {
                Some(d) => all.push(d),
                None => placeholders.push(Desired {
                    address: owner,
                    fields: Default::default(),
                    replace_on: &[],
                    secrets: Default::default(),
                }),
            }
        }
        all.extend(placeholders.iter());
        let full = self.read(&all).await;
        LiveState {
            objects: full
                .objects
                .into_iter()
                .filter(|(a, _)| addresses.contains(a))
                .collect(),
            unmanaged: full
                .unmanaged
                .into_iter()
                .filter(|(a, _)| addresses.contains(a))
                .collect(),
        }
    }

    async fn current_user(&self) -> Option<String> {
        let endpoint = gitlab::api::users::CurrentUser::builder()
            .build()
            .expect("valid endpoint");
        let me: Result<Json, ApiErr> = endpoint.query_async(&self.client).await;
        me.ok()
            .and_then(|j| j["username"].as_str().map(str::to_lowercase))
    }

    async fn observe_users(&self, usernames: &[&str]) -> Vec<(Address, Observed)> {
        if usernames.len() > USER_LISTING_THRESHOLD {
            let endpoint = gitlab::api::users::Users::builder()
                .build()
                .expect("valid endpoint");
            let all: Result<Vec<Json>, ApiErr> = api::paged(endpoint, api::Pagination::All)
                .query_async(&self.client)
                .await;
            return match all {
                Ok(list) => {
                    let by_name: BTreeMap<String, &Json> = list
                        .iter()
                        .filter_map(|u| Some((u["username"].as_str()?.to_lowercase(), u)))
                        .collect();
                    usernames
                        .iter()
                        .map(|name| {
                            let observed = by_name
                                .get(*name)
                                .map_or(Observed::Absent, |u| Observed::Present(user::live(u)));
                            (
                                Address::User {
                                    username: (*name).to_string(),
                                },
                                observed,
                            )
                        })
                        .collect()
                }
                Err(e) => usernames
                    .iter()
                    .map(|name| {
                        (
                            Address::User {
                                username: (*name).to_string(),
                            },
                            Observed::Unknown(describe(&e)),
                        )
                    })
                    .collect(),
            };
        }
        let lookups = usernames.iter().map(|name| async move {
            let address = Address::User {
                username: (*name).to_string(),
            };
            (
                address,
                self.find_user(name).await.map_or_else(
                    |e| Observed::Unknown(describe(&e)),
                    |u| u.map_or(Observed::Absent, |u| Observed::Present(user::live(&u))),
                ),
            )
        });
        join_all(lookups).await
    }

    /// Registers (or updates) the system hook that tells the daemon what changed: one hook per
    /// URL, its token set each time (GitLab never shows it back).
    pub async fn register_system_hook(
        &self,
        url: &str,
        token: &crate::secret::SecretValue,
    ) -> Result<(), String> {
        let hooks: Vec<Json> = api::paged(endpoints::SystemHooks, api::Pagination::All)
            .query_async(&self.client)
            .await
            .map_err(|e| format!("cannot list GitLab's system hooks: {}", describe(&e)))?;
        let id = hooks
            .iter()
            .find(|h| h["url"].as_str() == Some(url))
            .and_then(|h| h["id"].as_u64());
        let save = endpoints::SaveSystemHook {
            id,
            url,
            token: token.expose(),
        };
        api::ignore(save)
            .query_async(&self.client)
            .await
            .map_err(|e| format!("cannot register the system hook {url}: {}", describe(&e)))
    }

    /// `GET /users?username=` (case-insensitive in GitLab).
    pub(crate) async fn find_user(&self, username: &str) -> Result<Option<Json>, ApiErr> {
        let endpoint = gitlab::api::users::Users::builder()
            .username(username)
            .build()
            .expect("valid endpoint");
        let found: Vec<Json> = endpoint.query_async(&self.client).await?;
        Ok(found.into_iter().find(|u| {
            u["username"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(username))
        }))
    }

    async fn observe_project(
        &self,
        project: &Desired,
        children: &[&Desired],
        me: Option<&str>,
    ) -> (Vec<(Address, Observed)>, Vec<(Address, Live)>) {
        let Address::Project { path } = &project.address else {
            unreachable!("filtered on projects")
        };
        let (proj, vars, branches, members) = tokio::join!(
            project::read(&self.client, path),
            variable::read(&self.client, path),
            protected_branch::read(&self.client, path),
            member::read(&self.client, path),
        );
        let mut objects = Vec::new();
        let mut unmanaged = Vec::new();
        // The holder of the personal namespace the project lives in: GitLab made them an Owner
        // member and refuses to change or remove that membership (403), so, like the token's
        // user, it is never reported as unmanaged nor pruned.
        let holder = match &proj {
            Ok(Some(j)) if j["namespace"]["kind"] == "user" => j["owner"]["username"]
                .as_str()
                .or_else(|| j["namespace"]["path"].as_str())
                .map(str::to_lowercase),
            _ => None,
        };
        let project_state = match proj {
            Ok(Some(json)) => Observed::Present(project::live(&json)),
            Ok(None) => Observed::Absent,
            Err(e) => Observed::Unknown(describe(&e)),
        };
        let absent = project_state == Observed::Absent;
        objects.push((project.address.clone(), project_state));

        // Each collection: match live objects to desired ones by identity.
        type Listing = Result<Vec<(Address, Live)>, ApiErr>;
        let collections: [(&str, Listing); 3] = [
            (
                "gitlab.variable",
                vars.map(|list| {
                    list.iter()
                        .map(|v| variable::live(path, v, children, &self.key))
                        .collect()
                }),
            ),
            (
                "gitlab.protected_branch",
                branches.map(|list| {
                    list.iter()
                        .map(|b| protected_branch::live(path, b))
                        .collect()
                }),
            ),
            (
                "gitlab.member",
                members.map(|list| list.iter().map(|m| member::live(path, m)).collect()),
            ),
        ];
        for (kind, result) in collections {
            let wanted: Vec<&&Desired> = children
                .iter()
                .filter(|d| d.address.kind() == kind)
                .collect();
            match result {
                Ok(found) => {
                    let mut found: BTreeMap<Address, Live> = found.into_iter().collect();
                    for d in &wanted {
                        let observed = found
                            .remove(&d.address)
                            .map_or(Observed::Absent, Observed::Present);
                        objects.push((d.address.clone(), observed));
                    }
                    for (address, live) in found {
                        let kept = matches!(&address, Address::Member { user, .. }
                            if Some(user.as_str()) == me || Some(user) == holder.as_ref());
                        if !kept {
                            unmanaged.push((address, live));
                        }
                    }
                }
                Err(_) if absent => {
                    objects.extend(wanted.iter().map(|d| (d.address.clone(), Observed::Absent)))
                }
                Err(e) => objects.extend(
                    wanted
                        .iter()
                        .map(|d| (d.address.clone(), Observed::Unknown(describe(&e)))),
                ),
            }
        }
        (objects, unmanaged)
    }

    /// Applies one step. Safe to run twice: each write first checks what is there when its
    /// outcome may be unknown.
    pub async fn write(&self, step: &Step, desired: Option<&Desired>) -> Result<(), StepError> {
        let secrets = desired.map(|d| &d.secrets);
        match &step.address {
            Address::User { username } => user::apply(self, username, step).await,
            Address::Project { path } => project::apply(&self.client, path, step).await,
            Address::Member { project, user } => member::apply(self, project, user, step).await,
            Address::ProtectedBranch { project, branch } => {
                protected_branch::apply(&self.client, project, branch, step).await
            }
            Address::Variable {
                project,
                key,
                scope,
            } => {
                variable::apply(
                    &self.client,
                    (project, key, scope),
                    step,
                    secrets,
                    &self.key,
                )
                .await
            }
            other => Err(StepError::Unsupported(other.kind())),
        }
    }
}

#[async_trait::async_trait]
impl Provider for Gitlab {
    fn owns(&self, address: &Address) -> bool {
        address.system() == "gitlab"
    }

    async fn observe(&self, desired: &[&Desired]) -> LiveState {
        self.read(desired).await
    }

    async fn observe_only(&self, desired: &[&Desired], addresses: &[Address]) -> LiveState {
        self.read_only(desired, addresses).await
    }

    async fn apply(&self, step: &Step, desired: Option<&Desired>) -> Result<(), StepError> {
        self.write(step, desired).await
    }

    fn replace_note(&self, address: &Address) -> Option<String> {
        Self::note(address)
    }

    fn requests(&self) -> u64 {
        self.client.requests()
    }

    fn traffic(&self) -> Traffic {
        self.client.traffic()
    }
}

impl From<ApiErr> for StepError {
    fn from(e: ApiErr) -> Self {
        StepError::Api {
            system: "GitLab",
            message: describe(&e),
        }
    }
}

/// A user's live state from GitLab's user JSON (a lookup or a listing entry).
pub fn user_live(j: &Json) -> Live {
    user::live(j)
}

/// Reads the value of a field of the step's desired fields.
pub(crate) fn want<'a>(step: &'a Step, field: &str) -> Option<&'a crate::live::Value> {
    step.desired.get(field)
}

pub(crate) fn want_str<'a>(step: &'a Step, field: &str) -> Option<&'a str> {
    match want(step, field) {
        Some(crate::live::Value::Str(s)) => Some(s),
        _ => None,
    }
}

pub(crate) fn want_bool(step: &Step, field: &str) -> Option<bool> {
    match want(step, field) {
        Some(crate::live::Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// Whether a step changes `field`.
pub(crate) fn changes(step: &Step, field: &str) -> bool {
    step.action != Action::Update || step.changes.iter().any(|c| c.field == field)
}

/// How many times a create whose outcome was unknown is tried again after a re-read found
/// nothing.
const CREATE_ATTEMPTS: usize = 3;

/// Creates an object safely: when the POST's outcome is unknown (5xx, dropped connection) or
/// GitLab says it exists already, re-read; if it is there, it is adopted (`Ok(true)`: the
/// caller makes it match), if not, the create is tried again. Never creates twice.
pub(crate) async fn create_once<C, R, T>(
    mut create: impl FnMut() -> C,
    mut read: impl FnMut() -> R,
) -> Result<bool, StepError>
where
    C: std::future::Future<Output = Result<(), ApiErr>>,
    R: std::future::Future<Output = Result<Option<T>, ApiErr>>,
{
    let mut last = None;
    for _ in 0..CREATE_ATTEMPTS {
        match create().await {
            Ok(()) => return Ok(false),
            Err(e)
                if is_unknown_outcome(&e)
                    || matches!(
                        status_of(&e),
                        Some(StatusCode::CONFLICT | StatusCode::BAD_REQUEST)
                    ) =>
            {
                if read().await?.is_some() {
                    return Ok(true);
                }
                if !is_unknown_outcome(&e) {
                    return Err(e.into());
                }
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .map(Into::into)
        .unwrap_or_else(|| StepError::Precondition("create failed".into())))
}
