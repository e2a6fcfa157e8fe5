//! `reconcile graph`: print the dependency graph as DOT or JSON.

use clap::{Args, ValueEnum};

use super::{DirArgs, Exit};

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[arg(long, value_enum, default_value_t = Format::Dot)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Dot,
    Json,
}

pub fn run(args: &GraphArgs) -> Exit {
    let Some((_, graph)) = super::load_graph(&args.dir.dir) else {
        return Exit::Error;
    };
    match args.format {
        Format::Dot => print!("{}", graph.to_dot()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&graph.to_json()).expect("graph serialises")
        ),
    }
    Exit::Ok
}
