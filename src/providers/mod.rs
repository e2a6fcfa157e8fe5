//! I/O with the systems reconcile manages. Each provider reads live state and applies steps;
//! nothing here decides what to change (that is [`crate::plan`]).
//!
//! A provider owns a set of address kinds. [`Providers`] dispatches by address, so the
//! executor and the pipeline work the same for GitLab and AWS.

pub mod aws;
pub mod gitlab;

use async_trait::async_trait;

use futures::future::join_all;
pub use gitlab::Traffic;

use crate::address::Address;
use crate::live::{Desired, LiveState};
use crate::plan::Step;

/// Why a step failed. Messages never hold a secret value.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{system} refused: {message}")]
    Api {
        system: &'static str,
        message: String,
    },
    #[error("{0}")]
    Precondition(String),
    #[error("the secret value for `{0}` is not available (resolve it and plan again)")]
    MissingSecret(String),
    #[error("no provider handles {0}")]
    Unsupported(&'static str),
}

/// A system reconcile manages.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Whether this provider reads and writes `address`.
    fn owns(&self, address: &Address) -> bool;

    /// Reads the live state of every desired resource it owns (failed reads are Unknown).
    async fn observe(&self, desired: &[&Desired]) -> LiveState;

    /// Reads the given addresses again (apply preconditions, convergence check).
    async fn observe_only(&self, desired: &[&Desired], addresses: &[Address]) -> LiveState;

    /// Applies one step; safe to run twice.
    async fn apply(&self, step: &Step, desired: Option<&Desired>) -> Result<(), StepError>;

    /// The note a replace of `address` needs in the plan, if any.
    fn replace_note(&self, address: &Address) -> Option<String>;

    /// API requests sent so far.
    fn requests(&self) -> u64;

    /// Requests, retries and 429s so far.
    fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests(),
            ..Traffic::default()
        }
    }
}

/// A shared provider (the pipeline keeps a handle on the AWS provider for the promotion rule).
#[async_trait]
impl<P: Provider + ?Sized> Provider for std::sync::Arc<P> {
    fn owns(&self, address: &Address) -> bool {
        (**self).owns(address)
    }

    async fn observe(&self, desired: &[&Desired]) -> LiveState {
        (**self).observe(desired).await
    }

    async fn observe_only(&self, desired: &[&Desired], addresses: &[Address]) -> LiveState {
        (**self).observe_only(desired, addresses).await
    }

    async fn apply(&self, step: &Step, desired: Option<&Desired>) -> Result<(), StepError> {
        (**self).apply(step, desired).await
    }

    fn replace_note(&self, address: &Address) -> Option<String> {
        (**self).replace_note(address)
    }

    fn requests(&self) -> u64 {
        (**self).requests()
    }

    fn traffic(&self) -> Traffic {
        (**self).traffic()
    }
}

/// Every provider of a run, dispatching by address.
#[derive(Default)]
pub struct Providers {
    list: Vec<Box<dyn Provider>>,
}

impl Providers {
    pub fn new(list: Vec<Box<dyn Provider>>) -> Self {
        Self { list }
    }

    fn owner(&self, address: &Address) -> Option<&dyn Provider> {
        self.list
            .iter()
            .find(|p| p.owns(address))
            .map(|p| p.as_ref())
    }

    pub async fn observe(&self, desired: &[Desired]) -> LiveState {
        self.observe_except(desired, &|_| false).await
    }

    /// [`Self::observe`] of the resources `skip` leaves (a provider left nothing reads nothing).
    pub async fn observe_except(
        &self,
        desired: &[Desired],
        skip: &(dyn Fn(&Address) -> bool + Sync),
    ) -> LiveState {
        let parts = join_all(self.list.iter().map(|p| {
            let mine: Vec<&Desired> = desired
                .iter()
                .filter(|d| p.owns(&d.address) && !skip(&d.address))
                .collect();
            async move {
                if mine.is_empty() {
                    LiveState::default()
                } else {
                    p.observe(&mine).await
                }
            }
        }))
        .await;
        merge(parts)
    }

    pub async fn observe_only(&self, desired: &[Desired], addresses: &[Address]) -> LiveState {
        let parts = join_all(self.list.iter().map(|p| {
            let mine: Vec<Address> = addresses.iter().filter(|a| p.owns(a)).cloned().collect();
            async move {
                if mine.is_empty() {
                    LiveState::default()
                } else {
                    let theirs: Vec<&Desired> =
                        desired.iter().filter(|d| p.owns(&d.address)).collect();
                    p.observe_only(&theirs, &mine).await
                }
            }
        }))
        .await;
        merge(parts)
    }

    pub async fn apply(&self, step: &Step, desired: Option<&Desired>) -> Result<(), StepError> {
        match self.owner(&step.address) {
            Some(p) => p.apply(step, desired).await,
            None => Err(StepError::Unsupported(step.address.kind())),
        }
    }

    pub fn replace_note(&self, address: &Address) -> Option<String> {
        self.owner(address).and_then(|p| p.replace_note(address))
    }

    /// Requests, retries and 429s of every provider.
    pub fn traffic(&self) -> Traffic {
        self.list
            .iter()
            .map(|p| p.traffic())
            .fold(Traffic::default(), |a, b| a + b)
    }

    pub fn requests(&self) -> u64 {
        self.list.iter().map(|p| p.requests()).sum()
    }
}

fn merge(parts: Vec<LiveState>) -> LiveState {
    let mut live = LiveState::default();
    for part in parts {
        live.objects.extend(part.objects);
        live.unmanaged.extend(part.unmanaged);
    }
    live
}
