//! SSH keys: `/user/keys`, `/users/:id/keys`, validation, and the admin
//! lookups `/keys/:id` and `/keys?fingerprint=`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

// Throwaway public keys made with ssh-keygen for these tests.
const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAsplHZXrooZPYLFvi4I4NEGFdk5p2XaEkoQJETozuLN test-ed25519";
const ED25519_SHA256: &str = "SHA256:m12+sewfcMzJgP4nzixKVMvrvm0pjIwyo5PUHuhJ/RQ";
const ED25519_FOO: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com";
const ED25519_FOO_MD5: &str = "ae:6f:ba:1b:70:2c:ae:c7:5c:ab:6e:4d:5e:d4:c7:23";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDSAQ8AI2ZI+HVc0Qse7ZLvJJFu5Hr1orbwJZyI0/qg/eqS1qnGv5O0dwqqt3jB6yNVynuyA283e+l0gfzyv1uSNZCF155Zhain/zmlMKTLMAvLgHBX5X1KePnoxr0SHqX5xZQQoxBZ1xC8U510Uj30G9BeResO7jXVdOmRAK6pU+RSy6A6uU/Zx0n7kNWoYdkUU3VgF3rzL4qmjepgWASh5b6jSGpfziQbLwtjNGRuLZxOOKCYQMFeoRmZtpQWyPDFGBQX69QYDKmTD0+flGbyn6kKrj52g8hXjoqSXxz1nF9s7ReA5Z32Z2sBmYn0300+ViIwqdt3jnB+rmZmM/nv test-rsa";
const RSA_SHA256: &str = "SHA256:F8ROLo3BTcQSrxftMugFaxbf08r4BmiCMJsUytCDHPc";
const ECDSA_256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBE903gJc2sdrQ0HIXVSesvswutRntXVqVwfMsEvTmCS9biH+cpH+Zw8yQTfCAzLyvEV3K+by5tO8R/6kN1vjiwU= test-ecdsa-256";
const ECDSA_256_SHA256: &str = "SHA256:UczR8Twnil6JRgYMP8Yw8LAExdRf73bpuUMxP9jI7ZA";
const ECDSA_384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBPOYf10GohLpHeLGypcixOyXHMof3Bc8xC6XAc5KXuVl+nYkAcj40wC+nqmjIyEZ2G0oYNv6lE5QZGAnS3p/mL0cp8xaIXNkzJncO5XI7kJu/88xR+tmEt0e5OQhXXbxdw== test-ecdsa-384";
const ECDSA_384_SHA256: &str = "SHA256:1jvQ3dB3aOgMDY7N42f0Bud19cWi/OCQJjIlPKuJG+g";
const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAIjR+56gHpwywYNJUbiMlGzPcFxUu9i6Af1fCHNSe4+6hTtw6KOJuDBH7lSClPwJlVANz20qjD/t46FYT5aW90LdA+pNWgYJxLi48ohoLUhe2PWlDVFtI9/sI9S8DP4PVr5Oyn1DCCLYbKnsoiIdj4YFIb50g2jbhqLSrBOEkJANAAAAFQCHY6juM7VlFvcm4ppXuYE2LCDXDQAAAIBWuBKzSZj/ZNHrjEa3YzVwe3ZmxgJqxdyQro4n3oGEWIq2yahxfxfLCzGe1hir0/1MMx5HZxSYiALlA2ThRrg4EFPBO455qiJWP0am19+GhUe769P3M25N2Zn3lT3el1m/Z5hKfe5Bp7kdmJ3VmEL1AxNHGf7oV2dbuZGuvkiz+QAAAIA6SdDb36lFLhjwLwBOV0CVyi3ElADqQ2X9pTIGbBSN5c0auZzHIjn6XY0bHRXYCzDPBAVx6HsVefUnx8CPYYH4AnPZjru53QghE2thpRBCFvC1R+qH9bto/CN3/rHaZrkWxfjSsxw8ZKP2QF3e5ioYyIoIlfUzjpyrgcO7OUiv2A== test-dsa";
const DSA_SHA256: &str = "SHA256:y0vbbKgV0zls7KU9BYbydnzn+MUNaRxxGxjlhhETzPc";

