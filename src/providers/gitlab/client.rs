//! Transport for the `gitlab` crate's typed endpoints: reqwest with bounded concurrency, a
//! per-request timeout, one shared pace and one retry policy.
//!
//! Concurrency: a request holds one of `concurrency` permits from its first attempt to its last,
//! so requests waiting to be retried count against the same in-flight budget as first attempts.
//!
//! Pace ([`Pace`], shared by every request of the client):
//! - after a 429 every request waits out its `Retry-After` (or a backoff when GitLab sent none);
//! - a 429 that names the limit (`RateLimit-Limit`, per minute) sets a steady pace just under it;
//!   a 429 without headers sets one from the requests GitLab answered in the last minute, and each
//!   further 429 slows it down by a quarter;
//! - responses that carry `RateLimit-Remaining` and `RateLimit-Reset` (GitLab 18.6+'s
//!   `rate_limiting_headers_for_unthrottled_requests`) pause every request until the reset once
//!   the remaining requests would be used up by those in flight, before any 429.
//!
//! Retry policy (classified once, here):
//! - 429: retried for every method (the request was not processed);
//! - 5xx, timeouts and dropped connections: retried for GET, PUT and DELETE only. A POST whose
//!   outcome is unknown is returned as [`TransportError::UnknownOutcome`]: the caller re-reads
//!   before trying again, so nothing is created twice;
//! - at most `attempts` attempts and `retry_budget` of waiting per request, `Retry-After`
//!   included: a wait beyond the budget fails the request at once.
//!
//! Must never: log the token or a request body (variable values travel in bodies).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use gitlab::api::{ApiError, AsyncClient, RestClient};
use http::{HeaderMap, Method, Response, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use crate::secret::SecretValue;

/// Settings of the transport.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Requests in flight at most (retries included).
    pub concurrency: usize,
    pub timeout: Duration,
    /// Attempts per request, the first included.
    pub attempts: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest total wait between the attempts of one request (`Retry-After` included).
    pub retry_budget: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            timeout: Duration::from_secs(30),
            attempts: 6,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            retry_budget: Duration::from_secs(180),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{method} {path}: no response ({reason})")]
    Connection {
        method: Method,
        path: String,
        reason: String,
    },
    /// A write whose outcome is unknown (5xx or a dropped connection on POST).
    #[error("{method} {path}: outcome unknown ({reason}); re-read before retrying")]
    UnknownOutcome {
        method: Method,
        path: String,
        reason: String,
    },
    #[error("{method} {path}: still {status} after {attempts} attempts")]
    Exhausted {
        method: Method,
        path: String,
        status: StatusCode,
        attempts: usize,
    },
    /// GitLab asked for a wait longer than what is left of the retry budget.
    #[error(
        "{method} {path}: {status}, and GitLab asks to wait {} s more, beyond the retry budget of {} s",
        wait.as_secs(),
        budget.as_secs()
    )]
    OverBudget {
        method: Method,
        path: String,
        status: StatusCode,
        wait: Duration,
        budget: Duration,
    },
    #[error("invalid GitLab URL: {0}")]
    Url(String),
}

/// What one attempt produced, for the retry policy.
enum Attempt {
    Done(Response<Bytes>),
    Retry {
        status: Option<StatusCode>,
        reason: String,
        after: Option<Duration>,
    },
}

/// Requests, retries and 429s of a client, for summaries and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Attempts sent (retries included).
    pub requests: u64,
    /// Attempts after the first of their request.
    pub retries: u64,
    /// Responses 429 (rate limited).
    pub throttled: u64,
}

impl std::ops::Add for Traffic {
    type Output = Traffic;
    fn add(self, o: Traffic) -> Traffic {
        Traffic {
            requests: self.requests + o.requests,
            retries: self.retries + o.retries,
            throttled: self.throttled + o.throttled,
        }
    }
}

impl std::fmt::Display for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.requests)?;
        if self.retries > 0 || self.throttled > 0 {
            write!(
                f,
                " ({} retried, {} refused by a rate limit)",
                self.retries, self.throttled
            )?;
        }
        Ok(())
    }
}

/// Fraction of a learned rate limit the client uses.
const PACE_MARGIN: f64 = 0.97;

/// Slowest pace estimated without a named limit.
const MAX_ESTIMATED_INTERVAL: Duration = Duration::from_secs(5);

