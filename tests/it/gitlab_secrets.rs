//! GitLab variables whose values come from Secrets Manager (moto) over the real wire: the
//! example desired state from empty, secret rotation, hidden variables, a missing secret; and
//! no secret value in any output, plan file or golden file.

use crate::support::gitlab::{Gitlab, desired_state};
use crate::support::moto::Moto;
use crate::support::{assert_golden, root, text};

const ACCESS_KEY: &str = "AKIAEXAMPLESECRETVALUE01";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiSECRETVALUE02";
const ROTATED: &str = "rotatedSECRETVALUE03/abcdefghij";

fn put_secret(moto: &Moto, name: &str, value: &str, create: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
        if create {
            client
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .expect("create secret");
        } else {
            client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .expect("put secret value");
        }
    });
}

fn pipeline_user(access: &str, secret: &str) -> String {
    serde_json::json!({"access_key_id": access, "secret_access_key": secret}).to_string()
}

/// Fails if any secret value appears in `haystack`.
fn assert_no_secret(what: &str, haystack: &str) {
    for secret in [ACCESS_KEY, SECRET_KEY, ROTATED] {
        assert!(!haystack.contains(secret), "{what} contains a secret value");
    }
}

fn variable(gitlab: &Gitlab, project: &str, key: &str) -> serde_json::Value {
    let (status, v) = gitlab.api(
        "GET",
        &format!("projects/root%2F{project}/variables/{key}?filter%5Benvironment_scope%5D=*"),
        None,
    );
    assert_eq!(status, 200);
    v
}

#[test]
fn example_desired_state_from_empty_and_secret_rotation() {
    let moto = Moto::start();
    put_secret(
        &moto,
        "cloud-design/gitlab-pipeline-user",
        &pipeline_user(ACCESS_KEY, SECRET_KEY),
        true,
    );
    let gitlab = Gitlab::start();
    // GitLab only: the example's ECS services are covered by aws_ecs.rs.
    let dir = root().join("desired-state");
    let env = moto.env();
    let plan_file = tempfile::NamedTempFile::new().unwrap();
    let plan_path = plan_file.path().to_str().unwrap();

    let plan = gitlab.reconcile(&dir, &["plan", "--env", "gitlab", "--out", plan_path], &env);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan.stderr));
    let stdout = text(&plan.stdout);
    assert!(stdout.contains("value: (sensitive)"));
    assert!(
        stdout.ends_with("Plan: 32 to create, 0 to update, 0 to replace, 0 to delete.\n"),
        "{stdout}"
    );
    assert_golden("gitlab/example-create.txt", &stdout);
    assert_no_secret("plan stdout", &stdout);
    assert_no_secret("plan stderr", &text(&plan.stderr));
    assert_no_secret("plan file", &std::fs::read_to_string(plan_path).unwrap());

    // GitLab-wide changes need one approval (reconcile.yaml), by root or ops-lead.
    let ops_lead = gitlab.person("ops-lead", false);
    let approve = gitlab.reconcile(
        &dir,
        &[
            "approve",
            plan_path,
            "--sign",
            ops_lead.key.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve.stderr));
    let apply = gitlab.reconcile(&dir, &["apply", "--env", "gitlab", plan_path], &env);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}{}",
        text(&apply.stdout),
        text(&apply.stderr)
    );
    assert_no_secret(
        "apply output",
        &(text(&apply.stdout) + &text(&apply.stderr)),
    );
    assert_eq!(
        variable(&gitlab, "inventory-app", "AWS_SECRET_ACCESS_KEY")["value"],
        SECRET_KEY,
        "the secret's value reached GitLab"
    );
    assert_eq!(
        variable(&gitlab, "inventory-app", "AWS_SECRET_ACCESS_KEY")["masked"],
        true
    );

    let again = gitlab.reconcile(&dir, &["plan", "--env", "gitlab"], &env);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));

    // Rotation: the plan shows that the value changes, never the value.
    put_secret(
        &moto,
        "cloud-design/gitlab-pipeline-user",
        &pipeline_user(ACCESS_KEY, ROTATED),
        false,
    );
    let rotated = gitlab.reconcile(&dir, &["plan", "--env", "gitlab"], &env);
    assert_eq!(rotated.status.code(), Some(2));
    let stdout = text(&rotated.stdout);
    assert_eq!(
        stdout.matches("value: (sensitive, changed)").count(),
        4,
        "{stdout}"
    );
    assert!(
        stdout.ends_with("Plan: 0 to create, 4 to update, 0 to replace, 0 to delete.\n"),
        "{stdout}"
    );
    assert_no_secret("rotation plan", &stdout);
    let gated = gitlab.reconcile(&dir, &["apply", "--env", "gitlab", "--auto-approve"], &env);
    assert_eq!(
        gated.status.code(),
        Some(1),
        "the GitLab gate holds: {}",
        text(&gated.stderr)
    );
    let replan = gitlab.reconcile(&dir, &["plan", "--env", "gitlab", "--out", plan_path], &env);
    assert_eq!(replan.status.code(), Some(2));
    let approve = gitlab.reconcile(
        &dir,
        &[
            "approve",
            plan_path,
            "--sign",
            ops_lead.key.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve.stderr));
    assert_no_secret("plan file", &std::fs::read_to_string(plan_path).unwrap());
    let apply = gitlab.reconcile(&dir, &["apply", "--env", "gitlab", plan_path], &env);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stdout));
    assert_eq!(
        variable(&gitlab, "billing-app", "AWS_SECRET_ACCESS_KEY")["value"],
        ROTATED
    );
    assert_eq!(
        gitlab
            .reconcile(&dir, &["plan", "--env", "gitlab"], &env)
            .status
            .code(),
        Some(0)
    );
}

