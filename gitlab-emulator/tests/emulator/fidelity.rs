//! Fidelity fixes from an outside audit, each checked against GitLab's source.

use gitlab_emulator::{Config, Edition};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

/// `lib/api/entities/member.rb`: CE members have no `member_role`,
/// `group_saml_identity`, `membership_state` or `email` (all from
/// `EE::API::Entities::Member`; `member_role` is `expose_nil: false` even there).
#[tokio::test]
async fn ce_members_carry_no_ee_fields() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "mem"})).await;
    let base = format!("/projects/{}/members", p["id"]);
    let u = env.user("mia").await;
    let add = env
        .post(
            &base,
            ADMIN,
            json!({"user_id": u["id"], "access_level": 30}),
        )
        .await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.text);
    let list = env.get(&base, ADMIN).await;
    let one = env.get(&format!("{base}/{}", u["id"]), ADMIN).await;
    for m in list
        .body
        .as_array()
        .unwrap()
        .iter()
        .chain([&add.body, &one.body])
    {
        for key in [
            "member_role",
            "group_saml_identity",
            "membership_state",
            "email",
        ] {
            assert!(m.get(key).is_none(), "{key} in {m}");
        }
        assert!(m.get("access_level").is_some());
        assert!(m.get("created_by").is_some());
    }
}

#[tokio::test]
async fn ee_members_have_membership_state_but_no_null_member_role() {
    let env = start_with(Config {
        edition: Edition::Ee,
        ..config()
    })
    .await;
    let p = env.project(ADMIN, json!({"name": "mem"})).await;
    let list = env
        .get(&format!("/projects/{}/members", p["id"]), ADMIN)
        .await;
    let m = &list.body[0];
    assert_eq!(m["membership_state"], "active");
    assert!(m.get("member_role").is_none());
    assert!(m.get("group_saml_identity").is_none());
    assert_eq!(m["email"], "admin@example.com");
}

/// `lib/api/entities/protected_branch.rb`, `protected_ref_access.rb`: CE has no
/// `code_owner_approval_required` and no `user_id`/`group_id` on access levels;
/// merge levels have no `deploy_key_id` column.
#[tokio::test]
async fn ce_protected_branches_carry_no_ee_fields() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "pbf"})).await;
    let base = format!("/projects/{}/protected_branches", p["id"]);
    let r = env.post(&base, ADMIN, json!({"name": "main"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let list = env.get(&base, ADMIN).await;
    for b in [&r.body, &list.body[0]] {
        assert!(b.get("code_owner_approval_required").is_none(), "{b}");
        for l in b["push_access_levels"]
            .as_array()
            .unwrap()
            .iter()
            .chain(b["merge_access_levels"].as_array().unwrap())
        {
            assert!(
                l.get("user_id").is_none() && l.get("group_id").is_none(),
                "{l}"
            );
        }
        assert!(b["merge_access_levels"][0].get("deploy_key_id").is_none());
    }
    let ee = start_with(Config {
        edition: Edition::Ee,
        ..config()
    })
    .await;
    let p = ee.project(ADMIN, json!({"name": "pbf"})).await;
    let r = ee
        .post(
            &format!("/projects/{}/protected_branches", p["id"]),
            ADMIN,
            json!({"name": "main"}),
        )
        .await;
    assert_eq!(r.body["code_owner_approval_required"], false);
    assert!(r.body["push_access_levels"][0].get("user_id").is_some());
}

/// `lib/api/entities/basic_project_details.rb`: `expose :default_branch_or_main,
/// as: :default_branch` — an empty project reports `main`, not `null`.
#[tokio::test]
async fn empty_project_default_branch_is_main() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "empty"})).await;
    assert_eq!(p["empty_repo"], true);
    assert_eq!(p["default_branch"], "main");
    assert_eq!(p["readme_url"], serde_json::Value::Null);
    let got = env.get(&format!("/projects/{}", p["id"]), ADMIN).await;
    assert_eq!(got.body["default_branch"], "main");
}

