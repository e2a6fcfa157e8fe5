//! Shared helpers: run the binary, compare with golden files.

pub mod aws;
pub mod daemon;
pub mod gitlab;
pub mod moto;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (tests run with it as the working directory, so paths in output are
/// relative and stable).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `reconcile ARGS` from the repository root without colour.
pub fn reconcile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("GITLAB_TOKEN")
        .env_remove("GITLAB_URL")
        .output()
        .expect("run reconcile")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// Compares `actual` with the golden file `golden/<name>`; with `UPDATE_GOLDEN=1` rewrites it.
/// Goldens are reviewed like code: never edit one by hand to make a test pass.
pub fn assert_golden(name: &str, actual: &str) {
    let path = root().join("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "missing golden file {} ({e}); run with UPDATE_GOLDEN=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual);
        panic!(
            "{} differs from the output (run with UPDATE_GOLDEN=1 to accept, then review):\n{}",
            path.display(),
            diff.unified_diff().context_radius(3)
        );
    }
}

/// Directories directly under `dir`, sorted.
pub fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}
