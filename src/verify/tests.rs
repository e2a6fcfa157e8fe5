//! `verify` over a fake provider (the live state as the test wants it) and a fake GitLab
//! directory: every refusal with its positive control.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::approve::{Approval, CiJob, GitlabUser, Proof, proof};
use crate::live::{Live, Observed, Value};
use crate::plan::{Author, AuthorVia, Step};
use crate::providers::{Provider, StepError};

/// Live state as the test sets it; counts reads.
struct FakeProvider {
    live: Mutex<BTreeMap<Address, Observed>>,
    reads: Mutex<usize>,
}

#[async_trait]
impl Provider for FakeProvider {
    fn owns(&self, _: &Address) -> bool {
        true
    }
    async fn observe(&self, _: &[&Desired]) -> LiveState {
        unreachable!("verify reads only what the plan touches")
    }
    async fn observe_only(&self, _: &[&Desired], addresses: &[Address]) -> LiveState {
        *self.reads.lock().unwrap() += 1;
        let live = self.live.lock().unwrap();
        LiveState {
            objects: addresses
                .iter()
                .map(|a| (a.clone(), live.get(a).cloned().unwrap_or(Observed::Absent)))
                .collect(),
            ..LiveState::default()
        }
    }
    async fn apply(&self, _: &Step, _: Option<&Desired>) -> Result<(), StepError> {
        unreachable!("verify never writes")
    }
    fn replace_note(&self, _: &Address) -> Option<String> {
        None
    }
    fn requests(&self) -> u64 {
        0
    }
}

#[derive(Default)]
struct FakeGitlab {
    keys: BTreeMap<String, GitlabUser>,
}

#[async_trait]
impl Directory for FakeGitlab {
    async fn key_owner(&self, fingerprint: &str) -> Result<Option<GitlabUser>, String> {
        Ok(self.keys.get(fingerprint).cloned())
    }
    async fn job(&self, _: u64, _: u64) -> Result<Option<CiJob>, String> {
        Ok(None)
    }
    async fn job_trace(&self, _: u64, _: u64) -> Result<String, String> {
        Ok(String::new())
    }
}

const CONFIG: &str = "gitlab:
  url: http://127.0.0.1:9
  approval: {required: 1, approvers: [bob, carol]}
environments:
  staging: {}
plan:
  max_age: 1h
  max_deletes: 2
";

/// A project whose members are pruned (the tests' deletions are of its members).
const SPEC: &str = "projects:
  - namespace: root
    path: app
    members: {prune: true, items: []}
    protected_branches:
      items:
        - {name: main, push: maintainer, merge: developer, allow_force_push: false}
";

struct World {
    _dir: tempfile::TempDir,
    state: DesiredState,
    provider: Providers,
    fake: std::sync::Arc<FakeProvider>,
    gitlab: FakeGitlab,
    key: FingerprintKey,
    trusted: Trusted,
    now: SystemTime,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reconcile.yaml"), CONFIG).unwrap();
    std::fs::write(dir.path().join("gitlab.yaml"), SPEC).unwrap();
    let state = crate::spec::load(dir.path()).expect("the fixture loads");
    let fake = std::sync::Arc::new(FakeProvider {
        live: Mutex::new(BTreeMap::new()),
        reads: Mutex::new(0),
    });
    let (_, bob_key) = proof::tests::signed("x");
    let gitlab = FakeGitlab {
        keys: BTreeMap::from([(
            bob_key,
            GitlabUser {
                id: 2,
                username: "bob".into(),
            },
        )]),
    };
    World {
        provider: Providers::new(vec![Box::new(std::sync::Arc::clone(&fake))]),
        fake,
        _dir: dir,
        state,
        gitlab,
        key: FingerprintKey::new("reconcile key"),
        trusted: Trusted::default(),
        now: humantime::parse_rfc3339("2026-12-04T12:00:00Z").unwrap(),
    }
}

fn member(user: &str) -> Address {
    Address::Member {
        project: "root/app".into(),
        user: user.into(),
    }
}

fn live(level: i64) -> Live {
    Live {
        fields: BTreeMap::from([("access_level".to_string(), Value::Int(level))]),
        meta: BTreeMap::new(),
    }
}

/// A member update 30 → 40, planned against `live(30)`.
fn update(user: &str) -> Step {
    let address = member(user);
    Step {
        scope: address.scope_name(),
        address,
        action: Action::Update,
        changes: vec![crate::plan::FieldChange {
            field: "access_level".into(),
            before: Some(Value::Int(30)),
            after: Some(Value::Int(40)),
        }],
        desired: live(40).fields,
        precondition: Precondition::of(Some(&live(30))),
        depends_on: Vec::new(),
        notes: Vec::new(),
    }
}

