//! `reconcile daemon` over the GitLab emulator (and moto): drift corrected under `correct`,
//! held and approved over HTTP under `hold`, notified only under `report`; metrics; SIGTERM in
//! the middle of an apply; a failing GitLab backed off from and recovered; bad input.

use std::path::Path;
use std::time::Duration;

use gitlab_emulator::Faults;
use serde_json::json;

use crate::gitlab_plan::{fixture, writes};
use crate::support::daemon::{Daemon, Webhook};
use crate::support::gitlab::{Gitlab, desired_state};
use crate::support::text;

fn config(drift: &str, gate: &str) -> String {
    format!("gitlab: {{url: http://gitlab.invalid, drift: {drift}{gate}}}\n")
}

/// The fixture's desired state with a GitLab drift policy (and gate).
fn world(drift: &str, gate: &str) -> (Gitlab, tempfile::TempDir) {
    let gitlab = Gitlab::start();
    let dir = desired_state(&[
        ("reconcile.yaml", &config(drift, gate)),
        ("gitlab.yaml", &fixture(false)),
    ]);
    (gitlab, dir)
}

/// Applies the fixture (ungated) so that live state matches.
fn converge(gitlab: &Gitlab, dir: &Path) {
    let out = gitlab.reconcile(dir, &["apply", "--auto-approve"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A daemon that reads everything every cycle (`--sweep-period 0s`), as these tests of what it
/// does with a difference expect; [`watched`] tests what it reads.
fn daemon(gitlab: &Gitlab, dir: &Path, interval: &str, env: &[(&str, String)]) -> Daemon {
    let cmd = gitlab.command(
        dir,
        &[
            "daemon",
            "--interval",
            interval,
            "--listen",
            "127.0.0.1:0",
            "--sweep-period",
            "0s",
        ],
        env,
    );
    Daemon::start(cmd)
}

/// A daemon with incremental observation: a sweep period, and GitLab's system hook if `hooks`.
fn watched(gitlab: &Gitlab, dir: &Path, sweep: &str, hooks: bool) -> Daemon {
    let env = if hooks {
        vec![("RECONCILE_HOOK_TOKEN", HOOK_TOKEN.to_string())]
    } else {
        vec![]
    };
    let cmd = gitlab.command(
        dir,
        &[
            "daemon",
            "--interval",
            "300ms",
            "--listen",
            "127.0.0.1:0",
            "--sweep-period",
            sweep,
        ],
        &env,
    );
    Daemon::start(cmd)
}

const HOOK_TOKEN: &str = "hook-token-for-tests";

fn variable(gitlab: &Gitlab) -> String {
    let (_, v) = gitlab.api("GET", "projects/root%2Fapp/variables/REGION", None);
    v["value"].as_str().unwrap_or_default().to_string()
}

fn set_variable(gitlab: &Gitlab, value: &str) {
    let (status, _) = gitlab.api(
        "PUT",
        "projects/root%2Fapp/variables/REGION",
        Some(json!({ "value": value })),
    );
    assert_eq!(status, 200);
}

/// Between sweeps a no-change cycle sends preflight and the two inventory requests only. A
/// variable changed live is seen by neither the inventory nor a hook: with a sweep period of an
/// hour it stays (the documented bound). A project setting changed live is found by the
/// inventory and corrected, and the project is read whole (the variable too). A member changed
/// live is found through GitLab's system hook. A daemon sweeping every 2 s corrects a variable
/// (positive control of the sweep).
#[test]
fn between_sweeps_a_cycle_reads_only_what_may_have_changed() {
    let (gitlab, dir) = world("correct", "");
    converge(&gitlab, dir.path());
    let d = watched(&gitlab, dir.path(), "1h", false);
    d.wait_cycles(2);
    gitlab.reset_counters();
    d.wait_cycles(3);
    let counters = gitlab.counters();
    let routes: Vec<&str> = counters.by_route.keys().map(String::as_str).collect();
    assert_eq!(
        routes,
        [
            "GET /api/v4/personal_access_tokens/self",
            "GET /api/v4/projects",
            "GET /api/v4/user",
            "GET /api/v4/users",
            "GET /api/v4/version",
        ],
        "only preflight and the inventory:\n{}",
        d.log()
    );
    for (route, n) in &counters.by_route {
        assert!((2..=5).contains(n), "{route}: {n} in about 3 cycles");
    }

    set_variable(&gitlab, "eu-west-1");
    d.wait_cycles(3);
    assert_eq!(variable(&gitlab), "eu-west-1", "not seen before the sweep");
    let (status, _) = gitlab.api(
        "PUT",
        "projects/root%2Fapp",
        Some(json!({"description": "changed live"})),
    );
    assert_eq!(status, 200);
    d.wait(
        "the inventory finds the project",
        Duration::from_secs(20),
        |_| gitlab.api("GET", "projects/root%2Fapp", None).1["description"] == "The app",
    );
    assert_eq!(variable(&gitlab), "us-east-1", "the project was read whole");
    drop(d);

    let d = watched(&gitlab, dir.path(), "1h", true);
    d.wait_cycles(2);
    let (_, hooks) = gitlab.api("GET", "hooks", None);
    assert_eq!(
        hooks.as_array().map(Vec::len),
        Some(1),
        "{hooks}\n{}",
        d.log()
    );
    let (_, dev2) = gitlab.api("GET", "users?username=dev2", None);
    let dev2 = dev2[0]["id"].as_u64().unwrap();
    let (status, _) = gitlab.api(
        "PUT",
        &format!("projects/root%2Fapp/members/{dev2}"),
        Some(json!({"access_level": 40})),
    );
    assert_eq!(status, 200);
    d.wait(
        "the hook names the member's project",
        Duration::from_secs(20),
        |_| {
            gitlab
                .api("GET", &format!("projects/root%2Fapp/members/{dev2}"), None)
                .1["access_level"]
                == 20
        },
    );
    assert!(d.log().contains("GitLab system hook"), "{}", d.log());
    drop(d);

    let d = watched(&gitlab, dir.path(), "2s", false);
    d.wait_cycles(2);
    set_variable(&gitlab, "eu-west-1");
    d.wait(
        "the sweep corrects the variable",
        Duration::from_secs(20),
        |_| variable(&gitlab) == "us-east-1",
    );
}

/// The hook endpoint takes GitLab's token only; without a token configured it is off.
#[test]
fn the_system_hook_endpoint_checks_its_token() {
    let (gitlab, dir) = world("report", "");
    converge(&gitlab, dir.path());
    let d = watched(&gitlab, dir.path(), "1h", true);
    d.wait_cycles(1);
    let event = r#"{"event_name":"project_update","path_with_namespace":"root/app"}"#;
    assert_eq!(d.hook(event, None), 401);
    assert_eq!(d.hook(event, Some("wrong")), 401);
    assert_eq!(
        d.hook(event, Some(HOOK_TOKEN)),
        200,
        "the right token is accepted"
    );
    drop(d);
    let d = daemon(&gitlab, dir.path(), "1h", &[]);
    d.wait_cycles(1);
    assert_eq!(
        d.hook(event, Some(HOOK_TOKEN)),
        404,
        "no hook token, no hook endpoint"
    );
}

fn force_push(gitlab: &Gitlab) -> bool {
    let (_, b) = gitlab.api("GET", "projects/root%2Fapp/protected_branches/main", None);
    b["allow_force_push"].as_bool().unwrap()
}

fn set_force_push(gitlab: &Gitlab) {
    let (status, _) = gitlab.api(
        "PATCH",
        "projects/root%2Fapp/protected_branches/main",
        Some(json!({"allow_force_push": true})),
    );
    assert_eq!(status, 200);
    assert!(force_push(gitlab));
}

fn assert_no_changes(gitlab: &Gitlab, dir: &Path) {
    let out = gitlab.reconcile(dir, &["plan"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn correct_policy_fixes_drift_within_two_cycles_and_counts_it() {
    let (gitlab, dir) = world("correct", "");
    converge(&gitlab, dir.path());
    let hook = Webhook::start(1); // the first delivery fails: retried
    let d = daemon(
        &gitlab,
        dir.path(),
        "300ms",
        &[("RECONCILE_WEBHOOK_URL", hook.url.clone())],
    );
    d.wait_cycles(1);
    assert_eq!(
        d.get_json("/readyz").1["last_cycle"]["outcome"],
        "converged"
    );
    set_force_push(&gitlab);
    gitlab.api("DELETE", "projects/root%2Fapp/variables/REGION", None);
    d.wait_cycles(2);
    assert!(
        !force_push(&gitlab),
        "force push was not turned off again:\n{}",
        d.log()
    );
    let (status, _) = gitlab.api("GET", "projects/root%2Fapp/variables/REGION", None);
    assert_eq!(status, 200, "the deleted variable was not created again");
    let message = hook.wait_for("drift corrected", Duration::from_secs(20));
    assert!(
        message.contains("gitlab.protected_branch/root/app/main (update: allow_force_push)"),
        "{message}"
    );
    assert!(
        message.contains("gitlab.variable/root/app/REGION@*"),
        "{message}"
    );
    assert!(
        !message.contains("us-east-1"),
        "values are never notified: {message}"
    );
    // Metrics count what happened.
    let corrected = |kind| {
        d.metric(
            "reconcile_drift_corrected_total",
            &[("kind", kind), ("env", "gitlab")],
        )
    };
    assert_eq!(corrected("gitlab.protected_branch"), 1.0);
    assert_eq!(corrected("gitlab.variable"), 1.0);
    assert!(
        d.metric(
            "reconcile_drift_found_total",
            &[("kind", "gitlab.protected_branch")]
        ) >= 1.0
    );
    assert!(d.metric("reconcile_cycles_total", &[("outcome", "converged")]) >= 1.0);
    assert_eq!(
        d.metric("reconcile_cycles_total", &[("outcome", "corrected")]),
        1.0
    );
    assert_eq!(
        d.metric("reconcile_apply_steps_total", &[("outcome", "applied")]),
        2.0
    );
    assert!(d.metric("reconcile_api_requests_total", &[("provider", "gitlab")]) > 10.0);
    assert!(d.metric("reconcile_last_success_timestamp_seconds", &[]) > 1.7e9);
    assert_eq!(
        d.metric("reconcile_notifications_total", &[("outcome", "sent")]),
        1.0
    );
    let (status, body) = d.request("GET", "/healthz", None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_no_changes(&gitlab, dir.path());
}

#[test]
fn hold_policy_waits_for_an_http_approval_and_refuses_wrong_tokens() {
    let gate = ", approval: {required: 1, approvers: [alice]}";
    let (gitlab, dir) = world("hold", gate);
    let alice = gitlab.person("alice", false);
    let bob = gitlab.person("bob", false);
    let hook = Webhook::start(0);
    let env = [("RECONCILE_WEBHOOK_URL", hook.url.clone())];
    // --once: the plan (create everything) is held, exit 2, nothing written.
    let once = gitlab.reconcile(dir.path(), &["daemon", "--once"], &env);
    assert_eq!(once.status.code(), Some(2), "{}", text(&once.stderr));
    let held = dir.path().join(".reconcile/held/gitlab.plan.json");
    assert!(held.is_file());
    let message = hook.wait_for("plan held for approval", Duration::from_secs(10));
    assert!(
        message.contains("in gitlab (1 approval(s) needed by one of alice)"),
        "{message}"
    );
    assert!(message.contains("Plan: 9 to create"), "{message}");
    let (_, users) = gitlab.api("GET", "users?username=dev1", None);
    assert_eq!(users, json!([]));

    let d = daemon(&gitlab, dir.path(), "300ms", &env);
    d.wait_cycles(2);
    let (status, plans) = d.get_json("/api/plans");
    assert_eq!(status, 200);
    let plans = plans.as_array().unwrap().clone();
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert_eq!(plans[0]["scope"], "gitlab");
    assert_eq!(
        plans[0]["summary"],
        "Plan: 9 to create, 0 to update, 0 to replace, 0 to delete."
    );
    let hash = plans[0]["hash"].as_str().unwrap().to_string();
    let once_hash = reconcile::plan::Plan::from_file(&std::fs::read_to_string(&held).unwrap())
        .unwrap()
        .hash;
    assert_eq!(hash, once_hash, "the same held plan is kept across cycles");
    assert_eq!(
        hook.messages()
            .iter()
            .filter(|m| m.contains("plan held"))
            .count(),
        1,
        "held plans are notified once"
    );
    let (status, rendered) = d.request("GET", &format!("/api/plans/{hash}"), None);
    assert_eq!(status, 200);
    assert!(rendered.contains("+ gitlab.project/root/app"), "{rendered}");

    let approve = format!("/api/plans/{hash}/approve");
    assert_eq!(d.request("POST", &approve, None).0, 401);
    // Authentication comes before the body is read: malformed or huge, still 401.
    let junk = Some(b"{not json".to_vec());
    assert_eq!(d.request_with("POST", &approve, None, junk.clone()).0, 401);
    let huge = Some(vec![b' '; 5 << 20]);
    assert_eq!(
        d.request_with("POST", &approve, Some("glpat-nope"), huge).0,
        401
    );
    let (status, body) = d.request_with("POST", &approve, Some(&alice.token), junk);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        d.request("POST", &approve, Some("glpat-not-a-token")).0,
        401
    );
    let (status, body) = d.request("POST", &approve, Some(&bob.token));
    assert_eq!(status, 403, "bob is not an approver: {body}");
    assert!(
        body.contains("`bob` is not an approver of gitlab"),
        "{body}"
    );
    assert_eq!(
        d.request("POST", "/api/plans/0000/approve", Some(&alice.token))
            .0,
        404
    );
    d.wait_cycles(1);
    let (_, users) = gitlab.api("GET", "users?username=dev1", None);
    assert_eq!(users, json!([]), "nothing applied without a valid approval");

    let (status, body) = d.request("POST", &approve, Some(&alice.token));
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["complete"], true);
    assert_eq!(body["approved_by"], "alice");
    d.wait(
        "the approved plan to be applied",
        Duration::from_secs(30),
        |_| d.get_json("/api/plans").1 == json!([]),
    );
    let (_, users) = gitlab.api("GET", "users?username=dev1", None);
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_no_changes(&gitlab, dir.path());
    let applied = hook.wait_for("approved plan", Duration::from_secs(10));
    assert!(
        applied.contains(&format!(
            "approved plan {hash} for gitlab applied (9 change(s))"
        )),
        "{applied}"
    );
    let audit = std::fs::read_to_string(dir.path().join(".reconcile/audit.jsonl")).unwrap();
    assert!(
        audit.contains(r#""event":"approve","by":"alice""#),
        "{audit}"
    );
    assert!(
        !audit.contains(&alice.token),
        "tokens never reach the audit log"
    );
    assert!(!d.log().contains(&alice.token), "tokens are never logged");
    let approvals = std::fs::read_to_string(dir.path().join(".reconcile/audit.jsonl")).unwrap();
    assert!(
        approvals.contains("GitLab sign-in on the daemon"),
        "{approvals}"
    );
}

#[test]
fn report_policy_changes_nothing_and_notifies() {
    let (gitlab, dir) = world("report", "");
    converge(&gitlab, dir.path());
    set_force_push(&gitlab);
    let hook = Webhook::start(0);
    let env = [("RECONCILE_WEBHOOK_URL", hook.url.clone())];
    let writes_before = writes(&gitlab);
    for _ in 0..2 {
        let once = gitlab.reconcile(dir.path(), &["daemon", "--once"], &env);
        assert_eq!(once.status.code(), Some(0), "{}", text(&once.stderr));
    }
    assert!(force_push(&gitlab), "report must not correct");
    assert_eq!(writes(&gitlab), writes_before, "report writes nothing");
    let message = hook.wait_for("drift in gitlab", Duration::from_secs(10));
    assert!(
        message.contains("policy `report`, nothing changed"),
        "{message}"
    );
    assert!(
        message.contains("gitlab.protected_branch/root/app/main (update: allow_force_push)"),
        "{message}"
    );
}

#[test]
fn sigterm_during_an_apply_finishes_the_step_and_the_next_run_converges() {
    let (gitlab, dir) = world("correct", "");
    gitlab.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let mut d = daemon(&gitlab, dir.path(), "1h", &[]);
    let start = std::time::Instant::now();
    while !d.log().contains("Applied") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no step applied:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = d.terminate();
    let log = d.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(
        log.contains("not started: shutdown requested"),
        "the rest was skipped: {log}"
    );
    assert!(
        !dir.path().join(".reconcile/lock").exists(),
        "the lock is released"
    );
    gitlab.clear_faults();
    let once = gitlab.reconcile(dir.path(), &["daemon", "--once"], &[]);
    assert_eq!(once.status.code(), Some(0), "{}", text(&once.stderr));
    assert_no_changes(&gitlab, dir.path());
    let (_, users) = gitlab.api("GET", "users?username=dev1", None);
    assert_eq!(users.as_array().unwrap().len(), 1, "no duplicate");
    let (_, vars) = gitlab.api("GET", "projects/root%2Fapp/variables", None);
    assert_eq!(vars.as_array().unwrap().len(), 3);
}

#[test]
fn failing_gitlab_is_backed_off_from_and_recovery_is_noticed() {
    let (gitlab, dir) = world("correct", "");
    converge(&gitlab, dir.path());
    gitlab.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let hook = Webhook::start(0);
    let d = daemon(
        &gitlab,
        dir.path(),
        "200ms",
        &[("RECONCILE_WEBHOOK_URL", hook.url.clone())],
    );
    let failing = d.wait("three failed cycles", Duration::from_secs(60), |r| {
        r["consecutive_failures"].as_u64().unwrap_or(0) >= 3
    });
    // 200 ms doubled per failure: at least 1.6 s (minus jitter) after three.
    let next = failing["next_cycle_in_seconds"].as_f64().unwrap();
    assert!(next >= 1.4, "no backoff: {failing}");
    assert_eq!(failing["last_cycle"]["outcome"], "failed");
    let (status, _) = d.request("GET", "/readyz", None);
    assert_eq!(status, 503, "unready after three failed cycles");
    let unhealthy = hook.wait_for("unhealthy", Duration::from_secs(10));
    assert!(
        unhealthy.contains("3 cycles failed in a row"),
        "{unhealthy}"
    );
    assert!(d.metric("reconcile_api_errors_total", &[("provider", "gitlab")]) > 3.0);
    assert!(d.metric("reconcile_cycles_total", &[("outcome", "failed")]) >= 3.0);
    gitlab.clear_faults();
    set_force_push(&gitlab);
    d.wait("recovery", Duration::from_secs(60), |r| {
        r["consecutive_failures"] == 0 && r["last_cycle"]["outcome"] == "converged"
    });
    assert!(!force_push(&gitlab));
    assert_eq!(d.request("GET", "/readyz", None).0, 200, "ready again");
    hook.wait_for("recovered", Duration::from_secs(10));
}

#[test]
fn invalid_desired_state_fails_the_cycle_and_writes_nothing() {
    let (gitlab, dir) = world("correct", "");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "users:\n  - {username: x, nmae: X}\n",
    )
    .unwrap();
    let once = gitlab.reconcile(dir.path(), &["daemon", "--once"], &[]);
    assert_eq!(once.status.code(), Some(1));
    let stderr = text(&once.stderr);
    assert!(stderr.contains("bad.yaml:2:"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(writes(&gitlab), 0);
}

/// The example over moto: staging (`correct`) is put back at once, production (`hold`) gets a
/// held plan and is not touched; exit 2.
#[test]
fn example_staging_is_corrected_and_production_held() {
    use crate::support::aws::{Workspace, example_seed, service, set_desired_count};
    use crate::support::moto::Moto;
    let moto = Moto::start();
    example_seed(&moto);
    let gitlab = Gitlab::start();
    let ws = Workspace::example();
    let run = |args: &[&str]| ws.reconcile(args, &gitlab.url(), &moto);
    // Production is promoted from staging: staging first.
    for scope in ["gitlab", "staging", "production"] {
        let out = run(&["apply", "--auto-approve", "--env", scope]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let staging = (
        "cloud-design-cluster-staging",
        "billing-app-service-staging",
    );
    let production = (
        "cloud-design-cluster-prod",
        "billing-app-service-production",
    );
    set_desired_count(&moto, staging.0, staging.1, 3);
    set_desired_count(&moto, production.0, production.1, 5);
    let once = run(&["daemon", "--once"]);
    assert_eq!(once.status.code(), Some(2), "{}", text(&once.stderr));
    assert_eq!(
        service(&moto, staging.0, staging.1).unwrap().1,
        1,
        "staging corrected"
    );
    assert_eq!(
        service(&moto, production.0, production.1).unwrap().1,
        5,
        "production untouched"
    );
    let held =
        std::fs::read_to_string(ws.dir().join(".reconcile/held/production.plan.json")).unwrap();
    let plan = reconcile::plan::Plan::from_file(&held).unwrap().plan;
    let steps: Vec<String> = plan
        .steps
        .iter()
        .map(|s| format!("{} {}", s.address, s.changed_fields()))
        .collect();
    assert_eq!(
        steps,
        ["aws.ecs_service/production/billing-app desired_count"]
    );
    assert!(!ws.dir().join(".reconcile/held/staging.plan.json").exists());
    for secret in crate::support::aws::SECRET_VALUES {
        assert!(
            !text(&once.stderr).contains(secret) && !held.contains(secret),
            "secret leaked"
        );
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

/// `--git URL --branch B`: the desired state is fetched each cycle, a pushed change starts a
/// cycle without waiting for the interval, and the plan records the commit.
#[test]
fn git_source_is_fetched_and_a_push_starts_a_cycle() {
    let gitlab = Gitlab::start();
    let tmp = tempfile::tempdir().unwrap();
    let remote = tmp.path().join("remote.git");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("desired")).unwrap();
    git(
        tmp.path(),
        &[
            "init",
            "--quiet",
            "--bare",
            "-b",
            "main",
            remote.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join("desired/reconcile.yaml"), config("correct", "")).unwrap();
    std::fs::write(work.join("desired/gitlab.yaml"), fixture(false)).unwrap();
    git(&work, &["init", "--quiet", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "desired state"]);
    git(
        &work,
        &["push", "--quiet", remote.to_str().unwrap(), "main"],
    );
    let url = format!("file://{}", remote.display());
    let state = tmp.path().join("state");
    let cmd = gitlab.base_command(
        &[
            "daemon",
            "--git",
            &url,
            "--branch",
            "main",
            "--subdir",
            "desired",
            "--interval",
            "1h",
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("RECONCILE_STATE_DIR", state.display().to_string()),
            ("RECONCILE_PROBE_INTERVAL", "100ms".into()),
        ],
    );
    let d = Daemon::start(cmd);
    let first = d.wait_cycles(1);
    assert_eq!(first["last_cycle"]["outcome"], "corrected", "{first}");
    assert!(
        first["last_cycle"]["revision"]
            .as_str()
            .unwrap()
            .starts_with("git:"),
        "{first}"
    );
    let (_, project) = gitlab.api("GET", "projects/root%2Fapp", None);
    assert_eq!(project["description"], "The app");

    let spec = work.join("desired/gitlab.yaml");
    let text_now = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text_now.replace("description: The app", "description: The new app"),
    )
    .unwrap();
    git(&work, &["commit", "--quiet", "-am", "new description"]);
    git(
        &work,
        &["push", "--quiet", remote.to_str().unwrap(), "main"],
    );
    // The interval is an hour: only the push can start this cycle.
    let second = d.wait_cycles(1);
    assert_eq!(second["last_cycle"]["outcome"], "corrected", "{second}");
    assert_ne!(
        second["last_cycle"]["revision"],
        first["last_cycle"]["revision"]
    );
    let (_, project) = gitlab.api("GET", "projects/root%2Fapp", None);
    assert_eq!(project["description"], "The new app");
    assert!(d.log().contains("Desired state changed"), "{}", d.log());
}

/// A held plan survives a cycle that cannot read GitLab (a failed read is not "no change
/// needed"), keeps its approval (given with the CLI), and is applied once GitLab answers.
#[test]
fn held_plan_and_its_approval_survive_an_unreadable_cycle() {
    let (gitlab, dir) = world("hold", ", approval: {required: 1, approvers: [alice]}");
    let alice = gitlab.person("alice", false);
    let once = |code: i32| {
        let out = gitlab.reconcile(dir.path(), &["daemon", "--once"], &[]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    };
    once(2);
    let held = dir.path().join(".reconcile/held/gitlab.plan.json");
    let before = std::fs::read_to_string(&held).unwrap();
    let approve = gitlab.reconcile(
        dir.path(),
        &[
            "approve",
            held.to_str().unwrap(),
            "--sign",
            alice.key.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve.stderr));
    gitlab.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    once(1);
    assert_eq!(
        std::fs::read_to_string(&held).unwrap(),
        before,
        "held plan kept"
    );
    assert!(
        dir.path()
            .join(".reconcile/held/gitlab.plan.json.approvals.json")
            .is_file()
    );
    gitlab.clear_faults();
    once(0);
    assert!(!held.exists(), "applied and done");
    assert_no_changes(&gitlab, dir.path());
}

/// The audit's case: `gitlab` gated (1 approval) with drift `correct`. A merged change of the
/// desired state that nobody approved (here pruning every member) is held, not applied; drift
/// from the approved desired state is corrected without asking.
#[test]
fn a_gated_correct_scope_corrects_drift_but_holds_unapproved_changes() {
    let (gitlab, dir) = world("correct", ", approval: {required: 1, approvers: [alice]}");
    let alice = gitlab.person("alice", false);
    let once = |code: i32| {
        gitlab.reset_counters();
        let out = gitlab.reconcile(dir.path(), &["daemon", "--once"], &[]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    // Nothing approved yet: the whole desired state is held.
    let log = once(2);
    assert_eq!(writes(&gitlab), 0, "{log}");
    let held = dir.path().join(".reconcile/held/gitlab.plan.json");
    let approve = gitlab.reconcile(
        dir.path(),
        &[
            "approve",
            held.to_str().unwrap(),
            "--sign",
            alice.key.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve.stderr));
    once(0);
    assert!(!held.exists(), "approved, applied, recorded");
    assert_no_changes(&gitlab, dir.path());

    // Drift from the approved desired state: corrected, no approval asked.
    set_force_push(&gitlab);
    once(0);
    assert!(!force_push(&gitlab), "drift corrected");

    // An unapproved merge that prunes every member: held, nothing deleted.
    let pruned = fixture(true).replace(
        "      items:\n        - {user: dev1, access: developer}\n        - {user: dev2, access: reporter}\n",
        "      items: []\n",
    );
    std::fs::write(dir.path().join("gitlab.yaml"), pruned).unwrap();
    once(2);
    assert_eq!(writes(&gitlab), 0);
    let (_, members) = gitlab.api("GET", "projects/root%2Fapp/members", None);
    assert!(members.to_string().contains("dev1"), "{members}");
    // Drift meanwhile is not corrected either: the scope's desired state is not approved.
    set_force_push(&gitlab);
    once(2);
    assert!(force_push(&gitlab), "held with the unapproved change");
}
