//! Benchmark: `reconcile plan` of a fleet against the GitLab emulator with 20 ms of injected
//! latency per request. Prints wall time, request count, and the ratio to the floor (the
//! minimal request count × 20 ms ÷ concurrency). Nothing is asserted on time.
//!
//! `cargo bench --bench gitlab_plan` (`FLEET_PROJECTS=200` for a smaller fleet;
//! `FLEET_RATE_LIMIT_RPM=600` also plans it again against a rate-limited emulator).

use std::fmt::Write as _;
use std::time::Instant;

use gitlab_emulator::{Config, Emulator, Faults};
use reconcile::pipeline::{self, Settings};

const TOKEN: &str = "bench-admin-token";
const LATENCY_MS: u64 = 20;

fn fleet(dir: &std::path::Path, projects: usize, users: usize) {
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
                    "        - {{key: VAR_{v}, value: value-{i}-{v}, protected: {}}}",
                    v % 2 == 0
                )
                .unwrap();
            }
        }
        std::fs::write(dir.join(format!("projects-{chunk}.yaml")), p).unwrap();
    }
}

fn main() {
    let projects: usize = std::env::var("FLEET_PROJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let users: usize = 300;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let emu = rt
        .block_on(Emulator::start(Config {
            admin_tokens: vec![TOKEN.into()],
            ..Config::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), projects, users);
    let url = emu.url();
    let settings = Settings::from_env(|k| match k {
        "GITLAB_URL" => Some(url.clone()),
        "GITLAB_TOKEN" => Some(TOKEN.into()),
        _ => None,
    });
    let concurrency = settings.client.concurrency;

    // Seed: apply the fleet without latency.
    let seed_start = Instant::now();
    let planned = rt
        .block_on(pipeline::plan(dir.path(), &settings))
        .unwrap_or_else(|_| panic!("fleet plans"));
    let steps = planned.plan.steps.len();
    // Seeding is an ungated --auto-approve: through verify like every apply.
    let gates = reconcile::approve::Gates::new(&planned.state.config, &planned.trusted);
    let revision = pipeline::revision(&planned.state);
    let inputs = reconcile::verify::Inputs {
        state: &planned.state,
        revision: &revision,
        trusted: &planned.trusted,
        gates: &gates,
        key: None,
        allow_deletes: true,
        now: std::time::SystemTime::now(),
    };
    let io = reconcile::verify::Io {
        providers: &planned.providers,
        desired: &planned.desired,
        aws: None,
        directory: None,
    };
    let approved = rt
        .block_on(reconcile::verify::verify(
            reconcile::verify::Source::Fresh {
                plan: planned.plan.clone(),
                author: reconcile::approve::VerifiedAuthor::Unknown("benchmark".into()),
            },
            &inputs,
            &io,
        ))
        .unwrap_or_else(|e| panic!("the fleet is ungated: {e}"));
    let report = rt.block_on(reconcile::apply::run(
        &approved,
        &planned.providers,
        &planned.desired,
        &planned.graph,
        None,
        None,
        &|_, _| {},
    ));
    assert_eq!(report.failed() + report.skipped(), 0, "seeding failed");
    println!(
        "seeded {projects} projects, {users} users: {steps} steps in {:.1} s",
        seed_start.elapsed().as_secs_f64()
    );

    // Measure: a no-change plan with 20 ms per request.
    emu.set_faults(Faults {
        latency_ms: LATENCY_MS,
        ..Faults::default()
    })
    .unwrap();
    emu.reset_counters();
    let start = Instant::now();
    let planned = rt
        .block_on(pipeline::plan(dir.path(), &settings))
        .unwrap_or_else(|_| panic!("fleet plans"));
    let wall = start.elapsed();
    assert!(planned.plan.is_empty(), "the seeded fleet has no changes");
    let counters = emu.counters();
    let user_pages = (users + 1).div_ceil(100) as u64;
    let floor_requests = 4 * projects as u64 + user_pages + 3;
    let floor = floor_requests as f64 * LATENCY_MS as f64 / 1000.0 / concurrency as f64;
    println!(
        "no-change plan of {projects} projects (6 variables, 2 protected branches, 4 members each) and {users} users, {LATENCY_MS} ms per request, {concurrency} in flight:"
    );
    println!("  wall time      {:.2} s", wall.as_secs_f64());
    println!(
        "  requests       {} (minimum {floor_requests}: 4 per project, {user_pages} user pages, 3 preflight: GET /version, /user, /personal_access_tokens/self)",
        counters.total
    );
    println!("  floor          {floor:.2} s (minimum requests × {LATENCY_MS} ms ÷ {concurrency})");
    println!("  ratio to floor {:.2}", wall.as_secs_f64() / floor);

    // Under a rate limit (`FLEET_RATE_LIMIT_RPM`): the same fleet on a throttled emulator. The
    // emulator's bucket holds a minute of requests, so the floor is the time to earn the
    // requests beyond the first minute's.
    if let Some(rpm) = std::env::var("FLEET_RATE_LIMIT_RPM")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        let state = emu.dump_state();
        let throttled = rt
            .block_on(Emulator::start(Config {
                admin_tokens: vec![TOKEN.into()],
                rate_limit: Some(gitlab_emulator::RateLimit {
                    requests_per_minute: rpm,
                    headers: true,
                }),
                ..Config::default()
            }))
            .unwrap();
        throttled.load_state(state).unwrap();
        throttled.reset_counters();
        let url = throttled.url();
        let settings = Settings::from_env(|k| match k {
            "GITLAB_URL" => Some(url.clone()),
            "GITLAB_TOKEN" => Some(TOKEN.into()),
            _ => None,
        });
        let start = Instant::now();
        let planned = rt
            .block_on(pipeline::plan(dir.path(), &settings))
            .unwrap_or_else(|_| panic!("fleet plans under the rate limit"));
        let wall = start.elapsed();
        assert!(planned.plan.is_empty(), "the seeded fleet has no changes");
        let counters = throttled.counters();
        let answered = counters.total - counters.rate_limited;
        let floor = floor_requests.saturating_sub(u64::from(rpm)) as f64 * 60.0 / f64::from(rpm);
        println!(
            "no-change plan of the same fleet, rate limit {rpm} requests/min per token (burst {rpm}):"
        );
        println!("  wall time      {:.2} s", wall.as_secs_f64());
        println!(
            "  requests       {answered} answered (minimum {floor_requests}), {} refused with 429",
            counters.rate_limited
        );
        println!("  floor          {floor:.2} s (requests beyond the burst at {rpm}/min)");
        if floor > 0.0 {
            println!("  ratio to floor {:.2}", wall.as_secs_f64() / floor);
        }
        rt.block_on(throttled.shutdown()).unwrap();
    }
    rt.block_on(emu.shutdown()).unwrap();
}
