//! reconcile: a declarative desired-state engine for GitLab CE and AWS ECS.
//!
//! The pipeline (see ARCHITECTURE.md): [`spec`] loads and validates the desired state,
//! [`graph`] orders it. Observe, diff, plan, approve, apply and the daemon build on these.

pub mod address;
pub mod apply;
pub mod approve;
pub mod audit;
pub mod cli;
pub mod daemon;
pub mod files;
pub mod graph;
pub mod journal;
pub mod live;
pub mod lock;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod providers;
pub mod secret;
pub mod spec;
pub mod trust;
pub mod verify;
