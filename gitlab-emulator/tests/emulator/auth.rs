use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn all_three_token_forms_authenticate() {
    let env = start().await;
    let r = env.get("/user", ADMIN).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["id"], 1);
    assert_eq!(r.body["username"], "root");
    assert_eq!(r.body["is_admin"], true);

    let bearer = env
        .client
        .get(env.url("/user"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    let bearer = into_resp(bearer).await;
    assert_eq!(bearer.status, StatusCode::OK);
    assert_eq!(bearer.body["username"], "alice");
    assert!(
        bearer.body.get("is_admin").is_none(),
        "non-admin self view has no is_admin"
    );
    assert_eq!(bearer.body["email"], "alice@example.com");

    let query = env
        .client
        .get(format!("{}?private_token={BOB}", env.url("/user")))
        .send()
        .await
        .unwrap();
    let query = into_resp(query).await;
    assert_eq!(query.status, StatusCode::OK);
    assert_eq!(query.body["username"], "bob");
}

#[tokio::test]
async fn missing_or_bad_token_is_401() {
    let env = start().await;
    let r = env.get("/user", "nope").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, json!({"message": "401 Unauthorized"}));
    let anon = into_resp(env.client.get(env.url("/projects")).send().await.unwrap()).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.body, json!({"message": "401 Unauthorized"}));
}

#[tokio::test]
async fn version_reports_pinned_ce() {
    let env = start().await;
    let r = env.get("/version", BOB).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"], gitlab_emulator::GITLAB_VERSION);
    assert_eq!(r.body["enterprise"], false);
}

#[tokio::test]
async fn non_admin_gets_403_on_admin_endpoints() {
    let env = start().await;
    let body =
        json!({"username": "x1", "name": "x", "email": "x1@example.org", "password": "12345678"});
    let r = env.post("/users", ALICE, body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, json!({"message": "403 Forbidden"}));
    for path in ["/users/1/block", "/users/1/deactivate"] {
        let r = env.post(path, ALICE, json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let r = env.delete("/users/1", ALICE).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn blocked_users_token_is_refused() {
    let env = start().await;
    let alice = env.get("/user", ALICE).await.body;
    let r = env
        .post(&format!("/users/{}/block", alice["id"]), ADMIN, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = env.get("/user", ALICE).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body,
        json!({"message": "403 Forbidden - Your account has been blocked."})
    );
}

#[tokio::test]
async fn unknown_route_is_grape_404() {
    let env = start().await;
    let r = env.get("/nothing/here", ADMIN).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"error": "404 Not Found"}));
}
