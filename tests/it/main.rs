//! Integration tests: one binary, one module per area, each test a short builder over the real
//! `reconcile` binary (and, in later modules, the GitLab emulator and moto).

mod support;

mod approvals;
mod aws_ecs;
mod aws_secrets;
mod ci_template;
mod cli;
mod daemon;
pub(crate) mod gitlab_plan;
mod gitlab_secrets;
mod graph;
mod policies;
mod preflight;
mod promotion;
mod schema;
mod validate;
