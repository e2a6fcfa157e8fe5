//! ECS services over the real wire (moto): the example desired state from empty, per
//! environment; no-change plans that register nothing (with their exact AWS request count);
//! an image tag bump; an env var change; a secret reference change; desired count managed and
//! not; a missing image or secret as a located plan error that writes nothing. No secret value
//! in any output.

use std::process::Output;

use crate::support::aws::{
    self, SECRET_VALUES, Workspace, aws_requests, count, example_seed, revisions, service,
    set_desired_count,
};
use crate::support::gitlab::Gitlab;
use crate::support::moto::Moto;
use crate::support::{assert_golden, text};

const STAGING: &str = "cloud-design-cluster-staging";
const PROD: &str = "cloud-design-cluster-prod";

struct World {
    moto: Moto,
    gitlab: Gitlab,
    ws: Workspace,
}

impl World {
    fn new() -> Self {
        let moto = Moto::start();
        example_seed(&moto);
        Self {
            moto,
            gitlab: Gitlab::start(),
            ws: Workspace::example(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.ws.reconcile(args, &self.gitlab.url(), &self.moto);
        let all = text(&out.stdout) + &text(&out.stderr);
        for secret in SECRET_VALUES {
            assert!(
                !all.contains(secret),
                "output contains a secret value:\n{all}"
            );
        }
        out
    }

    /// Runs and checks the exit code, showing the output otherwise.
    fn expect(&self, args: &[&str], code: i32) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "reconcile {args:?}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// Both environments applied from empty.
    fn applied() -> Self {
        let w = Self::new();
        for env in ["staging", "production"] {
            w.expect(&["apply", "--auto-approve", "--env", env], 0);
        }
        w
    }
}

#[test]
fn example_services_from_empty_per_environment() {
    let w = World::new();
    for (env, cluster) in [("staging", STAGING), ("production", PROD)] {
        let plan = w.expect(&["plan", "--env", env], 2);
        let stdout = text(&plan.stdout);
        assert!(
            stdout.ends_with("Plan: 6 to create, 0 to update, 0 to replace, 0 to delete.\n"),
            "{stdout}"
        );
        assert_golden(&format!("aws/example-create-{env}.txt"), &stdout);

        let apply = w.expect(&["apply", "--auto-approve", "--env", env], 0);
        let requests = aws_requests(&text(&apply.stderr));
        assert_eq!(
            count(&requests, "RegisterTaskDefinition"),
            3,
            "{requests:?}"
        );
        assert_eq!(count(&requests, "CreateService"), 3, "{requests:?}");
        let (td, desired) = service(&w.moto, cluster, &format!("inventory-app-service-{env}"))
            .expect("service created");
        assert!(
            td.ends_with(&format!("task-definition/inventory-app-{env}:1")),
            "{td}"
        );
        assert_eq!(desired, if env == "staging" { 1 } else { 2 });

        // Nothing left to do, and nothing registered by planning.
        let again = w.expect(&["plan", "--env", env], 0);
        let requests = aws_requests(&text(&again.stderr));
        assert_eq!(count(&requests, "RegisterTaskDefinition"), 0);
        assert_eq!(revisions(&w.moto, &format!("billing-app-{env}")).len(), 1);
    }
}

/// The request budget of a no-change plan of the whole example: 1 ListSecrets (one name
/// prefix, 3 secrets), 3 BatchGetImage (one per repository), 2 DescribeServices (one chunk
/// per cluster), 6 DescribeTaskDefinition (one per distinct revision), nothing else.
#[test]
fn no_change_plan_of_the_example_has_an_exact_request_count() {
    let w = World::applied();
    w.expect(&["apply", "--auto-approve", "--env", "gitlab"], 0);
    let plan = w.expect(&["plan"], 0);
    assert_eq!(
        text(&plan.stdout),
        "No changes. Live state matches the desired state.\n"
    );
    let requests = aws_requests(&text(&plan.stderr));
    let expected: Vec<(String, u64)> = [
        ("total", 12),
        ("DescribeServices", 2),
        ("DescribeTaskDefinition", 6),
        ("ListTaskDefinitions", 0),
        ("RegisterTaskDefinition", 0),
        ("CreateService", 0),
        ("UpdateService", 0),
        ("BatchGetImage", 3),
        ("DescribeImages", 0),
        ("ListTasks", 0),
        ("DescribeTasks", 0),
        ("ListSecrets", 1),
        ("GetSecretValue", 0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(requests, expected);
}

#[test]
fn image_tag_bump_registers_one_revision_and_updates_one_service_per_environment() {
    let w = World::applied();
    for file in ["aws/staging.yaml", "aws/production.yaml"] {
        w.ws.edit(file, "tag: \"1.4.2\"", "tag: \"1.4.3\"", 1);
    }
    let plan = w.expect(&["plan", "--env", "staging"], 2);
    assert_golden("aws/image-tag-bump-staging.txt", &text(&plan.stdout));
    for (env, cluster) in [("staging", STAGING), ("production", PROD)] {
        let apply = w.expect(&["apply", "--auto-approve", "--env", env], 0);
        let requests = aws_requests(&text(&apply.stderr));
        assert_eq!(
            count(&requests, "RegisterTaskDefinition"),
            1,
            "{requests:?}"
        );
        assert_eq!(count(&requests, "UpdateService"), 1, "{requests:?}");
        assert_eq!(count(&requests, "CreateService"), 0, "{requests:?}");
        assert_eq!(revisions(&w.moto, &format!("inventory-app-{env}")).len(), 2);
        let (td, _) = service(&w.moto, cluster, &format!("inventory-app-service-{env}")).unwrap();
        assert!(td.ends_with(&format!("inventory-app-{env}:2")), "{td}");
        w.expect(&["plan", "--env", env], 0);
    }
}

#[test]
fn env_var_and_secret_reference_changes() {
    let w = World::applied();
    w.ws.edit("aws/staging.yaml", "DB_NAME: movies", "DB_NAME: films", 1);
    let plan = w.expect(&["plan", "--env", "staging"], 2);
    assert_golden("aws/env-var-change-staging.txt", &text(&plan.stdout));
    w.expect(&["apply", "--auto-approve", "--env", "staging"], 0);
    w.expect(&["plan", "--env", "staging"], 0);

    // Another secret: a new ARN in the task definition (never the value).
    w.ws.edit(
        "aws/secrets.yaml",
        "  - name: cloud-design/rabbitmq\n",
        "  - name: cloud-design/rabbitmq\n  - name: cloud-design/inventory-db-v2\n",
        1,
    );
    w.ws.edit(
        "aws/staging.yaml",
        "DB_PASSWORD: {secret: cloud-design/inventory-db, key: password}",
        "DB_PASSWORD: {secret: cloud-design/inventory-db-v2, key: password}",
        1,
    );
    let plan = w.expect(&["plan", "--env", "staging"], 2);
    assert_golden(
        "aws/secret-reference-change-staging.txt",
        &text(&plan.stdout),
    );
    let apply = w.expect(&["apply", "--auto-approve", "--env", "staging"], 0);
    let requests = aws_requests(&text(&apply.stderr));
    assert_eq!(
        count(&requests, "RegisterTaskDefinition"),
        1,
        "{requests:?}"
    );
    assert_eq!(
        count(&requests, "GetSecretValue"),
        0,
        "ECS never reads values"
    );
    w.expect(&["plan", "--env", "staging"], 0);
}

#[test]
fn desired_count_is_managed_only_when_the_spec_sets_it() {
    let w = World::applied();
    set_desired_count(&w.moto, STAGING, "billing-app-service-staging", 4);
    let plan = w.expect(&["plan", "--env", "staging"], 2);
    assert_golden("aws/desired-count-drift-staging.txt", &text(&plan.stdout));

    // Left out of the spec: autoscaling owns it, live changes are ignored.
    w.ws.edit(
        "aws/staging.yaml",
        "    service_name: billing-app-service-staging\n    launch_type: EC2\n    desired_count: 1\n",
        "    service_name: billing-app-service-staging\n    launch_type: EC2\n",
        1,
    );
    w.expect(&["plan", "--env", "staging"], 0);
}

#[test]
fn missing_image_and_missing_secret_are_located_plan_errors_and_nothing_is_written() {
    let moto = Moto::start();
    aws::seed(
        &moto,
        &aws::Seed {
            secrets: &[
                (
                    "cloud-design/gitlab-pipeline-user",
                    serde_json::json!({"access_key_id": "a", "secret_access_key": "b"}).to_string(),
                ),
                ("cloud-design/billing-db", "{}".into()),
                ("cloud-design/rabbitmq", "{}".into()),
            ],
            images: &[
                ("api-gateway-app", &["1.3.0"]),
                ("inventory-app", &["1.4.2"]),
                ("billing-app", &["2.0.1"]),
            ],
            clusters: &[STAGING],
        },
    );
    let w = World {
        moto,
        gitlab: Gitlab::start(),
        ws: Workspace::example(),
    };
    w.ws.edit("aws/staging.yaml", "tag: \"2.0.1\"", "tag: \"9.9.9\"", 1);
    let plan = w.expect(&["plan", "--env", "staging"], 1);
    assert_eq!(text(&plan.stdout), "");
    let stderr = text(&plan.stderr);
    let report: String = stderr
        .lines()
        .filter(|l| !l.contains("AWS requests"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_golden("aws/missing-image-and-secret.txt", &report);
    assert!(
        report.contains("desired-state/aws/staging.yaml:"),
        "{report}"
    );
    let apply = w.expect(&["apply", "--auto-approve", "--env", "staging"], 1);
    assert!(text(&apply.stdout).is_empty());
    assert!(revisions(&w.moto, "billing-app-staging").is_empty());
    assert!(revisions(&w.moto, "inventory-app-staging").is_empty());
    assert_eq!(
        service(&w.moto, STAGING, "api-gateway-service-staging"),
        None
    );
}

/// The audit's case: a production plan `desired_count: 2 → 1` is made, then the service is
/// moved live to a hand-deployed revision. Apply used to write the count and revert the
/// revision (a change nobody reviewed); now it refuses, naming the field, and writes nothing.
#[test]
fn a_service_moved_live_after_the_plan_is_stale() {
    let w = World::applied();
    w.ws.edit(
        "aws/production.yaml",
        "    service_name: billing-app-service-production\n    launch_type: EC2\n    desired_count: 2\n",
        "    service_name: billing-app-service-production\n    launch_type: EC2\n    desired_count: 1\n",
        1,
    );
    w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    // Someone deploys a hotfix image by hand: a new revision of the service's family.
    let (before, _) = service(&w.moto, PROD, "billing-app-service-production").unwrap();
    let hand = aws::runtime().block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&w.moto.sdk_config().await);
        let td = ecs
            .describe_task_definition()
            .task_definition(&before)
            .send()
            .await
            .unwrap()
            .task_definition
            .unwrap();
        let mut c = td.container_definitions()[0].clone();
        c.image = Some(format!("{}-hotfix", c.image().unwrap_or_default()));
        let registered = ecs
            .register_task_definition()
            .family(td.family().unwrap())
            .set_container_definitions(Some(vec![c]))
            .set_requires_compatibilities(Some(td.requires_compatibilities().to_vec()))
            .send()
            .await
            .unwrap();
        let arn = registered
            .task_definition
            .unwrap()
            .task_definition_arn
            .unwrap();
        ecs.update_service()
            .cluster(PROD)
            .service("billing-app-service-production")
            .task_definition(&arn)
            .send()
            .await
            .unwrap();
        arn
    });
    let refused = w.expect(&["apply", "plan.json", "--env", "production"], 1);
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(
            "aws.ecs_service/production/billing-app: changed live since the plan: task_definition"
        ),
        "{stderr}"
    );
    assert_eq!(
        service(&w.moto, PROD, "billing-app-service-production").unwrap(),
        (hand.clone(), 2),
        "nothing written: the hand-deployed revision and the count stay"
    );
    // Positive control: planned again (which now shows the revision going back), applied.
    w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    w.expect(&["apply", "plan.json", "--env", "production"], 0);
    assert_eq!(
        service(&w.moto, PROD, "billing-app-service-production")
            .unwrap()
            .1,
        1
    );
}

/// A wrong AWS account is one line before anything is read or written.
#[test]
fn a_wrong_aws_account_is_refused_before_anything_is_read() {
    let w = World::new();
    w.ws.edit(
        "reconcile.yaml",
        "account_id: \"123456789012\"",
        "account_id: \"999999999999\"",
        1,
    );
    let out = w.expect(&["plan", "--env", "staging"], 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("999999999999"), "{stderr}");
    assert!(stderr.contains("123456789012"), "{stderr}");
    assert!(
        !text(&out.stdout).contains("to create"),
        "no plan is printed"
    );
    assert_eq!(
        stderr.lines().count(),
        2,
        "one line and `nothing was read or changed`: {stderr}"
    );
    assert!(
        !stderr.contains("AWS requests:"),
        "no managed resource was read: {stderr}"
    );
    // Positive control: the right account plans.
    w.ws.edit(
        "reconcile.yaml",
        "account_id: \"999999999999\"",
        "account_id: \"123456789012\"",
        1,
    );
    w.expect(&["plan", "--env", "staging"], 2);
}

/// The gate of production follows its cluster: after an approved apply of production, someone
/// who renames the environment in the desired state (and drops its gate) still needs
/// production's approvers to change what runs on production's cluster.
#[test]
fn renaming_an_environment_does_not_shed_its_gate() {
    let w = World::new();
    w.expect(&["apply", "--auto-approve", "--env", "staging"], 0);
    w.ws.edit(
        "reconcile.yaml",
        "      required: 0\n      approvers: [root, ops-lead, sre-oncall]",
        "      required: 1\n      approvers: [root, ops-lead, sre-oncall]",
        1,
    );
    let ops_lead = w.gitlab.person("ops-lead", false);
    let key = ops_lead.key.to_str().unwrap();
    w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    w.expect(&["approve", "plan.json", "--sign", key], 0);
    w.expect(&["apply", "plan.json", "--env", "production"], 0);

    // The rename, gate dropped, and a change to production's cluster.
    w.ws.edit("reconcile.yaml", "  production:\n", "  prodx:\n", 1);
    w.ws.edit(
        "reconcile.yaml",
        "      required: 1\n      approvers: [root, ops-lead, sre-oncall]",
        "      required: 0\n      approvers: [root, ops-lead, sre-oncall]",
        1,
    );
    w.ws.edit(
        "aws/production.yaml",
        "environment: production",
        "environment: prodx",
        3,
    );
    w.ws.edit(
        "aws/production.yaml",
        "    service_name: billing-app-service-production\n    launch_type: EC2\n    desired_count: 2\n",
        "    service_name: billing-app-service-production\n    launch_type: EC2\n    desired_count: 1\n",
        1,
    );
    let refused = w.expect(&["apply", "--auto-approve", "--env", "prodx"], 1);
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(
            "prodx (under the gate of production, whose targets it writes to) needs 1 approval(s)"
        ),
        "{stderr}"
    );
    assert_eq!(
        service(&w.moto, PROD, "billing-app-service-production")
            .unwrap()
            .1,
        2,
        "nothing written"
    );
    // Positive control: production's approver approves the change.
    w.expect(&["plan", "--env", "prodx", "--out", "plan.json"], 2);
    w.expect(&["approve", "plan.json", "--sign", key], 0);
    w.expect(&["apply", "plan.json", "--env", "prodx"], 0);
    assert_eq!(
        service(&w.moto, PROD, "billing-app-service-production")
            .unwrap()
            .1,
        1
    );
}

/// A plan and an apply of an AWS environment alone send nothing to GitLab: the emulator
/// counts no request (positive control: a whole plan does ask it).
#[test]
fn an_aws_scope_never_contacts_gitlab() {
    let w = World::new();
    w.gitlab.reset_counters();
    w.expect(&["plan", "--env", "staging"], 2);
    w.expect(&["apply", "--auto-approve", "--env", "staging"], 0);
    w.expect(&["plan", "--env", "staging"], 0);
    assert_eq!(w.gitlab.counters().total, 0, "{:?}", w.gitlab.counters());
    w.run(&["plan"]);
    assert!(w.gitlab.counters().total > 0, "the whole plan reads GitLab");
}
