//! Stored records (what the state file contains) and their presentation as
//! GitLab API entities (`lib/api/entities/*.rb`): field names, types and which
//! fields each view exposes. Presentation is pure; it never mutates state.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Access levels (`Gitlab::Access`).
pub(crate) mod access {
    pub const NO_ACCESS: i64 = 0;
    pub const MINIMAL: i64 = 5;
    pub const GUEST: i64 = 10;
    pub const PLANNER: i64 = 15;
    pub const REPORTER: i64 = 20;
    pub const SECURITY_MANAGER: i64 = 25;
    pub const DEVELOPER: i64 = 30;
    pub const MAINTAINER: i64 = 40;
    pub const OWNER: i64 = 50;
    pub const ADMIN: i64 = 60;

    /// Levels a project membership may have.
    pub const MEMBER_LEVELS: [i64; 9] = [
        MINIMAL,
        GUEST,
        PLANNER,
        REPORTER,
        SECURITY_MANAGER,
        DEVELOPER,
        MAINTAINER,
        OWNER,
        NO_ACCESS,
    ];

    /// Levels a protected-branch push or merge rule may have (`ProtectedRefAccess`).
    pub const PROTECTED_REF_LEVELS: [i64; 4] = [MAINTAINER, DEVELOPER, NO_ACCESS, ADMIN];
}

/// User account state (`User#state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum UserState {
    Active,
    Blocked,
    Deactivated,
}

impl UserState {
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Active => "active",
            UserState::Blocked => "blocked",
            UserState::Deactivated => "deactivated",
        }
    }
}

/// A user account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct User {
    pub id: u64,
    pub username: String,
    pub name: String,
    pub email: String,
    pub state: UserState,
    pub is_admin: bool,
    pub external: bool,
    pub bot: bool,
    pub created_at: String,
    /// Changes when the user record's own attributes change (not exposed by
    /// the API entities; used by `order_by=updated_at` and system hooks).
    /// Older state files lack it: it is then the creation time.
    #[serde(default)]
    pub updated_at: String,
    pub confirmed_at: Option<String>,
    pub namespace_id: u64,
    pub created_by_id: Option<u64>,
    pub projects_limit: i64,
    pub can_create_group: bool,
    pub private_profile: bool,
    pub bio: String,
    pub location: String,
    pub public_email: Option<String>,
    pub website_url: String,
    pub organization: String,
    pub job_title: String,
    pub note: Option<String>,
    /// Unix milliseconds after which an asynchronously deleted user disappears.
    pub delete_at_ms: Option<u64>,
}

/// Which entity a user is presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserView {
    /// `Entities::UserBasic` (non-admin lists, members' embedded users).
    Basic,
    /// `Entities::User` (non-admin `GET /users/:id`).
    Public,
    /// `Entities::UserPublic` (`GET /user` for a non-admin).
    SelfView,
    /// `Entities::UserWithAdmin` / `UserDetailsWithAdmin` (admin views).
    Admin,
}

impl User {
    pub fn to_json(&self, base_url: &str, view: UserView) -> Value {
        let mut v = json!({
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "state": self.state.as_str(),
            "locked": false,
            "avatar_url": Value::Null,
            "web_url": format!("{base_url}/{}", self.username),
        });
        if view == UserView::Basic {
            return v;
        }
        let o = v.as_object_mut().expect("object literal");
        o.insert("created_at".into(), json!(self.created_at));
        o.insert("bio".into(), json!(self.bio));
        o.insert("location".into(), json!(self.location));
        o.insert("public_email".into(), json!(self.public_email));
        o.insert("skype".into(), json!(""));
        o.insert("linkedin".into(), json!(""));
        o.insert("twitter".into(), json!(""));
        o.insert("discord".into(), json!(""));
        o.insert("website_url".into(), json!(self.website_url));
        o.insert("organization".into(), json!(self.organization));
        o.insert("job_title".into(), json!(self.job_title));
        o.insert("pronouns".into(), Value::Null);
        o.insert("bot".into(), json!(self.bot));
        o.insert("work_information".into(), Value::Null);
        o.insert("followers".into(), json!(0));
        o.insert("following".into(), json!(0));
        o.insert("local_time".into(), Value::Null);
        if view == UserView::Public {
            return v;
        }
        let o = v.as_object_mut().expect("object literal");
        o.insert("last_sign_in_at".into(), Value::Null);
        o.insert("confirmed_at".into(), json!(self.confirmed_at));
        o.insert("last_activity_on".into(), Value::Null);
        o.insert("email".into(), json!(self.email));
        o.insert("theme_id".into(), json!(3));
        o.insert("color_scheme_id".into(), json!(1));
        o.insert("projects_limit".into(), json!(self.projects_limit));
        o.insert("current_sign_in_at".into(), Value::Null);
        o.insert("identities".into(), json!([]));
        o.insert("can_create_group".into(), json!(self.can_create_group));
        o.insert(
            "can_create_project".into(),
            json!(self.projects_limit > 0 || self.is_admin),
        );
        o.insert("two_factor_enabled".into(), json!(false));
        o.insert("external".into(), json!(self.external));
        o.insert("private_profile".into(), json!(self.private_profile));
        o.insert("commit_email".into(), json!(self.email));
        if view == UserView::Admin {
            o.insert("is_admin".into(), json!(self.is_admin));
            o.insert("note".into(), json!(self.note));
            o.insert("namespace_id".into(), json!(self.namespace_id));
            o.insert(
                "created_by".into(),
                match self.created_by_id {
                    Some(id) => json!({ "id": id }),
                    None => Value::Null,
                },
            );
        }
        v
    }
}

