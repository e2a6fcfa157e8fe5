use std::time::{Duration, Instant};

use gitlab_emulator::Faults;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn write_then_500_performs_the_write_once() {
    let env = start().await;
    env.emu
        .set_faults(Faults {
            seed: 1,
            write_then_500_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    // Reads are not affected by this fault.
    assert_eq!(env.get("/user", ADMIN).await.status, StatusCode::OK);
    let r = env.post("/projects", ADMIN, json!({"name": "once"})).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.body, json!({"message": "500 Internal Server Error"}));
    // A naive retry finds the project already there.
    let retry = env.post("/projects", ADMIN, json!({"name": "once"})).await;
    assert_eq!(retry.status, StatusCode::INTERNAL_SERVER_ERROR);
    env.emu.clear_faults();
    let list = env.get("/projects?search=once", ADMIN).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        1,
        "created exactly once"
    );
    assert_eq!(env.emu.counters().faults["write_then_500"], 2);
}

async fn statuses(env: &Env, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(env.get("/version", ADMIN).await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn same_seed_same_decisions() {
    let env = start().await;
    let faults = Faults {
        seed: 7,
        error_rate: 0.3,
        rate_limited_rate: 0.2,
        ..Faults::default()
    };
    env.emu.set_faults(faults.clone()).unwrap();
    let first = statuses(&env, 60).await;
    env.emu.set_faults(faults.clone()).unwrap();
    let second = statuses(&env, 60).await;
    assert_eq!(first, second);
    assert!(first.contains(&200) && first.contains(&429));
    assert!(first.iter().any(|s| (500..=503).contains(s)));
    env.emu.set_faults(Faults { seed: 8, ..faults }).unwrap();
    let other = statuses(&env, 60).await;
    assert_ne!(first, other, "a different seed gives a different sequence");
}

#[tokio::test]
async fn connection_reset_gives_no_response() {
    let env = start().await;
    env.emu
        .set_faults(Faults {
            seed: 3,
            reset_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let result = env
        .client
        .get(env.url("/user"))
        .header("PRIVATE-TOKEN", ADMIN)
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a transport error, got {result:?}"
    );
    assert_eq!(env.emu.counters().faults["reset"], 1);
    // Control plane is never faulted.
    let c = env
        .client
        .get(format!("{}/-/emulator/counters", env.emu.url()))
        .send()
        .await;
    assert_eq!(c.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn injected_429_with_and_without_headers() {
    let env = start().await;
    env.emu
        .set_faults(Faults {
            rate_limited_rate: 1.0,
            retry_after_secs: 7,
            ..Faults::default()
        })
        .unwrap();
    let r = env.get("/user", ADMIN).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert!(r.header("ratelimit-limit").is_some());
    env.emu
        .set_faults(Faults {
            rate_limited_rate: 1.0,
            omit_rate_limit_headers: true,
            ..Faults::default()
        })
        .unwrap();
    let r = env.get("/user", ADMIN).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_none());
    assert!(r.header("ratelimit-limit").is_none());
}

#[tokio::test]
async fn latency_is_added() {
    let env = start().await;
    env.emu
        .set_faults(Faults {
            latency_ms: 120,
            jitter_ms: 30,
            ..Faults::default()
        })
        .unwrap();
    let start = Instant::now();
    assert_eq!(env.get("/version", ADMIN).await.status, StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(120));
}

#[tokio::test]
async fn invalid_fault_rates_are_rejected() {
    let env = start().await;
    let err = env.emu.set_faults(Faults {
        error_rate: 0.8,
        reset_rate: 0.8,
        ..Faults::default()
    });
    assert!(err.is_err());
}
