//! Optional per-user throttle imitating GitLab's authenticated API throttle
//! as Rack::Attack implements it: a FIXED WINDOW per discriminator (the
//! token). Followed: rack-attack `lib/rack/attack/throttle.rb` (`key =
//! "#{name}:#{discriminator}"`, counter per `epoch_time / period`, every
//! request counted, refused ones included, throttled when `count > limit`)
//! and GitLab's `Gitlab::RackAttack.throttled_response_headers`
//! (`lib/gitlab/rack_attack.rb`), `Gitlab::RackAttack::RequestThrottleData`
//! (`lib/gitlab/rack_attack/request_throttle_data.rb`: `common_response_headers`
//! for every request, plus `Retry-After` and `RateLimit-ResetTime` when
//! throttled) and `Gitlab::Middleware::RackAttackHeaders`
//! (`lib/gitlab/middleware/rack_attack_headers.rb`, feature flag
//! `rate_limiting_headers_for_unthrottled_requests`) for the headers.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use crate::config::RateLimit;
use crate::time::{http_date, now_ms};

/// The throttle's name as GitLab reports it in `RateLimit-Name`.
pub(crate) const THROTTLE_NAME: &str = "throttle_authenticated_api";
/// The throttle of requests without a usable credential (GitLab keys it by
/// IP; here all such requests share one window).
pub(crate) const UNAUTHENTICATED_THROTTLE_NAME: &str = "throttle_unauthenticated_api";

/// Count of one discriminator in one window.
struct Window {
    index: u64,
    count: u64,
}

/// Windows by throttle and discriminator.
#[derive(Default)]
pub(crate) struct RateLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

/// Rack::Attack's match data for one request (`{discriminator, count,
/// period, limit, epoch_time}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    /// The throttle (`RateLimit-Name`).
    pub name: &'static str,
    /// Requests in the current window, this one included.
    pub count: u64,
    pub limit: u64,
    pub period: u64,
    /// Unix seconds of the request.
    pub epoch_time: u64,
    /// Whether the request is refused (`count > limit`).
    pub throttled: bool,
}

impl Observation {
    /// `period - (now % period)`.
    pub fn retry_after(&self) -> u64 {
        self.period - (self.epoch_time % self.period)
    }

    /// `RequestThrottleData#throttled_response_headers` (`throttled`) or
    /// `#common_response_headers`: the latter lacks `Retry-After` and
    /// `RateLimit-ResetTime`.
    pub fn headers(&self, throttled: bool) -> Vec<(&'static str, String)> {
        let rounded_limit = (self.limit * 60).div_ceil(self.period);
        let reset = self.epoch_time + self.retry_after();
        let mut h = vec![
            ("ratelimit-name", self.name.to_string()),
            ("ratelimit-limit", rounded_limit.to_string()),
            ("ratelimit-observed", self.count.to_string()),
            (
                "ratelimit-remaining",
                self.limit.saturating_sub(self.count).to_string(),
            ),
            ("ratelimit-reset", reset.to_string()),
        ];
        if throttled {
            h.push(("retry-after", self.retry_after().to_string()));
            h.push(("ratelimit-resettime", http_date(reset)));
        }
        h
    }
}

impl RateLimiter {
    /// Counts one request for discriminator `key` of throttle `name` in the
    /// current window.
    pub fn check(&self, name: &'static str, key: &str, limit: &RateLimit) -> Observation {
        self.check_at(name, key, limit, now_ms() / 1000)
    }

    /// As [`RateLimiter::check`] at Unix time `now` (seconds).
    pub(crate) fn check_at(
        &self,
        name: &'static str,
        key: &str,
        limit: &RateLimit,
        now: u64,
    ) -> Observation {
        let period = u64::from(limit.period_secs.max(1));
        let index = now / period;
        let mut windows = self.windows.lock();
        let window = windows
            .entry(format!("{name}:{key}"))
            .or_insert(Window { index, count: 0 });
        if window.index != index {
            window.index = index;
            window.count = 0;
        }
        window.count += 1;
        let limit = u64::from(limit.requests_per_period());
        Observation {
            name,
            count: window.count,
            limit,
            period,
            epoch_time: now,
            throttled: window.count > limit,
        }
    }

    pub fn reset(&self) {
        self.windows.lock().clear();
    }
}