/// The client's shared pace: when the next request may start.
#[derive(Default)]
struct Pace {
    /// Until when every request waits (a 429's `Retry-After`, or the reset of a used-up window).
    resume_at: Option<Instant>,
    /// Time between two request starts, once a limit is known.
    interval: Option<Duration>,
    /// The earliest start of the next request under `interval`.
    next: Option<Instant>,
    /// When the requests of the last minute were answered (not 429), to estimate a limit
    /// GitLab does not name.
    answered: VecDeque<Instant>,
    /// The pace comes from a limit GitLab named (`RateLimit-Limit`).
    named: bool,
}

impl Pace {
    /// Reserves a start time for one request.
    fn reserve(&mut self, now: Instant) -> Instant {
        let mut at = now.max(self.resume_at.unwrap_or(now));
        if let Some(interval) = self.interval {
            at = at.max(self.next.unwrap_or(at));
            self.next = Some(at + interval);
        }
        at
    }

    fn pause_until(&mut self, at: Instant) {
        if self.resume_at.is_none_or(|r| r < at) {
            self.resume_at = Some(at);
        }
    }

    /// Learns from one response.
    fn learn(&mut self, now: Instant, status: StatusCode, limits: &Limits, in_flight: usize) {
        let minute = Duration::from_secs(60);
        while self
            .answered
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            self.answered.pop_front();
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.interval = match (limits.per_minute, self.interval) {
                (Some(limit), _) => {
                    self.named = true;
                    Some(minute.div_f64(limit.max(1) as f64 * PACE_MARGIN))
                }
                // Slower by a quarter at each further 429, up to one request per
                // `MAX_ESTIMATED_INTERVAL`.
                (None, Some(interval)) => Some(interval.mul_f64(1.25).min(MAX_ESTIMATED_INTERVAL)),
                // Nothing answered yet: no rate to go by, the 429's backoff only.
                (None, None) if self.answered.is_empty() => None,
                // The rate GitLab answered at so far, a little less.
                (None, None) => {
                    let span = self
                        .answered
                        .front()
                        .map_or(minute, |first| now.duration_since(*first))
                        .clamp(Duration::from_millis(50), minute);
                    Some(
                        span.div_f64(self.answered.len() as f64 * PACE_MARGIN)
                            .min(MAX_ESTIMATED_INTERVAL),
                    )
                }
            };
            return;
        }
        self.answered.push_back(now);
        // An estimated pace speeds up again while GitLab answers; a named limit stays.
        if !self.named
            && let Some(interval) = self.interval
        {
            let faster = interval.mul_f64(0.98);
            self.interval = (faster >= Duration::from_millis(1)).then_some(faster);
        }
        // Remaining requests of the window would be used up by those in flight: wait for the
        // reset instead of hitting the limit.
        if let (Some(remaining), Some(reset)) = (limits.remaining, limits.reset)
            && remaining <= in_flight as u64
        {
            self.pause_until(now + reset);
        }
    }
}

/// The rate-limit headers of a response.
#[derive(Debug, Default, PartialEq)]
struct Limits {
    /// `RateLimit-Limit`: requests per minute.
    per_minute: Option<u64>,
    /// `RateLimit-Remaining`.
    remaining: Option<u64>,
    /// Time until `RateLimit-Reset` (a Unix time).
    reset: Option<Duration>,
    /// `Retry-After` in seconds.
    retry_after: Option<Duration>,
}

impl Limits {
    fn of(headers: &HeaderMap, now: SystemTime) -> Self {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            per_minute: num("ratelimit-limit"),
            remaining: num("ratelimit-remaining"),
            // A reset in the past or absurdly far is ignored.
            reset: num("ratelimit-reset")
                .and_then(|r| Duration::from_secs(r).checked_sub(since_epoch))
                .filter(|d| *d <= Duration::from_secs(3600)),
            retry_after: num("retry-after").map(Duration::from_secs),
        }
    }
}

/// How requests authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    /// `PRIVATE-TOKEN` (a personal, project or group access token).
    Token(SecretValue),
    /// `JOB-TOKEN` (a CI job's `CI_JOB_TOKEN`).
    JobToken(SecretValue),
    /// No credentials (public endpoints).
    Anonymous,
}

/// A GitLab REST client for the `gitlab` crate's endpoints.
pub struct GitlabClient {
    http: reqwest::Client,
    api: Url,
    auth: Auth,
    options: ClientOptions,
    permits: Arc<Semaphore>,
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    pace: std::sync::Mutex<Pace>,
}

