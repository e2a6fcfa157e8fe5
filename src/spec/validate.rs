//! Semantic validation of decoded specs: identities, references and the rules GitLab and AWS
//! would enforce later (so that a plan never fails on what the spec could have told).
//!
//! Pure: reads decoded items and their nodes, appends located diagnostics, never stops early.

use std::collections::{BTreeMap, HashMap};

use super::config::Config;
use super::diagnostic::Diagnostic;
use super::diagnostic::unprintable;
use super::member::AccessLevel;
use super::parse::{Node, NodeKind};
use super::protected_branch::BranchAccess;
use super::source::{FileId, Origin, Span};
use super::task_definition::NetworkMode;
use super::variable::{SecretSource, masking_problem};
use super::{CONFIG_FILE, Item, Raw, suggest};
use crate::address::Address;
use crate::spec::ecs_service::LaunchType;

/// Longest scalar (key or value) anywhere in a spec, in bytes: 128 KiB, the most a single
/// environment variable can hold on Linux (`MAX_ARG_STRLEN`); nothing in a spec is longer.
pub(super) const MAX_SCALAR_BYTES: usize = 128 << 10;

/// Checks every scalar of a parsed document, whatever its place: its size, and characters that
/// have no place in a spec (control characters other than tab and line break in values, any
/// in keys; bidirectional overrides). Never quotes the scalar (it may be a secret).
pub(super) fn check_text(file: FileId, doc: &Node, diags: &mut Vec<Diagnostic>) {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(doc, false)];
    while let Some((node, is_key)) = stack.pop() {
        match &node.kind {
            NodeKind::Scalar(s) => {
                // Nodes copied by an alias are checked once, where they are written.
                if !seen.insert(node.span) {
                    continue;
                }
                let what = if is_key { "key" } else { "value" };
                if s.text.len() > MAX_SCALAR_BYTES {
                    diags.push(
                        Diagnostic::at(
                            file,
                            node.span,
                            format!(
                                "{what} longer than {} KiB ({} bytes)",
                                MAX_SCALAR_BYTES >> 10,
                                s.text.len()
                            ),
                        )
                        .help("no name or value in a spec is this long: keep large content out of the desired state"),
                    );
                }
                let bad = s
                    .text
                    .chars()
                    .find(|&ch| unprintable(ch) || (is_key && (ch == '\t' || ch == '\n')));
                if let Some(ch) = bad {
                    diags.push(
                        Diagnostic::at(
                            file,
                            node.span,
                            format!(
                                "{what} contains the control character U+{:04X}",
                                ch as u32
                            ),
                        )
                        .help(if is_key {
                            "keys are plain names: remove the character (check for an escape like `\\a` in double quotes)"
                        } else {
                            "names and values are printable text (tabs and line breaks are allowed in values): remove the character (check for an escape like `\\a` in double quotes)"
                        }),
                    );
                }
            }
            NodeKind::Seq(items) => stack.extend(items.iter().map(|n| (n, false))),
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    stack.push((k, true));
                    stack.push((v, false));
                }
            }
        }
    }
}

pub(super) struct Checked {
    pub origins: BTreeMap<Address, Origin>,
    pub references: BTreeMap<Address, Vec<Origin>>,
}

/// Span of the value at `path` under `node` (the deepest node found on the way).
fn span_at(node: &Node, path: &[&str]) -> Span {
    let mut current = node;
    for key in path {
        match current.get(key) {
            Some(next) => current = next,
            None => break,
        }
    }
    current.span
}

/// Span of the key `key` in a mapping, or of the mapping.
fn key_span(node: &Node, key: &str) -> Span {
    node.entry(key).map(|(k, _)| k.span).unwrap_or(node.span)
}

/// The node of item `index` of the collection `field.items` under a project node.
fn collection_item<'a>(project: &'a Node, field: &str, index: usize) -> &'a Node {
    project
        .get(field)
        .and_then(|c| c.get("items"))
        .and_then(|items| items.items().get(index))
        .unwrap_or(project)
}

struct Checker<'d> {
    diags: &'d mut Vec<Diagnostic>,
    origins: BTreeMap<Address, Origin>,
    /// Span of the identity of each declared resource, for "first declared here".
    id_spans: HashMap<Address, Origin>,
    references: BTreeMap<Address, Vec<Origin>>,
}

