use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = reconcile::cli::Cli::parse();
    reconcile::cli::init_tracing();
    let code = reconcile::cli::run(cli);
    ExitCode::from(code as u8)
}
