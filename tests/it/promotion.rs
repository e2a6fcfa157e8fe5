//! The promotion rule over moto (#6 item 3): production (`promote_from: staging`) may move only
//! to images staging runs stable, checked at plan (evidence in the plan, a blocking finding
//! otherwise) and again at apply; an override needs a reason and its own approval, and is
//! recorded in the plan and the audit log.

use std::process::Output;

use crate::support::aws::{
    Workspace, aws_requests, count, digest_of, example_seed, image_of, push_image, revisions,
    service,
};
use crate::support::gitlab::Gitlab;
use crate::support::moto::Moto;
use crate::support::{assert_golden, text};

const PROD: &str = "cloud-design-cluster-prod";
const PROD_SERVICE: &str = "inventory-app-service-production";

struct World {
    moto: Moto,
    gitlab: Gitlab,
    ws: Workspace,
}

impl World {
    /// The example applied in both environments (inventory-app 1.4.2 everywhere), then
    /// production's inventory-app bumped to 1.4.3 in the desired state only.
    fn bumped_in_production() -> Self {
        let w = Self::applied();
        w.ws.edit("aws/production.yaml", "tag: \"1.4.2\"", "tag: \"1.4.3\"", 1);
        w
    }

    /// The example applied in both environments (inventory-app 1.4.2 everywhere).
    fn applied() -> Self {
        let moto = Moto::start();
        example_seed(&moto);
        let w = Self {
            moto,
            gitlab: Gitlab::start(),
            ws: Workspace::example(),
        };
        for env in ["staging", "production"] {
            w.expect(&["apply", "--auto-approve", "--env", env], 0);
        }
        w
    }

    /// Production's inventory-app runs `revision`, whose image ends with `image`, and the
    /// next plan has nothing to do.
    fn production_runs(&self, revision: u32, image: &str) {
        let (td, _) = service(&self.moto, PROD, PROD_SERVICE).unwrap();
        assert!(
            td.ends_with(&format!("inventory-app-production:{revision}")),
            "{td}"
        );
        let named = image_of(&self.moto, &td);
        assert!(named.ends_with(image), "{named}");
        self.expect(&["plan", "--env", "production"], 0);
    }

