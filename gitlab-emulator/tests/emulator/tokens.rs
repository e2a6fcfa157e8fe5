//! Personal access tokens: creation, `/personal_access_tokens/self`, scopes,
//! revocation, expiry, `Sudo`, configured scopes, fixtures and persistence.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const READ_API_BODY_SCOPE: &str = "api read_api";

fn insufficient(scope: &str) -> Value {
    json!({
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the access token.",
        "scope": scope,
    })
}

fn date_in_days(days: i64) -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm), so the
    // test needs no date crate.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let z = secs.div_euclid(86_400) + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

async fn user_id(env: &Env, token: &str) -> u64 {
    env.get("/user", token).await.body["id"].as_u64().unwrap()
}

#[tokio::test]
async fn configured_token_describes_itself() {
    let env = start().await;
    let alice = user_id(&env, ALICE).await;
    let r = env.get("/personal_access_tokens/self", ALICE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = &r.body;
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "active",
            "created_at",
            "description",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "revoked",
            "scopes",
            "user_id"
        ]
    );
    assert_eq!(b["user_id"], alice);
    assert_eq!(b["scopes"], json!(["api"]));
    assert_eq!(b["revoked"], false);
    assert_eq!(b["active"], true);
    assert_eq!(b["expires_at"], Value::Null);
    assert!(b["last_used_at"].is_string(), "use is recorded: {b}");
    assert!(b.get("token").is_none(), "the secret is never shown again");
    let admin = env.get("/personal_access_tokens/self", ADMIN).await.body;
    assert_eq!(admin["scopes"], json!(["api", "sudo"]));
    assert_eq!(admin["user_id"], 1);
}