fn delete(user: &str) -> Step {
    Step {
        action: Action::Delete,
        changes: Vec::new(),
        desired: Default::default(),
        ..update(user)
    }
}

fn desired(steps: &[Step]) -> Vec<Desired> {
    steps
        .iter()
        .filter(|s| s.action != Action::Delete)
        .map(|s| Desired {
            address: s.address.clone(),
            fields: s.desired.clone(),
            replace_on: &[],
            secrets: BTreeMap::new(),
        })
        .collect()
}

impl World {
    fn plan(&self, steps: Vec<Step>) -> Plan {
        Plan {
            created_at: "2026-12-04T11:30:00Z".into(),
            author: Author {
                username: "alice".into(),
                user_id: Some(1),
                via: AuthorVia::Token,
            },
            steps,
            ..Plan::empty(&crate::pipeline::revision(&self.state))
        }
    }

    /// The plan file, attested by its author's run.
    fn file(&self, plan: &Plan) -> PlanFile {
        let att = self
            .key
            .attest(proof::AUTHOR_ATTESTATION, plan.hash().as_bytes());
        Plan::from_file(&plan.to_file(Some(&att))).unwrap()
    }

    fn set_live(&self, address: Address, observed: Observed) {
        self.fake.live.lock().unwrap().insert(address, observed);
    }

    async fn verify(
        &self,
        source: Source,
        steps: &[Step],
        allow_deletes: bool,
    ) -> Result<ApprovedPlan, Refusal> {
        let gates = Gates::new(&self.state.config, &self.trusted);
        let revision = crate::pipeline::revision(&self.state);
        let inputs = Inputs {
            state: &self.state,
            revision: &revision,
            trusted: &self.trusted,
            gates: &gates,
            key: Some(&self.key),
            allow_deletes,
            now: self.now,
        };
        let desired = desired(steps);
        let io = Io {
            providers: &self.provider,
            desired: &desired,
            aws: None,
            directory: Some(&self.gitlab),
        };
        verify(source, &inputs, &io).await
    }

    fn reads(&self) -> usize {
        *self.fake.reads.lock().unwrap()
    }
}

fn signed_by_bob(file: &PlanFile) -> Approvals {
    let (signature, _) = proof::tests::signed(&proof::payload(&file.hash, false));
    Approvals {
        approvals: vec![Approval {
            plan_sha256: file.hash.clone(),
            by: "bob".into(),
            at: "2026-12-04T11:40:00Z".into(),
            comment: None,
            promotion_override: false,
            proof: Some(Proof::Ssh { signature }),
        }],
    }
}

