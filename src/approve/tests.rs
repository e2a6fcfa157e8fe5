//! Approvals: who counts, under which gate, with which proof (a fake GitLab directory).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::address::Address;
use crate::plan::{Action, Author, AuthorVia, CiOrigin, Precondition, Step};

fn user(id: u64, name: &str) -> GitlabUser {
    GitlabUser {
        id,
        username: name.into(),
    }
}

fn config(production: serde_json::Value) -> Config {
    serde_json::from_value(serde_json::json!({
        "gitlab": {"url": "http://gitlab.invalid"},
        "environments": {"staging": {}, "production": production},
    }))
    .unwrap()
}

fn prod_gate() -> serde_json::Value {
    serde_json::json!({"approval": {"required": 2, "approvers": ["alice", "bob", "carol"]}})
}

fn plan_in(scope_env: &str) -> Plan {
    let mut plan = Plan::empty("content:1");
    let address = Address::Service {
        env: scope_env.into(),
        service: "web".into(),
    };
    plan.steps.push(Step {
        scope: address.scope_name(),
        address,
        action: Action::Update,
        changes: Vec::new(),
        desired: Default::default(),
        precondition: Precondition::Absent,
        depends_on: Vec::new(),
        notes: Vec::new(),
    });
    plan.author = Author {
        username: "alice".into(),
        user_id: Some(1),
        via: AuthorVia::Token,
    };
    plan
}

fn verified(u: GitlabUser) -> VerifiedApproval {
    VerifiedApproval {
        user: u,
        promotion_override: false,
        via: "test".into(),
    }
}

fn gates(config: &Config) -> Gates {
    Gates::new(config, &Trusted::default())
}

#[test]
fn a_gate_counts_distinct_eligible_users_by_id() {
    let c = config(prod_gate());
    let plan = plan_in("production");
    let author = VerifiedAuthor::Known(user(1, "alice"));
    let none = BTreeSet::new();
    // Positive control: two eligible approvers other than the author.
    assert_eq!(
        check(
            &gates(&c),
            &plan,
            &author,
            &[verified(user(2, "bob")), verified(user(3, "carol"))],
            &none
        ),
        Ok(())
    );
    // The same user twice (a renamed account is the same id) counts once.
    let twice = [verified(user(2, "bob")), verified(user(2, "BOB"))];
    let problems = check(&gates(&c), &plan, &author, &twice, &none).unwrap_err();
    assert!(
        problems[0].contains("needs 2 approval(s) of this plan, has 1"),
        "{problems:?}"
    );
    // The author by id, whatever the name.
    let selfish = [verified(user(1, "alice-renamed")), verified(user(2, "bob"))];
    assert!(check(&gates(&c), &plan, &author, &selfish, &none).is_err());
    // Someone who is not an approver.
    let outsider = [verified(user(9, "mallory")), verified(user(2, "bob"))];
    assert!(check(&gates(&c), &plan, &author, &outsider, &none).is_err());
}

#[test]
fn an_unverified_author_cannot_be_approved_where_self_approval_is_forbidden() {
    let c = config(prod_gate());
    let plan = plan_in("production");
    let unknown = VerifiedAuthor::Unknown("no proof".into());
    let both = [verified(user(2, "bob")), verified(user(3, "carol"))];
    let problems = check(&gates(&c), &plan, &unknown, &both, &BTreeSet::new()).unwrap_err();
    assert!(problems[0].contains("not verified"), "{problems:?}");
    // Positive control: where self-approval is allowed, the author does not matter.
    let c = config(serde_json::json!({"approval": {"required": 2, "allow_self_approval": true}}));
    assert_eq!(
        check(&gates(&c), &plan, &unknown, &both, &BTreeSet::new()),
        Ok(())
    );
}

#[test]
fn a_standing_approval_meets_the_gate_and_ungated_scopes_need_none() {
    let c = config(prod_gate());
    let author = VerifiedAuthor::Known(user(1, "alice"));
    let plan = plan_in("production");
    let standing = BTreeSet::from(["production".to_string()]);
    assert_eq!(check(&gates(&c), &plan, &author, &[], &standing), Ok(()));
    assert!(check(&gates(&c), &plan, &author, &[], &BTreeSet::new()).is_err());
    assert_eq!(
        check(
            &gates(&c),
            &plan_in("staging"),
            &author,
            &[],
            &BTreeSet::new()
        ),
        Ok(())
    );
}

