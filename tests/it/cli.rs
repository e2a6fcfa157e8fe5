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
fn usage_errors_exit_1_never_2() {
    // 2 means "changes present": a CI step `plan ... || test $? -eq 2` must not pass on a typo.
    let out = reconcile(&["plna"]);
    assert_eq!(out.status.code(), Some(1), "a usage error exits 1");
    assert!(text(&out.stderr).contains("tip: a similar subcommand exists: 'plan'"));
    let dir = tempfile::tempdir().unwrap();
    let plan_file = dir.path().join("plan.json");
    let flag = reconcile(&["plan", "--dri", "ds", "--out", plan_file.to_str().unwrap()]);
    assert_eq!(flag.status.code(), Some(1), "{}", text(&flag.stderr));
    assert!(text(&flag.stderr).contains("unexpected argument '--dri'"));
    assert!(!plan_file.exists());
    // The positive controls: --help and --version are not errors.
    assert_eq!(reconcile(&["--help"]).status.code(), Some(0));
    assert_eq!(reconcile(&["plan", "--help"]).status.code(), Some(0));
    assert_eq!(reconcile(&["--version"]).status.code(), Some(0));
}

/// `reconcile graph | head -1`: the closed pipe ends the command quietly (no panic message).
#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::io::Read as _;
    // Far more than a pipe buffer of output.
    let users: String = (0..4000)
        .map(|i| format!("  - {{username: user{i}, name: User {i}, email: user{i}@example.com}}\n"))
        .collect();
    let dir = crate::support::gitlab::desired_state(&[
        ("reconcile.yaml", "gitlab: {url: http://gitlab.invalid}\n"),
        ("gitlab.yaml", &format!("users:\n{users}")),
    ]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["graph", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = crate::support::text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(out.status.code(), Some(0 | 141)),
        "{:?} {stderr}",
        out.status
    );
}
