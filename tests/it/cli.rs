//! Command-line surface: every subcommand is listed; pending ones refuse clearly.

use crate::support::{reconcile, text};

#[test]
fn help_lists_every_subcommand() {
    let out = reconcile(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("plan, --plan"),
        "--plan is shown as a spelling of plan"
    );
    for cmd in [
        "validate", "graph", "schema", "plan", "approve", "apply", "check", "daemon",
    ] {
        let listed = help.lines().any(|l| {
            l.trim_start().starts_with(&format!("{cmd} "))
                || l.trim_start().starts_with(&format!("{cmd},"))
        });
        assert!(listed, "`{cmd}` missing from --help:\n{help}");
    }
}

#[test]
fn dash_dash_plan_is_a_spelling_of_plan() {
    let dir = "tests/invalid/10-access-mantainer";
    let plan = reconcile(&["plan", "--dir", dir]);
    let spelled = reconcile(&["--plan", "--dir", dir]);
    assert_eq!(plan.status.code(), Some(1));
    assert_eq!(spelled.status.code(), Some(1));
    assert!(text(&plan.stderr).contains("unknown value `mantainer`"));
    assert_eq!(text(&plan.stderr), text(&spelled.stderr));
}

#[test]
fn plan_without_a_token_says_so_and_contacts_nothing() {
    let out = reconcile(&["plan"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: GITLAB_TOKEN is not set: export the token of a GitLab admin user\n"
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = reconcile(&["plna"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage errors exit 2");
    assert!(text(&out.stderr).contains("tip: a similar subcommand exists: 'plan'"));
}