const HIDDEN: &str = r#"projects:
  - namespace: root
    path: app
    protected_branches:
      items:
        - {name: main}
    variables:
      items:
        - key: DEPLOY_TOKEN
          masked: true
          hidden: true
          protected: true
          description: Deploy token
          from: {secret: app/deploy, key: token}
secrets:
  - name: app/deploy
"#;

/// Hidden variables read back as `value: null`; the fingerprint of the last written value,
/// kept in the description, lets the next plan see no change, and see a rotation.
#[test]
fn hidden_variable_has_no_perpetual_diff_and_sees_rotation() {
    let moto = Moto::start();
    put_secret(
        &moto,
        "app/deploy",
        &serde_json::json!({"token": SECRET_KEY}).to_string(),
        true,
    );
    let gitlab = Gitlab::start();
    let dir = desired_state(&[
        ("reconcile.yaml", "gitlab: {url: http://gitlab.invalid}\n"),
        ("app.yaml", HIDDEN),
    ]);
    let env = moto.env();
    let apply = gitlab.reconcile(dir.path(), &["apply", "--auto-approve"], &env);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}{}",
        text(&apply.stdout),
        text(&apply.stderr)
    );
    let live = variable(&gitlab, "app", "DEPLOY_TOKEN");
    assert_eq!(live["value"], serde_json::Value::Null, "hidden");
    assert_eq!(live["hidden"], true);
    assert!(
        live["description"]
            .as_str()
            .unwrap()
            .starts_with("Deploy token [reconcile fp=hmac-sha256:")
    );

    let plan = gitlab.reconcile(dir.path(), &["plan"], &env);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "no perpetual diff: {}",
        text(&plan.stdout)
    );

    put_secret(
        &moto,
        "app/deploy",
        &serde_json::json!({"token": ROTATED}).to_string(),
        false,
    );
    let plan = gitlab.reconcile(dir.path(), &["plan"], &env);
    assert_eq!(plan.status.code(), Some(2));
    assert_golden("gitlab/hidden-rotation.txt", &text(&plan.stdout));
    let apply = gitlab.reconcile(dir.path(), &["apply", "--auto-approve"], &env);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}{}",
        text(&apply.stdout),
        text(&apply.stderr)
    );
    assert_eq!(
        gitlab.reconcile(dir.path(), &["plan"], &env).status.code(),
        Some(0)
    );
    assert_no_secret(
        "outputs",
        &(text(&plan.stdout) + &text(&apply.stdout) + &text(&apply.stderr)),
    );
}

