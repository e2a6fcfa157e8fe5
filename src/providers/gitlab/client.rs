//! Transport for the `gitlab` crate's typed endpoints: reqwest with bounded concurrency, a
//! per-request timeout, and one retry policy.
//!
//! Retry policy (classified once, here):
//! - 429: retried for every method, after `Retry-After` when given (the request was not
//!   processed), else exponential backoff with jitter;
//! - 5xx, timeouts and dropped connections: retried for GET, PUT and DELETE only. A POST whose
//!   outcome is unknown is returned as [`TransportError::UnknownOutcome`]: the caller re-reads
//!   before trying again, so nothing is created twice.
//!
//! Must never: log the token or a request body (variable values travel in bodies).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use gitlab::api::{ApiError, AsyncClient, RestClient};
use http::{Method, Response, StatusCode};
use tokio::sync::Semaphore;
use url::Url;

use crate::secret::SecretValue;

/// Settings of the transport.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Requests in flight at most.
    pub concurrency: usize,
    pub timeout: Duration,
    /// Attempts per request, the first included.
    pub attempts: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            timeout: Duration::from_secs(30),
            attempts: 6,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
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
    /// Until when GitLab asked every request to wait (its last 429's Retry-After).
    resume_at: std::sync::Mutex<Option<tokio::time::Instant>>,
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
            resume_at: std::sync::Mutex::new(None),
        })
    }

    /// Requests sent so far (every attempt counts).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The API base (`…/api/v4/`), for messages.
    pub fn api_url(&self) -> &Url {
        &self.api
    }

    /// One GET for checks that must fail fast (preflight, identities): no retry when there is
    /// no answer (an unreachable server is one clear error at once), the usual backoff while
    /// GitLab answers 429 or 5xx. The status and body, or why there was no response.
    pub async fn get_raw(&self, endpoint: &str) -> Result<(StatusCode, Bytes), TransportError> {
        let url = self
            .api
            .join(endpoint)
            .map_err(|e| TransportError::Url(e.to_string()))?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.min_backoff)
            .with_max_delay(self.options.max_backoff)
            .with_max_times(self.options.attempts.saturating_sub(1))
            .with_jitter();
        let headers = http::HeaderMap::new();
        let result = (|| async {
            match self.attempt(&Method::GET, &url, &headers, &[]).await {
                Attempt::Done(rsp) => Ok(Ok((rsp.status(), rsp.into_body()))),
                Attempt::Retry {
                    status: None,
                    reason,
                    ..
                } => Ok(Err(TransportError::Connection {
                    method: Method::GET,
                    path: url.to_string(),
                    reason,
                })),
                Attempt::Retry {
                    status: Some(status),
                    after,
                    ..
                } => Err((status, after)),
            }
        })
        .retry(backoff)
        .adjust(|(_, after): &(StatusCode, Option<Duration>), planned| after.or(planned))
        .await;
        match result {
            Ok(answer) => answer,
            Err((status, _)) => Ok((status, Bytes::new())),
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Attempt {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore is never closed");
        // After a 429 every request waits out the server's Retry-After, not only the one that
        // was refused: 16 requests in flight must not keep hitting a rate limit.
        let resume = *self.resume_at.lock().expect("not poisoned");
        if let Some(at) = resume {
            tokio::time::sleep_until(at).await;
        }
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
        let after = rsp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
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
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = after.unwrap_or(self.options.min_backoff);
            let at = tokio::time::Instant::now() + wait;
            let mut resume = self.resume_at.lock().expect("not poisoned");
            if resume.is_none_or(|r| r < at) {
                *resume = Some(at);
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            crate::metrics::api_error("gitlab");
            return Attempt::Retry {
                status: Some(status),
                reason: status.to_string(),
                after,
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

/// Error of one attempt inside the retry loop.
struct Failed {
    status: Option<StatusCode>,
    reason: String,
    after: Option<Duration>,
    /// Retrying could create a duplicate: stop and let the caller re-read.
    unsafe_to_retry: bool,
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
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.min_backoff)
            .with_max_delay(self.options.max_backoff)
            .with_max_times(self.options.attempts.saturating_sub(1))
            .with_jitter();
        let result = (|| async {
            match self.attempt(&method, &url, &parts.headers, &body).await {
                Attempt::Done(rsp) => Ok(rsp),
                Attempt::Retry { status, reason, after } => {
                    let throttled = status == Some(StatusCode::TOO_MANY_REQUESTS);
                    Err(Failed { status, reason, after, unsafe_to_retry: !idempotent && !throttled })
                }
            }
        })
        .retry(backoff)
        .when(|f: &Failed| !f.unsafe_to_retry)
        .adjust(|f: &Failed, planned| f.after.or(planned))
        .notify(|f: &Failed, wait| tracing::debug!(method = %method, path = url.path(), reason = %f.reason, wait_ms = wait.as_millis() as u64, "Retrying GitLab request"))
        .await;
        result.map_err(|f| {
            let path = url.path().to_string();
            let method = method.clone();
            ApiError::client(match (f.unsafe_to_retry, f.status) {
                (true, _) => TransportError::UnknownOutcome {
                    method,
                    path,
                    reason: f.reason,
                },
                (false, Some(status)) => TransportError::Exhausted {
                    method,
                    path,
                    status,
                    attempts: self.options.attempts,
                },
                (false, None) => TransportError::Connection {
                    method,
                    path,
                    reason: f.reason,
                },
            })
        })
    }
}
