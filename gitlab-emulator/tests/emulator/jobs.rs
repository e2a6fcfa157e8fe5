//! CI jobs: control-plane fixtures, `GET /job` with a job token, project jobs
//! and traces, permissions and persistence.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

async fn private_project(env: &Env) -> Value {
    env.project(
        ADMIN,
        json!({"name": "app", "initialize_with_readme": true}),
    )
    .await
}

async fn create_job(env: &Env, spec: Value) -> Value {
    let r = env.control(Method::POST, "/jobs", Some(spec)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

async fn job_token_get(env: &Env, token: &str) -> Resp {
    env.call_with(Method::GET, "/job", &[("JOB-TOKEN", token)], None)
        .await
}

#[tokio::test]
async fn job_token_reads_its_running_job() {
    let env = start().await;
    let p = private_project(&env).await;
    let job = create_job(
        &env,
        json!({"project": "root/app", "user": "alice", "name": "build", "stage": "compile", "trace": "starting\n"}),
    )
    .await;
    let token = job["token"].as_str().unwrap();
    assert!(token.starts_with("glcbt-"), "{token}");
    assert_eq!(job["status"], "running");

    let r = job_token_get(&env, token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["id"], job["id"]);
    assert_eq!(b["name"], "build");
    assert_eq!(b["stage"], "compile");
    assert_eq!(b["status"], "running");
    assert_eq!(b["ref"], "main", "the project's default branch");
    assert_eq!(b["tag"], false);
    assert_eq!(b["allow_failure"], false);
    assert!(b["created_at"].is_string());
    assert!(b["started_at"].is_string());
    assert_eq!(b["finished_at"], Value::Null);
    assert_eq!(b["erased_at"], Value::Null);
    assert!(b["duration"].is_number());
    assert!(b["queued_duration"].is_number());
    assert_eq!(b["user"]["username"], "alice");
    assert!(b["user"].get("email").is_none(), "Entities::User");
    assert_eq!(b["pipeline"]["project_id"], p["id"]);
    assert_eq!(b["pipeline"]["ref"], "main");
    assert_eq!(b["pipeline"]["status"], "running");
    assert_eq!(b["pipeline"]["source"], "push");
    assert_eq!(b["pipeline"]["iid"], 1);
    let sha = b["pipeline"]["sha"].as_str().unwrap();
    assert_eq!(sha.len(), 40);
    assert_eq!(b["commit"]["id"], sha);
    assert_eq!(b["commit"]["short_id"], &sha[..8]);
    assert_eq!(
        b["web_url"],
        format!("{}/root/app/-/jobs/{}", env.emu.url(), job["id"])
    );
    assert_eq!(
        b["pipeline"]["web_url"],
        format!(
            "{}/root/app/-/pipelines/{}",
            env.emu.url(),
            b["pipeline"]["id"]
        )
    );
    assert_eq!(b["project"], json!({"ci_job_token_scope_enabled": false}));
    assert_eq!(b["artifacts"], json!([]));
    assert_eq!(b["runner"], Value::Null);
    assert_eq!(b["archived"], false);
    assert_eq!(b["tag_list"], json!([]));
    assert!(b.get("failure_reason").is_none());
    assert!(
        b.get("token").is_none(),
        "the API never shows the job token"
    );

    let by_param = env
        .call_with(Method::GET, &format!("/job?job_token={token}"), &[], None)
        .await;
    assert_eq!(by_param.body["id"], job["id"]);
    let by_bearer = env
        .call_with(
            Method::GET,
            "/job",
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
        .await;
    assert_eq!(by_bearer.body["id"], job["id"]);
    assert_eq!(env.emu.counters().get("GET /api/v4/job"), 3);
}

#[tokio::test]
async fn job_tokens_work_only_while_running_and_only_on_job() {
    let env = start().await;
    private_project(&env).await;
    let job = create_job(&env, json!({"project": 1, "user": "alice"})).await;
    let token = job["token"].as_str().unwrap().to_string();
    let id = job["id"].as_u64().unwrap();

    // Not a personal access token: other routes do not take it.
    let r = env
        .call_with(Method::GET, "/user", &[("JOB-TOKEN", &token)], None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        env.get("/user", &token).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A personal access token authenticates on /job but names no job.
    let r = env.get("/job", ALICE).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 Job Not Found"}));

    let done = env.emu.update_job(id, json!({"status": "success"}));
    assert_eq!(done["status"], "success");
    assert!(done["finished_at"].is_string());
    let r = job_token_get(&env, &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, json!({"message": "401 Unauthorized"}));

    let pending = create_job(&env, json!({"project": 1, "status": "pending"})).await;
    let r = job_token_get(&env, pending["token"].as_str().unwrap()).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "only running jobs authenticate"
    );
    let started = env.emu.update_job(
        pending["id"].as_u64().unwrap(),
        json!({"status": "running"}),
    );
    assert!(started["started_at"].is_string());
    let r = job_token_get(&env, pending["token"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["user"]["username"], "root", "default user");

    assert_eq!(
        job_token_get(&env, "glcbt-unknown").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = env.call_with(Method::GET, "/job", &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn blocked_users_job_token_is_refused() {
    let env = start().await;
    private_project(&env).await;
    let job = create_job(&env, json!({"project": 1, "user": "bob"})).await;
    let bob = env.get("/user", BOB).await.body["id"].clone();
    env.post(&format!("/users/{bob}/block"), ADMIN, json!({}))
        .await;
    let r = job_token_get(&env, job["token"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body,
        json!({"message": "403 Forbidden - Your account has been blocked."})
    );
}

#[tokio::test]
async fn project_jobs_need_reporter_access() {
    let env = start().await;
    let p = private_project(&env).await;
    let job = create_job(&env, json!({"project": p["id"], "trace": "hello\n"})).await;
    let path = format!("/projects/{}/jobs/{}", p["id"], job["id"]);
    let r = env.get(&path, ADMIN).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["id"], job["id"]);
    assert_eq!(
        env.get("/projects/root%2Fapp/jobs/1", ADMIN).await.body["id"],
        job["id"]
    );
    let r = env.get(&path, ALICE).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 Project Not Found"}));

    let alice = env.get("/user", ALICE).await.body["id"].clone();
    let bob = env.get("/user", BOB).await.body["id"].clone();
    let members = format!("/projects/{}/members", p["id"]);
    env.post(
        &members,
        ADMIN,
        json!({"user_id": alice, "access_level": 20}),
    )
    .await;
    env.post(&members, ADMIN, json!({"user_id": bob, "access_level": 10}))
        .await;
    assert_eq!(env.get(&path, ALICE).await.status, StatusCode::OK);
    let r = env.get(&path, BOB).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, json!({"message": "403 Forbidden"}));

    let r = env
        .get(&format!("/projects/{}/jobs/999", p["id"]), ADMIN)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 Not found"}));
    let r = env
        .get(&format!("/projects/{}/jobs/abc", p["id"]), ADMIN)
        .await;
    assert_eq!(r.body, json!({"error": "job_id is invalid"}));
    let other = env.project(ADMIN, json!({"name": "other"})).await;
    let r = env
        .get(
            &format!("/projects/{}/jobs/{}", other["id"], job["id"]),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a job of another project");

    // Public projects with public jobs: anyone may read.
    let public = env
        .project(ADMIN, json!({"name": "pub", "visibility": "public"}))
        .await;
    let pj = create_job(&env, json!({"project": "root/pub"})).await;
    let r = env
        .get(
            &format!("/projects/{}/jobs/{}", public["id"], pj["id"]),
            BOB,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn traces_are_plain_text_and_grow() {
    let env = start().await;
    let p = private_project(&env).await;
    let job = create_job(&env, json!({"project": "ROOT/APP", "trace": "hello\n"})).await;
    let id = job["id"].as_u64().unwrap();
    let path = format!("/projects/{}/jobs/{id}/trace", p["id"]);
    let r = env.get(&path, ADMIN).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text, "hello\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(
        r.header("content-disposition"),
        Some(format!("infile; filename=\"{id}.log\"").as_str())
    );
    let r = env
        .control(
            Method::PUT,
            &format!("/jobs/{id}"),
            Some(json!({"trace": "world\n", "status": "failed"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "failed");
    assert_eq!(r.body["failure_reason"], "script_failure");
    assert_eq!(r.body["token"], job["token"]);
    assert_eq!(env.get(&path, ADMIN).await.text, "hello\nworld\n");
    let r = env
        .get(&format!("/projects/{}/jobs/{id}", p["id"]), ADMIN)
        .await;
    assert_eq!(r.body["failure_reason"], "script_failure");
    assert_eq!(r.body["pipeline"]["status"], "failed");
    let empty = create_job(&env, json!({"project": 1})).await;
    let r = env
        .get(
            &format!("/projects/{}/jobs/{}/trace", p["id"], empty["id"]),
            ADMIN,
        )
        .await;
    assert_eq!(r.text, "");
    assert_eq!(
        env.emu
            .counters()
            .get("GET /api/v4/projects/:id/jobs/:job_id/trace"),
        3
    );
}

#[tokio::test]
async fn jobs_share_pipelines() {
    let env = start().await;
    private_project(&env).await;
    let first = env
        .emu
        .create_job(json!({"project": 1, "name": "build", "status": "success"}));
    let pipeline = first["pipeline"]["id"].as_u64().unwrap();
    assert_eq!(first["pipeline"]["status"], "success");
    let second = env.emu.create_job(
        json!({"project": 1, "name": "test", "status": "pending", "pipeline_id": pipeline}),
    );
    assert_eq!(second["pipeline"]["id"], pipeline);
    assert_eq!(second["pipeline"]["sha"], first["pipeline"]["sha"]);
    assert_eq!(second["pipeline"]["status"], "running", "success + pending");
    assert_eq!(second["started_at"], Value::Null);
    let third = env.emu.create_job(json!({"project": 1, "pipeline_id": 40}));
    assert_eq!(
        third["pipeline"]["id"], 40,
        "a new pipeline with the given id"
    );
    assert_eq!(third["pipeline"]["iid"], 2);
    let fourth = env.emu.create_job(json!({"project": 1}));
    assert_eq!(fourth["pipeline"]["id"], 41);

    let other = env.project(ADMIN, json!({"name": "other"})).await;
    let err = env
        .emu
        .try_create_job(json!({"project": other["id"], "pipeline_id": pipeline}))
        .unwrap_err();
    assert!(
        matches!(
            err,
            gitlab_emulator::EmulatorError::Fixture { status: 400, .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn job_fixture_errors() {
    let env = start().await;
    private_project(&env).await;
    for (spec, status) in [
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"project": "no/such"}), StatusCode::NOT_FOUND),
        (
            json!({"project": 1, "user": "nobody"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"project": 1, "status": "done"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"project": 1, "colour": "red"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = env.control(Method::POST, "/jobs", Some(spec.clone())).await;
        assert_eq!(r.status, status, "{spec}: {}", r.text);
    }
    let r = env
        .control(Method::PUT, "/jobs/77", Some(json!({"status": "success"})))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = env.control(Method::PUT, "/jobs/x", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        env.emu.counters().total,
        1,
        "only the project creation counts"
    );
}

#[tokio::test]
async fn jobs_are_state_and_follow_their_project() {
    let env = start().await;
    let p = private_project(&env).await;
    let job = env.emu.create_job(json!({"project": 1, "user": "alice"}));
    let token = job["token"].as_str().unwrap().to_string();
    let dump = env.emu.dump_state();
    assert_eq!(dump["jobs"].as_object().unwrap().len(), 1);
    assert_eq!(dump["pipelines"].as_object().unwrap().len(), 1);
    env.emu.reset_state();
    assert_eq!(
        job_token_get(&env, &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    env.emu.load_state(dump).unwrap();
    assert_eq!(job_token_get(&env, &token).await.status, StatusCode::OK);
    let next = env.emu.create_job(json!({"project": 1}));
    assert_eq!(next["id"], job["id"].as_u64().unwrap() + 1);

    // A read_api token may read jobs (API::Ci::Jobs also registers ai_workflows).
    let ro = env
        .emu
        .create_token(json!({"user": "root", "scopes": ["read_api"]}));
    let r = env
        .get(
            &format!("/projects/{}/jobs/{}", p["id"], job["id"]),
            ro["token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let path = format!(
        "/projects/{}?permanently_remove=true&full_path=root%2Fapp",
        p["id"]
    );
    assert_eq!(
        env.delete(&format!("/projects/{}", p["id"]), ADMIN)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(env.delete(&path, ADMIN).await.status, StatusCode::ACCEPTED);
    assert_eq!(
        job_token_get(&env, &token).await.status,
        StatusCode::UNAUTHORIZED,
        "a removed project's jobs are gone"
    );
    assert!(env.emu.dump_state()["jobs"].as_object().unwrap().is_empty());
}
