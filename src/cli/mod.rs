//! Command line: parse arguments, run one subcommand, map the outcome to an exit code.
//!
//! Data goes to stdout; diagnostics, progress and logs to stderr.

mod apply;
mod approve;
mod check;
mod daemon;
mod graph;
mod plan;
mod schema;
mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};

/// Exit codes shared by every subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success; for plan: no changes.
    Ok = 0,
    /// Error: bad input, refused, or nothing applied.
    Error = 1,
    /// Plan: changes present.
    Changes = 2,
    /// Apply: some steps applied, some failed.
    Partial = 3,
}

#[derive(Debug, Parser)]
#[command(
    name = "reconcile",
    version,
    about = "Declarative desired state for GitLab CE and AWS ECS",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate the desired state; contacts nothing.
    Validate(DirArgs),
    /// Print the dependency graph.
    Graph(graph::GraphArgs),
    /// Write the JSON Schemas of the spec files (or check that they are fresh).
    Schema(schema::SchemaArgs),
    /// Show the changes that would bring live state to the desired state (GitLab).
    #[command(long_flag = "plan")]
    Plan(plan::PlanArgs),
    /// Approve a plan file (the approval is bound to its sha256).
    Approve(approve::ApproveArgs),
    /// Apply a plan file, or plan and apply with --auto-approve (GitLab).
    Apply(apply::ApplyArgs),
    /// Run the compliance policies on the desired state alone (contacts nothing).
    Check(DirArgs),
    /// Detect drift on a schedule and correct it, hold it for approval, or report it.
    Daemon(daemon::DaemonArgs),
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// Desired-state directory.
    #[arg(long, default_value = "desired-state")]
    pub dir: PathBuf,
}

/// Which part of the desired state a plan covers.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Only this scope: `gitlab` (users, projects and their objects), `aws`, or an environment.
    #[arg(long = "env", value_name = "SCOPE")]
    pub scope: Option<String>,
}

pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Approve(args) => approve::run(&args),
        Command::Apply(args) => apply::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Daemon(args) => daemon::run(&args),
    }
}

/// The async runtime for subcommands that do I/O.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

/// Colour on stderr when it is a terminal and NO_COLOR is unset.
pub(crate) fn stderr_stream() -> StandardStream {
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    StandardStream::stderr(if color {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    })
}

/// Loads the desired state, printing every spec error on failure.
pub(crate) fn load(dir: &std::path::Path) -> Option<crate::spec::DesiredState> {
    match crate::spec::load(dir) {
        Ok(state) => Some(state),
        Err(errors) => {
            let mut out = stderr_stream();
            let _ = errors.render(&mut out);
            None
        }
    }
}

/// Loads and builds the graph, printing spec errors or the cycle (located) on failure.
pub(crate) fn load_graph(
    dir: &std::path::Path,
) -> Option<(crate::spec::DesiredState, crate::graph::Graph)> {
    let state = load(dir)?;
    match crate::graph::Graph::build(&state) {
        Ok(g) => Some((state, g)),
        Err(cycle) => {
            let errors = crate::spec::cycle_errors(state, &cycle);
            let _ = errors.render(&mut stderr_stream());
            None
        }
    }
}

pub fn init_tracing() {
    // The AWS SDK's own warnings (e.g. a multi-line dump when it probes the instance metadata
    // for credentials) stay out of the default output: preflight says what is wrong in one line.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RECONCILE_LOG")
        .unwrap_or_else(|_| "warn,aws_config=error,aws_smithy_runtime=error".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal())
        .init();
}
