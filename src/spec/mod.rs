//! The desired state: YAML files → validated [`DesiredState`].
//!
//! Owns: finding the files, parsing them, decoding every resource, and validating the whole
//! (types, duplicates, references, GitLab's rules) with every error collected and located.
//! Must never: contact GitLab or AWS, or stop at the first error.

pub mod config;
mod de;
pub mod diagnostic;
pub mod ecs_service;
#[cfg(test)]
mod fuzz;
pub mod member;
mod parse;
pub mod project;
pub mod protected_branch;
pub(crate) mod redact;
pub mod secret;
pub mod source;
pub mod task_definition;
pub mod user;
mod validate;
pub mod variable;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::address::Address;
use config::Config;
use diagnostic::Diagnostic;
use ecs_service::EcsService;
use parse::{Node, NodeKind, ParseIssue};
use project::Project;
use secret::Secret;
use source::{FileId, Origin, SourceMap, Span};
use user::User;

pub use de::suggest;
pub use parse::check_syntax as check_yaml_syntax;

/// The settings file at the root of a desired-state directory.
pub const CONFIG_FILE: &str = "reconcile.yaml";

/// Largest spec file read (a fleet of 10,000 resources is about 1 MiB in all).
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Largest desired state read, all files together.
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;
/// Most spec files in a desired state.
pub const MAX_FILES: usize = 10_000;

/// A resource with the place it was declared.
#[derive(Clone, Debug)]
pub struct Declared<T> {
    pub spec: T,
    pub origin: Origin,
}

/// A validated desired state. Every reference in it resolves; every identity is unique.
#[derive(Debug)]
pub struct DesiredState {
    pub dir: PathBuf,
    pub config: Config,
    pub users: Vec<Declared<User>>,
    pub projects: Vec<Declared<Project>>,
    pub secrets: Vec<Declared<Secret>>,
    pub services: Vec<Declared<EcsService>>,
    /// Where each declared resource (including members, branches, variables) is declared.
    pub origins: BTreeMap<Address, Origin>,
    /// Where each referenced secret and image is referenced from.
    pub references: BTreeMap<Address, Vec<Origin>>,
    pub sources: SourceMap,
}

impl DesiredState {
    /// Number of declared resources (users, projects and their objects, secrets, services).
    pub fn resource_count(&self) -> usize {
        self.origins.len()
    }
}

/// Everything wrong with a desired state, with the files needed to show where.
#[derive(Debug)]
pub struct SpecErrors {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    /// Whether a live system was read before the errors were found (never written).
    pub contacted: bool,
}

impl SpecErrors {
    pub fn render(
        &self,
        out: &mut dyn codespan_reporting::term::termcolor::WriteColor,
    ) -> std::io::Result<()> {
        diagnostic::render(&self.sources, &self.diagnostics, self.contacted, out)
    }

    /// Plain-text rendering (no colour).
    pub fn to_plain_string(&self) -> String {
        let mut buf = codespan_reporting::term::termcolor::NoColor::new(Vec::new());
        self.render(&mut buf)
            .expect("writing to memory cannot fail");
        String::from_utf8_lossy(&buf.into_inner()).into_owned()
    }
}

/// The top level of a resource file: any `*.yaml` under the directory but `reconcile.yaml`.
/// (The loader decodes items one by one; this type defines the schema.)
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceFile {
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub projects: Vec<Project>,
    #[serde(default)]
    pub secrets: Vec<Secret>,
    #[serde(default)]
    pub services: Vec<EcsService>,
}

const SECTIONS: &[&str] = &["users", "projects", "secrets", "services"];

/// A decoded item with its node, for validation.
pub(crate) struct Item<'a, T> {
    pub spec: T,
    pub node: &'a Node,
    pub file: FileId,
}

impl<T> Item<'_, T> {
    fn origin(&self) -> Origin {
        Origin {
            file: self.file,
            span: self.node.span,
        }
    }
}

#[derive(Default)]
pub(crate) struct Raw<'a> {
    pub config: Option<Item<'a, Config>>,
    pub users: Vec<Item<'a, User>>,
    pub projects: Vec<Item<'a, Project>>,
    pub secrets: Vec<Item<'a, Secret>>,
    pub services: Vec<Item<'a, EcsService>>,
}