/// The value GitLab holds for a variable (hidden ones included: read from the emulator's
/// state, since the API never returns it).
fn stored_value(gitlab: &Gitlab, key: &str) -> String {
    let state = gitlab.state();
    state["projects"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["variables"].as_object().unwrap().values())
        .find(|v| v["key"] == key)
        .and_then(|v| v["value"].as_str())
        .expect("the variable")
        .to_string()
}

/// A hidden variable whose `[reconcile fp=…]` marker is gone (or is not a fingerprint) has an
/// unknown value (#19 item 3): the plan rewrites it, saying why, and the apply restores the
/// value and the marker. A value changed with the marker intact cannot be seen (README).
#[test]
fn hidden_variable_without_its_marker_is_rewritten() {
    let moto = Moto::start();
    put_secret(
        &moto,
        "app/deploy",
        &serde_json::json!({"token": SECRET_KEY}).to_string(),
        true,
    );
    let gitlab = Gitlab::start();
    let dir = desired_state(&[
        ("reconcile.yaml", "gitlab: {url: http://gitlab.invalid}\n"),
        ("app.yaml", HIDDEN),
    ]);
    let env = moto.env();
    let run = |args: &[&str], code: i32| {
        let out = gitlab.reconcile(dir.path(), args, &env);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_no_secret("outputs", &(text(&out.stdout) + &text(&out.stderr)));
        text(&out.stdout)
    };
    run(&["apply", "--auto-approve"], 0);
    run(&["plan"], 0);
    let url = "projects/root%2Fapp/variables/DEPLOY_TOKEN?filter%5Benvironment_scope%5D=*";
    let marked = variable(&gitlab, "app", "DEPLOY_TOKEN")["description"]
        .as_str()
        .unwrap()
        .to_string();

    let edits = [
        // Edited by hand: another value, the description without the marker.
        "Deploy token".to_string(),
        // A marker that is not a fingerprint.
        "Deploy token [reconcile fp=whatever]".to_string(),
    ];
    for (i, description) in edits.iter().enumerate() {
        let (status, _) = gitlab.api(
            "PUT",
            url,
            Some(serde_json::json!({"value": "handEditedVALUE04", "description": description})),
        );
        assert_eq!(status, 200);
        let stdout = run(&["plan"], 2);
        if i == 0 {
            assert_golden("gitlab/hidden-marker-gone.txt", &stdout);
        } else {
            assert!(
                stdout.contains("no valid `[reconcile fp=…]` marker"),
                "{stdout}"
            );
        }
        run(&["apply", "--auto-approve"], 0);
        assert_eq!(stored_value(&gitlab, "DEPLOY_TOKEN"), SECRET_KEY);
        assert_eq!(
            variable(&gitlab, "app", "DEPLOY_TOKEN")["description"],
            marked.as_str()
        );
        run(&["plan"], 0);
    }

    // Not detectable: the value changed with the marker left intact.
    let (status, _) = gitlab.api(
        "PUT",
        url,
        Some(serde_json::json!({"value": "handEditedVALUE04"})),
    );
    assert_eq!(status, 200);
    run(&["plan"], 0);
    assert_eq!(stored_value(&gitlab, "DEPLOY_TOKEN"), "handEditedVALUE04");
}

