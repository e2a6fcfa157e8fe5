use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

/// 500 concurrent clients, each with its own connection, each creating a
/// project, reading it back, adding a variable and listing: all must succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_clients() {
    let env = start().await;
    let base = env.emu.url();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let api = format!("{base}/api/v4");
            let r = client
                .post(format!("{api}/projects"))
                .header("PRIVATE-TOKEN", ADMIN)
                .json(&json!({"name": format!("c{i}")}))
                .send()
                .await?;
            let status = r.status();
            let p: serde_json::Value = r.json().await?;
            let mut statuses = vec![status];
            let id = p["id"].clone();
            statuses.push(
                client
                    .get(format!("{api}/projects/{id}"))
                    .header("PRIVATE-TOKEN", ADMIN)
                    .send()
                    .await?
                    .status(),
            );
            statuses.push(
                client
                    .post(format!("{api}/projects/{id}/variables"))
                    .header("PRIVATE-TOKEN", ADMIN)
                    .json(&json!({"key": "K", "value": "v"}))
                    .send()
                    .await?
                    .status(),
            );
            statuses.push(
                client
                    .get(format!("{api}/projects?per_page=5"))
                    .header("PRIVATE-TOKEN", ADMIN)
                    .send()
                    .await?
                    .status(),
            );
            Ok::<_, reqwest::Error>(statuses)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let statuses = t.await.expect("task").expect("no transport error");
        assert_eq!(
            statuses,
            vec![
                StatusCode::CREATED,
                StatusCode::OK,
                StatusCode::CREATED,
                StatusCode::OK
            ]
        );
        ok += 1;
    }
    assert_eq!(ok, 500);
    let all = env.get("/projects?per_page=1", ADMIN).await;
    assert_eq!(all.header("x-total"), Some("500"));
    assert_eq!(env.emu.counters().total, 2001);
}
