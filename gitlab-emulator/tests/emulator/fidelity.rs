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
