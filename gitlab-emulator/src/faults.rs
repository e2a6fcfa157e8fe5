//! Deterministic fault injection for `/api/v4` routes: added latency (fixed +
//! jitter), a share of 5xx responses, connection resets, 429s, and "the write
//! succeeded but the response is a 500". Every request draws the same number of
//! values from a ChaCha8 generator seeded by [`Faults::seed`], so a given seed
//! and request sequence always yields the same decisions.

use std::time::Duration;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Fault-injection settings. All rates are probabilities in `[0, 1]` and their
/// sum must not exceed 1; they are mutually exclusive per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Seed of the decision sequence.
    pub seed: u64,
    /// Latency added to every `/api/v4` request, in milliseconds.
    pub latency_ms: u64,
    /// Extra uniformly random latency in `[0, jitter_ms]`, in milliseconds.
    pub jitter_ms: u64,
    /// Share of requests answered with a 5xx (500 JSON, 502 or 503 HTML) without
    /// reaching the handler.
    pub error_rate: f64,
    /// Share of requests whose connection is closed without any response.
    pub reset_rate: f64,
    /// Share of requests answered 429 without reaching the handler.
    pub rate_limited_rate: f64,
    /// Share of write requests (POST/PUT/PATCH/DELETE) that are performed and
    /// then answered `500 {"message":"500 Internal Server Error"}`.
    pub write_then_500_rate: f64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// Omit `Retry-After` and `RateLimit-*` headers on injected 429s.
    pub omit_rate_limit_headers: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            seed: 0,
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            reset_rate: 0.0,
            rate_limited_rate: 0.0,
            write_then_500_rate: 0.0,
            retry_after_secs: 1,
            omit_rate_limit_headers: false,
        }
    }
}

impl Faults {
    /// Checks that rates are probabilities summing to at most 1.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
            ("rate_limited_rate", self.rate_limited_rate),
            ("write_then_500_rate", self.write_then_500_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        let sum: f64 = rates.iter().map(|(_, r)| r).sum();
        if sum > 1.0 + 1e-9 {
            return Err(format!("fault rates add up to {sum}, more than 1"));
        }
        Ok(())
    }

    fn is_inactive(&self) -> bool {
        self.latency_ms == 0
            && self.jitter_ms == 0
            && self.error_rate == 0.0
            && self.reset_rate == 0.0
            && self.rate_limited_rate == 0.0
            && self.write_then_500_rate == 0.0
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// Close the connection without a response.
    Reset,
    /// Answer with this 5xx status.
    Error(u16),
    /// Answer 429.
    RateLimited,
    /// Run the handler, then answer 500 (writes only; reads pass through).
    WriteThen500,
}

/// One request's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub delay: Duration,
    pub fault: Option<FaultKind>,
}

/// The seeded decision engine.
pub(crate) struct FaultEngine {
    inner: Mutex<(Faults, ChaCha8Rng)>,
}

impl Default for FaultEngine {
    fn default() -> Self {
        Self {
            inner: Mutex::new((Faults::default(), ChaCha8Rng::seed_from_u64(0))),
        }
    }
}

impl FaultEngine {
    /// Replaces the settings and restarts the sequence from the seed.
    pub fn set(&self, faults: Faults) {
        let rng = ChaCha8Rng::seed_from_u64(faults.seed);
        *self.inner.lock() = (faults, rng);
    }

    pub fn current(&self) -> Faults {
        self.inner.lock().0.clone()
    }

    /// Draws the next decision (three values per request, whatever the outcome).
    pub fn decide(&self) -> Decision {
        let mut guard = self.inner.lock();
        let (faults, rng) = &mut *guard;
        if faults.is_inactive() {
            return Decision {
                delay: Duration::ZERO,
                fault: None,
            };
        }
        let jitter_draw: f64 = rng.random();
        let choice: f64 = rng.random();
        let variant: f64 = rng.random();
        let jitter = (jitter_draw * (faults.jitter_ms as f64 + 1.0)).floor() as u64;
        let delay = Duration::from_millis(faults.latency_ms + jitter.min(faults.jitter_ms));
        let mut edge = faults.reset_rate;
        let fault = if choice < edge {
            Some(FaultKind::Reset)
        } else if choice < {
            edge += faults.error_rate;
            edge
        } {
            Some(FaultKind::Error(if variant < 0.6 {
                500
            } else if variant < 0.8 {
                502
            } else {
                503
            }))
        } else if choice < {
            edge += faults.rate_limited_rate;
            edge
        } {
            Some(FaultKind::RateLimited)
        } else if choice < edge + faults.write_then_500_rate {
            Some(FaultKind::WriteThen500)
        } else {
            None
        };
        Decision { delay, fault }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let faults = Faults {
            seed: 42,
            jitter_ms: 10,
            error_rate: 0.3,
            reset_rate: 0.2,
            ..Faults::default()
        };
        let a = FaultEngine::default();
        a.set(faults.clone());
        let b = FaultEngine::default();
        b.set(faults.clone());
        let seq_a: Vec<_> = (0..200).map(|_| a.decide()).collect();
        let seq_b: Vec<_> = (0..200).map(|_| b.decide()).collect();
        assert_eq!(seq_a, seq_b);
        let resets = seq_a
            .iter()
            .filter(|d| d.fault == Some(FaultKind::Reset))
            .count();
        assert!(resets > 10 && resets < 80, "resets = {resets}");
        assert!(seq_a.iter().all(|d| d.delay <= Duration::from_millis(10)));
    }

    #[test]
    fn rates_must_be_probabilities() {
        let bad = Faults {
            error_rate: 0.7,
            reset_rate: 0.7,
            ..Faults::default()
        };
        assert!(bad.validate().is_err());
        assert!(Faults::default().validate().is_ok());
    }
}
