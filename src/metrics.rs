//! Process metrics (the `metrics` facade). Without an installed recorder (every command but
//! the daemon) these calls do nothing; the daemon exports them at `/metrics`.
//!
//! Labels are kinds, scopes, providers and outcomes: never a value from a spec or an API.

use metrics::{counter, describe_counter, describe_gauge};

/// Describes every metric once, so `/metrics` documents them.
pub fn describe() {
    describe_counter!("reconcile_cycles_total", "Daemon cycles, by outcome");
    describe_counter!(
        "reconcile_drift_found_total",
        "Resources found to differ from the desired state, by kind and environment (scope)"
    );
    describe_counter!(
        "reconcile_drift_corrected_total",
        "Differences corrected by the daemon, by kind and environment (scope)"
    );
    describe_counter!("reconcile_apply_steps_total", "Applied steps, by outcome");
    describe_counter!(
        "reconcile_api_requests_total",
        "API request attempts, by provider"
    );
    describe_counter!(
        "reconcile_api_errors_total",
        "API request attempts that failed (connection, 429, 5xx), by provider"
    );
    describe_counter!(
        "reconcile_api_retries_total",
        "API request attempts after the first of their request, by provider"
    );
    describe_counter!(
        "reconcile_api_throttled_total",
        "API responses 429 (rate limited), by provider"
    );
    describe_counter!(
        "reconcile_notifications_total",
        "Webhook notifications, by outcome"
    );
    describe_gauge!(
        "reconcile_last_success_timestamp_seconds",
        "Unix time of the last cycle that finished without failure"
    );
    describe_gauge!("reconcile_plans_held", "Plans held for approval");
    describe_gauge!(
        "reconcile_not_converging",
        "Resources marked as not converging (retried less often)"
    );
    describe_gauge!("reconcile_consecutive_failures", "Cycles failed in a row");
}

pub fn api_request(provider: &'static str) {
    counter!("reconcile_api_requests_total", "provider" => provider).increment(1);
}

pub fn api_error(provider: &'static str) {
    counter!("reconcile_api_errors_total", "provider" => provider).increment(1);
}

pub fn api_retry(provider: &'static str) {
    counter!("reconcile_api_retries_total", "provider" => provider).increment(1);
}

pub fn api_throttled(provider: &'static str) {
    counter!("reconcile_api_throttled_total", "provider" => provider).increment(1);
}
