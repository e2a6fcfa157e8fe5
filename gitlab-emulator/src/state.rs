//! The emulated GitLab instance's data: users, namespaces, projects (with their
//! members, protected branches and variables), personal access tokens, SSH
//! keys and CI pipelines and jobs, with the lookup indexes that keep
//! per-request work independent of the instance's size. Owns persistence to
//! and from JSON. It knows nothing about HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::TokenSpec;
use crate::error::EmulatorError;
use crate::hooks::SystemHook;
use crate::model::{
    AccessToken, Job, Member, Namespace, NamespaceKind, Pipeline, Project, SshKey, User, UserState,
    access,
};
use crate::time::now_iso;

/// Version of the state-file layout (2: personal access tokens, SSH keys,
/// pipelines and jobs; format 1 files load too).
const STATE_FORMAT: u32 = 2;

fn first_id() -> u64 {
    1
}

/// Next id per table (GitLab numbers each table separately).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NextIds {
    pub user: u64,
    pub namespace: u64,
    pub project: u64,
    pub member: u64,
    pub protected_branch: u64,
    pub ref_access: u64,
    pub variable: u64,
    #[serde(default = "first_id")]
    pub token: u64,
    #[serde(default = "first_id")]
    pub ssh_key: u64,
    #[serde(default = "first_id")]
    pub pipeline: u64,
    #[serde(default = "first_id")]
    pub job: u64,
    #[serde(default = "first_id")]
    pub hook: u64,
}

impl NextIds {
    pub fn take(counter: &mut u64) -> u64 {
        let id = *counter;
        *counter += 1;
        id
    }
}

/// Lookup indexes, rebuilt after loading (never serialized).
#[derive(Debug, Clone, Default)]
pub(crate) struct Indexes {
    /// Lower-cased username -> user id.
    pub username: HashMap<String, u64>,
    /// Lower-cased email -> user id.
    pub email: HashMap<String, u64>,
    /// Lower-cased namespace full path -> namespace id.
    pub namespace_path: HashMap<String, u64>,
    /// Lower-cased `path_with_namespace` -> project id.
    pub project_path: HashMap<String, u64>,
    /// (namespace id, lower-cased project name) -> project id.
    pub project_name: HashMap<(u64, String), u64>,
    /// Users awaiting their asynchronous deletion: (deadline ms, user id).
    pub pending_deletes: BTreeSet<(u64, u64)>,
    /// Personal access token secret -> token id.
    pub token: HashMap<String, u64>,
    /// CI job token -> job id.
    pub job_token: HashMap<String, u64>,
}

/// Writes only the tokens created at run time: configured tokens are
/// configuration and are re-created on start, reset and load.
fn serialize_created_tokens<S: serde::Serializer>(
    tokens: &BTreeMap<u64, AccessToken>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(tokens.iter().filter(|(_, t)| !t.configured))
}

/// The whole instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub format: u32,
    pub next_id: NextIds,
    pub users: BTreeMap<u64, User>,
    pub namespaces: BTreeMap<u64, Namespace>,
    pub projects: BTreeMap<u64, Project>,
    /// Personal access tokens by id (configured ones are not written out).
    #[serde(default, serialize_with = "serialize_created_tokens")]
    pub access_tokens: BTreeMap<u64, AccessToken>,
    #[serde(default)]
    pub ssh_keys: BTreeMap<u64, SshKey>,
    #[serde(default)]
    pub pipelines: BTreeMap<u64, Pipeline>,
    #[serde(default)]
    pub jobs: BTreeMap<u64, Job>,
    /// `RedirectRoute`s left by project path changes: lower-cased old
    /// `path_with_namespace` -> project id.
    #[serde(default)]
    pub project_redirects: BTreeMap<String, u64>,
    /// System hooks by id.
    #[serde(default)]
    pub system_hooks: BTreeMap<u64, SystemHook>,
    /// System hook payloads of changes not yet handed to the dispatcher, in
    /// the order of the changes (see [`crate::hooks`]).
    #[serde(skip)]
    pub outbox: Vec<Value>,
    #[serde(skip)]
    pub idx: Indexes,
}