/// Namespace kind (`Namespace#kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NamespaceKind {
    User,
    Group,
}

/// A user's personal namespace or a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Namespace {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub kind: NamespaceKind,
    pub full_path: String,
    pub parent_id: Option<u64>,
    /// For a user namespace, its user; for a group, the user who created it (its Owner).
    pub owner_id: u64,
    pub visibility: String,
    pub description: String,
    pub created_at: String,
}

impl Namespace {
    /// `full_name` as GitLab renders it ("Parent / Child").
    pub fn full_name(&self, namespaces: &BTreeMap<u64, Namespace>) -> String {
        let mut names = vec![self.name.clone()];
        let mut parent = self.parent_id;
        while let Some(pid) = parent {
            match namespaces.get(&pid) {
                Some(p) => {
                    names.push(p.name.clone());
                    parent = p.parent_id;
                }
                None => break,
            }
        }
        names.reverse();
        names.join(" / ")
    }

    fn web_url(&self, base_url: &str) -> String {
        match self.kind {
            NamespaceKind::User => format!("{base_url}/{}", self.full_path),
            NamespaceKind::Group => format!("{base_url}/groups/{}", self.full_path),
        }
    }

    /// `Entities::NamespaceBasic` (embedded in projects).
    pub fn basic_json(&self, base_url: &str) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "path": self.path,
            "kind": match self.kind { NamespaceKind::User => "user", NamespaceKind::Group => "group" },
            "full_path": self.full_path,
            "parent_id": self.parent_id,
            "avatar_url": Value::Null,
            "web_url": self.web_url(base_url),
        })
    }

    /// `Entities::Namespace` (`GET /namespaces`).
    pub fn namespace_json(&self, base_url: &str, members: u64) -> Value {
        let mut v = self.basic_json(base_url);
        let o = v.as_object_mut().expect("object literal");
        o.insert("members_count_with_descendants".into(), json!(members));
        o.insert("root_repository_size".into(), json!(0));
        o.insert("projects_count".into(), json!(0));
        v
    }

    /// `Entities::Group`.
    pub fn group_json(&self, base_url: &str, namespaces: &BTreeMap<u64, Namespace>) -> Value {
        json!({
            "id": self.id,
            "web_url": self.web_url(base_url),
            "name": self.name,
            "path": self.path,
            "description": self.description,
            "visibility": self.visibility,
            "share_with_group_lock": false,
            "require_two_factor_authentication": false,
            "two_factor_grace_period": 48,
            "project_creation_level": "developer",
            "auto_devops_enabled": Value::Null,
            "subgroup_creation_level": "maintainer",
            "emails_disabled": false,
            "emails_enabled": true,
            "mentions_disabled": Value::Null,
            "lfs_enabled": true,
            "default_branch": Value::Null,
            "default_branch_protection": 2,
            "avatar_url": Value::Null,
            "request_access_enabled": true,
            "full_name": self.full_name(namespaces),
            "full_path": self.full_path,
            "created_at": self.created_at,
            "parent_id": self.parent_id,
            "organization_id": 1,
            "shared_runners_setting": "enabled",
            "ldap_cn": Value::Null,
            "ldap_access": Value::Null,
            "marked_for_deletion_on": Value::Null,
        })
    }
}

