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