impl Checker<'_> {
    fn error(
        &mut self,
        file: FileId,
        span: Span,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::at(file, span, message).help(help));
    }

    /// Records `address` as declared at `origin`; reports a duplicate if it already was.
    fn declare(&mut self, address: Address, origin: Origin, what: &str, id_span: Span) {
        if let Some(first) = self.id_spans.get(&address) {
            self.diags.push(
                Diagnostic::at(origin.file, id_span, format!("duplicate {what}"))
                    .related(*first, "first declared here")
                    .help("remove one of the two declarations or give them different identities"),
            );
            return;
        }
        self.id_spans.insert(
            address.clone(),
            Origin {
                file: origin.file,
                span: id_span,
            },
        );
        self.origins.insert(address, origin);
    }

    /// Reports the string at `path` under `node` when it is longer than `max` characters
    /// (`whose` names the system that sets the limit).
    fn limit(
        &mut self,
        file: FileId,
        node: &Node,
        path: &[&str],
        value: &str,
        max: usize,
        whose: &str,
    ) {
        // Longer than any scalar may be: already reported by `check_text`.
        if value.len() > MAX_SCALAR_BYTES {
            return;
        }
        let n = value.chars().count();
        if n > max {
            let field = path.last().copied().unwrap_or("value");
            self.error(
                file,
                span_at(node, path),
                format!("`{field}` is longer than {max} characters (it has {n})"),
                format!("{whose} accepts at most {max} characters for `{field}`"),
            );
        }
    }

    fn reference(&mut self, address: Address, origin: Origin) {
        self.references.entry(address).or_default().push(origin);
    }
}

