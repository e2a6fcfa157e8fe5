use gitlab_emulator::RateLimit;
use reqwest::StatusCode;

use crate::common::*;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until at least `needed_ms` remain in the current fixed window of
/// `period` seconds, so a burst of requests lands in one window.
async fn wait_for_fresh_window(period: u64, needed_ms: u64) {
    let period_ms = period * 1000;
    loop {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        if period_ms - now_ms % period_ms >= needed_ms {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn fixed_window_429_with_headers() {
    let mut cfg = config();
    cfg.rate_limit = Some(RateLimit {
        requests_per_minute: 5,
        headers: true,
        ..RateLimit::default()
    });
    let env = start_with(cfg).await;
    wait_for_fresh_window(60, 5_000).await;
    for _ in 0..5 {
        assert_eq!(env.get("/user", ADMIN).await.status, StatusCode::OK);
    }
    let r = env.get("/user", ADMIN).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.text, "Retry later\n");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    // Retry-After is the rest of the fixed window: period - (now % period).
    let expected = 60 - now_secs() % 60;
    assert!(retry.abs_diff(expected) <= 1, "{retry} vs {expected}");
    assert_eq!(r.header("ratelimit-limit"), Some("5"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("ratelimit-observed"), Some("6"));
    assert_eq!(
        r.header("ratelimit-name"),
        Some("throttle_authenticated_api")
    );
    let reset: u64 = r.header("ratelimit-reset").unwrap().parse().unwrap();
    assert_eq!(reset % 60, 0, "the window ends on a period boundary");
    assert!(r.header("ratelimit-resettime").unwrap().ends_with("GMT"));
    // Refused requests count too.
    let r = env.get("/user", ADMIN).await;
    assert_eq!(r.header("ratelimit-observed"), Some("7"));
    // Windows are per user.
    assert_eq!(env.get("/user", ALICE).await.status, StatusCode::OK);
    assert_eq!(env.emu.counters().rate_limited, 2);
    // Unthrottled responses carry no RateLimit-* by default.
    assert!(
        env.get("/user", ALICE)
            .await
            .header("ratelimit-limit")
            .is_none()
    );
    // Control plane is never limited.
    let c = env
        .client
        .get(format!("{}/-/emulator/counters", env.emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(c.status(), StatusCode::OK);
}

/// A short period: the count restarts at the next window boundary.
#[tokio::test]
async fn window_resets_at_the_period_boundary() {
    let mut cfg = config();
    cfg.rate_limit = Some(RateLimit {
        requests_per_minute: 60,
        period_secs: 2,
        ..RateLimit::default()
    });
    let env = start_with(cfg).await;
    // 60 per minute over 2 s windows: 2 requests per window.
    wait_for_fresh_window(2, 1_500).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(env.get("/user", BOB).await);
    }
    assert_eq!(statuses[2].status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses[2].header("ratelimit-limit"), Some("60"));
    let retry: u64 = statuses[2].header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry));
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    assert_eq!(env.get("/user", BOB).await.status, StatusCode::OK);
}

#[tokio::test]
async fn headers_on_success() {
    let mut cfg = config();
    cfg.rate_limit = Some(RateLimit {
        requests_per_minute: 10,
        headers_on_success: true,
        ..RateLimit::default()
    });
    let env = start_with(cfg).await;
    wait_for_fresh_window(60, 5_000).await;
    let r = env.get("/user", ADMIN).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("ratelimit-name"),
        Some("throttle_authenticated_api")
    );
    assert_eq!(r.header("ratelimit-limit"), Some("10"));
    assert_eq!(r.header("ratelimit-observed"), Some("1"));
    assert_eq!(r.header("ratelimit-remaining"), Some("9"));
    assert!(r.header("ratelimit-reset").is_some());
    // `RequestThrottleData#common_response_headers`: no ResetTime, no Retry-After.
    assert!(r.header("ratelimit-resettime").is_none());
    assert!(r.header("retry-after").is_none());
    // Error responses get them too (404 from a handler, 401 from auth).
    let r = env.get("/projects/999999", ADMIN).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("ratelimit-observed"), Some("2"));
    let r = env.get("/user", "no-such-token").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("ratelimit-observed"), Some("1"));
    assert_eq!(
        r.header("ratelimit-name"),
        Some("throttle_unauthenticated_api")
    );
}

/// Rack::Attack's discriminator is the user (`throttled_identifer`:
/// `user:<id>`), not the token: two tokens of one user share a window.
#[tokio::test]
async fn tokens_of_one_user_share_a_window() {
    let mut cfg = config();
    cfg.admin_tokens.push("second-admin-token".into());
    cfg.rate_limit = Some(RateLimit {
        requests_per_minute: 3,
        ..RateLimit::default()
    });
    let env = start_with(cfg).await;
    wait_for_fresh_window(60, 5_000).await;
    for _ in 0..2 {
        assert_eq!(env.get("/user", ADMIN).await.status, StatusCode::OK);
    }
    assert_eq!(
        env.get("/user", "second-admin-token").await.status,
        StatusCode::OK
    );
    let r = env.get("/user", "second-admin-token").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("ratelimit-observed"), Some("4"));
    assert_eq!(env.get("/user", ALICE).await.status, StatusCode::OK);
}

#[tokio::test]
async fn headerless_mode() {
    let mut cfg = config();
    cfg.rate_limit = Some(RateLimit {
        requests_per_minute: 1,
        headers: false,
        ..RateLimit::default()
    });
    let env = start_with(cfg).await;
    wait_for_fresh_window(60, 3_000).await;
    assert_eq!(env.get("/user", BOB).await.status, StatusCode::OK);
    let r = env.get("/user", BOB).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_none());
    assert!(r.header("ratelimit-limit").is_none());
}
