//! `gitlab-emulator` binary: parses flags, starts the emulator, prints
//! `listening on http://ADDR` as the first stdout line, and stops cleanly
//! (writing the state file) on SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gitlab_emulator::{Config, Edition, Emulator, RateLimit};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EditionArg {
    Ce,
    Ee,
}

/// In-memory emulator of the GitLab CE REST API v4 (see the crate README).
#[derive(Debug, Parser)]
#[command(name = "gitlab-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Token of the `root` administrator, `TOKEN` or `TOKEN:scope1,scope2`
    /// (default scopes api,sudo; repeatable).
    #[arg(long = "admin-token", required = true)]
    admin_tokens: Vec<String>,
    /// Token of a regular user, `TOKEN` or `USERNAME=TOKEN`, optionally with a
    /// `:scope1,scope2` suffix (default scope api; repeatable).
    #[arg(long = "user-token")]
    user_tokens: Vec<String>,
    /// State file: loaded at start if present, written on SIGTERM and on POST /-/emulator/dump.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Edition whose semantics to imitate where CE and EE differ.
    #[arg(long, value_enum, default_value = "ce")]
    edition: EditionArg,
    /// Rate limit in requests per minute and user, counted in Rack::Attack-style
    /// fixed windows (off when absent).
    #[arg(long)]
    rate_limit_rpm: Option<u32>,
    /// Send 429s without Retry-After and RateLimit-* headers.
    #[arg(long)]
    rate_limit_no_headers: bool,
    /// Length of the rate limit's fixed window in seconds (Rack::Attack's period).
    #[arg(long, default_value_t = 60)]
    rate_limit_period_secs: u32,
    /// RateLimit-Name/Limit/Observed/Remaining/Reset on every non-429 response
    /// too (GitLab 18.6's `rate_limiting_headers_for_unthrottled_requests`).
    #[arg(long)]
    rate_limit_headers_on_success: bool,
    /// How long a deleted user stays visible, in milliseconds.
    #[arg(long, default_value_t = 200)]
    user_delete_delay_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut text = format!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{text}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), gitlab_emulator::EmulatorError> {
    let config = Config {
        listen: args.listen,
        admin_tokens: args.admin_tokens,
        user_tokens: args.user_tokens,
        edition: match args.edition {
            EditionArg::Ce => Edition::Ce,
            EditionArg::Ee => Edition::Ee,
        },
        rate_limit: args.rate_limit_rpm.map(|rpm| RateLimit {
            requests_per_minute: rpm,
            headers: !args.rate_limit_no_headers,
            period_secs: args.rate_limit_period_secs.max(1),
            headers_on_success: args.rate_limit_headers_on_success,
        }),
        user_delete_delay: Duration::from_millis(args.user_delete_delay_ms),
        state_file: args.state,
    };
    let emulator = Emulator::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", emulator.url());
        let _ = out.flush();
    }
    wait_for_signal().await;
    tracing::info!("Shutting down");
    emulator.shutdown().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; waiting for Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
