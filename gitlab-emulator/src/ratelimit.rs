//! Optional per-token token bucket imitating GitLab's authenticated API
//! throttle (Rack::Attack): bucket size and refill are `requests_per_minute`.
//! Produces the 429 response GitLab sends, with or without its headers.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use crate::config::RateLimit;
use crate::time::{http_date, now_ms};

/// The window `RateLimit-Observed` counts over (Rack::Attack's period).
const WINDOW: Duration = Duration::from_secs(60);

struct Bucket {
    tokens: f64,
    last: Instant,
    /// When each request of the last minute arrived, refused ones included
    /// (Rack::Attack counts every request it sees).
    seen: VecDeque<Instant>,
}

/// Buckets by token (or `unauthenticated`).
#[derive(Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Why a request was refused.
pub(crate) struct Throttled {
    pub retry_after_secs: u64,
    /// Requests in the last minute, this one included. Always above the
    /// limit: a bucket of N refilled at N per minute is empty only after at
    /// least N admitted requests within the last minute.
    pub observed: u64,
}

impl RateLimiter {
    /// Takes one token for `key`, or reports how long to wait.
    pub fn check(&self, key: &str, limit: &RateLimit) -> Result<(), Throttled> {
        self.check_at(key, limit, Instant::now())
    }

    fn check_at(&self, key: &str, limit: &RateLimit, now: Instant) -> Result<(), Throttled> {
        let capacity = f64::from(limit.requests_per_minute.max(1));
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
            seen: VecDeque::new(),
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.last = now;
        while bucket
            .seen
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            bucket.seen.pop_front();
        }
        bucket.seen.push_back(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_sec;
            Err(Throttled {
                retry_after_secs: wait.ceil().max(1.0) as u64,
                observed: bucket.seen.len() as u64,
            })
        }
    }

    pub fn reset(&self) {
        self.buckets.lock().clear();
    }
}

/// GitLab's Rack::Attack 429: plain-text `Retry later`, with `Retry-After` and
/// `RateLimit-*` headers unless `headers` is false.
pub(crate) fn throttled_response(
    limit: u32,
    observed: u64,
    retry_after: u64,
    headers: bool,
) -> Response {
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, "Retry later\n").into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    if headers {
        let reset = now_ms() / 1000 + retry_after;
        let h = resp.headers_mut();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        };
        put("retry-after", retry_after.to_string());
        put("ratelimit-name", "throttle_authenticated_api".into());
        put("ratelimit-limit", limit.to_string());
        put("ratelimit-observed", observed.to_string());
        put("ratelimit-remaining", "0".into());
        put("ratelimit-reset", reset.to_string());
        put("ratelimit-resettime", http_date(reset));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_then_throttles() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            requests_per_minute: 3,
            headers: true,
        };
        for _ in 0..3 {
            assert!(limiter.check("t", &limit).is_ok());
        }
        let err = limiter.check("t", &limit).expect_err("throttled");
        assert!(err.retry_after_secs >= 1 && err.retry_after_secs <= 20);
        assert_eq!(err.observed, 4);
        assert!(limiter.check("other", &limit).is_ok());
    }

    /// A client that keeps the bucket empty for more than a minute still sees
    /// `RateLimit-Observed` above the limit (it used to restart at 0 every minute).
    #[test]
    fn observed_stays_above_the_limit_past_a_minute() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            requests_per_minute: 600,
            headers: true,
        };
        let t0 = Instant::now();
        // 20 requests a second for 90 s: twice the refill rate.
        for i in 0..1800u64 {
            let at = t0 + Duration::from_millis(i * 50);
            if let Err(t) = limiter.check_at("k", &limit, at) {
                assert!(t.observed > 600, "observed {} at {} ms", t.observed, i * 50);
            }
        }
    }
}
