//! Benchmark: load, validate and order a desired state of about 10,000 resources.
//!
//! `cargo bench --bench load` prints the figures; nothing is asserted on time.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

const USERS: usize = 300;
const PROJECTS: usize = 900;
const SECRETS: usize = 50;
const SERVICES: usize = 25;

fn write_fleet(dir: &std::path::Path) {
    std::fs::write(
        dir.join("reconcile.yaml"),
        "gitlab: {url: http://gitlab.example}\nenvironments:\n  staging: {}\n  production: {promote_from: staging}\n",
    )
    .unwrap();
    let mut users = String::from("users:\n");
    for u in 0..USERS {
        writeln!(
            users,
            "  - {{username: user{u}, name: User {u}, email: user{u}@example.com}}"
        )
        .unwrap();
    }
    std::fs::write(dir.join("users.yaml"), users).unwrap();
    let mut secrets = String::from("secrets:\n");
    for s in 0..SECRETS {
        writeln!(secrets, "  - name: fleet/secret-{s}").unwrap();
    }
    std::fs::write(dir.join("secrets.yaml"), secrets).unwrap();
    for chunk in 0..PROJECTS / 100 {
        let mut p = String::from("projects:\n");
        for i in chunk * 100..(chunk + 1) * 100 {
            writeln!(p, "  - namespace: fleet\n    path: project-{i}\n    visibility: private\n    members:\n      items:").unwrap();
            for m in 0..3 {
                writeln!(
                    p,
                    "        - {{user: user{}, access: developer}}",
                    (i + m) % USERS
                )
                .unwrap();
            }
            writeln!(p, "    protected_branches:\n      items:\n        - {{name: main, push: maintainer, merge: developer}}").unwrap();
            writeln!(p, "    variables:\n      items:").unwrap();
            for v in 0..6 {
                if v % 2 == 0 {
                    writeln!(p, "        - {{key: VAR_{v}, value: value-{v}}}").unwrap();
                } else {
                    writeln!(p, "        - {{key: SECRET_{v}, masked: true, protected: true, from: {{secret: fleet/secret-{}}}}}", (i + v) % SECRETS).unwrap();
                }
            }
        }
        std::fs::write(dir.join(format!("projects-{chunk}.yaml")), p).unwrap();
    }
    for env in ["staging", "production"] {
        let mut s = String::from("services:\n");
        for i in 0..SERVICES {
            writeln!(
                s,
                "  - name: svc-{i}\n    environment: {env}\n    cluster: c-{env}\n    launch_type: EC2\n    task_definition:\n      family: svc-{i}-{env}\n      containers:\n        - name: app\n          image: {{repository: svc-{i}, tag: \"1.0.{i}\"}}\n          memory: 256\n          secrets:\n            DB_PASSWORD: {{secret: fleet/secret-{}}}",
                i % SECRETS
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("services-{env}.yaml")), s).unwrap();
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    write_fleet(dir.path());
    let mut times: Vec<Duration> = Vec::new();
    let mut resources = 0;
    let mut nodes = 0;
    for _ in 0..10 {
        let start = Instant::now();
        let state =
            reconcile::spec::load(dir.path()).unwrap_or_else(|e| panic!("{}", e.to_plain_string()));
        let graph = reconcile::graph::Graph::build(&state).unwrap();
        let waves = graph.apply_order().len();
        times.push(start.elapsed());
        resources = state.resource_count();
        nodes = graph.len();
        assert!(waves > 1);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!("load + validate + graph + apply order: {resources} resources, {nodes} graph nodes");
    println!(
        "  min {:.1} ms, median {:.1} ms, max {:.1} ms over {} runs ({:.0} resources/s at the median)",
        times[0].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len(),
        resources as f64 / median.as_secs_f64()
    );
}
