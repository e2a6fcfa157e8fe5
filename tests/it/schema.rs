//! `reconcile schema --check`: committed schemas match the Rust types.

use crate::support::{reconcile, text};

#[test]
fn committed_schemas_are_fresh() {
    let out = reconcile(&["schema", "--check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "schemas are stale: {}",
        text(&out.stderr)
    );
}

#[test]
fn schema_check_fails_on_a_stale_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}\n").unwrap();
    let out = reconcile(&["schema", "--check", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("config.json` is stale or missing"));
    assert!(text(&out.stderr).contains("resources.json` is stale or missing"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
        "{}\n",
        "--check must not write"
    );
}
