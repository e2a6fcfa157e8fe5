//! System hooks: the stored hooks (`SystemHook`), the payloads GitLab sends
//! and their asynchronous delivery.
//!
//! Followed: `app/services/system_hooks_service.rb` (builder-driven event
//! data; `ProjectBuilder#build(event, include_deprecated_owner: true)`),
//! `lib/gitlab/hook_data/{base,project,project_member,user}_builder.rb`
//! (field sets, `created_at`/`updated_at` as `xmlschema`, `webhook_email`
//! for owners and members, the real email for user events),
//! `app/models/hooks/system_hook.rb` (defaults: push_events false,
//! repository_update_events true, merge_requests_events false),
//! `lib/api/entities/hook.rb` and `doc/administration/system_hooks.md`.
//!
//! Handlers never deliver: they push payloads onto [`State::outbox`] while
//! holding the state lock; the API middleware drains the outbox after the
//! handler (still under the lock, so the order of deliveries is the order of
//! the changes) and hands each payload to one worker task per hook, which
//! POSTs them one after the other with a timeout. A slow or failing receiver
//! only delays that hook's own later deliveries.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::model::{Member, NamespaceKind, Project, User, access};
use crate::state::State;

/// How long one delivery may take (connect, send, read the status line).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A registered system hook (`SystemHook`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SystemHook {
    pub id: u64,
    pub url: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Secret sent as `X-Gitlab-Token`; never rendered.
    pub token: Option<String>,
    pub push_events: bool,
    pub tag_push_events: bool,
    pub merge_requests_events: bool,
    pub repository_update_events: bool,
    pub enable_ssl_verification: bool,
    pub created_at: String,
}

impl SystemHook {
    /// `Entities::Hook` for a system hook (GitLab 18.4).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "url": self.url,
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
            "push_events": self.push_events,
            "tag_push_events": self.tag_push_events,
            "merge_requests_events": self.merge_requests_events,
            "repository_update_events": self.repository_update_events,
            "enable_ssl_verification": self.enable_ssl_verification,
            "organization_id": 1,
            "alert_status": "executable",
            "disabled_until": null,
            "url_variables": [],
            "push_events_branch_filter": null,
            "branch_filter_strategy": "wildcard",
            "custom_webhook_template": null,
            "custom_headers": [],
        })
    }
}

/// `Time#xmlschema` of an entity timestamp (`2025-01-31T12:00:00.123Z` ->
/// `2025-01-31T12:00:00Z`).
pub(crate) fn xmlschema(iso: &str) -> String {
    match iso.get(..19) {
        Some(secs) if iso.len() > 19 => format!("{secs}Z"),
        _ => iso.to_string(),
    }
}

/// `User#webhook_email`: the public email, or `[REDACTED]`.
fn webhook_email(user: &User) -> String {
    user.public_email
        .clone()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "[REDACTED]".into())
}

/// `Gitlab::Access.human_access` names.
fn human_access(level: i64) -> &'static str {
    match level {
        access::OWNER => "Owner",
        access::MAINTAINER => "Maintainer",
        access::DEVELOPER => "Developer",
        access::REPORTER => "Reporter",
        access::GUEST => "Guest",
        access::PLANNER => "Planner",
        access::MINIMAL => "Minimal Access",
        _ => "No access",
    }
}

