use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn cp(env: &Env, path: &str) -> String {
    format!("{}/-/emulator{path}", env.emu.url())
}

#[tokio::test]
async fn counters_by_route_template() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "c"})).await;
    env.get(&format!("/projects/{}/variables", p["id"]), ADMIN)
        .await;
    env.get("/projects/root%2Fc/variables", ADMIN).await;
    env.get("/nope", ADMIN).await;
    let c = env.emu.counters();
    assert_eq!(c.get("POST /api/v4/projects"), 1);
    assert_eq!(c.get("GET /api/v4/projects/:id/variables"), 2);
    assert_eq!(c.total, 3, "unknown routes are not counted: {c:?}");
    let http: Value = env
        .client
        .get(cp(&env, "/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http["by_route"]["GET /api/v4/projects/:id/variables"], 2);
    assert_eq!(http["total"], 3);
    let del = env
        .client
        .delete(cp(&env, "/counters"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert_eq!(env.emu.counters().total, 0);
    env.get("/version", ADMIN).await;
    env.emu.reset_counters();
    assert_eq!(env.emu.counters().total, 0);
}

#[tokio::test]
async fn reset_and_state_roundtrip_over_http() {
    let env = start().await;
    env.project(ADMIN, json!({"name": "keep"})).await;
    let dump = env
        .client
        .get(cp(&env, "/state"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = env.client.post(cp(&env, "/reset")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(env.get("/projects", ADMIN).await.body, json!([]));
    assert_eq!(
        env.get("/user", ALICE).await.status,
        StatusCode::OK,
        "tokens survive reset"
    );
    let r = env
        .client
        .put(cp(&env, "/state"))
        .body(dump)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        env.get("/projects/root%2Fkeep", ADMIN).await.status,
        StatusCode::OK
    );
    let bad = env
        .client
        .put(cp(&env, "/state"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let nofile = env.client.post(cp(&env, "/dump")).send().await.unwrap();
    assert_eq!(nofile.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn faults_over_http() {
    let env = start().await;
    let r = env
        .client
        .put(cp(&env, "/faults"))
        .json(&json!({"seed": 5, "error_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(env.get("/version", ADMIN).await.status.is_server_error());
    let got: Value = env
        .client
        .get(cp(&env, "/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["seed"], 5);
    let bad = env
        .client
        .put(cp(&env, "/faults"))
        .json(&json!({"error_rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let unknown = env
        .client
        .put(cp(&env, "/faults"))
        .json(&json!({"eror_rate": 0.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        StatusCode::BAD_REQUEST,
        "unknown keys are refused"
    );
    let r = env.client.delete(cp(&env, "/faults")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(env.get("/version", ADMIN).await.status, StatusCode::OK);
}
