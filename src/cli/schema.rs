//! `reconcile schema`: JSON Schemas generated from the spec types.

use std::path::PathBuf;

use clap::Args;

use super::Exit;

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Directory of the schema files.
    #[arg(long, default_value = "schemas")]
    pub out: PathBuf,
    /// Exit 1 when a committed schema differs from the generated one; write nothing.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: &SchemaArgs) -> Exit {
    let mut stale = Vec::new();
    for (name, text) in crate::spec::schemas() {
        let path = args.out.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(text.as_str()) {
            continue;
        }
        if args.check {
            stale.push(path);
            continue;
        }
        if let Err(e) =
            std::fs::create_dir_all(&args.out).and_then(|()| std::fs::write(&path, &text))
        {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return Exit::Error;
        }
        eprintln!("wrote {}", path.display());
    }
    if stale.is_empty() {
        return Exit::Ok;
    }
    for path in &stale {
        eprintln!("error: `{}` is stale or missing", path.display());
    }
    eprintln!("help: run `reconcile schema` and commit the result");
    Exit::Error
}