impl State {
    /// A fresh CE instance: the `root` admin (user 1) with its `root` namespace (1),
    /// plus the configured tokens.
    pub fn fresh(admin_tokens: &[TokenSpec], user_tokens: &[TokenSpec]) -> Self {
        let now = now_iso();
        let root = User {
            id: 1,
            username: "root".into(),
            name: "Administrator".into(),
            email: "admin@example.com".into(),
            state: UserState::Active,
            is_admin: true,
            external: false,
            bot: false,
            created_at: now.clone(),
            updated_at: now.clone(),
            confirmed_at: Some(now.clone()),
            namespace_id: 1,
            created_by_id: None,
            projects_limit: 100_000,
            can_create_group: true,
            private_profile: false,
            bio: String::new(),
            location: String::new(),
            public_email: None,
            website_url: String::new(),
            organization: String::new(),
            job_title: String::new(),
            note: None,
            delete_at_ms: None,
        };
        let root_ns = Namespace {
            id: 1,
            name: "Administrator".into(),
            path: "root".into(),
            kind: NamespaceKind::User,
            full_path: "root".into(),
            parent_id: None,
            owner_id: 1,
            visibility: "private".into(),
            description: String::new(),
            created_at: now,
        };
        let mut state = State {
            format: STATE_FORMAT,
            next_id: NextIds {
                user: 2,
                namespace: 2,
                project: 1,
                member: 1,
                protected_branch: 1,
                ref_access: 1,
                variable: 1,
                token: 1,
                ssh_key: 1,
                pipeline: 1,
                job: 1,
                hook: 1,
            },
            users: BTreeMap::from([(1, root)]),
            namespaces: BTreeMap::from([(1, root_ns)]),
            projects: BTreeMap::new(),
            access_tokens: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            jobs: BTreeMap::new(),
            project_redirects: BTreeMap::new(),
            system_hooks: BTreeMap::new(),
            outbox: Vec::new(),
            idx: Indexes::default(),
        };
        state.rebuild_indexes();
        state.apply_tokens(admin_tokens, user_tokens);
        state
    }

    /// Makes the configured tokens valid: admin tokens belong to `root`; each
    /// user token to its (created if missing) regular user. A stored token
    /// with the same secret is replaced.
    pub fn apply_tokens(&mut self, admin_tokens: &[TokenSpec], user_tokens: &[TokenSpec]) {
        self.access_tokens.retain(|_, t| !t.configured);
        let now = now_iso();
        for spec in admin_tokens.iter().chain(user_tokens) {
            let user_id = match self.user_by_username(&spec.username) {
                Some(u) => u.id,
                None => {
                    let email = format!("{}@example.com", spec.username.to_lowercase());
                    self.create_user(&spec.username, &spec.username, &email, false, Some(1))
                }
            };
            if let Some(old) = self.idx.token.remove(&spec.token) {
                self.access_tokens.remove(&old);
            }
            let id = NextIds::take(&mut self.next_id.token);
            self.access_tokens.insert(
                id,
                AccessToken {
                    id,
                    user_id,
                    name: "configured".into(),
                    description: None,
                    token: spec.token.clone(),
                    scopes: spec.scopes.clone(),
                    created_at: now.clone(),
                    expires_at: None,
                    revoked: false,
                    last_used_at: None,
                    last_used_ms: 0,
                    configured: true,
                },
            );
            self.idx.token.insert(spec.token.clone(), id);
        }
        // Configured users are configuration, not changes: no system hooks.
        self.outbox.clear();
    }

    /// Adds a token created at run time and indexes its secret.
    pub fn insert_token(&mut self, token: AccessToken) {
        self.idx.token.insert(token.token.clone(), token.id);
        self.access_tokens.insert(token.id, token);
    }

    /// The token with secret `secret`, if any.
    pub fn token_by_secret(&self, secret: &str) -> Option<&AccessToken> {
        self.access_tokens.get(self.idx.token.get(secret)?)
    }

    /// `UserFinder#find_by_id_or_username`: digits are an id, anything else a
    /// (case-insensitive) username.
    pub fn find_user_by_id_or_username(&self, id_or_username: &str) -> Option<u64> {
        if !id_or_username.is_empty() && id_or_username.bytes().all(|b| b.is_ascii_digit()) {
            let id = id_or_username.parse().ok()?;
            return self.users.contains_key(&id).then_some(id);
        }
        self.user_by_username(id_or_username).map(|u| u.id)
    }

    /// A fresh secret `prefix` + 20 random characters, unused by any token.
    pub fn new_secret(&self, prefix: &str) -> String {
        use rand::{Rng, SeedableRng};
        static SALT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let salt = SALT.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(nanos ^ salt);
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        loop {
            let secret: String = (0..20)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            let secret = format!("{prefix}{secret}");
            if !self.idx.token.contains_key(&secret) && !self.idx.job_token.contains_key(&secret) {
                return secret;
            }
        }
    }