fn named_only(file: &PlanFile, names: &[&str]) -> Approvals {
    Approvals {
        approvals: names
            .iter()
            .map(|n| Approval {
                plan_sha256: file.hash.clone(),
                by: n.to_string(),
                at: "2026-12-04T11:40:00Z".into(),
                comment: None,
                promotion_override: false,
                proof: None,
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_proven_approval_and_a_current_precondition_pass() {
    let w = world();
    let steps = vec![update("dev1")];
    w.set_live(member("dev1"), Observed::Present(live(30)));
    let file = w.file(&w.plan(steps.clone()));
    let approvals = signed_by_bob(&file);
    let approved = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .expect("passes");
    assert_eq!(approved.approvals()[0].user.username, "bob");
    assert!(!approved.is_done(&member("dev1")));
    assert!(approved.records());
}

#[tokio::test]
async fn a_hand_written_approvals_file_does_not_count_and_reads_nothing() {
    let w = world();
    let steps = vec![update("dev1")];
    w.set_live(member("dev1"), Observed::Present(live(30)));
    let file = w.file(&w.plan(steps.clone()));
    let approvals = named_only(&file, &["bob", "carol"]);
    let refusal = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .unwrap_err();
    let Refusal::Approvals { problems, unproven } = &refusal else {
        panic!("{refusal}")
    };
    assert!(
        problems[0].contains("needs 1 approval(s) of this plan, has 0"),
        "{problems:?}"
    );
    assert_eq!(unproven.len(), 2);
    assert!(unproven[0].contains("no proof of identity"), "{unproven:?}");
    assert_eq!(
        w.reads(),
        0,
        "a refused plan costs no read of managed resources"
    );
}

#[tokio::test]
async fn a_live_change_since_the_plan_is_stale_and_names_the_field() {
    let w = world();
    let steps = vec![update("dev1"), update("dev2"), update("dev3")];
    w.set_live(member("dev1"), Observed::Present(live(20))); // changed by hand
    w.set_live(member("dev2"), Observed::Absent); // deleted by hand
    w.set_live(member("dev3"), Observed::Present(live(30))); // as planned
    let file = w.file(&w.plan(steps.clone()));
    let approvals = signed_by_bob(&file);
    let refusal = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .unwrap_err();
    let Refusal::Stale(stale) = &refusal else {
        panic!("{refusal}")
    };
    assert_eq!(stale.len(), 2, "{stale:?}");
    assert_eq!(stale[0].address, member("dev1"));
    assert_eq!(stale[0].what, "changed live since the plan: access_level");
    assert_eq!(stale[1].what, "was deleted live since the plan");
    assert!(refusal.to_string().contains("nothing was changed"));
}

#[tokio::test]
async fn a_step_an_interrupted_apply_already_wrote_is_done_not_stale() {
    let w = world();
    let steps = vec![update("dev1"), delete("dev2")];
    w.set_live(member("dev1"), Observed::Present(live(40)));
    w.set_live(member("dev2"), Observed::Absent);
    let file = w.file(&w.plan(steps.clone()));
    let approvals = signed_by_bob(&file);
    let approved = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .expect("passes");
    assert!(approved.is_done(&member("dev1")));
    assert!(approved.is_done(&member("dev2")));
}

#[tokio::test]
async fn an_unreadable_resource_is_never_assumed_unchanged() {
    let w = world();
    let steps = vec![update("dev1")];
    w.set_live(
        member("dev1"),
        Observed::Unknown("GitLab answered 502".into()),
    );
    let file = w.file(&w.plan(steps.clone()));
    let approvals = signed_by_bob(&file);
    let refusal = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Stale(_)), "{refusal}");
}

#[tokio::test]
async fn an_old_or_other_revision_plan_is_refused() {
    let w = world();
    let steps = vec![update("dev1")];
    let mut plan = w.plan(steps.clone());
    plan.revision = "content:other".into();
    let file = w.file(&plan);
    let approvals = signed_by_bob(&file);
    let refusal = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Revision { .. }), "{refusal}");

    let mut plan = w.plan(steps.clone());
    plan.created_at = "2026-12-04T10:00:00Z".into(); // 2 h before `now`, max_age 1h
    let file = w.file(&plan);
    let approvals = signed_by_bob(&file);
    let refusal = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .unwrap_err();
    assert!(matches!(refusal, Refusal::TooOld { .. }), "{refusal}");
}

#[tokio::test]
async fn deletions_over_the_threshold_need_allow_deletes() {
    let w = world();
    let steps = vec![delete("dev1"), delete("dev2"), delete("dev3")];
    for u in ["dev1", "dev2", "dev3"] {
        w.set_live(member(u), Observed::Present(live(30)));
    }
    let file = w.file(&w.plan(steps.clone()));
    let approvals = signed_by_bob(&file);
    let refusal = w
        .verify(
            Source::File {
                file: file.clone(),
                approvals: approvals.clone(),
            },
            &steps,
            false,
        )
        .await
        .unwrap_err();
    let text = refusal.to_string();
    assert!(
        text.contains("deletes or replaces 3 object(s), more than plan.max_deletes (2)"),
        "{text}"
    );
    assert!(text.contains("3 deletions (gitlab.member: 3)"), "{text}");
    // Positive control: confirmed, and still approved.
    w.verify(
        Source::File {
            file: file.clone(),
            approvals,
        },
        &steps,
        true,
    )
    .await
    .expect("passes with --allow-deletes");
    // --allow-deletes is no approval.
    let refusal = w
        .verify(
            Source::File {
                file,
                approvals: Approvals::default(),
            },
            &steps,
            true,
        )
        .await
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Approvals { .. }), "{refusal}");
}

#[tokio::test]
async fn a_correction_passes_a_gate_only_under_a_standing_approval() {
    let mut w = world();
    let steps = vec![update("dev1")];
    let mut plan = w.plan(steps.clone());
    plan.digests
        .insert("gitlab".into(), "sha256:approved".into());
    let author = crate::approve::VerifiedAuthor::Known(GitlabUser {
        id: 7,
        username: "reconcile-bot".into(),
    });
    // No record of an approved apply: refused.
    let refusal = w
        .verify(
            Source::Correction {
                plan: plan.clone(),
                author: author.clone(),
            },
            &steps,
            false,
        )
        .await
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Approvals { .. }), "{refusal}");
    // The desired state is the one approved last: the correction passes.
    let dir = tempfile::tempdir().unwrap();
    crate::trust::Trusted::record(
        dir.path(),
        &w.key,
        "gitlab",
        crate::trust::ScopeRecord {
            digest: "sha256:approved".into(),
            gate: w.state.config.gitlab.approval.clone(),
            revision: "content:0".into(),
            plan_sha256: "00".into(),
            at: "2026-12-04T00:00:00Z".into(),
            targets: Default::default(),
        },
    )
    .unwrap();
    w.trusted = Trusted::load(dir.path(), Some(&w.key)).0;
    let approved = w
        .verify(
            Source::Correction {
                plan: plan.clone(),
                author: author.clone(),
            },
            &steps,
            false,
        )
        .await
        .expect("a standing approval");
    assert!(!approved.records(), "a correction records no approval");
    // Another desired state (an unapproved merge): refused again.
    plan.digests
        .insert("gitlab".into(), "sha256:unapproved".into());
    let refusal = w
        .verify(Source::Correction { plan, author }, &steps, false)
        .await
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Approvals { .. }), "{refusal}");
}

