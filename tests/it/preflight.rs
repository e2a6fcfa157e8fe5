//! Preflight: a wrong URL or a weak token is one clear line before anything is read or written
//! (the audit saw "Plan: 1200 to create" from `GITLAB_URL=…/api/v4` and "1680 to create" from a
//! non-admin token), each with its positive control.

use crate::gitlab_plan::{fixture, writes};
use crate::support::gitlab::{Gitlab, desired_state};
use crate::support::{assert_golden, text};

const CONFIG: &str = "gitlab: {url: http://gitlab.invalid}\n";

fn world() -> (Gitlab, tempfile::TempDir) {
    let gitlab = Gitlab::start();
    let dir = desired_state(&[("reconcile.yaml", CONFIG), ("gitlab.yaml", &fixture(false))]);
    (gitlab, dir)
}

/// Exit 1, the cause said once (the daemon logs it as its cycle's error), no plan, no write,
/// and at most a handful of requests.
fn one_line_refusal(gitlab: &Gitlab, out: &std::process::Output, want: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(want), "{stderr}");
    assert_eq!(stderr.matches(want).count(), 1, "{stderr}");
    assert!(stderr.lines().count() <= 2, "{stderr}");
    assert!(
        !text(&out.stdout).contains("to create"),
        "no plan is printed"
    );
    assert_eq!(writes(gitlab), 0);
    assert!(gitlab.counters().total <= 3, "{:?}", gitlab.counters());
}

#[test]
fn a_url_ending_in_api_v4_is_named() {
    let (gitlab, dir) = world();
    let wrong = format!("{}/api/v4", gitlab.url());
    for args in [
        &["plan"][..],
        &["apply", "--auto-approve"],
        &["daemon", "--once"],
    ] {
        gitlab.reset_counters();
        let out = gitlab.reconcile(dir.path(), args, &[("GITLAB_URL", wrong.clone())]);
        one_line_refusal(&gitlab, &out, "ends in /api/v4");
        if args == ["plan"] {
            let clean = text(&out.stderr).replace(&gitlab.url(), "GITLAB");
            assert_golden("preflight/api-v4.txt", &clean);
        }
        assert!(text(&out.stderr).contains(&format!("e.g. `{}`", gitlab.url())));
    }
    // Positive control: the base URL plans.
    let out = gitlab.reconcile(dir.path(), &["plan"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn an_unreachable_server_is_one_line() {
    let (gitlab, dir) = world();
    let out = gitlab.reconcile(
        dir.path(),
        &["plan"],
        &[("GITLAB_URL", "http://127.0.0.1:9".to_string())],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot reach GitLab at http://127.0.0.1:9"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
}

#[test]
fn a_non_admin_or_revoked_token_cannot_plan() {
    let (gitlab, dir) = world();
    let bob = gitlab.person("bob", false);
    gitlab.reset_counters();
    let out = gitlab.reconcile(
        dir.path(),
        &["plan"],
        &[("GITLAB_TOKEN", bob.token.clone())],
    );
    one_line_refusal(
        &gitlab,
        &out,
        "belongs to `bob`, who is not a GitLab administrator",
    );
    assert_golden(
        "preflight/non-admin.txt",
        &text(&out.stderr).replace(&gitlab.url(), "GITLAB"),
    );

    let (status, _) = gitlab.api("GET", "version", None);
    assert_eq!(status, 200);
    let revoked = gitlab.token("root", &["api"]);
    let (status, _) = gitlab.api_as(&revoked, "DELETE", "personal_access_tokens/self", None);
    assert_eq!(status, 204);
    gitlab.reset_counters();
    let out = gitlab.reconcile(dir.path(), &["plan"], &[("GITLAB_TOKEN", revoked)]);
    one_line_refusal(
        &gitlab,
        &out,
        "rejected the token in GITLAB_TOKEN (401 Unauthorized)",
    );
}

#[test]
fn a_read_api_token_plans_but_cannot_apply() {
    let (gitlab, dir) = world();
    let read = gitlab.token("root", &["read_api"]);
    let env = [("GITLAB_TOKEN", read)];
    // Positive control: it plans.
    let out = gitlab.reconcile(dir.path(), &["plan"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    gitlab.reset_counters();
    let out = gitlab.reconcile(dir.path(), &["apply", "--auto-approve"], &env);
    one_line_refusal(&gitlab, &out, "writing needs the `api` scope");
    assert_golden(
        "preflight/read-api-apply.txt",
        &text(&out.stderr).replace(&gitlab.url(), "GITLAB"),
    );
    gitlab.reset_counters();
    let out = gitlab.reconcile(dir.path(), &["daemon", "--once"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("writing needs the `api` scope"));
    assert_eq!(writes(&gitlab), 0);
}
