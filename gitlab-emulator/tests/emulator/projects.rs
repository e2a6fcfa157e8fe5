use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn create_get_by_id_and_encoded_path() {
    let env = start().await;
    let p = env
        .project(ADMIN, json!({"name": "My App", "description": "d"}))
        .await;
    assert_eq!(p["path"], "my-app");
    assert_eq!(p["path_with_namespace"], "root/my-app");
    assert_eq!(p["name_with_namespace"], "Administrator / My App");
    assert_eq!(p["visibility"], "private");
    assert_eq!(p["default_branch"], "main", "default_branch_or_main");
    assert_eq!(p["empty_repo"], true);
    assert_eq!(p["namespace"]["id"], 1);
    assert_eq!(p["namespace"]["kind"], "user");
    assert_eq!(p["namespace"]["full_path"], "root");
    assert_eq!(p["archived"], false);
    assert_eq!(
        p["shared_with_groups"],
        json!([]),
        "gitlabform's members processor reads it"
    );
    assert!(p["web_url"].as_str().unwrap().ends_with("/root/my-app"));
    let by_path = env.get("/projects/ROOT%2FMy-App", ADMIN).await;
    assert_eq!(by_path.status, StatusCode::OK);
    assert_eq!(by_path.body["id"], p["id"]);
    assert_eq!(by_path.body["path"], "my-app", "case is preserved");
    let missing = env.get("/projects/root%2Fnope", ADMIN).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body, json!({"message": "404 Project Not Found"}));
}

#[tokio::test]
async fn name_or_path_is_required() {
    let env = start().await;
    let r = env
        .post("/projects", ADMIN, json!({"description": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"error": "name, path are missing, at least one parameter must be provided"})
    );
}

#[tokio::test]
async fn taken_path_is_400_validation() {
    let env = start().await;
    env.project(ADMIN, json!({"name": "dup", "path": "dup"}))
        .await;
    let r = env
        .post("/projects", ADMIN, json!({"name": "dup", "path": "dup"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"message": {
            "name": ["has already been taken"],
            "path": ["has already been taken"],
            "project_namespace.name": ["has already been taken"]
        }})
    );
    let r = env
        .post("/projects", ADMIN, json!({"name": "other", "path": "DUP"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"message": {"path": ["has already been taken"]}})
    );
}

