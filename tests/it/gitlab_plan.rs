//! GitLab plan and apply over the emulator: creation from empty, an empty re-plan, each kind of
//! drift planned exactly (golden) and corrected, the request budget, and faults.

use crate::support::gitlab::{Gitlab, desired_state};
use crate::support::{assert_golden, text};

const CONFIG: &str = "gitlab: {url: http://gitlab.invalid}\n";

/// Two users, one project with members, a protected branch and literal variables.
pub(crate) fn fixture(prune: bool) -> String {
    format!(
        r#"users:
  - {{username: dev1, name: Developer One, email: dev1@example.com}}
  - {{username: dev2, name: Developer Two, email: dev2@example.com}}
projects:
  - namespace: root
    path: app
    description: The app
    visibility: private
    default_branch: main
    members:
      prune: {prune}
      items:
        - {{user: dev1, access: developer}}
        - {{user: dev2, access: reporter}}
    protected_branches:
      prune: {prune}
      items:
        - {{name: main, push: maintainer, merge: developer, allow_force_push: false}}
    variables:
      prune: {prune}
      items:
        - {{key: REGION, value: us-east-1, protected: true}}
        - {{key: DEPLOY_ENV, value: staging, environment_scope: staging}}
        - {{key: DEPLOY_ENV, value: production, environment_scope: production}}
"#
    )
}