pub(super) fn check(raw: &Raw<'_>, diags: &mut Vec<Diagnostic>) -> Checked {
    let mut c = Checker {
        diags,
        origins: BTreeMap::new(),
        id_spans: HashMap::new(),
        references: BTreeMap::new(),
    };
    if let Some(config) = &raw.config {
        check_config(&mut c, config);
    }
    let envs: Vec<&str> = raw
        .config
        .as_ref()
        .map(|c| c.spec.environments.keys().map(String::as_str).collect())
        .unwrap_or_default();

    // Secrets first: variables and containers refer to them.
    let mut secrets: HashMap<&str, ()> = HashMap::new();
    for s in &raw.secrets {
        let span = span_at(s.node, &["name"]);
        let valid = !s.spec.name.is_empty()
            && s.spec
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "/_+=.@-".contains(ch));
        if !valid {
            c.error(
                s.file,
                span,
                format!("invalid secret name `{}`", s.spec.name),
                "Secrets Manager names use letters, digits and /_+=.@-",
            );
        }
        c.limit(
            s.file,
            s.node,
            &["name"],
            &s.spec.name,
            512,
            "Secrets Manager",
        );
        if let Some(d) = &s.spec.description {
            c.limit(s.file, s.node, &["description"], d, 2048, "Secrets Manager");
        }
        c.declare(
            Address::Secret {
                name: s.spec.name.clone(),
            },
            s.origin(),
            "secret",
            span,
        );
        secrets.insert(&s.spec.name, ());
    }
    let mut secret_names: Vec<&str> = secrets.keys().copied().collect();
    secret_names.sort_unstable();
    let check_secret_ref = |c: &mut Checker<'_>,
                            file: FileId,
                            node: &Node,
                            source: &SecretSource| {
        let span = span_at(node, &["secret"]);
        let origin = Origin { file, span };
        if secrets.contains_key(source.secret.as_str()) {
            c.reference(
                Address::Secret {
                    name: source.secret.clone(),
                },
                origin,
            );
        } else {
            let help = match suggest(&source.secret, secret_names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? secrets must be declared under `secrets:`"),
                None => format!("declare it under `secrets:` (`- name: {}`)", source.secret),
            };
            c.error(
                file,
                span,
                format!("secret `{}` is not declared", source.secret),
                help,
            );
        }
    };

    // Users.
    let mut usernames: HashMap<String, &str> = HashMap::new();
    for u in &raw.users {
        let span = span_at(u.node, &["username"]);
        let name = &u.spec.username;
        let valid = !name.is_empty()
            && !name.starts_with('-')
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch));
        if !valid {
            c.error(
                u.file,
                span,
                format!("invalid username `{name}`"),
                "usernames use letters, digits, `_`, `.` and `-`, and do not start with `-`",
            );
        }
        c.limit(u.file, u.node, &["username"], name, 255, "GitLab");
        c.limit(u.file, u.node, &["name"], &u.spec.name, 255, "GitLab");
        c.limit(u.file, u.node, &["email"], &u.spec.email, 255, "GitLab");
        if !valid_email(&u.spec.email) {
            c.error(
                u.file,
                span_at(u.node, &["email"]),
                "invalid email address",
                "write an address like `dev1@example.com`",
            );
        }
        c.declare(
            Address::User {
                username: name.to_lowercase(),
            },
            u.origin(),
            &format!("user `{name}`"),
            span,
        );
        usernames.entry(name.to_lowercase()).or_insert(name);
    }
    let mut declared_users: Vec<&str> = usernames.values().copied().collect();
    declared_users.sort_unstable();

    // Projects and their collections.
    for p in &raw.projects {
        let spec = &p.spec;
        for (field, value) in [("namespace", &spec.namespace), ("path", &spec.path)] {
            let ok = !value.is_empty()
                && value.split('/').all(|seg| {
                    !seg.is_empty()
                        && !seg.starts_with(['-', '.'])
                        && seg
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
                })
                && (field == "namespace" || !value.contains('/'));
            if !ok {
                c.error(p.file, span_at(p.node, &[field]), format!("invalid project {field} `{value}`"), "use letters, digits, `_`, `.` and `-` (a namespace may have `/`-separated parts)");
            }
        }
        c.limit(p.file, p.node, &["path"], &spec.path, 255, "GitLab");
        if let Some(name) = &spec.name {
            c.limit(p.file, p.node, &["name"], name, 255, "GitLab");
        }
        if let Some(d) = &spec.description {
            c.limit(p.file, p.node, &["description"], d, 2000, "GitLab");
        }
        if let Some(b) = &spec.default_branch {
            c.limit(p.file, p.node, &["default_branch"], b, 255, "GitLab");
        }
        let project = spec.full_path();
        let project_key = project.to_lowercase();
        c.declare(
            Address::Project {
                path: project_key.clone(),
            },
            p.origin(),
            &format!("project `{project}`"),
            span_at(p.node, &["path"]),
        );

        for (i, m) in spec.members.items.iter().enumerate() {
            let node = collection_item(p.node, "members", i);
            let origin = Origin {
                file: p.file,
                span: node.span,
            };
            let span = span_at(node, &["user"]);
            let user = m.user.to_lowercase();
            if !m.user_outside_spec && !usernames.contains_key(&user) {
                let help = match suggest(&m.user, declared_users.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? or declare the user under `users:`, or set `user_outside_spec: true` if it exists in GitLab but is managed elsewhere"),
                    None => "declare the user under `users:`, or set `user_outside_spec: true` if it exists in GitLab but is managed elsewhere".into(),
                };
                c.error(
                    p.file,
                    span,
                    format!("member `{}` of `{project}` is not a declared user", m.user),
                    help,
                );
            }
            // A top-level namespace named like a user is that user's personal namespace
            // (users and groups share top-level paths). GitLab makes its holder an Owner of
            // every project in it and refuses to change or remove that membership (403,
            // `ProjectMemberPolicy`), so the only level that can be declared is `owner`.
            if user == spec.namespace.to_lowercase() && m.access != AccessLevel::Owner {
                c.error(
                    p.file,
                    span_at(node, &["access"]),
                    format!(
                        "`{}` holds the personal namespace `{}`: GitLab makes them an Owner of `{project}` and refuses to change or remove that membership",
                        m.user, spec.namespace
                    ),
                    "declare `access: owner` for them, or leave them out of `members` (the holder is never pruned)",
                );
            }
            c.declare(
                Address::Member {
                    project: project_key.clone(),
                    user,
                },
                origin,
                &format!("member `{}` in `{project}`", m.user),
                span,
            );
        }

        for (i, b) in spec.protected_branches.items.iter().enumerate() {
            let node = collection_item(p.node, "protected_branches", i);
            let origin = Origin {
                file: p.file,
                span: node.span,
            };
            if b.name.trim().is_empty() || b.name.contains(char::is_whitespace) {
                c.error(
                    p.file,
                    span_at(node, &["name"]),
                    "invalid branch name",
                    "branch names and wildcards (`release/*`) have no whitespace",
                );
            }
            c.limit(p.file, node, &["name"], &b.name, 255, "GitLab");
            if b.unprotect == Some(BranchAccess::NoAccess) {
                c.error(
                    p.file,
                    span_at(node, &["unprotect"]),
                    "`unprotect` cannot be `no_access`",
                    "GitLab accepts developer, maintainer or admin for unprotect",
                );
            }
            c.declare(
                Address::ProtectedBranch {
                    project: project_key.clone(),
                    branch: b.name.clone(),
                },
                origin,
                &format!("protected branch `{}` in `{project}`", b.name),
                span_at(node, &["name"]),
            );
        }

        for (i, v) in spec.variables.items.iter().enumerate() {
            let node = collection_item(p.node, "variables", i);
            let origin = Origin {
                file: p.file,
                span: node.span,
            };
            let key_ok = !v.key.is_empty()
                && v.key
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !key_ok {
                c.error(
                    p.file,
                    span_at(node, &["key"]),
                    format!("invalid variable key `{}`", v.key),
                    "keys use letters, digits and `_` only",
                );
            }
            c.limit(p.file, node, &["key"], &v.key, 255, "GitLab");
            c.limit(
                p.file,
                node,
                &["environment_scope"],
                &v.environment_scope,
                255,
                "GitLab",
            );
            if let Some(d) = &v.description {
                c.limit(p.file, node, &["description"], d, 255, "GitLab");
            }
            if v.environment_scope.trim().is_empty() {
                c.error(
                    p.file,
                    span_at(node, &["environment_scope"]),
                    "empty environment scope",
                    "use `*` for every environment, or an environment name or wildcard",
                );
            }
            match (&v.value, &v.from) {
                (Some(_), Some(_)) => c.error(p.file, key_span(node, "from"), format!("variable `{}` has both `value` and `from`", v.key), "keep `value` for a literal or `from` for a Secrets Manager reference, not both"),
                (None, None) => c.error(p.file, span_at(node, &["key"]), format!("variable `{}` has no value", v.key), "set `value: ...` (literal) or `from: {secret: NAME}` (Secrets Manager)"),
                _ => {}
            }
            if v.hidden && !v.masked {
                c.error(
                    p.file,
                    key_span(node, "hidden"),
                    format!("hidden variable `{}` must be masked", v.key),
                    "GitLab hides only masked variables: add `masked: true`",
                );
            }
            if let Some(value) = &v.value
                && (v.masked || v.hidden)
            {
                // One mistake, one error: GitLab's masking rules are mentioned in the same
                // diagnostic, since the value will move to Secrets Manager anyway.
                let help = match masking_problem(value, v.raw) {
                        None => "secrets must not be committed: store the value in AWS Secrets Manager and write `from: {secret: NAME, key: KEY}`".to_string(),
                        Some(problem) => format!("secrets must not be committed: store the value in AWS Secrets Manager and write `from: {{secret: NAME, key: KEY}}`; GitLab would also refuse to mask this value ({problem}): masked values need at least 8 characters from [a-zA-Z0-9_+=/@:.~-] (any non-space characters with `raw: true`)"),
                    };
                c.diags.push(
                    Diagnostic::at(
                        p.file,
                        key_span(node, "value"),
                        format!("masked variable `{}` has a literal value", v.key),
                    )
                    .help(help)
                    .sensitive(),
                );
            }
            if let Some(from) = &v.from {
                check_secret_ref(&mut c, p.file, node.get("from").unwrap_or(node), from);
            }
            c.declare(
                Address::Variable {
                    project: project_key.clone(),
                    key: v.key.clone(),
                    scope: v.environment_scope.clone(),
                },
                origin,
                &format!(
                    "variable `{}` (scope `{}`) in `{project}`",
                    v.key, v.environment_scope
                ),
                span_at(node, &["key"]),
            );
        }
    }

    // ECS services.
    let mut service_names: HashMap<(String, String, String), Origin> = HashMap::new();
    let mut families: HashMap<(String, String), Origin> = HashMap::new();
    for s in &raw.services {
        let spec = &s.spec;
        let env = &spec.environment;
        if raw.config.is_some() && !envs.contains(&env.as_str()) {
            let help = match suggest(env, envs.iter().copied()) {
                Some(e) => {
                    format!("did you mean `{e}`? environments are declared in {CONFIG_FILE}")
                }
                None => format!("declare it under `environments:` in {CONFIG_FILE}"),
            };
            c.error(
                s.file,
                span_at(s.node, &["environment"]),
                format!("unknown environment `{env}`"),
                help,
            );
        }
        c.limit(s.file, s.node, &["name"], &spec.name, 255, "ECS");
        c.limit(s.file, s.node, &["cluster"], &spec.cluster, 255, "ECS");
        if let Some(n) = &spec.service_name {
            c.limit(s.file, s.node, &["service_name"], n, 255, "ECS");
        }
        let name_span = span_at(s.node, &["name"]);
        c.declare(
            Address::Service {
                env: env.clone(),
                service: spec.name.clone(),
            },
            s.origin(),
            &format!("service `{}` in `{env}`", spec.name),
            name_span,
        );
        c.origins
            .entry(Address::TaskDefinition {
                env: env.clone(),
                service: spec.name.clone(),
            })
            .or_insert(Origin {
                file: s.file,
                span: span_at(s.node, &["task_definition"]),
            });

        let live_name = (
            env.clone(),
            spec.cluster.clone(),
            spec.service_name().to_owned(),
        );
        let live_span = s
            .node
            .get("service_name")
            .map(|n| n.span)
            .unwrap_or(name_span);
        match service_names.get(&live_name) {
            Some(first) if *first != s.origin() => c.diags.push(
                Diagnostic::at(
                    s.file,
                    live_span,
                    format!(
                        "ECS service `{}` in cluster `{}` is declared twice",
                        live_name.2, live_name.1
                    ),
                )
                .related(*first, "first declared here")
                .help("give each service its own `service_name`"),
            ),
            _ => {
                service_names.insert(live_name, s.origin());
            }
        }

        let td = &spec.task_definition;
        let td_node = s.node.get("task_definition").unwrap_or(s.node);
        let family_key = (env.clone(), td.family.clone());
        c.limit(s.file, td_node, &["family"], &td.family, 255, "ECS");
        let family_span = span_at(td_node, &["family"]);
        match families.get(&family_key) {
            Some(first) => c.diags.push(
                Diagnostic::at(
                    s.file,
                    family_span,
                    format!(
                        "task definition family `{}` is used by two services in `{env}`",
                        td.family
                    ),
                )
                .related(*first, "first used here")
                .help("give each service its own family"),
            ),
            None => {
                families.insert(
                    family_key,
                    Origin {
                        file: s.file,
                        span: family_span,
                    },
                );
            }
        }
        if let Some(cpu) = &td.cpu
            && !valid_unit(cpu, "vcpu")
        {
            c.error(
                s.file,
                span_at(td_node, &["cpu"]),
                format!("invalid cpu `{cpu}`"),
                "write CPU units (`256`) or vCPUs (`0.25 vCPU`)",
            );
        }
        if let Some(memory) = &td.memory
            && !valid_unit(memory, "gb")
        {
            c.error(
                s.file,
                span_at(td_node, &["memory"]),
                format!("invalid memory `{memory}`"),
                "write MiB (`512`) or GB (`1 GB`)",
            );
        }
        let fargate = spec.launch_type == LaunchType::Fargate
            || td.requires_compatibilities.contains(&LaunchType::Fargate);
        if fargate && td.network_mode != NetworkMode::Awsvpc {
            c.error(
                s.file,
                key_span(td_node, "network_mode"),
                "FARGATE tasks need `network_mode: awsvpc`",
                "set `network_mode: awsvpc` and a `network:` with subnets",
            );
        }
        if fargate && (td.cpu.is_none() || td.memory.is_none()) {
            c.error(
                s.file,
                key_span(s.node, "task_definition"),
                "FARGATE task definitions need task-level `cpu` and `memory`",
                "set `cpu:` and `memory:` under `task_definition:`",
            );
        }
        match (td.network_mode == NetworkMode::Awsvpc, &spec.network) {
            (true, None) => c.error(
                s.file,
                span_at(td_node, &["network_mode"]),
                format!("service `{}` uses awsvpc but has no `network:`", spec.name),
                "add `network: {subnets: [...], security_groups: [...]}`",
            ),
            (false, Some(_)) => c.error(
                s.file,
                key_span(s.node, "network"),
                "`network:` applies only to `network_mode: awsvpc`",
                "remove `network:` or set `task_definition.network_mode: awsvpc`",
            ),
            (true, Some(n)) if n.subnets.is_empty() => c.error(
                s.file,
                key_span(s.node, "network"),
                "`network.subnets` is empty",
                "list at least one subnet id",
            ),
            _ => {}
        }
        if let Some(d) = &spec.deployment {
            let d_node = s.node.get("deployment").unwrap_or(s.node);
            if d.minimum_healthy_percent.is_some_and(|m| m > 100) {
                c.error(
                    s.file,
                    span_at(d_node, &["minimum_healthy_percent"]),
                    "`minimum_healthy_percent` is above 100",
                    "use a value from 0 to 100",
                );
            }
            if d.maximum_percent.is_some_and(|m| !(100..=200).contains(&m)) {
                c.error(
                    s.file,
                    span_at(d_node, &["maximum_percent"]),
                    "`maximum_percent` must be between 100 and 200",
                    "use a value from 100 to 200",
                );
            }
        }

        let containers_node = td_node.get("containers");
        if td.containers.is_empty() {
            c.error(
                s.file,
                key_span(td_node, "containers"),
                "a task definition needs at least one container",
                "add a container under `containers:`",
            );
        }
        let mut container_names: HashMap<&str, Span> = HashMap::new();
        for (i, ct) in td.containers.iter().enumerate() {
            let node = containers_node
                .and_then(|n| n.items().get(i))
                .unwrap_or(td_node);
            let name_span = span_at(node, &["name"]);
            c.limit(s.file, node, &["name"], &ct.name, 255, "ECS");
            if let Some(first) = container_names.insert(&ct.name, name_span) {
                c.diags.push(
                    Diagnostic::at(
                        s.file,
                        name_span,
                        format!("duplicate container `{}`", ct.name),
                    )
                    .related(
                        Origin {
                            file: s.file,
                            span: first,
                        },
                        "first declared here",
                    )
                    .help("container names are unique within a task definition"),
                );
            }
            let image_node = node.get("image").unwrap_or(node);
            let image = &ct.image;
            c.limit(
                s.file,
                image_node,
                &["repository"],
                &image.repository,
                256,
                "ECR",
            );
            if let Some(tag) = &image.tag {
                c.limit(s.file, image_node, &["tag"], tag, 128, "ECR");
            }
            match (&image.tag, &image.digest) {
                (Some(_), Some(_)) => c.error(
                    s.file,
                    key_span(image_node, "digest"),
                    "image has both `tag` and `digest`",
                    "keep one: a digest pins the exact image",
                ),
                (None, None) => c.error(
                    s.file,
                    key_span(node, "image"),
                    format!(
                        "image of container `{}` has neither `tag` nor `digest`",
                        ct.name
                    ),
                    "add `tag: 1.4.2` or `digest: sha256:...`",
                ),
                (None, Some(d)) if !valid_digest(d) => c.error(
                    s.file,
                    span_at(image_node, &["digest"]),
                    "invalid image digest",
                    "write `sha256:` followed by 64 lowercase hex digits",
                ),
                _ => c.reference(
                    Address::EcrImage {
                        image: image.reference(),
                    },
                    Origin {
                        file: s.file,
                        span: image_node.span,
                    },
                ),
            }
            if image.repository.is_empty()
                || image.repository.contains(':')
                || image.repository.contains('@')
            {
                c.error(
                    s.file,
                    span_at(image_node, &["repository"]),
                    "invalid ECR repository name",
                    "give the repository name only (`inventory-app`); the tag goes in `tag:`",
                );
            }
            let secrets_node = node.get("secrets");
            for (name, source) in &ct.secrets {
                let source_node = secrets_node.and_then(|n| n.get(name)).unwrap_or(node);
                check_secret_ref(&mut c, s.file, source_node, source);
                if ct.environment.contains_key(name) {
                    c.error(
                        s.file,
                        secrets_node.map(|n| key_span(n, name)).unwrap_or(node.span),
                        format!("`{name}` is both a plain and a secret environment variable"),
                        "keep it in one of `environment:` and `secrets:`",
                    );
                }
            }
        }
    }

    // Promotion: every service of a promoted environment exists in its source environment.
    if let Some(config) = &raw.config {
        for s in &raw.services {
            let Some(source) = config
                .spec
                .environments
                .get(&s.spec.environment)
                .and_then(|e| e.promote_from.as_ref())
            else {
                continue;
            };
            if !envs.contains(&source.as_str()) {
                continue; // reported with the config
            }
            let counterpart = Address::Service {
                env: source.clone(),
                service: s.spec.name.clone(),
            };
            if !c.origins.contains_key(&counterpart) {
                c.error(
                    s.file,
                    span_at(s.node, &["name"]),
                    format!("service `{}` in `{}` is promoted from `{source}`, which has no service `{}`", s.spec.name, s.spec.environment, s.spec.name),
                    format!("declare `{}` in `{source}` too, or remove `promote_from` from `{}`", s.spec.name, s.spec.environment),
                );
            }
        }
    }

    Checked {
        origins: c.origins,
        references: c.references,
    }
}