/// A direct project membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Member {
    pub id: u64,
    pub user_id: u64,
    pub access_level: i64,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub created_by_id: u64,
    /// Set when the membership is updated (system hook `updated_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl Member {
    /// `Entities::Member` (`lib/api/entities/member.rb`): the user's basic
    /// fields plus the membership's; `ee` adds what `EE::API::Entities::Member` does.
    pub fn to_json(
        &self,
        user: &User,
        creator: Option<&User>,
        base_url: &str,
        admin_view: bool,
        ee: bool,
    ) -> Value {
        let mut v = user.to_json(base_url, UserView::Basic);
        let o = v.as_object_mut().expect("object literal");
        o.insert("access_level".into(), json!(self.access_level));
        o.insert("created_at".into(), json!(self.created_at));
        // `expose :created_by, expose_nil: false`
        if let Some(c) = creator {
            o.insert("created_by".into(), c.to_json(base_url, UserView::Basic));
        }
        o.insert("expires_at".into(), json!(self.expires_at));
        // EE::API::Entities::Member only: `membership_state` and, for admins,
        // `email`. `member_role` is `expose_nil: false` (no custom roles here)
        // and `group_saml_identity` needs group SAML, so neither is ever sent.
        if ee {
            o.insert("membership_state".into(), json!("active"));
            if admin_view {
                o.insert("email".into(), json!(user.email));
            }
        }
        v
    }
}

/// One push/merge access rule of a protected branch (`Entities::ProtectedRefAccess`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RefAccess {
    pub id: u64,
    pub access_level: i64,
    pub user_id: Option<u64>,
    pub group_id: Option<u64>,
    pub deploy_key_id: Option<u64>,
}

/// `ProtectedRefAccess#humanize` for role-based rules.
pub(crate) fn access_level_description(level: i64) -> &'static str {
    match level {
        access::MAINTAINER => "Maintainers",
        access::DEVELOPER => "Developers + Maintainers",
        access::NO_ACCESS => "No one",
        access::ADMIN => "Administrators",
        _ => "Unknown",
    }
}

impl RefAccess {
    /// `Entities::ProtectedRefAccess`: `deploy_key_id` only where the table has
    /// the column (push rules); `user_id`/`group_id` come from the EE module.
    pub fn to_json(&self, with_deploy_key: bool, ee: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "access_level": self.access_level,
            "access_level_description": access_level_description(self.access_level),
        });
        let o = v.as_object_mut().expect("object literal");
        if with_deploy_key {
            o.insert("deploy_key_id".into(), json!(self.deploy_key_id));
        }
        if ee {
            o.insert("user_id".into(), json!(self.user_id));
            o.insert("group_id".into(), json!(self.group_id));
        }
        v
    }
}

/// A protected branch rule (name may be a wildcard pattern).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProtectedBranch {
    pub id: u64,
    pub name: String,
    pub push_access_levels: Vec<RefAccess>,
    pub merge_access_levels: Vec<RefAccess>,
    pub allow_force_push: bool,
    pub code_owner_approval_required: bool,
}

impl ProtectedBranch {
    /// `Entities::ProtectedBranch` (`lib/api/entities/protected_branch.rb`);
    /// `code_owner_approval_required` only with `ee` (EE module). No
    /// `unprotect_access_levels` in either.
    pub fn to_json(&self, ee: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "push_access_levels": self.push_access_levels.iter().map(|a| a.to_json(true, ee)).collect::<Vec<_>>(),
            "merge_access_levels": self.merge_access_levels.iter().map(|a| a.to_json(false, ee)).collect::<Vec<_>>(),
            "allow_force_push": self.allow_force_push,
        });
        if ee {
            v["code_owner_approval_required"] = json!(self.code_owner_approval_required);
        }
        v
    }
}

/// A project CI/CD variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Variable {
    pub id: u64,
    pub key: String,
    pub value: String,
    pub variable_type: String,
    pub protected: bool,
    pub masked: bool,
    pub hidden: bool,
    pub raw: bool,
    pub environment_scope: String,
    pub description: Option<String>,
}

impl Variable {
    /// `Entities::Ci::Variable`; hidden variables render `value: null`.
    pub fn to_json(&self) -> Value {
        json!({
            "variable_type": self.variable_type,
            "key": self.key,
            "value": if self.hidden { Value::Null } else { Value::String(self.value.clone()) },
            "hidden": self.hidden,
            "protected": self.protected,
            "masked": self.masked,
            "raw": self.raw,
            "environment_scope": self.environment_scope,
            "description": self.description,
        })
    }
}