struct Setup {
    gitlab: Gitlab,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Emulator with the fixture applied and verified converged.
    fn converged(prune: bool) -> Self {
        let gitlab = Gitlab::start();
        let dir = desired_state(&[("reconcile.yaml", CONFIG), ("gitlab.yaml", &fixture(prune))]);
        let s = Setup { gitlab, dir };
        let out = s.run(&["apply", "--auto-approve"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "first apply: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        s.assert_no_changes();
        s
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.gitlab.reconcile(self.dir.path(), args, &[])
    }

    fn assert_no_changes(&self) {
        let out = self.run(&["plan"]);
        assert!(
            text(&out.stdout).ends_with("No changes. Live state matches the desired state.\n"),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0));
    }

    /// Plans (golden text and JSON), applies, and checks the re-plan is empty.
    fn plan_apply(&self, golden: &str) {
        let out = self.run(&["plan"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "plan: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_golden(&format!("gitlab/{golden}.txt"), &text(&out.stdout));
        let json = self.run(&["plan", "--json"]);
        let mut value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        value["plan"]["revision"] = "(temporary directory)".into();
        value["plan"]["created_at"] = "(time of the plan)".into();
        value["sha256"] = "(depends on the revision)".into();
        assert_golden(
            &format!("gitlab/{golden}.json"),
            &(serde_json::to_string_pretty(&value).unwrap() + "\n"),
        );
        let applied = self.run(&["apply", "--auto-approve"]);
        assert_eq!(
            applied.status.code(),
            Some(0),
            "apply: {}{}",
            text(&applied.stdout),
            text(&applied.stderr)
        );
        assert!(
            text(&applied.stdout).contains("Convergence check: every touched resource matches")
        );
        self.assert_no_changes();
    }
}

#[test]
fn empty_gitlab_is_created_then_plan_is_empty() {
    let gitlab = Gitlab::start();
    let dir = desired_state(&[("reconcile.yaml", CONFIG), ("gitlab.yaml", &fixture(false))]);
    let out = gitlab.reconcile(dir.path(), &["plan"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_golden("gitlab/create-from-empty.txt", &text(&out.stdout));
    let s = Setup { gitlab, dir };
    let applied = s.run(&["apply", "--auto-approve"]);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );
    assert!(
        text(&applied.stdout).contains("\nApply: 9 applied, 0 failed, 0 skipped.\n"),
        "{}",
        text(&applied.stdout)
    );
    s.assert_no_changes();
    // Objects exist once each.
    let (_, vars) = s.gitlab.api("GET", "projects/root%2Fapp/variables", None);
    assert_eq!(vars.as_array().unwrap().len(), 3);
    let (_, branches) = s
        .gitlab
        .api("GET", "projects/root%2Fapp/protected_branches", None);
    assert_eq!(branches.as_array().unwrap().len(), 1);
}

#[test]
fn drift_changed_visibility() {
    let s = Setup::converged(false);
    s.gitlab.api(
        "PUT",
        "projects/root%2Fapp",
        Some(serde_json::json!({"visibility": "public"})),
    );
    s.plan_apply("drift-visibility");
}

#[test]
fn drift_extra_member_is_reported_without_prune() {
    let s = Setup::converged(false);
    let (_, user) = s.gitlab.api("POST", "users", Some(serde_json::json!({"username": "intruder", "name": "In Truder", "email": "in@example.com", "force_random_password": true})));
    s.gitlab.api(
        "POST",
        "projects/root%2Fapp/members",
        Some(serde_json::json!({"user_id": user["id"], "access_level": 40})),
    );
    let out = s.run(&["plan"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "an unmanaged member is not a change"
    );
    assert_golden("gitlab/drift-extra-member-kept.txt", &text(&out.stdout));
}

#[test]
fn drift_extra_member_is_deleted_with_prune() {
    let s = Setup::converged(true);
    let (_, user) = s.gitlab.api("POST", "users", Some(serde_json::json!({"username": "intruder", "name": "In Truder", "email": "in@example.com", "force_random_password": true})));
    s.gitlab.api(
        "POST",
        "projects/root%2Fapp/members",
        Some(serde_json::json!({"user_id": user["id"], "access_level": 40})),
    );
    s.plan_apply("drift-extra-member-pruned");
    let (_, members) = s.gitlab.api("GET", "projects/root%2Fapp/members", None);
    assert!(
        !members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["username"] == "intruder")
    );
}

#[test]
fn drift_changed_access_level() {
    let s = Setup::converged(false);
    let (_, users) = s.gitlab.api("GET", "users?username=dev1", None);
    let id = users[0]["id"].as_u64().unwrap();
    s.gitlab.api(
        "PUT",
        &format!("projects/root%2Fapp/members/{id}"),
        Some(serde_json::json!({"access_level": 40})),
    );
    s.plan_apply("drift-access-level");
}

#[test]
fn drift_force_push_enabled() {
    let s = Setup::converged(false);
    s.gitlab.api(
        "PATCH",
        "projects/root%2Fapp/protected_branches/main",
        Some(serde_json::json!({"allow_force_push": true})),
    );
    s.plan_apply("drift-force-push");
}

#[test]
fn drift_branch_levels_need_unprotect_and_protect() {
    let s = Setup::converged(false);
    s.gitlab.api(
        "DELETE",
        "projects/root%2Fapp/protected_branches/main",
        None,
    );
    s.gitlab.api(
        "POST",
        "projects/root%2Fapp/protected_branches",
        Some(
            serde_json::json!({"name": "main", "push_access_level": 30, "merge_access_level": 30}),
        ),
    );
    s.plan_apply("drift-branch-levels");
}

#[test]
fn drift_changed_missing_and_extra_variables() {
    let s = Setup::converged(false);
    s.gitlab.api(
        "PUT",
        "projects/root%2Fapp/variables/REGION?filter%5Benvironment_scope%5D=*",
        Some(serde_json::json!({"value": "eu-west-1"})),
    );
    s.gitlab.api(
        "DELETE",
        "projects/root%2Fapp/variables/DEPLOY_ENV?filter%5Benvironment_scope%5D=staging",
        None,
    );
    s.gitlab.api(
        "POST",
        "projects/root%2Fapp/variables",
        Some(serde_json::json!({"key": "EXTRA", "value": "x"})),
    );
    s.gitlab.api("POST", "projects/root%2Fapp/variables", Some(serde_json::json!({"key": "REGION", "value": "eu-west-2", "environment_scope": "review/*"})));
    s.plan_apply("drift-variables");
}

#[test]
fn drift_blocked_user_is_unblocked() {
    let s = Setup::converged(false);
    let (_, users) = s.gitlab.api("GET", "users?username=dev2", None);
    let id = users[0]["id"].as_u64().unwrap();
    s.gitlab.api("POST", &format!("users/{id}/block"), None);
    s.plan_apply("drift-blocked-user");
}

/// A no-change plan of N projects costs 4 requests per project (project, variables, protected
/// branches, members), one per user, and 3 of preflight (`GET /version`, `/user`,
/// `/personal_access_tokens/self`).
#[test]
fn no_change_plan_request_budget() {
    let s = Setup::converged(false);
    s.gitlab.reset_counters();
    s.assert_no_changes();
    let c = s.gitlab.counters();
    let projects = 1;
    let users = 2;
    assert_eq!(
        c.total,
        4 * projects + users + 3,
        "requests by route: {:#?}",
        c.by_route
    );
    assert_eq!(c.get("GET /api/v4/projects/:id"), 1);
    assert_eq!(c.get("GET /api/v4/projects/:id/variables"), 1);
    assert_eq!(c.get("GET /api/v4/projects/:id/protected_branches"), 1);
    assert_eq!(c.get("GET /api/v4/projects/:id/members"), 1);
    assert_eq!(c.get("GET /api/v4/version"), 1);
    assert_eq!(c.get("GET /api/v4/user"), 1);
    assert_eq!(c.get("GET /api/v4/personal_access_tokens/self"), 1);
    assert_eq!(c.get("GET /api/v4/users"), 2);
    assert_eq!(c.get("GET /api/v4/user"), 1);
}

#[test]
fn plan_file_is_applied_and_refused_when_edited_or_stale() {
    let gitlab = Gitlab::start();
    let dir = desired_state(&[("reconcile.yaml", CONFIG), ("gitlab.yaml", &fixture(false))]);
    let plan_path = dir.path().join("plan.json");
    let plan_arg = plan_path.to_str().unwrap();
    let out = gitlab.reconcile(dir.path(), &["plan", "--out", plan_arg], &[]);
    assert_eq!(out.status.code(), Some(2));

    // Edited body: refused, nothing written.
    let original = std::fs::read_to_string(&plan_path).unwrap();
    std::fs::write(&plan_path, original.replace("us-east-1", "us-east-2")).unwrap();
    gitlab.reset_counters();
    let refused = gitlab.reconcile(dir.path(), &["apply", plan_arg], &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("plan file was edited"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(writes(&gitlab), 0, "a refused apply writes nothing");

    // Live change to a touched resource after the plan: refused.
    std::fs::write(&plan_path, &original).unwrap();
    gitlab.api("POST", "users", Some(serde_json::json!({"username": "dev1", "name": "Someone Else", "email": "x@example.com", "force_random_password": true})));
    gitlab.reset_counters();
    let stale = gitlab.reconcile(dir.path(), &["apply", plan_arg], &[]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        text(&stale.stderr).contains("gitlab.user/dev1: was created live since the plan"),
        "{}",
        text(&stale.stderr)
    );
    assert_eq!(writes(&gitlab), 0);

    // A fresh plan applies.
    let out = gitlab.reconcile(dir.path(), &["plan", "--out", plan_arg], &[]);
    assert_eq!(out.status.code(), Some(2));
    let applied = gitlab.reconcile(dir.path(), &["apply", plan_arg], &[]);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );
}

pub(crate) fn writes(gitlab: &Gitlab) -> u64 {
    gitlab
        .counters()
        .by_route
        .iter()
        .filter(|(route, _)| !route.starts_with("GET "))
        .map(|(_, n)| n)
        .sum()
}

/// 20% 5xx, 429s and "write succeeded, response 500", over seeded runs: every run converges
/// (applying again while faults continue), no object is duplicated, and failures are reported.
#[test]
fn faults_converge_without_duplicates() {
    let runs: u64 = std::env::var("RECONCILE_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    for seed in 0..runs {
        let gitlab = Gitlab::start();
        let dir = desired_state(&[("reconcile.yaml", CONFIG), ("gitlab.yaml", &fixture(false))]);
        gitlab.set_faults(gitlab_emulator::Faults {
            seed,
            error_rate: 0.2,
            rate_limited_rate: 0.05,
            write_then_500_rate: 0.1,
            retry_after_secs: 0,
            // 429s that name no limit (like GitLab's per-endpoint limits): paced from what was
            // answered, not at the 600/min a Rack::Attack 429 would name.
            omit_rate_limit_headers: true,
            ..Default::default()
        });
        let mut converged = false;
        for attempt in 0..5 {
            let out = gitlab.reconcile(dir.path(), &["apply", "--auto-approve"], &[]);
            let stdout = text(&out.stdout);
            match out.status.code() {
                Some(0) => {
                    converged = true;
                    break;
                }
                // Each failure is named: a failed or skipped step with its cause, a resource
                // that does not converge, or an error that stopped the run before writing.
                Some(1 | 3) => assert!(
                    stdout.contains("\n  failed  ")
                        || stdout.contains("\n  skipped ")
                        || stdout.contains("do not converge:\n  ")
                        || text(&out.stderr).contains("error: "),
                    "seed {seed} attempt {attempt}: a failure must be reported\n{stdout}"
                ),
                other => panic!(
                    "seed {seed}: unexpected exit {other:?}\n{stdout}{}",
                    text(&out.stderr)
                ),
            }
        }
        assert!(
            converged,
            "seed {seed}: did not converge in 5 applies under faults"
        );
        gitlab.clear_faults();
        let out = gitlab.reconcile(dir.path(), &["plan"], &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "seed {seed}: {}",
            text(&out.stdout)
        );
        let (_, users) = gitlab.api("GET", "users?per_page=100", None);
        assert_eq!(
            users.as_array().unwrap().len(),
            3,
            "seed {seed}: root + dev1 + dev2, no duplicate"
        );
        let (_, projects) = gitlab.api("GET", "projects?per_page=100", None);
        assert_eq!(
            projects.as_array().unwrap().len(),
            1,
            "seed {seed}: one project"
        );
        let (_, vars) = gitlab.api("GET", "projects/root%2Fapp/variables?per_page=100", None);
        assert_eq!(
            vars.as_array().unwrap().len(),
            3,
            "seed {seed}: three variables"
        );
    }
}

#[test]
fn env_limits_the_plan_to_one_scope() {
    let gitlab = Gitlab::start();
    let config = "gitlab: {url: http://gitlab.invalid}\nenvironments: {staging: {}}\n";
    let dir = desired_state(&[("reconcile.yaml", config), ("gitlab.yaml", &fixture(false))]);
    let all = gitlab.reconcile(dir.path(), &["plan", "--env", "gitlab"], &[]);
    assert_eq!(all.status.code(), Some(2));
    assert!(
        text(&all.stdout).ends_with("Plan: 9 to create, 0 to update, 0 to replace, 0 to delete.\n")
    );
    gitlab.reset_counters();
    let staging = gitlab.reconcile(dir.path(), &["plan", "--env", "staging"], &[]);
    assert_eq!(staging.status.code(), Some(0), "{}", text(&staging.stdout));
    assert_eq!(
        gitlab.counters().total,
        0,
        "a plan of another scope does not contact GitLab"
    );
    let unknown = gitlab.reconcile(dir.path(), &["plan", "--env", "prod"], &[]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        text(&unknown.stderr),
        "error: unknown scope `prod` for --env: use `gitlab`, `aws` or one of [staging]\n"
    );
}

/// Every write is performed and then answered 500 (the outcome is unknown to the client): each
/// step re-reads before it is called failed, so the run is reported as it is, all applied, and
/// exit 0 (the audit saw exit 3 from protected branches whose second POST was unknown too).
#[test]
fn unknown_outcomes_are_read_back_before_a_step_fails() {
    let gitlab = Gitlab::start();
    let dir = desired_state(&[("reconcile.yaml", CONFIG), ("gitlab.yaml", &fixture(false))]);
    gitlab.set_faults(gitlab_emulator::Faults {
        write_then_500_rate: 1.0,
        ..Default::default()
    });
    let out = gitlab.reconcile(dir.path(), &["apply", "--auto-approve"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    gitlab.clear_faults();
    let again = gitlab.reconcile(dir.path(), &["plan"], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    let (_, branches) = gitlab.api("GET", "projects/root%2Fapp/protected_branches", None);
    assert_eq!(
        branches.as_array().unwrap().len(),
        1,
        "no duplicate protection"
    );
}

/// Projects in dev1's personal namespace (#19 item 2): GitLab makes dev1 an Owner member of
/// each and refuses to change or remove that membership, so `prune: true` never plans to
/// delete dev1 (it would be a perpetual diff, and a 403 at every apply), and declaring dev1 as
/// `owner` adopts the membership GitLab made.
#[test]
fn the_holder_of_a_personal_namespace_is_never_pruned() {
    let gitlab = Gitlab::start();
    let spec = r#"users:
  - {username: dev1, name: Developer One, email: dev1@example.com}
  - {username: dev2, name: Developer Two, email: dev2@example.com}
projects:
  - namespace: dev1
    path: sandbox
    members:
      prune: true
      items:
        - {user: dev2, access: developer}
    protected_branches:
      items:
        - {name: main, push: maintainer, merge: developer}
  - namespace: dev1
    path: scratch
    members:
      prune: true
      items:
        - {user: dev1, access: owner}
    protected_branches:
      items:
        - {name: main, push: maintainer, merge: developer}
"#;
    let dir = desired_state(&[("reconcile.yaml", CONFIG), ("gitlab.yaml", spec)]);
    let s = Setup { gitlab, dir };
    let applied = s.run(&["apply", "--auto-approve"]);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );
    s.assert_no_changes();
    let levels = |project: &str| -> Vec<(String, u64)> {
        let (_, members) = s
            .gitlab
            .api("GET", &format!("projects/dev1%2F{project}/members"), None);
        let mut out: Vec<(String, u64)> = members
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["username"].as_str().unwrap().to_string(),
                    m["access_level"].as_u64().unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(
        levels("sandbox"),
        [("dev1".to_string(), 50), ("dev2".to_string(), 30)]
    );
    assert_eq!(levels("scratch"), [("dev1".to_string(), 50)]);

    // Positive control: prune still removes someone else in the personal namespace's project.
    let (_, users) = s.gitlab.api("GET", "users?username=dev2", None);
    let dev2 = users[0]["id"].as_u64().unwrap();
    s.gitlab.api(
        "POST",
        "projects/dev1%2Fscratch/members",
        Some(serde_json::json!({"user_id": dev2, "access_level": 40})),
    );
    let plan = s.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan.stderr));
    let stdout = text(&plan.stdout);
    assert!(
        stdout.contains("- gitlab.member/dev1/scratch/dev2  (will be deleted)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("gitlab.member/dev1/scratch/dev1"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("gitlab.member/dev1/sandbox/dev1"),
        "{stdout}"
    );
    let applied = s.run(&["apply", "--auto-approve"]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied.stdout));
    s.assert_no_changes();
    assert_eq!(levels("scratch"), [("dev1".to_string(), 50)]);
}

/// A GitLab that answers 429 to everything: the request gives up after its attempts (6), and
/// the run ends with one line that says so; a `Retry-After` beyond the retry budget fails at
/// once. Positive control: the same 429s on a quarter of the requests are retried, the plan
/// completes, and the summary counts the retries and 429s the emulator sent.
#[test]
fn a_rate_limit_is_retried_within_its_cap_and_counted() {
    let gitlab = Gitlab::start();
    let dir = desired_state(&[("reconcile.yaml", CONFIG), ("gitlab.yaml", &fixture(false))]);
    let limited = |rate: f64, retry_after_secs: u64| gitlab_emulator::Faults {
        seed: 7,
        rate_limited_rate: rate,
        retry_after_secs,
        ..Default::default()
    };

    gitlab.set_faults(limited(1.0, 1));
    gitlab.reset_counters();
    let out = gitlab.reconcile(dir.path(), &["plan"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("429"), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "one line: {stderr}");
    assert_eq!(gitlab.counters().total, 6, "6 attempts, then it stops");

    gitlab.set_faults(limited(1.0, 3600));
    gitlab.reset_counters();
    let out = gitlab.reconcile(dir.path(), &["plan"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("asks to wait 3600 s more, beyond the retry budget of 180 s"),
        "{stderr}"
    );
    assert_eq!(gitlab.counters().total, 1, "no wait of an hour");

    gitlab.set_faults(limited(0.25, 1));
    gitlab.reset_counters();
    let out = gitlab.reconcile(dir.path(), &["plan"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "changes to make: {stderr}");
    let counters = gitlab.counters();
    let refused = counters.faults.get("rate_limited").copied().unwrap_or(0);
    assert!(refused > 0, "the fault fired");
    let summary = format!(
        "API requests: {} ({refused} retried, {refused} refused by a rate limit)",
        counters.total
    );
    assert!(stderr.contains(&summary), "{summary} in\n{stderr}");
}
