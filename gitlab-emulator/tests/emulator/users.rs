use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn fresh_instance_has_root_with_its_namespace() {
    let env = start().await;
    let r = env.get("/users/1", ADMIN).await;
    assert_eq!(r.body["username"], "root");
    assert_eq!(r.body["state"], "active");
    let ns = env.get("/namespaces/root", ADMIN).await;
    assert_eq!(ns.status, StatusCode::OK);
    assert_eq!(ns.body["id"], 1);
    assert_eq!(ns.body["kind"], "user");
    assert_eq!(ns.body["full_path"], "root");
}

#[tokio::test]
async fn create_requires_fields_and_a_password_rule() {
    let env = start().await;
    let r = env.post("/users", ADMIN, json!({"name": "n"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"error": "email is missing, password, reset_password, force_random_password are missing, at least one parameter must be provided, username is missing"})
    );
    let r = env
        .post(
            "/users",
            ADMIN,
            json!({"name": "n", "username": "n", "email": "n@example.org", "password": "short"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"message": {"password": ["is too short (minimum is 8 characters)"]}})
    );
    let r = env
        .post(
            "/users",
            ADMIN,
            json!({"name": "n", "username": "n", "email": "n@example.org", "force_random_password": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["username"], "n");
    assert_eq!(r.body["email"], "n@example.org");
    assert_eq!(r.body["is_admin"], false);
    assert_eq!(r.body["state"], "active");
}

#[tokio::test]
async fn duplicate_email_and_username_are_409() {
    let env = start().await;
    env.user("carol").await;
    let r = env
        .post(
            "/users",
            ADMIN,
            json!({"name": "c", "username": "other", "email": "CAROL@example.org", "password": "12345678"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body, json!({"message": "Email has already been taken"}));
    let r = env
        .post(
            "/users",
            ADMIN,
            json!({"name": "c", "username": "Carol", "email": "c2@example.org", "reset_password": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.body,
        json!({"message": "Username has already been taken"})
    );
    let other = env.user("dave").await;
    let r = env
        .put(
            &format!("/users/{}", other["id"]),
            ADMIN,
            json!({"username": "carol"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn username_filter_is_case_insensitive_and_search_matches() {
    let env = start().await;
    env.user("Erin").await;
    let r = env.get("/users?username=erin", ADMIN).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["username"], "Erin");
    let none = env.get("/users?username=nobody", ADMIN).await;
    assert_eq!(none.body, json!([]));
    let search = env.get("/users?search=ri", ADMIN).await;
    assert_eq!(search.body.as_array().unwrap().len(), 1);
    // Non-admins see the basic entity (no email).
    let basic = env.get("/users?username=erin", ALICE).await;
    assert!(basic.body[0].get("email").is_none());
}

#[tokio::test]
async fn update_changes_profile_but_not_state() {
    let env = start().await;
    let u = env.user("frank").await;
    let path = format!("/users/{}", u["id"]);
    let r = env
        .put(
            &path,
            ADMIN,
            json!({"name": "Frank F", "state": "blocked", "external": "true"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["name"], "Frank F");
    assert_eq!(r.body["external"], true);
    assert_eq!(r.body["state"], "active");
    let missing = env.put("/users/9999", ADMIN, json!({"name": "x"})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body, json!({"message": "404 User Not Found"}));
}

#[tokio::test]
async fn state_actions_follow_gitlab_rules() {
    let env = start().await;
    let u = env.user("gina").await;
    let id = u["id"].as_u64().unwrap();
    let act = |a: &'static str| format!("/users/{id}/{a}");
    let r = env.post(&act("block"), ADMIN, json!({})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::CREATED, json!(true))
    );
    let r = env.post(&act("block"), ADMIN, json!({})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::CREATED, json!(null)),
        "blocking twice is a no-op answered with GitLab's `break` (null)"
    );
    let r = env.post(&act("deactivate"), ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body,
        json!({"message": "403 Forbidden - A blocked user cannot be deactivated by the API"})
    );
    let r = env.post(&act("activate"), ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env.post(&act("unblock"), ADMIN, json!({})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::CREATED, json!(true))
    );
    let r = env.post(&act("deactivate"), ADMIN, json!({})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::CREATED, json!(true))
    );
    let r = env.post(&act("deactivate"), ADMIN, json!({})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::CREATED, json!(null))
    );
    assert_eq!(
        env.get(&format!("/users/{id}"), ADMIN).await.body["state"],
        "deactivated"
    );
    let r = env.post(&act("unblock"), ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body,
        json!({"message": "403 Forbidden - Deactivated users cannot be unblocked by the API"})
    );
    let r = env.post(&act("activate"), ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        env.get(&format!("/users/{id}"), ADMIN).await.body["state"],
        "active"
    );
    let r = env.post("/users/1/block", ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "cannot block yourself");
    assert_eq!(
        r.body,
        json!({"message": "403 Forbidden - The API initiating user cannot be blocked by the API"})
    );
    let r = env.post("/users/424242/block", ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_is_asynchronous_and_user_lingers() {
    let mut config = config();
    config.user_delete_delay = std::time::Duration::from_millis(300);
    let env = start_with(config).await;
    let u = env.user("hank").await;
    let path = format!("/users/{}", u["id"]);
    let r = env.delete(&path, ADMIN).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.text, "");
    let still = env.get(&path, ADMIN).await;
    assert_eq!(still.status, StatusCode::OK, "deleted user lingers briefly");
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if env.get(&path, ADMIN).await.status == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
    }
    assert!(gone, "user eventually disappears");
    assert_eq!(env.get("/users?username=hank", ADMIN).await.body, json!([]));
    assert_eq!(
        env.get("/namespaces/hank", ADMIN).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn form_encoded_create_works() {
    let env = start().await;
    let r = env
        .post_form(
            "/users",
            ADMIN,
            &[
                ("username", "ivy"),
                ("name", "Ivy"),
                ("email", "ivy@example.org"),
                ("reset_password", "true"),
                ("admin", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["is_admin"], true);
}