#[tokio::test]
async fn auto_approve_passes_ungated_scopes_only() {
    let w = world();
    let author = crate::approve::VerifiedAuthor::Known(GitlabUser {
        id: 1,
        username: "alice".into(),
    });
    let steps = vec![update("dev1")];
    let refusal = w
        .verify(
            Source::Fresh {
                plan: w.plan(steps.clone()),
                author: author.clone(),
            },
            &steps,
            false,
        )
        .await
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Approvals { .. }), "{refusal}");
    // Positive control: an ungated scope (staging) passes, without reading again.
    let service = Address::Service {
        env: "staging".into(),
        service: "web".into(),
    };
    let step = Step {
        scope: "staging".into(),
        address: service,
        ..update("x")
    };
    let plan = w.plan(vec![step.clone()]);
    w.verify(Source::Fresh { plan, author }, &[step], false)
        .await
        .expect("ungated");
    assert_eq!(w.reads(), 0);
}

#[tokio::test]
async fn a_child_made_by_its_parents_creation_is_not_stale() {
    let w = world();
    let project = Address::Project {
        path: "root/app".into(),
    };
    let create = |address: Address, depends_on: Vec<Address>| Step {
        scope: "gitlab".into(),
        address,
        action: Action::Create,
        changes: Vec::new(),
        desired: live(40).fields,
        precondition: Precondition::Absent,
        depends_on,
        notes: Vec::new(),
    };
    let steps = vec![
        create(project.clone(), vec![]),
        create(member("dev1"), vec![project.clone()]),
    ];
    // An interrupted run created the project, and with it the member (differently).
    w.set_live(project.clone(), Observed::Present(live(40)));
    w.set_live(member("dev1"), Observed::Present(live(50)));
    let file = w.file(&w.plan(steps.clone()));
    let approvals = signed_by_bob(&file);
    let approved = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .expect("passes");
    assert!(approved.is_done(&project));
    assert!(!approved.is_done(&member("dev1")), "converged by its step");
    // Without the parent's creation in the plan, the same live member is stale.
    let steps = vec![create(member("dev1"), vec![])];
    let file = w.file(&w.plan(steps.clone()));
    let approvals = signed_by_bob(&file);
    let refusal = w
        .verify(Source::File { file, approvals }, &steps, false)
        .await
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Stale(_)), "{refusal}");
}

/// A hand-made plan file (hash recomputed, nothing approved): a step relabelled to an ungated
/// scope, a step writing other fields than the desired state's, a deletion the desired state
/// does not ask for. Each is refused before anything is read.
#[tokio::test]
async fn a_plan_that_is_not_the_desired_states_is_refused() {
    let w = world();
    let honest = vec![update("dev1")];
    let mut relabelled = update("dev1");
    relabelled.scope = "staging".into();
    let mut rewritten = update("dev1");
    rewritten.desired = live(50).fields;
    let unpruned = Step {
        address: Address::User {
            username: "dev9".into(),
        },
        scope: "gitlab".into(),
        ..delete("x")
    };
    for (step, want) in [
        (
            relabelled,
            "is labelled scope `staging`, but it belongs to `gitlab`",
        ),
        (rewritten, "writes fields other than the desired state's"),
        (
            unpruned,
            "deletes a resource the desired state does not prune",
        ),
    ] {
        let file = w.file(&w.plan(vec![step]));
        let refusal = w
            .verify(
                Source::File {
                    file,
                    approvals: Approvals::default(),
                },
                &honest,
                true,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(refusal, Refusal::NotTheDesiredState(_)),
            "{refusal}"
        );
        assert!(refusal.to_string().contains(want), "{refusal}");
    }
    assert_eq!(w.reads(), 0);
    // Positive control: the honest step (approved) passes.
    w.set_live(member("dev1"), Observed::Present(live(30)));
    let file = w.file(&w.plan(honest.clone()));
    let approvals = signed_by_bob(&file);
    w.verify(Source::File { file, approvals }, &honest, false)
        .await
        .expect("passes");
}
