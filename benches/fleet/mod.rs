//! The generated fleet the GitLab benchmarks plan: `projects` projects under `root` (4 members,
//! 2 protected branches, 6 variables each) and `users` users, in files of 100 projects.

use std::fmt::Write as _;

pub fn fleet(dir: &std::path::Path, projects: usize, users: usize) {
    fleet_with_values(dir, projects, users, "");
}

/// [`fleet`] whose variable values end with `suffix` (another suffix changes every variable).
pub fn fleet_with_values(dir: &std::path::Path, projects: usize, users: usize, suffix: &str) {
    std::fs::write(
        dir.join("reconcile.yaml"),
        "gitlab: {url: http://gitlab.invalid}\n",
    )
    .unwrap();
    let mut u = String::from("users:\n");
    for i in 0..users {
        writeln!(
            u,
            "  - {{username: user{i}, name: User {i}, email: user{i}@example.com}}"
        )
        .unwrap();
    }
    std::fs::write(dir.join("users.yaml"), u).unwrap();
    for chunk in 0..projects.div_ceil(100) {
        let mut p = String::from("projects:\n");
        for i in chunk * 100..((chunk + 1) * 100).min(projects) {
            writeln!(p, "  - namespace: root\n    path: project-{i}\n    visibility: private\n    default_branch: main\n    members:\n      items:").unwrap();
            for m in 0..4 {
                writeln!(
                    p,
                    "        - {{user: user{}, access: developer}}",
                    (i * 4 + m) % users
                )
                .unwrap();
            }
            writeln!(p, "    protected_branches:\n      items:").unwrap();
            writeln!(
                p,
                "        - {{name: main, push: maintainer, merge: developer}}"
            )
            .unwrap();
            writeln!(
                p,
                "        - {{name: \"release/*\", push: maintainer, merge: maintainer}}"
            )
            .unwrap();
            writeln!(p, "    variables:\n      items:").unwrap();
            for v in 0..6 {
                writeln!(
                    p,
                    "        - {{key: VAR_{v}, value: value-{i}-{v}{suffix}, protected: {}}}",
                    v % 2 == 0
                )
                .unwrap();
            }
        }
        std::fs::write(dir.join(format!("projects-{chunk}.yaml")), p).unwrap();
    }
}