/// Why a request failed after its attempts.
struct Failed {
    status: Option<StatusCode>,
    reason: String,
    /// Retrying could create a duplicate: stop and let the caller re-read.
    unsafe_to_retry: bool,
    /// GitLab's wait went beyond the retry budget.
    over_budget: Option<Duration>,
}

impl GitlabClient {
    pub fn new(
        base_url: &str,
        token: SecretValue,
        options: ClientOptions,
    ) -> Result<Self, TransportError> {
        Self::with_auth(base_url, Auth::Token(token), options)
    }

    pub fn with_auth(
        base_url: &str,
        auth: Auth,
        options: ClientOptions,
    ) -> Result<Self, TransportError> {
        // A base without a trailing slash (`https://host/gitlab`) keeps its last segment.
        let slashed = format!("{}/", base_url.trim_end_matches('/'));
        let base =
            Url::parse(&slashed).map_err(|e| TransportError::Url(format!("{base_url}: {e}")))?;
        let api = base
            .join("api/v4/")
            .map_err(|e| TransportError::Url(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("reconcile/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::Url(e.to_string()))?;
        Ok(Self {
            http,
            api,
            auth,
            permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
            options,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            pace: std::sync::Mutex::new(Pace::default()),
        })
    }

    /// Requests sent so far (every attempt counts).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests, retries and 429s so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests(),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    /// The API base (`…/api/v4/`), for messages.
    pub fn api_url(&self) -> &Url {
        &self.api
    }

    /// One GET for checks that must fail fast (preflight, identities): no retry when there is
    /// no answer (an unreachable server is one clear error at once), the usual retries while
    /// GitLab answers 429 or 5xx. The status and body, or why there was no response.
    pub async fn get_raw(&self, endpoint: &str) -> Result<(StatusCode, Bytes), TransportError> {
        let url = self
            .api
            .join(endpoint)
            .map_err(|e| TransportError::Url(e.to_string()))?;
        match self
            .send(&Method::GET, &url, &HeaderMap::new(), &[], true, false)
            .await
        {
            Ok(rsp) => Ok((rsp.status(), rsp.into_body())),
            Err(Failed {
                status: Some(status),
                over_budget: None,
                ..
            }) => Ok((status, Bytes::new())),
            Err(f) => Err(self.error(&Method::GET, &url, f)),
        }
    }

    fn error(&self, method: &Method, url: &Url, f: Failed) -> TransportError {
        let path = url.path().to_string();
        let method = method.clone();
        match (f.unsafe_to_retry, f.status, f.over_budget) {
            (true, _, _) => TransportError::UnknownOutcome {
                method,
                path,
                reason: f.reason,
            },
            (false, Some(status), Some(wait)) => TransportError::OverBudget {
                method,
                path,
                status,
                wait,
                budget: self.options.retry_budget,
            },
            (false, Some(status), None) => TransportError::Exhausted {
                method,
                path,
                status,
                attempts: self.options.attempts,
            },
            (false, None, _) => TransportError::Connection {
                method,
                path,
                reason: f.reason,
            },
        }
    }

    /// One request with its retries, holding one in-flight permit throughout.
    /// `retry_unanswered`: whether a request that got no response at all is tried again.
    async fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &[u8],
        idempotent: bool,
        retry_unanswered: bool,
    ) -> Result<Response<Bytes>, Failed> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore is never closed");
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = Instant::now();
            let at = self.pace.lock().expect("not poisoned").reserve(now);
            if at > now {
                tokio::time::sleep_until(at).await;
            }
            // A 429 seen while this one waited for its turn moves everyone back.
            loop {
                let resume = self.pace.lock().expect("not poisoned").resume_at;
                match resume {
                    Some(r) if r > Instant::now() => tokio::time::sleep_until(r).await,
                    _ => break,
                }
            }
            if attempt > 1 {
                self.retries.fetch_add(1, Ordering::Relaxed);
                crate::metrics::api_retry("gitlab");
            }
            let (status, reason, after) = match self.attempt(method, url, headers, body).await {
                Attempt::Done(rsp) => return Ok(rsp),
                Attempt::Retry {
                    status,
                    reason,
                    after,
                } => (status, reason, after),
            };
            let throttled = status == Some(StatusCode::TOO_MANY_REQUESTS);
            let failed = |over_budget| Failed {
                status,
                reason: reason.clone(),
                unsafe_to_retry: !idempotent && !throttled,
                over_budget,
            };
            if (!idempotent && !throttled)
                || (status.is_none() && !retry_unanswered)
                || attempt >= self.options.attempts.max(1)
            {
                return Err(failed(None));
            }
            // A 429's wait is the shared pause (set by `attempt`); others back off alone.
            let wait = after.unwrap_or_else(|| self.backoff(attempt));
            if waited + wait > self.options.retry_budget {
                return Err(failed(Some(wait)));
            }
            waited += wait;
            tracing::debug!(method = %method, path = url.path(), reason = %reason, wait_ms = wait.as_millis() as u64, "Retrying GitLab request");
            if !throttled {
                tokio::time::sleep(wait).await;
            } else if after.is_none() {
                self.pace
                    .lock()
                    .expect("not poisoned")
                    .pause_until(Instant::now() + wait);
            }
        }
    }

