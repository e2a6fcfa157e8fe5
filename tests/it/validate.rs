//! `reconcile validate` on the example desired state and on the corpus of invalid specs.

use crate::support::{assert_golden, reconcile, root, subdirs, text};

#[test]
fn example_desired_state_is_valid() {
    let out = reconcile(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("desired-state: valid ("));
}

#[test]
fn example_files_declare_their_schema() {
    for entry in walk(&root().join("desired-state")) {
        let first = std::fs::read_to_string(&entry)
            .unwrap()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let schema = if entry.ends_with("reconcile.yaml") {
            "config.json"
        } else {
            "resources.json"
        };
        assert!(
            first.starts_with("# yaml-language-server: $schema=") && first.ends_with(schema),
            "{} must start with a yaml-language-server line pointing at {schema}",
            entry.display()
        );
        let target = entry
            .parent()
            .unwrap()
            .join(first.trim_start_matches("# yaml-language-server: $schema="));
        assert!(
            target.exists(),
            "{}: schema path {} does not exist",
            entry.display(),
            target.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out
}

/// Each case under tests/invalid/ holds one mistake. Its full error output is golden; every
/// error is located (file:line:column) unless it is about the directory itself, exit code is 1,
/// and no value marked as a secret in the case (`SECRET-VALUE`) appears in the output.
#[test]
fn invalid_specs_report_located_errors() {
    let cases = subdirs(&root().join("tests/invalid"));
    assert!(
        cases.len() >= 30,
        "the corpus has {} cases; it should have at least 30",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let dir = format!("tests/invalid/{name}");
        let out = reconcile(&["validate", "--dir", &dir]);
        let stderr = text(&out.stderr);
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{name}: exit code {:?}, expected 1",
                out.status.code()
            ));
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{name}: printed on stdout"));
        }
        if stderr.contains("SECRET-VALUE") {
            failures.push(format!("{name}: a secret value reached the error output"));
        }
        let located = stderr
            .lines()
            .any(|l| l.contains(&format!("{dir}/")) && l.matches(':').count() >= 2);
        let global = stderr.starts_with("error: no reconcile.yaml")
            || stderr.starts_with("error: desired-state directory");
        if !located && !global {
            failures.push(format!("{name}: no file:line:column in the output"));
        }
        if !stderr.contains("help:") {
            failures.push(format!("{name}: no help for the user"));
        }
        std::panic::catch_unwind(|| assert_golden(&format!("invalid/{name}.txt"), &stderr))
            .unwrap_or_else(|_| failures.push(format!("{name}: golden differs")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_directory_is_an_error() {
    let out = reconcile(&["validate", "--dir", "tests/no-such-dir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("desired-state directory `tests/no-such-dir` does not exist")
    );
}

/// A "billion laughs" document (10^10 nodes if its aliases were expanded) is refused at the
/// alias that goes over the bound, by every command that loads the desired state.
#[test]
fn alias_bomb_is_refused_by_validate_and_plan() {
    for command in ["validate", "plan"] {
        let started = std::time::Instant::now();
        let out = reconcile(&[command, "--dir", "tests/invalid/48-alias-bomb"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("tests/invalid/48-alias-bomb/users.yaml:6:29"),
            "{command}: {stderr}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{command} took {:?}",
            started.elapsed()
        );
    }
}

/// Writes `files` (name, content) into a new temporary desired-state directory.
fn temp_state(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn validate_dir(dir: &std::path::Path) -> (Option<i32>, String, String) {
    let out = reconcile(&["validate", "--dir", dir.to_str().unwrap()]);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

const CONFIG: &[u8] = b"gitlab: {url: http://gitlab.example}\n";
const USERS: &[u8] = b"users:\n  - {username: dev1, name: Dev One, email: dev1@example.com}\n";

#[test]
fn files_with_a_utf8_byte_order_mark_are_read() {
    let bom = |text: &[u8]| [b"\xEF\xBB\xBF".as_slice(), text].concat();
    let dir = temp_state(&[
        ("reconcile.yaml", &bom(CONFIG)),
        ("users.yaml", &bom(USERS)),
    ]);
    let (code, stdout, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid (1 resources"), "{stdout}");
    // Positions after a BOM are those an editor shows (the BOM is not a column).
    let dir = temp_state(&[
        ("reconcile.yaml", CONFIG),
        ("users.yaml", &bom(b"userz: []\n")),
    ]);
    let (code, _, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("users.yaml:1:1") && stderr.contains("unknown section `userz`"),
        "{stderr}"
    );
}

/// A 3 MB value is reported with a bounded message and source line (a 10 MB one was quoted in
/// full: 31 MB of error output), and a file over the size limit (10 MB) is not read at all.
#[test]
fn huge_values_and_files_are_reported_in_bounded_output() {
    let huge = "x".repeat(3_000_000);
    let users =
        format!("users:\n  - {{username: dev1, name: \"{huge}\", email: dev1@example.com}}\n");
    let dir = temp_state(&[("reconcile.yaml", CONFIG), ("users.yaml", users.as_bytes())]);
    let started = std::time::Instant::now();
    let (code, _, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(1));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(stderr.len() < 4_000, "{} bytes of stderr", stderr.len());
    assert!(stderr.contains("users.yaml:2:28"), "{stderr}");
    assert!(
        stderr.contains("value longer than 128 KiB (3000000 bytes)"),
        "{stderr}"
    );

    let big = format!("users: []\n# {}\n", "y".repeat(10_000_000));
    let dir = temp_state(&[("reconcile.yaml", CONFIG), ("users.yaml", big.as_bytes())]);
    let (code, _, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("users.yaml:1:1"), "{stderr}");
    assert!(stderr.contains("file is larger than 4 MiB"), "{stderr}");
    assert!(stderr.len() < 2_000, "{} bytes of stderr", stderr.len());
}

/// Positive control for the limits: values at GitLab's limits, and multi-line values with tabs.
#[test]
fn values_within_the_limits_are_accepted() {
    let projects = format!(
        "projects:\n  - namespace: root\n    path: app\n    description: \"{}\"\n    variables:\n      items:\n        - key: SCRIPT\n          value: |\n            line one\n            \tindented with a tab\n",
        "d".repeat(2000)
    );
    let dir = temp_state(&[
        ("reconcile.yaml", CONFIG),
        ("projects.yaml", projects.as_bytes()),
    ]);
    let (code, stdout, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
}

/// Positive control for impossible gates: gates that a plan can pass are accepted.
#[test]
fn gates_that_can_be_passed_are_accepted() {
    let config = b"gitlab:\n  url: http://gitlab.example\n  approval: {required: 100}\nenvironments:\n  production:\n    approval: {required: 2, approvers: [alice, Bob]}\n";
    let dir = temp_state(&[("reconcile.yaml", config), ("users.yaml", USERS)]);
    let (code, _, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(0), "{stderr}");
}

/// Symlinks that stay inside the desired-state directory are followed (a file reached twice is
/// read once); others are refused with a message naming them. Before, every symlink was
/// silently skipped: `no reconcile.yaml`, or `member dev1 … is not a declared user`.
#[cfg(unix)]
#[test]
fn symlinks_inside_are_followed_others_refused() {
    use std::os::unix::fs::symlink;
    let project = b"projects:\n  - namespace: root\n    path: app\n    members:\n      items:\n        - {user: dev1, access: developer}\n";
    let dir = temp_state(&[
        ("configs/main.yaml", CONFIG),
        ("team/people.yaml", USERS),
        ("projects.yaml", project),
    ]);
    symlink("configs/main.yaml", dir.path().join("reconcile.yaml")).unwrap();
    symlink("team/people.yaml", dir.path().join("users.yaml")).unwrap();
    symlink("team", dir.path().join("staff")).unwrap();
    let (code, stdout, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("(3 resources"), "{stdout}");

    let outside = temp_state(&[("users.yaml", USERS), ("more/x.yaml", USERS)]);
    symlink(
        outside.path().join("users.yaml"),
        dir.path().join("other.yaml"),
    )
    .unwrap();
    symlink(outside.path().join("more"), dir.path().join("more")).unwrap();
    symlink("missing.yaml", dir.path().join("dangling.yaml")).unwrap();
    symlink(".", dir.path().join("team/loop")).unwrap();
    let (code, _, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    for (name, why) in [
        (
            "other.yaml",
            "is a symlink to a place outside the desired-state directory",
        ),
        (
            "more",
            "is a symlink to a place outside the desired-state directory",
        ),
        ("dangling.yaml", "is a symlink to nothing"),
    ] {
        let shown = format!("{}/{name}` {why}", dir.path().display());
        assert!(stderr.contains(&shown), "{shown}\n{stderr}");
    }
    // The loop is reached through `staff` (a symlink to `team`) first, and reported once.
    assert_eq!(
        stderr.matches("/loop` is a symlink back to").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("duplicate"), "{stderr}");
    assert!(
        stderr.ends_with("error: 4 errors in 0 files; nothing was contacted or changed\n"),
        "{stderr}"
    );

    // A settings file outside the directory is refused, without a second `no reconcile.yaml`.
    let dir = temp_state(&[("users.yaml", USERS)]);
    symlink(
        outside.path().join("users.yaml"),
        dir.path().join("reconcile.yaml"),
    )
    .unwrap();
    let (code, _, stderr) = validate_dir(dir.path());
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("reconcile.yaml` is a symlink to a place outside"),
        "{stderr}"
    );
    assert!(!stderr.contains("no reconcile.yaml"), "{stderr}");
}
