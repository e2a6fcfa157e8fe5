use gitlab_emulator::{Config, Edition};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

async fn project(env: &Env) -> String {
    let p = env.project(ADMIN, json!({"name": "pb"})).await;
    format!("/projects/{}/protected_branches", p["id"])
}

#[tokio::test]
async fn protect_get_list_unprotect_with_wildcards() {
    let env = start().await;
    let base = project(&env).await;
    let r = env
        .post(&base, ADMIN, json!({"name": "release/*", "push_access_level": 0, "merge_access_level": 30, "allow_force_push": true}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "release/*");
    assert_eq!(r.body["push_access_levels"][0]["access_level"], 0);
    assert_eq!(
        r.body["push_access_levels"][0]["access_level_description"],
        "No one"
    );
    assert_eq!(
        r.body["merge_access_levels"][0]["access_level_description"],
        "Developers + Maintainers"
    );
    assert_eq!(r.body["allow_force_push"], true);
    assert!(
        r.body.get("unprotect_access_levels").is_none(),
        "CE has no unprotect levels"
    );
    for key in ["id", "deploy_key_id"] {
        assert!(r.body["push_access_levels"][0].get(key).is_some(), "{key}");
    }

    let got = env.get(&format!("{base}/release%2F%2A"), ADMIN).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["name"], "release/*");
    let defaults = env.post(&base, ADMIN, json!({"name": "main"})).await;
    assert_eq!(defaults.body["push_access_levels"][0]["access_level"], 40);
    let list = env.get(&base, ADMIN).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);

    let del = env.delete(&format!("{base}/release%2F*"), ADMIN).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = env.get(&format!("{base}/release%2F*"), ADMIN).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body, json!({"message": "404 Not found"}));
    assert_eq!(
        env.delete(&format!("{base}/nope"), ADMIN).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn conflicts_and_invalid_levels() {
    let env = start().await;
    let base = project(&env).await;
    env.post(&base, ADMIN, json!({"name": "main"})).await;
    let r = env.post(&base, ADMIN, json!({"name": "main"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.body,
        json!({"message": "Protected branch 'main' already exists"})
    );
    let r = env
        .post(&base, ADMIN, json!({"name": "x", "push_access_level": 50}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"error": "push_access_level does not have a valid value"})
    );
    let r = env
        .post(&base, ADMIN, json!({"name": "x", "push_access_level": 40, "allowed_to_push": [{"access_level": 40}]}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body,
        json!({"message": ["Push access levels access level has already been taken"]})
    );
    let r = env
        .post(&base, ADMIN, json!({"push_access_level": 40}))
        .await;
    assert_eq!(r.body, json!({"error": "name is missing"}));
}

#[tokio::test]
async fn ce_patch_only_honours_allow_force_push() {
    let env = start().await;
    let base = project(&env).await;
    let created = env
        .post(
            &base,
            ADMIN,
            json!({"name": "main", "push_access_level": 40}),
        )
        .await;
    let level_id = created.body["push_access_levels"][0]["id"].clone();
    let r = env
        .patch(
            &format!("{base}/main"),
            ADMIN,
            json!({
                "allow_force_push": true,
                "code_owner_approval_required": true,
                "allowed_to_push": [{"id": level_id, "_destroy": true}, {"access_level": 30}]
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["allow_force_push"], true);
    assert!(
        r.body.get("code_owner_approval_required").is_none(),
        "EE-only field"
    );
    assert_eq!(
        r.body["push_access_levels"],
        created.body["push_access_levels"]
    );
}

#[tokio::test]
async fn ee_patch_uses_nested_attributes() {
    let env = start_with(Config {
        edition: Edition::Ee,
        ..config()
    })
    .await;
    let base = project(&env).await;
    let created = env.post(&base, ADMIN, json!({"name": "main"})).await;
    let level_id = created.body["push_access_levels"][0]["id"].clone();
    let r = env
        .patch(
            &format!("{base}/main"),
            ADMIN,
            json!({"allowed_to_push": [{"id": level_id, "_destroy": true}, {"access_level": 30}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let levels = r.body["push_access_levels"].as_array().unwrap();
    assert_eq!(levels.len(), 1);
    assert_eq!(levels[0]["access_level"], 30);
}

#[tokio::test]
async fn developers_cannot_manage_protection() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "pb2"})).await;
    let alice = env.get("/user", ALICE).await.body;
    env.post(
        &format!("/projects/{}/members", p["id"]),
        ADMIN,
        json!({"user_id": alice["id"], "access_level": 30}),
    )
    .await;
    let r = env
        .get(&format!("/projects/{}/protected_branches", p["id"]), ALICE)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