/// Boolean and string project settings stored generically (name -> value).
pub(crate) const PROJECT_BOOL_SETTINGS: &[(&str, bool)] = &[
    ("lfs_enabled", true),
    ("shared_runners_enabled", true),
    ("request_access_enabled", true),
    ("only_allow_merge_if_pipeline_succeeds", false),
    ("only_allow_merge_if_all_discussions_are_resolved", false),
    ("allow_merge_on_skipped_pipeline", false),
    ("remove_source_branch_after_merge", true),
    ("printing_merge_request_link_enabled", true),
    ("resolve_outdated_diff_discussions", false),
    ("emails_enabled", true),
    ("packages_enabled", true),
    ("service_desk_enabled", false),
    ("autoclose_referenced_issues", true),
    ("public_jobs", true),
];

/// How a further project setting is typed in `optional_project_params_ce` /
/// `optional_update_params_ce` (`lib/api/helpers/projects_helpers.rb`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SettingKind {
    Bool,
    Int,
    /// Free text (null by default unless a default is given).
    Text,
    /// One of the listed values.
    OneOf(&'static [&'static str]),
    /// An array of strings.
    List,
}

/// Further documented settings: name, type, whether `POST /projects` takes it
/// too (else only `PUT`), and GitLab's default as JSON text. All are stored
/// and shown under the same name in the project entity.
pub(crate) const PROJECT_MORE_SETTINGS: &[(&str, SettingKind, bool, &str)] = &[
    ("build_timeout", SettingKind::Int, true, "3600"),
    (
        "auto_cancel_pending_pipelines",
        SettingKind::OneOf(&["disabled", "enabled"]),
        true,
        "\"enabled\"",
    ),
    ("show_default_award_emojis", SettingKind::Bool, true, "true"),
    (
        "show_diff_preview_in_email",
        SettingKind::Bool,
        true,
        "true",
    ),
    (
        "warn_about_potentially_unwanted_characters",
        SettingKind::Bool,
        true,
        "true",
    ),
    (
        "enforce_auth_checks_on_uploads",
        SettingKind::Bool,
        true,
        "true",
    ),
    ("group_runners_enabled", SettingKind::Bool, true, "true"),
    (
        "resource_group_default_process_mode",
        SettingKind::OneOf(&[
            "unordered",
            "oldest_first",
            "newest_first",
            "newest_ready_first",
        ]),
        true,
        "\"unordered\"",
    ),
    ("suggestion_commit_message", SettingKind::Text, true, "null"),
    ("merge_commit_template", SettingKind::Text, true, "null"),
    ("squash_commit_template", SettingKind::Text, true, "null"),
    ("issue_branch_template", SettingKind::Text, true, "null"),
    ("auto_devops_enabled", SettingKind::Bool, true, "true"),
    (
        "auto_devops_deploy_strategy",
        SettingKind::OneOf(&["continuous", "manual", "timed_incremental"]),
        true,
        "\"continuous\"",
    ),
    ("repository_storage", SettingKind::Text, true, "\"default\""),
    ("merge_request_title_regex", SettingKind::Text, true, "null"),
    (
        "merge_request_title_regex_description",
        SettingKind::Text,
        true,
        "null",
    ),
    (
        "forking_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    (
        "package_registry_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled", "public"]),
        true,
        "\"enabled\"",
    ),
    (
        "pages_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled", "public"]),
        true,
        "\"private\"",
    ),
    (
        "analytics_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    (
        "security_and_compliance_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"private\"",
    ),
    (
        "releases_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    (
        "environments_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    (
        "feature_flags_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    (
        "infrastructure_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    (
        "monitor_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    (
        "model_experiments_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    (
        "model_registry_access_level",
        SettingKind::OneOf(&["disabled", "private", "enabled"]),
        true,
        "\"enabled\"",
    ),
    ("ci_default_git_depth", SettingKind::Int, false, "20"),
    ("keep_latest_artifact", SettingKind::Bool, false, "true"),
    (
        "ci_forward_deployment_enabled",
        SettingKind::Bool,
        false,
        "true",
    ),
    (
        "ci_forward_deployment_rollback_allowed",
        SettingKind::Bool,
        false,
        "true",
    ),
    (
        "ci_allow_fork_pipelines_to_run_in_parent_project",
        SettingKind::Bool,
        false,
        "true",
    ),
    ("ci_separated_caches", SettingKind::Bool, false, "true"),
    (
        "restrict_user_defined_variables",
        SettingKind::Bool,
        false,
        "false",
    ),
    (
        "ci_pipeline_variables_minimum_override_role",
        SettingKind::OneOf(&["no_one_allowed", "developer", "maintainer", "owner"]),
        false,
        "\"developer\"",
    ),
    (
        "ci_push_repository_for_job_token_allowed",
        SettingKind::Bool,
        false,
        "false",
    ),
    (
        "ci_id_token_sub_claim_components",
        SettingKind::List,
        false,
        "[\"project_path\",\"ref_type\",\"ref\"]",
    ),
    (
        "ci_delete_pipelines_in_seconds",
        SettingKind::Int,
        false,
        "null",
    ),
    ("max_artifacts_size", SettingKind::Int, false, "null"),
];

