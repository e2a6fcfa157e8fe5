//! In-memory emulator of the GitLab CE REST API v4 subset that `reconcile` drives.
//!
//! This crate owns a faithful-enough imitation of GitLab CE 18.4 for users,
//! namespaces and groups, projects, project members, protected branches,
//! project CI/CD variables, personal access tokens (scopes, expiry,
//! revocation, `Sudo`), SSH keys, CI jobs and system hooks (delivered to
//! their receivers in the background), an optional Rack::Attack-style rate
//! limit, plus a control plane under
//! `/-/emulator/` for tests and benchmarks (reset, state load and dump,
//! request counters, fault injection, token and job fixtures). It never talks to a real GitLab and never touches the network
//! beyond the loopback listener it binds.
//!
//! Start it in-process for tests:
//!
//! ```no_run
//! # async fn demo() -> Result<(), gitlab_emulator::EmulatorError> {
//! use gitlab_emulator::{Config, Emulator};
//! let emu = Emulator::start(Config {
//!     admin_tokens: vec!["admin-token".into()],
//!     ..Config::default()
//! })
//! .await?;
//! let base = emu.url(); // "http://127.0.0.1:PORT", without the /api/v4 suffix
//! # let _ = base;
//! emu.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod api;
mod config;
mod control;
mod counters;
mod error;
mod faults;
mod hooks;
mod middleware;
mod model;
mod pagination;
mod params;
mod ratelimit;
mod scopes;
mod seed;
mod server;
mod sshkeys;
mod state;
mod time;

pub use config::{Config, Edition, RateLimit};
pub use counters::Counters;
pub use error::EmulatorError;
pub use faults::Faults;
pub use server::Emulator;

/// The GitLab version whose behaviour this emulator imitates, as `GET /api/v4/version` reports it.
pub const GITLAB_VERSION: &str = "18.4.0";
