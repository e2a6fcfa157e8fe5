use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

/// Clones the single project record of `env` into `count` projects in `root`
/// through the state API (fast way to build large instances).
pub async fn seed_projects(env: &Env, count: u64) {
    env.project(ADMIN, json!({"name": "template"})).await;
    let mut state = env.emu.dump_state();
    let template = state["projects"]["1"].clone();
    let mut projects = serde_json::Map::new();
    for id in 1..=count {
        let mut p = template.clone();
        p["id"] = json!(id);
        p["name"] = json!(format!("p{id}"));
        p["path"] = json!(format!("p{id}"));
        projects.insert(id.to_string(), p);
    }
    state["projects"] = Value::Object(projects);
    state["next_id"]["project"] = json!(count + 1);
    env.emu.load_state(state).expect("state loads");
}

fn ids(body: &Value) -> Vec<u64> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn offset_headers_and_links() {
    let env = start().await;
    seed_projects(&env, 45).await;
    let r = env
        .get("/projects?per_page=20&page=2&order_by=id&sort=asc", ADMIN)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ids(&r.body), (21..=40).collect::<Vec<_>>());
    assert_eq!(r.header("x-page"), Some("2"));
    assert_eq!(r.header("x-per-page"), Some("20"));
    assert_eq!(r.header("x-next-page"), Some("3"));
    assert_eq!(r.header("x-prev-page"), Some("1"));
    assert_eq!(r.header("x-total"), Some("45"));
    assert_eq!(r.header("x-total-pages"), Some("3"));
    let link = r.header("link").unwrap();
    let base = env.url("/projects");
    assert_eq!(
        link,
        format!(
            "<{base}?order_by=id&page=1&per_page=20&sort=asc>; rel=\"prev\", <{base}?order_by=id&page=3&per_page=20&sort=asc>; rel=\"next\", <{base}?order_by=id&page=1&per_page=20&sort=asc>; rel=\"first\", <{base}?order_by=id&page=3&per_page=20&sort=asc>; rel=\"last\""
        )
    );
    let last = env.get("/projects?per_page=20&page=3", ADMIN).await;
    assert_eq!(last.body.as_array().unwrap().len(), 5);
    assert_eq!(last.header("x-next-page"), Some(""));
    assert!(!last.header("link").unwrap().contains("rel=\"next\""));
    let first = env.get("/projects", ADMIN).await;
    assert_eq!(first.header("x-prev-page"), Some(""));
    assert_eq!(first.header("x-per-page"), Some("20"));
    assert_eq!(ids(&first.body)[0], 45, "default order is newest first");
    let beyond = env.get("/projects?page=9", ADMIN).await;
    assert_eq!(beyond.body, json!([]));
}

#[tokio::test]
async fn per_page_is_capped_at_100() {
    let env = start().await;
    seed_projects(&env, 120).await;
    let r = env.get("/projects?per_page=500", ADMIN).await;
    assert_eq!(r.header("x-per-page"), Some("100"));
    assert_eq!(r.body.as_array().unwrap().len(), 100);
    assert_eq!(r.header("x-total-pages"), Some("2"));
}

#[tokio::test]
async fn totals_omitted_above_10000() {
    let env = start().await;
    seed_projects(&env, 10_001).await;
    let r = env.get("/projects?per_page=100", ADMIN).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("x-total").is_none());
    assert!(r.header("x-total-pages").is_none());
    let link = r.header("link").unwrap();
    assert!(!link.contains("rel=\"last\""));
    assert!(link.contains("rel=\"next\""));
    assert_eq!(r.header("x-next-page"), Some("2"));
}

#[tokio::test]
async fn offset_cap_405_for_projects_and_users() {
    let env = start().await;
    let r = env.get("/projects?page=502&per_page=100", ADMIN).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.body,
        json!({"error": "Offset pagination has a maximum allowed offset of 50000 for requests that return objects of type Project. Remaining records can be retrieved using keyset pagination."})
    );
    let r = env.get("/users?page=50002&per_page=1", ADMIN).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.body["error"].as_str().unwrap().contains("type User."));
    let ok = env.get("/projects?page=501&per_page=100", ADMIN).await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "offset of exactly 50000 is allowed"
    );
    let p = env.project(ADMIN, json!({"name": "v"})).await;
    let vars = env
        .get(
            &format!("/projects/{}/variables?page=502&per_page=100", p["id"]),
            ADMIN,
        )
        .await;
    assert_eq!(vars.status, StatusCode::OK, "no cap for variables");
}

#[tokio::test]
async fn keyset_walks_with_next_links_only() {
    let env = start().await;
    seed_projects(&env, 25).await;
    let mut url = format!(
        "{}?pagination=keyset&per_page=10&order_by=id&sort=asc",
        env.url("/projects")
    );
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = env
            .client
            .get(&url)
            .header("PRIVATE-TOKEN", ADMIN)
            .send()
            .await
            .unwrap();
        let r = into_resp(resp).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("x-total").is_none());
        assert!(r.header("x-page").is_none());
        seen.extend(ids(&r.body));
        pages += 1;
        match r.header("link") {
            Some(link) => {
                assert!(link.ends_with("rel=\"next\""), "{link}");
                assert!(!link.contains("rel=\"prev\""));
                url = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    assert_eq!(pages, 3);
    // Descending order uses id_before.
    let r = env
        .get(
            "/projects?pagination=keyset&per_page=10&order_by=id&sort=desc",
            ADMIN,
        )
        .await;
    assert_eq!(ids(&r.body)[0], 25);
    assert!(r.header("link").unwrap().contains("id_before=16"));
    // Exactly one full page: no next link.
    let r = env
        .get(
            "/projects?pagination=keyset&per_page=25&order_by=id&sort=asc",
            ADMIN,
        )
        .await;
    assert!(r.header("link").is_none());
    // Unsupported ordering or resource.
    let r = env
        .get("/projects?pagination=keyset&order_by=name", ADMIN)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.body,
        json!({"error": "Keyset pagination is not yet available for this type of request"})
    );
    let r = env.get("/groups?pagination=keyset", ADMIN).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn users_keyset_and_offset() {
    let env = start().await;
    for i in 0..12 {
        env.user(&format!("u{i:02}")).await;
    }
    let r = env
        .get(
            "/users?pagination=keyset&per_page=5&order_by=id&sort=asc",
            ADMIN,
        )
        .await;
    assert_eq!(ids(&r.body), vec![1, 2, 3, 4, 5]);
    assert!(r.header("link").unwrap().contains("id_after=5"));
    let r = env.get("/users?per_page=5&page=3", ADMIN).await;
    assert_eq!(r.header("x-total"), Some("15"));
    assert_eq!(r.body.as_array().unwrap().len(), 5);
}
