use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