    /// Adds a job and indexes its token.
    pub fn insert_job(&mut self, job: Job) {
        self.idx.job_token.insert(job.token.clone(), job.id);
        self.jobs.insert(job.id, job);
    }

    /// Recomputes every index from the records.
    pub fn rebuild_indexes(&mut self) {
        let mut idx = Indexes::default();
        for u in self.users.values_mut() {
            if u.updated_at.is_empty() {
                u.updated_at = u.created_at.clone();
            }
        }
        for u in self.users.values() {
            idx.username.insert(u.username.to_lowercase(), u.id);
            idx.email.insert(u.email.to_lowercase(), u.id);
            if let Some(at) = u.delete_at_ms {
                idx.pending_deletes.insert((at, u.id));
            }
        }
        for n in self.namespaces.values() {
            idx.namespace_path.insert(n.full_path.to_lowercase(), n.id);
        }
        for t in self.access_tokens.values() {
            idx.token.insert(t.token.clone(), t.id);
        }
        for j in self.jobs.values() {
            idx.job_token.insert(j.token.clone(), j.id);
        }
        let after = |max: Option<&u64>| max.map_or(1, |m| m + 1);
        let next = &mut self.next_id;
        next.token = next.token.max(after(self.access_tokens.keys().next_back()));
        next.ssh_key = next.ssh_key.max(after(self.ssh_keys.keys().next_back()));
        next.pipeline = next.pipeline.max(after(self.pipelines.keys().next_back()));
        next.job = next.job.max(after(self.jobs.keys().next_back()));
        next.hook = next.hook.max(after(self.system_hooks.keys().next_back()));
        for p in self.projects.values_mut() {
            p.rebuild_indexes();
            if let Some(ns) = self.namespaces.get(&p.namespace_id) {
                idx.project_path
                    .insert(format!("{}/{}", ns.full_path, p.path).to_lowercase(), p.id);
                idx.project_name
                    .insert((p.namespace_id, p.name.to_lowercase()), p.id);
            }
        }
        self.idx = idx;
    }

    /// Creates a user and its personal namespace; returns the user id.
    pub fn create_user(
        &mut self,
        username: &str,
        name: &str,
        email: &str,
        is_admin: bool,
        created_by: Option<u64>,
    ) -> u64 {
        let id = NextIds::take(&mut self.next_id.user);
        let ns_id = NextIds::take(&mut self.next_id.namespace);
        let now = now_iso();
        self.namespaces.insert(
            ns_id,
            Namespace {
                id: ns_id,
                name: name.to_string(),
                path: username.to_string(),
                kind: NamespaceKind::User,
                full_path: username.to_string(),
                parent_id: None,
                owner_id: id,
                visibility: "private".into(),
                description: String::new(),
                created_at: now.clone(),
            },
        );
        self.idx
            .namespace_path
            .insert(username.to_lowercase(), ns_id);
        self.users.insert(
            id,
            User {
                id,
                username: username.to_string(),
                name: name.to_string(),
                email: email.to_string(),
                state: UserState::Active,
                is_admin,
                external: false,
                bot: false,
                created_at: now.clone(),
                updated_at: now.clone(),
                confirmed_at: Some(now),
                namespace_id: ns_id,
                created_by_id: created_by,
                projects_limit: 100_000,
                can_create_group: true,
                private_profile: false,
                bio: String::new(),
                location: String::new(),
                public_email: None,
                website_url: String::new(),
                organization: String::new(),
                job_title: String::new(),
                note: None,
                delete_at_ms: None,
            },
        );
        self.idx.username.insert(username.to_lowercase(), id);
        self.idx.email.insert(email.to_lowercase(), id);
        let event = crate::hooks::user_event(&self.users[&id], "create", None);
        self.outbox.push(event);
        id
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        let id = self.idx.username.get(&username.to_lowercase())?;
        self.users.get(id)
    }

    /// Finds a project by numeric id or (case-insensitive) `path_with_namespace`.
    pub fn find_project_id(&self, id_or_path: &str) -> Option<u64> {
        if let Ok(id) = id_or_path.parse::<u64>() {
            return self.projects.contains_key(&id).then_some(id);
        }
        // `find_by_full_path(id, follow_redirects: true)` (`lib/api/helpers.rb`).
        let key = id_or_path.to_lowercase();
        self.idx
            .project_path
            .get(&key)
            .or_else(|| self.project_redirects.get(&key))
            .copied()
            .filter(|id| self.projects.contains_key(id))
    }