#[test]
fn a_lowered_gate_still_needs_the_approvers_of_the_gate_in_force() {
    // reconcile.yaml now says 1 approval by anyone; the last approved apply recorded 2 of
    // alice, bob, carol.
    let c = config(serde_json::json!({"approval": {"required": 1}}));
    let dir = tempfile::tempdir().unwrap();
    let key = FingerprintKey::new("k");
    let recorded: Gate = serde_json::from_value(prod_gate()["approval"].clone()).unwrap();
    Trusted::record(
        dir.path(),
        &key,
        "production",
        crate::trust::ScopeRecord {
            digest: "sha256:x".into(),
            gate: recorded,
            revision: "content:0".into(),
            plan_sha256: "00".into(),
            at: "2026-12-04T00:00:00Z".into(),
            targets: Default::default(),
        },
    )
    .unwrap();
    let (trusted, warnings) = Trusted::load(dir.path(), Some(&key));
    assert!(warnings.is_empty(), "{warnings:?}");
    let gates = Gates::new(&c, &trusted);
    assert_eq!(gates.required("production"), 2);
    let plan = plan_in("production");
    let author = VerifiedAuthor::Known(user(1, "alice"));
    let problems = check(
        &gates,
        &plan,
        &author,
        &[verified(user(9, "mallory"))],
        &BTreeSet::new(),
    )
    .unwrap_err();
    assert!(
        problems.iter().any(|p| p.contains("gate in force")),
        "{problems:?}"
    );
    // Positive control: the approvers of the gate in force pass both gates.
    assert_eq!(
        check(
            &gates,
            &plan,
            &author,
            &[verified(user(2, "bob")), verified(user(3, "carol"))],
            &BTreeSet::new()
        ),
        Ok(())
    );
    // Records made with another key are not believed.
    let (other, warnings) = Trusted::load(dir.path(), Some(&FingerprintKey::new("other")));
    assert!(other.gate("production").is_none());
    assert!(!warnings.is_empty());
}

#[test]
fn eligibility_is_told_before_anything_is_recorded() {
    let c = config(prod_gate());
    let plan = plan_in("production");
    let author = VerifiedAuthor::Known(user(1, "alice"));
    assert_eq!(
        eligible_scopes(&gates(&c), &plan, &author, &user(2, "bob"), false),
        Ok(vec!["production".to_string()])
    );
    let why = eligible_scopes(&gates(&c), &plan, &author, &user(1, "alice"), false).unwrap_err();
    assert!(why.contains("self-approval"), "{why}");
    let why = eligible_scopes(&gates(&c), &plan, &author, &user(9, "mallory"), false).unwrap_err();
    assert!(why.contains("not an approver"), "{why}");
    let why = eligible_scopes(
        &gates(&c),
        &plan_in("staging"),
        &author,
        &user(2, "bob"),
        false,
    )
    .unwrap_err();
    assert!(why.contains("needs no approval"), "{why}");
}

/// GitLab as the tests want it.
#[derive(Default)]
struct FakeGitlab {
    keys: BTreeMap<String, GitlabUser>,
    jobs: BTreeMap<u64, (CiJob, String)>,
}

#[async_trait::async_trait]
impl Directory for FakeGitlab {
    async fn key_owner(&self, fingerprint: &str) -> Result<Option<GitlabUser>, String> {
        Ok(self.keys.get(fingerprint).cloned())
    }
    async fn job(&self, project_id: u64, job_id: u64) -> Result<Option<CiJob>, String> {
        Ok(self
            .jobs
            .get(&job_id)
            .filter(|(j, _)| j.project_id == project_id)
            .map(|(j, _)| j.clone()))
    }
    async fn job_trace(&self, _project_id: u64, job_id: u64) -> Result<String, String> {
        Ok(self
            .jobs
            .get(&job_id)
            .map(|(_, t)| t.clone())
            .unwrap_or_default())
    }
}

fn file_of(plan: &Plan) -> PlanFile {
    Plan::from_file(&plan.to_file(None)).unwrap()
}

