use std::process::ExitCode;

use clap::Parser;

/// Exit status of a process whose output pipe closed (as if killed by SIGPIPE).
const BROKEN_PIPE_EXIT: i32 = 141;

fn main() -> ExitCode {
    // `reconcile graph | head`: when the reader goes away, stop quietly instead of panicking
    // (std ignores SIGPIPE so that sockets see EPIPE; `println!` then panics).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        default_hook(info);
    }));
    // Usage errors exit 1 (never 2, which means "changes present"); --help and --version exit 0.
    let cli = match reconcile::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    reconcile::cli::init_tracing();
    let code = reconcile::cli::run(cli);
    ExitCode::from(code as u8)
}