    /// Exponential backoff with full jitter, at least `min_backoff`.
    fn backoff(&self, attempt: usize) -> Duration {
        let exp = self
            .options
            .min_backoff
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16) as u32)
            .min(self.options.max_backoff);
        let spread = exp.saturating_sub(self.options.min_backoff);
        self.options.min_backoff + spread.mul_f64(fastrand::f64())
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Attempt {
        self.requests.fetch_add(1, Ordering::Relaxed);
        crate::metrics::api_request("gitlab");
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        req = match &self.auth {
            Auth::Token(t) => req.header("PRIVATE-TOKEN", t.expose()),
            Auth::JobToken(t) => req.header("JOB-TOKEN", t.expose()),
            Auth::Anonymous => req,
        };
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        let rsp = match req.send().await {
            Ok(rsp) => rsp,
            Err(e) => {
                crate::metrics::api_error("gitlab");
                let reason = if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "connection refused or host unreachable".to_string()
                } else {
                    "connection failed or reset".to_string()
                };
                return Attempt::Retry {
                    status: None,
                    reason,
                    after: None,
                };
            }
        };
        let status = rsp.status();
        let limits = Limits::of(rsp.headers(), SystemTime::now());
        {
            let in_flight = self.options.concurrency.max(1) - self.permits.available_permits();
            let now = Instant::now();
            let mut pace = self.pace.lock().expect("not poisoned");
            pace.learn(now, status, &limits, in_flight);
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                crate::metrics::api_throttled("gitlab");
                // Every request waits out the server's Retry-After, not only this one.
                if let Some(after) = limits.retry_after {
                    pace.pause_until(now + after);
                }
            }
        }
        let mut builder = Response::builder().status(status);
        for (k, v) in rsp.headers() {
            builder = builder.header(k, v);
        }
        let bytes = match rsp.bytes().await {
            Ok(b) => b,
            Err(_) => {
                return Attempt::Retry {
                    status: Some(status),
                    reason: "response body cut short".into(),
                    after: None,
                };
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            crate::metrics::api_error("gitlab");
            return Attempt::Retry {
                status: Some(status),
                reason: status.to_string(),
                after: limits.retry_after,
            };
        }
        Attempt::Done(builder.body(bytes).expect("response parts are valid"))
    }
}

impl RestClient for GitlabClient {
    type Error = TransportError;

    fn rest_endpoint(&self, endpoint: &str) -> Result<Url, ApiError<Self::Error>> {
        Ok(self.api.join(endpoint)?)
    }
}

