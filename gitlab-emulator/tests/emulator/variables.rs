use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

async fn project(env: &Env) -> String {
    let p = env.project(ADMIN, json!({"name": "vars"})).await;
    format!("/projects/{}/variables", p["id"])
}

#[tokio::test]
async fn create_read_update_delete() {
    let env = start().await;
    let base = project(&env).await;
    let r = env
        .post(
            &base,
            ADMIN,
            json!({"key": "TOKEN", "value": "abc", "protected": true, "description": "d"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.body,
        json!({"variable_type": "env_var", "key": "TOKEN", "value": "abc", "hidden": false,
               "protected": true, "masked": false, "raw": false, "environment_scope": "*", "description": "d"})
    );
    let got = env.get(&format!("{base}/TOKEN"), ADMIN).await;
    assert_eq!(got.body, r.body);
    let up = env
        .put(
            &format!("{base}/TOKEN"),
            ADMIN,
            json!({"value": "xyz", "variable_type": "file"}),
        )
        .await;
    assert_eq!(up.status, StatusCode::OK);
    assert_eq!(up.body["value"], "xyz");
    assert_eq!(up.body["variable_type"], "file");
    assert_eq!(up.body["protected"], true);
    let del = env.delete(&format!("{base}/TOKEN"), ADMIN).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = env.get(&format!("{base}/TOKEN"), ADMIN).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body, json!({"message": "404 Variable Not Found"}));
}

#[tokio::test]
async fn scopes_duplicates_and_filters() {
    let env = start().await;
    let base = project(&env).await;
    for scope in ["*", "production", "staging"] {
        let r = env
            .post(
                &base,
                ADMIN,
                json!({"key": "URL", "value": format!("v-{scope}"), "environment_scope": scope}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let dup = env
        .post(
            &base,
            ADMIN,
            json!({"key": "URL", "value": "again", "environment_scope": "production"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        dup.body,
        json!({"message": {"key": ["(URL) has already been taken"]}})
    );

    let multi = json!({"message": "There are multiple variables with provided parameters. Please use 'filter[environment_scope]'"});
    let r = env.get(&format!("{base}/URL"), ADMIN).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body, multi);
    let r = env
        .put(&format!("{base}/URL"), ADMIN, json!({"value": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = env.delete(&format!("{base}/URL"), ADMIN).await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let r = env
        .get(
            &format!("{base}/URL?filter%5Benvironment_scope%5D=production"),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["value"], "v-production");
    let r = env
        .put(
            &format!("{base}/URL"),
            ADMIN,
            json!({"value": "new-staging", "filter": {"environment_scope": "staging"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["environment_scope"], "staging");
    assert_eq!(r.body["value"], "new-staging");
    let r = env
        .delete(
            &format!("{base}/URL?filter[environment_scope]=staging"),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let list = env.get(&base, ADMIN).await;
    let scopes: Vec<Value> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["environment_scope"].clone())
        .collect();
    assert_eq!(scopes, vec![json!("*"), json!("production")]);
    let r = env
        .get(
            &format!("{base}/URL?filter[environment_scope]=nowhere"),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn masking_rules() {
    let env = start().await;
    let base = project(&env).await;
    let invalid = json!({"message": {"value": ["is invalid"]}});
    for (value, raw) in [
        ("short", false),
        ("has space in it", false),
        ("has$dollar", false),
        ("tab\there!", true),
    ] {
        let r = env
            .post(
                &base,
                ADMIN,
                json!({"key": "M", "value": value, "masked": true, "raw": raw}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{value}");
        assert_eq!(r.body, invalid, "{value}");
    }
    let ok = env
        .post(
            &base,
            ADMIN,
            json!({"key": "M", "value": "abc:def@ghi.jk~-", "masked": true}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let raw_ok = env
        .post(
            &base,
            ADMIN,
            json!({"key": "R", "value": "has$dollar!", "masked": "true", "raw": "true"}),
        )
        .await;
    assert_eq!(raw_ok.status, StatusCode::CREATED);
    let r = env
        .put(&format!("{base}/M"), ADMIN, json!({"value": "bad value"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, invalid);
    let r = env
        .post(&base, ADMIN, json!({"key": "bad-key", "value": "x"}))
        .await;
    assert_eq!(
        r.body,
        json!({"message": {"key": ["can contain only letters, digits and '_'."]}})
    );
    let r = env.post(&base, ADMIN, json!({"key": "K"})).await;
    assert_eq!(r.body, json!({"error": "value is missing"}));
}

#[tokio::test]
async fn hidden_variables() {
    let env = start().await;
    let base = project(&env).await;
    let r = env
        .post(
            &base,
            ADMIN,
            json!({"key": "SECRET", "value": "supersecret", "masked_and_hidden": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["hidden"], true);
    assert_eq!(r.body["masked"], true);
    assert_eq!(r.body["value"], Value::Null);
    let got = env.get(&format!("{base}/SECRET"), ADMIN).await;
    assert_eq!(got.body["value"], Value::Null);
    let list = env.get(&base, ADMIN).await;
    assert_eq!(list.body[0]["value"], Value::Null);

    let r = env
        .put(&format!("{base}/SECRET"), ADMIN, json!({"masked": false}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"message": {"base": ["The visibility setting cannot be changed for masked and hidden variables."]}})
    );
    let r = env
        .put(
            &format!("{base}/SECRET"),
            ADMIN,
            json!({"value": "anothersecret"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "value can still be replaced");
    assert_eq!(r.body["value"], Value::Null);

    env.post(&base, ADMIN, json!({"key": "PLAIN", "value": "plainvalue"}))
        .await;
    let r = env
        .put(
            &format!("{base}/PLAIN"),
            ADMIN,
            json!({"masked_and_hidden": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"message": {"base": ["Only new variables can be set as masked and hidden."]}})
    );
    let r = env
        .put(&format!("{base}/PLAIN"), ADMIN, json!({"masked": true}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a visible variable may become masked"
    );
}

#[tokio::test]
async fn variables_need_maintainer() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "v2"})).await;
    let alice = env.get("/user", ALICE).await.body;
    env.post(
        &format!("/projects/{}/members", p["id"]),
        ADMIN,
        json!({"user_id": alice["id"], "access_level": 30}),
    )
    .await;
    let r = env
        .get(&format!("/projects/{}/variables", p["id"]), ALICE)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env
        .get(&format!("/projects/{}/variables", p["id"]), BOB)
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "non-members do not see private projects"
    );
}