/// Features whose boolean is derived from their access level
/// (`app/models/concerns/project_features_compatibility.rb`: `issues_enabled=`
/// writes `issues_access_level`; the entity's boolean is "not disabled").
pub(crate) const FEATURE_PAIRS: &[(&str, &str)] = &[
    ("issues_enabled", "issues_access_level"),
    ("merge_requests_enabled", "merge_requests_access_level"),
    ("wiki_enabled", "wiki_access_level"),
    ("jobs_enabled", "builds_access_level"),
    ("snippets_enabled", "snippets_access_level"),
    (
        "container_registry_enabled",
        "container_registry_access_level",
    ),
];

/// String-valued settings with their allowed values (empty = free text) and defaults.
pub(crate) const PROJECT_STRING_SETTINGS: &[(&str, &[&str], &str)] = &[
    ("merge_method", &["merge", "rebase_merge", "ff"], "merge"),
    (
        "squash_option",
        &["never", "always", "default_on", "default_off"],
        "default_off",
    ),
    ("ci_config_path", &[], ""),
    ("build_git_strategy", &["fetch", "clone"], "fetch"),
    (
        "issues_access_level",
        &["disabled", "private", "enabled"],
        "enabled",
    ),
    (
        "repository_access_level",
        &["disabled", "private", "enabled"],
        "enabled",
    ),
    (
        "merge_requests_access_level",
        &["disabled", "private", "enabled"],
        "enabled",
    ),
    (
        "builds_access_level",
        &["disabled", "private", "enabled"],
        "enabled",
    ),
    (
        "wiki_access_level",
        &["disabled", "private", "enabled"],
        "enabled",
    ),
    (
        "snippets_access_level",
        &["disabled", "private", "enabled"],
        "enabled",
    ),
    (
        "container_registry_access_level",
        &["disabled", "private", "enabled"],
        "enabled",
    ),
];

/// A project with its members, protected branches and variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Project {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub description: Option<String>,
    pub namespace_id: u64,
    pub visibility: String,
    pub default_branch: Option<String>,
    /// Branches that exist in the (imaginary) repository.
    pub branches: Vec<String>,
    pub topics: Vec<String>,
    pub settings: BTreeMap<String, Value>,
    pub created_at: String,
    pub updated_at: String,
    pub last_activity_at: String,
    pub archived: bool,
    pub creator_id: u64,
    pub marked_for_deletion_on: Option<String>,
    pub marked_for_deletion_at: Option<String>,
    pub members: Vec<Member>,
    pub protected_branches: Vec<ProtectedBranch>,
    /// Variables by id (GitLab lists them in id order).
    pub variables: BTreeMap<u64, Variable>,
    /// Variable ids by key (rebuilt on load).
    #[serde(skip)]
    pub variable_keys: HashMap<String, Vec<u64>>,
}

impl Project {
    pub fn rebuild_indexes(&mut self) {
        self.variable_keys.clear();
        for v in self.variables.values() {
            self.variable_keys
                .entry(v.key.clone())
                .or_default()
                .push(v.id);
        }
    }

    /// `Project#default_branch_or_main`: the repository's default branch, or
    /// the instance default (`main`) while the repository is empty.
    pub fn default_branch_or_main(&self) -> &str {
        self.default_branch.as_deref().unwrap_or("main")
    }