#[async_trait]
impl AsyncClient for GitlabClient {
    async fn rest_async(
        &self,
        request: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<Response<Bytes>, ApiError<Self::Error>> {
        let parts = request
            .body(())
            .map_err(|e| ApiError::client(TransportError::Url(e.to_string())))?;
        let (parts, ()) = parts.into_parts();
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|e| ApiError::client(TransportError::Url(e.to_string())))?;
        let method = parts.method;
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        self.send(&method, &url, &parts.headers, &body, idempotent, true)
            .await
            .map_err(|f| ApiError::client(self.error(&method, &url, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn rate_limit_headers_are_read_and_a_past_or_far_reset_ignored() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000_000_500);
        let l = Limits::of(
            &headers(&[
                ("ratelimit-limit", "600"),
                ("ratelimit-remaining", "3"),
                ("ratelimit-reset", "1000030"),
                ("retry-after", "30"),
            ]),
            now,
        );
        assert_eq!(l.per_minute, Some(600));
        assert_eq!(l.remaining, Some(3));
        assert_eq!(l.reset, Some(Duration::from_millis(29_500)));
        assert_eq!(l.retry_after, Some(Duration::from_secs(30)));
        for reset in ["999999", "1009999"] {
            let l = Limits::of(&headers(&[("ratelimit-reset", reset)]), now);
            assert_eq!(l.reset, None, "{reset}");
        }
        assert_eq!(Limits::of(&HeaderMap::new(), now), Limits::default());
    }

    #[test]
    fn a_named_limit_sets_a_pace_just_under_it() {
        let t0 = Instant::now();
        let mut pace = Pace::default();
        assert_eq!(pace.reserve(t0), t0, "no pace before any limit is known");
        assert_eq!(pace.reserve(t0), t0);
        let limits = Limits {
            per_minute: Some(600),
            ..Limits::default()
        };
        pace.learn(t0, StatusCode::TOO_MANY_REQUESTS, &limits, 16);
        let interval = pace.interval.unwrap();
        assert_eq!(
            interval,
            Duration::from_secs(60).div_f64(600.0 * PACE_MARGIN)
        );
        let starts: Vec<Instant> = (0..4).map(|_| pace.reserve(t0)).collect();
        for pair in starts.windows(2) {
            assert_eq!(pair[1] - pair[0], interval);
        }
        // Answers do not speed up a named limit.
        pace.learn(t0, StatusCode::OK, &Limits::default(), 1);
        assert_eq!(pace.interval, Some(interval));
    }

    #[test]
    fn a_429_without_headers_paces_from_what_was_answered_and_slows_down_further() {
        let t0 = Instant::now();
        let mut pace = Pace::default();
        for i in 0..95 {
            pace.learn(
                t0 + Duration::from_millis(i * 10),
                StatusCode::OK,
                &Limits::default(),
                1,
            );
        }
        let at = t0 + Duration::from_secs(10);
        pace.learn(at, StatusCode::TOO_MANY_REQUESTS, &Limits::default(), 16);
        // 95 answered over 10 s (the first answer to the 429): 9.5/s, used at 97 %.
        let first = pace.interval.unwrap();
        assert_eq!(first, Duration::from_secs(10).div_f64(95.0 * PACE_MARGIN));
        pace.learn(at, StatusCode::TOO_MANY_REQUESTS, &Limits::default(), 16);
        assert_eq!(pace.interval, Some(first.mul_f64(1.25)));
        pace.learn(at, StatusCode::OK, &Limits::default(), 1);
        assert_eq!(pace.interval, Some(first.mul_f64(1.25).mul_f64(0.98)));
    }

    #[test]
    fn a_first_429_without_headers_sets_no_pace_and_an_estimate_is_bounded() {
        let t0 = Instant::now();
        let mut pace = Pace::default();
        pace.learn(t0, StatusCode::TOO_MANY_REQUESTS, &Limits::default(), 16);
        assert_eq!(
            pace.interval, None,
            "nothing answered yet: no rate to go by"
        );
        pace.learn(t0, StatusCode::OK, &Limits::default(), 1);
        let later = t0 + Duration::from_secs(59);
        pace.learn(later, StatusCode::TOO_MANY_REQUESTS, &Limits::default(), 16);
        assert_eq!(pace.interval, Some(MAX_ESTIMATED_INTERVAL));
        pace.learn(later, StatusCode::TOO_MANY_REQUESTS, &Limits::default(), 16);
        assert_eq!(pace.interval, Some(MAX_ESTIMATED_INTERVAL));
    }

    #[test]
    fn a_window_about_to_run_out_pauses_everyone_until_its_reset() {
        let t0 = Instant::now();
        let mut pace = Pace::default();
        let limits = |remaining| Limits {
            per_minute: Some(600),
            remaining: Some(remaining),
            reset: Some(Duration::from_secs(12)),
            retry_after: None,
        };
        pace.learn(t0, StatusCode::OK, &limits(17), 16);
        assert_eq!(pace.reserve(t0), t0, "17 left for 16 in flight");
        pace.learn(t0, StatusCode::OK, &limits(16), 16);
        assert_eq!(pace.reserve(t0), t0 + Duration::from_secs(12));
        assert_eq!(pace.interval, None, "no 429, no pace");
    }
}