fn publishable(key: &str, owner: &str) -> String {
    let mut parts: Vec<&str> = key.split_whitespace().take(2).collect();
    let ident = format!("{owner} (127.0.0.1)");
    parts.push(&ident);
    parts.join(" ")
}

async fn add(env: &Env, token: &str, title: &str, key: &str) -> Value {
    let r = env
        .post("/user/keys", token, json!({"title": title, "key": key}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

#[tokio::test]
async fn users_manage_their_own_keys() {
    let env = start().await;
    let k = add(&env, ALICE, "laptop", ED25519).await;
    let mut keys: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "key",
            "last_used_at",
            "title",
            "usage_type"
        ]
    );
    assert_eq!(k["title"], "laptop");
    assert_eq!(k["key"], publishable(ED25519, "alice"), "comment replaced");
    assert_eq!(k["usage_type"], "auth_and_signing");
    assert_eq!(k["expires_at"], Value::Null);
    assert_eq!(k["last_used_at"], Value::Null);
    let id = k["id"].as_u64().unwrap();

    let list = env.get("/user/keys", ALICE).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body, json!([k]));
    assert_eq!(list.header("x-total"), Some("1"));
    assert_eq!(env.get("/user/keys", BOB).await.body, json!([]));
    assert_eq!(env.get(&format!("/user/keys/{id}"), ALICE).await.body, k);
    let r = env.get(&format!("/user/keys/{id}"), BOB).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 Key Not Found"}));
    assert_eq!(
        env.get("/user/keys/abc", ALICE).await.body,
        json!({"error": "key_id is invalid"})
    );
    assert_eq!(
        env.delete(&format!("/user/keys/{id}"), BOB).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.delete(&format!("/user/keys/{id}"), ALICE).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.get(&format!("/user/keys/{id}"), ALICE).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_supported_key_type_is_accepted() {
    let env = start().await;
    for (i, key) in [ED25519, RSA, ECDSA_256, ECDSA_384, DSA].iter().enumerate() {
        let k = add(&env, ALICE, &format!("k{i}"), key).await;
        assert_eq!(k["key"], publishable(key, "alice"));
    }
    // A key pasted with line breaks and extra comment words is sanitised.
    let broken = format!(
        "  {}\n{} comment words\n",
        &ED25519_FOO[..60],
        &ED25519_FOO[60..ED25519_FOO.len() - 12]
    );
    let k = add(&env, BOB, "broken", &broken).await;
    assert_eq!(k["key"], publishable(ED25519_FOO, "bob"));
}

#[tokio::test]
async fn key_validation_errors() {
    let env = start().await;
    let r = env.post("/user/keys", ALICE, json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, json!({"error": "key is missing, title is missing"}));
    let r = env
        .post(
            "/user/keys",
            ALICE,
            json!({"title": "x", "key": "not a key"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"message": {
            "key": [
                "type is forbidden. Must be RSA, DSA, ECDSA, ED25519, ECDSA_SK, or ED25519_SK",
                "is invalid"
            ],
            "fingerprint_sha256": ["cannot be generated"]
        }})
    );
    let r = env
        .post(
            "/user/keys",
            ALICE,
            json!({"title": "x", "key": "ssh-ed25519 AAAAnotbase64ofakey"}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"message": {
            "key": ["type is forbidden. Must be RSA, DSA, ECDSA, ED25519, ECDSA_SK, or ED25519_SK"],
            "fingerprint_sha256": ["cannot be generated"]
        }})
    );
    let r = env
        .post("/user/keys", ALICE, json!({"title": "", "key": ED25519}))
        .await;
    assert_eq!(r.body, json!({"message": {"title": ["can't be blank"]}}));
    let r = env
        .post(
            "/user/keys",
            ALICE,
            json!({"title": "x", "key": ED25519, "usage_type": "login"}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"error": "usage_type does not have a valid value"})
    );
    let r = env
        .post(
            "/user/keys",
            ALICE,
            json!({"title": "x", "key": ED25519, "expires_at": "yesterday"}),
        )
        .await;
    assert_eq!(r.body, json!({"error": "expires_at is invalid"}));
    let r = env
        .post(
            "/user/keys",
            ALICE,
            json!({"title": "x", "key": ED25519, "expires_at": "2001-01-01"}),
        )
        .await;
    assert_eq!(r.body, json!({"message": {"key": ["has expired"]}}));

    add(&env, ALICE, "first", ED25519).await;
    for token in [ALICE, BOB] {
        let r = env
            .post(
                "/user/keys",
                token,
                json!({"title": "again", "key": ED25519}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.body,
            json!({"message": {"fingerprint_sha256": ["has already been taken"]}}),
            "the same key for anyone"
        );
    }
}

#[tokio::test]
async fn key_options() {
    let env = start().await;
    let r = env
        .post(
            "/user/keys",
            ALICE,
            json!({"title": "signing", "key": RSA, "usage_type": "signing", "expires_at": "2099-01-02"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["usage_type"], "signing");
    assert_eq!(r.body["expires_at"], "2099-01-02T00:00:00.000Z");
    let r = env
        .post_form(
            "/user/keys",
            BOB,
            &[
                ("title", "form"),
                ("key", ECDSA_256),
                ("expires_at", "2099-05-06T07:08:09Z"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["expires_at"], "2099-05-06T07:08:09.000Z");
}

#[tokio::test]
async fn keys_of_other_users() {
    let env = start().await;
    let bob = env.get("/user", BOB).await.body["id"].as_u64().unwrap();
    let body = json!({"title": "deploy", "key": ECDSA_384});
    let r = env
        .post(&format!("/users/{bob}/keys"), ALICE, body.clone())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, json!({"message": "403 Forbidden"}));
    let r = env
        .post(&format!("/users/{bob}/keys"), ALICE, json!({}))
        .await;
    assert_eq!(
        r.body,
        json!({"error": "key is missing, title is missing"}),
        "parameters are checked before the admin check"
    );
    let r = env.post("/users/9999/keys", ADMIN, body.clone()).await;
    assert_eq!(r.body, json!({"message": "404 User Not Found"}));
    let r = env.post(&format!("/users/{bob}/keys"), ADMIN, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["key"], publishable(ECDSA_384, "bob"));
    let key_id = r.body["id"].as_u64().unwrap();

    for who in [bob.to_string(), "bob".to_string(), "BOB".to_string()] {
        let r = env.get(&format!("/users/{who}/keys"), ALICE).await;
        assert_eq!(r.status, StatusCode::OK, "{who}");
        assert_eq!(r.body.as_array().unwrap().len(), 1, "{who}");
    }
    assert_eq!(
        env.get("/users/nobody/keys", ALICE).await.body,
        json!({"message": "404 User Not Found"})
    );
    let r = env.get(&format!("/users/{bob}/keys/{key_id}"), ALICE).await;
    assert_eq!(r.body["id"], key_id);
    let r = env.get(&format!("/users/1/keys/{key_id}"), ALICE).await;
    assert_eq!(r.body, json!({"message": "404 Key Not Found"}));
    assert_eq!(
        env.get("/user/keys", BOB)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.delete(&format!("/users/{bob}/keys/{key_id}"), ALICE)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.delete(&format!("/users/{bob}/keys/{key_id}"), ADMIN)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(env.get("/user/keys", BOB).await.body, json!([]));
}

#[tokio::test]
async fn admins_find_keys_by_fingerprint_and_id() {
    let env = start().await;
    let alice = env.get("/user", ALICE).await.body;
    let k = add(&env, ALICE, "laptop", ED25519).await;
    add(&env, BOB, "other", ED25519_FOO).await;
    for (key, fp) in [
        (RSA, RSA_SHA256),
        (ECDSA_256, ECDSA_256_SHA256),
        (DSA, DSA_SHA256),
    ] {
        add(&env, BOB, fp, key).await;
    }
    let r = env
        .get(
            &format!("/keys?fingerprint={}", urlencode(ED25519_SHA256)),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["id"], k["id"]);
    assert_eq!(r.body["key"], k["key"]);
    assert_eq!(r.body["user"]["id"], alice["id"]);
    assert_eq!(r.body["user"]["username"], "alice");
    assert_eq!(
        r.body["user"]["email"], "alice@example.com",
        "Entities::UserPublic includes the email"
    );
    assert!(r.body["user"].get("is_admin").is_none());
    for (fp, title) in [
        (RSA_SHA256, RSA_SHA256),
        (ECDSA_256_SHA256, ECDSA_256_SHA256),
        (DSA_SHA256, DSA_SHA256),
    ] {
        let r = env
            .get(&format!("/keys?fingerprint={}", urlencode(fp)), ADMIN)
            .await;
        assert_eq!(r.body["title"], title);
        assert_eq!(r.body["user"]["username"], "bob");
    }
    let lower = ED25519_SHA256.replacen("SHA256:", "sha256:", 1);
    let r = env
        .get(&format!("/keys?fingerprint={}", urlencode(&lower)), ADMIN)
        .await;
    assert_eq!(r.body["id"], k["id"]);
    let r = env
        .get(&format!("/keys?fingerprint={ED25519_FOO_MD5}"), ADMIN)
        .await;
    assert_eq!(r.body["title"], "other", "legacy MD5 form");

    let r = env
        .get(
            &format!("/keys?fingerprint={}", urlencode(ECDSA_384_SHA256)),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 Key Not Found"}));
    let r = env.get("/keys?fingerprint=SHA256:tooshort", ADMIN).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, json!({"message": "Failed to return the key"}));
    let r = env.get("/keys?fingerprint=garbage", ADMIN).await;
    assert_eq!(r.body, json!({"message": "Failed to return the key"}));
    let r = env.get("/keys", ADMIN).await;
    assert_eq!(r.body, json!({"error": "fingerprint is missing"}));
    let r = env
        .get(
            &format!("/keys?fingerprint={}", urlencode(ED25519_SHA256)),
            ALICE,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = env.get(&format!("/keys/{}", k["id"]), ADMIN).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["user"]["username"], "alice");
    let r = env.get("/keys/9999", ADMIN).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 Not found"}));
    assert_eq!(
        env.get(&format!("/keys/{}", k["id"]), ALICE).await.status,
        StatusCode::FORBIDDEN
    );
    let c = env.emu.counters();
    assert_eq!(c.get("GET /api/v4/keys"), 11);
    assert_eq!(c.get("GET /api/v4/keys/:id"), 3);
    assert_eq!(c.get("POST /api/v4/user/keys"), 5);
}

#[tokio::test]
async fn keys_survive_state_dump_and_go_with_their_user() {
    let env = start().await;
    let k = add(&env, ALICE, "laptop", ED25519).await;
    let dump = env.emu.dump_state();
    assert_eq!(dump["ssh_keys"].as_object().unwrap().len(), 1);
    env.emu.reset_state();
    assert_eq!(env.get("/user/keys", ALICE).await.body, json!([]));
    env.emu.load_state(dump).unwrap();
    assert_eq!(env.get("/user/keys", ALICE).await.body, json!([k]));
    let next = add(&env, BOB, "next", RSA).await;
    assert_eq!(next["id"], k["id"].as_u64().unwrap() + 1, "ids continue");

    let alice = env.get("/user", ALICE).await.body["id"].as_u64().unwrap();
    assert_eq!(
        env.delete(&format!("/users/{alice}"), ADMIN).await.status,
        StatusCode::NO_CONTENT
    );
    // user_delete_delay is zero in the test config.
    let r = env
        .get(
            &format!("/keys?fingerprint={}", urlencode(ED25519_SHA256)),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}