fn check_config(c: &mut Checker<'_>, item: &Item<'_, Config>) {
    let config = &item.spec;
    let node = item.node;
    let file = item.file;
    let url = &config.gitlab.url;
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        c.error(
            file,
            span_at(node, &["gitlab", "url"]),
            format!("invalid GitLab URL `{url}`"),
            "write the base URL, e.g. `http://192.168.56.11` (GITLAB_URL overrides it)",
        );
    }
    if let Some(aws) = &config.aws {
        if aws.region.is_empty()
            || !aws
                .region
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            c.error(
                file,
                span_at(node, &["aws", "region"]),
                format!("invalid AWS region `{}`", aws.region),
                "write a region name like `us-east-1`",
            );
        }
        if let Some(account) = &aws.account_id
            && (account.len() != 12 || !account.chars().all(|ch| ch.is_ascii_digit()))
        {
            c.error(
                file,
                span_at(node, &["aws", "account_id"]),
                "invalid AWS account id",
                "an account id has 12 digits; quote it (`\"123456789012\"`)",
            );
        }
    }
    if humantime::parse_duration(&config.plan.max_age).is_err() {
        c.error(
            file,
            span_at(node, &["plan", "max_age"]),
            format!("invalid duration `{}`", config.plan.max_age),
            "write a duration like `30m`, `24h` or `7days`",
        );
    }
    let gate_node = node.get("gitlab").unwrap_or(node);
    check_gate(c, file, gate_node, &config.gitlab.approval, "gitlab");

    let envs_node = node.get("environments").unwrap_or(node);
    let names: Vec<&str> = config.environments.keys().map(String::as_str).collect();
    for (name, env) in &config.environments {
        let env_node = envs_node.get(name).unwrap_or(envs_node);
        let name_span = key_span(envs_node, name);
        let valid = name
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_lowercase())
            && name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if !valid {
            c.error(
                file,
                name_span,
                format!("invalid environment name `{name}`"),
                "use lowercase letters, digits and `-`, starting with a letter",
            );
        }
        if name == "gitlab" || name == "aws" {
            c.error(
                file,
                name_span,
                format!("`{name}` is reserved"),
                "`gitlab` and `aws` name the shared scopes; choose another environment name",
            );
        }
        check_gate(c, file, env_node, &env.approval, name);
        if let Some(source) = &env.promote_from {
            let span = span_at(env_node, &["promote_from"]);
            if source == name {
                c.error(
                    file,
                    span,
                    format!("environment `{name}` is promoted from itself"),
                    "name another environment (e.g. `staging`) or remove `promote_from`",
                );
            } else if !config.environments.contains_key(source) {
                let help = match suggest(source, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("declare `{source}` under `environments:`"),
                };
                c.error(file, span, format!("unknown environment `{source}`"), help);
            }
        }
    }
    check_promotion_cycles(c, file, envs_node, config);
}