#[tokio::test]
async fn admin_creates_tokens_for_users() {
    let env = start().await;
    let alice = user_id(&env, ALICE).await;
    let path = format!("/users/{alice}/personal_access_tokens");
    let expires = date_in_days(30);
    let r = env
        .post(
            &path,
            ADMIN,
            json!({"name": "ci", "scopes": ["read_api", "read_user"], "expires_at": expires, "description": "for CI"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("glpat-"), "{token}");
    assert_eq!(r.body["name"], "ci");
    assert_eq!(r.body["description"], "for CI");
    assert_eq!(r.body["user_id"], alice);
    assert_eq!(r.body["scopes"], json!(["read_api", "read_user"]));
    assert_eq!(r.body["expires_at"], expires);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["last_used_at"], Value::Null);

    let me = env.get("/user", &token).await;
    assert_eq!(me.body["username"], "alice");
    let own = env.get("/personal_access_tokens/self", &token).await.body;
    assert_eq!(own["id"], r.body["id"]);

    // Without expires_at the token gets the longest lifetime (365 days).
    let r = env
        .post(&path, ADMIN, json!({"name": "long", "scopes": "api"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["expires_at"], date_in_days(365));
    assert_eq!(r.body["scopes"], json!(["api"]), "comma-separated string");

    // Form-encoded scopes[] as curl sends them.
    let r = env
        .post_form(
            &path,
            ADMIN,
            &[
                ("name", "form"),
                ("scopes[]", "api"),
                ("scopes[]", "read_repository"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["scopes"], json!(["api", "read_repository"]));
}

#[tokio::test]
async fn token_creation_errors() {
    let env = start().await;
    let alice = user_id(&env, ALICE).await;
    let path = format!("/users/{alice}/personal_access_tokens");
    let r = env
        .post(&path, ALICE, json!({"name": "x", "scopes": ["api"]}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, json!({"message": "403 Forbidden"}));
    let r = env.post(&path, ADMIN, json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"error": "name is missing, scopes is missing"})
    );
    let r = env
        .post(&path, ADMIN, json!({"name": "x", "scopes": ["everything"]}))
        .await;
    assert_eq!(
        r.body,
        json!({"error": "scopes does not have a valid value"})
    );
    let r = env
        .post(
            &path,
            ADMIN,
            json!({"name": "x", "scopes": ["api"], "expires_at": "soon"}),
        )
        .await;
    assert_eq!(r.body, json!({"error": "expires_at is invalid"}));
    let r = env
        .post(
            "/users/9999/personal_access_tokens",
            ADMIN,
            json!({"name": "x", "scopes": ["api"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 User Not Found"}));
    let r = env
        .post(
            &path,
            ADMIN,
            json!({"name": "x", "scopes": ["api"], "expires_at": date_in_days(400)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body,
        json!({"message": format!("Expires at must be before {}", date_in_days(365))})
    );
    let r = env
        .post(&path, ADMIN, json!({"name": "", "scopes": []}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body,
        json!({"message": "Name can't be blank and Scopes can't be blank"})
    );
}

#[tokio::test]
async fn read_api_token_reads_but_cannot_write() {
    let env = start().await;
    env.project(ADMIN, json!({"name": "public-one", "visibility": "public"}))
        .await;
    let ro = env
        .emu
        .create_token(json!({"user": "alice", "scopes": ["read_api"]}));
    let ro = ro["token"].as_str().unwrap();
    let r = env.get("/projects", ro).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(env.get("/user", ro).await.status, StatusCode::OK);
    for (method, path) in [
        (Method::POST, "/projects"),
        (Method::PUT, "/projects/1"),
        (Method::DELETE, "/projects/1"),
        (Method::POST, "/projects/1/variables"),
    ] {
        let r = env
            .call(method.clone(), path, ro, Some(json!({"name": "x"})))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(r.body, insufficient(READ_API_BODY_SCOPE), "{method} {path}");
    }
    // The Users class also registers read_user.
    let r = env
        .post("/user/keys", ro, json!({"title": "t", "key": "k"}))
        .await;
    assert_eq!(r.body, insufficient("read_user api read_api"));
    assert_eq!(
        env.emu.counters().get("POST /api/v4/projects"),
        2,
        "refused requests still count (plus the setup's create)"
    );
}

#[tokio::test]
async fn read_user_token_only_reaches_the_users_api() {
    let env = start().await;
    let t = env
        .emu
        .create_token(json!({"user": "bob", "scopes": "read_user"}));
    let t = t["token"].as_str().unwrap();
    assert_eq!(env.get("/user", t).await.body["username"], "bob");
    assert_eq!(env.get("/users", t).await.status, StatusCode::OK);
    assert_eq!(env.get("/users/1", t).await.status, StatusCode::OK);
    assert_eq!(env.get("/user/keys", t).await.status, StatusCode::OK);
    assert_eq!(env.get("/version", t).await.status, StatusCode::OK);
    let r = env.get("/projects", t).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, insufficient(READ_API_BODY_SCOPE));
    let r = env.get("/namespaces", t).await;
    assert_eq!(r.body, insufficient(READ_API_BODY_SCOPE));
    let r = env.post("/users/1/block", t, json!({})).await;
    assert_eq!(r.body, insufficient("read_user api read_api"));
    // Any scope may look at and revoke itself.
    let repo_only = env
        .emu
        .create_token(json!({"user": "bob", "scopes": ["read_repository"]}));
    let repo_only = repo_only["token"].as_str().unwrap();
    assert_eq!(
        env.get("/personal_access_tokens/self", repo_only)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        env.delete("/personal_access_tokens/self", repo_only)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused() {
    let env = start().await;
    let t = env.emu.create_token(json!({"user": "alice"}));
    let t = t["token"].as_str().unwrap();
    let r = env.delete("/personal_access_tokens/self", t).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.text, "");
    let r = env.get("/user", t).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.body,
        json!({"error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."})
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"Protected by OAuth 2.0\", error=\"invalid_token\", error_description=\"Token was revoked. You have to re-authorize from the user.\""
        )
    );
    assert_eq!(
        env.get("/personal_access_tokens/self", t).await.status,
        StatusCode::UNAUTHORIZED
    );

    for expires_at in [date_in_days(0), date_in_days(-3)] {
        let t = env
            .emu
            .create_token(json!({"user": "alice", "expires_at": expires_at}));
        assert_eq!(t["active"], false);
        let r = env.get("/user", t["token"].as_str().unwrap()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.body,
            json!({"error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."})
        );
    }
    let tomorrow = env
        .emu
        .create_token(json!({"user": "alice", "expires_at": date_in_days(1)}));
    assert_eq!(
        env.get("/user", tomorrow["token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );
    // Unknown tokens stay a plain 401.
    let r = env.get("/user", "glpat-unknown").await;
    assert_eq!(r.body, json!({"message": "401 Unauthorized"}));
}

#[tokio::test]
async fn configured_token_revocation_lasts_until_reset() {
    let env = start().await;
    assert_eq!(
        env.delete("/personal_access_tokens/self", BOB).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(env.get("/user", BOB).await.status, StatusCode::UNAUTHORIZED);
    env.emu.reset_state();
    assert_eq!(env.get("/user", BOB).await.status, StatusCode::OK);
}

#[tokio::test]
async fn sudo_acts_as_another_user() {
    let env = start().await;
    let alice = user_id(&env, ALICE).await;
    let as_alice = env
        .call_with(
            Method::GET,
            "/user",
            &[("PRIVATE-TOKEN", ADMIN), ("Sudo", "alice")],
            None,
        )
        .await;
    assert_eq!(as_alice.status, StatusCode::OK);
    assert_eq!(as_alice.body["username"], "alice");
    assert!(as_alice.body.get("is_admin").is_none(), "alice's own view");
    let by_id = env
        .call_with(
            Method::GET,
            "/user",
            &[("PRIVATE-TOKEN", ADMIN), ("Sudo", &alice.to_string())],
            None,
        )
        .await;
    assert_eq!(by_id.body["id"], alice);
    let by_param = env.get("/user?sudo=bob", ADMIN).await;
    assert_eq!(by_param.body["username"], "bob");
    // Alice's permissions apply.
    let r = env
        .call_with(
            Method::POST,
            "/users",
            &[("PRIVATE-TOKEN", ADMIN), ("Sudo", "alice")],
            Some(json!({"username": "x", "name": "x", "email": "x@example.org", "password": "12345678"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let p = env
        .call_with(
            Method::POST,
            "/projects",
            &[("PRIVATE-TOKEN", ADMIN), ("Sudo", "alice")],
            Some(json!({"name": "made-by-sudo"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    assert_eq!(p.body["path_with_namespace"], "alice/made-by-sudo");

    let r = env
        .call_with(
            Method::GET,
            "/user",
            &[("PRIVATE-TOKEN", ALICE), ("Sudo", "bob")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body,
        json!({"message": "403 Forbidden - Must be admin to use sudo"})
    );
    let r = env
        .call_with(
            Method::GET,
            "/user",
            &[("PRIVATE-TOKEN", ADMIN), ("Sudo", "nobody")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body,
        json!({"message": "404 User with ID or username 'nobody' Not Found"})
    );
    let no_sudo = env
        .emu
        .create_token(json!({"user": "root", "scopes": ["api"]}));
    let r = env
        .call_with(
            Method::GET,
            "/user",
            &[
                ("PRIVATE-TOKEN", no_sudo["token"].as_str().unwrap()),
                ("Sudo", "alice"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, insufficient("sudo"));
}

#[tokio::test]
async fn configured_tokens_take_a_scope_suffix() {
    let env = start_with(gitlab_emulator::Config {
        admin_tokens: vec![format!("{ADMIN}:api")],
        user_tokens: vec![
            "carol=carol-ro:read_api".into(),
            "dave=dave:token:with:colons".into(),
        ],
        ..gitlab_emulator::Config::default()
    })
    .await;
    assert_eq!(
        env.get("/projects", "carol-ro").await.status,
        StatusCode::OK
    );
    let r = env
        .post("/projects", "carol-ro", json!({"name": "x"}))
        .await;
    assert_eq!(r.body, insufficient(READ_API_BODY_SCOPE));
    assert_eq!(
        env.get("/personal_access_tokens/self", "carol-ro")
            .await
            .body["scopes"],
        json!(["read_api"])
    );
    assert_eq!(
        env.get("/user", "dave:token:with:colons").await.body["username"],
        "dave",
        "a suffix that is not a scope list is part of the token"
    );
    assert_eq!(
        env.get("/personal_access_tokens/self", ADMIN).await.body["scopes"],
        json!(["api"])
    );
    let r = env.get("/user?sudo=carol", ADMIN).await;
    assert_eq!(r.body, insufficient("sudo"));
}

#[tokio::test]
async fn token_fixtures_over_http() {
    let env = start().await;
    let r = env
        .control(
            Method::POST,
            "/tokens",
            Some(json!({"user": "alice", "scopes": ["read_api"], "token": "explicit-secret", "name": "mine", "expires_at": "2099-12-31"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["token"], "explicit-secret");
    assert_eq!(r.body["name"], "mine");
    assert_eq!(r.body["expires_at"], "2099-12-31");
    assert_eq!(r.body["scopes"], json!(["read_api"]));
    assert_eq!(
        env.get("/user", "explicit-secret").await.body["username"],
        "alice"
    );
    let dup = env
        .control(
            Method::POST,
            "/tokens",
            Some(json!({"user": "bob", "token": "explicit-secret"})),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let dup = env
        .control(
            Method::POST,
            "/tokens",
            Some(json!({"user": "bob", "token": ALICE})),
        )
        .await;
    assert_eq!(
        dup.status,
        StatusCode::CONFLICT,
        "configured tokens are taken too"
    );
    let r = env
        .control(Method::POST, "/tokens", Some(json!({"user": "nobody"})))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = env
        .control(
            Method::POST,
            "/tokens",
            Some(json!({"user": "alice", "scopes": ["root"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = env
        .control(
            Method::POST,
            "/tokens",
            Some(json!({"user": "alice", "scope": "api"})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "unknown keys are refused"
    );
    let revoked = env
        .control(
            Method::POST,
            "/tokens",
            Some(json!({"user": "alice", "revoked": true})),
        )
        .await;
    assert_eq!(revoked.body["revoked"], true);
    assert_eq!(revoked.body["active"], false);
    let err = env
        .emu
        .try_create_token(json!({"user": "nobody"}))
        .unwrap_err();
    assert!(
        matches!(
            err,
            gitlab_emulator::EmulatorError::Fixture { status: 404, .. }
        ),
        "{err:?}"
    );
    assert_eq!(
        env.emu.counters().total,
        1,
        "only the GET /user counts, not the control plane"
    );
}

#[tokio::test]
async fn created_tokens_are_state_configured_tokens_are_not() {
    let env = start().await;
    let t = env
        .emu
        .create_token(json!({"user": "alice", "token": "from-fixture"}));
    assert_eq!(t["token"], "from-fixture");
    let dump = env.emu.dump_state();
    let tokens = dump["access_tokens"].as_object().unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens.values().next().unwrap()["token"], "from-fixture");
    assert!(
        !dump.to_string().contains(ALICE),
        "configured tokens are not data"
    );

    env.emu.reset_state();
    assert_eq!(
        env.get("/user", "from-fixture").await.status,
        StatusCode::UNAUTHORIZED
    );
    env.emu.load_state(dump).unwrap();
    assert_eq!(
        env.get("/user", "from-fixture").await.status,
        StatusCode::OK
    );
    assert_eq!(env.get("/user", ALICE).await.status, StatusCode::OK);
    let next = env.emu.create_token(json!({"user": "bob"}));
    assert!(
        next["id"].as_u64().unwrap() > t["id"].as_u64().unwrap(),
        "ids continue after a load"
    );
}

#[tokio::test]
async fn format_1_state_files_still_load() {
    let env = start().await;
    let mut old = env.emu.dump_state();
    let obj = old.as_object_mut().unwrap();
    obj.insert("format".into(), json!(1));
    obj.insert("tokens".into(), json!({"legacy-token": 1}));
    for key in ["access_tokens", "ssh_keys", "pipelines", "jobs"] {
        obj.remove(key);
    }
    for key in ["token", "ssh_key", "pipeline", "job"] {
        obj["next_id"].as_object_mut().unwrap().remove(key);
    }
    env.emu.load_state(old).unwrap();
    assert_eq!(env.get("/user", ADMIN).await.status, StatusCode::OK);
    assert_eq!(
        env.get("/user", "legacy-token").await.status,
        StatusCode::UNAUTHORIZED,
        "format 1 token maps were configuration, not data"
    );
    env.emu.create_token(json!({"user": "alice"}));
}

#[tokio::test]
async fn token_routes_are_counted() {
    let env = start().await;
    let alice = user_id(&env, ALICE).await;
    env.get("/personal_access_tokens/self", ALICE).await;
    env.post(
        &format!("/users/{alice}/personal_access_tokens"),
        ADMIN,
        json!({"name": "c", "scopes": ["api"]}),
    )
    .await;
    let c = env.emu.counters();
    assert_eq!(c.get("GET /api/v4/personal_access_tokens/self"), 1);
    assert_eq!(c.get("POST /api/v4/users/:id/personal_access_tokens"), 1);
}
