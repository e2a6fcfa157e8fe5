use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn state_file_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let mut cfg = config();
    cfg.state_file = Some(file.clone());
    let env = start_with(cfg.clone()).await;
    let p = env
        .project(
            ADMIN,
            json!({"name": "persisted", "initialize_with_readme": true}),
        )
        .await;
    env.post(
        &format!("/projects/{}/variables", p["id"]),
        ADMIN,
        json!({"key": "K", "value": "hiddenvalue", "masked_and_hidden": true}),
    )
    .await;
    let r = env
        .client
        .post(format!("{}/-/emulator/dump", env.emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(file.exists());
    env.project(ADMIN, json!({"name": "after-dump"})).await;
    env.emu.shutdown().await.unwrap();

    let env2 = start_with(cfg).await;
    let got = env2.get("/projects/root%2Fpersisted", ADMIN).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["default_branch"], "main");
    assert_eq!(
        env2.get("/projects/root%2Fafter-dump", ADMIN).await.status,
        StatusCode::OK,
        "shutdown writes the state file"
    );
    let v = env2
        .get(&format!("/projects/{}/variables/K", p["id"]), ADMIN)
        .await;
    assert_eq!(v.body["hidden"], true);
    assert_eq!(v.body["value"], serde_json::Value::Null);
    let next = env2.project(ADMIN, json!({"name": "next"})).await;
    assert_eq!(next["id"], 3, "id counters persist");
    env2.emu.shutdown().await.unwrap();
}

#[tokio::test]
async fn corrupt_state_file_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    std::fs::write(&file, "not json").unwrap();
    let mut cfg = config();
    cfg.state_file = Some(file);
    let err = gitlab_emulator::Emulator::start(cfg)
        .await
        .err()
        .expect("start fails");
    assert!(
        matches!(err, gitlab_emulator::EmulatorError::StateFormat { .. }),
        "{err:?}"
    );
}
