use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn add_get_update_remove_member() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "m"})).await;
    let base = format!("/projects/{}/members", p["id"]);
    let u = env.user("mona").await;
    let r = env
        .post(
            &base,
            ADMIN,
            json!({"user_id": u["id"], "access_level": 30, "expires_at": "2999-01-01"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["id"], u["id"]);
    assert_eq!(r.body["username"], "mona");
    assert_eq!(r.body["state"], "active");
    assert_eq!(r.body["access_level"], 30);
    assert_eq!(r.body["expires_at"], "2999-01-01");

    let dup = env
        .post(
            &base,
            ADMIN,
            json!({"user_id": u["id"], "access_level": 40}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.body, json!({"message": "Member already exists"}));

    let unknown = env
        .post(&base, ADMIN, json!({"user_id": 9999, "access_level": 30}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body, json!({"message": "404 User Not Found"}));

    let bad = env
        .post(
            &base,
            ADMIN,
            json!({"user_id": u["id"], "access_level": 35}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.body,
        json!({"error": "access_level does not have a valid value"})
    );

    let one = env.get(&format!("{base}/{}", u["id"]), ADMIN).await;
    assert_eq!(one.body["access_level"], 30);
    let up = env
        .put(
            &format!("{base}/{}", u["id"]),
            ADMIN,
            json!({"access_level": 40}),
        )
        .await;
    assert_eq!(up.status, StatusCode::OK);
    assert_eq!(up.body["access_level"], 40);

    let list = env.get(&base, ADMIN).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        2,
        "root (owner) and mona"
    );

    let del = env.delete(&format!("{base}/{}", u["id"]), ADMIN).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = env.get(&format!("{base}/{}", u["id"]), ADMIN).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body, json!({"message": "404 Not found"}));
    let again = env.delete(&format!("{base}/{}", u["id"]), ADMIN).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn username_parameter_and_missing_params() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "m2"})).await;
    let base = format!("/projects/{}/members", p["id"]);
    let r = env
        .post(
            &base,
            ADMIN,
            json!({"username": "ALICE", "access_level": 20}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["username"], "alice");
    let r = env.post(&base, ADMIN, json!({"access_level": 20})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"error": "user_id, username are missing, exactly one parameter must be provided"})
    );
    let bob = env.get("/user", BOB).await.body;
    let r = env.post(&base, ADMIN, json!({"user_id": bob["id"]})).await;
    assert_eq!(r.body, json!({"error": "access_level is missing"}));
}

#[tokio::test]
async fn maintainer_manages_members_developer_cannot() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "m3"})).await;
    let base = format!("/projects/{}/members", p["id"]);
    let alice = env.get("/user", ALICE).await.body;
    let bob = env.get("/user", BOB).await.body;
    env.post(
        &base,
        ADMIN,
        json!({"user_id": alice["id"], "access_level": 40}),
    )
    .await;
    env.post(
        &base,
        ADMIN,
        json!({"user_id": bob["id"], "access_level": 30}),
    )
    .await;
    let carl = env.user("carl").await;
    let r = env
        .post(
            &base,
            BOB,
            json!({"user_id": carl["id"], "access_level": 30}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env
        .post(
            &base,
            ALICE,
            json!({"user_id": carl["id"], "access_level": 50}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a maintainer cannot grant Owner"
    );
    let r = env
        .post(
            &base,
            ALICE,
            json!({"user_id": carl["id"], "access_level": 30}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = env.get(&base, BOB).await;
    assert_eq!(r.status, StatusCode::OK, "members can list members");
}

/// GitLab makes the holder of a personal namespace an Owner of each project
/// created there (also when an admin creates it), and `ProjectMemberPolicy`
/// prevents updating or removing that membership for everyone, admins
/// included (`Members::UpdateService`/`DestroyService` raise
/// `AccessDeniedError`: 403 `{"message":"403 Forbidden"}`).
#[tokio::test]
async fn the_holder_of_a_personal_namespace_cannot_be_updated_or_removed() {
    let env = start().await;
    let mona = env.user("mona").await;
    let ns = env.get("/namespaces/mona", ADMIN).await;
    assert_eq!(ns.body["kind"], "user", "{}", ns.text);
    let p = env
        .project(
            ADMIN,
            json!({"name": "sandbox", "namespace_id": ns.body["id"]}),
        )
        .await;
    let base = format!("/projects/{}/members", p["id"]);
    let list = env.get(&base, ADMIN).await;
    let members: Vec<(String, i64)> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap().to_string(),
                m["access_level"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        members,
        [("mona".to_string(), 50)],
        "only the holder, as Owner"
    );

    let holder = format!("{base}/{}", mona["id"]);
    for level in [30, 50] {
        let r = env
            .put(&holder, ADMIN, json!({"access_level": level}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.body, json!({"message": "403 Forbidden"}));
    }
    let r = env.delete(&holder, ADMIN).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.body, json!({"message": "403 Forbidden"}));
    let still = env.get(&holder, ADMIN).await;
    assert_eq!(still.body["access_level"], 50);

    // Positive control: another Owner of the same project can be changed and removed.
    let ivan = env.user("ivan").await;
    let r = env
        .post(
            &base,
            ADMIN,
            json!({"user_id": ivan["id"], "access_level": 50}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let other = format!("{base}/{}", ivan["id"]);
    let r = env.put(&other, ADMIN, json!({"access_level": 30})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = env.delete(&other, ADMIN).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Not a member: 404 before the policy.
    let r = env.put(&other, ADMIN, json!({"access_level": 30})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