/// `app/services/branches/create_service.rb`: an empty repository first gets a
/// README on `default_branch_or_main` (whose first push protects it), then the
/// branch is created from `ref`.
#[tokio::test]
async fn branch_in_empty_project_commits_readme_first() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "e2"})).await;
    let base = format!("/projects/{}", p["id"]);
    let r = env
        .post(
            &format!("{base}/repository/branches"),
            ADMIN,
            json!({"branch": "feature", "ref": "main"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "feature");
    let got = env.get(&base, ADMIN).await.body;
    assert_eq!(got["empty_repo"], false);
    assert_eq!(got["default_branch"], "main");
    let branches = env.get(&format!("{base}/repository/branches"), ADMIN).await;
    let names: Vec<&str> = branches
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["feature", "main"]);
    let main = env
        .get(&format!("{base}/repository/branches/main"), ADMIN)
        .await;
    assert_eq!(main.body["protected"], true);
    assert_eq!(main.body["default"], true);
    let pb = env.get(&format!("{base}/protected_branches"), ADMIN).await;
    assert_eq!(pb.body.as_array().unwrap().len(), 1);
    assert_eq!(pb.body[0]["name"], "main");
    assert_eq!(pb.body[0]["push_access_levels"][0]["access_level"], 40);

    // In an empty project whose ref is not the default branch, the README is
    // still committed, then the unknown ref fails.
    let q = env.project(ADMIN, json!({"name": "e3"})).await;
    let bad = env
        .post(
            &format!("/projects/{}/repository/branches", q["id"]),
            ADMIN,
            json!({"branch": "x", "ref": "nope"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.body,
        json!({"message": "Failed to create branch 'x': invalid reference name 'nope'"})
    );
    let q = env.get(&format!("/projects/{}", q["id"]), ADMIN).await.body;
    assert_eq!(q["empty_repo"], false);
}

/// `app/models/concerns/project_features_compatibility.rb`: `issues_enabled=`,
/// `wiki_enabled=`, `builds_enabled=` (`jobs_enabled`) … write the access level;
/// the entity's boolean is derived from it.
#[tokio::test]
async fn feature_booleans_and_access_levels_are_one_setting() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "feat"})).await;
    let path = format!("/projects/{}", p["id"]);
    let r = env
        .put(
            &path,
            ADMIN,
            json!({"issues_enabled": false, "wiki_access_level": "disabled", "jobs_enabled": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["issues_enabled"], false);
    assert_eq!(r.body["issues_access_level"], "disabled");
    assert_eq!(r.body["wiki_enabled"], false);
    assert_eq!(r.body["wiki_access_level"], "disabled");
    assert_eq!(r.body["jobs_enabled"], false);
    assert_eq!(r.body["builds_access_level"], "disabled");

    let r = env
        .put(
            &path,
            ADMIN,
            json!({"issues_access_level": "private", "wiki_enabled": true, "builds_access_level": "enabled"}),
        )
        .await;
    assert_eq!(r.body["issues_enabled"], true);
    assert_eq!(r.body["issues_access_level"], "private");
    assert_eq!(r.body["wiki_enabled"], true);
    assert_eq!(r.body["wiki_access_level"], "enabled");
    assert_eq!(r.body["jobs_enabled"], true);
    let r = env
        .put(&path, ADMIN, json!({"container_registry_enabled": false}))
        .await;
    assert_eq!(r.body["container_registry_access_level"], "disabled");
    assert_eq!(r.body["container_registry_enabled"], false);
}

/// `lib/api/projects.rb` `PUT :id` with `lib/api/helpers/projects_helpers.rb`:
/// documented settings are kept (never accepted and dropped), and a request
/// with none of `update_params_at_least_one_of` is Grape's 400.
#[tokio::test]
async fn project_update_keeps_documented_settings_and_needs_one() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "upd2"})).await;
    let path = format!("/projects/{}", p["id"]);
    assert_eq!(p["auto_devops_enabled"], true);
    assert_eq!(p["emails_disabled"], false);
    assert_eq!(p["ci_default_git_depth"], 20);
    let r = env
        .put(
            &path,
            ADMIN,
            json!({
                "emails_disabled": true,
                "auto_devops_enabled": false,
                "ci_default_git_depth": 5,
                "ci_forward_deployment_enabled": false,
                "ci_separated_caches": false,
                "keep_latest_artifact": false,
                "build_timeout": 600,
                "auto_cancel_pending_pipelines": "disabled",
                "forking_access_level": "private",
                "pages_access_level": "enabled",
                "public_builds": false,
                "ci_pipeline_variables_minimum_override_role": "maintainer",
                "ci_id_token_sub_claim_components": ["project_path", "ref_type"],
                "container_expiration_policy_attributes": {"enabled": true, "keep_n": 5},
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = env.get(&path, ADMIN).await.body;
    for b in [&r.body, &got] {
        assert_eq!(b["emails_disabled"], true);
        assert_eq!(b["emails_enabled"], false);
        assert_eq!(b["auto_devops_enabled"], false);
        assert_eq!(b["ci_default_git_depth"], 5);
        assert_eq!(b["ci_forward_deployment_enabled"], false);
        assert_eq!(b["ci_separated_caches"], false);
        assert_eq!(b["keep_latest_artifact"], false);
        assert_eq!(b["build_timeout"], 600);
        assert_eq!(b["auto_cancel_pending_pipelines"], "disabled");
        assert_eq!(b["forking_access_level"], "private");
        assert_eq!(b["pages_access_level"], "enabled");
        assert_eq!(b["public_jobs"], false);
        assert_eq!(
            b["ci_pipeline_variables_minimum_override_role"],
            "maintainer"
        );
        assert_eq!(
            b["ci_id_token_sub_claim_components"],
            json!(["project_path", "ref_type"])
        );
        assert_eq!(b["container_expiration_policy"]["enabled"], true);
        assert_eq!(b["container_expiration_policy"]["keep_n"], 5);
    }

    let none = env.put(&path, ADMIN, json!({})).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    let msg = none.body["error"].as_str().unwrap();
    assert!(
        msg.starts_with("allow_merge_on_skipped_pipeline, analytics_access_level, "),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "container_registry_enabled are missing, at least one parameter must be provided"
        ),
        "{msg}"
    );
    let unknown = env.put(&path, ADMIN, json!({"no_such_setting": 1})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let bad = env
        .put(&path, ADMIN, json!({"build_timeout": "soon"}))
        .await;
    assert_eq!(bad.body, json!({"error": "build_timeout is invalid"}));
    let bad = env
        .put(&path, ADMIN, json!({"pages_access_level": "everyone"}))
        .await;
    assert_eq!(
        bad.body,
        json!({"error": "pages_access_level does not have a valid value"})
    );
}

/// `lib/api/helpers.rb` `find_project`: `find_by_full_path(id, follow_redirects:
/// true)` — a renamed project is still found (200) under its old path until a
/// project takes that path; redirects survive a state dump and load.
#[tokio::test]
async fn renamed_project_is_found_under_its_old_path() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "old"})).await;
    let r = env
        .put(
            &format!("/projects/{}", p["id"]),
            ADMIN,
            json!({"path": "new", "name": "new"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let old = env.get("/projects/root%2Fold", ADMIN).await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.text);
    assert_eq!(old.body["id"], p["id"]);
    assert_eq!(old.body["path_with_namespace"], "root/new");
    let vars = env.get("/projects/root%2FOLD/variables", ADMIN).await;
    assert_eq!(vars.status, StatusCode::OK);

    let dump = env.emu.dump_state();
    env.emu.load_state(dump).unwrap();
    assert_eq!(
        env.get("/projects/root%2Fold", ADMIN).await.status,
        StatusCode::OK
    );

    // A new project at the old path takes it over.
    let q = env.project(ADMIN, json!({"name": "old"})).await;
    let now = env.get("/projects/root%2Fold", ADMIN).await;
    assert_eq!(now.body["id"], q["id"]);
    // Once the renamed project is gone, nothing redirects to it.
    let r = env
        .put(
            &format!("/projects/{}", q["id"]),
            ADMIN,
            json!({"path": "other", "name": "other"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        env.get("/projects/root%2Fold", ADMIN).await.body["id"],
        q["id"]
    );
}

/// Rack::Attack's throttled headers (`Gitlab::RackAttack`): a 429 reports more
/// requests observed than the limit, nothing remaining, and a reset time that
/// agrees with `Retry-After` (the end of the fixed window).
#[tokio::test]
async fn throttled_headers_are_consistent() {
    let mut cfg = config();
    cfg.rate_limit = Some(gitlab_emulator::RateLimit {
        requests_per_minute: 3,
        headers: true,
        ..gitlab_emulator::RateLimit::default()
    });
    let env = start_with(cfg).await;
    // All six requests must fall in one fixed window.
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if 60 - now % 60 >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for _ in 0..3 {
        assert_eq!(env.get("/user", ADMIN).await.status, StatusCode::OK);
    }
    for n in 4..7u64 {
        let r = env.get("/user", ADMIN).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        let num = |h: &str| r.header(h).unwrap().parse::<u64>().unwrap();
        assert_eq!(num("ratelimit-observed"), n);
        assert!(num("ratelimit-observed") > num("ratelimit-limit"));
        assert_eq!(num("ratelimit-remaining"), 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let delta = num("ratelimit-reset") as i64 - (now + num("retry-after")) as i64;
        assert!(delta.abs() <= 1, "reset vs retry-after: {delta}");
    }
}

/// `PUT /-/emulator/state` takes states well above axum's default 2 MB body
/// limit (a 1,000-project state is about 3.25 MB).
#[tokio::test]
async fn big_states_load_over_http() {
    let env = start().await;
    let mut state = env.emu.dump_state();
    let bio = "x".repeat(5 * 1024 * 1024);
    state["users"]["1"]["bio"] = json!(bio);
    let r = env
        .control(reqwest::Method::PUT, "/state", Some(state))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let root = env.get("/users/1", ADMIN).await;
    assert_eq!(root.body["bio"].as_str().unwrap().len(), bio.len());
}

fn multipart(fields: &[(&str, &str)]) -> (String, String) {
    let boundary = "----emulatorBoundary7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Grape (through Rack) takes `multipart/form-data` wherever it takes form
/// parameters (python-gitlab sends it for uploads; curl `-F`).
#[tokio::test]
async fn multipart_bodies_are_parameters() {
    let env = start().await;
    let (ct, body) = multipart(&[
        ("name", "multi part"),
        ("description", "line one\r\nline two"),
        ("topics[]", "a"),
        ("topics[]", "b"),
    ]);
    let r = env
        .client
        .post(env.url("/projects"))
        .header("PRIVATE-TOKEN", ADMIN)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let r = into_resp(r).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["path"], "multi-part");
    assert_eq!(r.body["description"], "line one\r\nline two");
    assert_eq!(r.body["topics"], json!(["a", "b"]));

    let (ct, body) = multipart(&[("key", "K"), ("value", "v=1&2"), ("masked", "false")]);
    let v = env
        .client
        .post(env.url(&format!("/projects/{}/variables", r.body["id"])))
        .header("PRIVATE-TOKEN", ADMIN)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let v = into_resp(v).await;
    assert_eq!(v.status, StatusCode::CREATED, "{}", v.text);
    assert_eq!(v.body["value"], "v=1&2");

    let bad = env
        .client
        .post(env.url("/projects"))
        .header("PRIVATE-TOKEN", ADMIN)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

/// `DELETE /projects/:id/repository/branches/:branch` (python-gitlab's
/// functional `test_branch_name_with_period`): 204, then the branch is gone;
/// an unknown branch is a 404; the default branch and protected branches are
/// refused (400, the pre-receive check's message).
#[tokio::test]
async fn delete_branch() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "del"})).await;
    let base = format!("/projects/{}/repository/branches", p["id"]);
    for b in ["my.branch.name", "release-1"] {
        let r = env
            .post(&base, ADMIN, json!({"branch": b, "ref": "main"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let got = env.get(&format!("{base}/my.branch.name"), ADMIN).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["name"], "my.branch.name");

    let del = env.delete(&format!("{base}/my.branch.name"), ADMIN).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    let gone = env.get(&format!("{base}/my.branch.name"), ADMIN).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = env.delete(&format!("{base}/my.branch.name"), ADMIN).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body, json!({"message": "404 Branch Not Found"}));

    let main = env.delete(&format!("{base}/main"), ADMIN).await;
    assert_eq!(main.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        main.body,
        json!({"message": "The default branch of a project cannot be deleted."})
    );

    let pb = env
        .post(
            &format!("/projects/{}/protected_branches", p["id"]),
            ADMIN,
            json!({"name": "release-*"}),
        )
        .await;
    assert_eq!(pb.status, StatusCode::CREATED, "{}", pb.text);
    let protected = env.delete(&format!("{base}/release-1"), ADMIN).await;
    assert_eq!(protected.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        protected.body,
        json!({"message": "You can only delete protected branches using the web interface."})
    );
    assert_eq!(
        env.get(&format!("{base}/release-1"), ADMIN).await.status,
        StatusCode::OK
    );
}
