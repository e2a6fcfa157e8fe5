//! The emulated GitLab instance's data: users, namespaces, projects (with their
//! members, protected branches and variables) and tokens, with the lookup
//! indexes that keep per-request work independent of the instance's size.
//! Owns persistence to and from JSON. It knows nothing about HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::UserTokenSpec;
use crate::error::EmulatorError;
use crate::model::{Namespace, NamespaceKind, Project, User, UserState, access};
use crate::time::now_iso;

/// Version of the state-file layout.
const STATE_FORMAT: u32 = 1;

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
}

/// The whole instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub format: u32,
    pub next_id: NextIds,
    pub users: BTreeMap<u64, User>,
    pub namespaces: BTreeMap<u64, Namespace>,
    pub projects: BTreeMap<u64, Project>,
    /// Token -> user id.
    pub tokens: BTreeMap<String, u64>,
    #[serde(skip)]
    pub idx: Indexes,
}

impl State {
    /// A fresh CE instance: the `root` admin (user 1) with its `root` namespace (1),
    /// plus the configured tokens.
    pub fn fresh(admin_tokens: &[String], user_tokens: &[UserTokenSpec]) -> Self {
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
            },
            users: BTreeMap::from([(1, root)]),
            namespaces: BTreeMap::from([(1, root_ns)]),
            projects: BTreeMap::new(),
            tokens: BTreeMap::new(),
            idx: Indexes::default(),
        };
        state.rebuild_indexes();
        state.apply_tokens(admin_tokens, user_tokens);
        state
    }

    /// Makes the configured tokens valid: admin tokens map to `root`; each user
    /// token maps to its (created if missing) regular user.
    pub fn apply_tokens(&mut self, admin_tokens: &[String], user_tokens: &[UserTokenSpec]) {
        for token in admin_tokens {
            self.tokens.insert(token.clone(), 1);
        }
        for spec in user_tokens {
            let id = match self.user_by_username(&spec.username) {
                Some(u) => u.id,
                None => {
                    let email = format!("{}@example.com", spec.username.to_lowercase());
                    self.create_user(&spec.username, &spec.username, &email, false, Some(1))
                }
            };
            self.tokens.insert(spec.token.clone(), id);
        }
    }

    /// Recomputes every index from the records.
    pub fn rebuild_indexes(&mut self) {
        let mut idx = Indexes::default();
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
        self.idx
            .project_path
            .get(&id_or_path.to_lowercase())
            .copied()
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
        self.tokens.retain(|_, uid| *uid != user_id);
    }

    /// Removes a project and frees its path and name.
    pub fn remove_project_now(&mut self, project_id: u64) {
        let Some(project) = self.projects.remove(&project_id) else {
            return;
        };
        if let Some(ns) = self.namespaces.get(&project.namespace_id) {
            self.idx
                .project_path
                .remove(&format!("{}/{}", ns.full_path, project.path).to_lowercase());
        }
        self.idx
            .project_name
            .remove(&(project.namespace_id, project.name.to_lowercase()));
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
