//! `reconcile daemon`: drift detection and correction on a schedule (see [`crate::daemon`]).
//!
//! Exit codes with `--once`: 0 converged or nothing to do, 2 plans held for approval, 1 failure.
//! Without `--once` it runs until SIGTERM/SIGINT and then exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Exit;
use crate::daemon::{self, Options, source::Source};
use crate::pipeline::Settings;
use crate::secret::SecretValue;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Desired-state directory.
    #[arg(long, default_value = "desired-state", conflicts_with = "git")]
    pub dir: PathBuf,
    /// Git remote of the desired state, fetched before each cycle (credentials are never logged).
    #[arg(long, requires = "branch")]
    pub git: Option<String>,
    /// Branch of `--git`.
    #[arg(long, requires = "git")]
    pub branch: Option<String>,
    /// Directory of the desired state inside the `--git` repository.
    #[arg(long, default_value = ".", requires = "git")]
    pub subdir: PathBuf,
    /// Time between cycles (jittered ±10 %; backs off after failures).
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Address of the HTTP endpoints (health, metrics, plans).
    #[arg(long, env = "RECONCILE_LISTEN", default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// How often the desired state is checked for a change between cycles (a change starts a
    /// cycle at once).
    #[arg(long, env = "RECONCILE_PROBE_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// Run one cycle and exit: 0 converged, 2 plans held for approval, 1 failure.
    #[arg(long)]
    pub once: bool,
    /// Longest time until a drift that neither GitLab's system hooks nor its project inventory
    /// reveal (CI/CD variables, protected branches) is seen: each cycle reads
    /// `projects × interval ÷ sweep period` projects in turn. `0s` reads everything every cycle.
    #[arg(long, env = "RECONCILE_SWEEP_PERIOD", default_value = "1h", value_parser = humantime::parse_duration)]
    pub sweep_period: Duration,
    /// URL GitLab's system hook calls (default `http://<listen>/hooks/gitlab`); the hook is
    /// registered when `RECONCILE_HOOK_TOKEN` holds its secret token.
    #[arg(long, env = "RECONCILE_HOOK_URL")]
    pub hook_url: Option<String>,
    /// File holding the Slack-compatible webhook URL (else `RECONCILE_WEBHOOK_URL`).
    #[arg(long, env = "RECONCILE_WEBHOOK_URL_FILE")]
    pub webhook_url_file: Option<PathBuf>,
}

pub fn run(args: &DaemonArgs) -> Exit {
    let settings = Settings::from_env(|k| std::env::var(k).ok());
    let webhook = match &args.webhook_url_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(SecretValue::new(text.trim().to_string())),
            Err(e) => {
                eprintln!(
                    "error: cannot read the webhook URL file `{}`: {e}",
                    path.display()
                );
                return Exit::Error;
            }
        },
        None => std::env::var("RECONCILE_WEBHOOK_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(SecretValue::new),
    };
    let (source, state_dir) = match (&args.git, &args.branch) {
        (Some(url), Some(branch)) => {
            let state_dir = settings
                .state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(".reconcile"));
            let source = Source::Git {
                url: url.clone(),
                branch: branch.clone(),
                checkout: state_dir.join("checkout"),
                subdir: args.subdir.clone(),
            };
            (source, state_dir)
        }
        _ => (
            Source::Dir(args.dir.clone()),
            crate::pipeline::state_dir(&args.dir, &settings),
        ),
    };
    // The daemon writes (preflight requires the `api` scope), and its trust records live
    // with its lock and journal.
    let settings = Settings {
        write: true,
        state_dir: Some(state_dir.clone()),
        ..settings
    };
    let options = Options {
        source,
        interval: args.interval,
        probe_interval: args.probe_interval,
        listen: (!args.once).then_some(args.listen),
        once: args.once,
        state_dir,
        webhook,
        settings,
        sweep_period: args.sweep_period,
        hook_token: std::env::var("RECONCILE_HOOK_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(SecretValue::new),
        hook_url: args.hook_url.clone(),
    };
    match super::runtime().block_on(daemon::run(options)) {
        Ok(0) => Exit::Ok,
        Ok(2) => Exit::Changes,
        Ok(_) => Exit::Error,
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Error
        }
    }
}
