//! `reconcile validate`: load and validate, contact nothing.

use super::{DirArgs, Exit};

pub fn run(args: &DirArgs) -> Exit {
    let Some((state, graph)) = super::load_graph(&args.dir) else {
        return Exit::Error;
    };
    println!(
        "{}: valid ({} resources, {} graph nodes, {} files)",
        args.dir.display(),
        state.resource_count(),
        graph.len(),
        state.sources.iter().count()
    );
    Exit::Ok
}
