use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

/// 100,000 variables (1,000 projects × 100) loaded through the state API, then
/// read back over HTTP: pages, single gets, and a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_one_hundred_thousand_variables() {
    let env = start().await;
    env.project(ADMIN, json!({"name": "template"})).await;
    let mut state = env.emu.dump_state();
    let template = state["projects"]["1"].clone();
    let mut projects = serde_json::Map::new();
    let mut var_id = 1u64;
    for pid in 1..=1000u64 {
        let mut p = template.clone();
        p["id"] = json!(pid);
        p["name"] = json!(format!("p{pid}"));
        p["path"] = json!(format!("p{pid}"));
        let mut vars = serde_json::Map::new();
        for k in 0..100u64 {
            vars.insert(
                var_id.to_string(),
                json!({
                    "id": var_id, "key": format!("KEY_{k}"), "value": format!("value-{pid}-{k}"),
                    "variable_type": "env_var", "protected": false, "masked": false, "hidden": false,
                    "raw": false, "environment_scope": if k % 2 == 0 { "*" } else { "production" },
                    "description": null
                }),
            );
            var_id += 1;
        }
        p["variables"] = Value::Object(vars);
        projects.insert(pid.to_string(), p);
    }
    state["projects"] = Value::Object(projects);
    state["next_id"]["project"] = json!(1001);
    state["next_id"]["variable"] = json!(var_id);
    env.emu.load_state(state).expect("loads");
    assert_eq!(var_id - 1, 100_000);

    let dump = env.emu.dump_state();
    let total: usize = dump["projects"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["variables"].as_object().unwrap().len())
        .sum();
    assert_eq!(total, 100_000);

    for pid in [1u64, 500, 1000] {
        let r = env
            .get(&format!("/projects/{pid}/variables?per_page=100"), ADMIN)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_array().unwrap().len(), 100);
        assert_eq!(r.header("x-total"), Some("100"));
        assert_eq!(r.body[99]["value"], format!("value-{pid}-99"));
        let p2 = env
            .get(
                &format!("/projects/{pid}/variables?per_page=30&page=4"),
                ADMIN,
            )
            .await;
        assert_eq!(p2.body.as_array().unwrap().len(), 10);
        let one = env
            .get(
                &format!("/projects/{pid}/variables/KEY_7?filter[environment_scope]=production"),
                ADMIN,
            )
            .await;
        assert_eq!(one.body["value"], format!("value-{pid}-7"));
    }
    let dup = env
        .post(
            "/projects/1000/variables",
            ADMIN,
            json!({"key": "KEY_3", "value": "x", "environment_scope": "production"}),
        )
        .await;
    assert_eq!(
        dup.status,
        StatusCode::BAD_REQUEST,
        "index rebuilt after load"
    );
    let new = env
        .post(
            "/projects/1000/variables",
            ADMIN,
            json!({"key": "NEW", "value": "x"}),
        )
        .await;
    assert_eq!(new.status, StatusCode::CREATED);
}
