//! Project and user inventory by update time: `order_by=updated_at`,
//! `updated_after` / `updated_before`, and a truthful `updated_at`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

async fn updated_at(env: &Env, pid: u64) -> String {
    env.get(&format!("/projects/{pid}"), ADMIN).await.body["updated_at"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn projects_by_updated_at() {
    let env = start().await;
    let mut pids = Vec::new();
    for name in ["one", "two", "three"] {
        let p = env
            .project(ADMIN, json!({"name": name, "initialize_with_readme": true}))
            .await;
        pids.push(p["id"].as_u64().unwrap());
        tick().await;
    }
    let [p1, p2, p3] = pids[..] else {
        unreachable!()
    };
    let alice = env.get("/user", ALICE).await.body["id"].as_u64().unwrap();

    // A real change moves updated_at.
    let before = updated_at(&env, p1).await;
    tick().await;
    let r = env
        .put(
            &format!("/projects/{p1}"),
            ADMIN,
            json!({"description": "changed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let after_p1 = updated_at(&env, p1).await;
    assert!(after_p1 > before);

    // Members, protected branches and variables are other records.
    let p2_before = updated_at(&env, p2).await;
    tick().await;
    let r = env
        .post(
            &format!("/projects/{p2}/members"),
            ADMIN,
            json!({"user_id": alice, "access_level": 30}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = env
        .post(
            &format!("/projects/{p2}/protected_branches"),
            ADMIN,
            json!({"name": "release-*"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = env
        .post(
            &format!("/projects/{p2}/variables"),
            ADMIN,
            json!({"key": "K", "value": "v"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(updated_at(&env, p2).await, p2_before);

    // A PUT that changes nothing leaves it too.
    let p3_before = updated_at(&env, p3).await;
    tick().await;
    let r = env
        .put(&format!("/projects/{p3}"), ADMIN, json!({"name": "three"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(updated_at(&env, p3).await, p3_before);

    let r = env
        .get("/projects?order_by=updated_at&sort=asc", ADMIN)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ids(&r.body), vec![p2, p3, p1]);
    let r = env.get("/projects?order_by=updated_at", ADMIN).await;
    assert_eq!(ids(&r.body), vec![p1, p3, p2], "desc by default");

    // Filters: inclusive bounds, paired with order_by=updated_at.
    let q = format!("/projects?order_by=updated_at&updated_after={after_p1}");
    assert_eq!(ids(&env.get(&q, ADMIN).await.body), vec![p1]);
    let q = format!("/projects?order_by=updated_at&sort=asc&updated_before={p3_before}");
    assert_eq!(ids(&env.get(&q, ADMIN).await.body), vec![p2, p3]);
    let q = format!(
        "/projects?order_by=updated_at&updated_after={after_p1}&updated_before={p2_before}"
    );
    assert_eq!(env.get(&q, ADMIN).await.body, json!([]));
    let r = env
        .get(&format!("/projects?updated_after={after_p1}"), ADMIN)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["message"],
        "400 Bad request - `updated_at` filter and `updated_at` sorting must be paired"
    );
    let r = env
        .get(
            "/projects?order_by=id&updated_before=2030-01-01T00:00:00Z",
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = env
        .get(
            "/projects?order_by=updated_at&updated_after=yesterday",
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, json!({"error": "updated_after is invalid"}));

    // Offset pagination over the ordering.
    let r = env
        .get(
            "/projects?order_by=updated_at&sort=asc&per_page=2&page=2",
            ADMIN,
        )
        .await;
    assert_eq!(ids(&r.body), vec![p1]);
    assert_eq!(r.header("x-total"), Some("3"));
    // Keyset pagination on /projects is id-only (Gitlab::Pagination::Keyset.available?).
    let r = env
        .get("/projects?pagination=keyset&order_by=updated_at", ADMIN)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    // Archive and transfer are changes of the record.
    tick().await;
    let r = env
        .post(&format!("/projects/{p2}/archive"), ADMIN, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["archived"], true);
    let archived_at = updated_at(&env, p2).await;
    assert!(archived_at > p2_before);
    let group = env
        .post("/groups", ADMIN, json!({"name": "team", "path": "team"}))
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    tick().await;
    let r = env
        .put(
            &format!("/projects/{p3}/transfer"),
            ADMIN,
            json!({"namespace": "team"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["path_with_namespace"], "team/three");
    assert!(updated_at(&env, p3).await > p3_before);
    assert_eq!(
        env.get("/projects/team%2Fthree", ADMIN).await.status,
        StatusCode::OK
    );
    let r = env
        .put(
            &format!("/projects/{p3}/transfer"),
            ADMIN,
            json!({"namespace": "team"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["message"],
        "Failed to transfer project {:new_namespace=>[\"Project is already in this namespace.\"]}"
    );
}

#[tokio::test]
async fn users_by_updated_at() {
    let env = start().await;
    let a = env.user("ua").await["id"].as_u64().unwrap();
    tick().await;
    let b = env.user("ub").await["id"].as_u64().unwrap();
    tick().await;
    let order = |body: &Value| -> Vec<u64> {
        ids(body)
            .into_iter()
            .filter(|id| *id == a || *id == b)
            .collect()
    };
    let r = env.get("/users?order_by=updated_at&sort=asc", ADMIN).await;
    assert_eq!(order(&r.body), vec![a, b]);
    // A no-op update changes nothing; a real one moves the user last.
    env.put(&format!("/users/{a}"), ADMIN, json!({"name": "ua"}))
        .await;
    let r = env.get("/users?order_by=updated_at&sort=asc", ADMIN).await;
    assert_eq!(order(&r.body), vec![a, b]);
    env.put(&format!("/users/{a}"), ADMIN, json!({"bio": "hello"}))
        .await;
    let r = env.get("/users?order_by=updated_at&sort=asc", ADMIN).await;
    assert_eq!(order(&r.body), vec![b, a]);
    tick().await;
    let r = env
        .post(&format!("/users/{b}/block"), ADMIN, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = env.get("/users?order_by=updated_at&sort=asc", ADMIN).await;
    assert_eq!(order(&r.body), vec![a, b]);
    tick().await;
    env.post(&format!("/users/{a}/unblock"), ADMIN, json!({}))
        .await; // not blocked: no change
    let r = env.get("/users?order_by=updated_at", ADMIN).await;
    assert_eq!(order(&r.body), vec![b, a], "desc");
}

/// `/users` keyset pagination over `updated_at` (and `name`) walks with an
/// opaque `cursor` in `Link: rel="next"`, as `User.supported_keyset_orderings`
/// allows; `/projects` keyset stays id-only.
#[tokio::test]
async fn users_keyset_by_updated_at() {
    let env = start().await;
    let mut created = Vec::new();
    for name in ["k1", "k2", "k3", "k4", "k5"] {
        created.push(env.user(name).await["id"].as_u64().unwrap());
        tick().await;
    }
    // Touch k1 last: it moves to the end of the updated_at order.
    env.put(
        &format!("/users/{}", created[0]),
        ADMIN,
        json!({"bio": "x"}),
    )
    .await;
    let everyone = env
        .get("/users?order_by=updated_at&sort=asc&per_page=100", ADMIN)
        .await;
    let expected = ids(&everyone.body);
    assert_eq!(expected.last(), Some(&created[0]));
    for (sort, expected) in [
        ("asc", expected.clone()),
        ("desc", expected.iter().rev().copied().collect()),
    ] {
        let mut url = env.url(&format!(
            "/users?pagination=keyset&order_by=updated_at&sort={sort}&per_page=2"
        ));
        let mut walked = Vec::new();
        loop {
            let r = into_resp(
                env.client
                    .get(&url)
                    .header("PRIVATE-TOKEN", ADMIN)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert!(r.header("x-total").is_none());
            walked.extend(ids(&r.body));
            let Some(link) = r.header("link") else { break };
            assert!(link.contains("cursor="), "{link}");
            assert!(link.ends_with("rel=\"next\""));
            url = link
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_string();
        }
        assert_eq!(walked, expected, "sort={sort}");
    }
    let r = env
        .get(
            "/users?pagination=keyset&order_by=name&per_page=2&cursor=!!",
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Topics (`project_topics`) and the default branch (the repository's HEAD)
/// are not the project record.
#[tokio::test]
async fn topics_and_default_branch_leave_updated_at() {
    let env = start().await;
    let p = env
        .project(ADMIN, json!({"name": "tp", "initialize_with_readme": true}))
        .await;
    let pid = p["id"].as_u64().unwrap();
    let r = env
        .post(
            &format!("/projects/{pid}/repository/branches"),
            ADMIN,
            json!({"branch": "dev", "ref": "main"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let before = updated_at(&env, pid).await;
    tick().await;
    let r = env
        .put(
            &format!("/projects/{pid}"),
            ADMIN,
            json!({"topics": ["a", "b"], "default_branch": "dev"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["default_branch"], "dev");
    assert_eq!(updated_at(&env, pid).await, before);
}
