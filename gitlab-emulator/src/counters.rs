//! Request counters by method and route template (`GET /api/v4/projects/:id`),
//! read by request-budget tests and benchmarks. Control-plane requests are
//! never counted.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// A snapshot of the request counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Every request to a known `/api/v4` route (including faulted and rate-limited ones).
    pub total: u64,
    /// Requests by `"METHOD /api/v4/route/:param"`. Requests to unknown routes
    /// are not counted at all.
    pub by_route: BTreeMap<String, u64>,
    /// Injected faults by kind (`latency`, `error`, `reset`, `rate_limited`, `write_then_500`).
    pub faults: BTreeMap<String, u64>,
    /// Requests refused by the per-user rate limiter.
    pub rate_limited: u64,
}

impl Counters {
    /// Count for one route key such as `"POST /api/v4/projects"` (0 if never hit).
    pub fn get(&self, route: &str) -> u64 {
        self.by_route.get(route).copied().unwrap_or(0)
    }
}

/// Thread-safe counter store.
#[derive(Debug, Default)]
pub(crate) struct CounterStore {
    inner: Mutex<Counters>,
}

impl CounterStore {
    pub fn record_request(&self, route: &str) {
        let mut c = self.inner.lock();
        c.total += 1;
        match c.by_route.get_mut(route) {
            Some(n) => *n += 1,
            None => {
                c.by_route.insert(route.to_string(), 1);
            }
        }
    }

    pub fn record_fault(&self, kind: &str) {
        *self
            .inner
            .lock()
            .faults
            .entry(kind.to_string())
            .or_insert(0) += 1;
    }

    pub fn record_rate_limited(&self) {
        self.inner.lock().rate_limited += 1;
    }

    pub fn snapshot(&self) -> Counters {
        self.inner.lock().clone()
    }

    pub fn reset(&self) {
        *self.inner.lock() = Counters::default();
    }
}

/// Turns axum's matched path (`/api/v4/projects/{id}`) into the stable
/// template form (`/api/v4/projects/:id`).
pub(crate) fn route_template(matched: &str) -> String {
    let mut out = String::with_capacity(matched.len());
    let mut chars = matched.chars();
    while let Some(c) = chars.next() {
        if c == '{' {
            out.push(':');
            for inner in chars.by_ref() {
                if inner == '}' {
                    break;
                }
                out.push(inner);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_use_colon_params() {
        assert_eq!(
            route_template("/api/v4/projects/{id}/variables/{key}"),
            "/api/v4/projects/:id/variables/:key"
        );
    }
}
