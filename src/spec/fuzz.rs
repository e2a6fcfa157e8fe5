//! Property tests of the loader: arbitrary bytes and mutated valid specs never make it panic,
//! every error it reports is located, its output stays bounded, and no secret written in a
//! sensitive place reaches the output. A bounded number of cases runs with the unit tests
//! (`PROPTEST_CASES` raises it).

use std::path::Path;

use proptest::prelude::*;

use super::{CONFIG_FILE, load};

const CONFIG: &str =
    "gitlab: {url: http://gitlab.example, approval: {required: 1}}\nenvironments:\n  staging: {}\n";

/// A spec with a secret in each kind of sensitive place, and a mistake next to most of them
/// (so that a diagnostic shows their line). Each `ATOMS` entry is left intact by mutations.
const SPEC: &str = r#"users:
  - {username: dev1, name: Dev One, email: not-an-address, password: S3CR3T-A1}
  - username: dev2
    name: Dev Two
    email: dev2@example.com
projects:
  - namespace: root
    path: app
    description: deploys the app
    members:
      items:
        - {user: dev1, access: developer}
    protected_branches:
      items:
        - {name: main, push: maintainer, merge: developer}
    variables:
      items:
        - {key: DEPLOY_TOKEN, masked: true, protected: true, value: S3CR3T-B2, descripton: x}
        - key: PLAIN
          value: plain-value
secrets:
  - {name: app/db, descripton: "-----BEGIN RSA PRIVATE KEY-----\nS3CR3T-F6\n-----END RSA PRIVATE KEY-----"}
services:
  - name: web
    environment: staging
    cluster: main
    launch_type: EC2
    task_definition:
      family: web
      network_mode: bridge
      containers:
        - {name: app, image: {repository: app}, environment: {DB_PASSWORD: S3CR3T-C3}}
token: S3CR3T-D4 # api_key: S3CR3T-E5
"#;

const ATOMS: &[&str] = &[
    "password: S3CR3T-A1",
    "{key: DEPLOY_TOKEN, masked: true, protected: true, value: S3CR3T-B2, descripton: x}",
    "\"-----BEGIN RSA PRIVATE KEY-----\\nS3CR3T-F6\\n-----END RSA PRIVATE KEY-----\"",
    "DB_PASSWORD: S3CR3T-C3",
    "token: S3CR3T-D4 # api_key: S3CR3T-E5",
];

/// What errors about the directory itself (no file to point at) may say.
const GLOBAL: &[&str] = &["no reconcile.yaml", "the desired state is larger"];

/// Loads `files` from a temporary directory and checks the properties; returns the rendered
/// errors.
fn check(files: &[(&str, &[u8])]) -> Result<String, TestCaseError> {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("write");
    }
    let input: usize = files.iter().map(|(_, b)| b.len()).sum();
    let out = match load(dir.path()) {
        Ok(_) => return Ok(String::new()),
        Err(errors) => errors,
    };
    for d in &out.diagnostics {
        prop_assert!(
            d.origin.is_some() || GLOBAL.iter().any(|g| d.message.starts_with(g)),
            "not located: {}",
            d.message
        );
        prop_assert!(d.help.is_some(), "no help: {}", d.message);
    }
    let text = out.to_plain_string();
    // Each diagnostic shows a few lines, each bounded; the input's size bounds their number.
    prop_assert!(
        text.len() <= 2_000 * out.diagnostics.len() + 4 * input + 1_000,
        "{} bytes of output for {} bytes of input",
        text.len(),
        input
    );
    Ok(text.replace(&dir.path().display().to_string(), "DIR"))
}

/// One edit of the spec text.
#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    DuplicateLine(usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let piece = prop::collection::vec(
        prop::sample::select(vec![
            ":", " ", "\n", "  ", "- ", "{", "}", "[", "]", ",", "\"", "'", "#", "&a ", "*a", "|",
            ">", "? ", "!", "\\", "\t", "\u{7}", "x", "key", "value", "---\n", "\u{feff}",
        ]),
        1..4,
    )
    .prop_map(|v| v.concat());
    prop_oneof![
        (any::<usize>(), piece).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 1usize..24).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Edit::Replace(at, c)),
    ]
}

