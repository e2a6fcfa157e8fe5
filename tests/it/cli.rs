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
    for args in [
        &["plan"][..],
        &["--plan"][..],
        &["--plan", "--dir", "desired-state"][..],
    ] {
        let out = reconcile(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            text(&out.stderr),
            "error: `reconcile plan` is not implemented yet (issue #4); nothing was contacted\n",
            "{args:?}"
        );
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = reconcile(&["plna"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage errors exit 2");
    assert!(text(&out.stderr).contains("tip: a similar subcommand exists: 'plan'"));
}
