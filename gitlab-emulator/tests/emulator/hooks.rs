//! System hooks: the admin-only `/hooks` API and deliveries to a receiver
//! listening on 127.0.0.1 inside the test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

/// One received POST: lower-cased header names and values, and the JSON body.
#[derive(Debug, Clone)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Value,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver of hook POSTs on 127.0.0.1:0.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    let (head_end, length) = loop {
                        let n = sock.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&data[..i]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while data.len() < head_end + length {
                        let n = sock.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        data.extend_from_slice(&buf[..n]);
                    }
                    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
                    let headers = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                        .collect();
                    let body = serde_json::from_slice(&data[head_end..]).unwrap_or(Value::Null);
                    sink.lock().push(Delivery { headers, body });
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Receiver { url, got }
    }

    /// Waits until `n` deliveries arrived (5 s at most) and returns them.
    async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.got.lock().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.got.lock().clone()
    }

    fn events(&self) -> Vec<String> {
        self.got
            .lock()
            .iter()
            .map(|d| d.body["event_name"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

#[tokio::test]
async fn hooks_api_is_admin_only_and_validates() {
    let env = start().await;
    for r in [
        env.get("/hooks", ALICE).await,
        env.post("/hooks", ALICE, json!({"url": "http://127.0.0.1:9/x"}))
            .await,
    ] {
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.body, json!({"message": "403 Forbidden"}));
    }
    let r = env.post("/hooks", ADMIN, json!({"token": "t"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, json!({"error": "url is missing"}));
    let r = env.post("/hooks", ADMIN, json!({"url": "ftp://x/y"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = env
        .post(
            "/hooks",
            ADMIN,
            json!({"url": "http://127.0.0.1:9/h", "token": "s3cret", "name": "audit",
                   "push_events": true, "enable_ssl_verification": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_u64().unwrap();
    assert_eq!(r.body["url"], "http://127.0.0.1:9/h");
    assert_eq!(r.body["name"], "audit");
    assert_eq!(r.body["push_events"], true);
    assert_eq!(r.body["tag_push_events"], false);
    assert_eq!(r.body["merge_requests_events"], false);
    assert_eq!(r.body["repository_update_events"], true);
    assert_eq!(r.body["enable_ssl_verification"], false);
    assert_eq!(r.body["alert_status"], "executable");
    assert!(r.body.get("token").is_none(), "the token is never shown");
    let list = env.get("/hooks", ADMIN).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(list.header("x-total"), Some("1"));
    let r = env.put(&format!("/hooks/{id}"), ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, json!({"error": "No parameters provided"}));
    let r = env
        .put(
            &format!("/hooks/{id}"),
            ADMIN,
            json!({"tag_push_events": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["tag_push_events"], true);
    let r = env
        .put(
            &format!("/hooks/{id}"),
            ALICE,
            json!({"tag_push_events": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        env.get(&format!("/hooks/{id}"), ALICE).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.delete(&format!("/hooks/{id}"), ALICE).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.get(&format!("/hooks/{id}"), ADMIN).await.status,
        StatusCode::OK
    );
    assert_eq!(
        env.delete(&format!("/hooks/{id}"), ADMIN).await.status,
        StatusCode::NO_CONTENT
    );
    let r = env.get(&format!("/hooks/{id}"), ADMIN).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 Not found"}));
}

#[tokio::test]
async fn project_and_team_events_are_delivered_in_order() {
    let env = start().await;
    let rx = Receiver::start().await;
    let r = env
        .post(
            "/hooks",
            ADMIN,
            json!({"url": rx.url, "token": "hook-secret"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let alice = env.get("/user", ALICE).await.body["id"].as_u64().unwrap();

    let p = env.project(ADMIN, json!({"name": "inventory"})).await;
    let pid = p["id"].as_u64().unwrap();
    let r = env
        .put(
            &format!("/projects/{pid}"),
            ADMIN,
            json!({"description": "tracked", "visibility": "internal"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let base = format!("/projects/{pid}/members");
    let r = env
        .post(
            &base,
            ADMIN,
            json!({"user_id": alice, "access_level": 30, "expires_at": "2099-01-31"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = env
        .put(
            &format!("{base}/{alice}"),
            ADMIN,
            json!({"access_level": 40}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        env.delete(&format!("{base}/{alice}"), ADMIN).await.status,
        StatusCode::NO_CONTENT
    );
    let r = env
        .put(
            &format!("/projects/{pid}"),
            ADMIN,
            json!({"path": "inventory-2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        env.delete(&format!("/projects/{pid}"), ADMIN).await.status,
        StatusCode::ACCEPTED
    );
    let r = env
        .delete(
            &format!("/projects/{pid}?permanently_remove=true&full_path=root/inventory-2"),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);

    let got = rx.wait_for(8).await;
    assert_eq!(
        rx.events(),
        [
            "project_create",
            "user_add_to_team",
            "project_update",
            "user_add_to_team",
            "user_update_for_team",
            "user_remove_from_team",
            "project_rename",
            "project_destroy",
        ]
    );
    assert_eq!(got.len(), 8, "{:?}", rx.events());
    for d in &got {
        assert_eq!(d.header("x-gitlab-event"), Some("System Hook"));
        assert_eq!(d.header("x-gitlab-token"), Some("hook-secret"));
        assert_eq!(d.header("content-type"), Some("application/json"));
        assert_eq!(d.header("user-agent"), Some("GitLab/18.4.0"));
        assert_eq!(d.header("x-gitlab-webhook-uuid").map(str::len), Some(36));
        assert_eq!(d.header("idempotency-key").map(str::len), Some(36));
        assert_eq!(d.header("x-gitlab-instance"), Some(env.emu.url().as_str()));
    }
    // One event UUID per request: project create and its owner's membership share it.
    assert_eq!(
        got[0].header("x-gitlab-event-uuid"),
        got[1].header("x-gitlab-event-uuid")
    );
    assert_ne!(
        got[1].header("x-gitlab-event-uuid"),
        got[2].header("x-gitlab-event-uuid")
    );
    let create = &got[0].body;
    assert_eq!(create["name"], "inventory");
    assert_eq!(create["path_with_namespace"], "root/inventory");
    assert_eq!(create["owner_name"], "Administrator");
    let owner_add = &got[1].body;
    assert_eq!(owner_add["access_level"], "Owner");
    let update = &got[2].body;
    for key in [
        "event_name",
        "created_at",
        "updated_at",
        "name",
        "owner_email",
        "owner_name",
        "owners",
        "path",
        "path_with_namespace",
        "project_id",
        "project_visibility",
    ] {
        assert!(
            update.get(key).is_some(),
            "project_update lacks {key}: {update}"
        );
    }
    assert_eq!(update["project_id"], pid);
    assert_eq!(update["project_visibility"], "internal");
    assert_eq!(update["path"], "inventory");
    assert_eq!(
        update["owners"],
        json!([{"name": "Administrator", "email": "[REDACTED]"}])
    );
    assert!(update["updated_at"].as_str().unwrap().ends_with('Z'));
    let add = &got[3].body;
    assert_eq!(add["access_level"], "Developer");
    assert_eq!(add["user_id"], alice);
    assert_eq!(add["user_username"], "alice");
    assert_eq!(add["user_name"], "alice");
    assert_eq!(add["user_email"], "[REDACTED]");
    assert_eq!(add["project_id"], pid);
    assert_eq!(add["project_name"], "inventory");
    assert_eq!(add["project_path"], "inventory");
    assert_eq!(add["project_path_with_namespace"], "root/inventory");
    assert_eq!(add["project_visibility"], "internal");
    assert_eq!(add["expires_at"], "2099-01-31");
    assert_eq!(got[4].body["access_level"], "Maintainer");
    assert_eq!(got[5].body["access_level"], "Maintainer");
    assert_eq!(got[5].body["user_id"], alice);
    let rename = &got[6].body;
    assert_eq!(rename["path_with_namespace"], "root/inventory-2");
    assert_eq!(rename["old_path_with_namespace"], "root/inventory");
    assert_eq!(got[7].body["project_id"], pid);
}

#[tokio::test]
async fn user_events_and_no_token_header_without_a_token() {
    let env = start().await;
    let rx = Receiver::start().await;
    assert_eq!(
        env.post("/hooks", ADMIN, json!({"url": rx.url}))
            .await
            .status,
        StatusCode::CREATED
    );
    let u = env.user("dora").await;
    let id = u["id"].as_u64().unwrap();
    let r = env
        .put(&format!("/users/{id}"), ADMIN, json!({"username": "dora2"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        env.delete(&format!("/users/{id}"), ADMIN).await.status,
        StatusCode::NO_CONTENT
    );
    // Deletion is asynchronous (delay 0 in tests): the next request purges.
    env.get("/user", ADMIN).await;
    let got = rx.wait_for(3).await;
    assert_eq!(rx.events(), ["user_create", "user_rename", "user_destroy"]);
    assert!(got[0].header("x-gitlab-token").is_none());
    assert_eq!(got[0].body["username"], "dora");
    assert_eq!(got[0].body["email"], "dora@example.org");
    assert_eq!(got[0].body["user_id"], id);
    assert_eq!(got[1].body["username"], "dora2");
    assert_eq!(got[1].body["old_username"], "dora");
    assert_eq!(got[2].body["user_id"], id);
}

/// A receiver that never answers delays nothing in the API.
#[tokio::test]
async fn a_stuck_receiver_does_not_slow_the_api() {
    let env = start().await;
    let stuck = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", stuck.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = stuck.accept().await {
            held.push(sock);
        }
    });
    assert_eq!(
        env.post("/hooks", ADMIN, json!({"url": url})).await.status,
        StatusCode::CREATED
    );
    let started = Instant::now();
    for i in 0..5 {
        env.project(ADMIN, json!({"name": format!("p{i}")})).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hooks_survive_dump_and_load() {
    let env = start().await;
    env.post(
        "/hooks",
        ADMIN,
        json!({"url": "http://127.0.0.1:9/h", "token": "t"}),
    )
    .await;
    let state = env.emu.dump_state();
    env.emu.reset_state();
    assert_eq!(env.get("/hooks", ADMIN).await.body, json!([]));
    env.emu.load_state(state).unwrap();
    let list = env.get("/hooks", ADMIN).await;
    assert_eq!(list.body[0]["url"], "http://127.0.0.1:9/h");
    let r = env
        .post("/hooks", ADMIN, json!({"url": "http://127.0.0.1:9/i"}))
        .await;
    assert_eq!(r.body["id"], 2, "ids continue after a load");
}

#[tokio::test]
async fn transfer_and_archive_events() {
    let env = start().await;
    let group = env
        .post("/groups", ADMIN, json!({"name": "ops", "path": "ops"}))
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let p = env.project(ADMIN, json!({"name": "moved"})).await;
    let pid = p["id"].as_u64().unwrap();
    let rx = Receiver::start().await;
    env.post("/hooks", ADMIN, json!({"url": rx.url})).await;
    let r = env
        .put(
            &format!("/projects/{pid}/transfer"),
            ADMIN,
            json!({"namespace": "ops"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = env
        .post(&format!("/projects/{pid}/archive"), ADMIN, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let got = rx.wait_for(2).await;
    assert_eq!(rx.events(), ["project_transfer", "project_update"]);
    assert_eq!(got[0].body["path_with_namespace"], "ops/moved");
    assert_eq!(got[0].body["old_path_with_namespace"], "root/moved");
    // A group project's deprecated owner is the group (no email).
    assert_eq!(got[0].body["owner_name"], "ops");
    assert_eq!(got[0].body["owner_email"], "");
    assert_eq!(got[1].body["project_id"], pid);
}

/// A state file written by hand without `next_id.hook` still numbers new
/// hooks after the stored ones.
#[tokio::test]
async fn hook_ids_continue_after_a_state_without_a_counter() {
    let env = start().await;
    env.post("/hooks", ADMIN, json!({"url": "http://127.0.0.1:9/a"}))
        .await;
    env.post("/hooks", ADMIN, json!({"url": "http://127.0.0.1:9/b"}))
        .await;
    let mut state = env.emu.dump_state();
    state["next_id"].as_object_mut().unwrap().remove("hook");
    env.emu.load_state(state).unwrap();
    let r = env
        .post("/hooks", ADMIN, json!({"url": "http://127.0.0.1:9/c"}))
        .await;
    assert_eq!(r.body["id"], 3);
}

#[tokio::test]
async fn test_endpoint_sends_the_sample() {
    let env = start().await;
    let rx = Receiver::start().await;
    let id = env
        .post("/hooks", ADMIN, json!({"url": rx.url, "token": "tt"}))
        .await
        .body["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        env.post(&format!("/hooks/{id}"), ALICE, json!({}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = env.post(&format!("/hooks/{id}"), ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["owner_email"], "example@gitlabhq.com");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].body, r.body);
    assert_eq!(got[0].header("x-gitlab-token"), Some("tt"));
    assert_eq!(
        env.post("/hooks/999", ADMIN, json!({})).await.status,
        StatusCode::NOT_FOUND
    );
}