    /// A string setting, or its default. A feature's access level also reads
    /// a boolean stored by older emulators (`false` = `disabled`).
    pub fn setting_str(&self, name: &str) -> Value {
        if let Some(v) = self.settings.get(name) {
            return v.clone();
        }
        if let Some((flag, _)) = FEATURE_PAIRS.iter().find(|(_, level)| *level == name)
            && self.settings.get(*flag).and_then(Value::as_bool) == Some(false)
        {
            return json!("disabled");
        }
        PROJECT_STRING_SETTINGS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or(Value::Null, |(_, _, d)| json!(d))
    }

    pub fn member(&self, user_id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id == user_id)
    }

    pub fn setting_bool(&self, name: &str, default: bool) -> bool {
        self.settings
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// `Entities::Project` (with `permissions` when `access` is given).
    pub fn to_json(
        &self,
        base_url: &str,
        namespace: &Namespace,
        namespace_full_name: &str,
        owner: Option<&User>,
        access: Option<(i64, bool)>,
    ) -> Value {
        let pwn = format!("{}/{}", namespace.full_path, self.path);
        let web_url = format!("{base_url}/{pwn}");
        let host = base_url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .split(':')
            .next()
            .unwrap_or("localhost")
            .to_string();
        let mut v = json!({
            "id": self.id,
            "description": self.description,
            "name": self.name,
            "name_with_namespace": format!("{namespace_full_name} / {}", self.name),
            "path": self.path,
            "path_with_namespace": pwn,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            // `BasicProjectDetails`: `expose :default_branch_or_main, as: :default_branch`
            "default_branch": self.default_branch_or_main(),
            "tag_list": self.topics,
            "topics": self.topics,
            "ssh_url_to_repo": format!("git@{host}:{pwn}.git"),
            "http_url_to_repo": format!("{web_url}.git"),
            "web_url": web_url,
            "readme_url": (!self.branches.is_empty()).then(|| format!("{web_url}/-/blob/{}/README.md", self.default_branch_or_main())),
            "forks_count": 0,
            "avatar_url": Value::Null,
            "star_count": 0,
            "last_activity_at": self.last_activity_at,
            "visibility": self.visibility,
            "namespace": namespace.basic_json(base_url),
            "container_registry_image_prefix": format!("{host}:5050/{}", pwn.to_lowercase()),
            "_links": {
                "self": format!("{base_url}/api/v4/projects/{}", self.id),
                "issues": format!("{base_url}/api/v4/projects/{}/issues", self.id),
                "merge_requests": format!("{base_url}/api/v4/projects/{}/merge_requests", self.id),
                "repo_branches": format!("{base_url}/api/v4/projects/{}/repository/branches", self.id),
                "labels": format!("{base_url}/api/v4/projects/{}/labels", self.id),
                "events": format!("{base_url}/api/v4/projects/{}/events", self.id),
                "members": format!("{base_url}/api/v4/projects/{}/members", self.id),
                "cluster_agents": format!("{base_url}/api/v4/projects/{}/cluster_agents", self.id),
            },
            "empty_repo": self.branches.is_empty(),
            "archived": self.archived,
            "resolve_outdated_diff_discussions": self.setting_bool("resolve_outdated_diff_discussions", false),
            "creator_id": self.creator_id,
            "import_status": "none",
            "open_issues_count": 0,
            "marked_for_deletion_at": self.marked_for_deletion_at,
            "marked_for_deletion_on": self.marked_for_deletion_on,
            // `Entities::Project` `expose :shared_with_groups` (`SharedGroupWithProject` of the
            // project's group links); sharing a project with a group is not modelled, so empty.
            "shared_with_groups": [],
        });
        let o = v.as_object_mut().expect("object literal");
        if let Some(owner) = owner {
            o.insert("owner".into(), owner.to_json(base_url, UserView::Basic));
        }
        for (name, default) in PROJECT_BOOL_SETTINGS {
            o.insert((*name).into(), json!(self.setting_bool(name, *default)));
        }
        for (name, _, _) in PROJECT_STRING_SETTINGS {
            o.insert((*name).into(), self.setting_str(name));
        }
        for (flag, level) in FEATURE_PAIRS {
            let enabled = self.setting_str(level).as_str() != Some("disabled");
            o.insert((*flag).into(), json!(enabled));
        }
        for (name, _, _, default) in PROJECT_MORE_SETTINGS {
            let value = self
                .settings
                .get(*name)
                .cloned()
                .unwrap_or_else(|| serde_json::from_str(default).expect("valid default"));
            o.insert((*name).into(), value);
        }
        // `emails_disabled` is the deprecated inverse of `emails_enabled`.
        let emails = self.setting_bool("emails_enabled", true);
        o.insert("emails_disabled".into(), json!(!emails));
        let mut policy = json!({
            "cadence": "1d", "enabled": false, "keep_n": 10, "older_than": "90d",
            "name_regex": ".*", "name_regex_keep": null, "next_run_at": null,
        });
        if let Some(Value::Object(set)) = self.settings.get("container_expiration_policy") {
            for (k, v) in set {
                policy[k.as_str()] = v.clone();
            }
        }
        o.insert("container_expiration_policy".into(), policy);
        if let Some((level, is_admin)) = access {
            let project_access = if level > 0 && !is_admin {
                json!({ "access_level": level, "notification_level": 3 })
            } else {
                Value::Null
            };
            o.insert(
                "permissions".into(),
                json!({ "project_access": project_access, "group_access": Value::Null }),
            );
        }
        v
    }
}

