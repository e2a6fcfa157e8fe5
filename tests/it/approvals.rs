//! Approval checkpoints, stale plans, the lock and the journal, over the GitLab emulator.

use std::time::Duration;

use crate::gitlab_plan::fixture;
use crate::support::gitlab::{Gitlab, desired_state};
use crate::support::{assert_golden, text};

const GATED: &str = "gitlab:\n  url: http://gitlab.invalid\n  approval: {required: 2, approvers: [alice, bob, carol]}\n";

struct Gated {
    gitlab: Gitlab,
    dir: tempfile::TempDir,
}

impl Gated {
    fn new(config: &str) -> Self {
        Self {
            gitlab: Gitlab::start(),
            dir: desired_state(&[("reconcile.yaml", config), ("gitlab.yaml", &fixture(false))]),
        }
    }

    fn plan_file(&self) -> String {
        self.dir
            .path()
            .join("plan.json")
            .to_str()
            .unwrap()
            .to_string()
    }

    fn as_user(&self, user: &str, args: &[&str]) -> std::process::Output {
        self.gitlab.reconcile(
            self.dir.path(),
            args,
            &[("GITLAB_USER_LOGIN", user.to_string())],
        )
    }

    fn plan_as(&self, user: &str) {
        let out = self.as_user(user, &["plan", "--out", &self.plan_file()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    }

    fn approve(&self, user: &str) -> std::process::Output {
        self.as_user(user, &["approve", &self.plan_file()])
    }

    fn apply(&self) -> std::process::Output {
        self.gitlab.reset_counters();
        self.as_user("deployer", &["apply", &self.plan_file()])
    }

    fn writes(&self) -> u64 {
        self.gitlab
            .counters()
            .by_route
            .iter()
            .filter(|(r, _)| !r.starts_with("GET "))
            .map(|(_, n)| n)
            .sum()
    }

    /// Replaces the temporary directory in messages, for goldens.
    fn clean(&self, s: &str) -> String {
        s.replace(self.dir.path().to_str().unwrap(), "DIR")
    }
}

#[test]
fn two_approvals_by_approvers_other_than_the_author_are_needed() {
    let g = Gated::new(GATED);
    g.plan_as("alice");

    let refused = g.apply();
    assert_eq!(refused.status.code(), Some(1));
    assert_golden(
        "approvals/no-approval.txt",
        &g.clean(&text(&refused.stderr)),
    );
    assert_eq!(g.writes(), 0);

    let by_author = g.approve("alice");
    assert_eq!(by_author.status.code(), Some(1));
    assert_golden("approvals/self-approval.txt", &text(&by_author.stderr));

    let by_stranger = g.approve("mallory");
    assert_eq!(by_stranger.status.code(), Some(1));
    assert_golden("approvals/non-approver.txt", &text(&by_stranger.stderr));

    let bob = g.approve("bob");
    assert_eq!(bob.status.code(), Some(0), "{}", text(&bob.stderr));
    assert!(
        text(&bob.stdout)
            .contains("Still missing:\n  gitlab needs 2 approval(s) of this plan, has 1 (bob)")
    );
    let one = g.apply();
    assert_eq!(one.status.code(), Some(1));
    assert_golden("approvals/one-of-two.txt", &g.clean(&text(&one.stderr)));
    assert_eq!(g.writes(), 0);

    assert_eq!(g.approve("carol").status.code(), Some(0));
    let applied = g.apply();
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );

    let audit = std::fs::read_to_string(g.dir.path().join(".reconcile/audit.jsonl")).unwrap();
    let events: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            format!(
                "{} {} {}",
                v["event"].as_str().unwrap(),
                v["by"].as_str().unwrap(),
                v["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "plan alice written",
            "refuse deployer refused",
            "approve alice refused",
            "approve mallory refused",
            "approve bob approved",
            "refuse deployer refused",
            "approve carol approved",
            "apply deployer applied"
        ]
    );
}

#[test]
fn in_ci_the_approver_is_the_job_user() {
    let g = Gated::new(GATED);
    g.plan_as("alice");
    let out = g.as_user("bob", &["approve", &g.plan_file(), "--by", "carol"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: in GitLab CI the approver is the user who ran the job (`bob`), not `carol`\n"
    );
}

#[test]
fn a_plan_edited_after_approval_is_refused() {
    let g = Gated::new(GATED);
    g.plan_as("alice");
    g.approve("bob");
    g.approve("carol");
    let path = g.plan_file();
    let text_before = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text_before.replace("\"developer\"", "\"maintainer\""),
    )
    .unwrap();
    let out = g.apply();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("plan file was edited"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(g.writes(), 0);
}

#[test]
fn approvals_of_another_plan_do_not_count() {
    let g = Gated::new(GATED);
    g.plan_as("alice");
    g.approve("bob");
    g.approve("carol");
    // A new plan (another author, another time): same file name, old approvals beside it.
    std::thread::sleep(Duration::from_millis(1100));
    g.plan_as("dave");
    let out = g.apply();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("gitlab needs 2 approval(s) of this plan, has 0 (none)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 approval(s) in the file are for another plan and do not count"),
        "{stderr}"
    );
}

#[test]
fn a_plan_older_than_max_age_is_refused() {
    let g = Gated::new("gitlab: {url: http://gitlab.invalid}\nplan: {max_age: 1h}\n");
    g.plan_as("alice");
    let path = g.plan_file();
    let mut plan = reconcile::plan::Plan::from_file(&std::fs::read_to_string(&path).unwrap())
        .unwrap()
        .plan;
    plan.created_at = "2026-01-01T00:00:00Z".into();
    std::fs::write(&path, plan.to_file(None)).unwrap();
    let out = g.apply();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("old, more than plan.max_age (1h)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(g.writes(), 0);
}

#[test]
fn auto_approve_cannot_bypass_a_gate() {
    let g = Gated::new(GATED);
    let out = g.as_user("alice", &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "error: --auto-approve cannot apply changes to gated scopes: gitlab (2 approval(s))"
        ),
        "{}",
        text(&out.stderr)
    );
}

/// A live change to a resource the plan touches stops the apply; one to a resource it does
/// not touch does not.
#[test]
fn staleness_is_per_step() {
    let g = Gated::new("gitlab: {url: http://gitlab.invalid}\n");
    assert_eq!(
        g.as_user("alice", &["apply", "--auto-approve"])
            .status
            .code(),
        Some(0)
    );
    // Drift on the branch; plan it.
    g.gitlab.api(
        "PATCH",
        "projects/root%2Fapp/protected_branches/main",
        Some(serde_json::json!({"allow_force_push": true})),
    );
    g.plan_as("alice");
    // Unrelated live change: the plan still applies.
    g.gitlab.api(
        "PUT",
        "projects/root%2Fapp",
        Some(serde_json::json!({"visibility": "internal"})),
    );
    let out = g.apply();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Drift planned, then the touched resource changes again before apply: refused.
    g.gitlab.api(
        "PATCH",
        "projects/root%2Fapp/protected_branches/main",
        Some(serde_json::json!({"allow_force_push": true})),
    );
    g.plan_as("alice");
    g.gitlab.api(
        "DELETE",
        "projects/root%2Fapp/protected_branches/main",
        None,
    );
    g.gitlab.api(
        "POST",
        "projects/root%2Fapp/protected_branches",
        Some(
            serde_json::json!({"name": "main", "push_access_level": 30, "merge_access_level": 30}),
        ),
    );
    let refused = g.apply();
    assert_eq!(refused.status.code(), Some(1));
    assert_golden("approvals/stale-step.txt", &g.clean(&text(&refused.stderr)));
    assert_eq!(g.writes(), 0);
}

#[test]
fn concurrent_applies_exactly_one_runs() {
    let g = Gated::new("gitlab: {url: http://gitlab.invalid}\n");
    g.gitlab.set_faults(gitlab_emulator::Faults {
        latency_ms: 150,
        ..Default::default()
    });
    let first = g
        .gitlab
        .command(g.dir.path(), &["apply", "--auto-approve"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first holds the lock.
    let lock = g.dir.path().join(".reconcile/lock");
    for _ in 0..200 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(lock.exists(), "the first apply takes the lock");
    let second = g
        .gitlab
        .reconcile(g.dir.path(), &["apply", "--auto-approve"], &[]);
    assert_eq!(second.status.code(), Some(1));
    let stderr = text(&second.stderr);
    assert!(
        stderr.starts_with("error: another apply is running: tester on "),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("(pid {})", first.id())),
        "{stderr}"
    );
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(!lock.exists(), "released");
}

/// `kill -9` at several points of an apply, then a converging run: no duplicate, the journal
/// reports the interrupted steps, the dead run's lock is reclaimed.
#[test]
fn kill_9_mid_apply_then_converge() {
    let mut interrupted_points = 0;
    for delay_ms in [150u64, 400, 800] {
        let g = Gated::new("gitlab: {url: http://gitlab.invalid}\n");
        g.gitlab.set_faults(gitlab_emulator::Faults {
            latency_ms: 60,
            ..Default::default()
        });
        let mut child = g
            .gitlab
            .command(g.dir.path(), &["apply", "--auto-approve"], &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        g.gitlab.clear_faults();
        let journal = std::fs::read_to_string(g.dir.path().join(".reconcile/journal.jsonl"))
            .unwrap_or_default();
        let started = journal.lines().filter(|l| l.contains("\"intent\"")).count();
        let finished = journal
            .lines()
            .filter(|l| !l.contains("\"intent\""))
            .count();
        let dead_lock = g.dir.path().join(".reconcile/lock").exists();
        let again = g
            .gitlab
            .reconcile(g.dir.path(), &["apply", "--auto-approve"], &[]);
        let stderr = text(&again.stderr);
        assert_eq!(
            again.status.code(),
            Some(0),
            "delay {delay_ms}: {}{stderr}",
            text(&again.stdout)
        );
        if started > finished {
            assert!(
                stderr.contains("An earlier apply was interrupted"),
                "delay {delay_ms}: {stderr}"
            );
        }
        if dead_lock {
            assert!(
                stderr.contains("warning: reclaimed the lock of an apply that is gone: tester on "),
                "delay {delay_ms}: {stderr}"
            );
        }
        interrupted_points += usize::from(started > finished);
        assert_eq!(
            g.gitlab
                .reconcile(g.dir.path(), &["plan"], &[])
                .status
                .code(),
            Some(0)
        );
        let (_, users) = g.gitlab.api("GET", "users?per_page=100", None);
        assert_eq!(
            users.as_array().unwrap().len(),
            3,
            "delay {delay_ms}: no duplicate user"
        );
        let (_, vars) = g
            .gitlab
            .api("GET", "projects/root%2Fapp/variables?per_page=100", None);
        assert_eq!(
            vars.as_array().unwrap().len(),
            3,
            "delay {delay_ms}: no duplicate variable"
        );
    }
    assert!(
        interrupted_points >= 1,
        "at least one kill landed between a step's intent and its result"
    );
}