    /// Finds a namespace by numeric id or (case-insensitive) full path.
    pub fn find_namespace_id(&self, id_or_path: &str) -> Option<u64> {
        if let Ok(id) = id_or_path.parse::<u64>() {
            return self.namespaces.contains_key(&id).then_some(id);
        }
        self.idx
            .namespace_path
            .get(&id_or_path.to_lowercase())
            .copied()
    }

    /// Whether `user_id` owns namespace `ns_id` or one of its ancestors.
    pub fn owns_namespace(&self, user_id: u64, ns_id: u64) -> bool {
        let mut current = Some(ns_id);
        while let Some(id) = current {
            match self.namespaces.get(&id) {
                Some(ns) if ns.owner_id == user_id => return true,
                Some(ns) => current = ns.parent_id,
                None => return false,
            }
        }
        false
    }

    /// Whether `user_id` holds the personal namespace `project` lives in
    /// (`Project#personal_namespace_holder?`). GitLab makes the holder an
    /// Owner member of every project created there, and `ProjectMemberPolicy`
    /// prevents `update_project_member` and `destroy_project_member` on that
    /// membership for everyone, admins included: PUT and DELETE answer 403.
    pub fn personal_namespace_holder(&self, user_id: u64, project: &Project) -> bool {
        self.namespaces
            .get(&project.namespace_id)
            .is_some_and(|ns| ns.kind == NamespaceKind::User && ns.owner_id == user_id)
    }

    /// The level a user holds on `project` through membership: direct
    /// membership, or Owner of the namespace (or an ancestor group) it lives in.
    pub fn membership_level(&self, user_id: u64, project: &Project) -> i64 {
        let direct = project.member(user_id).map_or(0, |m| m.access_level);
        if self.owns_namespace(user_id, project.namespace_id) {
            return direct.max(access::OWNER);
        }
        direct
    }

    /// The access level `user` effectively has on `project` (admins: ADMIN).
    pub fn project_access(&self, user: &User, project: &Project) -> i64 {
        if user.is_admin {
            return access::ADMIN;
        }
        self.membership_level(user.id, project)
    }

    /// Whether `user` may see `project` at all (otherwise GitLab answers 404).
    pub fn can_read_project(&self, user: &User, project: &Project) -> bool {
        project.visibility != "private" || self.project_access(user, project) >= access::GUEST
    }

    /// Full path of a project, e.g. `group/sub/proj`.
    pub fn path_with_namespace(&self, project: &Project) -> String {
        match self.namespaces.get(&project.namespace_id) {
            Some(ns) => format!("{}/{}", ns.full_path, project.path),
            None => project.path.clone(),
        }
    }

    /// Renders a project entity (with `permissions` when `viewer` is given).
    pub fn project_json(&self, project: &Project, base_url: &str, viewer: Option<&User>) -> Value {
        let Some(ns) = self.namespaces.get(&project.namespace_id) else {
            return Value::Null;
        };
        let owner = match ns.kind {
            NamespaceKind::User => self.users.get(&ns.owner_id),
            NamespaceKind::Group => None,
        };
        let access = viewer.map(|u| (self.project_access(u, project), u.is_admin));
        project.to_json(base_url, ns, &ns.full_name(&self.namespaces), owner, access)
    }

    /// `Entities::Ci::Job` for `job` (pipeline status from its jobs).
    pub fn job_json(&self, job: &Job, base_url: &str) -> Value {
        let project_web_url = self
            .projects
            .get(&job.project_id)
            .map(|p| format!("{base_url}/{}", self.path_with_namespace(p)))
            .unwrap_or_default();
        let user = job.user_id.and_then(|id| self.users.get(&id));
        let (pipeline, commit) = match self.pipelines.get(&job.pipeline_id) {
            Some(p) => {
                let status = p.status(
                    self.jobs
                        .values()
                        .filter(|j| j.pipeline_id == p.id)
                        .map(|j| j.status.as_str()),
                );
                (
                    p.to_json(status, &project_web_url),
                    p.commit_json(user, &project_web_url),
                )
            }
            None => (Value::Null, Value::Null),
        };
        job.to_json(
            user,
            &pipeline,
            &commit,
            &project_web_url,
            base_url,
            crate::time::now_ms(),
        )
    }