/// A personal access token. Tokens from `--admin-token`/`--user-token` are
/// `configured`: they are re-created on reset and load and never written to
/// the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccessToken {
    pub id: u64,
    pub user_id: u64,
    pub name: String,
    pub description: Option<String>,
    /// The secret itself (the state file is a test fixture, not a secret store).
    pub token: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    /// `YYYY-MM-DD`; the token stops working on that day (`expires_at <= now`).
    pub expires_at: Option<String>,
    pub revoked: bool,
    pub last_used_at: Option<String>,
    /// Unix ms of `last_used_at` (GitLab refreshes it at most every 10 minutes).
    #[serde(default)]
    pub last_used_ms: u64,
    #[serde(skip)]
    pub configured: bool,
}

impl AccessToken {
    /// `Expirable#expired?` for a date column: expired from the start of `expires_at`.
    pub fn expired(&self, today: &str) -> bool {
        self.expires_at.as_deref().is_some_and(|d| d <= today)
    }

    /// `Entities::PersonalAccessToken`.
    pub fn to_json(&self, today: &str) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "revoked": self.revoked,
            "created_at": self.created_at,
            "description": self.description,
            "scopes": self.scopes,
            "user_id": self.user_id,
            "last_used_at": self.last_used_at,
            "active": !self.revoked && !self.expired(today),
            "expires_at": self.expires_at,
        })
    }

    /// `Entities::PersonalAccessTokenWithToken`: the entity plus `token`.
    pub fn to_json_with_token(&self, today: &str) -> Value {
        let mut v = self.to_json(today);
        v["token"] = json!(self.token);
        v
    }
}

/// An SSH key of a user (`Key`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SshKey {
    pub id: u64,
    pub user_id: u64,
    pub title: String,
    /// Sanitised key text (`type base64[ comment]`).
    pub key: String,
    pub fingerprint_sha256: String,
    pub fingerprint_md5: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub usage_type: String,
    pub last_used_at: Option<String>,
}

impl SshKey {
    /// `Entities::SSHKey`. `key` is `Key#publishable_key`: the comment is
    /// replaced by `"<user name> (<host>)"`.
    pub fn to_json(&self, owner_name: &str, host: &str) -> Value {
        let mut parts: Vec<&str> = self.key.split_whitespace().take(2).collect();
        let ident = format!("{owner_name} ({host})");
        parts.push(&ident);
        json!({
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "key": parts.join(" "),
            "usage_type": self.usage_type,
        })
    }
}

/// Job statuses the emulator models (`Ci::HasStatus`).
pub(crate) const JOB_STATUSES: &[&str] = &[
    "created", "pending", "running", "success", "failed", "canceled",
];

