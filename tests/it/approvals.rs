//! Approval checkpoints over the GitLab emulator, attacked as someone who can write the plan
//! and approvals files but is no approver: only proofs GitLab vouches for count (SSH keys
//! registered in a profile, CI jobs of the plan's pipeline); stale plans, edited plans and
//! mass deletions are refused with nothing written; the lock and the journal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;

use crate::gitlab_plan::fixture;
use crate::support::gitlab::{Gitlab, KEY, Person, desired_state, ssh_keygen};
use crate::support::{assert_golden, text};

const GATED: &str = "gitlab:\n  url: http://gitlab.invalid\n  approval: {required: 2, approvers: [alice, bob, carol]}\n";

struct Gated {
    gitlab: Gitlab,
    dir: tempfile::TempDir,
    /// An administrator (can plan); an approver.
    alice: Person,
    bob: Person,
    carol: Person,
    /// Can write to the repository and the approvals file; approves nothing.
    mallory: Person,
}

impl Gated {
    fn new(config: &str) -> Self {
        let gitlab = Gitlab::start();
        Self {
            alice: gitlab.person("alice", true),
            bob: gitlab.person("bob", false),
            carol: gitlab.person("carol", false),
            mallory: gitlab.person("mallory", false),
            gitlab,
            dir: desired_state(&[("reconcile.yaml", config), ("gitlab.yaml", &fixture(false))]),
        }
    }

    fn plan_file(&self) -> String {
        self.path("plan.json").to_str().unwrap().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `reconcile ARGS` as the owner of `GITLAB_TOKEN` in `env` (root by default), with the
    /// shared reconcile key.
    fn run(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut all = vec![("RECONCILE_FINGERPRINT_KEY", KEY.to_string())];
        all.extend(env.iter().cloned());
        self.gitlab.reconcile(self.dir.path(), args, &all)
    }

    fn plan_as(&self, who: &Person) {
        let out = self.run(&["plan", "--out", &self.plan_file()], &who.env());
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    }

    /// `reconcile approve --sign KEY` (GitLab asked with root's token who owns the key).
    fn approve(&self, who: &Person) -> Output {
        let key = who.key.to_str().unwrap();
        self.run(&["approve", &self.plan_file(), "--sign", key], &[])
    }

    fn apply(&self, extra: &[&str]) -> Output {
        self.gitlab.reset_counters();
        let mut args = vec!["apply", self.plan_file().leak() as &str];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    fn approvals(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("plan.json.approvals.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn write_approvals(&self, approvals: serde_json::Value) {
        std::fs::write(self.path("plan.json.approvals.json"), approvals.to_string()).unwrap();
    }

    fn hash(&self) -> String {
        let text = std::fs::read_to_string(self.plan_file()).unwrap();
        reconcile::plan::Plan::from_file(&text).unwrap().hash
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

    /// Replaces the temporary directory and the plan's hash in messages, for goldens.
    fn clean(&self, s: &str) -> String {
        let hash = self.hash();
        let mut s = s
            .replace(self.dir.path().to_str().unwrap(), "DIR")
            .replace(&hash, "HASH")
            .replace(&hash[..12], "HASH12");
        // Hashes of earlier plans (their time differs per run).
        let mut from = 0;
        while let Some(at) = s[from..].find("another plan (") {
            let start = from + at + "another plan (".len();
            s.replace_range(start..(start + 12).min(s.len()), "OTHER");
            from = start;
        }
        s
    }

    fn applied(&self, out: &Output) {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(self.writes() > 0);
    }

    fn refused(&self, out: &Output) -> String {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}{stderr}", text(&out.stdout));
        assert_eq!(self.writes(), 0, "a refused apply writes nothing: {stderr}");
        stderr
    }
}

/// `ssh-keygen -Y sign -n reconcile-plan` of `payload` with `key`, as an approver would on
/// their own machine; returns the signature file.
fn ssh_sign(key: &Path, payload: &[u8], env: &[(&str, String)]) -> PathBuf {
    let message = key.with_extension("payload");
    std::fs::write(&message, payload).unwrap();
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-Y", "sign", "-n", "reconcile-plan", "-f"])
        .arg(key)
        .arg(&message);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    message.with_extension("payload.sig")
}

#[test]
fn two_approvals_by_approvers_other_than_the_author_are_needed() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);

    let refused = g.apply(&[]);
    assert_golden("approvals/no-approval.txt", &g.clean(&g.refused(&refused)));

    let by_author = g.approve(&g.alice);
    assert_eq!(by_author.status.code(), Some(1));
    assert_golden("approvals/self-approval.txt", &text(&by_author.stderr));

    let by_stranger = g.approve(&g.mallory);
    assert_eq!(by_stranger.status.code(), Some(1));
    assert_golden("approvals/non-approver.txt", &text(&by_stranger.stderr));

    let bob = g.approve(&g.bob);
    assert_eq!(bob.status.code(), Some(0), "{}", text(&bob.stderr));
    assert!(
        text(&bob.stdout).contains("gitlab needs 2 approval(s) of this plan, has 1 (bob)"),
        "{}",
        text(&bob.stdout)
    );
    let one = g.apply(&[]);
    assert_golden("approvals/one-of-two.txt", &g.clean(&g.refused(&one)));

    assert_eq!(g.approve(&g.carol).status.code(), Some(0));
    let applied = g.apply(&[]);
    g.applied(&applied);
    assert!(
        text(&applied.stderr).contains("Approved by bob (GitLab user "),
        "{}",
        text(&applied.stderr)
    );

    let audit = std::fs::read_to_string(g.path(".reconcile/audit.jsonl")).unwrap();
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
            "refuse root refused",
            "approve alice refused",
            "approve mallory refused",
            "approve bob approved",
            "refuse root refused",
            "approve carol approved",
            "apply root applied"
        ]
    );
}