/// Project events: `project_create`, `project_destroy`, `project_rename`,
/// `project_transfer`, `project_update` (`ProjectBuilder`).
pub(crate) fn project_event(
    state: &State,
    project: &Project,
    event: &str,
    old_path_with_namespace: Option<&str>,
) -> Value {
    let ns = state.namespaces.get(&project.namespace_id);
    let mut owners: Vec<Value> = Vec::new();
    let mut push_owner = |user: &User| {
        let o = json!({ "name": user.name, "email": webhook_email(user) });
        if !owners.contains(&o) {
            owners.push(o);
        }
    };
    // `deprecated_owner`: the group, or the namespace's user.
    let (owner_name, owner_email) = match ns {
        Some(ns) if ns.kind == NamespaceKind::Group => {
            if let Some(u) = state.users.get(&ns.owner_id) {
                push_owner(u);
            }
            (json!(ns.name), json!(""))
        }
        Some(ns) => {
            for m in &project.members {
                if m.access_level >= access::OWNER
                    && let Some(u) = state.users.get(&m.user_id)
                {
                    push_owner(u);
                }
            }
            match state.users.get(&ns.owner_id) {
                Some(u) => {
                    push_owner(u);
                    (json!(u.name), json!(webhook_email(u)))
                }
                None => (Value::Null, json!("")),
            }
        }
        None => (Value::Null, json!("")),
    };
    let mut v = json!({
        "event_name": format!("project_{event}"),
        "created_at": xmlschema(&project.created_at),
        "updated_at": xmlschema(&project.updated_at),
        "name": project.name,
        "path": project.path,
        "path_with_namespace": state.path_with_namespace(project),
        "project_id": project.id,
        "project_namespace_id": project.namespace_id,
        "owners": owners,
        "project_visibility": project.visibility,
        "owner_name": owner_name,
        "owner_email": owner_email,
    });
    if let Some(old) = old_path_with_namespace {
        v["old_path_with_namespace"] = json!(old);
    }
    v
}

/// Team events: `user_add_to_team`, `user_update_for_team`,
/// `user_remove_from_team` (`ProjectMemberBuilder`).
pub(crate) fn member_event(
    state: &State,
    project: &Project,
    member: &Member,
    event: &str,
) -> Value {
    let user = state.users.get(&member.user_id);
    json!({
        "created_at": xmlschema(&member.created_at),
        "updated_at": xmlschema(member.updated_at.as_deref().unwrap_or(&member.created_at)),
        "project_name": project.name,
        "project_path": project.path,
        "project_path_with_namespace": state.path_with_namespace(project),
        "project_id": project.id,
        "user_username": user.map(|u| u.username.clone()),
        "user_name": user.map(|u| u.name.clone()),
        "user_email": user.map(webhook_email),
        "user_id": member.user_id,
        "access_level": human_access(member.access_level),
        "project_visibility": project.visibility,
        "expires_at": member.expires_at,
        "event_name": event,
    })
}

/// User events: `user_create`, `user_destroy`, `user_rename` (`UserBuilder`).
pub(crate) fn user_event(user: &User, event: &str, old_username: Option<&str>) -> Value {
    let mut v = json!({
        "created_at": xmlschema(&user.created_at),
        "updated_at": xmlschema(if user.updated_at.is_empty() { &user.created_at } else { &user.updated_at }),
        "event_name": format!("user_{event}"),
        "name": user.name,
        "email": user.email,
        "user_id": user.id,
        "username": user.username,
    });
    if let Some(old) = old_username {
        v["old_username"] = json!(old);
    }
    v
}

/// One POST to make.
struct Delivery {
    url: String,
    token: Option<String>,
    body: String,
    /// `X-Gitlab-Event-UUID`: one per API request that caused the events
    /// (`Gitlab::WebHooks::RecursionDetection`).
    event_uuid: String,
}

