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

#[tokio::test]
async fn malformed_requests_get_grape_errors() {
    let env = start().await;
    let r = into_resp(
        env.client
            .post(env.url("/projects"))
            .header("PRIVATE-TOKEN", ADMIN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"error": "message body does not match declared format"})
    );
    let r = env.get("/users/abc", ADMIN).await;
    assert_eq!(r.body, json!({"error": "id is invalid"}));
    let r = env.get("/projects?per_page=lots", ADMIN).await;
    assert_eq!(r.body, json!({"error": "per_page is invalid"}));
    let r = env.patch("/projects", ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body, json!({"error": "405 Not Allowed"}));
    let r = env
        .post(
            "/projects",
            ADMIN,
            json!({"name": "x", "initialize_with_readme": "maybe"}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"error": "initialize_with_readme is invalid"})
    );
}

#[tokio::test]
async fn unnamed_user_tokens_get_positional_usernames() {
    let env = start_with(gitlab_emulator::Config {
        admin_tokens: vec![ADMIN.into()],
        user_tokens: vec![
            "first-token".into(),
            "named=second-token".into(),
            "third-token".into(),
        ],
        ..gitlab_emulator::Config::default()
    })
    .await;
    assert_eq!(
        env.get("/user", "first-token").await.body["username"],
        "user1"
    );
    assert_eq!(
        env.get("/user", "second-token").await.body["username"],
        "named"
    );
    assert_eq!(
        env.get("/user", "third-token").await.body["username"],
        "user3"
    );
}

#[tokio::test]
async fn form_encoded_protect_with_string_levels() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "form"})).await;
    let r = env
        .post_form(
            &format!("/projects/{}/protected_branches", p["id"]),
            ADMIN,
            &[
                ("name", "dev"),
                ("push_access_level", "30"),
                ("allow_force_push", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["push_access_levels"][0]["access_level"], 30);
    assert_eq!(r.body["allow_force_push"], true);
}
