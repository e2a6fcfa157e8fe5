//! Compliance policies: each rule failing and passing, `reconcile check`, and apply blocked by
//! an `error` finding.

use crate::support::gitlab::{Gitlab, desired_state};
use crate::support::{assert_golden, reconcile, text};

const CONFIG: &str = "gitlab: {url: http://gitlab.invalid}\nenvironments:\n  staging: {}\n  production: {promote_from: staging}\npolicies:\n  production_circuit_breaker: warn\n";

/// One violation of every rule.
const VIOLATIONS: &str = r#"users:
  - {username: boss, name: Boss, email: boss@example.com, admin: true}
projects:
  - namespace: root
    path: unprotected
    default_branch: main
  - namespace: root
    path: forcepush
    protected_branches:
      items:
        - {name: main, allow_force_push: true}
    variables:
      items:
        - {key: DB_PASSWORD, value: not-a-secret-really}
services:
  - name: api
    environment: staging
    cluster: c
    launch_type: EC2
    task_definition: {family: api-staging, containers: [{name: api, image: {repository: api, tag: latest}, memory: 128}]}
  - name: api
    environment: production
    cluster: c
    launch_type: EC2
    task_definition: {family: api-prod, containers: [{name: api, image: {repository: api, tag: latest}, memory: 128}]}
"#;

/// The same, every rule satisfied.
const COMPLIANT: &str = r#"users:
  - {username: root, name: Administrator, email: admin@example.com, admin: true}
projects:
  - namespace: root
    path: app
    protected_branches:
      items:
        - {name: main}
    variables:
      items:
        - {key: DB_PASSWORD, masked: true, protected: true, from: {secret: db}}
secrets:
  - name: db
services:
  - name: api
    environment: staging
    cluster: c
    launch_type: EC2
    task_definition: {family: api-staging, containers: [{name: api, image: {repository: api, tag: latest}, memory: 128}]}
  - name: api
    environment: production
    cluster: c
    launch_type: EC2
    deployment: {circuit_breaker: {enable: true, rollback: true}}
    task_definition: {family: api-prod, containers: [{name: api, image: {repository: api, tag: "1.4.2"}, memory: 128}]}
"#;

fn check(files: &str) -> (Option<i32>, String) {
    let dir = desired_state(&[("reconcile.yaml", CONFIG), ("all.yaml", files)]);
    let out = reconcile(&["check", "--dir", dir.path().to_str().unwrap()]);
    (
        out.status.code(),
        text(&out.stdout).replace(dir.path().to_str().unwrap(), "DIR"),
    )
}

#[test]
fn every_rule_fails_on_its_violation() {
    let (code, out) = check(VIOLATIONS);
    assert_eq!(code, Some(1));
    assert_golden("policies/violations.txt", &out);
    for rule in [
        "default_branch_protected",
        "secret_variables_masked",
        "admin_users",
        "immutable_production_images",
        "production_circuit_breaker",
    ] {
        assert!(
            out.contains(&format!("[{rule}]")),
            "{rule} not reported:\n{out}"
        );
    }
    assert!(
        out.contains("warn  [production_circuit_breaker]"),
        "severity from reconcile.yaml"
    );
    assert_eq!(
        out.matches("[immutable_production_images]").count(),
        1,
        "the staging service's `latest` is allowed:\n{out}"
    );
}

#[test]
fn every_rule_passes_on_a_compliant_state() {
    let (code, out) = check(COMPLIANT);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "Policies: 0 error(s), 0 warning(s).\n");
}

#[test]
fn example_desired_state_is_compliant() {
    let out = reconcile(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn an_error_finding_is_shown_in_the_plan_and_blocks_apply() {
    let gitlab = Gitlab::start();
    let projects = "projects:\n  - {namespace: root, path: app, default_branch: main}\n  - {namespace: root, path: web, default_branch: main}\n";
    let dir = desired_state(&[
        ("reconcile.yaml", "gitlab: {url: http://gitlab.invalid}\n"),
        ("p.yaml", projects),
    ]);
    let plan = gitlab.reconcile(dir.path(), &["plan"], &[]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(
        text(&plan.stdout)
            .contains("Policies (2 error(s) block apply):\n  error [default_branch_protected]"),
        "{}",
        text(&plan.stdout)
    );
    gitlab.reset_counters();
    let apply = gitlab.reconcile(dir.path(), &["apply", "--auto-approve"], &[]);
    assert_eq!(apply.status.code(), Some(1));
    // Each finding once (found again in the desired state and recorded in the plan).
    assert!(
        text(&apply.stderr).contains("2 compliance policy error(s) block apply"),
        "{}",
        text(&apply.stderr)
    );
    assert_eq!(
        text(&apply.stderr)
            .matches("error [default_branch_protected]")
            .count(),
        2,
        "{}",
        text(&apply.stderr)
    );
    let writes: u64 = gitlab
        .counters()
        .by_route
        .iter()
        .filter(|(r, _)| !r.starts_with("GET "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(writes, 0);
}