fn approval(file: &PlanFile, by: &str, proof: Option<Proof>) -> Approval {
    Approval {
        plan_sha256: file.hash.clone(),
        by: by.into(),
        at: "2026-12-04T00:00:00Z".into(),
        comment: None,
        promotion_override: false,
        proof,
    }
}

#[tokio::test]
async fn an_ssh_approval_counts_only_for_the_key_owner_and_this_plan() {
    let file = file_of(&plan_in("production"));
    let (signature, fingerprint) = proof::tests::signed(&proof::payload(&file.hash, false));
    let mut gitlab = FakeGitlab::default();
    // Not registered yet: refused.
    let a = approval(
        &file,
        "bob",
        Some(Proof::Ssh {
            signature: signature.clone(),
        }),
    );
    let why = verify_approval(&a, &file, &gitlab, None).await.unwrap_err();
    assert!(why.contains("no GitLab user has registered"), "{why}");
    gitlab.keys.insert(fingerprint, user(2, "bob"));
    // Positive control.
    let v = verify_approval(&a, &file, &gitlab, None).await.unwrap();
    assert_eq!(v.user, user(2, "bob"));
    // The same signature under another name.
    let forged = approval(
        &file,
        "carol",
        Some(Proof::Ssh {
            signature: signature.clone(),
        }),
    );
    let why = verify_approval(&forged, &file, &gitlab, None)
        .await
        .unwrap_err();
    assert!(why.contains("its proof shows `bob`"), "{why}");
    // For another plan.
    let other = file_of(&plan_in("staging"));
    let mut moved = a.clone();
    moved.plan_sha256 = other.hash.clone();
    assert!(
        verify_approval(&moved, &other, &gitlab, None)
            .await
            .is_err()
    );
    // Claiming the override with a signature that did not cover it.
    let mut widened = a.clone();
    widened.promotion_override = true;
    assert!(
        verify_approval(&widened, &file, &gitlab, None)
            .await
            .is_err()
    );
    // A name alone.
    let bare = approval(&file, "bob", None);
    let why = verify_approval(&bare, &file, &gitlab, None)
        .await
        .unwrap_err();
    assert!(why.contains("no proof"), "{why}");
}