fn put_headers(h: &mut HeaderMap, headers: Vec<(&'static str, String)>) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

/// Adds the unthrottled-request headers (`RackAttackHeaders`) to `resp`.
pub(crate) fn add_success_headers(resp: &mut Response, observation: &Observation) {
    put_headers(resp.headers_mut(), observation.headers(false));
}

/// GitLab's Rack::Attack 429: plain-text `Retry later`, with `Retry-After` and
/// `RateLimit-*` headers unless `headers` is false.
pub(crate) fn throttled_response(observation: &Observation, headers: bool) -> Response {
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, "Retry later\n").into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    if headers {
        put_headers(resp.headers_mut(), observation.headers(true));
    }
    resp
}

/// An injected 429 (fault injection): `retry_after` seconds from now, the
/// observed count one above the limit.
pub(crate) fn injected_throttle(limit: u32, retry_after: u64, headers: bool) -> Response {
    let now = now_ms() / 1000;
    let limit = u64::from(limit);
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, "Retry later\n").into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    if headers {
        let reset = now + retry_after;
        put_headers(
            resp.headers_mut(),
            vec![
                ("retry-after", retry_after.to_string()),
                ("ratelimit-name", THROTTLE_NAME.into()),
                ("ratelimit-limit", limit.to_string()),
                ("ratelimit-observed", (limit + 1).to_string()),
                ("ratelimit-remaining", "0".into()),
                ("ratelimit-reset", reset.to_string()),
                ("ratelimit-resettime", http_date(reset)),
            ],
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rpm: u32, period: u32) -> RateLimit {
        RateLimit {
            requests_per_minute: rpm,
            period_secs: period,
            ..RateLimit::default()
        }
    }

    #[test]
    fn fixed_window_counts_refused_requests_and_resets_at_the_boundary() {
        let limiter = RateLimiter::default();
        let l = limit(3, 60);
        // 1_000_020 is 0 s into window 16_667 (16_667 * 60 = 1_000_020).
        let t = 1_000_020 + 10;
        for n in 1..=3 {
            let o = limiter.check_at(THROTTLE_NAME, "t", &l, t);
            assert!(!o.throttled);
            assert_eq!(o.count, n);
        }
        let o = limiter.check_at(THROTTLE_NAME, "t", &l, t + 5);
        assert!(o.throttled);
        assert_eq!(o.count, 4);
        assert_eq!(o.retry_after(), 45);
        let o = limiter.check_at(THROTTLE_NAME, "t", &l, t + 49);
        assert!(o.throttled);
        assert_eq!(o.count, 5, "refused requests are counted too");
        assert_eq!(o.retry_after(), 1);
        // Other tokens have their own windows.
        assert!(!limiter.check_at(THROTTLE_NAME, "other", &l, t).throttled);
        // The next window starts at zero whatever happened before.
        let o = limiter.check_at(THROTTLE_NAME, "t", &l, 1_000_080);
        assert!(!o.throttled);
        assert_eq!(o.count, 1);
        assert_eq!(o.retry_after(), 60);
    }

    #[test]
    fn headers_follow_throttled_response_headers() {
        let limiter = RateLimiter::default();
        // 10 requests per 120 s window: RateLimit-Limit = ceil(10 * 60 / 120) = 5.
        let l = limit(5, 120);
        assert_eq!(l.requests_per_period(), 10);
        let t = 1_200_000 + 30; // 30 s into a 120 s window
        let mut last = None;
        for _ in 0..11 {
            last = Some(limiter.check_at(THROTTLE_NAME, "k", &l, t));
        }
        let o = last.unwrap();
        assert!(o.throttled);
        let h: HashMap<_, _> = o.headers(true).into_iter().collect();
        assert_eq!(h["ratelimit-limit"], "5");
        assert_eq!(h["ratelimit-observed"], "11");
        assert_eq!(h["ratelimit-remaining"], "0");
        assert_eq!(h["retry-after"], "90");
        assert_eq!(h["ratelimit-reset"], "1200120");
        assert_eq!(h["ratelimit-name"], THROTTLE_NAME);
        assert!(h["ratelimit-resettime"].ends_with("GMT"));
        let first = RateLimiter::default().check_at(THROTTLE_NAME, "k", &l, t);
        let h: HashMap<_, _> = first.headers(false).into_iter().collect();
        assert_eq!(h["ratelimit-remaining"], "9");
        assert!(!h.contains_key("retry-after"));
        assert!(!h.contains_key("ratelimit-resettime"));
    }
}