/// Loads and validates the desired state under `dir`.
pub fn load(dir: &Path) -> Result<DesiredState, SpecErrors> {
    let mut sources = SourceMap::default();
    let mut diags = Vec::new();
    let files = match discover(dir) {
        Ok((files, refused)) => {
            diags.extend(refused);
            files
        }
        Err(d) => {
            return Err(SpecErrors {
                sources,
                diagnostics: vec![d],
                contacted: false,
            });
        }
    };
    let config_path = dir.join(CONFIG_FILE);
    let config_refused = diags.iter().any(|d| {
        d.message
            .starts_with(&format!("`{}`", config_path.display()))
    });
    if !files.contains(&config_path) && !config_refused {
        diags.push(
            Diagnostic::global(format!("no {CONFIG_FILE} in `{}`", dir.display())).help(format!(
                "create `{}` with at least `gitlab: {{url: ...}}` (see README.md)",
                config_path.display()
            )),
        );
    }

    let mut documents: Vec<(FileId, bool, Vec<Node>)> = Vec::new();
    let mut total: u64 = 0;
    for (i, path) in files.iter().enumerate() {
        let bytes = match read_bounded(path, MAX_FILE_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => {
                let id = sources.add(path.clone(), String::new());
                diags.push(
                    Diagnostic::at(
                        id,
                        Span::new(0, 0),
                        format!("file is larger than {} MiB", MAX_FILE_BYTES >> 20),
                    )
                    .help("split it into several files, or look for a value that does not belong in a spec (a spec file is far smaller)"),
                );
                continue;
            }
            Err(e) => {
                diags.push(Diagnostic::global(format!(
                    "cannot read `{}`: {e}",
                    path.display()
                )));
                continue;
            }
        };
        total += bytes.len() as u64;
        if total > MAX_TOTAL_BYTES {
            diags.push(
                Diagnostic::global(format!(
                    "the desired state is larger than {} MiB; `{}` and the {} file(s) after it were not read",
                    MAX_TOTAL_BYTES >> 20,
                    path.display(),
                    files.len() - i - 1
                ))
                .help("a desired state is far smaller: look for large files that do not belong in it"),
            );
            break;
        }
        // A UTF-8 byte order mark (some Windows editors write one) is not part of the text.
        let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => rest.to_vec(),
            None => bytes,
        };
        let (text, bad_utf8) = match String::from_utf8(bytes) {
            Ok(t) => (t, None),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                (
                    String::from_utf8_lossy(&bytes[..valid]).into_owned(),
                    Some(valid),
                )
            }
        };
        let id = sources.add(path.clone(), text);
        if let Some(at) = bad_utf8 {
            diags.push(
                Diagnostic::at(id, Span::new(at, at), "file is not valid UTF-8")
                    .help("save the file as UTF-8; bytes after this point were not read"),
            );
            continue;
        }
        let (nodes, issues) = parse::parse(sources.get(id));
        let syntax_error = issues
            .iter()
            .any(|i| matches!(i, ParseIssue::Syntax { .. } | ParseIssue::Limit { .. }));
        for issue in issues {
            diags.push(match issue {
                ParseIssue::Syntax { span, message } => {
                    Diagnostic::at(id, span, format!("YAML syntax error: {message}"))
                        .help("fix the YAML syntax (indentation, quotes, brackets) at this point")
                }
                ParseIssue::Limit {
                    span,
                    message,
                    help,
                } => Diagnostic::at(id, span, message).help(help),
                ParseIssue::DuplicateKey { key, span, first } => {
                    Diagnostic::at(id, span, format!("duplicate key `{key}`"))
                        .related(
                            Origin {
                                file: id,
                                span: first,
                            },
                            "first defined here",
                        )
                        .help("remove one of the two keys")
                }
            });
        }
        if !syntax_error && nodes.iter().all(Node::is_null) {
            diags.push(
                Diagnostic::at(id, Span::new(0, 0), "file is empty").help(format!(
                    "add resources under {} or delete the file",
                    SECTIONS
                        .iter()
                        .map(|s| format!("`{s}:`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            continue;
        }
        for node in &nodes {
            validate::check_text(id, node, &mut diags);
        }
        documents.push((id, sources.path(id) == config_path, nodes));
    }

    let sink = de::Sink::default();
    let mut raw = Raw::default();
    for (file, is_config, nodes) in &documents {
        for node in nodes.iter().filter(|n| !n.is_null()) {
            if *is_config {
                if raw.config.is_some() {
                    diags.push(
                        Diagnostic::at(
                            *file,
                            node.span,
                            format!("{CONFIG_FILE} holds more than one document"),
                        )
                        .help("keep a single document in reconcile.yaml"),
                    );
                    continue;
                }
                match de::from_node::<Config>(node, &sink) {
                    Ok(spec) => {
                        raw.config = Some(Item {
                            spec,
                            node,
                            file: *file,
                        })
                    }
                    Err(e) => diags.push(from_de(*file, node, e)),
                }
                diags.extend(sink.take().into_iter().map(|e| from_de(*file, node, e)));
            } else {
                decode_resources(*file, node, &sink, &mut raw, &mut diags);
            }
        }
    }

    let checked = validate::check(&raw, &mut diags);
    if !diags.is_empty() || raw.config.is_none() {
        diagnostic::sort(&mut diags);
        return Err(SpecErrors {
            sources,
            diagnostics: diags,
            contacted: false,
        });
    }
    let config = raw.config.map(|c| c.spec).expect("checked above");
    let Raw {
        users,
        projects,
        secrets,
        services,
        ..
    } = raw;
    Ok(DesiredState {
        dir: dir.to_path_buf(),
        config,
        users: declared(users),
        projects: declared(projects),
        secrets: declared(secrets),
        services: declared(services),
        origins: checked.origins,
        references: checked.references,
        sources,
    })
}

/// The content of `path`, or None when it is larger than `limit` bytes (never reads more).
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

fn from_de(file: FileId, node: &Node, e: de::DeError) -> Diagnostic {
    let mut d = Diagnostic::at(file, e.span.unwrap_or(node.span), e.message);
    d.help = e.help;
    d.sensitive = e.sensitive;
    d
}

fn decode_resources<'a>(
    file: FileId,
    doc: &'a Node,
    sink: &de::Sink,
    raw: &mut Raw<'a>,
    diags: &mut Vec<Diagnostic>,
) {
    let NodeKind::Map(entries) = &doc.kind else {
        diags.push(
            Diagnostic::at(
                file,
                doc.span,
                format!("expected a mapping, found {}", doc.describe()),
            )
            .help(format!(
                "a resource file is a mapping with any of {}",
                SECTIONS
                    .iter()
                    .map(|s| format!("`{s}:`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
        return;
    };
    for (key, value) in entries {
        let name = key.as_str().unwrap_or_default();
        if !SECTIONS.contains(&name) {
            let credential = redact::is_sensitive_key(name);
            let help = match suggest(name, SECTIONS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if credential => de::CREDENTIALS_HELP.to_string(),
                None => format!(
                    "expected one of {}",
                    SECTIONS
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let hint = if name == "gitlab" || name == "environments" || name == "aws" {
                format!("{help} (settings like `{name}:` belong in {CONFIG_FILE})")
            } else {
                help
            };
            let d = Diagnostic::at(file, key.span, format!("unknown section `{name}`")).help(hint);
            diags.push(if credential { d.sensitive() } else { d });
            continue;
        }
        if value.is_null() {
            continue;
        }
        let NodeKind::Seq(items) = &value.kind else {
            diags.push(
                Diagnostic::at(
                    file,
                    value.span,
                    format!("expected a list, found {}", value.describe()),
                )
                .help(format!(
                    "write `{name}:` followed by items starting with `- `"
                )),
            );
            continue;
        };
        for node in items {
            let decoded = match name {
                "users" => {
                    de::from_node(node, sink).map(|spec| raw.users.push(Item { spec, node, file }))
                }
                "projects" => de::from_node(node, sink)
                    .map(|spec| raw.projects.push(Item { spec, node, file })),
                "secrets" => de::from_node(node, sink)
                    .map(|spec| raw.secrets.push(Item { spec, node, file })),
                _ => de::from_node(node, sink)
                    .map(|spec| raw.services.push(Item { spec, node, file })),
            };
            if let Err(e) = decoded {
                diags.push(from_de(file, node, e));
            }
        }
    }
    // Unknown fields found in this document.
    for e in sink.take() {
        diags.push(from_de(file, doc, e));
    }
}

fn declared<T>(items: Vec<Item<'_, T>>) -> Vec<Declared<T>> {
    items
        .into_iter()
        .map(|i| Declared {
            origin: i.origin(),
            spec: i.spec,
        })
        .collect()
}

/// Every `*.yaml` / `*.yml` under `dir`, sorted, hidden entries skipped, with the symlinks that
/// were refused. Symlinks are followed when their target is inside `dir` (a file reached by two
/// paths is read once, as `reconcile.yaml` when one of them is that); a symlink that leads
/// outside `dir`, to nothing, or back to an ancestor (a loop) is refused.
fn discover(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Diagnostic>), Diagnostic> {
    if !dir.is_dir() {
        return Err(Diagnostic::global(format!(
            "desired-state directory `{}` does not exist",
            dir.display()
        ))
        .help("run from the repository root or pass `--dir DIR`"));
    }
    let root = dir
        .canonicalize()
        .map_err(|e| Diagnostic::global(format!("cannot read `{}`: {e}", dir.display())))?;
    let outside = |path: &Path| {
        Diagnostic::global(format!(
            "`{}` is a symlink to a place outside the desired-state directory; it was not read",
            path.display()
        ))
        .help(format!(
            "copy the file into `{}` (symlinks are followed only when they stay inside it)",
            dir.display()
        ))
    };
    let refused = std::cell::RefCell::new(Vec::new());
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            if e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.') {
                return false;
            }
            // Never walk into a directory outside `dir` through a symlink.
            if e.depth() > 0 && e.path_is_symlink() && e.file_type().is_dir() {
                let inside = e.path().canonicalize().is_ok_and(|c| c.starts_with(&root));
                if !inside {
                    refused.borrow_mut().push(outside(e.path()));
                    return false;
                }
            }
            true
        });
    // (path as found, canonical path)
    let mut found: Vec<(PathBuf, PathBuf)> = Vec::new();
    // The same bad symlink reached through a symlinked directory is reported once.
    let mut reported = std::collections::HashSet::new();
    let link_id = |path: &Path| -> PathBuf {
        let parent = path.parent().and_then(|p| p.canonicalize().ok());
        parent
            .unwrap_or_default()
            .join(path.file_name().unwrap_or_default())
    };
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                if !reported.insert(link_id(&path)) {
                    continue;
                }
                let d = if let Some(ancestor) = e.loop_ancestor() {
                    Diagnostic::global(format!(
                        "`{}` is a symlink back to `{}` (a loop); it was not followed",
                        path.display(),
                        ancestor.display()
                    ))
                    .help("remove the symlink: every spec file is found from the desired-state directory down")
                } else if e
                    .io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                {
                    Diagnostic::global(format!(
                        "`{}` is a symlink to nothing (its target does not exist)",
                        path.display()
                    ))
                    .help("remove the symlink or restore its target")
                } else {
                    Diagnostic::global(format!("cannot read `{}`: {e}", path.display()))
                        .help("check the permissions of the desired-state directory")
                };
                refused.borrow_mut().push(d);
                continue;
            }
        };
        let is_yaml = entry
            .path()
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml");
        if !(entry.file_type().is_file() && is_yaml) {
            continue;
        }
        match entry.path().canonicalize() {
            Ok(c) if c.starts_with(&root) => found.push((entry.into_path(), c)),
            Ok(_) if reported.insert(link_id(entry.path())) => {
                refused.borrow_mut().push(outside(entry.path()))
            }
            Ok(_) => {}
            Err(e) => refused.borrow_mut().push(Diagnostic::global(format!(
                "cannot read `{}`: {e}",
                entry.path().display()
            ))),
        }
        if found.len() > MAX_FILES {
            return Err(Diagnostic::global(format!(
                "`{}` holds more than {MAX_FILES} YAML files",
                dir.display()
            ))
            .help("point `--dir` at the desired-state directory itself"));
        }
    }
    // A file reached by two paths is read once: as the settings file if one path is that,
    // else by the first path in walking order.
    let config = dir.join(CONFIG_FILE);
    let config_target = found
        .iter()
        .find(|(p, _)| *p == config)
        .map(|(_, c)| c.clone());
    let mut seen = std::collections::HashSet::new();
    let files = found
        .into_iter()
        .filter(|(p, c)| {
            let is_config_target = config_target.as_ref() == Some(c);
            (!is_config_target || *p == config) && seen.insert(c.clone())
        })
        .map(|(p, _)| p)
        .collect();
    Ok((files, refused.into_inner()))
}

/// The JSON Schemas of the spec files, as `(file name, pretty JSON)`.
pub fn schemas() -> Vec<(&'static str, String)> {
    let render = |schema: schemars::Schema| {
        serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n"
    };
    vec![
        ("config.json", render(schemars::schema_for!(Config))),
        (
            "resources.json",
            render(schemars::schema_for!(ResourceFile)),
        ),
    ]
}

/// A dependency cycle as a spec error, located at the first resource of the cycle.
pub fn cycle_errors(state: DesiredState, cycle: &crate::graph::Cycle) -> SpecErrors {
    let path = cycle
        .path
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" → ");
    let mut d = Diagnostic::global(format!("dependency cycle: {path}"))
        .help("break the cycle; for promotion cycles, `promote_from` must form a chain (staging → production)");
    d.origin = cycle
        .path
        .first()
        .and_then(|a| state.origins.get(a).copied());
    for a in cycle
        .path
        .iter()
        .skip(1)
        .take(cycle.path.len().saturating_sub(2))
    {
        if let Some(o) = state.origins.get(a) {
            d.related.push((*o, format!("{a}")));
        }
    }
    SpecErrors {
        sources: state.sources,
        diagnostics: vec![d],
        contacted: false,
    }
}