/// A random version 4 UUID (`SecureRandom.uuid`).
fn uuid_v4() -> String {
    use rand::{Rng, SeedableRng};
    static SALT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let salt = SALT.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(nanos ^ salt);
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// One worker (and queue) per hook id.
pub(crate) struct Dispatcher {
    workers: Mutex<HashMap<u64, mpsc::UnboundedSender<Delivery>>>,
    user_agent: String,
    instance: Mutex<String>,
}

impl Dispatcher {
    pub fn new() -> Self {
        Self {
            workers: Mutex::new(HashMap::new()),
            user_agent: format!("GitLab/{}", crate::GITLAB_VERSION),
            instance: Mutex::new(String::new()),
        }
    }

    pub fn set_instance(&self, base_url: &str) {
        *self.instance.lock() = base_url.to_string();
    }

    /// Queues `delivery` on hook `hook_id`'s worker, starting one if needed
    /// (or again, if its runtime is gone).
    fn enqueue(
        &self,
        workers: &mut HashMap<u64, mpsc::UnboundedSender<Delivery>>,
        hook_id: u64,
        delivery: Delivery,
    ) {
        let spawn = || {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(worker(
                rx,
                self.user_agent.clone(),
                self.instance.lock().clone(),
            ));
            tx
        };
        let sender = workers.entry(hook_id).or_insert_with(spawn);
        if let Err(mpsc::error::SendError(d)) = sender.send(delivery) {
            let tx = spawn();
            let _ = tx.send(d);
            *sender = tx;
        }
    }

    /// Queues every payload of `state.outbox` for every registered hook.
    /// Must be called with the state lock held (it is `&mut State`), so that
    /// queues receive payloads in the order the changes happened.
    pub fn drain(&self, state: &mut State) {
        if state.outbox.is_empty() {
            return;
        }
        let events = std::mem::take(&mut state.outbox);
        if state.system_hooks.is_empty() {
            return;
        }
        let event_uuid = uuid_v4();
        let mut workers = self.workers.lock();
        for event in &events {
            let body = event.to_string();
            for hook in state.system_hooks.values() {
                let delivery = Delivery {
                    url: hook.url.clone(),
                    token: hook.token.clone(),
                    body: body.clone(),
                    event_uuid: event_uuid.clone(),
                };
                self.enqueue(&mut workers, hook.id, delivery);
            }
        }
    }

    /// Queues `payload` for one hook only (`POST /hooks/:hook_id`, the test).
    pub fn send_to(&self, hook: &SystemHook, payload: &Value) {
        let delivery = Delivery {
            url: hook.url.clone(),
            token: hook.token.clone(),
            body: payload.to_string(),
            event_uuid: uuid_v4(),
        };
        self.enqueue(&mut self.workers.lock(), hook.id, delivery);
    }

    /// Forgets a deleted hook's queue (its worker ends after what is queued).
    pub fn forget(&self, hook_id: u64) {
        self.workers.lock().remove(&hook_id);
    }
}

async fn worker(mut rx: mpsc::UnboundedReceiver<Delivery>, user_agent: String, instance: String) {
    while let Some(d) = rx.recv().await {
        match tokio::time::timeout(DELIVERY_TIMEOUT, post(&d, &user_agent, &instance)).await {
            Ok(Ok(status)) => tracing::debug!(url = %d.url, status, "System hook delivered"),
            Ok(Err(error)) => tracing::warn!(url = %d.url, %error, "System hook delivery failed"),
            Err(_) => tracing::warn!(url = %d.url, "System hook delivery timed out"),
        }
    }
}

/// A minimal HTTP/1.1 POST (plain `http://` only; `https://` hooks are
/// accepted but not delivered: the emulator has no TLS client).
async fn post(d: &Delivery, user_agent: &str, instance: &str) -> std::io::Result<u16> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    let rest = d
        .url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// hook URLs are delivered"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nUser-Agent: {user_agent}\r\nX-Gitlab-Event: System Hook\r\nX-Gitlab-Instance: {instance}\r\nContent-Length: {}\r\nConnection: close\r\n",
        d.body.len()
    );
    if let Some(token) = &d.token {
        head.push_str(&format!("X-Gitlab-Token: {token}\r\n"));
    }
    // `WebHookService#build_headers`: a fresh `X-Gitlab-Webhook-UUID` per
    // delivery, an `Idempotency-Key` (stable across retries; there are none
    // here) and the request's `X-Gitlab-Event-UUID`.
    head.push_str(&format!(
        "Idempotency-Key: {}\r\nX-Gitlab-Webhook-UUID: {}\r\nX-Gitlab-Event-UUID: {}\r\n",
        uuid_v4(),
        uuid_v4(),
        d.event_uuid
    ));
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(d.body.as_bytes()).await?;
    stream.flush().await?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&got);
    Ok(line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xmlschema_drops_milliseconds() {
        assert_eq!(
            xmlschema("2025-01-31T12:00:00.123Z"),
            "2025-01-31T12:00:00Z"
        );
        assert_eq!(human_access(40), "Maintainer");
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uuid_v4());
    }
}