#[tokio::test]
async fn initialised_project_protects_default_branch() {
    let env = start().await;
    let p = env
        .project(
            ADMIN,
            json!({"name": "init", "initialize_with_readme": true}),
        )
        .await;
    assert_eq!(p["default_branch"], "main");
    assert_eq!(p["empty_repo"], false);
    let pb = env
        .get(
            &format!("/projects/{}/protected_branches/main", p["id"]),
            ADMIN,
        )
        .await;
    assert_eq!(pb.status, StatusCode::OK);
    assert_eq!(pb.body["push_access_levels"][0]["access_level"], 40);
    assert_eq!(pb.body["merge_access_levels"][0]["access_level"], 40);
    assert_eq!(pb.body["allow_force_push"], false);

    let custom = env
        .project(
            ADMIN,
            json!({"name": "init2", "initialize_with_readme": "true", "default_branch": "trunk"}),
        )
        .await;
    assert_eq!(custom["default_branch"], "trunk");
    let r = env
        .post(
            &format!("/projects/{}/protected_branches", custom["id"]),
            ADMIN,
            json!({"name": "trunk"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let bare = env
        .project(ADMIN, json!({"name": "bare", "default_branch": "dev"}))
        .await;
    assert_eq!(bare["default_branch"], "main", "default_branch_or_main");
    let list = env
        .get(
            &format!("/projects/{}/protected_branches", bare["id"]),
            ADMIN,
        )
        .await;
    assert_eq!(list.body, json!([]));
}

#[tokio::test]
async fn personal_project_owner_is_a_member_and_group_projects_work() {
    let env = start().await;
    let p = env.project(ALICE, json!({"path": "alices"})).await;
    assert_eq!(p["namespace"]["full_path"], "alice");
    assert_eq!(p["owner"]["username"], "alice");
    let members = env
        .get(&format!("/projects/{}/members", p["id"]), ALICE)
        .await;
    assert_eq!(members.body[0]["username"], "alice");
    assert_eq!(members.body[0]["access_level"], 50);
    // Bob cannot see Alice's private project.
    let r = env.get(&format!("/projects/{}", p["id"]), BOB).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let g = env
        .post("/groups", ADMIN, json!({"name": "Team", "path": "team"}))
        .await;
    assert_eq!(g.status, StatusCode::CREATED);
    let gp = env
        .project(ADMIN, json!({"name": "svc", "namespace_id": g.body["id"]}))
        .await;
    assert_eq!(gp["path_with_namespace"], "team/svc");
    assert_eq!(gp["namespace"]["kind"], "group");
    let r = env
        .post(
            "/projects",
            ADMIN,
            json!({"name": "x", "namespace_id": 9999}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, json!({"message": "404 Namespace Not Found"}));
    let r = env
        .post(
            "/projects",
            BOB,
            json!({"name": "x", "namespace_id": g.body["id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn update_settings_and_default_branch() {
    let env = start().await;
    let p = env
        .project(
            ADMIN,
            json!({"name": "upd", "initialize_with_readme": true}),
        )
        .await;
    let path = format!("/projects/{}", p["id"]);
    let r = env
        .put(&path, ADMIN, json!({"description": "new", "visibility": "internal", "merge_method": "ff", "issues_enabled": false}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["description"], "new");
    assert_eq!(r.body["visibility"], "internal");
    assert_eq!(r.body["merge_method"], "ff");
    assert_eq!(r.body["issues_enabled"], false);
    let bad = env.put(&path, ADMIN, json!({"visibility": "secret"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.body,
        json!({"error": "visibility does not have a valid value"})
    );
    let nob = env
        .put(&path, ADMIN, json!({"default_branch": "dev"}))
        .await;
    assert_eq!(nob.status, StatusCode::BAD_REQUEST);
    let br = env
        .post(
            &format!("{path}/repository/branches"),
            ADMIN,
            json!({"branch": "dev", "ref": "main"}),
        )
        .await;
    assert_eq!(br.status, StatusCode::CREATED);
    let ok = env
        .put(&path, ADMIN, json!({"default_branch": "dev"}))
        .await;
    assert_eq!(ok.body["default_branch"], "dev");
    // Renaming the path moves the lookup key.
    let renamed = env.put(&path, ADMIN, json!({"path": "moved"})).await;
    assert_eq!(renamed.body["path_with_namespace"], "root/moved");
    assert_eq!(
        env.get("/projects/root%2Fmoved", ADMIN).await.status,
        StatusCode::OK
    );
    // The old path follows the redirect route (`follow_redirects: true`).
    let old = env.get("/projects/root%2Fupd", ADMIN).await;
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(old.body["path_with_namespace"], "root/moved");
    // A developer cannot update.
    let alice = env.get("/user", ALICE).await.body;
    env.post(
        &format!("{path}/members"),
        ADMIN,
        json!({"user_id": alice["id"], "access_level": 30}),
    )
    .await;
    let r = env.put(&path, ALICE, json!({"description": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, json!({"message": "403 Forbidden"}));
}

#[tokio::test]
async fn delete_is_delayed_then_permanent() {
    let env = start().await;
    let p = env.project(ADMIN, json!({"name": "gone"})).await;
    let path = format!("/projects/{}", p["id"]);
    let r = env.delete(&path, ADMIN).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body, json!({"message": "202 Accepted"}));
    let still = env.get(&path, ADMIN).await;
    assert_eq!(still.status, StatusCode::OK);
    assert!(still.body["marked_for_deletion_on"].is_string());
    assert_eq!(still.body["archived"], true);
    let taken = env
        .post("/projects", ADMIN, json!({"name": "gone2", "path": "gone"}))
        .await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST, "path stays taken");
    let again = env.delete(&path, ADMIN).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    let wrong = env
        .delete(
            &format!("{path}?permanently_remove=true&full_path=root/other"),
            ADMIN,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong.body,
        json!({"message": "`full_path` is incorrect. You must enter the complete path for the project."})
    );
    let r = env
        .delete(
            &format!("{path}?permanently_remove=true&full_path=root%2Fgone"),
            ADMIN,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(env.get(&path, ADMIN).await.status, StatusCode::NOT_FOUND);
    env.project(ADMIN, json!({"name": "gone"})).await;

    let fresh = env.project(ADMIN, json!({"name": "fresh"})).await;
    let r = env
        .delete(
            &format!(
                "/projects/{}?permanently_remove=true&full_path=root%2Ffresh",
                fresh["id"]
            ),
            ADMIN,
        )
        .await;
    assert_eq!(
        r.body,
        json!({"message": "Project must be marked for deletion first."})
    );
}

#[tokio::test]
async fn groups_and_namespaces() {
    let env = start().await;
    let g = env
        .post(
            "/groups",
            ADMIN,
            json!({"name": "Platform", "path": "platform"}),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED);
    assert_eq!(g.body["full_path"], "platform");
    let sub = env
        .post(
            "/groups",
            ADMIN,
            json!({"name": "Infra", "path": "infra", "parent_id": g.body["id"]}),
        )
        .await;
    assert_eq!(sub.body["full_path"], "platform/infra");
    assert_eq!(sub.body["full_name"], "Platform / Infra");
    let dup = env
        .post("/groups", ADMIN, json!({"name": "P", "path": "platform"}))
        .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        dup.body,
        json!({"message": "Failed to save group {:path=>[\"has already been taken\"]}"})
    );
    let missing = env.post("/groups", ADMIN, json!({"name": "P"})).await;
    assert_eq!(missing.body, json!({"error": "path is missing"}));
    let ns = env.get("/namespaces/platform%2Finfra", ADMIN).await;
    assert_eq!(ns.body["kind"], "group");
    assert_eq!(ns.body["parent_id"], g.body["id"]);
    let list = env.get("/namespaces?search=infra", ADMIN).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    let groups = env.get("/groups", ADMIN).await;
    assert_eq!(groups.body.as_array().unwrap().len(), 2);
    assert_eq!(
        env.get("/groups/9999", ADMIN).await.body,
        json!({"message": "404 Group Not Found"})
    );
    // Alice sees only her own namespace.
    let mine = env.get("/namespaces", ALICE).await;
    let paths: Vec<_> = mine
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].clone())
        .collect();
    assert_eq!(paths, vec![json!("alice")]);
}

/// `GET /namespaces/:namespace/exists` (python-gitlab's functional
/// `test_namespaces`): top level without `parent_id`, among a group's children
/// with it, case-insensitive, with a numbered suggestion when taken.
#[tokio::test]
async fn namespace_exists() {
    let env = start().await;
    let g = env
        .post(
            "/groups",
            ADMIN,
            json!({"name": "Platform", "path": "platform"}),
        )
        .await;
    let gid = g.body["id"].clone();
    env.post(
        "/groups",
        ADMIN,
        json!({"name": "Infra", "path": "infra", "parent_id": gid}),
    )
    .await;
    env.post("/groups", ADMIN, json!({"name": "P1", "path": "platform1"}))
        .await;

    let root = env.get("/namespaces/root/exists", ALICE).await;
    assert_eq!(root.status, StatusCode::OK, "{}", root.text);
    assert_eq!(root.body, json!({"exists": true, "suggests": ["root1"]}));
    let platform = env.get("/namespaces/PLATFORM/exists", ADMIN).await;
    assert_eq!(
        platform.body,
        json!({"exists": true, "suggests": ["PLATFORM2"]})
    );
    let free = env.get("/namespaces/nobody/exists", ADMIN).await;
    assert_eq!(free.body, json!({"exists": false, "suggests": []}));
    // `infra` is not top level, only a child of `platform`.
    let top = env.get("/namespaces/infra/exists", ADMIN).await;
    assert_eq!(top.body["exists"], false);
    let child = env
        .get(&format!("/namespaces/infra/exists?parent_id={gid}"), ADMIN)
        .await;
    assert_eq!(child.body, json!({"exists": true, "suggests": ["infra1"]}));
    let anon = env
        .call_with(reqwest::Method::GET, "/namespaces/root/exists", &[], None)
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}
