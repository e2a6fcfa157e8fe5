//! `reconcile check`: the compliance policies alone. Exit 0 when no `error` rule fails.

use super::{DirArgs, Exit};
use crate::policy;

pub fn run(args: &DirArgs) -> Exit {
    let Some(state) = super::load(&args.dir) else {
        return Exit::Error;
    };
    let findings = policy::evaluate(&state);
    let errors = policy::errors(&findings);
    print!("{}", policy::render(&findings));
    println!(
        "Policies: {errors} error(s), {} warning(s).",
        findings.len() - errors
    );
    if errors == 0 { Exit::Ok } else { Exit::Error }
}