/// Byte ranges of `text` that edits must leave intact (the secrets and what makes them so).
fn protected(text: &str) -> Vec<std::ops::Range<usize>> {
    ATOMS
        .iter()
        .flat_map(|a| text.match_indices(a).map(|(i, _)| i..i + a.len()))
        .collect()
}

/// The char boundary at or before `at` that is outside every protected range.
fn free_position(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    for r in protected(text) {
        if r.start < at && at < r.end {
            return r.start;
        }
    }
    at
}

fn apply(text: &mut String, edit: &Edit) {
    match edit {
        Edit::Insert(at, s) => {
            let at = free_position(text, *at);
            text.insert_str(at, s);
        }
        Edit::Delete(at, n) => {
            let start = free_position(text, *at);
            let mut end = (start + n).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            if protected(text)
                .iter()
                .all(|r| end <= r.start || start >= r.end)
            {
                text.replace_range(start..end, "");
            }
        }
        Edit::DuplicateLine(at) => {
            let at = free_position(text, *at);
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
            let line = text[start..end].to_string();
            text.insert_str(start, &line);
        }
        Edit::Replace(at, c) => {
            let at = free_position(text, *at);
            if let Some(old) = text[at..].chars().next()
                && protected(text)
                    .iter()
                    .all(|r| at + old.len_utf8() <= r.start || at >= r.end)
            {
                text.replace_range(at..at + old.len_utf8(), &c.to_string());
            }
        }
    }
}

proptest! {
    // A fixed seed in the suite (CI must not fail at random); `PROPTEST_RNG_SEED=random
    // PROPTEST_CASES=40000 cargo test --lib spec::fuzz` explores. Failures found are kept in
    // proptest-regressions/ and always re-run.
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            ProptestConfig::default().rng_seed
        } else {
            proptest::test_runner::RngSeed::Fixed(20_261_204)
        },
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_error_is_located(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        name in prop::sample::select(vec!["users.yaml", CONFIG_FILE]),
    ) {
        let files: Vec<(&str, &[u8])> = if name == CONFIG_FILE {
            vec![(CONFIG_FILE, &bytes)]
        } else {
            vec![(CONFIG_FILE, CONFIG.as_bytes()), (name, &bytes)]
        };
        check(&files)?;
    }

    #[test]
    fn yaml_like_text_never_panics_and_every_error_is_located(
        tokens in prop::collection::vec(
            prop::sample::select(vec![
                "users", "projects", "secrets", "services", "username", "namespace", "path",
                "items", "members", "variables", "key", "value", "masked", "true", "1", "x",
                ":", ": ", " ", "\n", "  ", "- ", "{", "}", "[", "]", ", ", "\"", "'", "# ",
                "&a ", "*a", "|\n", ">\n", "? ", "!t ", "\\", "\t", "---\n", "...\n", "%YAML 1.2\n",
                "\u{7}", "\u{feff}", "é", "\r\n",
            ]),
            0..200,
        ),
    ) {
        let text = tokens.concat();
        check(&[(CONFIG_FILE, CONFIG.as_bytes()), ("resources.yaml", text.as_bytes())])?;
    }

    #[test]
    fn mutated_specs_never_panic_nor_show_a_secret(edits in prop::collection::vec(edit(), 1..8)) {
        let mut text = SPEC.to_string();
        for e in &edits {
            apply(&mut text, e);
        }
        let shown = check(&[(CONFIG_FILE, CONFIG.as_bytes()), ("resources.yaml", text.as_bytes())])?;
        prop_assert!(!shown.contains("S3CR3T"), "a secret was shown:\n{shown}\n--- input:\n{text}");
    }
}

#[test]
fn the_unmutated_spec_shows_its_mistakes_and_no_secret() {
    let shown = check(&[
        (CONFIG_FILE, CONFIG.as_bytes()),
        ("resources.yaml", SPEC.as_bytes()),
    ])
    .unwrap();
    assert!(!shown.contains("S3CR3T"), "{shown}");
    // A diagnostic on every line with a secret: the masking is really exercised.
    for line in [2, 18, 22, 32, 33] {
        assert!(
            shown.contains(&format!("resources.yaml:{line}:")),
            "line {line}:\n{shown}"
        );
    }
}

#[test]
fn a_missing_directory_is_a_global_error() {
    let errors = load(Path::new("/nonexistent/reconcile-fuzz")).unwrap_err();
    assert!(errors.diagnostics[0].origin.is_none());
}
