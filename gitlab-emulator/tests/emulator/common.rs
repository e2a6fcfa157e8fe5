//! Test harness: an in-process emulator plus a small HTTP client.

use gitlab_emulator::{Config, Emulator};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ADMIN: &str = "admin-token";
pub const ALICE: &str = "alice-token";
pub const BOB: &str = "bob-token";

/// A started emulator and a client for it.
pub struct Env {
    pub emu: Emulator,
    pub client: reqwest::Client,
}

/// A response: status, headers and the body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn config() -> Config {
    Config {
        admin_tokens: vec![ADMIN.into()],
        user_tokens: vec![format!("alice={ALICE}"), format!("bob={BOB}")],
        user_delete_delay: std::time::Duration::ZERO,
        ..Config::default()
    }
}

pub async fn start() -> Env {
    start_with(config()).await
}

pub async fn start_with(config: Config) -> Env {
    let emu = Emulator::start(config).await.expect("emulator starts");
    Env {
        emu,
        client: reqwest::Client::new(),
    }
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v4{path}", self.emu.url())
    }

    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("PRIVATE-TOKEN", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        into_resp(resp).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, token, None).await
    }

    /// A request with exactly the given headers (no `PRIVATE-TOKEN` unless listed).
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_resp(req.send().await.expect("request sent")).await
    }

    /// A control-plane request (`/-/emulator{path}`) with an optional JSON body.
    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .client
            .request(method, format!("{}/-/emulator{path}", self.emu.url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_resp(req.send().await.expect("request sent")).await
    }

    /// POST with a form-encoded body (as curl sends it).
    pub async fn post_form(&self, path: &str, token: &str, form: &[(&str, &str)]) -> Resp {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .client
            .post(self.url(path))
            .header("PRIVATE-TOKEN", token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request sent");
        into_resp(resp).await
    }

    /// Creates a project as `token` and returns its JSON.
    pub async fn project(&self, token: &str, body: Value) -> Value {
        let r = self.post("/projects", token, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    /// Creates a user as admin and returns its JSON.
    pub async fn user(&self, username: &str) -> Value {
        let r = self
            .post(
                "/users",
                ADMIN,
                serde_json::json!({
                    "username": username,
                    "name": username,
                    "email": format!("{username}@example.org"),
                    "password": "correct horse battery",
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }
}

pub async fn into_resp(resp: reqwest::Response) -> Resp {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