/// The audit's forged file: approvals naming two approvers, with no proof, with a signature
/// of another plan, with a junk signature. None counts; the real ones then do.
#[test]
fn a_hand_written_approvals_file_is_no_approval() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);
    let hash = g.hash();
    let approval = |by: &str, proof: serde_json::Value| json!({"plan_sha256": hash, "by": by, "at": "2026-12-04T00:00:00Z", "proof": proof});
    g.write_approvals(json!({"approvals": [
        {"plan_sha256": hash, "by": "bob", "at": "2026-12-04T00:00:00Z"},
        approval("carol", json!({"kind": "ssh", "signature": "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"})),
        approval("carol", json!({"kind": "gitlab_sign_in", "user_id": g.carol.id, "attestation": "00"})),
        approval("bob", json!({"kind": "ci_job", "project_id": 1, "job_id": 1})),
    ]}));
    let stderr = g.refused(&g.apply(&[]));
    assert_golden("approvals/forged-file.txt", &g.clean(&stderr));
    assert!(
        stderr.contains("gitlab needs 2 approval(s) of this plan, has 0 (none)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("approvals that do not count:\n  by bob: has no proof of identity"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "by carol: claims a GitLab sign-in on the daemon, but its attestation does not verify"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "by bob: was made in CI job 1, but the plan was not made in a GitLab CI pipeline"
        ),
        "{stderr}"
    );
    // A signature by bob's registered key, of another plan, under bob's name.
    let other = ssh_sign(
        &g.bob.key,
        b"reconcile plan approval\nplan: sha256:0000\noverride: no\n",
        &[],
    );
    let other = std::fs::read_to_string(other).unwrap();
    g.write_approvals(
        json!({"approvals": [approval("bob", json!({"kind": "ssh", "signature": other}))]}),
    );
    let stderr = g.refused(&g.apply(&[]));
    assert!(
        stderr.contains("by bob: the signature does not match"),
        "{stderr}"
    );

    // Positive control: the same two people, with their keys.
    std::fs::remove_file(g.path("plan.json.approvals.json")).unwrap();
    assert_eq!(g.approve(&g.bob).status.code(), Some(0));
    assert_eq!(g.approve(&g.carol).status.code(), Some(0));
    g.applied(&g.apply(&[]));
}