    fn expect(&self, args: &[&str], code: i32) -> Output {
        let out = self.ws.reconcile(args, &self.gitlab.url(), &self.moto);
        assert_eq!(
            out.status.code(),
            Some(code),
            "reconcile {args:?}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn set_staging(&self, from: &str, to: &str) {
        self.ws.edit("aws/staging.yaml", from, to, 1);
        self.expect(&["apply", "--auto-approve", "--env", "staging"], 0);
    }

    /// Production's inventory-app still runs revision 1, and no revision 2 was registered.
    fn production_untouched(&self) {
        let (td, _) = service(&self.moto, PROD, PROD_SERVICE).unwrap();
        assert!(td.ends_with("inventory-app-production:1"), "{td}");
        assert_eq!(revisions(&self.moto, "inventory-app-production").len(), 1);
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.ws.dir().join(".reconcile/audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Production planned from empty (every service a create): the promotion evidence of its three
/// services is read with one DescribeServices for staging's cluster (10 per call), beside the
/// one that reads production's own; each service's evidence is in the plan.
#[test]
fn promotion_evidence_is_read_ten_services_per_request() {
    let moto = Moto::start();
    example_seed(&moto);
    let w = World {
        moto,
        gitlab: Gitlab::start(),
        ws: Workspace::example(),
    };
    w.expect(&["apply", "--auto-approve", "--env", "staging"], 0);
    let plan = w.expect(&["plan", "--env", "production"], 2);
    let requests = aws_requests(&text(&plan.stderr));
    assert_eq!(count(&requests, "DescribeServices"), 2, "{requests:?}");
    let stdout = text(&plan.stdout);
    for service in ["api-gateway", "inventory-app", "billing-app"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("promotion: ") && l.contains(&format!("staging/{service}"))),
            "{service}:\n{stdout}"
        );
    }
}

/// The `error:` message of a refusal (log lines left out).
fn refusal(stderr: &str) -> String {
    let start = stderr.find("error: ").expect("an error message");
    stderr[start..]
        .lines()
        .filter(|l| !l.contains("AWS requests"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn production_image_not_in_staging_is_refused_until_staging_runs_it() {
    let w = World::bumped_in_production();
    let plan = w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    let stdout = text(&plan.stdout);
    assert!(stdout.contains("error [promotion]"), "{stdout}");
    assert_golden("aws/promotion-refused-production.txt", &stdout);
    let apply = w.expect(&["apply", "plan.json", "--env", "production"], 1);
    assert_golden(
        "aws/promotion-refused-apply.txt",
        &refusal(&text(&apply.stderr)),
    );
    w.production_untouched();

    // Staging first: then production shows the evidence and applies.
    w.set_staging("tag: \"1.4.2\"", "tag: \"1.4.3\"");
    let plan = w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    let stdout = text(&plan.stdout);
    assert!(!stdout.contains("[promotion]"), "{stdout}");
    assert_golden("aws/promotion-evidence-production.txt", &stdout);
    w.expect(&["apply", "plan.json", "--env", "production"], 0);
    let (td, _) = service(&w.moto, PROD, PROD_SERVICE).unwrap();
    assert!(td.ends_with("inventory-app-production:2"), "{td}");
    w.expect(&["plan", "--env", "production"], 0);
}

#[test]
fn the_rule_is_checked_again_at_apply() {
    let w = World::bumped_in_production();
    w.set_staging("tag: \"1.4.2\"", "tag: \"1.4.3\"");
    w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    // Staging goes back to 1.4.2 after the plan: production's plan no longer holds.
    w.set_staging("tag: \"1.4.3\"", "tag: \"1.4.2\"");
    // The desired state changed (staging.yaml): put it back as planned, keeping live staging.
    w.ws.edit("aws/staging.yaml", "tag: \"1.4.2\"", "tag: \"1.4.3\"", 1);
    let apply = w.expect(&["apply", "plan.json", "--env", "production"], 1);
    assert_golden(
        "aws/promotion-refused-at-apply.txt",
        &refusal(&text(&apply.stderr)),
    );
    w.production_untouched();
}

#[test]
fn an_approved_override_proceeds_and_is_recorded() {
    let w = World::bumped_in_production();
    // An override needs a reason (a usage error: exit 1).
    w.expect(
        &[
            "plan",
            "--env",
            "production",
            "--promotion-override",
            "production/inventory-app",
        ],
        1,
    );
    let plan = w.expect(
        &[
            "plan",
            "--env",
            "production",
            "--out",
            "plan.json",
            "--promotion-override",
            "production/inventory-app=hotfix INC-42, staging is down",
        ],
        2,
    );
    let stdout = text(&plan.stdout);
    assert!(stdout.contains("warn  [promotion]"), "{stdout}");
    assert!(
        stdout.contains("  ! production/inventory-app: hotfix INC-42, staging is down"),
        "{stdout}"
    );
    let file = std::fs::read_to_string(w.ws.tmp.path().join("plan.json")).unwrap();
    assert!(file.contains("\"overrides\""), "{file}");
    assert!(file.contains("hotfix INC-42, staging is down"), "{file}");

    // Without the override's own approval: refused, nothing written.
    let refused = w.expect(&["apply", "plan.json", "--env", "production"], 1);
    assert!(
        text(&refused.stderr).contains("need an approval with --override"),
        "{}",
        text(&refused.stderr)
    );
    w.production_untouched();
    // A plain approval does not cover it; non-approvers cannot give it.
    let ops_lead = w.gitlab.person("ops-lead", false);
    let mallory = w.gitlab.person("mallory", false);
    let sign = |p: &crate::support::gitlab::Person| p.key.to_str().unwrap().to_string();
    w.expect(&["approve", "plan.json", "--sign", &sign(&ops_lead)], 1);
    w.expect(
        &[
            "approve",
            "plan.json",
            "--sign",
            &sign(&mallory),
            "--override",
        ],
        1,
    );
    w.expect(
        &[
            "approve",
            "plan.json",
            "--sign",
            &sign(&ops_lead),
            "--override",
        ],
        0,
    );
    w.expect(&["apply", "plan.json", "--env", "production"], 0);
    let (td, _) = service(&w.moto, PROD, PROD_SERVICE).unwrap();
    assert!(td.ends_with("inventory-app-production:2"), "{td}");

    let overrides: Vec<String> = w
        .audit()
        .iter()
        .filter(|e| {
            e["event"] == "override" || (e["event"] == "approve" && e["outcome"] == "approved")
        })
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["event"].as_str().unwrap(),
                e["by"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        overrides,
        [
            "override root requested production/inventory-app: hotfix INC-42, staging is down",
            "approve ops-lead approved production (SSH signature)",
            "override root applied production/inventory-app: hotfix INC-42, staging is down",
        ]
    );
}

/// A plan's promotion note (the evidence).
fn promotion_note(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.contains("! promotion: "))
        .unwrap_or_else(|| panic!("no promotion note in:\n{stdout}"))
        .trim()
}

#[test]
fn a_tag_and_its_digest_are_the_same_image_in_both_directions() {
    let w = World::applied();
    let d142 = digest_of("inventory-app", "1.4.2");
    let d143 = digest_of("inventory-app", "1.4.3");
    // Staging runs the tag; production pins the same image by digest (#19 item 1).
    w.set_staging("tag: \"1.4.2\"", "tag: \"1.4.3\"");
    w.ws.edit(
        "aws/production.yaml",
        "tag: \"1.4.2\"",
        &format!("digest: \"{d143}\""),
        1,
    );
    let plan = w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    let stdout = text(&plan.stdout);
    assert!(!stdout.contains("[promotion]"), "{stdout}");
    assert_golden("aws/promotion-tag-to-digest-production.txt", &stdout);
    w.expect(&["apply", "plan.json", "--env", "production"], 0);
    w.production_runs(2, &format!("inventory-app@{d143}"));

    // Staging pins the digest; production names the tag.
    w.set_staging("tag: \"1.4.3\"", &format!("digest: \"{d143}\""));
    w.ws.edit(
        "aws/production.yaml",
        &format!("digest: \"{d143}\""),
        "tag: \"1.4.3\"",
        1,
    );
    let plan = w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    let stdout = text(&plan.stdout);
    assert!(!stdout.contains("[promotion]"), "{stdout}");
    assert_eq!(
        promotion_note(&stdout),
        format!(
            "! promotion: staging/inventory-app runs inventory-app@{d143} stable, 1/1 running (digest pinned in its task definition)"
        )
    );
    w.expect(&["apply", "plan.json", "--env", "production"], 0);
    w.production_runs(3, "inventory-app:1.4.3");

    // Negative control: another digest than staging's is refused, by digest on both sides.
    w.ws.edit(
        "aws/production.yaml",
        "tag: \"1.4.3\"",
        &format!("digest: \"{d142}\""),
        1,
    );
    let plan = w.expect(&["plan", "--env", "production"], 2);
    let stdout = text(&plan.stdout);
    assert!(
        stdout.contains(&format!(
            "error [promotion] desired-state/aws/production.yaml:49:5: production/inventory-app wants inventory-app@{d142}, which staging/inventory-app does not run (it runs inventory-app@{d143}; 1/1 running, 1 deployment(s))"
        )),
        "{stdout}"
    );
}

#[test]
fn a_tag_pushed_again_since_staging_rolled_out_is_not_what_staging_runs() {
    let w = World::bumped_in_production();
    w.set_staging("tag: \"1.4.2\"", "tag: \"1.4.3\"");
    // Positive control: the same tag, not moved, passes.
    let plan = w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    let stdout = text(&plan.stdout);
    assert!(!stdout.contains("[promotion]"), "{stdout}");
    assert!(
        promotion_note(&stdout)
            .ends_with("(digest of its tag, pushed before its deployment started)"),
        "{stdout}"
    );

    // Someone pushes another image as inventory-app:1.4.3 (a mutable repository). moto's push
    // times are whole seconds: push in a later second than staging's deployment started.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let moved = push_image(&w.moto, "inventory-app", "1.4.3", "1.4.3-rebuilt");
    assert_ne!(moved, digest_of("inventory-app", "1.4.3"));

    // At apply: staging still runs what the tag named when it rolled out, not `moved`.
    let apply = w.expect(&["apply", "plan.json", "--env", "production"], 1);
    assert_golden(
        "aws/promotion-moved-tag-apply.txt",
        &refusal(&text(&apply.stderr)),
    );
    w.production_untouched();
    // At plan, the same.
    let plan = w.expect(&["plan", "--env", "production"], 2);
    let stdout = text(&plan.stdout);
    assert!(stdout.contains("error [promotion]"), "{stdout}");
    assert!(
        stdout.contains("the tag moved since staging rolled out"),
        "{stdout}"
    );

    // Staging pinned to the new digest (a new deployment): production may follow by tag.
    w.set_staging("tag: \"1.4.3\"", &format!("digest: \"{moved}\""));
    let plan = w.expect(&["plan", "--env", "production", "--out", "plan.json"], 2);
    let stdout = text(&plan.stdout);
    assert!(!stdout.contains("[promotion]"), "{stdout}");
    w.expect(&["apply", "plan.json", "--env", "production"], 0);
    w.production_runs(2, "inventory-app:1.4.3");
}