#[tokio::test]
async fn a_ci_approval_counts_only_from_a_successful_job_of_the_plans_pipeline() {
    let mut plan = plan_in("production");
    plan.origin = Some(CiOrigin {
        project_id: 5,
        pipeline_id: 50,
        job_id: 500,
    });
    let file = file_of(&plan);
    let line = |job| proof::ci_approval_line(&file.hash, false, job);
    let job = |id, pipeline_id, status: &str| CiJob {
        id,
        status: status.into(),
        user: user(2, "bob"),
        pipeline_id,
        project_id: 5,
    };
    let mut gitlab = FakeGitlab::default();
    gitlab.jobs.insert(
        501,
        (
            job(501, 50, "success"),
            format!("$ reconcile approve\n{}\n", line(501)),
        ),
    );
    gitlab
        .jobs
        .insert(502, (job(502, 51, "success"), format!("{}\n", line(502))));
    gitlab
        .jobs
        .insert(503, (job(503, 50, "failed"), format!("{}\n", line(503))));
    gitlab
        .jobs
        .insert(504, (job(504, 50, "success"), "nothing\n".into()));
    // The line of job 501 copied into job 505's log.
    gitlab
        .jobs
        .insert(505, (job(505, 50, "success"), format!("{}\n", line(501))));
    let ci = |job_id| {
        approval(
            &file,
            "bob",
            Some(Proof::CiJob {
                project_id: 5,
                job_id,
            }),
        )
    };
    assert_eq!(
        verify_approval(&ci(501), &file, &gitlab, None)
            .await
            .unwrap()
            .user,
        user(2, "bob")
    );
    for (job_id, want) in [
        (502, "not of the plan's pipeline"),
        (503, "not `success`"),
        (504, "does not show this approval"),
        (505, "does not show this approval"),
        (599, "does not know"),
    ] {
        let why = verify_approval(&ci(job_id), &file, &gitlab, None)
            .await
            .unwrap_err();
        assert!(why.contains(want), "{job_id}: {why}");
    }
    let mut wrong_project = ci(501);
    wrong_project.proof = Some(Proof::CiJob {
        project_id: 6,
        job_id: 501,
    });
    assert!(
        verify_approval(&wrong_project, &file, &gitlab, None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_daemon_sign_in_counts_only_with_the_reconcile_key() {
    let file = file_of(&plan_in("production"));
    let key = FingerprintKey::new("daemon key");
    let message = proof::attestation_message(&file.hash, 2, "bob", false);
    let a = approval(
        &file,
        "bob",
        Some(Proof::GitlabSignIn {
            user_id: 2,
            attestation: key.attest(proof::APPROVAL_ATTESTATION, &message),
        }),
    );
    let gitlab = FakeGitlab::default();
    assert_eq!(
        verify_approval(&a, &file, &gitlab, Some(&key))
            .await
            .unwrap()
            .user,
        user(2, "bob")
    );
    assert!(
        verify_approval(&a, &file, &gitlab, Some(&FingerprintKey::new("x")))
            .await
            .is_err()
    );
    assert!(verify_approval(&a, &file, &gitlab, None).await.is_err());
    let mut renamed = a.clone();
    renamed.by = "carol".into();
    assert!(
        verify_approval(&renamed, &file, &gitlab, Some(&key))
            .await
            .is_err()
    );
    let mut other_id = a.clone();
    other_id.proof = Some(Proof::GitlabSignIn {
        user_id: 3,
        attestation: key.attest(proof::APPROVAL_ATTESTATION, &message),
    });
    assert!(
        verify_approval(&other_id, &file, &gitlab, Some(&key))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_author_is_believed_only_with_a_proof() {
    let key = FingerprintKey::new("k");
    let plan = plan_in("production");
    let attestation = key.attest(proof::AUTHOR_ATTESTATION, plan.hash().as_bytes());
    let file = Plan::from_file(&plan.to_file(Some(&attestation))).unwrap();
    let gitlab = FakeGitlab::default();
    assert_eq!(
        verify_author(&file, &gitlab, Some(&key)).await,
        VerifiedAuthor::Known(user(1, "alice"))
    );
    // Someone rewrites the author (and the file's sha256) and keeps the attestation.
    let mut rewritten = plan.clone();
    rewritten.author.username = "zed".into();
    rewritten.author.user_id = Some(26);
    let edited = Plan::from_file(&rewritten.to_file(Some(&attestation))).unwrap();
    assert!(matches!(
        verify_author(&edited, &gitlab, Some(&key)).await,
        VerifiedAuthor::Unknown(_)
    ));
    // No attestation.
    assert!(matches!(
        verify_author(&file_of(&plan), &gitlab, Some(&key)).await,
        VerifiedAuthor::Unknown(_)
    ));
}

#[test]
fn the_approvals_file_is_written_whole_and_one_approval_per_person() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("p.json");
    let file = file_of(&plan_in("production"));
    add_approval(&plan_path, approval(&file, "bob", None)).unwrap();
    add_approval(&plan_path, approval(&file, "BOB", None)).unwrap();
    let all = add_approval(&plan_path, approval(&file, "carol", None)).unwrap();
    assert_eq!(all.approvals.len(), 2);
    assert_eq!(read_approvals(&plan_path).unwrap(), all);
    std::fs::write(approvals_path(&plan_path), "{not json").unwrap();
    assert!(read_approvals(&plan_path).is_err());
}

#[test]
fn a_promotion_override_of_an_unverified_author_is_refused_where_self_approval_is_forbidden() {
    let c = config(serde_json::json!({"approval": {"required": 0, "approvers": ["bob"]}}));
    let mut plan = plan_in("production");
    plan.overrides.push(crate::plan::PromotionOverride {
        env: "production".into(),
        service: "web".into(),
        reason: "hotfix".into(),
    });
    let by_bob = [VerifiedApproval {
        promotion_override: true,
        ..verified(user(2, "bob"))
    }];
    let unknown = VerifiedAuthor::Unknown("no proof".into());
    let problems = check(&gates(&c), &plan, &unknown, &by_bob, &BTreeSet::new()).unwrap_err();
    assert!(problems[0].contains("not verified"), "{problems:?}");
    // Positive control: a verified author other than bob.
    let alice = VerifiedAuthor::Known(user(1, "alice"));
    assert_eq!(
        check(&gates(&c), &plan, &alice, &by_bob, &BTreeSet::new()),
        Ok(())
    );
}

/// The gate of production follows its cluster: renaming the environment, or pointing staging
/// at production's cluster, does not shed it. Once such a change is approved under that gate,
/// the targets move to the new scope.
#[test]
fn a_recorded_gate_follows_its_targets_under_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = FingerprintKey::new("k");
    let prod_cluster = "ecs cluster prod".to_string();
    let gate: Gate = serde_json::from_value(prod_gate()["approval"].clone()).unwrap();
    let record = |targets: &[&String]| crate::trust::ScopeRecord {
        digest: "sha256:x".into(),
        gate: gate.clone(),
        revision: "content:0".into(),
        plan_sha256: "00".into(),
        at: "2026-12-04T00:00:00Z".into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
    };
    Trusted::record(dir.path(), &key, "production", record(&[&prod_cluster])).unwrap();
    let (trusted, _) = Trusted::load(dir.path(), Some(&key));
    // reconcile.yaml now has no gate on `prod-x` (production renamed) nor on staging.
    let c = config(serde_json::json!({}));
    let targets = |scope: &str, t: &[&String]| {
        BTreeMap::from([(scope.to_string(), t.iter().map(|x| x.to_string()).collect())])
    };
    let author = VerifiedAuthor::Known(user(1, "alice"));
    for scope in ["prod-x", "staging"] {
        let gates =
            Gates::new(&c, &trusted).with_targets(&trusted, &targets(scope, &[&prod_cluster]));
        assert_eq!(gates.required(scope), 2, "{scope}");
        let problems = check(&gates, &plan_in(scope), &author, &[], &BTreeSet::new()).unwrap_err();
        assert!(
            problems[0].contains("under the gate of production, whose targets it writes to"),
            "{problems:?}"
        );
        // Positive control: production's approvers pass it.
        let both = [verified(user(2, "bob")), verified(user(3, "carol"))];
        assert_eq!(
            check(&gates, &plan_in(scope), &author, &both, &BTreeSet::new()),
            Ok(())
        );
    }
    // Another cluster: no inherited gate.
    let other = "ecs cluster staging".to_string();
    let gates = Gates::new(&c, &trusted).with_targets(&trusted, &targets("staging", &[&other]));
    assert_eq!(gates.required("staging"), 0);
    // Once prod-x's apply is recorded (it passed production's gate), the cluster moves to it.
    let mut moved = record(&[&prod_cluster]);
    moved.gate = Gate::default();
    Trusted::record(dir.path(), &key, "prod-x", moved).unwrap();
    let (trusted, warnings) = Trusted::load(dir.path(), Some(&key));
    assert!(warnings.is_empty(), "{warnings:?}");
    let gates =
        Gates::new(&c, &trusted).with_targets(&trusted, &targets("prod-x", &[&prod_cluster]));
    assert_eq!(gates.required("prod-x"), 0);
    assert!(trusted.get("production").unwrap().targets.is_empty());
}

#[test]
fn an_environment_writing_to_another_ones_target_is_under_its_gate_too() {
    let c = config(prod_gate());
    let cluster = BTreeSet::from(["ecs cluster prod".to_string()]);
    let targets = BTreeMap::from([
        ("staging".to_string(), cluster.clone()),
        ("production".to_string(), cluster),
    ]);
    let gates = gates(&c).with_shared_targets(&c, &targets);
    assert_eq!(gates.required("staging"), 2);
    let author = VerifiedAuthor::Known(user(1, "alice"));
    assert!(check(&gates, &plan_in("staging"), &author, &[], &BTreeSet::new()).is_err());
    // Positive control: its own cluster only.
    let own = BTreeMap::from([
        (
            "staging".to_string(),
            BTreeSet::from(["ecs cluster staging".to_string()]),
        ),
        (
            "production".to_string(),
            BTreeSet::from(["ecs cluster prod".to_string()]),
        ),
    ]);
    let gates = gates_of(&c).with_shared_targets(&c, &own);
    assert_eq!(gates.required("staging"), 0);
}

fn gates_of(config: &Config) -> Gates {
    Gates::new(config, &Trusted::default())
}