/// A key nobody registered, and a valid signature filed under another approver's name.
#[test]
fn a_signature_counts_only_for_the_user_who_registered_the_key() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);
    let keys = tempfile::tempdir().unwrap();
    let stray = ssh_keygen(keys.path(), "stray");
    let out = g.run(
        &[
            "approve",
            &g.plan_file(),
            "--sign",
            stray.to_str().unwrap(),
            "--by",
            "bob",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no GitLab user has registered the SSH key SHA256:"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !g.path("plan.json.approvals.json").exists(),
        "nothing recorded"
    );

    // Signed offline with ssh-keygen and filed by hand: the stray key as bob, carol's as bob.
    let payload = g.run(&["approve", &g.plan_file(), "--print-payload"], &[]);
    assert_eq!(payload.status.code(), Some(0));
    let stray_sig = std::fs::read_to_string(ssh_sign(&stray, &payload.stdout, &[])).unwrap();
    let carol_sig = std::fs::read_to_string(ssh_sign(&g.carol.key, &payload.stdout, &[])).unwrap();
    let hash = g.hash();
    g.write_approvals(json!({"approvals": [
        {"plan_sha256": hash, "by": "bob", "at": "2026-12-04T00:00:00Z", "proof": {"kind": "ssh", "signature": stray_sig}},
        {"plan_sha256": hash, "by": "bob", "at": "2026-12-04T00:00:00Z", "proof": {"kind": "ssh", "signature": carol_sig}},
    ]}));
    let stderr = g.refused(&g.apply(&[]));
    assert!(
        stderr.contains("which no GitLab user has registered"),
        "{stderr}"
    );
    assert!(
        stderr.contains("names `bob`, but its proof shows `carol`"),
        "{stderr}"
    );

    // Positive control: ssh-keygen signatures of bob and carol, recorded with --signature.
    std::fs::remove_file(g.path("plan.json.approvals.json")).unwrap();
    for who in [&g.bob, &g.carol] {
        let sig = ssh_sign(&who.key, &payload.stdout, &[]);
        let out = g.run(
            &[
                "approve",
                &g.plan_file(),
                "--signature",
                sig.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert_eq!(g.approvals()["approvals"][1]["by"], "carol");
    g.applied(&g.apply(&[]));
}

/// `--sign KEY.pub` signs through ssh-agent (the private key never leaves it).
#[test]
fn ssh_agent_signs_with_the_public_key_file() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);
    let agent_dir = tempfile::tempdir().unwrap();
    let socket = agent_dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sock = ("SSH_AUTH_SOCK", socket.display().to_string());
    for who in [&g.bob, &g.carol] {
        let add = Command::new("ssh-add")
            .arg(&who.key)
            .env(sock.0, &sock.1)
            .output()
            .unwrap();
        assert!(add.status.success(), "{}", text(&add.stderr));
        // Only the agent holds the private key now.
        let public = who.public_key();
        let out = g.run(
            &[
                "approve",
                &g.plan_file(),
                "--sign",
                public.to_str().unwrap(),
            ],
            std::slice::from_ref(&sock),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    g.applied(&g.apply(&[]));
}

/// Plan and approvals made in GitLab CI jobs: GitLab says who ran each job; only a successful
/// job of the plan's own pipeline whose log shows the approval counts.
#[test]
fn ci_job_approvals_count_only_from_the_plans_pipeline() {
    let config = "gitlab:\n  url: http://gitlab.invalid\n  approval: {required: 1, approvers: [bob, carol]}\n";
    let g = Gated::new(config);
    let (_, project) = g
        .gitlab
        .api("POST", "projects", Some(json!({"name": "desired-state"})));
    let project = project["id"].as_u64().unwrap();
    let job = |user: &str, pipeline: u64, name: &str| {
        g.gitlab.job(json!({"project": project, "user": user, "name": name, "stage": name, "pipeline_id": pipeline}))
    };
    let in_job =
        |job: &serde_json::Value| ("CI_JOB_TOKEN", job["token"].as_str().unwrap().to_string());
    let finish = |job: &serde_json::Value, out: &Output, status: &str| {
        let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
        g.gitlab.update_job(
            job["id"].as_u64().unwrap(),
            json!({"status": status, "trace": log}),
        );
    };

    let plan_job = job("alice", 700, "plan");
    let mut env = g.alice.env();
    env.push(in_job(&plan_job));
    let out = g.run(&["plan", "--out", &g.plan_file()], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("by alice (GitLab user"),
        "{}",
        text(&out.stderr)
    );
    finish(&plan_job, &out, "success");

    // A job of another pipeline cannot approve this plan.
    let elsewhere = job("bob", 701, "approve");
    let out = g.run(&["approve", &g.plan_file()], &[in_job(&elsewhere)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("approve it in the plan's pipeline"),
        "{}",
        text(&out.stderr)
    );

    // bob approves in the plan's pipeline, but the job fails afterwards: it does not count.
    let failed = job("bob", 700, "approve");
    let out = g.run(&["approve", &g.plan_file()], &[in_job(&failed)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = format!(
        "reconcile: job {} approved plan sha256:{}",
        failed["id"],
        g.hash()
    );
    assert!(text(&out.stdout).contains(&line), "{}", text(&out.stdout));
    finish(&failed, &out, "failed");
    let stderr = g.refused(&g.apply(&[]));
    assert!(
        stderr.contains("whose status is `failed`, not `success`"),
        "{stderr}"
    );

    // Positive control: carol's job succeeds.
    let ok = job("carol", 700, "approve");
    let out = g.run(&["approve", &g.plan_file()], &[in_job(&ok)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    finish(&ok, &out, "success");
    let applied = g.apply(&[]);
    g.applied(&applied);
    assert!(
        text(&applied.stderr).contains(&format!(
            "Approved by carol (GitLab user {}, GitLab CI job {})",
            g.carol.id, ok["id"]
        )),
        "{}",
        text(&applied.stderr)
    );
}

#[test]
fn a_plan_edited_after_approval_is_refused() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);
    g.approve(&g.bob);
    g.approve(&g.carol);
    let path = g.plan_file();
    let text_before = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text_before.replace("\"developer\"", "\"maintainer\""),
    )
    .unwrap();
    let stderr = g.refused(&g.apply(&[]));
    assert!(stderr.contains("plan file was edited"), "{stderr}");
}

#[test]
fn approvals_of_another_plan_do_not_count() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);
    g.approve(&g.bob);
    g.approve(&g.carol);
    // A new plan (another time): same file name, old approvals beside it.
    std::thread::sleep(Duration::from_millis(1100));
    g.plan_as(&g.alice);
    let stderr = g.refused(&g.apply(&[]));
    assert!(
        stderr.contains("gitlab needs 2 approval(s) of this plan, has 0 (none)"),
        "{stderr}"
    );
    assert!(stderr.contains("by bob: is for another plan"), "{stderr}");
}

#[test]
fn a_plan_older_than_max_age_is_refused() {
    let g = Gated::new("gitlab: {url: http://gitlab.invalid}\nplan: {max_age: 1h}\n");
    g.plan_as(&g.alice);
    let path = g.plan_file();
    let mut plan = reconcile::plan::Plan::from_file(&std::fs::read_to_string(&path).unwrap())
        .unwrap()
        .plan;
    plan.created_at = "2026-01-01T00:00:00Z".into();
    std::fs::write(&path, plan.to_file(None)).unwrap();
    let stderr = g.refused(&g.apply(&[]));
    assert!(
        stderr.contains("old, more than plan.max_age (1h)"),
        "{stderr}"
    );
}

#[test]
fn auto_approve_cannot_bypass_a_gate() {
    let g = Gated::new(GATED);
    g.gitlab.reset_counters();
    let out = g.run(&["apply", "--auto-approve"], &g.alice.env());
    let stderr = g.refused(&out);
    assert!(
        stderr.contains("gitlab needs 2 approval(s) of this plan, has 0 (none)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: --auto-approve applies only ungated scopes"),
        "{stderr}"
    );
}

/// A live change to a resource the plan touches stops the apply; one to a resource it does
/// not touch does not.
#[test]
fn staleness_is_per_step() {
    let g = Gated::new("gitlab: {url: http://gitlab.invalid}\n");
    g.applied(&g.run(&["apply", "--auto-approve"], &[]));
    // Drift on the branch; plan it.
    g.gitlab.api(
        "PATCH",
        "projects/root%2Fapp/protected_branches/main",
        Some(json!({"allow_force_push": true})),
    );
    g.plan_as(&g.alice);
    // Unrelated live change: the plan still applies.
    g.gitlab.api(
        "PUT",
        "projects/root%2Fapp",
        Some(json!({"visibility": "internal"})),
    );
    g.applied(&g.apply(&[]));

    // Drift planned, then the touched resource changes again before apply: refused.
    g.gitlab.api(
        "PATCH",
        "projects/root%2Fapp/protected_branches/main",
        Some(json!({"allow_force_push": true})),
    );
    g.plan_as(&g.alice);
    g.gitlab.api(
        "DELETE",
        "projects/root%2Fapp/protected_branches/main",
        None,
    );
    g.gitlab.api(
        "POST",
        "projects/root%2Fapp/protected_branches",
        Some(json!({"name": "main", "push_access_level": 30, "merge_access_level": 30})),
    );
    let refused = g.apply(&[]);
    assert_golden("approvals/stale-step.txt", &g.clean(&g.refused(&refused)));
}

/// The audit's case: a variable's `protected` flag flipped live after the plan was approved.
/// Apply used to write both fields; now it refuses and names the field.
#[test]
fn a_field_flipped_live_after_approval_is_refused() {
    let g = Gated::new("gitlab: {url: http://gitlab.invalid}\n");
    g.applied(&g.run(&["apply", "--auto-approve"], &[]));
    std::fs::write(g.path("reconcile.yaml"), GATED).unwrap();
    std::fs::write(
        g.path("gitlab.yaml"),
        fixture(false).replace("value: us-east-1", "value: us-east-2"),
    )
    .unwrap();
    g.plan_as(&g.alice);
    assert_eq!(g.approve(&g.bob).status.code(), Some(0));
    assert_eq!(g.approve(&g.carol).status.code(), Some(0));
    let (status, _) = g.gitlab.api(
        "PUT",
        "projects/root%2Fapp/variables/REGION",
        Some(json!({"protected": false})),
    );
    assert_eq!(status, 200);
    let stderr = g.refused(&g.apply(&[]));
    assert_golden("approvals/stale-field.txt", &g.clean(&stderr));
    assert!(
        stderr
            .contains("gitlab.variable/root/app/REGION@*: changed live since the plan: protected"),
        "{stderr}"
    );
    let (_, var) = g
        .gitlab
        .api("GET", "projects/root%2Fapp/variables/REGION", None);
    assert_eq!(var["value"], "us-east-1", "nothing written");

    // Positive control: planned again (the plan now restores `protected` too), approved, applied.
    g.plan_as(&g.alice);
    g.approve(&g.bob);
    g.approve(&g.carol);
    g.applied(&g.apply(&[]));
    let (_, var) = g
        .gitlab
        .api("GET", "projects/root%2Fapp/variables/REGION", None);
    assert_eq!(
        (var["value"].as_str(), var["protected"].as_bool()),
        (Some("us-east-2"), Some(true))
    );
}

/// More deletions than `plan.max_deletes` need `--allow-deletes` (and still their approvals).
#[test]
fn mass_deletion_needs_allow_deletes() {
    let g = Gated::new("gitlab: {url: http://gitlab.invalid}\nplan: {max_deletes: 1}\n");
    g.applied(&g.run(&["apply", "--auto-approve"], &[]));
    let pruned = fixture(true).replace(
        "      items:\n        - {user: dev1, access: developer}\n        - {user: dev2, access: reporter}\n",
        "      items: []\n",
    );
    std::fs::write(g.path("gitlab.yaml"), pruned).unwrap();
    g.gitlab.reset_counters();
    let auto = g.run(&["apply", "--auto-approve"], &[]);
    let stderr = g.refused(&auto);
    assert!(
        stderr.contains("more than plan.max_deletes (1)"),
        "{stderr}"
    );
    g.plan_as(&g.alice);
    let stderr = g.refused(&g.apply(&[]));
    assert_golden("approvals/too-many-deletes.txt", &g.clean(&stderr));
    assert!(stderr.contains("deletions (gitlab.member: "), "{stderr}");
    assert!(
        stderr.contains("apply again with `--allow-deletes`"),
        "{stderr}"
    );
    // Positive control: confirmed.
    g.applied(&g.apply(&["--allow-deletes"]));
    let (_, members) = g.gitlab.api("GET", "projects/root%2Fapp/members", None);
    assert!(!members.to_string().contains("dev1"), "{members}");
}

/// `reconcile.yaml` lowers the gate (1 approval by mallory): the change of the gate itself needs
/// the approvers of the gate in force, recorded with the last approved apply.
#[test]
fn a_lowered_gate_needs_the_approvers_of_the_gate_in_force() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);
    g.approve(&g.bob);
    g.approve(&g.carol);
    g.applied(&g.apply(&[]));

    std::fs::write(
        g.path("reconcile.yaml"),
        "gitlab:\n  url: http://gitlab.invalid\n  approval: {required: 1, approvers: [mallory]}\n",
    )
    .unwrap();
    std::fs::write(
        g.path("gitlab.yaml"),
        fixture(false).replace("description: The app", "description: Mallory was here"),
    )
    .unwrap();
    g.plan_as(&g.alice);
    assert_eq!(g.approve(&g.mallory).status.code(), Some(0));
    let stderr = g.refused(&g.apply(&[]));
    assert_golden("approvals/gate-in-force.txt", &g.clean(&stderr));
    assert!(
        stderr.contains("gitlab (under the gate in force, which reconcile.yaml changes) needs 2 approval(s) of this plan, has 0 (none)"),
        "{stderr}"
    );
    let (_, project) = g.gitlab.api("GET", "projects/root%2Fapp", None);
    assert_eq!(project["description"], "The app");
    // Positive control: the approvers of the gate in force agree.
    assert_eq!(
        g.approve(&g.bob).status.code(),
        Some(0),
        "bob approves under the gate in force"
    );
    assert_eq!(g.approve(&g.carol).status.code(), Some(0));
    g.applied(&g.apply(&[]));
}

#[test]
fn concurrent_applies_exactly_one_runs() {
    let g = Ungated::new();
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
        let g = Ungated::new();
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

/// The fixture without a gate (lock and journal tests need no people).
struct Ungated {
    gitlab: Gitlab,
    dir: tempfile::TempDir,
}

impl Ungated {
    fn new() -> Self {
        Self {
            gitlab: Gitlab::start(),
            dir: desired_state(&[
                ("reconcile.yaml", "gitlab: {url: http://gitlab.invalid}\n"),
                ("gitlab.yaml", &fixture(false)),
            ]),
        }
    }
}

/// `kill -9` in the middle of applying a plan file, then the same plan file again: what the
/// dead run wrote is recognised (already applied, not written twice), the rest is applied.
#[test]
fn the_same_plan_file_finishes_after_kill_9() {
    let mut resumed = 0;
    // Kill points from early to late until one lands after some steps were written (the
    // others still check convergence and no duplicate).
    for delay_ms in (300u64..=2100).step_by(150) {
        if resumed > 0 {
            break;
        }
        let g = Ungated::new();
        let plan = g.dir.path().join("plan.json");
        let plan = plan.to_str().unwrap();
        let out = g
            .gitlab
            .reconcile(g.dir.path(), &["plan", "--out", plan], &[]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        g.gitlab.set_faults(gitlab_emulator::Faults {
            latency_ms: 60,
            ..Default::default()
        });
        let mut child = g
            .gitlab
            .command(g.dir.path(), &["apply", plan], &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        g.gitlab.clear_faults();
        let again = g.gitlab.reconcile(g.dir.path(), &["apply", plan], &[]);
        let (stdout, stderr) = (text(&again.stdout), text(&again.stderr));
        match again.status.code() {
            Some(0) => {
                if stdout.contains("already applied by an interrupted run") {
                    resumed += 1;
                }
            }
            // A step cut in the middle (a branch unprotected, not yet protected again) is
            // not what the plan expected: refused, named, and a new plan converges.
            Some(1) => {
                assert!(
                    stderr.contains("live since the plan"),
                    "delay {delay_ms}: {stderr}"
                );
                let out = g
                    .gitlab
                    .reconcile(g.dir.path(), &["plan", "--out", plan], &[]);
                assert_eq!(out.status.code(), Some(2));
                let out = g.gitlab.reconcile(g.dir.path(), &["apply", plan], &[]);
                assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            }
            other => panic!("delay {delay_ms}: exit {other:?}\n{stdout}{stderr}"),
        }
        let out = g.gitlab.reconcile(g.dir.path(), &["plan"], &[]);
        assert_eq!(out.status.code(), Some(0), "delay {delay_ms}: converged");
        let (_, users) = g.gitlab.api("GET", "users?per_page=100", None);
        assert_eq!(users.as_array().unwrap().len(), 3, "no duplicate user");
    }
    assert!(
        resumed >= 1,
        "at least one run finished the plan file it was killed in"
    );
}

/// A member deleted live after the plan (which changes its access level) was approved.
#[test]
fn a_member_deleted_live_after_approval_is_refused() {
    let g = Gated::new("gitlab: {url: http://gitlab.invalid}\n");
    g.applied(&g.run(&["apply", "--auto-approve"], &[]));
    std::fs::write(g.path("reconcile.yaml"), GATED).unwrap();
    std::fs::write(
        g.path("gitlab.yaml"),
        fixture(false).replace(
            "{user: dev1, access: developer}",
            "{user: dev1, access: maintainer}",
        ),
    )
    .unwrap();
    g.plan_as(&g.alice);
    g.approve(&g.bob);
    g.approve(&g.carol);
    let (_, users) = g.gitlab.api("GET", "users?username=dev1", None);
    let id = users[0]["id"].as_u64().unwrap();
    let (status, _) = g
        .gitlab
        .api("DELETE", &format!("projects/root%2Fapp/members/{id}"), None);
    assert_eq!(status, 204);
    let stderr = g.refused(&g.apply(&[]));
    assert_golden("approvals/stale-deleted.txt", &g.clean(&stderr));
    // Positive control: planned again (a create now), approved, applied.
    g.plan_as(&g.alice);
    g.approve(&g.bob);
    g.approve(&g.carol);
    g.applied(&g.apply(&[]));
}

/// An approver with only their own (non-admin) token: GitLab does not let them look keys up by
/// fingerprint, so they name themselves and the key is checked in their profile; apply checks
/// it again with an administrator's token.
#[test]
fn an_approver_signs_with_their_own_token() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);
    let own = |who: &Person| {
        vec![(
            "GITLAB_TOKEN",
            g.gitlab.token(&who.username, &["read_user"]),
        )]
    };
    let key = g.bob.key.to_str().unwrap();
    let out = g.run(&["approve", &g.plan_file(), "--sign", key], &own(&g.bob));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("say who you are with `--by USERNAME`"),
        "{}",
        text(&out.stderr)
    );
    // Claiming to be carol with bob's key: refused at once.
    let out = g.run(
        &["approve", &g.plan_file(), "--sign", key, "--by", "carol"],
        &own(&g.bob),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not registered in `carol`'s GitLab profile"),
        "{}",
        text(&out.stderr)
    );
    // Positive control.
    for who in [&g.bob, &g.carol] {
        let key = who.key.to_str().unwrap();
        let out = g.run(
            &[
                "approve",
                &g.plan_file(),
                "--sign",
                key,
                "--by",
                &who.username,
            ],
            &own(who),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    g.applied(&g.apply(&[]));
}

/// A hand-made plan file (sha256 recomputed): every step relabelled to a scope without a gate,
/// or writing fields other than the desired state's. Apply used to take the scope from the
/// file, so no approval was asked; now the plan must be the desired state's.
#[test]
fn a_plan_relabelled_to_an_ungated_scope_is_refused() {
    let g = Gated::new(GATED);
    g.plan_as(&g.alice);
    let text = std::fs::read_to_string(g.plan_file()).unwrap();
    let honest = reconcile::plan::Plan::from_file(&text).unwrap().plan;
    let mut relabelled = honest.clone();
    for step in &mut relabelled.steps {
        step.scope = "staging".into();
    }
    std::fs::write(g.plan_file(), relabelled.to_file(None)).unwrap();
    let stderr = g.refused(&g.apply(&[]));
    assert!(
        stderr.contains("is labelled scope `staging`, but it belongs to `gitlab`"),
        "{stderr}"
    );
    let mut rewritten = honest.clone();
    let user = rewritten
        .steps
        .iter_mut()
        .find(|s| s.address.kind() == "gitlab.user")
        .unwrap();
    user.desired
        .insert("admin".into(), reconcile::live::Value::Bool(true));
    std::fs::write(g.plan_file(), rewritten.to_file(None)).unwrap();
    let stderr = g.refused(&g.apply(&[]));
    assert!(
        stderr.contains("writes fields other than the desired state's"),
        "{stderr}"
    );
    // Positive control: the plan as made, approved, applies.
    g.plan_as(&g.alice);
    assert_eq!(g.approve(&g.bob).status.code(), Some(0));
    assert_eq!(g.approve(&g.carol).status.code(), Some(0));
    g.applied(&g.apply(&[]));
}