/// `promote_from` must form chains: a loop (staging ← production ← staging) has no first
/// environment to deploy to. Reported once per loop, at the first environment of the loop.
fn check_promotion_cycles(c: &mut Checker<'_>, file: FileId, envs_node: &Node, config: &Config) {
    let mut reported: Vec<&str> = Vec::new();
    for start in config.environments.keys() {
        let mut path: Vec<&str> = vec![start];
        let mut current = start.as_str();
        while let Some(next) = config
            .environments
            .get(current)
            .and_then(|e| e.promote_from.as_deref())
        {
            if next == current || !config.environments.contains_key(next) {
                break; // reported as self-promotion or unknown environment
            }
            if let Some(at) = path.iter().position(|e| *e == next) {
                let cycle = &path[at..];
                let first = *cycle.iter().min().expect("non-empty");
                if !reported.contains(&first) && first == *start {
                    reported.push(first);
                    let shown: Vec<&str> = cycle.iter().copied().chain([next]).collect();
                    let env_node = envs_node.get(first).unwrap_or(envs_node);
                    c.error(
                        file,
                        span_at(env_node, &["promote_from"]),
                        format!("promotion cycle: {}", shown.join(" ← ")),
                        "`promote_from` must form a chain with a first environment (e.g. production ← staging); remove one `promote_from`",
                    );
                }
                break;
            }
            path.push(next);
            current = next;
        }
    }
}