/// A CI pipeline (only what jobs reference).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pipeline {
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    pub sha: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A CI job (`Ci::Build`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Job {
    pub id: u64,
    pub project_id: u64,
    pub pipeline_id: u64,
    pub user_id: Option<u64>,
    pub name: String,
    pub stage: String,
    pub status: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub trace: String,
    /// `CI_JOB_TOKEN`; valid only while the job is `running` (`Ci::AuthJobFinder`).
    pub token: String,
    pub failure_reason: Option<String>,
    pub created_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
}

/// Milliseconds as an entity timestamp (`2025-01-31T12:00:00.123Z`).
pub(crate) fn iso_ms(ms: u64) -> String {
    crate::time::iso_from_ms(ms)
}

impl Pipeline {
    /// `Ci::HasStatus` composite status of its jobs (simplified): all created
    /// → created; all success → success; any running, or pending mixed with
    /// finished jobs → running; only pending/created → pending; then failed,
    /// canceled, success.
    pub fn status<'a>(&self, job_statuses: impl Iterator<Item = &'a str>) -> &'static str {
        let statuses: Vec<&str> = job_statuses.collect();
        let all = |s: &str| !statuses.is_empty() && statuses.iter().all(|x| *x == s);
        let any = |s: &str| statuses.contains(&s);
        if statuses.is_empty() || all("created") {
            "created"
        } else if all("success") {
            "success"
        } else if any("running")
            || (any("pending")
                && statuses
                    .iter()
                    .any(|s| !matches!(*s, "pending" | "created")))
        {
            "running"
        } else if any("pending") {
            "pending"
        } else if any("failed") {
            "failed"
        } else if any("canceled") {
            "canceled"
        } else {
            "success"
        }
    }

    /// `Entities::Ci::PipelineBasic`.
    pub fn to_json(&self, status: &str, project_web_url: &str) -> Value {
        json!({
            "id": self.id,
            "iid": self.iid,
            "project_id": self.project_id,
            "sha": self.sha,
            "ref": self.ref_name,
            "status": status,
            "source": self.source,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "web_url": format!("{project_web_url}/-/pipelines/{}", self.id),
        })
    }

    /// `Entities::Commit` for the pipeline's (imaginary) commit.
    pub fn commit_json(&self, author: Option<&User>, project_web_url: &str) -> Value {
        let (name, email) = author.map_or(("Administrator", "admin@example.com"), |u| {
            (u.name.as_str(), u.email.as_str())
        });
        json!({
            "id": self.sha,
            "short_id": &self.sha[..8.min(self.sha.len())],
            "created_at": self.created_at,
            "parent_ids": [],
            "title": format!("Emulated commit for pipeline {}", self.id),
            "message": format!("Emulated commit for pipeline {}\n", self.id),
            "author_name": name,
            "author_email": email,
            "authored_date": self.created_at,
            "committer_name": name,
            "committer_email": email,
            "committed_date": self.created_at,
            "trailers": {},
            "extended_trailers": {},
            "web_url": format!("{project_web_url}/-/commit/{}", self.sha),
        })
    }
}

impl Job {
    /// Seconds spent running (`duration`): until it finished, or until now.
    pub fn duration(&self, now_ms: u64) -> Option<f64> {
        let start = self.started_at_ms?;
        let end = self.finished_at_ms.unwrap_or(now_ms);
        Some(end.saturating_sub(start) as f64 / 1000.0)
    }

    /// Seconds spent queued (`queued_duration`): from creation until it
    /// started, or until now while it waits.
    pub fn queued_duration(&self, now_ms: u64) -> Option<f64> {
        if self.status == "created" {
            return None;
        }
        let end = self.started_at_ms.or(self.finished_at_ms).unwrap_or(now_ms);
        Some(end.saturating_sub(self.created_at_ms) as f64 / 1000.0)
    }

    /// `Entities::Ci::Job` (JobBasic plus artifacts, runner, archived, tag list).
    pub fn to_json(
        &self,
        user: Option<&User>,
        pipeline: &Value,
        commit: &Value,
        project_web_url: &str,
        base_url: &str,
        now_ms: u64,
    ) -> Value {
        let mut v = json!({
            "id": self.id,
            "status": self.status,
            "stage": self.stage,
            "name": self.name,
            "ref": self.ref_name,
            "tag": false,
            "coverage": Value::Null,
            "allow_failure": false,
            "created_at": iso_ms(self.created_at_ms),
            "started_at": self.started_at_ms.map(iso_ms),
            "finished_at": self.finished_at_ms.map(iso_ms),
            "erased_at": Value::Null,
            "duration": self.duration(now_ms),
            "queued_duration": self.queued_duration(now_ms),
            "user": user.map(|u| u.to_json(base_url, UserView::Public)),
            "commit": commit,
            "pipeline": pipeline,
            "web_url": format!("{project_web_url}/-/jobs/{}", self.id),
            "project": { "ci_job_token_scope_enabled": false },
            "artifacts": [],
            "runner": Value::Null,
            "runner_manager": Value::Null,
            "artifacts_expire_at": Value::Null,
            "archived": false,
            "tag_list": [],
        });
        if self.status == "failed" {
            v["failure_reason"] = json!(self.failure_reason.as_deref().unwrap_or("script_failure"));
        }
        v
    }
}
