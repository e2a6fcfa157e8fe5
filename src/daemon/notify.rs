//! Notifications to a Slack-compatible incoming webhook (`{"text": ...}`).
//!
//! Sending never blocks a cycle: messages go through a bounded queue to one worker task that
//! retries each with exponential backoff; a full queue drops the message (counted in
//! `reconcile_notifications_total{outcome="dropped"}`). Callers write messages from addresses,
//! field names and counts only: never a value.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use metrics::counter;
use tokio::sync::mpsc;

use crate::secret::SecretValue;

/// Messages waiting at most; more are dropped.
const QUEUE: usize = 256;

pub struct Notifier {
    tx: Option<mpsc::Sender<String>>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl Notifier {
    /// Starts the worker; without a URL, messages are only logged.
    pub fn start(url: Option<SecretValue>, min_backoff: Duration) -> Self {
        let Some(url) = url else {
            return Self {
                tx: None,
                worker: None,
            };
        };
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client builds");
        let worker = tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                let body = serde_json::json!({ "text": text });
                let send = || async {
                    let rsp = http.post(url.expose()).json(&body).send().await?;
                    rsp.error_for_status().map(|_| ())
                };
                let sent = send
                    .retry(
                        ExponentialBuilder::default()
                            .with_min_delay(min_backoff)
                            .with_max_delay(Duration::from_secs(60))
                            .with_max_times(6)
                            .with_jitter(),
                    )
                    .notify(|e: &reqwest::Error, after| {
                        tracing::warn!(error = %describe(e), retry_in = ?after, "Webhook delivery failed");
                    })
                    .await;
                let outcome = match sent {
                    Ok(()) => "sent",
                    Err(e) => {
                        tracing::error!(error = %describe(&e), "Webhook notification lost after retries");
                        "failed"
                    }
                };
                counter!("reconcile_notifications_total", "outcome" => outcome).increment(1);
            }
        });
        Self {
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    /// Queues a message (logged either way); never waits.
    pub fn send(&self, text: String) {
        tracing::info!(notification = %text, "Notify");
        let Some(tx) = &self.tx else { return };
        if tx.try_send(text).is_err() {
            counter!("reconcile_notifications_total", "outcome" => "dropped").increment(1);
            tracing::warn!("Notification queue full: message dropped");
        }
    }

    /// Delivers what is queued, waiting at most `limit` (at shutdown and after `--once`).
    pub async fn drain(mut self, limit: Duration) {
        drop(self.tx.take());
        if let Some(worker) = self.worker.take()
            && tokio::time::timeout(limit, worker).await.is_err()
        {
            tracing::warn!("Undelivered notifications dropped at exit");
        }
    }
}

/// The error without the URL (it carries the webhook's secret).
fn describe(e: &reqwest::Error) -> String {
    if let Some(status) = e.status() {
        format!("the webhook answered {status}")
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "request failed".into()
    }
}