    /// Removes users whose asynchronous deletion is due, with their personal
    /// namespace, personal projects, memberships and tokens.
    pub fn purge_due_deletes(&mut self, now_ms: u64) {
        while let Some(&(at, user_id)) = self.idx.pending_deletes.first() {
            if at > now_ms {
                break;
            }
            self.idx.pending_deletes.pop_first();
            self.remove_user_now(user_id);
        }
    }

    fn remove_user_now(&mut self, user_id: u64) {
        let Some(user) = self.users.remove(&user_id) else {
            return;
        };
        // `Users::DestroyService` removes memberships and personal projects
        // first (their hooks fire), then the user (`user_destroy`).
        let memberships: Vec<(u64, Member)> = self
            .projects
            .values()
            .filter(|p| p.namespace_id != user.namespace_id)
            .filter_map(|p| p.member(user_id).map(|m| (p.id, m.clone())))
            .collect();
        self.users.insert(user_id, user.clone());
        for (pid, m) in &memberships {
            let event =
                crate::hooks::member_event(self, &self.projects[pid], m, "user_remove_from_team");
            self.outbox.push(event);
        }
        self.users.remove(&user_id);
        self.idx.username.remove(&user.username.to_lowercase());
        self.idx.email.remove(&user.email.to_lowercase());
        let personal: Vec<u64> = self
            .projects
            .values()
            .filter(|p| p.namespace_id == user.namespace_id)
            .map(|p| p.id)
            .collect();
        for id in personal {
            self.remove_project_now(id);
        }
        if let Some(ns) = self.namespaces.remove(&user.namespace_id) {
            self.idx.namespace_path.remove(&ns.full_path.to_lowercase());
        }
        for project in self.projects.values_mut() {
            project.members.retain(|m| m.user_id != user_id);
        }
        let idx = &mut self.idx;
        self.access_tokens.retain(|_, t| {
            let keep = t.user_id != user_id;
            if !keep {
                idx.token.remove(&t.token);
            }
            keep
        });
        self.ssh_keys.retain(|_, k| k.user_id != user_id);
        self.outbox
            .push(crate::hooks::user_event(&user, "destroy", None));
        // GitLab moves the contributions of a deleted user to the ghost user;
        // here the jobs simply lose their user.
        for job in self.jobs.values_mut() {
            if job.user_id == Some(user_id) {
                job.user_id = None;
            }
        }
    }

    /// Removes a project and frees its path and name.
    pub fn remove_project_now(&mut self, project_id: u64) {
        if let Some(project) = self.projects.get(&project_id) {
            let event = crate::hooks::project_event(self, project, "destroy", None);
            self.outbox.push(event);
        }
        let Some(project) = self.projects.remove(&project_id) else {
            return;
        };
        self.project_redirects.retain(|_, id| *id != project_id);
        if let Some(ns) = self.namespaces.get(&project.namespace_id) {
            self.idx
                .project_path
                .remove(&format!("{}/{}", ns.full_path, project.path).to_lowercase());
        }
        self.idx
            .project_name
            .remove(&(project.namespace_id, project.name.to_lowercase()));
        let idx = &mut self.idx;
        self.jobs.retain(|_, j| {
            let keep = j.project_id != project_id;
            if !keep {
                idx.job_token.remove(&j.token);
            }
            keep
        });
        self.pipelines.retain(|_, p| p.project_id != project_id);
    }

    /// Serializes the state as pretty JSON.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// Parses state JSON and rebuilds indexes.
    pub fn from_json_value(value: Value) -> Result<Self, serde_json::Error> {
        let mut state: State = serde_json::from_value(value)?;
        state.rebuild_indexes();
        Ok(state)
    }

    /// Loads state from `path`.
    pub fn load(path: &Path) -> Result<Self, EmulatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::StateIo {
            path: path.to_path_buf(),
            source,
        })?;
        let value: Value =
            serde_json::from_str(&text).map_err(|source| EmulatorError::StateFormat {
                path: path.to_path_buf(),
                source,
            })?;
        Self::from_json_value(value).map_err(|source| EmulatorError::StateFormat {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes state to `path` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), EmulatorError> {
        let tmp = path.with_extension("tmp");
        let io_err = |source| EmulatorError::StateIo {
            path: path.to_path_buf(),
            source,
        };
        std::fs::write(&tmp, self.to_json_string()).map_err(io_err)?;
        std::fs::rename(&tmp, path).map_err(io_err)
    }
}