/// Most approvals a gate may require: each approval is one person.
const MAX_REQUIRED_APPROVALS: u32 = 100;

/// A gate that no plan could ever pass is refused: more approvals than distinct approvers
/// (compared case-insensitively, as approvals are), or more than any team gives.
fn check_gate(
    c: &mut Checker<'_>,
    file: FileId,
    scope_node: &Node,
    gate: &super::config::Gate,
    scope: &str,
) {
    let approvers_node = scope_node.get("approval").and_then(|a| a.get("approvers"));
    let mut distinct: HashMap<String, usize> = HashMap::new();
    for (i, a) in gate.approvers.iter().enumerate() {
        if let Some(first) = distinct.insert(a.to_lowercase(), i) {
            distinct.insert(a.to_lowercase(), first);
            let span = |k: usize| {
                approvers_node
                    .and_then(|n| n.items().get(k))
                    .map(|n| n.span)
                    .unwrap_or(scope_node.span)
            };
            c.diags.push(
                Diagnostic::at(file, span(i), format!("approver `{a}` is listed twice"))
                    .related(
                        Origin {
                            file,
                            span: span(first),
                        },
                        "first listed here",
                    )
                    .help("an approval counts once per person (usernames compare case-insensitively): remove one"),
            );
        }
    }
    let span = span_at(scope_node, &["approval", "required"]);
    if !gate.approvers.is_empty() && gate.required as usize > distinct.len() {
        c.error(
            file,
            span,
            format!(
                "`{scope}` requires {} approvals but lists {} distinct approver{}",
                gate.required,
                distinct.len(),
                if distinct.len() == 1 { "" } else { "s" }
            ),
            "no plan could ever be approved: lower `required` or add approvers",
        );
    } else if gate.required > MAX_REQUIRED_APPROVALS {
        c.error(
            file,
            span,
            format!(
                "`{scope}` requires {} approvals, more than {MAX_REQUIRED_APPROVALS}",
                gate.required
            ),
            format!("each approval is one person, so no plan would ever be approved: require at most {MAX_REQUIRED_APPROVALS} (and list the approvers)"),
        );
    }
}

fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .chars()
                .all(|ch| ch.is_ascii_digit() || ('a'..='f').contains(&ch))
    })
}

/// `256` or `0.25 vCPU` (unit `vcpu`); `512` or `1 GB` (unit `gb`).
fn valid_unit(value: &str, unit: &str) -> bool {
    let v = value.trim();
    if v.parse::<u32>().is_ok_and(|n| n > 0) {
        return true;
    }
    let lower = v.to_lowercase();
    lower
        .strip_suffix(unit)
        .map(str::trim)
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| n > 0.0)
}