#[test]
fn missing_secret_is_a_plan_error_naming_the_spec_line() {
    let moto = Moto::start();
    let gitlab = Gitlab::start();
    let dir = desired_state(&[
        ("reconcile.yaml", "gitlab: {url: http://gitlab.invalid}\n"),
        ("app.yaml", HIDDEN),
    ]);
    gitlab.reset_counters();
    let plan = gitlab.reconcile(dir.path(), &["plan"], &moto.env());
    assert_eq!(plan.status.code(), Some(1));
    let stderr = text(&plan.stderr);
    assert!(stderr.contains("app.yaml:14:26"), "{stderr}");
    assert!(
        stderr.contains("secret `app/deploy` does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("error: 1 error in 1 file; nothing was changed\n"),
        "{stderr}"
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

/// GitLab's masking rules on values from Secrets Manager (#12): a masked variable whose
/// secret is too short or has whitespace is a located plan error naming the variable and the
/// secret, never the value; nothing is written. With masking-proof values it plans and applies.
#[test]
fn unmaskable_secret_values_are_plan_errors() {
    const SHORT: &str = "sh0rt";
    const SPACED: &str = "has a SECRET space";
    let moto = Moto::start();
    put_secret(
        &moto,
        "app/deploy",
        &serde_json::json!({"token": SHORT}).to_string(),
        true,
    );
    put_secret(&moto, "app/api", SPACED, true);
    let spec = format!(
        "{HIDDEN}  - name: app/api\n"
    )
    .replace(
        "          from: {secret: app/deploy, key: token}\n",
        "          from: {secret: app/deploy, key: token}\n        - key: API_KEY\n          masked: true\n          protected: true\n          from: {secret: app/api}\n        - key: API_KEY_RAW\n          masked: true\n          protected: true\n          raw: true\n          from: {secret: app/api}\n",
    );
    let gitlab = Gitlab::start();
    let dir = desired_state(&[
        ("reconcile.yaml", "gitlab: {url: http://gitlab.invalid}\n"),
        ("app.yaml", &spec),
    ]);
    let env = moto.env();
    gitlab.reset_counters();
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let out = gitlab.reconcile(dir.path(), args, &env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("app.yaml:14:26") && stderr.contains(
                "GitLab would refuse to mask variable `DEPLOY_TOKEN` of `root/app` (scope `*`): the value of secret `app/deploy` (key `token`) cannot be masked (it is shorter than 8 characters)"
            ),
            "{stderr}"
        );
        assert!(
            stderr.contains(
                "GitLab would refuse to mask variable `API_KEY` of `root/app` (scope `*`): the value of secret `app/api` cannot be masked (it contains whitespace)"
            ),
            "{stderr}"
        );
        // Whitespace is refused with `raw: true` too: three variables, three errors.
        assert!(stderr.contains("mask variable `API_KEY_RAW`"), "{stderr}");
        assert!(
            stderr.ends_with("error: 3 errors in 1 file; nothing was changed\n"),
            "{stderr}"
        );
        for value in [SHORT, SPACED] {
            assert!(!stderr.contains(value), "{stderr}");
            assert!(!text(&out.stdout).contains(value));
        }
    }
    let writes: u64 = gitlab
        .counters()
        .by_route
        .iter()
        .filter(|(r, _)| !r.starts_with("GET "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(writes, 0);

    // Positive control: values GitLab can mask (`raw: true` allows `$`, not whitespace).
    put_secret(
        &moto,
        "app/deploy",
        &serde_json::json!({"token": SECRET_KEY}).to_string(),
        false,
    );
    put_secret(&moto, "app/api", "SECRET$with$dollars", false);
    let spec = spec.replace(
        "        - key: API_KEY\n          masked: true\n          protected: true\n          from: {secret: app/api}\n",
        "",
    );
    std::fs::write(dir.path().join("app.yaml"), spec).unwrap();
    let apply = gitlab.reconcile(dir.path(), &["apply", "--auto-approve"], &env);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}{}",
        text(&apply.stdout),
        text(&apply.stderr)
    );
    assert_eq!(
        variable(&gitlab, "app", "API_KEY_RAW")["value"],
        "SECRET$with$dollars"
    );
}

/// Golden files never hold a secret value (scanned for the values these tests use).
#[test]
fn golden_files_hold_no_secret_value() {
    fn scan(dir: &std::path::Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scan(&path);
            } else {
                assert_no_secret(
                    &path.display().to_string(),
                    &std::fs::read_to_string(&path).unwrap_or_default(),
                );
            }
        }
    }
    scan(&root().join("golden"));
}
