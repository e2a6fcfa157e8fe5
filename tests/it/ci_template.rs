//! The GitLab CI template shipped for desired-state repositories: it parses as YAML, and every
//! `reconcile` command it runs exists with the flags it passes.

use crate::support::{reconcile, root, text};

#[test]
fn ci_template_parses_and_its_commands_exist() {
    let template = std::fs::read_to_string(root().join("ci/desired-state.gitlab-ci.yml")).unwrap();
    assert_eq!(
        reconcile::spec::check_yaml_syntax(&template),
        Ok(1),
        "one YAML document"
    );
    let commands: Vec<&str> = template
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- reconcile "))
        .collect();
    assert!(
        commands.len() >= 6,
        "plan, check, validate, approve, apply: {commands:?}"
    );
    for command in commands {
        let mut words = command.split_whitespace();
        let sub = words.next().unwrap();
        let help = reconcile(&[sub, "--help"]);
        assert_eq!(help.status.code(), Some(0), "`reconcile {sub}` exists");
        let help = text(&help.stdout);
        for flag in words.filter(|w| w.starts_with("--")) {
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "`reconcile {sub}` has no flag {flag}:\n{help}"
            );
        }
    }
    for stage in [
        "plan:",
        "approve:gitlab:",
        "approve:production:second:",
        "apply:",
    ] {
        assert!(
            template.contains(&format!("\n{stage}\n")),
            "job {stage} is defined"
        );
    }
}
