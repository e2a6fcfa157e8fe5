//! Plan rendering: the reviewable text (Terraform-like) and the documented JSON form.
//!
//! Text: resources grouped by owner (a project and its objects together), `+` create, `~` update
//! with `before → after` per field, `-/+` replace, `-` delete; multi-line values as a unified
//! diff (similar); secrets as `(sensitive)` / `(sensitive, changed)`; then a summary line.

use std::fmt::Write as _;

use similar::TextDiff;

use super::{Action, FieldChange, Plan, Step, graph_owner};
use crate::address::Address;
use crate::live::Value;

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
    }
}

fn group_of(address: &Address) -> Address {
    graph_owner(address).unwrap_or_else(|| address.clone())
}

/// A word for an action, for progress lines.
pub fn summary_word(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace => "replaced",
        Action::Delete => "deleted",
    }
}

/// The summary line, e.g. `Plan: 2 to create, 1 to update, 0 to replace, 0 to delete.`
pub fn summary(plan: &Plan) -> String {
    if plan.is_empty() && plan.blocked.is_empty() {
        return "No changes. Live state matches the desired state.".into();
    }
    let mut line = format!(
        "Plan: {} to create, {} to update, {} to replace, {} to delete.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    );
    if !plan.blocked.is_empty() {
        write!(line, " {} blocked.", plan.blocked.len()).unwrap();
    }
    // Deleting a user or a project is never only a number.
    let grave: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Delete)
        .filter(|s| matches!(s.address, Address::User { .. } | Address::Project { .. }))
        .map(|s| s.address.to_string())
        .collect();
    if !grave.is_empty() {
        write!(line, " DELETES {}.", grave.join(", ")).unwrap();
    }
    for g in &plan.gate_changes {
        write!(
            line,
            " Changes the approval gate of {} (required {} → {}).",
            g.scope, g.before.required, g.after.required
        )
        .unwrap();
    }
    line
}

/// Renders the plan for review.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let mut steps: Vec<&Step> = plan.steps.iter().collect();
    steps.sort_by_key(|s| (group_of(&s.address), s.address.clone()));
    let mut current: Option<Address> = None;
    for step in steps {
        let group = group_of(&step.address);
        if current.as_ref() != Some(&group) {
            if current.is_some() {
                out.push('\n');
            }
            writeln!(out, "# {group}").unwrap();
            current = Some(group);
        }
        let title = match step.action {
            Action::Create => "will be created",
            Action::Update => "will be updated in place",
            Action::Replace => "will be replaced",
            Action::Delete => "will be deleted",
        };
        writeln!(out, "  {} {}  ({title})", symbol(step.action), step.address).unwrap();
        for note in &step.notes {
            writeln!(out, "      ! {note}").unwrap();
        }
        for change in &step.changes {
            render_change(&mut out, step.action, change);
        }
    }
    let gap = |out: &mut String| {
        if !out.is_empty() {
            out.push('\n');
        }
    };
    if !plan.blocked.is_empty() {
        gap(&mut out);
        out.push_str("Blocked (not planned; fix the cause and plan again):\n");
        for b in &plan.blocked {
            writeln!(out, "  ? {}: {}", b.address, b.reason).unwrap();
        }
    }
    if !plan.policies.is_empty() {
        gap(&mut out);
        let errors = crate::policy::errors(&plan.policies);
        writeln!(out, "Policies ({errors} error(s) block apply):").unwrap();
        out.push_str(&crate::policy::render(&plan.policies));
    }
    if !plan.overrides.is_empty() {
        gap(&mut out);
        out.push_str(
            "Promotion overrides (apply needs an approval with `reconcile approve --override`):\n",
        );
        for o in &plan.overrides {
            writeln!(out, "  ! {}/{}: {}", o.env, o.service, o.reason).unwrap();
        }
    }
    if !plan.unmanaged.is_empty() {
        gap(&mut out);
        out.push_str(
            "Not managed (left alone; set `prune: true` on the collection to delete them):\n",
        );
        for a in &plan.unmanaged {
            writeln!(out, "    {a}").unwrap();
        }
    }
    gap(&mut out);
    out.push_str(&summary(plan));
    out.push('\n');
    out
}

fn render_change(out: &mut String, action: Action, c: &FieldChange) {
    let field = &c.field;
    match (&c.before, &c.after) {
        (Some(Value::Sensitive { .. }), Some(Value::Sensitive { .. })) => {
            writeln!(out, "      {field}: (sensitive, changed)").unwrap();
        }
        (Some(Value::Str(a)), Some(Value::Str(b))) if a.contains('\n') || b.contains('\n') => {
            writeln!(out, "      {field}:").unwrap();
            let diff = TextDiff::from_lines(a.as_str(), b.as_str());
            for line in diff.unified_diff().context_radius(2).to_string().lines() {
                writeln!(out, "        {line}").unwrap();
            }
        }
        (Some(before), Some(after)) => writeln!(out, "      {field}: {before} → {after}").unwrap(),
        (None, Some(Value::Str(after))) if after.contains('\n') => {
            writeln!(out, "      {field}:").unwrap();
            for line in after.lines() {
                writeln!(out, "        +{line}").unwrap();
            }
        }
        (None, Some(after)) => writeln!(out, "      {field}: {after}").unwrap(),
        (Some(before), None) if action == Action::Delete => {
            writeln!(out, "      {field}: {before}").unwrap()
        }
        (Some(before), None) => writeln!(out, "      {field}: {before} → (removed)").unwrap(),
        (None, None) => {}
    }
}

/// The JSON form printed by `reconcile plan --json` (stable; documented in README): the plan
/// file's content plus a `summary` with counts.
pub fn json(plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "sha256": plan.hash(),
        "summary": {
            "create": plan.count(Action::Create),
            "update": plan.count(Action::Update),
            "replace": plan.count(Action::Replace),
            "delete": plan.count(Action::Delete),
            "blocked": plan.blocked.len(),
            "unmanaged": plan.unmanaged.len(),
            "policy_errors": crate::policy::errors(&plan.policies),
        },
        "plan": plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Precondition;

    fn delete(address: Address) -> Step {
        Step {
            scope: address.scope_name(),
            address,
            action: Action::Delete,
            changes: Vec::new(),
            desired: Default::default(),
            precondition: Precondition::Absent,
            depends_on: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn deleting_a_user_or_project_is_named_in_the_summary() {
        let mut plan = Plan::empty("content:1");
        plan.steps.push(delete(Address::Member {
            project: "g/app".into(),
            user: "dev1".into(),
        }));
        assert_eq!(
            summary(&plan),
            "Plan: 0 to create, 0 to update, 0 to replace, 1 to delete."
        );
        plan.steps.push(delete(Address::User {
            username: "dev2".into(),
        }));
        plan.steps.push(delete(Address::Project {
            path: "g/app".into(),
        }));
        assert_eq!(
            summary(&plan),
            "Plan: 0 to create, 0 to update, 0 to replace, 3 to delete. DELETES gitlab.user/dev2, gitlab.project/g/app."
        );
    }
}
