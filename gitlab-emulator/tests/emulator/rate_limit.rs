use gitlab_emulator::RateLimit;
use reqwest::StatusCode;

use crate::common::*;

#[tokio::test]
async fn token_bucket_429_with_headers() {
    let mut cfg = config();
    cfg.rate_limit = Some(RateLimit {
        requests_per_minute: 5,
        headers: true,
    });
    let env = start_with(cfg).await;
    for _ in 0..5 {
        assert_eq!(env.get("/user", ADMIN).await.status, StatusCode::OK);
    }
    let r = env.get("/user", ADMIN).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.text, "Retry later\n");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "retry-after {retry}");
    assert_eq!(r.header("ratelimit-limit"), Some("5"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("ratelimit-observed"), Some("6"));
    assert_eq!(
        r.header("ratelimit-name"),
        Some("throttle_authenticated_api")
    );
    assert!(r.header("ratelimit-reset").unwrap().parse::<u64>().is_ok());
    assert!(r.header("ratelimit-resettime").unwrap().ends_with("GMT"));
    // Buckets are per token.
    assert_eq!(env.get("/user", ALICE).await.status, StatusCode::OK);
    assert_eq!(env.emu.counters().rate_limited, 1);
    // Control plane is never limited.
    let c = env
        .client
        .get(format!("{}/-/emulator/counters", env.emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(c.status(), StatusCode::OK);
}

#[tokio::test]
async fn headerless_mode() {
    let mut cfg = config();
    cfg.rate_limit = Some(RateLimit {
        requests_per_minute: 1,
        headers: false,
    });
    let env = start_with(cfg).await;
    assert_eq!(env.get("/user", BOB).await.status, StatusCode::OK);
    let r = env.get("/user", BOB).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_none());
    assert!(r.header("ratelimit-limit").is_none());
}
