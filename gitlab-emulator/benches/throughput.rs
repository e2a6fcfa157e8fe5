//! Throughput benchmark: starts the emulator in-process, seeds projects and
//! variables, then drives it with many concurrent keep-alive clients for a
//! bounded number of requests per phase and prints requests/second and
//! p50/p99 latency. No fault injection, no assertion on time.
//!
//! Run: `cargo bench -p gitlab-emulator --bench throughput`
//! (optional env: BENCH_REQUESTS, default 20000 per phase).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gitlab_emulator::{Config, Emulator};
use serde_json::json;

const TOKEN: &str = "bench-admin";
const PROJECTS: usize = 200;
const VARIABLES_PER_PROJECT: usize = 50;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let total: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let emu = Emulator::start(Config {
        admin_tokens: vec![TOKEN.into()],
        ..Config::default()
    })
    .await
    .expect("emulator starts");
    let api = format!("{}/api/v4", emu.url());
    seed(&api).await;
    println!(
        "gitlab-emulator throughput: {PROJECTS} projects x {VARIABLES_PER_PROJECT} variables, {total} requests per phase, no injected latency"
    );
    println!(
        "{:<34} {:>7} {:>10} {:>9} {:>9} {:>7}",
        "phase", "clients", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, clients) in [
        ("mixed reads, 16 clients", 16),
        ("mixed reads, 64 clients", 64),
        ("mixed reads, 500 clients", 500),
    ] {
        run_phase(&api, name, clients, total, false).await;
    }
    run_phase(
        &api,
        "writes (POST variable), 64 clients",
        64,
        total / 2,
        true,
    )
    .await;
    let counters = emu.counters();
    println!("total /api/v4 requests served: {}", counters.total);
    emu.shutdown().await.expect("clean shutdown");
}

async fn seed(api: &str) {
    let client = reqwest::Client::new();
    for p in 0..PROJECTS {
        let resp = client
            .post(format!("{api}/projects"))
            .header("PRIVATE-TOKEN", TOKEN)
            .json(&json!({"name": format!("bench-{p}"), "initialize_with_readme": true}))
            .send()
            .await
            .expect("seed project");
        assert!(
            resp.status().is_success(),
            "seed project: {}",
            resp.status()
        );
        for v in 0..VARIABLES_PER_PROJECT {
            let resp = client
                .post(format!("{api}/projects/{}/variables", p + 1))
                .header("PRIVATE-TOKEN", TOKEN)
                .json(&json!({"key": format!("VAR_{v}"), "value": format!("value-{v}")}))
                .send()
                .await
                .expect("seed variable");
            assert!(
                resp.status().is_success(),
                "seed variable: {}",
                resp.status()
            );
        }
    }
}

fn request_for(i: usize, api: &str) -> (reqwest::Method, String, Option<serde_json::Value>) {
    let project = i % PROJECTS + 1;
    match i % 5 {
        0 => (
            reqwest::Method::GET,
            format!("{api}/projects/{project}"),
            None,
        ),
        1 => (
            reqwest::Method::GET,
            format!("{api}/projects/{project}/variables?per_page=50"),
            None,
        ),
        2 => (
            reqwest::Method::GET,
            format!(
                "{api}/projects/{project}/variables/VAR_{}",
                i % VARIABLES_PER_PROJECT
            ),
            None,
        ),
        3 => (
            reqwest::Method::GET,
            format!("{api}/projects/{project}/protected_branches"),
            None,
        ),
        _ => (
            reqwest::Method::GET,
            format!("{api}/projects?per_page=20&page={}", i % 10 + 1),
            None,
        ),
    }
}

async fn run_phase(api: &str, name: &str, clients: usize, total: usize, writes: bool) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let next = next.clone();
        let api = api.to_string();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let (method, url, body) = if writes {
                    (
                        reqwest::Method::POST,
                        format!("{api}/projects/{}/variables", i % PROJECTS + 1),
                        Some(json!({"key": format!("W_{c}_{i}"), "value": "v"})),
                    )
                } else {
                    request_for(i, &api)
                };
                let t = Instant::now();
                let mut req = client.request(method, url).header("PRIVATE-TOKEN", TOKEN);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                match req.send().await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.bytes().await;
                        if !ok {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
                latencies.push(t.elapsed());
            }
            (latencies, errors)
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (lat, err) = t.await.expect("client task");
        all.extend(lat);
        errors += err;
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| {
        if all.is_empty() {
            0.0
        } else {
            let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
            all[idx].as_secs_f64() * 1000.0
        }
    };
    println!(
        "{:<34} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>7}",
        name,
        clients,
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        errors
    );
}
